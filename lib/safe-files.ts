// Small file helpers for the agent's and the CLI's own files (config, state, saved settings):
// "absent" is an answer, not an error, and writes are atomic (temp file, fsync, rename), so a
// crash never leaves half a state file behind.
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { errnoOf, fromSystemError } from './errors.js';

/** The file's text, or undefined when it does not exist; other failures are typed errors. */
export async function readTextIfExists(file: string, op = 'read'): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw fromSystemError(err, { op, path: file });
  }
}

export async function writeAtomic(file: string, text: string, mode = 0o644, op = 'write'): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    await mkdir(path.dirname(file), { recursive: true, mode: 0o755 });
    const fh = await open(tmp, 'w', mode);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw fromSystemError(err, { op, path: file });
  }
}

export async function removeIfExists(file: string, op = 'remove'): Promise<void> {
  try {
    await unlink(file);
  } catch (err) {
    if (errnoOf(err) !== 'ENOENT') throw fromSystemError(err, { op, path: file });
  }
}
