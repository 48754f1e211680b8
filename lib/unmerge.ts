// Writing run=2 unmerges every KSM page at once: each merged mapping needs its own page again.
// Without free memory to absorb that the OOM killer steps in, so nothing in samepage writes
// run=2 unless MemAvailable covers the pages it would take back plus a reserve.
import { readKsm, restoreSettings, setKsm } from './sysfs.js';
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

/**
 * Restores a snapshot, but when that would need run=2 (max_page_sharing or merge_across_nodes
 * differ while pages are merged) and memory is short, those files are left as they are.
 * Returns the files left out.
 */
export async function restoreWithHeadroom(snapshot: KsmSnapshot, reservePercent: number, opts: KsmOptions = {}): Promise<string[]> {
  const { settings, counters } = await readKsm(opts);
  const merged = (counters.pages_shared ?? 0) + (counters.pages_sharing ?? 0) + (counters.ksm_zero_pages ?? 0);
  const differing = NEEDS_UNMERGE.filter((n) => n in snapshot.files && snapshot.files[n] !== formatCurrent(settings[n]));
  if (merged === 0 || differing.length === 0 || (await unmergeHeadroom(reservePercent, opts)).ok) {
    await restoreSettings(snapshot, opts);
    return [];
  }
  const files = { ...snapshot.files };
  for (const n of differing) delete files[n];
  await restoreSettings({ ...snapshot, files }, opts);
  return [...differing];
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
