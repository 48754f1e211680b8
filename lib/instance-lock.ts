// One ksm-agent daemon per host: an exclusive flock on the lock file, held for the life of the
// process. The kernel drops it when the process dies (even by SIGKILL), so a crash leaves no
// stale lock behind. The file holds the owner's pid, to name it when a second instance is refused.
//
// The lock is taken without blocking by util-linux flock(1) on a descriptor this process opened
// and passes down: flock locks belong to the open file description, so it stays ours after
// flock(1) exits, for as long as the descriptor is open. (A blocking flock on the thread pool
// cannot be abandoned: the refused process would hang in exit waiting for it.)
import { spawnSync } from 'node:child_process';
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { mkdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { AlreadyRunningError, SamepageError, fromSystemError } from './errors.js';

export interface InstanceLock {
  path: string;
  release(): void;
}

/** The pid recorded by the instance holding `file`, if any. */
export async function lockOwner(file: string): Promise<number | undefined> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const m = /^(\d+)/.exec(text.trim());
  return m === null ? undefined : Number(m[1]);
}

export async function acquireInstanceLock(file: string): Promise<InstanceLock> {
  let fd: number;
  try {
    await mkdir(path.dirname(file), { recursive: true, mode: 0o755 });
    fd = openSync(file, 'a+', 0o644);
  } catch (err) {
    throw fromSystemError(err, { op: 'open the lock file', path: file });
  }
  const r = spawnSync('flock', ['--nonblock', '--exclusive', '3'], { stdio: ['ignore', 'ignore', 'pipe', fd], encoding: 'utf8' });
  if (r.error !== undefined || (r.status !== 0 && r.status !== 1)) {
    closeSync(fd);
    const why = r.error !== undefined ? r.error.message : `exit ${String(r.status)}: ${r.stderr.trim()}`;
    throw new SamepageError('IO', `cannot lock ${file} with flock(1) (${why}): install util-linux, or check the file`, { path: file });
  }
  if (r.status === 1) {
    closeSync(fd);
    const owner = await lockOwner(file);
    throw new AlreadyRunningError(
      `another ksm-agent is already running${owner === undefined ? '' : ` (pid ${owner})`}: it holds ${file}; stop it first (systemctl stop ksm-agent, or kill ${owner ?? 'PID'}) — only one agent may tune KSM`,
      { path: file, ...(owner === undefined ? {} : { pid: owner }) },
    );
  }
  ftruncateSync(fd, 0);
  writeSync(fd, `${process.pid}\n`);
  let held = true;
  return {
    path: file,
    release: () => {
      if (held) closeSync(fd);
      held = false;
    },
  };
}

/**
 * The agent holding `file` right now, or undefined when nobody holds it: /proc/locks says whether
 * the inode is flocked (without taking the lock); lines read "1: FLOCK ADVISORY WRITE PID
 * MAJ:MIN:INODE 0 EOF". Its PID is flock(1)'s, so the agent's own pid comes from the file.
 */
export async function lockHolder(file: string): Promise<number | undefined> {
  let st;
  try {
    st = await stat(file);
  } catch {
    return undefined;
  }
  const text = await readFile('/proc/locks', 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const m = /^\d+:\s+FLOCK\s+\S+\s+\S+\s+(\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/.exec(line);
    if (m === null) continue;
    const [major, minor, ino] = [parseInt(m[2] as string, 16), parseInt(m[3] as string, 16), Number(m[4])];
    // glibc's dev_t: major in bits 8-19, minor in bits 0-7 and 20-31.
    const devMajor = Math.floor(st.dev / 0x100) % 0x1000;
    const devMinor = (st.dev % 0x100) + (Math.floor(st.dev / 0x100000) % 0x1000) * 0x100;
    if (ino === st.ino && major === devMajor && minor === devMinor) return (await lockOwner(file)) ?? Number(m[1]);
  }
  return undefined;
}
