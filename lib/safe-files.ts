// The one way ksm-agent opens its own files (lock, state, saved settings, agent.json,
// ksmtuned.conf, the running-agent record, --from snapshots). It runs as root and takes these
// paths from flags and config keys, so a path must never become a way to make root read, follow,
// truncate or replace a file that is not ours:
// - the final name is opened with O_NOFOLLOW: a symbolic link is refused, never followed;
// - what was opened is checked through the descriptor (fstat, not the path, so nothing can be
//   swapped in between): a regular file, owned by root (or by this process's own user when it is
//   not root: `status` as a user, the non-root tests), not writable by group or others;
// - the directory holding it must be owned by root (or that user) and not writable by group or
//   others, because whoever may write a directory may rename and replace the files in it between
//   our checks and our use. A sticky directory (/tmp, /run/lock) is accepted: others may create
//   names in it but not rename or remove ours, and a name they planted first fails the file's own
//   checks. Only the parent is checked: the ancestors of the default paths (/etc, /var/lib, /run)
//   are root's, and a root that points a flag into a directory tree an attacker controls has
//   given that directory away already;
// - writes are atomic: a temp file of a random name created with O_EXCL|O_NOFOLLOW in the same
//   directory, written, fsynced, renamed over the target, then the directory fsynced. A file
//   already at the target is replaced only when its content is what the caller writes there
//   (`mayReplace`), so a flag pointed at /etc/passwd refuses rather than replacing it.
// "Absent" is an answer (undefined), not an error.
import { constants } from 'node:fs';
import type { Stats } from 'node:fs';
import { mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { UnsafeFileError, errnoOf, fromSystemError } from './errors.js';

const { O_RDONLY, O_RDWR, O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK, O_DIRECTORY } = constants;

/** What a caller names a file as, in errors: "the state file", "config file". */
export interface OwnFile {
  path: string;
  what: string;
}

/** Root, or this process's own user when it is not root. */
function trustedOwner(uid: number): boolean {
  const me = process.geteuid?.() ?? 0;
  return uid === 0 || uid === me;
}

function ownerName(): string {
  const me = process.geteuid?.() ?? 0;
  return me === 0 ? 'root' : `root or uid ${me}`;
}

function octal(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

function unsafe(f: OwnFile, problem: string, remedy: string): UnsafeFileError {
  return new UnsafeFileError({ path: f.path, what: f.what, problem, remedy });
}

/** The checks on what the descriptor refers to (see the top of this file). */
function checkOwnFileStats(f: OwnFile, st: Stats): void {
  if (!st.isFile()) throw unsafe(f, 'is not a regular file', 'pass the path of a regular file');
  if (!trustedOwner(st.uid)) throw unsafe(f, `is owned by uid ${st.uid}, not ${ownerName()}`, `if it really is ksm-agent's, chown root ${f.path}; otherwise pass another path`);
  if ((st.mode & 0o022) !== 0) throw unsafe(f, `is writable by group or others (mode ${octal(st.mode)})`, `chmod go-w ${f.path}`);
}

/** The directory rule (see the top of this file); ENOENT is passed to the caller. */
async function checkDirectory(f: OwnFile): Promise<void> {
  const dir = path.dirname(f.path);
  // stat, not lstat: /var/run -> /run is a normal symlink; what counts is the directory the name
  // lands in.
  const st = await stat(dir);
  if (!st.isDirectory()) throw unsafe(f, `sits in ${dir}, which is not a directory`, 'pass another path');
  if (!trustedOwner(st.uid)) throw unsafe(f, `sits in ${dir}, owned by uid ${st.uid}, not ${ownerName()}`, `chown root ${dir}, or pass a path in a directory of root's`);
  const sticky = (st.mode & 0o1000) !== 0;
  if ((st.mode & 0o022) !== 0 && !sticky) {
    throw unsafe(f, `sits in ${dir}, which group or others may write (mode ${octal(st.mode)})`, `chmod go-w ${dir}, or pass a path in a directory of root's`);
  }
}

async function openChecked(f: OwnFile, flags: number, mode?: number): Promise<FileHandle> {
  let fh: FileHandle;
  try {
    // O_NONBLOCK: opening a FIFO planted at the path must not hang; it fails the regular-file check.
    fh = await open(f.path, flags | O_NOFOLLOW | O_NONBLOCK, mode);
  } catch (err) {
    if (errnoOf(err) === 'ELOOP') throw unsafe(f, 'is a symbolic link', `pass the real path, or remove the link (${f.path})`);
    throw err;
  }
  try {
    checkOwnFileStats(f, await fh.stat());
    return fh;
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/** The file's text, or undefined when it (or its directory) does not exist. */
export async function readOwnFile(f: OwnFile): Promise<string | undefined> {
  try {
    await checkDirectory(f);
    const fh = await openChecked(f, O_RDONLY);
    try {
      return await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw fromSystemError(err, { op: `read ${f.what}`, path: f.path });
  }
}

export interface WriteOptions {
  /** File mode of a new file (the umask still applies). */
  mode: number;
  /** Whether a file already at the path may be replaced, judged by its text. */
  mayReplace: (existing: string) => boolean;
  /** What such a file holds, for the refusal: "a ksm-agent state file". */
  kind: string;
}

export async function writeOwnFileAtomic(f: OwnFile, text: string | Uint8Array, opts: WriteOptions): Promise<void> {
  const dir = path.dirname(f.path);
  try {
    await mkdir(dir, { recursive: true, mode: 0o755 });
    await checkDirectory(f);
  } catch (err) {
    throw fromSystemError(err, { op: `write ${f.what}`, path: f.path });
  }
  const existing = await readOwnFile(f);
  if (existing !== undefined && !opts.mayReplace(existing)) {
    throw unsafe(f, `exists and is not ${opts.kind}`, `it is left as it is; pass another path, or remove the file if it is stale`);
  }
  const tmp = path.join(dir, `.${path.basename(f.path)}.${randomBytes(8).toString('hex')}.tmp`);
  let created = false;
  try {
    const fh = await open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, opts.mode);
    created = true;
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, f.path);
    created = false;
    const d = await open(dir, O_RDONLY | O_DIRECTORY);
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch (err) {
    if (created) await unlink(tmp).catch(() => undefined);
    throw fromSystemError(err, { op: `write ${f.what}`, path: f.path });
  }
}

/** Removes the file if it exists (unlink removes a link itself, never its target). */
export async function removeOwnFile(f: OwnFile): Promise<void> {
  try {
    await checkDirectory(f);
    await unlink(f.path);
  } catch (err) {
    if (errnoOf(err) !== 'ENOENT') throw fromSystemError(err, { op: `remove ${f.what}`, path: f.path });
  }
}

/**
 * Opens (creating it if needed) a lock file for reading and writing without truncating it: an
 * existing file must pass the checks above and `isLockText` (what ksm-agent writes in it), so a
 * --lock-file pointed at some other file is refused untouched. The caller truncates it only once
 * it holds the lock.
 */
export async function openOwnLockFile(f: OwnFile, isLockText: (text: string) => boolean, kind: string): Promise<FileHandle> {
  let fh: FileHandle;
  try {
    await mkdir(path.dirname(f.path), { recursive: true, mode: 0o755 });
    await checkDirectory(f);
    fh = await openChecked(f, O_RDWR | O_CREAT, 0o644);
  } catch (err) {
    throw fromSystemError(err, { op: `open ${f.what}`, path: f.path });
  }
  try {
    const buf = Buffer.alloc(64);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const text = buf.subarray(0, bytesRead).toString('utf8');
    if (bytesRead === buf.length || !isLockText(text)) {
      throw unsafe(f, `exists and is not ${kind}`, 'it is left as it is; pass another --lock-file, or remove the file if it is stale');
    }
    return fh;
  } catch (err) {
    await fh.close();
    throw err;
  }
}
