/**
 * The Zipf table's cache model: the LRU, the two-level simulation under each host policy (small
 * traces worked by hand), Mattson stack distances against the simulation itself, fio's iolog, a real
 * fio trace, the model fitted to the real runs in test/fixtures/seed-zipf/, and the report's use of it.
 */
import test from 'ava';
import path from 'node:path';
import { Lru, TwoListCache, guestMisses, guestPagesFor, missesFor, simulateZipf, stackDistances, type ZipfSimInput } from '../scripts/bench/zipf-sim.js';
import { fioZipfTrace, parseIolog } from '../scripts/bench/zipf-trace.js';
import { guestMissPages, readsPerGuest, zipfModel, zipfModels, type ZipfModel } from '../scripts/bench/zipf-model.js';
import { buildReport, hitRatioOf, loadRuns, pick, trulyExclusiveOf } from '../scripts/bench/seed-report.js';

const root = path.resolve(__dirname, '../..');

test('Lru: touch refreshes, insert evicts the least recent, remove and clear empty it', (t) => {
  const l = new Lru(10, 2);
  t.is(l.insert(1), -1);
  t.is(l.insert(2), -1);
  t.true(l.touch(1));
  t.is(l.insert(3), 2, 'the least recent goes');
  t.deepEqual([...l.oldestFirst()], [1, 3]);
  t.false(l.has(2));
  t.true(l.remove(1));
  t.false(l.remove(1));
  t.is(l.size, 1);
  l.clear();
  t.is(l.size, 0);
  t.false(l.has(3));
  t.is(l.insert(4), -1);
  t.deepEqual([...l.oldestFirst()], [4]);
  t.is(new Lru(4, 0).insert(1), 1, 'a cache of no room keeps nothing');
  t.throws(() => new Lru(-1, 1), { message: /size must be a whole number/ });
  const r = new Lru(10, 3);
  for (const id of [1, 2, 3]) r.insert(id);
  r.resize(1);
  t.deepEqual([...r.oldestFirst()], [3], 'a smaller room keeps the most recent');
  t.is(r.capacity, 1);
  t.is(r.insert(4), 3);
  r.resize(2);
  t.is(r.insert(5), -1, 'a larger room takes more');
  t.throws(() => r.resize(-1), { message: /capacity must be a whole number/ });
});

// One guest with room for one page, a host with room for two, nothing cached by the host at the
// start; read i at second i. Worked by hand in the comments.
const small = (policy: ZipfSimInput['policy'], intervalS: number): ZipfSimInput => ({
  trace: Uint32Array.from([0, 1, 0, 1, 2, 0]),
  fileBlocks: 4,
  readsPerGuest: [6],
  seconds: 6,
  guestPages: 1,
  hostPages: 2,
  hostStartPages: 0,
  policy,
  intervalS,
});

test('TwoListCache: a block read twice is promoted and outlives blocks read once; the active list stays at half', (t) => {
  const c = new TwoListCache(10, 4);
  for (const b of [1, 2, 3, 4]) t.is(c.insert(b), -1);
  t.true(c.touch(1), 'promoted to active');
  t.is(c.insert(5), 2, 'the oldest inactive block goes, not the older but active 1');
  t.true(c.touch(3));
  t.true(c.touch(4), 'active holds 2: its oldest, 1, goes back to the inactive head');
  t.is(c.insert(6), 5);
  t.is(c.insert(7), 1, 'demoted, then the oldest inactive');
  t.true(c.has(3) && c.has(4) && c.has(6) && c.has(7));
  t.is(new TwoListCache(4, 0).insert(1), 1);
  // Under a skewed read pattern it misses less than LRU of the same size.
  const trace = skewed(20000, 500);
  t.true(guestMisses(trace, 500, [20000], 'two-list', 100) < guestMisses(trace, 500, [20000], 'lru', 100));
});

