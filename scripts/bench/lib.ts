// npm run bench:lib: what the Node binding costs, side by side in one run.
//
// 1. Scan throughput through the addon (Scanner, on the thread pool in ~50 ms slices, with a
//    progress callback and an AbortSignal attached) against the bare C engine on the same memory
//    contents. JS cannot hand its ArrayBuffers to a C program, and the addon exposes no timing
//    hook, so both sides build the same 4-guest mix deterministically (the mix and its generator
//    are specified in scripts/bench/lib_bench.c and written twice: there and in fillMix() below)
//    in memory of the same kind (allocMergeable(..., {noHugePages: true}) and the same
//    mmap + madvise in C). Both run the same passes with the same settings (the defaults) over
//    the same four sources in the same order. The bare side is lib_bench (CMake target), which
//    compiles the core with binding.gyp's flags, so only the binding differs. Two checks prove
//    "same memory, same work": sample page hashes agree before timing, and every run of both
//    sides ends with identical counters (else the benchmark fails). The runs alternate (C, addon,
//    C, addon, ...) so drift on a shared host hits both; each side's best run is compared, the
//    medians are shown too. addon_vs_core_ratio = addon seconds / C seconds (1.0 = no overhead).
// 2. Event-loop lag during the addon scans: perf_hooks.monitorEventLoopDelay with a 1 ms
//    resolution, a new one for each scan (one re-enabled after a pause would record the pause as
//    one sample). Its samples are the whole interval between timer callbacks (an idle loop reads
//    ~1 ms), so lag = sample - 1 ms. The worst run's p99 is reported; an idle baseline is shown
//    beside it.
// 3. Pagemap count time: livePages() on a child (lib_bench hold) holding 4 GiB of present
//    mergeable pages; pagemap_ms_per_gib = best time / GiB of present pages. The same on a
//    quarter of that size separates the part that grows with the process from the fixed part
//    (reading /proc/kpageflags over the PFN range the pages are scattered in, i.e. host RAM).
// Prints a table and one JSON line last. Targets (issue 3): ratio <= 1.05, p99 lag <= 10 ms.
// Knobs: SAMEPAGE_BENCH_GIB (default 4), SAMEPAGE_BENCH_RUNS (5), SAMEPAGE_BENCH_PASSES (10).
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { IntervalHistogram } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import nodeGypBuild from 'node-gyp-build';

import { Scanner, allocMergeable, livePages, pageHash, readKsmSettings } from '../../lib/index.js';
import type { EngineCounters } from '../../lib/index.js';

const root = path.resolve(__dirname, '../../..');
const libBench = path.join(root, 'build-release', 'lib_bench');
const PAGE = 4096;
const GUESTS = 4;
const RESOLUTION_MS = 1;
/** The counters both sides print; each must agree at the end of every run. */
const COMPARED = [
  'pages_shared',
  'pages_sharing',
  'pages_unshared',
  'pages_volatile',
  'pages_skipped',
  'pages_scanned',
  'full_scans',
  'ksm_zero_pages',
  'page_compares',
  'full_compares',
  'bytes_read',
] as const;
type Compared = Pick<EngineCounters, (typeof COMPARED)[number]>;

function envNumber(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || v < min) throw new Error(`${name}=${raw}: expected a number of at least ${min}`);
  return v;
}

// ---- the mix (see lib_bench.c) -------------------------------------------------------------

function fillSeeded(words: Uint32Array, at: number, seed: number): void {
  let x = Math.imul(seed, 0x9e3779b1) ^ 0x6a09e667;
  if (x === 0) x = 0x6a09e667; // xorshift's fixed point
  for (let i = 0; i < PAGE / 4; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[at + i] = x;
  }
}

