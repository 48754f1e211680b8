// What a SIGHUP changes: the keys whose value differs between the running configuration and the
// one just read, split into those the daemon applies at once and those fixed at start (the HTTP
// socket and its access rules, the state file, the lock), which keep their running value until a
// restart, with a log line naming each.
import { isSettingName, parseSettingText } from '../ksm-files.js';
import type { KsmSettings } from '../ksm-files.js';
import type { KsmSnapshot } from '../sysfs.js';
import type { AgentConfig } from './config.js';

/**
 * Read once at start: the listening socket (listen, and what the server checks on each request,
 * allowedHosts and tokenFile, are handed to it when it starts), the state file (the restore at
 * stop must find the file written at start) and the lock (held since start).
 */
export const RESTART_KEYS = ['listen', 'allowedHosts', 'tokenFile', 'stateFile', 'lockFile'] as const satisfies readonly (keyof AgentConfig)[];
type RestartKey = (typeof RESTART_KEYS)[number];

export interface RestartChange {
  key: RestartKey;
  running: unknown;
  configured: unknown;
}

export interface ConfigChanges {
  /** Keys applied now, in config order. */
  applied: (keyof AgentConfig)[];
  /** Keys that changed but keep their running value until the next start. */
  restart: RestartChange[];
  /** The configuration to run with: the new one, with the running value of each restart key. */
  next: AgentConfig;
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

export function configChanges(running: AgentConfig, loaded: AgentConfig): ConfigChanges {
  const restartKeys: readonly string[] = RESTART_KEYS;
  const applied: (keyof AgentConfig)[] = [];
  const restart: RestartChange[] = [];
  const next = { ...loaded };
  for (const key of Object.keys(loaded) as (keyof AgentConfig)[]) {
    if (same(running[key], loaded[key])) continue;
    if (restartKeys.includes(key)) {
      const k = key as RestartKey;
      restart.push({ key: k, running: running[k], configured: loaded[k] });
      (next as Record<string, unknown>)[k] = running[k];
    } else {
      applied.push(key);
    }
  }
  return { applied, restart, next };
}

/** "listen ("127.0.0.1:9662" now, "0.0.0.0:9662" configured)", for the restart warning. */
export function describeRestart(changes: RestartChange[]): string {
  return changes.map((c) => `${c.key} (${JSON.stringify(c.running)} now, ${JSON.stringify(c.configured)} configured)`).join(', ');
}

/**
 * The KSM settings to write when `settings` changed: the new values that differ from the old
 * config's, and for each key no longer configured the value found at start (the snapshot), since
 * the agent only ever changed it because the config asked.
 */
export function settingsToApply(before: KsmSettings, after: KsmSettings, snapshot: KsmSnapshot | undefined): KsmSettings {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(after)) {
    if (!same((before as Record<string, unknown>)[k], v)) out[k] = v;
  }
  for (const k of Object.keys(before)) {
    if (k in after || !isSettingName(k)) continue;
    const found = snapshot?.files[k];
    if (found !== undefined) out[k] = parseSettingText(k, found);
  }
  return out as KsmSettings;
}
