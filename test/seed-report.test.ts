/**
 * The seed report (scripts/bench/seed-report.ts, seed-plots.ts, seed-report-cli.ts) over real run
 * files: test/fixtures/seed/ holds bench:seed:run outputs of 2026-12-03 on this project's host (two
 * Debian 12 TCG guests x 512 MiB, ksmd 1000/20): a 20 s boot run and a 120 s desktop run, copied
 * unchanged; test/fixtures/seed-io/ a 30 s desktop run with QEMU's /proc/PID/io sampled from boot and a boot run with --engine on. The plots are drawn in Debian's
 * Chromium, as the status-page test draws its page.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { avgShared, buildReport, during, engineFigures, hostCacheHitRatio, ksmdCpuPct, loadRuns, readRun, requiredRuns, runFileName, runnerArgs, variantOf, windowOf, wssOf } from '../scripts/bench/seed-report.js';
import { renderPlots } from '../scripts/bench/seed-plots.js';
import { judgeWss, wssErrorPct } from '../scripts/bench/wss-judge.js';
import { kernelLookahead, parseKernelMeasures } from '../scripts/bench/seed-kernel.js';

const run = promisify(execFile);
const root = path.resolve(__dirname, '../..');
const fixtures = path.join(root, 'test/fixtures/seed');
const fixture = (name: string): string => path.join(fixtures, name);
const cli = path.join(root, 'dist/scripts/bench/seed-report-cli.js');

/** Width and height from a PNG's IHDR chunk, after checking the signature. */
function pngSize(buf: Buffer): { width: number; height: number } {
  if (!buf.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) throw new Error('not a PNG');
  if (buf.toString('latin1', 12, 16) !== 'IHDR') throw new Error('no IHDR first');
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
}

test('a boot run is averaged from QEMU start, a desktop run over the workload only, as the runner summarised them', (t) => {
  const boot = readRun(fixture('seed-boot.json'));
  t.is(boot.workload, 'boot');
  t.is(boot.variant, 'kernel');
  t.is(windowOf(boot).length, boot.samples.length);
  t.is(avgShared(boot), boot.summary['avg_pages_shared_from_boot'] as number);
  const desktop = readRun(fixture('seed-desktop.json'));
  t.is(desktop.variant, 'kernel');
  const d = during(desktop);
  t.is(d.length, 62, 'the 62 samples taken while the desktop ran');
  t.true(d.length < desktop.samples.length, 'booting samples left out');
  t.deepEqual(windowOf(desktop), d);
  t.is(avgShared(desktop), desktop.summary['avg_pages_shared'] as number);
  // ksmd's CPU from its utime+stime: the runner's figure, to its rounding.
  const cpu = ksmdCpuPct(desktop);
  t.true(cpu !== null && Math.abs(cpu - (desktop.summary['ksmd_cpu_pct'] as number)) <= 0.1, `cpu ${cpu}`);
});

