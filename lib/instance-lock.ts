// One ksm-agent daemon per host: an exclusive flock on the lock file, held for the life of the
// process. The kernel drops it when the process dies (even by SIGKILL), so a crash leaves no
// stale lock behind. The file holds the owner's pid, to name it when a second instance is refused.
//
// The lock is taken without blocking by util-linux flock(1) on a descriptor this process opened
// and passes down: flock locks belong to the open file description, so it stays ours after
// flock(1) exits, for as long as the descriptor is open. (A blocking flock on the thread pool
// cannot be abandoned: the refused process would hang in exit waiting for it.)
import { spawnSync } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { AlreadyRunningError, SamepageError } from './errors.js';
import { openOwnLockFile, readOwnFile } from './safe-files.js';
import type { OwnFile } from './safe-files.js';

/** What ksm-agent writes in its lock file: nothing yet, or the holder's pid. */
const LOCK_TEXT = /^(\d+)\n?$/;

function lockFile(file: string): OwnFile {
  return { path: file, what: 'the lock file' };
}

export interface InstanceLock {
  path: string;
  release(): void;
}

/** The pid recorded by the instance holding `file`, if any (read with the checks of safe-files.ts). */
export async function lockOwner(file: string): Promise<number | undefined> {
  const text = await readOwnFile(lockFile(file)).catch(() => undefined);
  const m = text === undefined ? null : LOCK_TEXT.exec(text);
  return m === null ? undefined : Number(m[1]);
}

export async function acquireInstanceLock(file: string): Promise<InstanceLock> {
  // Opened without truncating, and refused when it is anything but a lock file of ours: a
  // --lock-file pointed at another file (/etc/passwd) must leave it as it is.
  const fh = await openOwnLockFile(lockFile(file), (text) => text === '' || LOCK_TEXT.test(text), 'a ksm-agent lock file (empty, or a pid)');
  const r = spawnSync('flock', ['--nonblock', '--exclusive', '3'], { stdio: ['ignore', 'ignore', 'pipe', fh.fd], encoding: 'utf8' });
  if (r.error !== undefined || (r.status !== 0 && r.status !== 1)) {
    await fh.close();
    const why = r.error !== undefined ? r.error.message : `exit ${String(r.status)}: ${r.stderr.trim()}`;
    throw new SamepageError('IO', `cannot lock ${file} with flock(1) (${why}): install util-linux, or check the file`, { path: file });
  }
  if (r.status === 1) {
    await fh.close();
    const owner = await lockOwner(file);
    throw new AlreadyRunningError(
      `another ksm-agent is already running${owner === undefined ? '' : ` (pid ${owner})`}: it holds ${file}; stop it first (systemctl stop ksm-agent, or kill ${owner ?? 'PID'}) — only one agent may tune KSM`,
      { path: file, ...(owner === undefined ? {} : { pid: owner }) },
    );
  }
  // Ours now: only the holder rewrites the pid.
  await fh.truncate(0);
  await fh.write(`${process.pid}\n`, 0);
  let held = true;
  return {
    path: file,
    release: () => {
      // Closing the descriptor drops the flock (the kernel drops it at exit anyway). The handle
      // is kept referenced here for the life of the lock: collected, it would be closed.
      if (held) void fh.close();
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
