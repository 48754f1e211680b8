// A Linux 6.1 KSM directory (no general_profit, ksm_zero_pages, pages_scanned, smart_scan or
// advisor_*: test/helpers/fake-sysfs.ts, from a real 6.1 host) read through the library's root
// override, since this host's kernel has every file: the savings come from the page counters and
// are marked an estimate, the policy's rates come from ksmd's settings, the metrics leave out what
// the kernel lacks, and no figure anywhere is NaN.
import test from 'ava';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { attributeSavings } from '../lib/attribution.js';
import { createMetrics } from '../lib/agent/metrics.js';
import type { AgentSnapshot } from '../lib/agent/metrics.js';
import { DEFAULTS } from '../lib/agent/config.js';
import { Policy } from '../lib/agent/policy.js';
import { vmTable } from '../lib/cli/commands/vms.js';
import { fullPassSeconds, hostSavings, rates } from '../lib/sample.js';
import type { Sample } from '../lib/sample.js';
import { readKsm } from '../lib/sysfs.js';
import { vmRows } from '../lib/vm-rows.js';
import { KSM_6_1, makeFakeKsm, removeFakeTrees } from './helpers/fake-sysfs.js';
import type { FakeFiles } from './helpers/fake-sysfs.js';

test.after.always(removeFakeTrees);

const GIB = 2 ** 30;
const MEMORY = { totalBytes: 16 * GIB, freeBytes: GIB, availableBytes: GIB, buffersBytes: 0, cachedBytes: 0 };

/** A 6.1 tree with ksmd running at the kernel's boot rate (100 pages every 20 ms). */
async function kernel61(counters: Record<string, number>): Promise<string> {
  const files: FakeFiles = { ...KSM_6_1, run: ['1\n', 0o644] };
  for (const [name, value] of Object.entries(counters)) files[name] = [`${value}\n`, 0o444];
  return makeFakeKsm(files);
}

async function setCounters(root: string, counters: Record<string, number>): Promise<void> {
  for (const [name, value] of Object.entries(counters)) await writeFile(path.join(root, name), `${value}\n`);
}

/** A reading of the fake tree at `seconds`, with ksmd's CPU time in clock ticks (100 a second). */
async function sampleAt(root: string, seconds: number, ksmdTicks: number): Promise<Sample> {
  return { at: 1_700_000_000_000 + seconds * 1000, mono: seconds * 1000, ksm: await readKsm({ root }), memory: MEMORY, ksmdTicks };
}

test('savings without general_profit: the kernel\'s formula from the page counters, marked an estimate', async (t) => {
  const root = await kernel61({ pages_shared: 1000, pages_sharing: 9000, pages_unshared: 3000, pages_volatile: 500 });
  const k = await readKsm({ root });
  t.is(k.counters.general_profit, undefined);
  t.is(k.counters.ksm_zero_pages, undefined);
  // (9000 + 0) × 4096 − (1000 + 9000 + 3000 + 500) × 64
  t.deepEqual(hostSavings(k.counters), { bytes: 36_000_000, estimated: true });
  // On a kernel with general_profit, that file is the answer as it is.
  t.deepEqual(hostSavings({ ...k.counters, general_profit: 123 }), { bytes: 123, estimated: false });

  // ksm-agent vms with no VMs using KSM: everything is "(other processes)", and the total says
  // how it was computed.
  const s = hostSavings(k.counters);
  const rows = vmRows(await attributeSavings([], s.bytes), () => ({ tenant: null, optedOut: false }));
  const table = vmTable(rows, s.bytes, s.estimated).split('\n').map((l) => l.trimEnd());
  t.is(table.length, 3, table.join('\n'));
  t.regex(table[1] as string, /^\(other processes\)\s+34\.3 MiB$/);
  t.regex(table[2] as string, /^total\s+34\.3 MiB\s+estimate \(no general_profit before Linux 6\.4\): pages_sharing × 4096 − tracked pages × 64$/);
  t.notRegex(table.join('\n'), /NaN|undefined/);
  // The same table on a kernel with general_profit names that file.
  t.regex(vmTable(rows, s.bytes).split('\n')[2] as string, /general_profit$/);
});

test('rates without pages_scanned: pages visited from pages_to_scan, sleep_millisecs and ksmd\'s CPU', async (t) => {
  const root = await kernel61({ pages_shared: 1000, pages_sharing: 9000, pages_unshared: 3000, pages_volatile: 500, full_scans: 7 });
  const a = await sampleAt(root, 10, 500);
  await setCounters(root, { pages_sharing: 9500, full_scans: 8 });
  // Two seconds later ksmd has used 0.2 s of CPU (20 ticks): it slept 90% of the time, in naps
  // of 20 ms after each batch of 100 pages, so it visited 100 × 0.9 × 1000 / 20 = 4500 a second.
  const b = await sampleAt(root, 12, 520);
  const r = rates(a, b);
  t.like(r, { seconds: 2, ksmdCpu: 0.1, merged: 500, fullScans: 1, visitedPerSecond: 4500, visitedEstimated: true });
  t.is(r.scanned, undefined, 'nothing pretends to be pages_scanned');
  t.is(r.scannedPerSecond, undefined);
  t.is(r.yield, 500 / 9000);
  t.is(fullPassSeconds(b, r), 14_000 / 4500);
  // ksmd stopped: it visits nothing, whatever its settings.
  await setCounters(root, {});
  await writeFile(path.join(root, 'run'), '0\n');
  const c = await sampleAt(root, 14, 520);
  t.like(rates(c, { ...c, mono: 16_000 }), { visitedPerSecond: 0, visitedEstimated: true, merged: 0 });
  t.is(rates(c, { ...c, mono: 16_000 }).yield, undefined);
});

