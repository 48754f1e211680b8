// Test helpers for tests that change the host-wide KSM settings: they always put them back.
import { readKsm, restoreSettings, setKsm, snapshotSettings } from '../../lib/sysfs.js';
import type { KsmOptions, KsmSnapshot } from '../../lib/sysfs.js';
import { lockKsm } from '../../lib/ksm-lock.js';

/**
 * Runs `fn` with the KSM settings saved, and restores them afterwards, also when `fn` throws.
 * Pages merged meanwhile are unmerged first (run=2), because restoring run=0 alone would leave
 * them merged; the saved run value is written last.
 */
export async function withSavedKsm<T>(fn: (snapshot: KsmSnapshot) => Promise<T>, opts: KsmOptions = {}): Promise<T> {
  // Only the real tree is shared with other tests (and the C tests): take the project's lock so
  // no two of them change KSM at once. A fake tree needs no lock.
  const release = opts.root === undefined ? await lockKsm() : () => undefined;
  try {
    const snapshot = await snapshotSettings(opts);
    try {
      return await fn(snapshot);
    } finally {
      await unmergeAndRestore(snapshot, opts);
    }
  } finally {
    release();
  }
}

/** Unmerges every KSM page if any exist, then restores `snapshot` (even if unmerging failed). */
export async function unmergeAndRestore(snapshot: KsmSnapshot, opts: KsmOptions = {}): Promise<void> {
  try {
    const { counters } = await readKsm(opts);
    const merged = (counters.pages_shared ?? 0) + (counters.pages_sharing ?? 0) + (counters.ksm_zero_pages ?? 0);
    if (merged > 0) await setKsm({ run: 2 }, opts);
  } finally {
    await restoreSettings(snapshot, opts);
  }
}
