// Merging through the kernel from this very process: mergeable memory (MADV_MERGEABLE) as an
// ArrayBuffer, and PR_SET_MEMORY_MERGE for the whole process.
import { native } from './binding.js';
import { InvalidArgumentError, UnsupportedFeatureError } from './errors.js';
import { fromNativeError } from './native-errors.js';

export interface MergeableOptions {
  /** Keep transparent huge pages away (MADV_NOHUGEPAGE): needed for exact page counts. */
  noHugePages?: boolean;
}

/** Page-aligned anonymous memory that KSM may merge; unmapped when the ArrayBuffer is collected. */
export function allocMergeable(bytes: number, opts: MergeableOptions = {}): ArrayBuffer {
  if (!Number.isInteger(bytes) || bytes < 4096) throw new InvalidArgumentError(`allocMergeable: bytes must be an integer of at least 4096, got ${String(bytes)}`);
  try {
    return native().allocMergeable(bytes, opts.noHugePages ?? false);
  } catch (err) {
    throw fromNativeError(err, { what: 'allocate mergeable memory' });
  }
}

function prctlError(err: unknown): Error {
  if (typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'EINVAL') {
    return new UnsupportedFeatureError({ feature: 'PR_SET_MEMORY_MERGE (prctl 67)', since: '6.4', requires: 'CONFIG_KSM', cause: err });
  }
  return fromNativeError(err, { what: 'prctl(PR_SET_MEMORY_MERGE)' });
}

/** Turns KSM on (or off, unmerging) for every compatible mapping of this process, now and later. */
export function setMemoryMerge(on: boolean): void {
  try {
    native().setMemoryMerge(on);
  } catch (err) {
    throw prctlError(err);
  }
}

export function getMemoryMerge(): boolean {
  try {
    return native().getMemoryMerge();
  } catch (err) {
    throw prctlError(err);
  }
}

/** The engine's 64-bit hash of one 4 KiB page, as 16 hex digits. */
export function pageHash(page: Uint8Array): string {
  return native().pageHash(page);
}
