// The status page of `ksm-agent run`, for real: two TCG guests with pages in common, one of them
// reading a disk image so the exclusive-cache scrub has host page cache to drop; a real agent
// (KSM on from the start, cache scrub every 10 s) and Debian's Chromium through playwright-core.
// The page must load without a console error, every chart must paint its series' colours, the
// per-VM rows must equal `ksm-agent vms --json`, and /api/ must agree with sysfs and /metrics. A
// 1280×800 screenshot goes to test-artifacts/status-page.png. Everything that changes KSM runs
// inside withSavedKsm; the guests are frozen (SIGSTOP) and the agent settled before figures are
// compared, so nothing moves between the readings.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readKsm, setKsm } from '../lib/index.js';
import { formatBytes, formatCount } from '../lib/format.js';
import type { HistoryResponse, MatrixResponse, SummaryResponse, VmRow, VmsResponse } from '../lib/api-types.js';
import { startGuests, stopAll } from '../scripts/qemu/harness.js';
import type { FillSpec } from '../scripts/qemu/harness.js';
import { foreignMergeable, freeze, runCliJson, startAgent, thaw, waitForQuietHost } from './helpers/agent.js';
import type { AgentProcess } from './helpers/agent.js';
import { openBrowser, pngSize } from './helpers/browser.js';
import type { Browser } from './helpers/browser.js';
import { holdDisk, readDisk } from './helpers/cache-guest.js';
import { withSavedKsm } from './helpers/ksm.js';
import { parseSamples } from './helpers/promql.js';
import { PROBE } from './helpers/page-probe.js';
import type { PageProbe } from './helpers/page-probe.js';

const ROOT = path.resolve(__dirname, '../..');
export const SCREENSHOT = path.join(ROOT, 'test-artifacts', 'status-page.png');
/** How long the page watches KSM work before the figures are frozen (longer: a fuller picture). */
const WATCH_SECONDS = Number(process.env.SAMEPAGE_STATUS_PAGE_SECONDS ?? 40);
const FILL: FillSpec = { zero: { MiB: 16 }, shared: { amount: { MiB: 40 }, blockPages: 64, seed: 11 }, hot: { copies: 300, seed: 12 }, unique: { amount: { MiB: 8 }, source: 'name' } };
const IMAGE_MIB = 16;
const CHARTS = ['saved', 'pages', 'scan', 'cache', 'vms', 'matrix'];

let dir = '';
let agent: AgentProcess | undefined;
let browser: Browser | undefined;
let agentLog: string[] = [];

test.before(async () => {
  // /var/tmp, not /tmp: the scrub drops page cache, which a tmpfs cannot give back.
  dir = await mkdtemp('/var/tmp/samepage-status-page-');
});
test.after.always(async () => {
  await browser?.close();
  await agent?.stop('SIGKILL');
  await stopAll();
  await rm(dir, { recursive: true, force: true });
});

async function get<T>(base: string, p: string): Promise<T> {
  const res = await fetch(`${base}${p}`);
  if (!res.ok) throw new Error(`GET ${p}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

/** Polls `read` until `done` holds (or throws with the last value after `ms`). */
async function until<T>(what: string, read: () => Promise<T>, done: (v: T) => boolean, ms: number): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await read();
    if (done(v)) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(v).slice(0, 600)}`);
    await sleep(1000);
  }
}