test('the report puts our figures beside the published ones, says what is not run and how to run it, and ends with the issue\'s JSON keys', (t) => {
  const { runs, skipped } = loadRuns([fixture('seed-boot.json'), fixture('seed-desktop.json')]);
  t.deepEqual(skipped, []);
  const r = buildReport(runs, { generatedAt: new Date('2026-12-03T12:00:00Z') });
  const md = r.markdown;
  t.regex(md, /Generated 2026-12-03T12:00:00\.000Z/);
  // No --engine run among these: the lookahead table is all "not run", the kernel runs are listed.
  t.regex(md, /\| boot \| 8,000 → 11,000 \| not run → not run \| ×1\.38 \| — \|/);
  t.regex(md, /\| desktop \| 31,000 → 62,000 \| not run → not run \| ×2\.00 \| — \|/);
  t.regex(md, /\| seed-boot\.json \| boot \| kernel \| 2 × 512 MiB \| 1408 MiB \| 1000\/20 \|/);
  t.true(r.missing.includes('npm run bench:seed:run -- --workload desktop --engine on --out seed-desktop-lookahead.json'), r.missing.join('\n'));
  t.regex(md, /\| desktop \| 62,000 \| 28,744 \| 162,000 \| not run \| 400M → 219M \| 473\.3 → not run \|/);
  t.regex(md, /\| write \(char\) \| 24,000 → 32,000 \| not run → not run \| ×1\.33 \| — \|/);
  t.regex(md, /- desktop: lookahead not run: no comparison yet\./);
  t.true(r.missing.includes('npm run bench:seed:run -- --workload compile --out seed-compile.json'), r.missing.join('\n'));
  t.true(r.missing.includes('npm run bench:seed:run -- --workload bonnie --out seed-bonnie.json'));
  t.false(r.missing.some((m) => m.includes('--workload desktop --out')), 'the desktop run is there');
  t.notRegex(md, /Why the shared-page ratio is ×1\.00/, 'no ratio measured, no explanation of one');
  for (const k of [
    'lookahead_shared_ratio',
    'lookahead_cpu_ratio',
    'cache_host_ratio',
    'bonnie_write_char_ratio',
    'zipf_hit_ratio_none',
    'zipf_hit_ratio_ksm_exclusive',
    'zipf_hit_ratio_drop_all',
    'zipf_hit_ratio_truly_exclusive',
    'wss_error_pct',
  ]) {
    t.true(k in r.json, k);
  }
  t.is(r.json['runs'], 2);
  t.is(r.json['missing_runs'], r.missing.length);
  // One pages-shared and one host-cache plot per workload with a run, each linked from the markdown.
  t.deepEqual(r.plots.map((p) => p.file).sort(), ['host-cache-boot.png', 'host-cache-desktop.png', 'pages-shared-boot.png', 'pages-shared-desktop.png']);
  for (const p of r.plots) t.true(md.includes(`](${p.file})`), p.file);
  const shared = r.plots.find((p) => p.file === 'pages-shared-desktop.png');
  t.true(shared?.kind === 'lines' && shared.series[0]?.y.length === 83 && shared.markers[0]?.x === during(runs[1]!)[0]?.t);
});

test('a run file with QEMU reads sampled from boot gives the host cache hit ratio; cold images: every read a miss', (t) => {
  const io = readRun(path.join(root, 'test/fixtures/seed-io/seed-desktop-io.json'));
  t.true(io.samples.some((s) => s.phase === 'booting' && s.qemu.length === 2 && s.qemu.every((q) => q.rcharMiB !== undefined)), 'QEMU reads sampled while booting');
  const ss = during(io);
  const first = ss[0]!;
  const last = ss.at(-1)!;
  const rchar = last.qemu.reduce((a, q, i) => a + (q.rcharMiB ?? 0) - (first.qemu[i]?.rcharMiB ?? 0), 0);
  const read = last.qemu.reduce((a, q, i) => a + (q.readMiB ?? 0) - (first.qemu[i]?.readMiB ?? 0), 0);
  t.log(`QEMU reads while the desktop ran: rchar ${rchar.toFixed(1)} MiB, fetched from storage ${read.toFixed(1)} MiB`);
  // Each guest reads its own image copy, dropped from the host cache before boot: what QEMU read
  // was fetched, with the host's readahead on top, so the ratio is 0 (clamped), not negative.
  t.true(rchar > 50 && read >= rchar, `rchar ${rchar} read ${read}`);
  t.is(hostCacheHitRatio(ss), 0);
  t.is(hostCacheHitRatio([first]), null, 'one sample: no window');
  t.is(hostCacheHitRatio(io.samples.slice(0, 2)), null, 'no QEMU yet: no reads');
  const r = buildReport([io]);
  const bars = r.plots.find((p) => p.file === 'hit-ratios.png');
  t.true(bars?.kind === 'bars' && bars.bars.length === 1 && bars.bars[0]?.value === 0);
  t.regex(r.markdown, /!\[host cache hit ratios\]\(hit-ratios\.png\)/);
  t.regex(r.markdown, /\| seed-desktop-io\.json \| desktop \| kernel \| 2 × 512 MiB \| 1920 MiB \| 1000\/20 \| 34\.9 \| 20,904 \|/);
});

