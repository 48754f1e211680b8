// A real merge: a child fills mergeable memory with a known duplicate mix; the scanner predicts
// from its live memory; then the kernel's KSM runs; the child's ksm_merging_pages, its pagemap
// count (livePages) and the prediction agree. Host KSM settings are saved and restored.
import test from 'ava';

import { Scanner, livePages, liveSharing, readKsm, readKsmMergingPages, readKsmStat, setKsm } from '../lib/index.js';
import { withSavedKsm } from './helpers/ksm.js';
import { startFixture } from './helpers/node-child.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function predict(pid: number, useZeroPages: boolean): Promise<{ shared: number; sharing: number; merging: number; zero: number }> {
  const { settings } = await readKsm();
  const s = new Scanner({ useZeroPages, maxPageSharing: settings.max_page_sharing ?? 256, smartScan: settings.smart_scan ?? true });
  await s.addProcess(pid, { name: 'mix' });
  const r = await s.scan({ passes: 8, intervalMs: 20 });
  await s.close();
  const src = r.sources[0];
  return { shared: r.counters.pages_shared, sharing: r.counters.pages_sharing, merging: src?.mergingPages ?? -1, zero: src?.zeroPages ?? -1 };
}

for (const useZeroPages of [false, true]) {
  test.serial(`prediction, ksm_merging_pages and pagemap agree (use_zero_pages=${useZeroPages ? 1 : 0})`, async (t) => {
    const child = await startFixture<{ ready: boolean }>('mix-child', ['1024']);
    try {
      const want = await predict(child.pid, useZeroPages);
      // 256 copies of one page, 8 x 32 copies, 256 zero pages, 256 unique pages.
      t.deepEqual(want, useZeroPages ? { shared: 9, sharing: 255 + 8 * 31, merging: 512, zero: 256 } : { shared: 10, sharing: 758, merging: 768, zero: 0 });
      await withSavedKsm(async () => {
        await setKsm({ run: 2 });
        await setKsm({ use_zero_pages: useZeroPages, pages_to_scan: 5000, sleep_millisecs: 10, run: 1 });
        const start = (await readKsm()).counters.full_scans ?? 0;
        let merging = -1;
        for (let i = 0; i < 600; i++) {
          await sleep(100);
          merging = (await readKsmMergingPages(child.pid)) ?? -1;
          const scans = ((await readKsm()).counters.full_scans ?? 0) - start;
          if (scans >= 6 && merging === want.merging) break;
        }
        const stat = await readKsmStat(child.pid);
        const [live] = await livePages([child.pid]);
        t.is(merging, want.merging);
        t.is(stat.ksm_merging_pages, want.merging);
        t.is(stat.ksm_zero_pages, want.zero);
        t.is(live?.ksmPages, want.merging);
        // The only KSM user on the host: its fair share is all of pages_sharing.
        t.is(Math.round(live?.savedPages ?? -1), want.sharing);
        // Two views of the same process: each maps every KSM page the other maps.
        const pair = await liveSharing([child.pid, child.pid]);
        t.deepEqual(pair.matrix, [
          [0, want.merging],
          [want.merging, 0],
        ]);
      });
    } finally {
      await child.stop();
    }
  });
}

test.serial('PR_SET_MEMORY_MERGE turns KSM on for a whole process', async (t) => {
  const child = await startFixture<{ ready: boolean; memoryMerge: boolean }>('mix-child', ['64', '--prctl']);
  try {
    t.true(child.hello.memoryMerge);
    const stat = await readKsmStat(child.pid);
    if (stat.ksm_merge_any !== undefined) t.true(stat.ksm_merge_any);
  } finally {
    await child.stop();
  }
});
