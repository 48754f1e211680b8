// One ksm-agent daemon per host: an exclusive flock on the lock file, held for the life of the
// process. The kernel drops it when the process dies (even by SIGKILL), so a crash leaves no
// stale lock behind. The file holds the owner's pid, to name it when a second instance is refused.
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { native } from '../binding.js';
import { AlreadyRunningError, fromSystemError } from '../errors.js';

/** How long to wait for the lock before deciding another instance holds it. */
const WAIT_MS = 500;

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
  try {
    await mkdir(path.dirname(file), { recursive: true, mode: 0o755 });
  } catch (err) {
    throw fromSystemError(err, { op: 'create the directory of', path: file });
  }
  const b = native();
  // The addon's flock blocks on the thread pool; a lock not granted at once is held by someone
  // else. Should that request be granted later (the other instance exited), its fd is closed at
  // once, so a refused caller never ends up holding the lock by accident.
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  const request = b.lockFile(file).then(
    (granted) => {
      if (timedOut) b.closeFd(granted);
      return granted;
    },
    (err: unknown) => {
      throw fromSystemError(err, { op: 'lock', path: file });
    },
  );
  const fd = await Promise.race([
    request,
    new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), WAIT_MS))),
  ]);
  clearTimeout(timer);
  if (fd === undefined) {
    timedOut = true;
    request.catch(() => undefined); // a late failure of the abandoned request is of no interest
    const owner = await lockOwner(file);
    throw new AlreadyRunningError(
      `another ksm-agent is already running${owner === undefined ? '' : ` (pid ${owner})`}: it holds ${file}; stop it first (systemctl stop ksm-agent, or kill ${owner ?? 'PID'}) — only one agent may tune KSM`,
      { path: file, ...(owner === undefined ? {} : { pid: owner }) },
    );
  }
  await writeFile(file, `${process.pid}\n`);
  let held = true;
  return {
    path: file,
    release: () => {
      if (held) b.closeFd(fd);
      held = false;
    },
  };
}

/**
 * The pid holding an flock on `file` right now, from /proc/locks (without taking the lock), or
 * undefined when nobody holds it. Lines read "1: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE 0 EOF".
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
    if (ino === st.ino && major === devMajor && minor === devMinor) return Number(m[1]);
  }
  return undefined;
}
