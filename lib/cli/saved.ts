// The settings `ksm-agent set` found before its first change, kept for `ksm-agent restore`
// (a KsmSnapshot as JSON, written atomically).
import { readTextIfExists, removeIfExists, writeAtomic } from '../safe-files.js';
import type { KsmSnapshot } from '../sysfs.js';
import { UsageError } from './exit-codes.js';

export { SAVED_SETTINGS_PATH as SAVED_PATH } from '../paths.js';

export async function readSaved(file: string): Promise<KsmSnapshot | undefined> {
  const text = await readTextIfExists(file);
  if (text === undefined) return undefined;
  try {
    const snap = JSON.parse(text) as KsmSnapshot;
    if (typeof snap.files !== 'object' || snap.files === null) throw new Error('no "files" map');
    return snap;
  } catch (err) {
    throw new UsageError(`${file} is not a saved KSM snapshot (${(err as Error).message}): delete it, or restore with --defaults`);
  }
}

export async function writeSaved(file: string, snap: KsmSnapshot): Promise<void> {
  await writeAtomic(file, `${JSON.stringify(snap, null, 2)}\n`, 0o600, 'save the KSM settings to');
}

export async function removeSaved(file: string): Promise<void> {
  await removeIfExists(file);
}