function fillMix(buf: ArrayBuffer, guest: number): void {
  const words = new Uint32Array(buf);
  const bytes = new Uint8Array(buf);
  const pages = buf.byteLength / PAGE;
  for (let i = 0; i < pages; i++) {
    const slot = i % 100;
    const at = (i * PAGE) / 4;
    if (slot < 45) fillSeeded(words, at, 1 + i);
    else if (slot < 60) bytes[i * PAGE] = 0; // a write fault: present, zero-filled
    else if (slot < 70) fillSeeded(words, at, 0xf0000000 + (i % 7));
    else fillSeeded(words, at, (guest + 1) * 2 ** 28 + i);
  }
}

// ---- the C side ----------------------------------------------------------------------------

interface Ready {
  ready: true;
  pid: number;
  guests: number;
  pages_each: number;
  samples: { guest: number; page: number; hash: string }[];
}

interface CRun {
  seconds: number;
  cpu_seconds: number;
  counters: Compared;
}

/** lib_bench as a child: one JSON line per request. */
class CChild {
  private readonly child: ChildProcess;
  private readonly waiting: { resolve: (line: string) => void; reject: (err: Error) => void }[] = [];
  private readonly queued: string[] = [];
  private stderr = '';
  private exited: Error | undefined;

  constructor(args: string[]) {
    this.child = spawn(libBench, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stderr?.on('data', (d: Buffer) => (this.stderr += d.toString()));
    createInterface({ input: this.child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const w = this.waiting.shift();
      if (w) w.resolve(line);
      else this.queued.push(line);
    });
    this.child.once('exit', (code, signal) => {
      this.exited = new Error(`lib_bench ${args.join(' ')} exited (${String(code ?? signal)}): ${this.stderr.trim()}`);
      // Lines still buffered in readline arrive before 'close'; whoever waits after that fails.
      setImmediate(() => this.waiting.splice(0).forEach((w) => w.reject(this.exited as Error)));
    });
    process.once('exit', () => this.child.kill('SIGKILL'));
  }

  async next<T>(): Promise<T> {
    const line =
      this.queued.shift() ??
      (await new Promise<string>((resolve, reject) => {
        if (this.exited) reject(this.exited);
        else this.waiting.push({ resolve, reject });
      }));
    return JSON.parse(line) as T;
  }

  request<T>(): Promise<T> {
    this.child.stdin?.write('run\n');
    return this.next<T>();
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin?.end();
    await gone;
  }
}

// ---- helpers -------------------------------------------------------------------------------

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

function pick(c: Compared): Compared {
  return Object.fromEntries(COMPARED.map((k) => [k, c[k]])) as Compared;
}

function sameCounters(a: Compared, b: Compared): string | undefined {
  const diff = COMPARED.filter((k) => a[k] !== b[k]).map((k) => `${k} ${a[k]} != ${b[k]}`);
  return diff.length ? diff.join(', ') : undefined;
}

/** Fails when the loaded addon is older than the sources it is built from (a stale comparison). */
function checkAddonFresh(addon: string): void {
  const sources = ['native/core/src', 'native/core/include', 'native/addon'].flatMap((d) =>
    readdirSync(path.join(root, d)).map((f) => path.join(root, d, f)),
  );
  sources.push(path.join(root, 'binding.gyp'));
  const newest = sources.reduce((a, f) => (statSync(f).mtimeMs > statSync(a).mtimeMs ? f : a));
  if (statSync(newest).mtimeMs > statSync(addon).mtimeMs) {
    throw new Error(`${addon} is older than ${path.relative(root, newest)}: rebuild it (npm run build:native) so both sides run the same engine`);
  }
}

const lagMs = (h: IntervalHistogram, pct: number): number => Math.max(0, h.percentile(pct) / 1e6 - RESOLUTION_MS);

// ---- the three measurements ----------------------------------------------------------------

async function pagemapCount(gib: number, runs: number): Promise<{ bestMs: number; medianMs: number; gibPresent: number }> {
  const holder = new CChild(['hold', '--gib', String(gib)]);
  try {
    const ready = await holder.next<Ready>();
    const expected = ready.pages_each * ready.guests;
    const times: number[] = [];
    let present = 0;
    for (let r = 0; r <= runs; r++) {
      const t = performance.now();
      const [lp] = await livePages([ready.pid]);
      const ms = performance.now() - t;
      if (!lp || lp.error) throw lp?.error ?? new Error('livePages returned nothing');
      // The four mergeable mappings, every page written: anything else is not the memory asked for.
      if (lp.scannedPages !== expected || lp.presentPages !== expected) {
        throw new Error(`livePages saw ${lp.scannedPages} pages (${lp.presentPages} present), expected ${expected}`);
      }
      present = lp.presentPages;
      if (r > 0) times.push(ms); // the first call warms the page-table and kpageflags paths
    }
    const gibPresent = (present * PAGE) / 2 ** 30;
    return { bestMs: Math.min(...times), medianMs: median(times), gibPresent };
  } finally {
    await holder.stop();
  }
}

interface ScanFigures {
  coreSeconds: number[];
  addonSeconds: number[];
  coreCpu: number[];
  addonCpu: number[];
  pagesVisited: number;
  counters: Compared;
  /** One histogram per addon scan. */
  lags: IntervalHistogram[];
  idle: IntervalHistogram;
  progressCalls: number;
  abortLatencyMs: number;
}

async function scanComparison(gib: number, runs: number, passes: number): Promise<ScanFigures> {
  const core = new CChild(['serve', '--gib', String(gib), '--passes', String(passes)]);
  try {
    const ready = await core.next<Ready>();
    const bytesEach = ready.pages_each * PAGE;
    const buffers: ArrayBuffer[] = [];
    for (let g = 0; g < GUESTS; g++) {
      const buf = allocMergeable(bytesEach, { noHugePages: true });
      fillMix(buf, g);
      buffers.push(buf);
    }
    for (const s of ready.samples) {
      const ours = pageHash(new Uint8Array(buffers[s.guest] as ArrayBuffer, s.page * PAGE, PAGE));
      if (ours !== s.hash) throw new Error(`the two mixes differ: guest ${s.guest} page ${s.page} hashes ${ours} here, ${s.hash} in lib_bench`);
    }

    const idle = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
    idle.enable();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    idle.disable();

    const lags: IntervalHistogram[] = [];
    const coreSeconds: number[] = [];
    const addonSeconds: number[] = [];
    const coreCpu: number[] = [];
    const addonCpu: number[] = [];
    let reference: Compared | undefined;
    let progressCalls = 0;
    for (let r = 0; r < runs; r++) {
      const c = await core.request<CRun>();
      coreSeconds.push(c.seconds);
      coreCpu.push(c.cpu_seconds);

      const scanner = new Scanner();
      buffers.forEach((b, g) => scanner.addBuffer(b, `guest${g}`));
      const ac = new AbortController();
      const lag = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
      lags.push(lag);
      lag.enable();
      const cpu = process.cpuUsage();
      const t = performance.now();
      const result = await scanner.scan({ passes, signal: ac.signal, onProgress: () => void progressCalls++ });
      addonSeconds.push((performance.now() - t) / 1000);
      const used = process.cpuUsage(cpu);
      addonCpu.push((used.user + used.system) / 1e6);
      lag.disable();
      await scanner.close();

      const mismatch = sameCounters(pick(result.counters), c.counters);
      if (mismatch) throw new Error(`run ${r + 1}: the addon and the C engine did different work: ${mismatch}`);
      const again = reference && sameCounters(reference, c.counters);
      if (again) throw new Error(`run ${r + 1} differs from run 1: ${again}`);
      reference ??= pick(c.counters);
    }

    // How soon an abort ends a scan: one slice (about 50 ms) at most.
    const scanner = new Scanner();
    buffers.forEach((b, g) => scanner.addBuffer(b, `guest${g}`));
    const ac = new AbortController();
    const running = scanner.scan({ passes: 1000, signal: ac.signal });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const t = performance.now();
    ac.abort();
    const outcome = await running.then(
      () => 'finished',
      (err: unknown) => (err instanceof Error ? err.name : String(err)),
    );
    const abortLatencyMs = performance.now() - t;
    await scanner.close();
    if (outcome !== 'AbortError') throw new Error(`an aborted scan ended with ${outcome}, not AbortError`);

    const counters = reference as Compared;
    return {
      coreSeconds,
      addonSeconds,
      coreCpu,
      addonCpu,
      pagesVisited: counters.pages_scanned + counters.pages_skipped,
      counters,
      lags,
      idle,
      progressCalls,
      abortLatencyMs,
    };
  } finally {
    await core.stop();
  }
}

async function main(): Promise<void> {
  const gib = envNumber('SAMEPAGE_BENCH_GIB', 4, 0.01);
  const runs = Math.round(envNumber('SAMEPAGE_BENCH_RUNS', 5, 1));
  const passes = Math.round(envNumber('SAMEPAGE_BENCH_PASSES', 10, 1));

  const build = spawnSync('bash', [path.join(root, 'scripts/build-core.sh'), 'release'], { encoding: 'utf8' });
  if (build.status !== 0) throw new Error(`building lib_bench failed:\n${build.stdout}${build.stderr}`);
  const addon = nodeGypBuild.resolve(root);
  checkAddonFresh(addon);
  const ksm = await readKsmSettings();

  const pm = await pagemapCount(gib, runs);
  const pmSmall = await pagemapCount(gib / 4, runs);
  const marginalMsPerGib = (pm.bestMs - pmSmall.bestMs) / (pm.gibPresent - pmSmall.gibPresent);
  const scan = await scanComparison(gib, runs, passes);

  const coreBest = Math.min(...scan.coreSeconds);
  const addonBest = Math.min(...scan.addonSeconds);
  const ratio = addonBest / coreBest;
  const medianRatio = median(scan.addonSeconds) / median(scan.coreSeconds);
  // CPU time tells binding work from waiting: a slice boundary is two thread wake-ups, which a
  // busy host delays (wall time grows, CPU time does not).
  const cpuRatio = Math.min(...scan.addonCpu) / Math.min(...scan.coreCpu);
  const mpps = (s: number): number => scan.pagesVisited / s / 1e6;
  const worst = scan.lags.reduce((a, h) => (h.percentile(99) > a.percentile(99) ? h : a));
  const p99Lag = lagMs(worst, 99);
  const maxLag = Math.max(0, ...scan.lags.map((h) => h.max / 1e6 - RESOLUTION_MS));
  const pagemapMsPerGib = pm.bestMs / pm.gibPresent;
  const lagOk = p99Lag <= 10;
  const ratioOk = ratio <= 1.05;

  const row = (label: string, ...cols: string[]): void => console.log(label.padEnd(46) + cols.map((c) => c.padStart(12)).join(''));
  console.log(`samepage library benchmark: ${gib} GiB in ${GUESTS} buffers, ${passes} passes a run, ${runs} runs each side (alternating)`);
  console.log(`addon ${path.relative(root, addon)}, bare engine ${path.relative(root, libBench)}; host KSM run=${String(ksm.run)}`);
  console.log(`work per run (identical on both sides): ${scan.pagesVisited} pages visited, ${scan.counters.pages_shared} shared, ${scan.counters.pages_sharing} sharing, ${scan.counters.page_compares} compares`);
  row('', 'best s', 'median s', 'Mpages/s', 'vs C', 'CPU s', 'CPU vs C');
  const coreCpu = Math.min(...scan.coreCpu);
  const addonCpu = Math.min(...scan.addonCpu);
  row('(a) bare C engine (sp_engine_pass)', coreBest.toFixed(3), median(scan.coreSeconds).toFixed(3), mpps(coreBest).toFixed(2), '1.000', coreCpu.toFixed(3), '1.000');
  row('(b) addon: Scanner.scan, progress + signal', addonBest.toFixed(3), median(scan.addonSeconds).toFixed(3), mpps(addonBest).toFixed(2), ratio.toFixed(3), addonCpu.toFixed(3), cpuRatio.toFixed(3));
  console.log(`    runs, C: ${scan.coreSeconds.map((s) => s.toFixed(3)).join(' ')}; addon: ${scan.addonSeconds.map((s) => s.toFixed(3)).join(' ')}; median ratio ${medianRatio.toFixed(3)}; ${scan.progressCalls} progress calls`);
  console.log(`    host load average (1 min) ${os.loadavg()[0]?.toFixed(2)} on ${os.availableParallelism()} CPUs: wall-clock ratios on a busy host include scheduling waits`);
  row('', 'p50 ms', 'p99 ms', 'max ms', 'samples');
  const lagRow = (label: string, h: IntervalHistogram): void =>
    row(label, lagMs(h, 50).toFixed(2), lagMs(h, 99).toFixed(2), Math.max(0, h.max / 1e6 - RESOLUTION_MS).toFixed(2), String(h.count));
  lagRow('(c) event-loop lag while the addon scans', worst);
  console.log(`    (the run with the worst p99; p99 per run: ${scan.lags.map((h) => lagMs(h, 99).toFixed(2)).join(' ')} ms)`);
  lagRow('    idle loop, same process (baseline)', scan.idle);
  console.log(`    abort during a scan: rejected with AbortError ${scan.abortLatencyMs.toFixed(1)} ms after abort()`);
  row('', 'best ms', 'median ms', 'ms/GiB', 'GiB');
  row(`(d) livePages on a process with ${pm.gibPresent} GiB present`, pm.bestMs.toFixed(1), pm.medianMs.toFixed(1), pagemapMsPerGib.toFixed(1), pm.gibPresent.toFixed(2));
  row(`    the same with ${pmSmall.gibPresent} GiB present`, pmSmall.bestMs.toFixed(1), pmSmall.medianMs.toFixed(1), (pmSmall.bestMs / pmSmall.gibPresent).toFixed(1), pmSmall.gibPresent.toFixed(2));
  console.log(`    so about ${marginalMsPerGib.toFixed(1)} ms per GiB of process plus ${(pmSmall.bestMs - marginalMsPerGib * pmSmall.gibPresent).toFixed(0)} ms fixed on this host (${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM)`);
  console.log(`targets: addon_vs_core_ratio ${ratio.toFixed(3)} <= 1.05 ${ratioOk ? 'met' : 'NOT met'}; p99 loop lag ${p99Lag.toFixed(2)} ms <= 10 ${lagOk ? 'met' : 'NOT met'}`);
  console.log(
    JSON.stringify({
      gib,
      passes,
      runs,
      pages_visited: scan.pagesVisited,
      core_seconds: Number(coreBest.toFixed(4)),
      addon_seconds: Number(addonBest.toFixed(4)),
      addon_vs_core_ratio: Number(ratio.toFixed(4)),
      addon_vs_core_ratio_median: Number(medianRatio.toFixed(4)),
      addon_vs_core_cpu_ratio: Number(cpuRatio.toFixed(4)),
      load_average: Number((os.loadavg()[0] ?? 0).toFixed(2)),
      p99_loop_lag_ms: Number(p99Lag.toFixed(3)),
      max_loop_lag_ms: Number(maxLag.toFixed(3)),
      idle_p99_loop_lag_ms: Number(lagMs(scan.idle, 99).toFixed(3)),
      abort_latency_ms: Number(scan.abortLatencyMs.toFixed(1)),
      pagemap_ms: Number(pm.bestMs.toFixed(2)),
      pagemap_marginal_ms_per_gib: Number(marginalMsPerGib.toFixed(2)),
      pagemap_ms_per_gib: Number(pagemapMsPerGib.toFixed(2)),
      ratio_target_met: ratioOk,
      lag_target_met: lagOk,
    }),
  );
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