test('a --engine run: the engine the way ksmd runs, lookahead off and on side by side, in the lookahead table and plot', (t) => {
  const la = readRun(path.join(root, 'test/fixtures/seed-io/seed-boot-lookahead.json'));
  t.is(la.variant, 'lookahead');
  const e = engineFigures(la);
  if (e === null) return t.fail('no engine samples');
  // The report's figures over the window are the runner's own summary of the same samples.
  t.deepEqual(e, la.summary['engine'] === undefined ? null : { off: (la.summary['engine'] as typeof e).off, on: (la.summary['engine'] as typeof e).on, early: null });
  t.log(`off ${JSON.stringify(e.off)}\non ${JSON.stringify(e.on)}`);
  // Same budget, same pages: the same merges (the engine's counters do not depend on lookahead)...
  t.is(e.on['avg_pages_shared'], e.off['avg_pages_shared']);
  t.true((e.off['avg_pages_shared'] ?? 0) > 5000, 'two booted Debian guests share thousands of pages');
  t.true(Math.abs((e.on['pages_scanned'] ?? 0) - (e.off['pages_scanned'] ?? 0)) <= 1000, 'the same budget: pages scanned within one batch');
  // ...found with fewer compares when lookahead is on; off never tries it.
  t.is(e.off['lookahead_hits'], 0);
  t.true((e.on['lookahead_hits'] ?? 0) > 1000 && (e.on['lookahead_hit_rate'] ?? 0) > 0.5);
  t.true((e.on['compares_per_page'] ?? 1) < (e.off['compares_per_page'] ?? 0));
  const r = buildReport([la], { tables: ['lookahead'] });
  t.regex(r.markdown, /\| boot \| 8,000 → 11,000 \| 11,121 → 11,121 \| ×1\.38 \| ×1\.00 \| 12\.0 → 12\.0 \| 6\.5 → 6\.5 \| 0\.232 → 0\.225 \| 0\.858 \| 9,283, 3\.6 \|/);
  t.regex(r.markdown, /Why the shared-page ratio is ×1\.00 wherever it was measured/);
  t.deepEqual(r.json['lookahead_shared_ratio'], { boot: 1, compile: null, desktop: null });
  const plot = r.plots.find((p) => p.file === 'pages-shared-boot.png');
  t.deepEqual(plot?.kind === 'lines' ? plot.series.map((x) => x.label) : [], ["kernel's ksmd (lookahead run)", 'lookahead: engine, lookahead off', 'lookahead: engine, lookahead on']);
});

