// Where samepage's own files live on a host. ksm-agent, as root, writes only these (and the KSM
// knobs): its config under /etc/samepage, its state under /var/lib/samepage, its lock under /run.
// Every command uses the same names, so `status`, `set` and `restore` find what `run` wrote.

/** The agent's JSON configuration. */
export const DEFAULT_CONFIG_PATH = '/etc/samepage/agent.json';
/** The daemon's record of the KSM settings it found at start (restored at exit or next start). */
export const DEFAULT_STATE_FILE = '/var/lib/samepage/agent-state.json';
/** The daemon's single-instance lock (flock). */
export const DEFAULT_LOCK_FILE = '/run/samepage/ksm-agent.lock';
/** What `ksm-agent set` found before its first change, for `ksm-agent restore`. */
export const SAVED_SETTINGS_PATH = '/var/lib/samepage/cli-saved-settings.json';
/** MemAvailable kept free when unmerging (run=2): percent of MemTotal. */
export const UNMERGE_RESERVE_PERCENT = 5;
/**
 * The running daemon's record of itself (pid, start time, lock and state file), at a fixed place
 * whatever --lock-file it was given, so `status`, `set`, `restore` and a second `run` find it.
 */
export const AGENT_RECORD_PATH = '/run/samepage/agent.pid';
