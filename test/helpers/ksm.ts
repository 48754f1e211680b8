// Test helpers for tests that change the host-wide KSM settings: they always put them back.
import { readKsm, restoreSettings, setKsm, snapshotSettings } from '../../lib/sysfs.js';
import type { KsmOptions, KsmSnapshot } from '../../lib/sysfs.js';
import { lockKsm } from '../../lib/ksm-lock.js';

/** The signals a benchmark or test is stopped with (Ctrl-C, kill, a closed terminal). */
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Runs `fn` with the KSM settings saved, and restores them afterwards, also when `fn` throws.
 * Pages merged meanwhile are unmerged first (run=2), because restoring run=0 alone would leave
 * them merged; the saved run value is written last.
 *
 * Also when the process is stopped by a signal meanwhile: its default action would end the
 * process before any finally ran (and scripts/qemu/cleanup.ts re-raises it once the guests are
 * killed, unless another listener is there), leaving ksmd as `fn` set it, e.g. at a benchmark's
 * pages_to_scan. So while `fn` runs, a listener restores first and then dies by the signal.
 */
export async function withSavedKsm<T>(fn: (snapshot: KsmSnapshot) => Promise<T>, opts: KsmOptions = {}): Promise<T> {
  // Only the real tree is shared with other tests (and the C tests): take the project's lock so
  // no two of them change KSM at once. A fake tree needs no lock.
  const release = opts.root === undefined ? await lockKsm() : () => undefined;
  try {
    const snapshot = await snapshotSettings(opts);
    let restoring: Promise<void> | undefined;
    const restoreOnce = (): Promise<void> => (restoring ??= unmergeAndRestore(snapshot, opts));
    const stopListening = (): void => {
      for (const s of STOP_SIGNALS) process.removeListener(s, onSignal);
    };
    const onSignal = (signal: NodeJS.Signals): void => {
      void restoreOnce()
        .catch((err: unknown) => process.stderr.write(`KSM settings not restored after ${signal}: ${(err as Error).message}\n`))
        .finally(() => {
          stopListening();
          release();
          process.kill(process.pid, signal);
        });
    };
    for (const s of STOP_SIGNALS) process.on(s, onSignal);
    try {
      return await fn(snapshot);
    } finally {
      await restoreOnce().finally(stopListening);
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
