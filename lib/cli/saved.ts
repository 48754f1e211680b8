// The settings `ksm-agent set` found before its first change, kept for `ksm-agent restore`
// (a KsmSnapshot as JSON). Read and written only through safe-files.ts; the snapshot is checked
// by parseSnapshot (known settings, valid values) when it is read.
import { readOwnFile, removeOwnFile, writeOwnFileAtomic } from '../safe-files.js';
import type { OwnFile } from '../safe-files.js';
import { parseSnapshot } from '../sysfs.js';
import type { KsmSnapshot } from '../sysfs.js';
import { UsageError } from './exit-codes.js';

export { SAVED_SETTINGS_PATH as SAVED_PATH } from '../paths.js';

function savedFile(file: string): OwnFile {
  return { path: file, what: 'the saved settings' };
}

function parseSaved(text: string, file: string): KsmSnapshot {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${file} is not a saved KSM snapshot (${(err as Error).message}): it is left as it is; delete it, or restore with --defaults`);
  }
  return parseSnapshot(data, `saved settings ${file}`);
}

export async function readSaved(file: string): Promise<KsmSnapshot | undefined> {
  const text = await readOwnFile(savedFile(file));
  return text === undefined ? undefined : parseSaved(text, file);
}

/** Writes the snapshot; a file already there is replaced only when it is a saved snapshot. */
export async function writeSaved(file: string, snap: KsmSnapshot): Promise<void> {
  await writeOwnFileAtomic(savedFile(file), `${JSON.stringify(snap, null, 2)}\n`, {
    mode: 0o600,
    mayReplace: (text) => {
      try {
        parseSaved(text, file);
        return true;
      } catch {
        return false;
      }
    },
    kind: 'a saved KSM snapshot',
  });
}

export async function removeSaved(file: string): Promise<void> {
  await removeOwnFile(savedFile(file));
}

/**
 * After a restore of `snap` that left `notRestored` settings unwritten: deletes the file when
 * nothing is left, else rewrites it with only those settings for the next `ksm-agent restore`.
 */
export async function settleSaved(file: string, snap: KsmSnapshot, notRestored: readonly string[]): Promise<void> {
  if (notRestored.length === 0) {
    await removeSaved(file);
    return;
  }
  const files = Object.fromEntries(Object.entries(snap.files).filter(([name]) => notRestored.includes(name)));
  await writeSaved(file, { ...snap, files });
}