test('a --engine run with the third engine: lookahead early beside off, its own table, JSON and plot line', (t) => {
  const la = readRun(path.join(root, 'test/fixtures/seed-early/seed-boot-lookahead.json'));
  const e = engineFigures(la);
  if (e === null || e.early === null) return t.fail('no early engine samples');
  t.deepEqual(e, { off: (la.summary['engine'] as typeof e).off, on: (la.summary['engine'] as typeof e).on, early: (la.summary['engine'] as typeof e).early });
  t.log(`off ${e.off['avg_pages_shared']} on ${e.on['avg_pages_shared']} early ${e.early['avg_pages_shared']}, ${e.early['lookahead_early']} merges the gate held back`);
  t.is(e.off['lookahead_early'], 0);
  t.is(e.on['lookahead_early'], 0, 'lookahead alone never merges past the gate');
  t.true(typeof e.early['lookahead_early'] === 'number');
  const r = buildReport([la], { tables: ['lookahead'] });
  const shared = (side: 'off' | 'early'): string => (e[side]?.['avg_pages_shared'] ?? 0).toLocaleString('en-US');
  t.true(r.markdown.includes(`| boot | ×1.38 | ${shared('off')} → ${shared('early')} |`), r.markdown);
  t.regex(r.markdown, /\| compile \| ×1\.15 \| not run \| — \|/);
  const ratio = r.json['lookahead_early_shared_ratio'] as Record<string, number | null>;
  t.is(ratio['boot'], Math.round(((e.early['avg_pages_shared'] ?? 0) / (e.off['avg_pages_shared'] ?? 1)) * 1000) / 1000);
  t.is(ratio['desktop'], null);
  const plot = r.plots.find((p) => p.file === 'pages-shared-boot.png');
  t.deepEqual(plot?.kind === 'lines' ? plot.series.map((x) => x.label).slice(1) : [], ['lookahead: engine, lookahead off', 'lookahead: engine, lookahead on', 'lookahead: engine, lookahead early']);
  // An older run without the third engine: its row says so.
  const old = buildReport([readRun(path.join(root, 'test/fixtures/seed-io/seed-boot-lookahead.json'))], { tables: ['lookahead'] });
  t.regex(old.markdown, /\| boot \| ×1\.38 \| not in this run \|/);
  t.deepEqual(old.json['lookahead_early_shared_ratio'], { boot: null, compile: null, desktop: null });
});

test('the Zipf table: no action and drop-all runs of fio-zipf (real, same options) side by side', (t) => {
  const { runs } = loadRuns([path.join(root, 'test/fixtures/seed-zipf')]);
  t.deepEqual(runs.map((r) => r.variant).sort(), ['drop-all', 'kernel']);
  const r = buildReport(runs, { tables: ['zipf'] });
  const none = r.json['zipf_hit_ratio_none'] as number;
  const drop = r.json['zipf_hit_ratio_drop_all'] as number;
  t.log(`hit ratio: no action ${none}, drop-all ${drop}`);
  t.true(none > 0 && none <= 1 && drop >= 0 && drop <= 1);
  // Dropping the images every 10 s keeps less of them in the host cache than leaving them be.
  const cache = (v: string): number => runs.find((x) => x.variant === v)!.summary['avg_host_cache_mib'] as number;
  t.true(cache('drop-all') < cache('kernel'), `drop-all ${cache('drop-all')} MiB, none ${cache('kernel')} MiB`);
  t.regex(r.markdown, new RegExp(`\\| drop-all \\| ${drop.toFixed(3)} \\|`));
  t.is(r.json['zipf_hit_ratio_ksm_exclusive'], null);
  t.deepEqual(runnerArgs('fio-zipf', 'drop-all'), ['--workload', 'fio-zipf', '--host-cache', 'drop-all']);
});