test.serial('ksm-agent run serves a status page: charts drawn, per-VM rows = ksm-agent vms --json, /api/ = sysfs', async (t) => {
  t.timeout(420_000);
  // On a failure, the agent's log says what it did (ticks, state changes, scrubs).
  let finished = false;
  t.teardown(() => {
    if (agentLog.length > 0 && !finished) console.error(`ksm-agent log (last 60 lines):\n${agentLog.slice(-60).join('\n')}`);
  });
  const image = path.join(dir, 'disk.img');
  await writeFile(image, randomBytes(IMAGE_MIB << 20));
  const guests = await startGuests([
    { name: 'page-a', memMiB: 256, thp: false, fill: FILL, disks: [{ path: image, format: 'raw', cache: 'writeback' }] },
    { name: 'page-b', memMiB: 256, thp: false, fill: FILL },
  ]);
  const [ga, gb] = guests as [(typeof guests)[number], (typeof guests)[number]];
  // The guest reads its disk and keeps it cached; the host caches the image too (writeback).
  await holdDisk(ga);
  await readDisk(ga);
  const pids = guests.map((g) => g.pid);
  await waitForQuietHost(pids);

  await withSavedKsm(async () => {
    // Start from nothing merged, so the page shows the agent's own work.
    await setKsm({ run: 2 });
    await setKsm({ run: 0 });
    const config = path.join(dir, 'agent.json');
    await writeFile(
      config,
      JSON.stringify({
        thresholdPercent: 100, // memory is "short" from the start: KSM merges at once
        ksmtunedConf: null,
        intervalSeconds: 1,
        cpuBudgetPercent: 50,
        listen: '127.0.0.1:0',
        vmMetricsSeconds: 1,
        cache: { enabled: true, intervalSeconds: 10, vms: ['page-a'] },
      }),
    );
    agent = startAgent(['--config', config, '--state-file', path.join(dir, 'state.json'), '--lock-file', path.join(dir, 'agent.lock')]);
    agentLog = agent.lines;
    const base = (await agent.metricsUrl()).replace(/\/metrics$/, '');
    await agent.waitForLine(/started pid=\d+ state=merging/);

    browser = await openBrowser({ width: 1280, height: 800 });
    const { page, problems } = browser;
    const res = await page.goto(`${base}/`);
    t.is(res?.status(), 200);
    t.regex(res?.headers()['content-security-policy'] ?? '', /script-src 'self' 'sha256-/);
    await page.waitForSelector('body[data-rendered]', { timeout: 30_000 });

    // Watch KSM merge the guests and the scrub reclaim the cached image, point by point.
    const watchEnd = Date.now() + WATCH_SECONDS * 1000;
    await until('merged pages and a cache scrub', () => get<SummaryResponse>(base, '/api/summary'), (s) => s.ksm.pages_sharing > 5000 && s.cache.bytes_reclaimed_total > 0, 150_000);
    if (Date.now() < watchEnd) await sleep(watchEnd - Date.now());

    // KSM merges every mergeable process: another one started meanwhile would move the figures.
    const others = await foreignMergeable(pids);
    if (others.length > 0) throw new Error(`other mergeable processes started during the test (${others.join(', ')}): KSM merges them too; run it on a host where nothing else is mergeable`);
    // Freeze the guests; the agent stops ksmd when passes gain nothing: every figure stands still.
    freeze(pids);
    try {
      await until('the agent settled', () => get<SummaryResponse>(base, '/api/summary'), (s) => s.agent.state === 'settled' && s.ksm.run === 0, 150_000);
      const settledAt = Date.now() / 1000;
      // History: 10 s points, bounded, one more arrives after the settle.
      const h = await until('a history point after the settle', () => get<HistoryResponse>(base, '/api/history'), (x) => (x.columns.t.at(-1) ?? 0) > settledAt, 15_000);
      t.is(h.resolution_seconds, 10);
      t.is(h.capacity, 8640);
      t.is(h.size, h.columns.t.length);
      t.true(h.size >= 4, `points: ${h.size}`);
      for (const col of Object.values(h.columns)) t.is(col.length, h.size);
      const ts = h.columns.t as number[];
      const gaps = ts.slice(1).map((v, i) => v - (ts[i] as number));
      t.true(gaps.every((g) => g > 9 && g < 12), `10 s apart: ${gaps.map((g) => g.toFixed(2)).join(' ')}`);
      const since = await get<HistoryResponse>(base, `/api/history?since=${ts[ts.length - 2]}`);
      t.deepEqual(since.columns.t, [ts[ts.length - 1]]);
      t.true((h.columns.saved_bytes.at(-1) ?? 0) > (h.columns.saved_bytes[0] ?? 0), 'saved memory grew over the run');
      t.true(h.columns.scan_pages_per_second.some((v) => v !== null && v > 0), 'ksmd scanned');
      t.true(h.columns.ksmd_cpu_ratio.some((v) => v !== null && v > 0), 'ksmd used CPU');

      // A scrub may finish between two readings (it reclaims next to nothing once the image is
      // dropped): read until the summary and the metrics agree.
      const scrape = () => fetch(`${base}/metrics`).then((r) => r.text()).then(parseSamples);
      const [summary, metrics] = await until(
        'the summary and /metrics to agree',
        async () => [await get<SummaryResponse>(base, '/api/summary'), await scrape()] as const,
        ([s, m]) => m.get('samepage_agent_cache_bytes_reclaimed_total') === s.cache.bytes_reclaimed_total,
        10_000,
      );
      const { counters } = await readKsm();
      const ksm = { pages_shared: counters.pages_shared ?? -1, pages_sharing: counters.pages_sharing ?? -1, pages_volatile: counters.pages_volatile ?? -1, general_profit: counters.general_profit ?? -1 };
      t.is(summary.agent.state, 'settled');
      t.is(summary.ksm.pages_shared, ksm.pages_shared);
      t.is(summary.ksm.pages_sharing, ksm.pages_sharing);
      t.is(summary.ksm.general_profit, ksm.general_profit);
      t.is(h.columns.saved_bytes.at(-1), ksm.general_profit, 'the newest point is what sysfs says now');
      t.is(h.columns.pages_volatile.at(-1), ksm.pages_volatile);
      t.true(summary.cache.bytes_reclaimed_total >= 0.9 * (IMAGE_MIB << 20), `reclaimed ${summary.cache.bytes_reclaimed_total}`);
      t.is(metrics.get('node_ksmd_pages_sharing'), ksm.pages_sharing);
      t.true((h.columns.cache_bytes_reclaimed.at(-1) ?? 0) >= 0.9 * (IMAGE_MIB << 20));
      t.true((h.columns.cache_bytes_reclaimed.at(-1) ?? 0) <= summary.cache.bytes_reclaimed_total);

      // The matrix from the live page tables, read after the settle (it is cached up to 30 s).
      const matrix = await until('a matrix read after the settle', () => get<MatrixResponse>(base, '/api/matrix'), (m) => (m.at ?? 0) > settledAt, 40_000);
      t.deepEqual(matrix.names, ['page-a', 'page-b']);
      t.deepEqual(matrix.pids, [ga.pid, gb.pid]);

      // The page, reloaded now, against the CLI.
      await page.reload();
      await page.waitForSelector('body[data-rendered="1"]', { timeout: 30_000 });
      const probe = await page.evaluate<PageProbe>(PROBE);
      // The picture first: it is what to look at when a check below fails.
      mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
      await page.screenshot({ path: SCREENSHOT });
      t.deepEqual(pngSize(readFileSync(SCREENSHOT)), { width: 1280, height: 800 });
      const cli = await runCliJson<VmRow[]>(['vms', '--json']);
      const api = await get<VmsResponse>(base, '/api/vms');
      t.deepEqual(api.vms, cli, '/api/vms rows = ksm-agent vms --json');
      t.deepEqual(
        probe.rows.map((r) => [r.name, r.pid, r.ramBytes, r.ksmPages, r.savedBytes, r.topPeer, r.topPeerPages]),
        cli.map((r) => [r.name, r.pid === null ? '' : String(r.pid), r.ram_bytes === null ? '' : String(r.ram_bytes), String(r.ksm_pages), String(r.saved_bytes), r.top_peer?.name ?? '', r.top_peer === null ? '' : String(r.top_peer.pages)]),
        'page rows = ksm-agent vms --json',
      );
      // What people read: the CLI's own formatting of the same figures.
      for (const [i, r] of probe.rows.entries()) {
        const c = cli[i] as VmRow;
        t.deepEqual(r.cells.slice(0, 5), [c.name, c.pid === null ? '' : String(c.pid), c.ram_bytes === null ? '' : formatBytes(c.ram_bytes), c.pid === null ? '' : formatCount(c.ksm_pages), formatBytes(c.saved_bytes)]);
      }
      const ours = cli.filter((r) => r.pid !== null && pids.includes(r.pid));
      t.is(ours.length, 2);
      for (const r of ours) {
        t.true(r.saved_bytes > 0, `${r.name} saves memory`);
        const other = r.name === 'page-a' ? 'page-b' : 'page-a';
        t.is(r.top_peer?.name, other);
        // The matrix cell (row VM, column peer) counts what the CLI's top peer counts.
        const i = matrix.names.indexOf(r.name);
        t.is(matrix.pages[i]?.[matrix.names.indexOf(other)] ?? -1, r.top_peer?.pages ?? -2, `matrix[${r.name}][${other}]`);
        t.is(matrix.pages[i]?.[i] ?? -1, 0);
        t.is(matrix.ksm_pages[i], r.ksm_pages);
      }
      t.is(ours.reduce((a, r) => a + r.saved_bytes, 0) + (cli.find((r) => r.pid === null)?.saved_bytes ?? 0), ksm.general_profit);

      // Every chart painted every series it declares.
      t.deepEqual(probe.charts.map((c) => c.name).sort(), [...CHARTS].sort());
      for (const c of probe.charts) {
        t.true(c.width > 100 && c.height > 100, `${c.name}: canvas ${c.width}×${c.height}`);
        t.true(c.painted > 1000, `${c.name}: ${c.painted} pixels painted`);
        t.true(Object.keys(c.colors).length > 0, `${c.name} declares the colours it drew`);
        for (const [color, n] of Object.entries(c.colors)) t.true(n >= 10, `${c.name}: ${n} pixels of ${color}`);
        // Reloaded after /api/history was read: the page holds at least those points.
        if (!['vms', 'matrix'].includes(c.name)) t.true(c.points >= h.size, `${c.name}: ${c.points} points`);
      }
      // A bar of its own colour per VM (a non-VM remainder of a few KiB may be too short to draw).
      t.true(Object.keys(probe.charts.find((c) => c.name === 'vms')?.colors ?? {}).length >= ours.length, 'a bar per VM');

      t.log(`screenshot: ${SCREENSHOT}; ${h.size} points; saved ${summary.ksm.general_profit} bytes; matrix ${JSON.stringify(matrix.pages)}; reclaimed ${summary.cache.bytes_reclaimed_total} bytes`);

      // The API's own errors.
      t.is((await fetch(`${base}/api/history?since=yesterday`)).status, 400);
      t.is((await fetch(`${base}/api/nothing`)).status, 404);
      const index = await get<{ endpoints: { path: string }[] }>(base, '/api/');
      t.true(index.endpoints.length >= 5);
      t.deepEqual(problems, [], 'no console errors, failed requests or HTTP errors');
    } finally {
      thaw(pids);
    }
    await browser.close();
    browser = undefined;
    t.is(await agent.stop('SIGTERM'), 0);
    agent = undefined;
  });
  await stopAll();
  finished = true;
});
