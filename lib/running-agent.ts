// Which ksm-agent daemon is running on this host, whatever --lock-file it was started with.
//
// A lock file only answers for its own path: a daemon started with --lock-file /tmp/x.lock holds
// no lock that `restore` (looking at the default one) would see. So the daemon also records itself
// at a fixed place, AGENT_RECORD_PATH under /run (gone at reboot), and every command that must not
// race a daemon reads that record. A pid alone is not trusted: pids are recycled, and a record
// left by a SIGKILLed daemon stays behind. A record (or a state file's pid) counts only while
// that pid is alive, started at the recorded time (the start time in clock ticks since boot from
// /proc/PID/stat: the same pid and start time is the same process) and runs `ksm-agent run`
// (its command line). Anything else is a dead agent.
import { readCmdline, readProcStat } from './procfs.js';
import { lockHolder } from './instance-lock.js';
import { AGENT_RECORD_PATH, DEFAULT_LOCK_FILE } from './paths.js';
import { readOwnFile, removeOwnFile, writeOwnFileAtomic } from './safe-files.js';
import type { OwnFile } from './safe-files.js';

const RECORD: OwnFile = { path: AGENT_RECORD_PATH, what: 'the running-agent record' };

/** A process, told apart from a later one that got the same pid. */
export interface ProcessIdentity {
  pid: number;
  /** /proc/PID/stat field 22: clock ticks after boot when the process started. */
  startTicks: number;
}

export interface AgentRecord extends ProcessIdentity {
  lockFile: string;
  stateFile: string;
}

/** When `pid` started (clock ticks after boot), or undefined when it does not exist. */
export async function processStartTicks(pid: number): Promise<number | undefined> {
  try {
    return (await readProcStat(pid)).starttime;
  } catch {
    return undefined;
  }
}

export async function selfIdentity(): Promise<ProcessIdentity> {
  const startTicks = await processStartTicks(process.pid);
  if (startTicks === undefined) throw new Error(`cannot read /proc/${process.pid}/stat: is /proc mounted?`);
  return { pid: process.pid, startTicks };
}

/** `node .../ksm-agent run ...` or `node .../cli/main.js run ...` (the package's bin and its target). */
function isAgentCommandLine(argv: readonly string[]): boolean {
  const script = argv.findIndex((a) => /(^|\/)ksm-agent$|\/cli\/main\.js$/.test(a));
  return script >= 0 && argv[script + 1] === 'run';
}

/**
 * Whether `pid` is a live `ksm-agent run`, and the same process as recorded when `startTicks` is
 * given. A recycled pid (another process, or another start) is not.
 */
export async function isRunningAgent(pid: number, startTicks?: number): Promise<boolean> {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  const ticks = await processStartTicks(pid);
  if (ticks === undefined || (startTicks !== undefined && ticks !== startTicks)) return false;
  const argv = await readCmdline(pid).catch(() => [] as string[]);
  return isAgentCommandLine(argv);
}

function parseRecord(text: string): AgentRecord | undefined {
  try {
    const r = JSON.parse(text) as Partial<AgentRecord>;
    if (!Number.isSafeInteger(r.pid) || !Number.isSafeInteger(r.startTicks) || typeof r.lockFile !== 'string' || typeof r.stateFile !== 'string') return undefined;
    return r as AgentRecord;
  } catch {
    return undefined;
  }
}

/** The live agent the record names, or undefined (no record, or its agent is gone). */
export async function recordedAgent(): Promise<AgentRecord | undefined> {
  const text = await readOwnFile(RECORD);
  const r = text === undefined ? undefined : parseRecord(text);
  if (r === undefined) return undefined;
  return (await isRunningAgent(r.pid, r.startTicks)) ? r : undefined;
}

/** Writes this daemon's record; replaces only a record (stale, or this process's own). */
export async function recordRunningAgent(files: { lockFile: string; stateFile: string }): Promise<void> {
  const record: AgentRecord = { ...(await selfIdentity()), ...files };
  await writeOwnFileAtomic(RECORD, `${JSON.stringify(record)}\n`, {
    mode: 0o644, // world-readable: `ksm-agent status` as any user names the running agent
    mayReplace: (text) => parseRecord(text) !== undefined,
    kind: 'a ksm-agent running-agent record',
  });
}

/** Removes the record if it is still this process's. */
export async function forgetRunningAgent(): Promise<void> {
  const text = await readOwnFile(RECORD);
  const r = text === undefined ? undefined : parseRecord(text);
  if (r !== undefined && r.pid === process.pid) await removeOwnFile(RECORD);
}

/**
 * The pid of the daemon running on this host: the one its record names, else whoever holds the
 * default lock (a daemon of an older version writes no record).
 */
export async function findRunningAgent(): Promise<number | undefined> {
  return (await recordedAgent())?.pid ?? (await lockHolder(DEFAULT_LOCK_FILE));
}