test('each table names the runs it reads; the runner makes the kernel and scrub ones, truly-exclusive is listed as not makeable yet', (t) => {
  t.deepEqual(requiredRuns(['bonnie']), [
    { workload: 'bonnie', variant: 'kernel' },
    { workload: 'bonnie', variant: 'scrub' },
  ]);
  t.deepEqual(runnerArgs('compile', 'kernel'), ['--workload', 'compile']);
  t.deepEqual(runnerArgs('compile', 'scrub'), ['--workload', 'compile', '--host-cache', 'scrub']);
  t.is(runnerArgs('fio-zipf', 'truly-exclusive'), null);
  t.is(variantOf({ workload: 'compile', ksm: { pages: 1000, sleepMs: 20 }, hostCache: 'scrub' }), 'scrub');
  t.is(runFileName('fio-zipf', 'drop-all'), 'seed-fio-zipf-drop-all.json');
  t.deepEqual(requiredRuns(['wss']), [{ workload: 'wss', variant: 'kernel' }]);
  const r = buildReport([], { tables: ['bonnie'] });
  t.deepEqual(r.missing, [
    'npm run bench:seed:run -- --workload bonnie --out seed-bonnie.json',
    'npm run bench:seed:run -- --workload bonnie --host-cache scrub --out seed-bonnie-scrub.json',
  ]);
  const zipfMissing = buildReport([], { tables: ['zipf'] }).missing;
  t.true(zipfMissing.includes('a fio-zipf run with variant "truly-exclusive" (a block in exactly one cache): bench:seed:run cannot make it yet'), zipfMissing.join('\n'));
  // Guests that zero what they free: a variant of its own, made by --init-on-free on, in a file the
  // runner names the same way by default.
  t.is(variantOf({ workload: 'fio-zipf', ksm: { pages: 1000, sleepMs: 20 }, hostCache: 'scrub', initOnFree: true }), 'scrub-init-on-free');
  t.is(variantOf({ workload: 'fio-zipf', ksm: { pages: 1000, sleepMs: 20 }, hostCache: 'none', initOnFree: false }), 'kernel');
  t.deepEqual(runnerArgs('fio-zipf', 'scrub-init-on-free'), ['--workload', 'fio-zipf', '--host-cache', 'scrub', '--init-on-free', 'on']);
  t.deepEqual(runnerArgs('fio-zipf', 'kernel-init-on-free'), ['--workload', 'fio-zipf', '--init-on-free', 'on']);
  t.is(runnerArgs('fio-zipf', 'truly-exclusive-init-on-free'), null);
  t.is(runFileName('fio-zipf', 'kernel-init-on-free'), 'seed-fio-zipf-init-on-free.json');
  t.is(runFileName('fio-zipf', 'scrub-init-on-free'), 'seed-fio-zipf-scrub-init-on-free.json');
  t.true(zipfMissing.includes('npm run bench:seed:run -- --workload fio-zipf --host-cache scrub --init-on-free on --out seed-fio-zipf-scrub-init-on-free.json'), zipfMissing.join('\n'));
  // The tightest limit the runner takes (2 x (512 + 256) MiB for 512 MiB guests) is a variant too.
  t.is(variantOf({ workload: 'fio-zipf', ksm: { pages: 1000, sleepMs: 20 }, hostCache: 'scrub', initOnFree: true, memMiB: 512, limitMiB: 1536 }), 'scrub-init-on-free-tight');
  t.is(variantOf({ workload: 'fio-zipf', ksm: { pages: 1000, sleepMs: 20 }, hostCache: 'none', memMiB: 512, limitMiB: 1920 }), 'kernel');
  t.is(variantOf({ workload: 'fio-zipf', ksm: { pages: 1000, sleepMs: 20 }, hostCache: 'none', memMiB: 1024, limitMiB: 2560 }), 'kernel-tight');
  t.deepEqual(runnerArgs('fio-zipf', 'scrub-init-on-free-tight'), ['--workload', 'fio-zipf', '--host-cache', 'scrub', '--init-on-free', 'on', '--limit', 'tight']);
  t.deepEqual(runnerArgs('fio-zipf', 'kernel-tight'), ['--workload', 'fio-zipf', '--limit', 'tight']);
  t.is(runFileName('fio-zipf', 'kernel-init-on-free-tight'), 'seed-fio-zipf-init-on-free-tight.json');
  t.is(runFileName('fio-zipf', 'lookahead-tight'), 'seed-fio-zipf-lookahead-tight.json');
  // A throttled disk: its rate is in the name.
  t.is(variantOf({ workload: 'fio-zipf', ksm: { pages: 1000, sleepMs: 20 }, hostCache: 'scrub', initOnFree: true, memMiB: 512, limitMiB: 1536, diskReadMiBps: 8 }), 'scrub-init-on-free-tight-disk8');
  t.deepEqual(runnerArgs('fio-zipf', 'scrub-init-on-free-tight-disk8'), ['--workload', 'fio-zipf', '--host-cache', 'scrub', '--init-on-free', 'on', '--limit', 'tight', '--disk-read', '8']);
  t.is(runFileName('fio-zipf', 'kernel-disk16'), 'seed-fio-zipf-disk16.json');
  t.is(runnerArgs('fio-zipf', 'kernel-disk0'), null);
});