test('simulateZipf, by hand: every read misses a one-page guest; the host serves what its policy kept', (t) => {
  // none: host {0}, {1,0}, hit 0, hit 1, 2 evicts 0, 0 evicts 1: 2 hits of 6.
  const none = simulateZipf(small('none', 100));
  t.deepEqual(none, { reads: 6, guestMisses: 6, hostHits: 2, hitRatio: 2 / 6, avgHostPages: 2 });
  // drop-all every second: the host is empty before every read.
  t.is(simulateZipf(small('drop-all', 1)).hostHits, 0);
  // scrub at 2 and 4 s drops what the guest holds (1, then 1): the 0s at 2 and 5 s hit.
  t.is(simulateZipf(small('scrub', 2)).hostHits, 2);
  // truly exclusive: the guest's evictions go to the host (3 first: the layout left it there), a
  // host hit moves the block up: 0 at 2 s, 1 at 3 s and 0 at 5 s hit.
  const excl = simulateZipf(small('truly-exclusive', 100));
  t.is(excl.hostHits, 3);
  t.is(excl.avgHostPages, 2);
  // Two guests share the host: their blocks are distinct there.
  const two = (hostPages: number): number =>
    simulateZipf({ trace: Uint32Array.from([5, 5]), fileBlocks: 8, readsPerGuest: [2, 2], seconds: 2, guestPages: 0, hostPages, hostStartPages: 0, policy: 'none', intervalS: 10 }).hostHits;
  t.is(two(1), 0, 'each guest evicts the other');
  // scrub-hot drops only what the guest read again since the last tick. A two-page guest reads
  // 0, 1, 0 (a hit), 2, 1, 3: at 2 s it holds 0 and 1, neither read again, so both host copies stay
  // (the scrub drops both); at 4 s it holds 0 (hit at 2 s: dropped) and 2 (kept), 1 was evicted at
  // 3 s, and its host copy serves the read at 4 s, as with no action; the scrub has nothing left.
  const hot = (policy: ZipfSimInput['policy']): ZipfSimInput => ({ ...small(policy, 2), trace: Uint32Array.from([0, 1, 0, 2, 1, 3]), guestPages: 2, hostPages: 4 });
  t.is(simulateZipf(hot('scrub')).hostHits, 0);
  t.is(simulateZipf(hot('none')).hostHits, 1);
  const scrubHot = simulateZipf(hot('scrub-hot'));
  t.is(scrubHot.hostHits, 1);
  t.is(scrubHot.avgHostPages, 7 / 3, 'host 2 at 2 s, 2 after dropping 0 at 4 s, 3 at the end');
  t.is(simulateZipf(hot('none')).avgHostPages, 4, 'no timer: the end only, every block read');
  // The room over time: down to one page at 2 s, the host keeps 1 (read at 1 s), so the 0 read at
  // 2 s misses, and every read after it; at 3 s instead, the 0 at 2 s still hits.
  t.is(simulateZipf({ ...small('none', 100), hostRoom: [{ t: 2, pages: 1 }] }).hostHits, 0);
  t.is(simulateZipf({ ...small('none', 100), hostRoom: [{ t: 3, pages: 1 }] }).hostHits, 1);
  t.throws(() => simulateZipf({ ...small('none', 100), hostRoom: [{ t: 3, pages: 1 }, { t: 2, pages: 1 }] }), { message: /hostRoom must be sorted/ });
  t.is(two(2), 2);
  t.throws(() => simulateZipf({ ...small('none', 1), trace: Uint32Array.from([4]) , readsPerGuest: [1] }), { message: /block 4 is past the file's 4 blocks/ });
});

/** A skewed trace from a fixed LCG: block = floor(n * u^4). */
function skewed(n: number, blocks: number): Uint32Array {
  const out = new Uint32Array(n);
  let x = 12345;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = Math.floor(blocks * (x / 2 ** 32) ** 4);
  }
  return out;
}

test('stack distances give the simulation\'s guest misses for every cache size, and guestPagesFor the smallest cache for a miss count', (t) => {
  const fileBlocks = 500;
  const trace = skewed(20000, fileBlocks);
  const reads = [20000, 13000];
  const d = stackDistances(trace, fileBlocks, 20000);
  for (const pages of [0, 1, 7, 50, 120, 499, 500]) {
    const sim = simulateZipf({ trace, fileBlocks, readsPerGuest: reads, seconds: 1, guestPages: pages, hostPages: 10, hostStartPages: 0, policy: 'none', intervalS: 5 });
    t.is(missesFor(d, reads, pages), sim.guestMisses, `${pages} pages`);
  }
  const target = missesFor(d, reads, 80);
  const g = guestPagesFor(d, reads, fileBlocks, target);
  t.true(g <= 80 && missesFor(d, reads, g) <= target && missesFor(d, reads, g - 1) > target);
});

test('parseIolog reads fio 2 and 3 logs and refuses reads that are not one block of the file', (t) => {
  const v3 = 'fio version 3 iolog\n117 /tmp/x add\n4189 /tmp/x open\n4204 /tmp/x read 8192 4096\n5515 /tmp/x read 0 4096\n6000 /tmp/x close\n';
  t.deepEqual([...parseIolog(v3, 4)], [2, 0]);
  t.deepEqual([...parseIolog(v3, 4, 1)], [2], 'at most the limit');
  t.deepEqual([...parseIolog('fio version 2 iolog\n/tmp/x add\n/tmp/x read 4096 4096\n', 4)], [1]);
  t.throws(() => parseIolog('fio version 3 iolog\n1 /x read 0 8192\n', 4), { message: /not one aligned 4 KiB block/ });
  t.throws(() => parseIolog('fio version 3 iolog\n1 /x read 16384 4096\n', 4), { message: /not one aligned 4 KiB block/ });
  t.throws(() => parseIolog('garbage\n', 4), { message: /unexpected header "garbage"/ });
});

test('fioZipfTrace: fio\'s Zipf reads on this host, past one file\'s worth, the same each time, skewed', (t) => {
  const o = { fileMiB: 8, theta: 1.2, reads: 5000 };
  const a = fioZipfTrace(o);
  t.is(a.length, 5000);
  t.true(a.every((b) => b < 2048));
  t.deepEqual(a, fioZipfTrace(o), 'fio\'s fixed seed: the guests read this sequence too');
  const counts = new Map<number, number>();
  for (const b of a) counts.set(b, (counts.get(b) ?? 0) + 1);
  const top = Math.max(...counts.values());
  t.log(`${counts.size} distinct blocks of 2048, the hottest read ${top} times`);
  t.true(top > 50 * (5000 / 2048), 'far from uniform');
  t.throws(() => fioZipfTrace({ ...o, reads: 0 }), { message: /reads must be 1\.\./ });
});

test('the model fitted to the real no-action run: its guests miss as often as the real ones; drop-all is compared; not validated without a scrub run', (t) => {
  const { runs } = loadRuns([path.join(root, 'test/fixtures/seed-zipf')]);
  const none = pick(runs, 'fio-zipf', 'kernel');
  const drop = pick(runs, 'fio-zipf', 'drop-all');
  if (none === undefined || drop === undefined) throw new Error('fixtures missing');
  let trace: Uint32Array = new Uint32Array(0);
  const m = zipfModel({ none, others: [{ variant: 'drop-all', run: drop }], hitRatio: hitRatioOf, trace: (o) => (trace = fioZipfTrace(o)) });
  for (const f of m.fits) t.log(`${f.cache}/${f.hostStart} ${f.guestPages} pages: ${f.rows.map((r) => `${r.policy} measured ${r.measured} model ${r.modelled.toFixed(3)}`).join('; ')}`);
  t.deepEqual(m.fits.map((f) => `${f.cache}/${f.hostStart}`), ['lru/image', 'two-list/image', 'lru/since-fio', 'two-list/since-fio']);
  const [image, sinceFio] = [m.fits[0], m.fits[2]];
  t.true((sinceFio?.hostPages ?? 0) < (image?.hostPages ?? 0) && (sinceFio?.hostStartPages ?? 0) < (image?.hostStartPages ?? 0), 'the boot pages taken off');
  t.is(trace.length, m.traceReads);
  const measured = guestMissPages(none);
  const noneReads = readsPerGuest(none);
  const fileBlocks = 768 * 256;
  for (const f of m.fits) {
    t.deepEqual(f.rows.map((r) => r.policy), ['none', 'drop-all', 'scrub-hot', 'truly-exclusive']);
    t.true(f.guestPages > 0 && f.guestPages < fileBlocks, 'a guest cache smaller than the file');
    // The fit: at guestPages the model's guests miss no more than the real ones, one page less and they would.
    t.true(guestMisses(trace, fileBlocks, noneReads, f.cache, f.guestPages) <= measured && guestMisses(trace, fileBlocks, noneReads, f.cache, f.guestPages - 1) > measured, `${f.cache}: ${measured} misses measured`);
    t.is(f.rows[0]?.modelledMisses, guestMisses(trace, fileBlocks, noneReads, f.cache, f.guestPages));
    t.false(f.validated, 'two of the three policies');
    t.is(f.rows[0]?.measured, hitRatioOf(none));
    for (const r of f.rows) t.true(r.modelled >= 0 && r.modelled <= 1);
  }
  t.is(m.trulyExclusive, null);
  t.throws(() => zipfModel({ none, others: [{ variant: 'drop-all', run: { ...drop, options: { ...drop.options, fileMiB: 512 } } }], hitRatio: hitRatioOf }), { message: /options\.fileMiB differs/ });
});

test('the report takes the truly exclusive figure from a validated model only', (t) => {
  const { runs } = loadRuns([path.join(root, 'test/fixtures/seed-zipf')]);
  const model = (validated: boolean): ZipfModel => ({
    setting: '',
    traceReads: 100,
    fileMiB: 768,
    theta: 1.2,
    tolerance: 0.05,
    fits: [
      {
        cache: 'two-list',
        hostStart: 'image',
        guestPages: 1000,
        hostPages: 2000,
        hostStartPages: 500,
        rows: [
          { policy: 'none', variant: 'kernel', measured: 0.3, modelled: 0.31, modelledHostMiB: 800, measuredMisses: 100, modelledMisses: 100 },
          { policy: 'truly-exclusive', variant: 'truly-exclusive', measured: null, modelled: 0.4567, modelledHostMiB: 700, measuredMisses: null, modelledMisses: 90 },
        ],
        maxError: validated ? 0.01 : 0.2,
        validated,
      },
    ],
    trulyExclusive: validated ? 0.4567 : null,
  });
  const yes = buildReport(runs, { tables: ['zipf'], zipfModels: [model(true)] });
  t.is(yes.json['zipf_hit_ratio_truly_exclusive'], 0.457);
  t.regex(yes.markdown, /\| truly exclusive \| 0\.457 \(model\) \|/);
  t.regex(yes.markdown, /\| plain \(100 reads\) \| two-list \(validated\) \| image \| 3\.9 \| 8 \/ 2 \| truly-exclusive \| — \| 0\.457 \|/);
  t.false(yes.missing.some((m) => m.includes('variant "truly-exclusive"')), 'the model stands in for the run');
  t.true(yes.missing.some((m) => m.includes('variant "truly-exclusive-init-on-free"')), 'not for another setting');
  const no = buildReport(runs, { tables: ['zipf'], zipfModels: [model(false)] });
  t.is(no.json['zipf_hit_ratio_truly_exclusive'], null);
  t.regex(no.markdown, /\| truly exclusive \| model not validated \|/);
  t.deepEqual(no.json['zipf_model_max_error'], { 'two-list/image': 0.2 });
  t.regex(buildReport(runs, { tables: ['zipf'], zipfModels: [{ setting: '', error: 'fio is missing' }] }).markdown, /No cache model: fio is missing/);
  t.regex(buildReport(runs, { tables: ['zipf'], zipfModels: [{ setting: '-init-on-free', error: 'no samples' }] }).markdown, /No cache model for init-on-free guests: no samples/);
  // Two settings: each fit keyed by its setting, each setting's figure from its own model only.
  const both = buildReport(runs, { tables: ['zipf'], zipfModels: [model(false), { ...model(true), setting: '-init-on-free' }] });
  t.deepEqual(both.json['zipf_model_max_error'], { 'two-list/image': 0.2, 'init_on_free/two-list/image': 0.01 });
  t.is(both.json['zipf_hit_ratio_truly_exclusive'], null, "the plain guests' model is not validated");
  t.is(both.json['zipf_hit_ratio_truly_exclusive_init_on_free'], 0.457);
  t.regex(both.markdown, /\| truly exclusive, init_on_free=1 \| 0\.457 \(model\) \|/);
  t.regex(both.markdown, /plain: none validated, null; init-on-free: 0\.457/);
  t.is(both.json['zipf_hit_ratio_truly_exclusive_init_on_free_tight'], null, 'no model of that setting');
  t.true(both.missing.some((m) => m.includes('truly-exclusive-init-on-free-tight')), 'listed as not makeable');
  t.false(both.missing.some((m) => m.includes('variant "truly-exclusive-init-on-free"')), 'a model stands in');
  const twoFits = { ...model(true), fits: [...model(true).fits, { ...(model(true).fits[0] as ZipfModel['fits'][number]), maxError: 0.005, rows: model(true).fits[0]?.rows.map((r) => ({ ...r, modelled: r.policy === 'truly-exclusive' ? 0.5 : r.modelled })) ?? [] }] };
  t.is(trulyExclusiveOf(twoFits), 0.5, 'the validated fit with the smallest gap');
  t.is(trulyExclusiveOf(model(false)), null);
});

test('zipfModels: one model per guest setting that has a no-action run, over that setting\'s runs only', (t) => {
  const { runs } = loadRuns([path.join(root, 'test/fixtures/seed-zipf')]);
  const none = pick(runs, 'fio-zipf', 'kernel');
  const drop = pick(runs, 'fio-zipf', 'drop-all');
  if (none === undefined || drop === undefined) throw new Error('fixtures missing');
  // The same runs as if the guests had booted with init_on_free=1, but no drop-all run of them.
  const iof = { ...none, variant: 'kernel-init-on-free', options: { ...none.options, initOnFree: true } };
  let traces = 0;
  const trace = (o: Parameters<typeof fioZipfTrace>[0]): Uint32Array => (traces++, fioZipfTrace(o));
  const models = zipfModels([...runs, iof], hitRatioOf, trace);
  t.is(traces, 2);
  const [plain, onFree] = models;
  if (plain === undefined || 'error' in plain || onFree === undefined || 'error' in onFree) throw new Error(`two models expected, got ${JSON.stringify(models.map((m) => ('error' in m ? m.error : m.setting)))}`);
  t.is(plain.setting, '');
  t.is(onFree.setting, '-init-on-free');
  t.deepEqual(plain.fits[0]?.rows.map((r) => r.variant), ['kernel', 'drop-all', 'scrub-hot', 'truly-exclusive']);
  t.deepEqual(onFree.fits[0]?.rows.map((r) => r.variant), ['kernel-init-on-free', 'scrub-hot', 'truly-exclusive'], "the plain drop-all run is not this setting's");
  t.is(onFree.fits[0]?.rows[0]?.modelled, plain.fits[0]?.rows[0]?.modelled, 'the same no-action run models the same');
  t.deepEqual(zipfModels(runs.filter((r) => r.variant !== 'kernel'), hitRatioOf, trace), [], 'no no-action run, no model');
  const bad = zipfModels([{ ...none, options: { ...none.options, seconds: undefined } }], hitRatioOf, trace)[0];
  t.true(bad !== undefined && 'error' in bad && /options fileMiB, zipfTheta and seconds are needed/.test(bad.error));
});
