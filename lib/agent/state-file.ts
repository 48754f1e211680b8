// The daemon's state file (default /var/lib/samepage/agent-state.json): the KSM settings it found
// at start, written before it changes anything. A clean exit restores them and deletes the file;
// a file still there at the next start means the last run died (SIGKILL, OOM, power), and its
// settings are restored before anything else. Written atomically (temp file, fsync, rename).
import type { KsmSnapshot } from '../sysfs.js';
import { ConfigError } from './config-error.js';
import { readTextIfExists, removeIfExists, writeAtomic } from '../safe-files.js';

export const STATE_VERSION = 1;

export interface AgentStateFile {
  version: number;
  pid: number;
  startedAt: string;
  /** /proc/sys/kernel/random/boot_id: a state file from an earlier boot is stale (KSM reset). */
  bootId?: string;
  /** The settings found at start: what a clean exit or the next start puts back. */
  snapshot: KsmSnapshot;
}

export async function writeStateFile(file: string, state: AgentStateFile): Promise<void> {
  await writeAtomic(file, `${JSON.stringify(state, null, 2)}\n`, 0o600, 'write the state file');
}

/** The state left by an earlier run, or undefined when there is none (the last exit was clean). */
export async function readStateFile(file: string): Promise<AgentStateFile | undefined> {
  const text = await readTextIfExists(file, 'read the state file');
  if (text === undefined) return undefined;
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`state file ${file} is not valid JSON (${(err as Error).message}): check the KSM settings by hand (ksm-agent status), then delete the file`);
  }
  const s = data as Partial<AgentStateFile>;
  if (s.version !== STATE_VERSION || typeof s.snapshot !== 'object' || s.snapshot === null || typeof s.snapshot.files !== 'object') {
    throw new ConfigError(`state file ${file} is not a ksm-agent state file of version ${STATE_VERSION}: check the KSM settings by hand (ksm-agent status), then delete the file`);
  }
  return s as AgentStateFile;
}

export async function removeStateFile(file: string): Promise<void> {
  await removeIfExists(file, 'remove the state file');
}