test('the wss rule: a pass during which a change was under way is not judged; the first after it may miss once; the rest within 10%', (t) => {
  // seed-b of a CI run: the second 128 MiB loop began after pass 4 and its fill returned only
  // after pass 5, which already saw 258.7 MiB; the kill began and completed after pass 7.
  const estimates = [1, 143.1, 129.5, 130.2, 258.7, 262.4, 259.5, 215.5, 129.6, 130];
  const changes = [
    { startedAfterPass: 1, afterPass: 1, truthMiB: 128 },
    { startedAfterPass: 4, afterPass: 5, truthMiB: 256 },
    { startedAfterPass: 7, afterPass: 7, truthMiB: 128 },
  ];
  const judged = judgeWss(estimates, changes);
  t.deepEqual(judged.map((j) => j.pass), [2, 3, 4, 5, 6, 7, 8, 9, 10], 'the idle pass is not judged');
  t.deepEqual(judged.map((j) => (j.inTransit ? 'moving' : j.excused ? 'excused' : j.settled ? 'settled' : 'first')), ['excused', 'settled', 'settled', 'moving', 'first', 'settled', 'excused', 'settled', 'settled']);
  t.is(judged[3]!.truthMiB, 256, 'a moving pass is shown against the truth it heads for');
  t.is(wssErrorPct(judged)!.toFixed(2), (100 * (262.4 - 256) / 256).toFixed(2));
  t.is(wssErrorPct(judged, true)!.toFixed(2), (100 * (130.2 - 128) / 128).toFixed(2));
  // Without the start of the second change, pass 5 is judged against 128 MiB and fails the rule.
  const blind = judgeWss(estimates, changes.map(({ afterPass, truthMiB }) => ({ afterPass, truthMiB })));
  t.true(blind[3]!.errorPct > 100 && !blind[3]!.excused);
});

test("the wss table: each guest's passes against the truth from a real run, errors judged again from its estimates and changes", (t) => {
  const run = readRun(fixture('seed-wss.json'));
  t.is(run.workload, 'wss');
  const r = buildReport([run], { tables: ['wss'] });
  t.deepEqual(r.missing, []);
  const w = wssOf(run)!;
  t.is(w.guests.length, 2);
  const errors = w.guests.map((g) => {
    // The loops were A, A + B, then B MiB, each change after a pass, after one idle pass.
    t.deepEqual(g.changes.map((c) => c.truthMiB), [w.loopsMiB[0], w.loopsMiB[0] + w.loopsMiB[1], w.loopsMiB[1]]);
    const judged = judgeWss([g.idleMiB, ...g.passes.map((p) => p.estimateMiB)], g.changes);
    t.deepEqual(judged, g.passes);
    t.regex(r.markdown, new RegExp(`\\| ${g.name} \\| ${g.idleMiB.toFixed(1)} \\| `));
    return wssErrorPct(judged)!;
  });
  t.is(r.json['wss_error_pct'], Math.round(Math.max(...errors) * 10) / 10);
  t.true((r.json['wss_settled_error_pct'] as number) <= (r.json['wss_error_pct'] as number));
  // A run without its passes: no figure, said so.
  const bare = buildReport([{ ...run, wss: undefined }], { tables: ['wss'] });
  t.is(bare.json['wss_error_pct'], null);
  t.regex(bare.markdown, /seed-wss\.json carries no wss passes/);
  // Passes whose loops or pass ends are not numbers are not taken either.
  const wss = run.wss as Record<string, unknown>;
  t.is(wssOf({ ...run, wss: { ...wss, loopsMiB: ['128', 128] } }), undefined);
  t.is(wssOf({ ...run, wss: { ...wss, loopsMiB: [128] } }), undefined);
  t.is(wssOf({ ...run, wss: { ...wss, passEndS: [24.7, null] } }), undefined);
  t.regex(r.markdown, new RegExp(`${w.passEndS.length} passes of ${w.intervalS.toFixed(1)} s ending ${w.passEndS[0]!.toFixed(1)}`));
});

