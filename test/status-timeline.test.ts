// The status page's history on its own: a fixed-size ring (24 h at 10 s), the oldest points
// overwritten, memory allocated once; and points made from two real readings of this host's KSM.
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { HISTORY_COLUMNS } from '../lib/api-types.js';
import { toPoint } from '../lib/agent/web/sampler.js';
import { DAY_POINTS, RESOLUTION_SECONDS, Timeline } from '../lib/agent/web/timeline.js';
import { takeSample } from '../lib/sample.js';

test('24 h at 10 s: 8640 points at most, the oldest dropped, the memory fixed', (t) => {
  t.is(RESOLUTION_SECONDS, 10);
  t.is(DAY_POINTS, 8640);
  // The README's figure, written out: 11 columns × 8640 points × 8 bytes = 760 320 bytes (0.76 MB).
  t.is(HISTORY_COLUMNS.length, 11);
  const before = process.memoryUsage().arrayBuffers;
  const tl = new Timeline();
  const allocated = process.memoryUsage().arrayBuffers - before;
  t.is(tl.capacity, 8640);
  // byteLength sums the typed arrays the timeline really holds.
  const bytes = tl.byteLength;
  t.is(bytes, 760_320);
  // And the process's array-buffer memory grew by that much when the timeline was made (a
  // collection in between could free other buffers: allow 64 KiB less, never more than 64 KiB over).
  t.true(allocated > 760_320 - 64 * 1024 && allocated < 760_320 + 64 * 1024, `new Timeline() allocated ${allocated} bytes of array buffers`);
  const heap = process.memoryUsage().arrayBuffers;
  for (let i = 0; i < 3 * 8640 + 7; i++) tl.push({ t: 1000 + i * 10, saved_bytes: i, pages_sharing: 2 * i });
  t.is(tl.size, 8640);
  t.is(tl.byteLength, bytes);
  // Pushing 26k points allocated nothing new: the columns were all there from the start.
  t.true(process.memoryUsage().arrayBuffers - heap < 64 * 1024, `array buffers grew by ${process.memoryUsage().arrayBuffers - heap} bytes`);
  const all = tl.since();
  t.is(all.t.length, 8640);
  const first = 3 * 8640 + 7 - 8640;
  t.is(all.t[0], 1000 + first * 10, 'the oldest kept point');
  t.is(all.saved_bytes.at(-1), 3 * 8640 + 6);
  t.is(tl.lastT(), 1000 + (3 * 8640 + 6) * 10);
  t.true(all.t.every((v, i) => i === 0 || (v as number) > (all.t[i - 1] as number)), 'oldest first');
  // Columns a point did not set read as null, never 0.
  t.true(all.ksmd_cpu_ratio.every((v) => v === null));
  const last3 = tl.since((tl.lastT() as number) - 30);
  t.deepEqual(last3.saved_bytes, [3 * 8640 + 4, 3 * 8640 + 5, 3 * 8640 + 6]);
  t.deepEqual(tl.since((tl.lastT() as number) + 1).t, []);
  t.throws(() => new Timeline(0), { instanceOf: RangeError });
});

test('a point from two real readings: sysfs counters as they were, rates over the interval', async (t) => {
  const a = await takeSample();
  await sleep(1100);
  const b = await takeSample();
  const first = toPoint(a, undefined, 0);
  t.is(first.scan_pages_per_second, undefined, 'no rate without an earlier reading');
  t.is(first.ksmd_cpu_ratio, undefined);
  const p = toPoint(b, a, 4096);
  t.is(p.t, b.at / 1000);
  t.is(p.saved_bytes, b.ksm.counters.general_profit);
  t.is(p.pages_sharing, b.ksm.counters.pages_sharing);
  t.is(p.run, b.ksm.settings.run);
  t.is(p.cache_bytes_reclaimed, 4096);
  const scanned = (b.ksm.counters.pages_scanned ?? 0) - (a.ksm.counters.pages_scanned ?? 0);
  t.is(p.scan_pages_per_second, Math.round((scanned / ((b.mono - a.mono) / 1000)) * 10) / 10);
  t.true((p.ksmd_cpu_ratio ?? -1) >= 0 && (p.ksmd_cpu_ratio ?? 2) <= 1, `ksmd share of a core: ${p.ksmd_cpu_ratio}`);
  // The same reading pushed through a timeline comes back unchanged.
  const tl = new Timeline(4);
  tl.push(p);
  const back = tl.since();
  for (const c of HISTORY_COLUMNS) t.is(back[c][0], p[c] ?? null, c);
});
