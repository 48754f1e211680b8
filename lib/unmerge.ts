// Writing run=2 unmerges every KSM page at once: each merged mapping needs its own page again.
// Without free memory to absorb that the OOM killer steps in, so nothing in samepage writes
// run=2 unless MemAvailable covers the pages it would take back plus a reserve.
import { RestoreIncompleteError } from './errors.js';
import type { RestoreFailure } from './errors.js';
import { applySnapshot, parseSnapshot, readKsm, setKsm } from './sysfs.js';
import type { KsmOptions, KsmSnapshot } from './sysfs.js';
import { readMemory, PAGE_SIZE } from './sample.js';

export interface Headroom {
  ok: boolean;
  /** Bytes the unmerge would allocate: pages_sharing + ksm_zero_pages pages. */
  neededBytes: number;
  availableBytes: number;
  reserveBytes: number;
}

export async function unmergeHeadroom(reservePercent: number, opts: KsmOptions = {}): Promise<Headroom> {
  const [{ counters }, mem] = await Promise.all([readKsm(opts), readMemory()]);
  const neededBytes = ((counters.pages_sharing ?? 0) + (counters.ksm_zero_pages ?? 0)) * PAGE_SIZE;
  const reserveBytes = Math.floor((mem.totalBytes * reservePercent) / 100);
  return { ok: mem.availableBytes - neededBytes >= reserveBytes, neededBytes, availableBytes: mem.availableBytes, reserveBytes };
}

/** Settings whose change needs every KSM page unmerged first (the kernel says EBUSY otherwise). */
const NEEDS_UNMERGE = ['max_page_sharing', 'merge_across_nodes'] as const;

/** What a restore did not do: settings left out for want of memory, and writes that failed. */
export interface RestoreOutcome {
  leftOut: string[];
  failures: RestoreFailure[];
}

/** The settings an outcome did not put back (left out or failed): what a record must keep. */
export function notRestored(outcome: RestoreOutcome): string[] {
  return [...outcome.leftOut, ...outcome.failures.map((f) => f.file)];
}

/**
 * Restores a snapshot as far as is safe: when that would need run=2 (max_page_sharing or
 * merge_across_nodes differ while pages are merged) and memory is short, those files are left as
 * they are (unless `force`). Failed writes do not stop the rest. An invalid snapshot throws before
 * anything is written. Returns what was not restored, so the caller can keep a record of it.
 */
export async function restoreAsFarAsSafe(snapshot: KsmSnapshot, reservePercent: number, opts: KsmOptions & { force?: boolean } = {}): Promise<RestoreOutcome> {
  const checked = parseSnapshot(snapshot, 'the snapshot');
  const { settings, counters } = await readKsm(opts);
  const merged = (counters.pages_shared ?? 0) + (counters.pages_sharing ?? 0) + (counters.ksm_zero_pages ?? 0);
  const differing = NEEDS_UNMERGE.filter((n) => n in checked.files && checked.files[n] !== formatCurrent(settings[n]));
  if (opts.force === true || merged === 0 || differing.length === 0 || (await unmergeHeadroom(reservePercent, opts)).ok) {
    return { leftOut: [], failures: await applySnapshot(checked, opts) };
  }
  const files = { ...checked.files };
  for (const n of differing) delete files[n];
  return { leftOut: [...differing], failures: await applySnapshot({ ...checked, files }, opts) };
}

/**
 * restoreAsFarAsSafe for callers that treat any failed write as an error: throws
 * RestoreIncompleteError then; returns the files left out for want of memory.
 */
export async function restoreWithHeadroom(snapshot: KsmSnapshot, reservePercent: number, opts: KsmOptions = {}): Promise<string[]> {
  const outcome = await restoreAsFarAsSafe(snapshot, reservePercent, opts);
  if (outcome.failures.length > 0) throw new RestoreIncompleteError(outcome.failures);
  return outcome.leftOut;
}

function formatCurrent(v: number | boolean | undefined): string | undefined {
  if (v === undefined) return undefined;
  return typeof v === 'boolean' ? (v ? '1' : '0') : String(v);
}

/** run=2, if memory allows; returns the headroom it judged by. */
export async function unmergeAll(reservePercent: number, opts: KsmOptions = {}): Promise<Headroom> {
  const h = await unmergeHeadroom(reservePercent, opts);
  if (h.ok) await setKsm({ run: 2 }, opts);
  return h;
}