test('files that are not run files are refused naming them; a directory skips them', (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'seed-report-'));
  try {
    writeFileSync(path.join(dir, 'broken.json'), '{"options": ');
    copyFileSync(path.join(root, 'package.json'), path.join(dir, 'package.json'));
    copyFileSync(fixture('seed-boot.json'), path.join(dir, 'boot.json'));
    t.throws(() => readRun(path.join(dir, 'broken.json')), { message: /broken\.json: not a JSON file/ });
    t.throws(() => readRun(path.join(dir, 'package.json')), { message: /package\.json: not a bench:seed:run file/ });
    const { runs, skipped } = loadRuns([dir]);
    t.is(runs.length, 1);
    t.is(skipped.length, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the plots are PNGs of the plot size, drawn with data (not blank), different from each other', async (t) => {
  const { runs } = loadRuns([fixtures]);
  const r = buildReport(runs);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'seed-plots-'));
  try {
    const files = await renderPlots(r.plots, dir);
    t.is(files.length, r.plots.length);
    const sizes = new Set<number>();
    for (const f of files) {
      const buf = readFileSync(f);
      t.deepEqual(pngSize(buf), { width: 960, height: 440 }, f);
      // A white 960x440 page with a title only compresses to ~3 KB; axes, grid, lines and labels do not.
      t.true(buf.length > 12_000, `${path.basename(f)}: only ${buf.length} bytes`);
      sizes.add(buf.length);
    }
    t.is(sizes.size, files.length, 'each plot is its own picture');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the patched kernel's lookahead beside the engine's: test:kernel's measure lines, either form, averaged per workload, in the table and the JSON", (t) => {
  const text = [
    'SP MEASURE workload=random lookahead=0 full_scans=4 cpu_ns_per_full_scan=300000000 pages_shared=3584 lookahead_hits=0 lookahead_misses=0\r',
    'measure checks: workload=random lookahead=1 full_scans=4 cpu_ns_per_full_scan=250000000 pages_shared=3584 lookahead_hits=7000 lookahead_misses=100',
    'SP MEASURE workload=random lookahead=0 full_scans=4 cpu_ns_per_full_scan=310000000 pages_shared=3584',
    'SP MEASURE workload=vm lookahead=0 avg_pages_shared=3000 pages_shared=3900 cpu_ns_per_full_scan=200000000',
    'SP MEASURE workload=vm lookahead=1 avg_pages_shared=2850 pages_shared=3900 cpu_ns_per_full_scan=180000000 lookahead_hits=5',
    'SP MEASURE workload=half lookahead=0 cpu_ns_per_full_scan=1 pages_shared=1',
    'SP MEASURE ksm_hints_free_pairs pages=8192',
    'SP MEASURE workload=../x lookahead=1 pages_shared=1 cpu_ns_per_full_scan=1',
    'SP RESULT lookahead_less_work PASS',
  ].join('\n');
  const measures = parseKernelMeasures(text);
  t.is(measures.length, 6, 'measure lines with a workload and lookahead=0|1, a sane name; nothing else');
  const rows = kernelLookahead(measures);
  // "half" has no lookahead-on run: no row.
  t.deepEqual(rows.map((r) => r.workload), ['random', 'vm']);
  t.deepEqual(rows[0], { workload: 'random', runs: [2, 1], sharedOff: 3584, sharedOn: 3584, cpuNsPerScanOff: 305000000, cpuNsPerScanOn: 250000000, hits: 7000, misses: 100 });
  // vm's pages_shared is its average over the run, not its end.
  t.is(rows[1]!.sharedOn, 2850);
  const run = readRun(fixture('seed-boot.json'));
  const r = buildReport([run], { tables: ['lookahead'], kernel: { source: 'kernel.log', rows } });
  t.deepEqual(r.json['kernel_lookahead_cpu_ratio'], { random: 0.82, vm: 0.9 });
  t.deepEqual(r.json['kernel_lookahead_shared_ratio'], { random: 1, vm: 0.95 });
  t.regex(r.markdown, /\| random \| 2 \/ 1 \| 3,584 → 3,584 \| ×1\.00 \| 305\.0 → 250\.0 \| ×0\.82 \| 7,000 \/ 100 \|/);
  const none = buildReport([run], { tables: ['lookahead'] });
  t.is(none.json['kernel_lookahead_cpu_ratio'], null);
  t.regex(none.markdown, /No patched-kernel figures: pass --kernel/);
});

