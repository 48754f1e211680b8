// The daemon's state file (default /var/lib/samepage/agent-state.json): the KSM settings it found
// at start, written before it changes anything. A clean exit restores them and deletes the file;
// a file still there at the next start means the last run died (SIGKILL, OOM, power), and its
// settings are restored before anything else. A restore that could put back only part of them
// rewrites the file with the rest, so that record is never lost. The file is data, not a path to
// anything: it is read and written only through safe-files.ts, and its snapshot is checked by
// parseSnapshot (known settings, valid values) before anything is written from it.
import { parseSnapshot } from '../sysfs.js';
import type { KsmSnapshot } from '../sysfs.js';
import { ConfigError } from './config-error.js';
import { readOwnFile, removeOwnFile, writeOwnFileAtomic } from '../safe-files.js';
import type { OwnFile } from '../safe-files.js';

export const STATE_VERSION = 1;

export interface AgentStateFile {
  version: number;
  pid: number;
  /** When that pid started (clock ticks after boot), to tell it from a recycled pid. */
  startTicks?: number;
  startedAt: string;
  /** /proc/sys/kernel/random/boot_id: a state file from an earlier boot is stale (KSM reset). */
  bootId?: string;
  /** The settings found at start: what a clean exit or the next start puts back. */
  snapshot: KsmSnapshot;
}

function stateFile(file: string): OwnFile {
  return { path: file, what: 'the state file' };
}

/** The state in `text`, or a message saying why it is not a state file of ours. */
function parseState(text: string, file: string): AgentStateFile | string {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    return `is not valid JSON (${(err as Error).message})`;
  }
  const s = data as Partial<AgentStateFile> | null;
  if (typeof s !== 'object' || s === null || s.version !== STATE_VERSION || !Number.isSafeInteger(s.pid) || (s.pid as number) <= 0) {
    return `is not a ksm-agent state file of version ${STATE_VERSION}`;
  }
  if (s.startTicks !== undefined && !Number.isSafeInteger(s.startTicks)) return 'has a startTicks that is not an integer';
  try {
    return { ...(s as AgentStateFile), snapshot: parseSnapshot(s.snapshot, `state file ${file}`) };
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * Writes the state; a file already there is replaced only when it is a state file (so a
 * --state-file pointed at another file is refused, untouched).
 */
export async function writeStateFile(file: string, state: AgentStateFile): Promise<void> {
  await writeOwnFileAtomic(stateFile(file), `${JSON.stringify(state, null, 2)}\n`, {
    mode: 0o600,
    mayReplace: (text) => typeof parseState(text, file) !== 'string',
    kind: 'a ksm-agent state file',
  });
}

/** The state left by an earlier run, or undefined when there is none (the last exit was clean). */
export async function readStateFile(file: string): Promise<AgentStateFile | undefined> {
  const text = await readOwnFile(stateFile(file));
  if (text === undefined) return undefined;
  const state = parseState(text, file);
  if (typeof state === 'string') {
    throw new ConfigError(`state file ${file} ${state}: it is left as it is; check the KSM settings by hand (ksm-agent status), then delete the file, or pass another --state-file`);
  }
  return state;
}

export async function removeStateFile(file: string): Promise<void> {
  await removeOwnFile(stateFile(file));
}

/**
 * After a restore of `state` that left `notRestored` settings unwritten: deletes the file when
 * nothing is left, else rewrites it with only those settings, so the next start or `ksm-agent
 * restore` still puts them back.
 */
export async function settleStateFile(file: string, state: AgentStateFile, notRestored: readonly string[]): Promise<void> {
  if (notRestored.length === 0) {
    await removeStateFile(file);
    return;
  }
  const files = Object.fromEntries(Object.entries(state.snapshot.files).filter(([name]) => notRestored.includes(name)));
  await writeStateFile(file, { ...state, snapshot: { ...state.snapshot, files } });
}