test('the policy on 6.1: the ramp (no advisor), passes judged on the pages ksmd tracks, every figure finite', async (t) => {
  const root = await kernel61({ pages_shared: 0, pages_sharing: 0, pages_unshared: 20_000, pages_volatile: 0, full_scans: 0 });
  const policy = new Policy({ ...DEFAULTS, cpuBudgetPercent: 20 });
  const step = async (seconds: number, ticks: number, counters: Record<string, number>) => {
    await setCounters(root, counters);
    const d = policy.step({ sample: await sampleAt(root, seconds, ticks), pressure: true, vmsChanged: false, hasAdvisor: false, candidatePages: 20_000 });
    // What the daemon would write next, as ksmd's settings in the tree.
    for (const [name, value] of Object.entries(d.settings)) await writeFile(path.join(root, name), `${String(value)}\n`);
    return d;
  };
  const first = await step(0, 0, {});
  t.is(first.state, 'merging');
  t.is(first.mode, 'ramp');
  // At a 20% budget and the prior 1 µs a page: batches of 5 ms of CPU, 20 ms of sleep.
  t.deepEqual(first.settings, { pages_to_scan: 5000, sleep_millisecs: 20, run: 1 });
  t.false('advisor_mode' in first.settings, 'no advisor file is written on a kernel without one');

  // Passes that merge: a pass visits the 20 000 tracked pages; 2000 new merges is a gain.
  let d = await step(2, 40, { pages_shared: 500, pages_sharing: 2000, pages_unshared: 17_500, full_scans: 1 });
  t.is(d.state, 'merging');
  const finite = (x: unknown) => typeof x !== 'number' || Number.isFinite(x);
  for (const v of [d.yieldEstimate, d.costPerPage, d.targetCpu, d.volatileShare, ...Object.values(d.settings), ...Object.values(d.rates ?? {})]) t.true(finite(v), JSON.stringify(d));
  t.true(d.rates?.visitedEstimated);
  // Then three passes without a gain (fewer than 16 new merges each): settled, ksmd stopped.
  for (let pass = 2; pass <= 4; pass++) d = await step(2 * pass, 40 * pass, { pages_sharing: 2000 + pass, full_scans: pass });
  t.is(d.state, 'settled', d.transition);
  t.regex(d.transition ?? '', /3 full passes in a row gained almost nothing/);
  t.deepEqual(d.settings, { run: 0 });
});

test('metrics on 6.1: what the kernel lacks has no sample (not a made-up 0), the rest equals the files', async (t) => {
  const root = await kernel61({ pages_shared: 1000, pages_sharing: 9000, pages_unshared: 3000, pages_volatile: 500, full_scans: 7 });
  const agent: AgentSnapshot = { cpuBudget: 0.2, ticks: 3, settingWrites: 1, errors: 0, tenantWarnings: 0, cacheBytesReclaimed: 0, startedAt: 1_700_000_000_000 };
  const endpoint = createMetrics({
    readKsm: () => readKsm({ root }),
    ksmdCpuSeconds: () => Promise.resolve(12.5),
    cowKsm: () => Promise.resolve(undefined),
    vmSavings: async () => attributeSavings([], hostSavings((await readKsm({ root })).counters).bytes),
    vmPolicies: () => [],
    crossTenant: () => [],
    fingerprints: () => undefined,
    agent: () => agent,
  });
  const text = await endpoint.metrics();
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line === '') continue;
    const i = line.lastIndexOf(' ');
    samples.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  t.notRegex(text, /NaN/);
  for (const absent of ['node_ksmd_general_profit_bytes', 'samepage_ksm_pages_scanned_total', 'samepage_ksm_pages_skipped_total', 'samepage_ksm_zero_pages', 'samepage_cow_ksm_total']) {
    t.false(samples.has(absent), `${absent} has no sample`);
    t.regex(text, new RegExp(`^# TYPE ${absent} `, 'm'), `${absent} is still declared`);
  }
  t.is(samples.get('node_ksmd_pages_sharing'), 9000);
  t.is(samples.get('node_ksmd_full_scans_total'), 7);
  t.is(samples.get('node_ksmd_sleep_seconds'), 0.02);
  t.is(samples.get('node_ksmd_run'), 1);
  t.is(samples.get('samepage_ksm_setting{setting="pages_to_scan"}'), 100);
  t.false(samples.has('samepage_ksm_setting{setting="smart_scan"}'));
  t.is(samples.get('samepage_ksmd_cpu_seconds_total'), 12.5);
  t.is(samples.get('samepage_other_saved_bytes'), 36_000_000, 'the estimate, all of it "other processes" with no VMs');
  t.is(samples.get('samepage_agent_ticks_total'), 3);
  t.is(samples.get('samepage_agent_yield_ratio'), 0, 'the agent\'s own gauges read 0 before they have a value');
  t.is(samples.get('samepage_agent_state{state="off"}'), 1);
});
