// ksm-agent vms and estimate against two real TCG guests and the real KSM: vms finds both by
// name; estimate, run before KSM, predicts what ksmd reaches after convergence (exactly with THP
// off, within 1% with THP on); and the per-VM saved bytes add up to general_profit. The guests
// are frozen (SIGSTOP) from the estimate to the end of the comparison, so the prediction and ksmd
// see the same memory. KSM settings are saved and restored around the KSM part.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { readKsm, setKsm, snapshotSettings } from '../lib/index.js';
import { startGuests, stopAll } from '../scripts/qemu/harness.js';
import type { FillSpec, Guest } from '../scripts/qemu/harness.js';
import { freeze, runCli, runCliJson, thaw, waitForQuietHost } from './helpers/agent.js';
import { withSavedKsm } from './helpers/ksm.js';

const FILL: FillSpec = {
  zero: { MiB: 24 },
  shared: { amount: { MiB: 40 }, blockPages: 64, seed: 42 },
  runs: { count: 32, length: 16, seed: 7 },
  hot: { copies: 300, seed: 5 },
  unique: { amount: { MiB: 12 }, source: 'name' },
};

interface Estimate {
  pages_shared: number;
  pages_sharing: number;
  ksm_zero_pages: number;
  general_profit: number;
  sources: { pid: number; name: string; pages: number; merging_pages: number }[];
  matrix: number[][];
}

interface VmRow {
  name: string;
  pid: number | null;
  ram_bytes: number | null;
  ksm_pages: number;
  saved_bytes: number;
  top_peer: { name: string; pid: number } | null;
}

test.after.always(async () => {
  await stopAll();
});

/** Runs ksmd fast until two full passes in a row change neither pages_shared nor pages_sharing. */
async function converge(): Promise<{ shared: number; sharing: number; passes: number }> {
  await setKsm({ run: 2 });
  await setKsm({ pages_to_scan: 5000, sleep_millisecs: 20, run: 1 });
  const start = (await readKsm()).counters.full_scans ?? 0;
  let last = { scans: start, key: '' };
  let steadyPasses = 0;
  for (let i = 0; i < 1200; i++) {
    await sleep(200);
    const c = (await readKsm()).counters;
    const scans = c.full_scans ?? 0;
    if (scans === last.scans) continue;
    const key = `${c.pages_shared}/${c.pages_sharing}`;
    steadyPasses = key === last.key ? steadyPasses + (scans - last.scans) : 0;
    last = { scans, key };
    if (scans - start >= 4 && steadyPasses >= 2) break;
  }
  await setKsm({ run: 0 });
  const c = (await readKsm()).counters;
  return { shared: c.pages_shared ?? 0, sharing: c.pages_sharing ?? 0, passes: (c.full_scans ?? 0) - start };
}

async function predictAndMerge(t: ExecutionContext, guests: Guest[], exact: boolean): Promise<void> {
  const pids = guests.map((g) => g.pid);
  await waitForQuietHost(pids);
  const names = guests.map((g) => g.name);
  freeze(pids);
  try {
    const before = await snapshotSettings();
    const est = await runCliJson<Estimate>(['estimate', ...names.flatMap((n) => ['--vm', n]), '--json']);
    t.deepEqual((await snapshotSettings()).files, before.files, 'estimate changed no KSM setting');
    t.deepEqual(est.sources.map((s) => [s.name, s.pid]), guests.map((g) => [g.name, g.pid]));
    t.true(est.pages_sharing > 0);
    // The guests were filled alike: each shares pages with the other.
    t.true((est.matrix[0]?.[1] ?? 0) > 0 && (est.matrix[1]?.[0] ?? 0) > 0, JSON.stringify(est.matrix));

    await withSavedKsm(async () => {
      if ((await readKsm()).settings.use_zero_pages !== false) await setKsm({ use_zero_pages: false });
      t.deepEqual(await waitForQuietHost(pids, 0).then(() => []), []);
      const kernel = await converge();
      t.log(`THP ${guests[0]?.thp ? 'on' : 'off'}: estimate ${est.pages_shared}/${est.pages_sharing}, kernel ${kernel.shared}/${kernel.sharing} after ${kernel.passes} passes`);
      if (exact) {
        t.is(kernel.shared, est.pages_shared, 'pages_shared');
        t.is(kernel.sharing, est.pages_sharing, 'pages_sharing');
      } else {
        t.true(Math.abs(kernel.shared - est.pages_shared) <= 0.01 * kernel.shared, `pages_shared within 1%: ${est.pages_shared} vs ${kernel.shared}`);
        t.true(Math.abs(kernel.sharing - est.pages_sharing) <= 0.01 * kernel.sharing, `pages_sharing within 1%: ${est.pages_sharing} vs ${kernel.sharing}`);
      }

      // Per-VM savings, attributed fairly, sum to general_profit (nothing else merges here).
      const rows = await runCliJson<VmRow[]>(['vms', '--json']);
      const profit = (await readKsm()).counters.general_profit ?? 0;
      const ours = rows.filter((r) => r.pid !== null && pids.includes(r.pid));
      t.is(ours.length, 2);
      t.is(rows.find((r) => r.name === '(other processes)'), undefined, JSON.stringify(rows));
      t.is(ours.reduce((a, r) => a + r.saved_bytes, 0), profit);
      for (const [i, r] of ours.entries()) {
        t.true(r.saved_bytes > 0);
        t.is(r.top_peer?.name, names[1 - i]);
      }
      const human = await runCli(['vms']);
      t.regex(human.stdout, /^total +\S+ \S+ +general_profit$/m);
    });
  } finally {
    thaw(pids);
  }
}

test.serial('vms finds both guests by name; estimate before KSM equals the kernel after convergence (THP off)', async (t) => {
  const guests = await startGuests([
    { name: 'vms-a', memMiB: 320, thp: false, fill: FILL },
    { name: 'vms-b', memMiB: 320, thp: false, fill: FILL },
  ]);
  const rows = await runCliJson<VmRow[]>(['vms', '--json']);
  for (const g of guests) {
    const row = rows.find((r) => r.name === g.name);
    t.truthy(row, `${g.name} listed: ${JSON.stringify(rows.map((r) => r.name))}`);
    t.is(row?.pid, g.pid);
    t.is(row?.ram_bytes, 320 * 2 ** 20);
  }
  const table = await runCli(['vms']);
  t.is(table.code, 0, table.stderr);
  for (const g of guests) t.regex(table.stdout, new RegExp(`^${g.name} +${g.pid} +320 MiB`, 'm'));
  await predictAndMerge(t, guests, true);
  await stopAll();
});

test.serial('estimate before KSM is within 1% of the kernel with THP-backed guest RAM', async (t) => {
  const guests = await startGuests([
    { name: 'thp-a', memMiB: 320, thp: true, fill: FILL },
    { name: 'thp-b', memMiB: 320, thp: true, fill: FILL },
  ]);
  await predictAndMerge(t, guests, false);
  await stopAll();
});