test("the README's seed JSON line is what bench:seed prints over docs/seed/runs, and docs/seed/report.md its report", async (t) => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'seed-readme-'));
  try {
    // The whole report, the Zipf model too (it runs fio on the host, as the command does).
    const r = await run(process.execPath, [cli, '--runs', 'docs/seed/runs', '--out', out, '--measure', 'none', '--plots', 'off'], { cwd: root, maxBuffer: 1 << 24 });
    const printed = r.stdout.trim().split('\n').at(-1) ?? '';
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    const shown = /^\{"bench":"seed".*\}$/m.exec(readme)?.[0];
    t.is(shown, printed, 'README.md: regenerate the line with npm run bench:seed -- --runs docs/seed/runs --measure none');
    // The committed report, but for the line saying when it was generated.
    const body = (md: string): string => md.replace(/^Generated [^ ]+ /m, 'Generated ');
    t.is(body(readFileSync(path.join(out, 'report.md'), 'utf8')), body(readFileSync(path.join(root, 'docs/seed/report.md'), 'utf8')));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('npm run bench:seed: report.md and PNGs from a directory of runs, one JSON line last; bad options exit 2, no runs exit 3', async (t) => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'seed-cli-'));
  const empty = mkdtempSync(path.join(os.tmpdir(), 'seed-empty-'));
  try {
    const r = await run(process.execPath, [cli, '--runs', fixtures, '--out', out, '--table', 'lookahead', '--measure', 'none']);
    const line = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;
    t.true('lookahead_shared_ratio' in line && !('zipf_hit_ratio_none' in line), 'only the lookahead table');
    const md = readFileSync(path.join(out, 'report.md'), 'utf8');
    t.regex(md, /## Lookahead/);
    t.notRegex(md, /## Bonnie/);
    t.deepEqual(pngSize(readFileSync(path.join(out, 'pages-shared-desktop.png'))), { width: 960, height: 440 });
    const bad = await run(process.execPath, [cli, '--table', 'nope']).catch((e: { code: number; stderr: string }) => e);
    t.is((bad as { code: number }).code, 2);
    t.regex((bad as { stderr: string }).stderr, /--table must be one of lookahead, cache, bonnie, zipf, wss or all/);
    const noKernel = await run(process.execPath, [cli, '--runs', fixtures, '--out', out, '--measure', 'none', '--plots', 'off', '--kernel', path.join(empty, 'none.log')]).catch(
      (e: { code: number; stderr: string }) => e,
    );
    t.is((noKernel as { code: number }).code, 2);
    t.regex((noKernel as { stderr: string }).stderr, /--kernel .*none\.log: cannot read it \(ENOENT/);
    const two = await run(process.execPath, [cli, '--runs', fixtures, '--runs', empty]).catch((e: { code: number; stderr: string }) => e);
    t.is((two as { code: number }).code, 2);
    t.regex((two as { stderr: string }).stderr, /--measure missing writes its runs into one --runs directory/);
    const none = await run(process.execPath, [cli, '--runs', empty, '--out', out, '--plots', 'off', '--measure', 'none']).catch((e: { code: number; stderr: string }) => e);
    t.is((none as { code: number }).code, 3);
    t.regex((none as { stderr: string }).stderr, /no bench:seed:run files in/);
  } finally {
    rmSync(out, { recursive: true, force: true });
    rmSync(empty, { recursive: true, force: true });
  }
});
