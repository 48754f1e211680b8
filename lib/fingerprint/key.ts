// The fleet's fingerprint key: 32 random bytes, as 64 hex digits in a root-only file (default
// /etc/samepage/fingerprint.key), the same file on every host whose sketches are compared.
//
// Why a key: a sketch holds 64-bit hashes of page contents. Unkeyed, anyone holding a sketch could
// hash a guessed page (a known binary, a page of a document) and see whether the VM holds it. Keyed
// (HMAC-SHA256), a hash says nothing without the key, so sketches may travel to a management host
// while the key stays on the hypervisors. Sketches made with different keys hash the same page
// differently; each carries the key's id (keyIdOf) so they are never compared by mistake.
//
// The file is read as root's secret: opened with O_NOFOLLOW (a symlink is refused, never followed),
// then checked through the descriptor: a regular file, owned by root (or this process's user when
// it is not root), readable by nobody else (mode 0600 or 0400), in a directory others cannot write.
import { constants } from 'node:fs';
import { mkdir, open, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { createHmac, randomBytes } from 'node:crypto';
import path from 'node:path';
import { NotFoundError, UnsafeFileError, errnoOf, fromSystemError } from '../errors.js';

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK } = constants;

export const DEFAULT_KEY_PATH = '/etc/samepage/fingerprint.key';
export const KEY_BYTES = 32;
/** What a key file holds: 64 hex digits and an optional newline. */
const KEY_TEXT = /^[0-9a-f]{64}\n?$/;

export interface FingerprintKey {
  /** The secret, 32 bytes. */
  key: Buffer;
  /** 16 hex digits: HMAC-SHA256(key, KEY_ID_LABEL), first 8 bytes. Names the key, reveals nothing of it. */
  id: string;
  /** The file it was read from. */
  path: string;
}

const KEY_ID_LABEL = 'samepage fingerprint key id v1';

export function keyIdOf(key: Buffer): string {
  return createHmac('sha256', key).update(KEY_ID_LABEL).digest().subarray(0, 8).toString('hex');
}

function unsafe(file: string, problem: string, remedy: string): UnsafeFileError {
  return new UnsafeFileError({ path: file, what: 'the fingerprint key', problem, remedy });
}

function trustedOwner(uid: number): boolean {
  const me = process.geteuid?.() ?? 0;
  return uid === 0 || uid === me;
}

/** Others who may write the key's directory may replace the key between our checks and our read. */
async function checkKeyDirectory(file: string): Promise<void> {
  const dir = path.dirname(file);
  const st = await stat(dir);
  if (!st.isDirectory()) throw unsafe(file, `sits in ${dir}, which is not a directory`, 'pass another --key-file');
  if (!trustedOwner(st.uid)) throw unsafe(file, `sits in ${dir}, owned by uid ${st.uid}, not root`, `chown root ${dir}, or keep the key in a directory of root's`);
  if ((st.mode & 0o022) !== 0) {
    throw unsafe(file, `sits in ${dir}, which group or others may write (mode ${(st.mode & 0o7777).toString(8)})`, `chmod go-w ${dir}, or keep the key in a directory of root's`);
  }
}

/** Reads and checks the key file; a missing file is an error that says how to create one. */
export async function readFingerprintKey(file: string = DEFAULT_KEY_PATH): Promise<FingerprintKey> {
  let fh: FileHandle;
  try {
    await checkKeyDirectory(file);
    // O_NONBLOCK: a FIFO planted at the path must not hang the read; it fails the regular-file check.
    fh = await open(file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch (err) {
    if (errnoOf(err) === 'ELOOP') throw unsafe(file, 'is a symbolic link', `pass the real path, or remove the link (${file})`);
    if (errnoOf(err) === 'ENOENT') {
      const init = `ksm-agent fingerprint --init-key${file === DEFAULT_KEY_PATH ? '' : ` --key-file ${file}`}`;
      throw new NotFoundError(`no fingerprint key at ${file}: create one with "${init}" and copy it (mode 0600) to every host whose sketches are compared`, { path: file });
    }
    throw fromSystemError(err, { op: 'read the fingerprint key', path: file });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw unsafe(file, 'is not a regular file', 'pass the path of the key file');
    if (!trustedOwner(st.uid)) throw unsafe(file, `is owned by uid ${st.uid}, not root`, `chown root ${file} if it is the fleet's key`);
    if ((st.mode & 0o077) !== 0) {
      throw unsafe(file, `may be read or written by group or others (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')})`, `chmod 600 ${file}, and make a new key if others may have read it`);
    }
    if (st.size > 128) throw unsafe(file, `is ${st.size} bytes, not a key (64 hex digits)`, 'pass the path of the key file');
    const text = (await fh.readFile()).toString('latin1');
    if (!KEY_TEXT.test(text)) throw unsafe(file, 'does not hold a key (64 lower-case hex digits)', 'pass the path of the key file, or make one with --init-key at a new path');
    const key = Buffer.from(text.slice(0, 64), 'hex');
    return { key, id: keyIdOf(key), path: file };
  } finally {
    await fh.close();
  }
}

/**
 * Creates a new key file (mode 0600, its directory 0755 if missing). An existing file is never
 * replaced: a new key would make every sketch already taken incomparable with new ones.
 */
export async function initFingerprintKey(file: string = DEFAULT_KEY_PATH): Promise<FingerprintKey> {
  try {
    await mkdir(path.dirname(file), { recursive: true, mode: 0o755 });
    await checkKeyDirectory(file);
  } catch (err) {
    throw fromSystemError(err, { op: 'create the fingerprint key in', path: path.dirname(file) });
  }
  const key = randomBytes(KEY_BYTES);
  let fh: FileHandle;
  try {
    fh = await open(file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
  } catch (err) {
    if (errnoOf(err) === 'EEXIST') throw unsafe(file, 'exists already', 'a key is never replaced (sketches made with it could no longer be compared); remove it yourself if you mean to');
    throw fromSystemError(err, { op: 'create the fingerprint key', path: file });
  }
  try {
    await fh.writeFile(`${key.toString('hex')}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return { key, id: keyIdOf(key), path: file };
}
