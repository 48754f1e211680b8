// The seed report (issue 14): reads the JSON files `npm run bench:seed:run` writes, one per run,
// and renders the published tables with our figures beside them (markdown), the plots to draw
// (seed-plots.ts turns them into PNGs) and the one JSON line the issue names. Pure: no I/O but
// reading the run files, so a test can render a report from any runs.
//
// A run is identified by its workload and its variant: what the host did during it. The runner
// makes five: "kernel" (the kernel's ksmd at --ksm PAGES/MS, no action on the host cache),
// "no-ksm" (--ksm off), "lookahead" (--engine on: the engine run the way ksmd runs on the live
// guests, lookahead off and on side by side), "drop-all" (--host-cache drop-all) and "scrub"
// (--host-cache scrub: the agent's exclusive-cache scrub on its timer). "truly-exclusive" is read
// from options.variant when a run file carries it; until one exists, its column says "not run"
// and the report lists the runs missing.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { MemoryUsage } from '../qemu/cgroup.js';
import { ENGINE_SIDES, engineWindow, type EnginePair, type EngineSample } from './seed-engine.js';
import type { ZipfModel, ZipfModelError } from './zipf-model.js';
import type { WssRun } from './seed-wss.js';
import { wssPassText } from './wss-judge.js';
import { tightLimitMiB } from './seed-workloads.js';
import type { KernelLookaheadRow } from './seed-kernel.js';

/** One sample of the host during a run (scripts/bench/seed.ts writes them every --interval). */
export interface SeedSample {
  /** Seconds since the guests' QEMUs started. */
  t: number;
  /** "booting", then the workload's name. */
  phase: string;
  ksm: Record<string, number>;
  ksmdCpuS: number;
  /** Host page cache held by each guest's image (mincore), MiB. */
  imageCacheMiB: number[];
  cgroup?: MemoryUsage;
  /**
   * Per QEMU: RSS, CPU, and its reads from /proc/PID/io: rchar (bytes its read calls returned,
   * from the host page cache or not) and read_bytes (bytes it made the kernel fetch from storage).
   * With cache=writeback nearly all of them are the image's, so over a window the host cache's
   * hit ratio by bytes is 1 - Δread_bytes / Δrchar (readahead counts as fetched). Runs before
   * 2026-12-03 21:00 UTC have no rcharMiB/readMiB; from then on they are sampled from each QEMU's start.
   */
  qemu: { rssMiB: number; cpuS: number; rcharMiB?: number; readMiB?: number }[];
  /** With --engine on: the two engines (lookahead off and on) run the way ksmd runs. */
  engine?: EnginePair;
}

/** The host cache's hit ratio by bytes over the samples, summed over the QEMUs; null without reads. */
/** The samples that carry every QEMU's reads (the runner finds them once each has started). */
export function withQemuReads(ss: readonly SeedSample[]): SeedSample[] {
  return ss.filter((s) => s.qemu.length > 0 && s.qemu.every((q) => q.rcharMiB !== undefined));
}

/** The QEMUs' Δrchar and Δread_bytes, MiB, from the first sample with their reads to the last; null under two. */
export function qemuReadsMiB(ss: readonly SeedSample[]): { rcharMiB: number; readMiB: number } | null {
  const withReads = withQemuReads(ss);
  const a = withReads[0];
  const b = withReads.at(-1);
  if (a === undefined || b === undefined || a === b) return null;
  let rchar = 0;
  let read = 0;
  b.qemu.forEach((q, i) => {
    const p = a.qemu[i];
    if (p?.rcharMiB === undefined || q.rcharMiB === undefined || p.readMiB === undefined || q.readMiB === undefined) return;
    rchar += q.rcharMiB - p.rcharMiB;
    read += q.readMiB - p.readMiB;
  });
  return { rcharMiB: rchar, readMiB: read };
}

export function hostCacheHitRatio(ss: readonly SeedSample[]): number | null {
  const r = qemuReadsMiB(ss);
  return r !== null && r.rcharMiB > 0 ? Math.min(1, Math.max(0, 1 - r.readMiB / r.rcharMiB)) : null;
}

export const VARIANTS = ['kernel', 'no-ksm', 'lookahead', 'scrub', 'drop-all', 'truly-exclusive'] as const;
export type Variant = (typeof VARIANTS)[number] | string;

export const VARIANT_MEANING: Record<string, string> = {
  kernel: "the kernel's ksmd at the run's --ksm, no action on the host cache",
  'no-ksm': 'KSM left as it was (--ksm off)',
  lookahead: "the kernel's ksmd, and the engine run on the live guests the way ksmd runs (same pages_to_scan/sleep), lookahead off and on side by side (--engine on)",
  scrub: "the agent's exclusive-cache scrub every --drop-interval seconds while the workload runs (--host-cache scrub)",
  'drop-all': 'the images written back and dropped from the host cache every --drop-interval seconds while the workload runs (--host-cache drop-all)',
  'truly-exclusive': 'a block in exactly one cache',
};

/** The suffix of a run whose guests booted with init_on_free=1 (the runner's --init-on-free on). */
export const INIT_ON_FREE = '-init-on-free';
/** The suffix of a run under the tightest limit (--limit tight: no room kept for the host cache). */
export const TIGHT = '-tight';
/** The suffix of a run on a throttled disk (--disk-read N: N MiB/s), N appended. */
export const DISK = '-disk';
/** Each suffix a variant may end with, in the order they follow the host's variant, and the runner's arguments for it. */
const VARIANT_SUFFIXES: readonly { pattern: RegExp; args: (m: RegExpExecArray) => string[] }[] = [
  { pattern: new RegExp(`${INIT_ON_FREE}$`), args: () => ['--init-on-free', 'on'] },
  { pattern: new RegExp(`${TIGHT}$`), args: () => ['--limit', 'tight'] },
  { pattern: new RegExp(`${DISK}([1-9][0-9]*)$`), args: (m) => ['--disk-read', m[1] as string] },
];

/** A variant as the host's policy (kernel, scrub, ...), the suffixes after it, and their runner arguments. */
function splitVariant(variant: Variant): { host: string; suffix: string; args: string[] } {
  let host = variant;
  let args: string[] = [];
  for (const v of [...VARIANT_SUFFIXES].reverse()) {
    const m = v.pattern.exec(host);
    if (m) {
      host = host.slice(0, m.index);
      args = [...v.args(m), ...args];
    }
  }
  return { host, suffix: variant.slice(host.length), args };
}

export interface SeedRun {
  file: string;
  /** When the runner wrote it (the file's writtenAt; its mtime for files from before that field):
   * "newest" means this, so a fresh clone, whose mtimes are all the checkout's, reads the same runs. */
  writtenMs: number;
  workload: string;
  variant: Variant;
  options: Record<string, unknown>;
  summary: Record<string, unknown>;
  samples: SeedSample[];
  /** A wss run's passes (seed-wss.ts), as the runner wrote them. */
  wss?: unknown;
  error?: string;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function variantOf(options: Record<string, unknown>): Variant {
  if (typeof options['variant'] === 'string') return options['variant'];
  const mem = options['memMiB'];
  const tight = typeof mem === 'number' && options['limitMiB'] === tightLimitMiB(mem);
  const disk = typeof options['diskReadMiBps'] === 'number' && options['diskReadMiBps'] > 0 ? `${DISK}${options['diskReadMiBps']}` : '';
  return `${hostVariantOf(options)}${options['initOnFree'] === true ? INIT_ON_FREE : ''}${tight ? TIGHT : ''}${disk}`;
}

function hostVariantOf(options: Record<string, unknown>): Variant {
  if (options['engine'] === true) return 'lookahead';
  if (options['hostCache'] === 'drop-all') return 'drop-all';
  if (options['hostCache'] === 'scrub') return 'scrub';
  return isObject(options['ksm']) ? 'kernel' : 'no-ksm';
}

/** A run file, checked for the fields the report reads; an Error naming the file otherwise. */
export function readRun(file: string): SeedRun {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not a JSON file (${(e as Error).message})`);
  }
  if (!isObject(raw) || !isObject(raw['options']) || !isObject(raw['summary']) || !Array.isArray(raw['samples'])) {
    throw new Error(`${file}: not a bench:seed:run file (no options, summary and samples)`);
  }
  const options = raw['options'];
  const workload = options['workload'];
  if (typeof workload !== 'string') throw new Error(`${file}: options.workload is missing`);
  const samples = raw['samples'] as unknown[];
  for (const [i, s] of samples.entries()) {
    if (!isObject(s) || typeof s['t'] !== 'number' || !isObject(s['ksm']) || !Array.isArray(s['imageCacheMiB']) || !Array.isArray(s['qemu'])) {
      throw new Error(`${file}: sample ${i} lacks t, ksm, imageCacheMiB or qemu`);
    }
  }
  return {
    file,
    writtenMs: typeof raw['writtenAt'] === 'string' && Number.isFinite(Date.parse(raw['writtenAt'])) ? Date.parse(raw['writtenAt']) : statSync(file).mtimeMs,
    workload,
    variant: variantOf(options),
    options,
    summary: raw['summary'],
    samples: samples as SeedSample[],
    ...(raw['wss'] !== undefined ? { wss: raw['wss'] } : {}),
    ...(typeof raw['error'] === 'string' ? { error: raw['error'] } : {}),
  };
}

/** Runs from files and directories (every *.json in a directory that is a run file; others skipped). */
export function loadRuns(paths: readonly string[]): { runs: SeedRun[]; skipped: string[] } {
  const runs: SeedRun[] = [];
  const skipped: string[] = [];
  for (const p of paths) {
    if (statSync(p).isDirectory()) {
      for (const name of readdirSync(p).filter((n) => n.endsWith('.json')).sort()) {
        try {
          runs.push(readRun(path.join(p, name)));
        } catch (e) {
          skipped.push((e as Error).message);
        }
      }
    } else {
      runs.push(readRun(p));
    }
  }
  return { runs, skipped };
}

// ---- the published figures (issue 14, from the seed's paper), 2 VMs each ----

export const PUBLISHED = {
  lookahead: {
    boot: { shared: [8000, 11000], cpu: [12, 12] },
    compile: { shared: [26000, 30000], cpu: [19, 22] },
    desktop: { shared: [31000, 62000], cpu: [14.6, 16.8] },
  },
  cache: {
    compile: { shared: 75000, dropped: null, hostCacheMiB: [512, 260], cpu: [14, 16] },
    desktop: { shared: 62000, dropped: 162000, hostCacheMiB: [400, 219], cpu: [18.8, 14.6] },
  },
  bonnie: {
    putc_kps: [24000, 32000],
    getc_kps: [27000, 27500],
    get_block_kps: [53750, 47700],
    put_block_kps: [22500, 23800],
  },
} as const;

const BONNIE_LABEL: Record<keyof typeof PUBLISHED.bonnie, string> = {
  putc_kps: 'write (char)',
  getc_kps: 'read (char)',
  get_block_kps: 'read (block)',
  put_block_kps: 'write (block)',
};

export const ZIPF_POLICIES = [
  { key: 'none', variant: 'kernel', label: 'no action' },
  { key: 'ksm_exclusive', variant: 'scrub', label: 'KSM-exclusive (our scrub)' },
  { key: 'drop_all', variant: 'drop-all', label: 'drop-all' },
  { key: 'truly_exclusive', variant: 'truly-exclusive', label: 'truly exclusive' },
  { key: 'none_init_on_free', variant: `kernel${INIT_ON_FREE}`, label: 'no action, init_on_free=1' },
  { key: 'ksm_exclusive_init_on_free', variant: `scrub${INIT_ON_FREE}`, label: 'KSM-exclusive, init_on_free=1' },
  { key: 'drop_all_init_on_free', variant: `drop-all${INIT_ON_FREE}`, label: 'drop-all, init_on_free=1' },
  { key: 'truly_exclusive_init_on_free', variant: `truly-exclusive${INIT_ON_FREE}`, label: 'truly exclusive, init_on_free=1' },
  { key: 'none_init_on_free_tight', variant: `kernel${INIT_ON_FREE}${TIGHT}`, label: 'no action, init_on_free=1, tight limit' },
  { key: 'ksm_exclusive_init_on_free_tight', variant: `scrub${INIT_ON_FREE}${TIGHT}`, label: 'KSM-exclusive, init_on_free=1, tight limit' },
  { key: 'drop_all_init_on_free_tight', variant: `drop-all${INIT_ON_FREE}${TIGHT}`, label: 'drop-all, init_on_free=1, tight limit' },
  { key: 'truly_exclusive_init_on_free_tight', variant: `truly-exclusive${INIT_ON_FREE}${TIGHT}`, label: 'truly exclusive, init_on_free=1, tight limit' },
  { key: 'none_init_on_free_tight_disk4', variant: `kernel${INIT_ON_FREE}${TIGHT}${DISK}4`, label: 'no action, init_on_free=1, tight limit, disk 4 MiB/s' },
  { key: 'ksm_exclusive_init_on_free_tight_disk4', variant: `scrub${INIT_ON_FREE}${TIGHT}${DISK}4`, label: 'KSM-exclusive, init_on_free=1, tight limit, disk 4 MiB/s' },
] as const;

export const TABLES = ['lookahead', 'cache', 'bonnie', 'zipf', 'wss'] as const;
export type TableName = (typeof TABLES)[number];

// ---- figures of a run ----

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
/** A model's truly exclusive figure: its validated fit's with the smallest largest gap; null when none is validated. */
export function trulyExclusiveOf(model: Pick<ZipfModel, 'fits'>): number | null {
  const best = model.fits.filter((f) => f.validated).sort((x, y) => x.maxError - y.maxError)[0];
  return best?.rows.find((r) => r.policy === 'truly-exclusive')?.modelled ?? null;
}

/** A guest setting (a variant suffix) in words: '' is plain guests. */
const settingText = (setting: string): string => (setting === '' ? 'plain' : setting.slice(1));

/** A finite number, or null (run files are JSON: anything may be missing). */
export { num as finiteNumber };

/** A run's wss passes, when the file carries them whole (every figure the table prints a number). */
export function wssOf(r: SeedRun): WssRun | undefined {
  const w = r.wss;
  const numbers = (a: unknown, n?: number): boolean => Array.isArray(a) && (n === undefined || a.length === n) && a.every((x) => typeof x === 'number' && Number.isFinite(x));
  if (!isObject(w) || typeof w['intervalS'] !== 'number' || !numbers(w['loopsMiB'], 2) || !numbers(w['passEndS']) || !Array.isArray(w['guests'])) return undefined;
  const okPass = (p: unknown): boolean =>
    isObject(p) && typeof p['estimateMiB'] === 'number' && typeof p['truthMiB'] === 'number' && typeof p['excused'] === 'boolean' && typeof p['inTransit'] === 'boolean';
  const okGuest = (g: unknown): boolean => isObject(g) && typeof g['name'] === 'string' && typeof g['idleMiB'] === 'number' && Array.isArray(g['passes']) && g['passes'].every(okPass);
  return w['guests'].every(okGuest) ? (w as unknown as WssRun) : undefined;
}

/** The newest run of a workload and variant (any variant: undefined) that did not fail. */
export function pick(runs: readonly SeedRun[], workload: string, variant: Variant | undefined): SeedRun | undefined {
  return runs
    .filter((r) => r.workload === workload && (variant === undefined || r.variant === variant) && r.error === undefined)
    .sort((a, b) => a.writtenMs - b.writtenMs)
    .at(-1);
}

/** The samples taken while the workload ran (after both guests were READY). */
export function during(run: SeedRun): SeedSample[] {
  return run.samples.filter((s) => s.phase === run.workload);
}

/**
 * The window a table averages over: for boot, the whole run from QEMU's start (the published boot
 * figure is the boot itself; the runner's "boot" phase is only the idle minute after READY); for
 * the others, the workload's samples.
 */
export function windowOf(run: SeedRun): SeedSample[] {
  return run.workload === 'boot' ? run.samples : during(run);
}

/** Average pages_shared over the run's window; null without samples. */
export function avgShared(run: SeedRun): number | null {
  const ss = windowOf(run);
  if (ss.length === 0) return null;
  return Math.round(ss.reduce((a, s) => a + (s.ksm['pages_shared'] ?? 0), 0) / ss.length);
}

/** ksmd's CPU over the run's window, % of one core (Δ utime+stime / Δt); null under two samples. */
export function ksmdCpuPct(run: SeedRun): number | null {
  const ss = windowOf(run);
  const a = ss[0];
  const b = ss.at(-1);
  if (a === undefined || b === undefined || b.t <= a.t) return null;
  return Math.round((1000 * (b.ksmdCpuS - a.ksmdCpuS)) / (b.t - a.t)) / 10;
}

/** ksmd's CPU % plus the scrubs' own (summary.scrub_cpu_pct): what exclusive caching costs. */
export function withScrubCpu(run: SeedRun): number | null {
  const k = ksmdCpuPct(run);
  const s = num(run.summary['scrub_cpu_pct']);
  return k === null ? null : Math.round((k + (s ?? 0)) * 10) / 10;
}

/** The engines' figures over the run's window (runs made with --engine on; early only in runs that had it); null otherwise. */
export function engineFigures(run: SeedRun): { off: Record<string, number | null>; on: Record<string, number | null>; early: Record<string, number | null> | null } | null {
  const ss = windowOf(run).filter((s): s is SeedSample & { engine: EnginePair } => s.engine !== undefined);
  if (ss.length === 0) return null;
  const early = ss.every((s) => s.engine.early !== undefined) ? engineWindow(ss.map((s) => ({ t: s.t, e: s.engine.early as EngineSample }))) : null;
  return { off: engineWindow(ss.map((s) => ({ t: s.t, e: s.engine.off }))), on: engineWindow(ss.map((s) => ({ t: s.t, e: s.engine.on }))), early };
}

export function hitRatioOf(run: SeedRun): number | null {
  return num(run.summary['host_cache_hit_ratio']) ?? hostCacheHitRatio(during(run));
}

/** The mean over the guests of a numeric result field (bonnie++ columns, fio IOPS); null if none has it. */
export function meanResult(run: SeedRun, field: string): number | null {
  const results = Array.isArray(run.summary['results']) ? (run.summary['results'] as unknown[]) : [];
  const vs = results.map((r) => (isObject(r) ? num(r[field]) : null)).filter((v): v is number => v !== null);
  return vs.length === 0 ? null : vs.reduce((a, b) => a + b, 0) / vs.length;
}

const ratio = (a: number | null | undefined, b: number | null | undefined): number | null =>
  a === null || a === undefined || b === null || b === undefined || b === 0 ? null : Math.round((a / b) * 1000) / 1000;

// ---- plots ----

export interface LinePlot {
  kind: 'lines';
  file: string;
  title: string;
  xLabel: string;
  yLabel: string;
  series: { label: string; color: string; x: number[]; y: (number | null)[] }[];
  /** Vertical lines (e.g. where the workload started). */
  markers: { x: number; label: string }[];
}
export interface BarPlot {
  kind: 'bars';
  file: string;
  title: string;
  yLabel: string;
  yMax: number;
  bars: { label: string; value: number; color: string }[];
}
export type Plot = LinePlot | BarPlot;

export const PLOT_SIZE = { width: 960, height: 440 };

const COLORS: Record<string, string> = {
  kernel: '#2563eb',
  'no-ksm': '#6b7280',
  lookahead: '#16a34a',
  scrub: '#9333ea',
  'drop-all': '#ea580c',
  'truly-exclusive': '#0891b2',
  [`kernel${INIT_ON_FREE}`]: '#60a5fa',
  [`scrub${INIT_ON_FREE}`]: '#c084fc',
  [`kernel${INIT_ON_FREE}${TIGHT}`]: '#1e3a8a',
  [`scrub${INIT_ON_FREE}${TIGHT}`]: '#581c87',
  [`kernel${INIT_ON_FREE}${TIGHT}${DISK}4`]: '#0d9488',
  [`scrub${INIT_ON_FREE}${TIGHT}${DISK}4`]: '#db2777',
};
const colorOf = (v: Variant): string => COLORS[v] ?? '#111827';

function workloadStart(run: SeedRun): number | undefined {
  return run.samples.find((s) => s.phase === run.workload)?.t;
}

function timePlot(runs: SeedRun[], workload: string, file: string, title: string, yLabel: string, value: (s: SeedSample) => number | null): LinePlot {
  const markers: LinePlot['markers'] = [];
  const series = runs.map((r) => {
    const start = workloadStart(r);
    if (start !== undefined) markers.push({ x: start, label: `${r.variant}: ${workload} starts` });
    return { label: r.variant === 'lookahead' ? "kernel's ksmd (lookahead run)" : r.variant, color: colorOf(r.variant), x: r.samples.map((s) => s.t), y: r.samples.map(value) };
  });
  return { kind: 'lines', file, title, xLabel: 'seconds since the guests started', yLabel, series, markers };
}

// ---- the report ----

export interface Report {
  markdown: string;
  plots: Plot[];
  /** The one JSON line (issue 14's names), printed last. */
  json: Record<string, unknown>;
  /** Runs a table needs that are not there, with the command that makes each (when the runner can). */
  missing: string[];
}

const fmt = (v: number | null | undefined, digits = 0): string =>
  v === null || v === undefined ? 'not run' : v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const arrow = (a: string, b: string): string => `${a} → ${b}`;
const ratioText = (r: number | null): string => (r === null ? '—' : `×${r.toFixed(2)}`);

/** Every run of a workload and variant that did not fail, oldest first. */
function runsOf(runs: readonly SeedRun[], workload: string, variant: Variant): SeedRun[] {
  return runs.filter((r) => r.workload === workload && r.variant === variant && r.error === undefined).sort((a, b) => a.writtenMs - b.writtenMs);
}

/**
 * No action → scrub in one setting, every run of each (oldest first): host cache hit ratio, guest
 * read IOPS, host cache, pages dropped; null without a run of both.
 */
function scrubRunsText(runs: readonly SeedRun[], suffix: string): string | null {
  const plain = runsOf(runs, 'fio-zipf', `kernel${suffix}`), scrub = runsOf(runs, 'fio-zipf', `scrub${suffix}`);
  if (plain.length === 0 || scrub.length === 0) return null;
  const list = (rs: SeedRun[], f: (r: SeedRun) => string): string => rs.map(f).join(', ');
  const both = (f: (r: SeedRun) => string): string => `${list(plain, f)} → ${list(scrub, f)}`;
  const hit = (r: SeedRun): string => hitRatioOf(r)?.toFixed(3) ?? '—';
  const counts = plain.length === scrub.length ? `${plain.length} run${plain.length > 1 ? 's' : ''} of each` : `${plain.length} and ${scrub.length} runs`;
  return `${counts}: host cache hit ratio ${both(hit)}; guest read IOPS ${both((r) => fmt(meanResult(r, 'read_iops')))}; host cache MiB ${both((r) => fmt(num(r.summary['avg_host_cache_mib']), 1))}; pages the scrub dropped ${list(scrub, (r) => fmt(num(r.summary['pages_dropped'])))}`;
}

/**
 * Why the init_on_free rows exist, with their figures: a page a guest evicted from its cache keeps
 * the block's bytes in the guest's free RAM until reused, and the scrub, which finds a block in the
 * guest by content, takes it for cached and drops the host's copy. A guest that zeroes what it
 * frees leaves the scrub only the blocks it really caches. Then, under the tight limit and on a
 * slow disk, whether the room the scrub frees turns into host hits and guest I/O.
 */
function initOnFreeText(runs: readonly SeedRun[]): string[] {
  const settings = [
    { suffix: INIT_ON_FREE, label: 'at the default limit' },
    { suffix: `${INIT_ON_FREE}${TIGHT}`, label: "under the tight limit (the guests' RAM and QEMU's, no room kept for the host cache, which lives on what the guests leave unused)" },
    { suffix: `${INIT_ON_FREE}${TIGHT}${DISK}4`, label: 'under the tight limit on a disk read at 4 MiB/s (--disk-read 4: host cache misses cost what a slow disk costs)' },
  ];
  const items = settings.flatMap(({ suffix, label }) => {
    const text = scrubRunsText(runs, suffix);
    return text === null ? [] : [`- ${label}, ${text}.`];
  });
  if (items.length === 0) return [];
  return [
    "Why the scrub loses the host's hits above: it finds a block in a guest by its content, so a page the guest evicted and freed, whose bytes stay in its RAM until reused, counts as cached, and the host's copy goes; the guest's next miss on that block misses in the host too. Guests booted with init_on_free=1 zero what they free, so the scrub sees only the blocks they cache. No action → scrub with them, every run (oldest first; the table shows the newest):",
    '',
    ...items,
    '',
  ];
}

/** The runner's arguments that make a run of this workload and variant, or null if it cannot yet. */
export function runnerArgs(workload: string, variant: Variant): string[] | null {
  const { host, args: extra } = splitVariant(variant);
  if (host !== variant) {
    const args = runnerArgs(workload, host);
    return args === null ? null : [...args, ...extra];
  }
  if (variant === 'kernel') return ['--workload', workload];
  if (variant === 'no-ksm') return ['--workload', workload, '--ksm', 'off'];
  if (variant === 'lookahead') return ['--workload', workload, '--engine', 'on'];
  if (variant === 'drop-all' || variant === 'scrub') return ['--workload', workload, '--host-cache', variant];
  return null;
}

/** The file name a measured run gets in the runs directory. */
export function runFileName(workload: string, variant: Variant): string {
  const { host, suffix } = splitVariant(variant);
  return `seed-${workload}${host === 'kernel' ? '' : `-${host}`}${suffix}.json`;
}

/** The runs each table reads (workload, variant). */
export function requiredRuns(tables: readonly TableName[]): { workload: string; variant: Variant }[] {
  const out: { workload: string; variant: Variant }[] = [];
  const add = (workload: string, variant: Variant): void => {
    if (!out.some((r) => r.workload === workload && r.variant === variant)) out.push({ workload, variant });
  };
  for (const t of tables) {
    if (t === 'lookahead') for (const w of ['boot', 'compile', 'desktop']) add(w, 'lookahead');
    if (t === 'cache') for (const w of ['compile', 'desktop']) (add(w, 'kernel'), add(w, 'scrub'));
    if (t === 'bonnie') (add('bonnie', 'kernel'), add('bonnie', 'scrub'));
    if (t === 'zipf') for (const p of ZIPF_POLICIES) add('fio-zipf', p.variant);
    if (t === 'wss') add('wss', 'kernel');
  }
  return out;
}

/** What a table's missing run needs: the runner's command, or the feature the runner still lacks. */
function howToRun(workload: string, variant: Variant): string {
  const args = runnerArgs(workload, variant);
  if (args !== null) return `npm run bench:seed:run -- ${args.join(' ')} --out ${runFileName(workload, variant)}`;
  return `a ${workload} run with variant "${variant}" (${VARIANT_MEANING[variant] ?? variant}): bench:seed:run cannot make it yet`;
}

/** The patched kernel's lookahead (seed-kernel.ts) beside the engine's: markdown, and its ratios into json. */
function kernelLookaheadTable(kernel: ReportOptions['kernel'], json: Record<string, unknown>): string[] {
  const md = ['### The patched kernel (native/kernel)', ''];
  if (kernel === undefined || kernel.rows.length === 0) {
    json['kernel_lookahead_shared_ratio'] = null;
    json['kernel_lookahead_cpu_ratio'] = null;
    md.push(`No patched-kernel figures${kernel === undefined ? '' : ` in ${kernel.source}`}: pass --kernel with a test:kernel log (its "measure checks:" lines) or a checks boot's serial log.`, '');
    return md;
  }
  md.push(
    `From ${kernel.source}: ksmd of our series (Linux 6.12, lookahead patch 0001) in test:kernel's checks boot, under QEMU TCG with -icount so that CPU time counts guest instructions, off → on over the same workloads (scripts/kernel/guest/sp_lookahead.c): random and sparse are 3 processes of 4,096 pages whose runs of 56 pages are alike in all and 8 unique between runs (sparse: the same with each page's first three quarters zero, so that every tree compare walks most of the page), pages_shared at the end; vm is two processes that load shared files into a page cache and write a heap as guests do, pages_shared sampled every 100 ms. The kernel merges the same pages with lookahead on and off where memory holds still; what lookahead buys it is CPU per full scan.`,
    '',
    '| workload | runs off / on | pages_shared, off → on | ratio | ksmd CPU ms per full scan, off → on | ratio | lookahead hits / misses |',
    '|---|---|---|---|---|---|---|',
  );
  const shared: Record<string, number | null> = {};
  const cpu: Record<string, number | null> = {};
  for (const r of kernel.rows) {
    shared[r.workload] = ratio(r.sharedOn, r.sharedOff);
    cpu[r.workload] = ratio(r.cpuNsPerScanOn, r.cpuNsPerScanOff);
    md.push(
      `| ${r.workload} | ${r.runs[0]} / ${r.runs[1]} | ${arrow(fmt(r.sharedOff), fmt(r.sharedOn))} | ${ratioText(shared[r.workload] ?? null)} | ${arrow(fmt(r.cpuNsPerScanOff / 1e6, 1), fmt(r.cpuNsPerScanOn / 1e6, 1))} | ${ratioText(cpu[r.workload] ?? null)} | ${fmt(r.hits)} / ${fmt(r.misses)} |`,
    );
  }
  md.push('');
  json['kernel_lookahead_shared_ratio'] = shared;
  json['kernel_lookahead_cpu_ratio'] = cpu;
  return md;
}

export interface ReportOptions {
  /** The patched kernel's lookahead runs (seed-kernel.ts), and the file they came from. */
  kernel?: { source: string; rows: KernelLookaheadRow[] };
  tables?: readonly TableName[];
  generatedAt?: Date;
  sources?: string[];
  /** The Zipf table's cache models (zipf-model.ts), one per guest setting, or why one could not be made. */
  zipfModels?: readonly (ZipfModel | ZipfModelError)[];
}

export function buildReport(runs: readonly SeedRun[], opts: ReportOptions = {}): Report {
  const tables = opts.tables ?? TABLES;
  const missing: string[] = [];
  const need = (workload: string, variant: Variant): SeedRun | undefined => {
    const r = pick(runs, workload, variant);
    if (r === undefined) {
      const line = howToRun(workload, variant);
      if (!missing.includes(line)) missing.push(line);
    }
    return r;
  };
  const md: string[] = [];
  const plots: Plot[] = [];
  const plotted = new Set<string>();
  /** The two time plots of a workload (every variant run of it, newest each), once; their markdown. */
  const plotWorkload = (workload: string): string[] => {
    const variants = [...new Set([...VARIANTS, ...runs.map((r) => r.variant)])];
    const rs = variants.map((v) => pick(runs, workload, v)).filter((r): r is SeedRun => r !== undefined);
    if (rs.length === 0) return [];
    const files = [`pages-shared-${workload}.png`, `host-cache-${workload}.png`];
    if (!plotted.has(workload)) {
      plotted.add(workload);
      const shared = timePlot(rs, workload, files[0] as string, `pages_shared over time: ${workload}, 2 guests`, 'pages_shared', (s) => num(s.ksm['pages_shared']));
      for (const r of rs.filter((x) => x.samples.some((s) => s.engine !== undefined))) {
        const early = r.samples.some((s) => s.engine?.early !== undefined);
        for (const side of early ? ENGINE_SIDES : (['off', 'on'] as const)) {
          shared.series.push({
            label: `${r.variant}: engine, lookahead ${side}`,
            color: side === 'off' ? '#a16207' : side === 'on' ? '#dc2626' : '#7c3aed',
            x: r.samples.map((s) => s.t),
            y: r.samples.map((s) => s.engine?.[side]?.pages_shared ?? null),
          });
        }
      }
      plots.push(shared);
      plots.push(
        timePlot(rs, workload, files[1] as string, `host page cache of the two images over time: ${workload}`, 'MiB', (s) =>
          s.imageCacheMiB.length === 0 ? null : s.imageCacheMiB.reduce((a, b) => a + b, 0),
        ),
      );
    }
    return files.map((f) => `![${f.replace(/\.png$/, '').replace(/-/g, ' ')}](${f})`);
  };

  md.push('# The seed tables, re-measured on Debian 12 guests (issue 14)', '');
  md.push(
    `Generated ${(opts.generatedAt ?? new Date()).toISOString()} by \`npm run bench:seed\` from ${runs.length} run file${runs.length === 1 ? '' : 's'}` +
      `${opts.sources?.length ? ` (${opts.sources.join(', ')})` : ''}. Published figures are the seed paper's (2 VMs each); ours are 2 Debian 12 guests under QEMU TCG in a memory cgroup (scripts/bench/seed.ts). "not run" marks a figure whose run is not among the files (see [Missing runs](#missing-runs)).`,
    '',
  );

  md.push('## Runs', '', '| file | workload | variant | guests × RAM | cgroup limit | ksmd | workload s | avg pages_shared | avg pages_sharing | ksmd CPU % | avg host cache MiB | host cache hit ratio | result |', '|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of [...runs].sort((a, b) => a.workload.localeCompare(b.workload) || a.writtenMs - b.writtenMs)) {
    const s = r.summary;
    const hr = hitRatioOf(r);
    md.push(
      `| ${path.basename(r.file)} | ${r.workload} | ${r.variant} | ${num(s['guests']) ?? '?'} × ${num(s['mem_mib']) ?? '?'} MiB | ${num(s['limit_mib']) === null ? 'none' : `${num(s['limit_mib'])} MiB`} | ${String(s['ksm'] ?? '?')} | ${fmt(num(s['workload_s']), 1)} | ${fmt(num(s['avg_pages_shared']))} | ${fmt(num(s['avg_pages_sharing']))} | ${fmt(num(s['ksmd_cpu_pct']), 1)} | ${fmt(num(s['avg_host_cache_mib']), 1)} | ${hr === null ? '—' : hr.toFixed(3)} | ${r.error === undefined ? 'ok' : `failed: ${r.error.split('\n')[0]?.replace(/\|/g, '\\|')}`} |`,
    );
  }
  md.push('');

  const json: Record<string, unknown> = { bench: 'seed' };

  if (tables.includes('lookahead')) {
    md.push(
      '## Lookahead',
      '',
      "The C engine run on the live guests the way ksmd runs (a batch of pages_to_scan pages, then sleep_millisecs: the run's --ksm budget), side by side in the same run: lookahead off (vanilla) → on (and a third engine, lookahead early, below). Average pages_shared over the window (boot: from QEMU's start; else while the workload ran), the CPU of each engine's batches (% of one core), page compares per page scanned and lookahead's hit rate; the kernel's ksmd of the same run for reference.",
      '',
    );
    md.push(
      '| workload | published shared | ours shared (engine) | published ratio | our ratio | published CPU % | ours CPU % (engine) | compares / page | lookahead hit rate | kernel ksmd shared, CPU % |',
      '|---|---|---|---|---|---|---|---|---|---|',
    );
    const sharedRatio: Record<string, number | null> = {};
    const cpuRatio: Record<string, number | null> = {};
    const earlyShared: Record<string, number | null> = {};
    const earlyCpu: Record<string, number | null> = {};
    const earlyRows: string[] = [];
    const figs: string[] = [];
    for (const w of ['boot', 'compile', 'desktop'] as const) {
      const p = PUBLISHED.lookahead[w];
      const run = need(w, 'lookahead');
      const e = run ? engineFigures(run) : null;
      const f = (side: 'off' | 'on', k: string): number | null => (e ? num(e[side][k]) : null);
      sharedRatio[w] = ratio(f('on', 'avg_pages_shared'), f('off', 'avg_pages_shared'));
      cpuRatio[w] = ratio(f('on', 'cpu_pct'), f('off', 'cpu_pct'));
      const hr = f('on', 'lookahead_hit_rate');
      const g = (k: string): number | null => (e?.early ? num(e.early[k]) : null);
      earlyShared[w] = ratio(g('avg_pages_shared'), f('off', 'avg_pages_shared'));
      earlyCpu[w] = ratio(g('cpu_pct'), f('off', 'cpu_pct'));
      earlyRows.push(
        `| ${w} | ${ratioText(ratio(p.shared[1], p.shared[0]))} | ${e?.early ? `${arrow(fmt(f('off', 'avg_pages_shared')), fmt(g('avg_pages_shared')))} | ${ratioText(earlyShared[w] ?? null)} | ${arrow(fmt(f('off', 'cpu_pct'), 1), fmt(g('cpu_pct'), 1))} | ${fmt(g('lookahead_early'))} | ${fmt(g('pages_scanned'))}` : `${run ? 'not in this run' : 'not run'} | — | — | — | —`} |`,
      );
      md.push(
        `| ${w} | ${arrow(fmt(p.shared[0]), fmt(p.shared[1]))} | ${arrow(fmt(f('off', 'avg_pages_shared')), fmt(f('on', 'avg_pages_shared')))} | ${ratioText(ratio(p.shared[1], p.shared[0]))} | ${ratioText(sharedRatio[w] ?? null)} | ${arrow(fmt(p.cpu[0], 1), fmt(p.cpu[1], 1))} | ${arrow(fmt(f('off', 'cpu_pct'), 1), fmt(f('on', 'cpu_pct'), 1))} | ${arrow(fmt(f('off', 'compares_per_page'), 3), fmt(f('on', 'compares_per_page'), 3))} | ${hr === null ? (run ? '—' : 'not run') : hr.toFixed(3)} | ${run ? `${fmt(avgShared(run))}, ${fmt(ksmdCpuPct(run), 1)}` : 'not run'} |`,
      );
      figs.push(...plotWorkload(w));
    }
    md.push('');
    for (const [w, r] of Object.entries(sharedRatio)) {
      const pub = PUBLISHED.lookahead[w as 'boot'];
      const pr = pub.shared[1] / pub.shared[0];
      md.push(
        `- ${w}: ${r === null ? 'lookahead not run: no comparison yet' : r >= pr ? `lookahead gains ×${r.toFixed(2)} in shared pages, matching or beating the published ×${pr.toFixed(2)}` : `lookahead gives ×${r.toFixed(2)} in shared pages, short of the published ×${pr.toFixed(2)}`}.`,
      );
    }
    const measured = Object.values(sharedRatio).filter((r): r is number => r !== null);
    if (measured.length > 0 && measured.every((r) => Math.abs(r - 1) < 0.005)) md.push(
      '',
      "Why the shared-page ratio is ×1.00 wherever it was measured: the engine's lookahead (after page a matched a page whose partner is b, page a+1 is compared with b+1 first) only changes which compare finds a match, never whether one is found, so its counters are the same with it on and off (a property test runs both in lockstep); what it changes is the compares per page. With the same pages_to_scan/sleep budget it therefore cannot merge more pages; the published gain in shared pages is not reproduced by this design.",
      );
    json['lookahead_shared_ratio'] = sharedRatio;
    json['lookahead_cpu_ratio'] = cpuRatio;
    md.push(
      '',
      '### Lookahead early (research, not the kernel)',
      '',
      "A third engine in the same runs: lookahead on with lookaheadEarly, where a page equal to the page after its run's last partner merges even when the checksum gate would hold it back (its first visit, or changed since its last), so a run of new copies merges a pass sooner; a lookahead miss still waits for the gate. Against the engine with lookahead off, as the published columns are against vanilla KSM.",
      '',
      '| workload | published shared ratio | ours shared, off → early | our ratio | ours CPU %, off → early | merges the gate held back | pages scanned |',
      '|---|---|---|---|---|---|---|',
      ...earlyRows,
    );
    const earlyMeasured = Object.values(earlyShared).filter((r): r is number => r !== null);
    if (earlyMeasured.length > 0 && earlyMeasured.every((r) => Math.abs(r - 1) < 0.005)) md.push(
      '',
      "Why skipping the gate does not help either: it can only merge the page after a run's page that merged, and a run of new copies is new from its first page, which the gate holds back like the rest, so there is no merged page to continue from; a run that is new only after its start is rare in these guests (set the merges the gate held back against the pages scanned). Pages that do merge early are often written again soon, so the average barely moves.",
    );
    json['lookahead_early_shared_ratio'] = earlyShared;
    json['lookahead_early_cpu_ratio'] = earlyCpu;
    md.push('', ...kernelLookaheadTable(opts.kernel, json), ...figs, '');
  }

  if (tables.includes('cache')) {
    md.push('## Exclusive cache', '', 'Host page cache of the images (average while the workload ran), plain KSM → KSM + scrub, under the cgroup\'s limit. Our CPU is ksmd\'s in the plain run → ksmd\'s plus the scrubs\' own in the scrub run.', '');
    md.push('| workload | published avg shared | ours avg shared | published pages dropped | ours pages dropped | published host cache | ours host cache MiB | published CPU % | ours CPU % |', '|---|---|---|---|---|---|---|---|---|');
    const hostRatio: Record<string, number | null> = {};
    const figs: string[] = [];
    for (const w of ['compile', 'desktop'] as const) {
      const p = PUBLISHED.cache[w];
      const plain = need(w, 'kernel');
      const scrub = need(w, 'scrub');
      const hp = plain ? num(plain.summary['avg_host_cache_mib']) : null;
      const hs = scrub ? num(scrub.summary['avg_host_cache_mib']) : null;
      hostRatio[w] = ratio(hs, hp);
      md.push(
        `| ${w} | ${fmt(p.shared)} | ${fmt(plain ? avgShared(plain) : null)} | ${p.dropped === null ? '—' : fmt(p.dropped)} | ${fmt(scrub ? num(scrub.summary['pages_dropped']) : null)} | ${arrow(`${p.hostCacheMiB[0]}M`, `${p.hostCacheMiB[1]}M`)} | ${arrow(fmt(hp, 1), fmt(hs, 1))} | ${arrow(fmt(p.cpu[0], 1), fmt(p.cpu[1], 1))} | ${arrow(fmt(plain ? ksmdCpuPct(plain) : null, 1), fmt(scrub ? withScrubCpu(scrub) : null, 1))} |`,
      );
      figs.push(...plotWorkload(w));
    }
    md.push('', ...figs, '');
    json['cache_host_ratio'] = hostRatio;
  }

  if (tables.includes('bonnie')) {
    md.push('## Bonnie++', '', 'Mean of the two guests, K/s, plain → exclusive cache.', '');
    md.push('| test | published | ours | published ratio | our ratio |', '|---|---|---|---|---|');
    const plain = need('bonnie', 'kernel');
    const scrub = need('bonnie', 'scrub');
    for (const [k, pub] of Object.entries(PUBLISHED.bonnie) as [keyof typeof PUBLISHED.bonnie, readonly [number, number]][]) {
      const a = plain ? meanResult(plain, k) : null;
      const b = scrub ? meanResult(scrub, k) : null;
      md.push(`| ${BONNIE_LABEL[k]} | ${arrow(fmt(pub[0]), fmt(pub[1]))} | ${arrow(fmt(a), fmt(b))} | ${ratioText(ratio(pub[1], pub[0]))} | ${ratioText(ratio(b, a))} |`);
    }
    md.push('', ...plotWorkload('bonnie'), '');
    json['bonnie_write_char_ratio'] = ratio(scrub ? meanResult(scrub, 'putc_kps') : null, plain ? meanResult(plain, 'putc_kps') : null);
  }

  if (tables.includes('zipf')) {
    md.push('## Zipf (fio)', '', "fio's Zipf 4 KiB random reads in both guests, under each host policy: the host cache's hit ratio by bytes (QEMU's /proc/PID/io: 1 − read_bytes / rchar while fio ran) and the guests' mean IOPS.", '');
    const models = opts.zipfModels ?? [];
    const zms = models.filter((m): m is ZipfModel => !('error' in m));
    const modelOf = (setting: string): ZipfModel | undefined => zms.find((m) => m.setting === setting);
    md.push('| policy | host cache hit ratio | guest read IOPS (mean) | avg host cache MiB |', '|---|---|---|---|');
    for (const p of ZIPF_POLICIES) {
      // The truly exclusive policy cannot be applied to real guests: with a model of the same guest
      // setting, its figure stands in, and only when the model matched that setting's three
      // measured policies.
      const { host, suffix } = splitVariant(p.variant);
      const model = host === 'truly-exclusive' ? modelOf(suffix) : undefined;
      const r = model !== undefined ? undefined : need('fio-zipf', p.variant);
      const measured = r ? hitRatioOf(r) : null;
      const modelled = model !== undefined ? trulyExclusiveOf(model) : null;
      const hr = measured ?? modelled;
      json[`zipf_hit_ratio_${p.key}`] = hr === null ? null : Math.round(hr * 1000) / 1000;
      const text = measured !== null ? measured.toFixed(3) : r ? 'not sampled' : model !== undefined ? (modelled === null ? 'model not validated' : `${modelled.toFixed(3)} (model)`) : 'not run';
      md.push(`| ${p.label} | ${text} | ${fmt(r ? meanResult(r, 'read_iops') : null)} | ${fmt(r ? num(r.summary['avg_host_cache_mib']) : null, 1)} |`);
    }
    md.push('', ...initOnFreeText(runs));
    // Guest I/O with the scrub against without, in each setting: the mean IOPS of every run of each.
    const meanIops = (variant: string): number | null => {
      const xs = runsOf(runs, 'fio-zipf', variant).map((r) => meanResult(r, 'read_iops')).filter((x): x is number => x !== null);
      return xs.length > 0 ? xs.reduce((a, b) => a + b, 0) / xs.length : null;
    };
    json['zipf_scrub_iops_ratio'] = Object.fromEntries(
      [['plain', ''], ['init_on_free', INIT_ON_FREE], ['init_on_free_tight', `${INIT_ON_FREE}${TIGHT}`], ['init_on_free_tight_disk4', `${INIT_ON_FREE}${TIGHT}${DISK}4`]].map(([key, suffix]) => {
        const r = ratio(meanIops(`scrub${suffix}`), meanIops(`kernel${suffix}`));
        return [key, r === null ? null : Math.round(r * 1000) / 1000];
      }),
    );
    if (zms.length > 0) {
      const settingKey = (setting: string): string => (setting === '' ? '' : `${setting.slice(1).replaceAll('-', '_')}/`);
      json['zipf_model_max_error'] = Object.fromEntries(
        zms.flatMap((m) => m.fits.map((f) => [`${settingKey(m.setting)}${f.cache}/${f.hostStart}`, Number.isFinite(f.maxError) ? Math.round(f.maxError * 1000) / 1000 : null])),
      );
      const first = zms[0] as ZipfModel;
      md.push(
        `Model (scripts/bench/zipf-model.ts), one per guest setting over that setting's runs: fio's own reads (the job run again on the host with the guests' file name, so the same seed) through a page cache per guest and an LRU host cache of both images. Each guest's cache is sized so that the model's guests miss as often as the real ones of the no-action run. The host's room follows the no-action run's host cache sample by sample (it grew as the guests missed and shrank as their RAM grew into the cgroup), and its content when the reads begin is what it held after fio's layout, both either counted whole ("image") or less what the host held of the images before fio started ("since-fio": the guests' boot pages; which of them the layout evicted is not measured). A fit counts when every measured policy of its setting is within ${first.tolerance}; a setting's truly exclusive figure is its validated fit's with the smallest gap (${zms.map((m) => `${settingText(m.setting)}: ${trulyExclusiveOf(m)?.toFixed(3) ?? 'none validated, null'}`).join('; ')}). A tolerance is absolute: where every measured ratio is small, passing it says the model gives as few hits, not that it tells the policies apart.`,
        '',
        '| guests | guest cache | host start | guest cache MiB | host peak / at start MiB | policy | hit ratio, measured | model | gap | guest misses (pages), measured | model | host cache MiB, model |',
        '|---|---|---|---|---|---|---|---|---|---|---|---|',
      );
      for (const m of zms) {
        const guests = `${settingText(m.setting)} (${fmt(m.traceReads)} reads)`;
        for (const f of m.fits) {
          for (const r of f.rows) {
            md.push(
              `| ${guests} | ${f.cache}${f.validated ? ' (validated)' : ''} | ${f.hostStart} | ${fmt((f.guestPages * 4) / 1024, 1)} | ${fmt((f.hostPages * 4) / 1024)} / ${fmt((f.hostStartPages * 4) / 1024)} | ${r.policy} | ${r.measured === null ? '—' : r.measured.toFixed(3)} | ${r.modelled.toFixed(3)} | ${r.measured === null ? '—' : (r.modelled - r.measured).toFixed(3)} | ${r.measuredMisses === null ? '—' : fmt(r.measuredMisses)} | ${fmt(r.modelledMisses)} | ${fmt(r.modelledHostMiB, 1)} |`,
            );
          }
        }
      }
      md.push('');
    }
    for (const m of models) if ('error' in m) md.push(`No cache model${m.setting === '' ? '' : ` for ${settingText(m.setting)} guests`}: ${m.error}`, '');
    md.push(...plotWorkload('fio-zipf'));
    // Every run's hit ratio, so the plot exists as soon as any run sampled QEMU's reads; but wss's,
    // whose loops live in RAM and read next to nothing from disk.
    const all = runs.filter((r) => r.error === undefined && r.workload !== 'wss').map((r) => ({ r, hr: hitRatioOf(r) }));
    const rows = all.filter((x): x is { r: SeedRun; hr: number } => x.hr !== null);
    if (rows.length > 0) {
      plots.push({
        kind: 'bars',
        file: 'hit-ratios.png',
        title: 'host cache hit ratio by bytes, per run (workload / variant)',
        yLabel: 'hit ratio',
        yMax: 1,
        bars: rows.map(({ r, hr }) => ({ label: `${r.workload} / ${r.variant}`, value: hr, color: colorOf(r.variant) })),
      });
      md.push('![host cache hit ratios](hit-ratios.png)');
    }
    md.push('');
  }

  if (tables.includes('wss')) {
    md.push(
      '## Working-set estimator',
      '',
      "`ksm-agent wss` (lib/wss.ts: clear the QEMU's accessed bits, wait, count guest RAM referenced) on both guests while sp-fill's volatile loop in each writes every page of its region every 200 ms: one idle pass, then A MiB, A + B MiB (a second loop), B MiB (the first killed), the host making each change after a pass (scripts/bench/seed-wss.ts). The truth is the loops' size; what the guest OS touches by itself counts as error. A pass during which a change was under way is not judged (marked ~, against the truth it was heading for), and the first pass after a change completed may miss by more than 10% once (marked *); the error is the largest of every other pass, settled is the same from the 2nd pass after each change. test/wss.test.ts holds a busybox guest to the same rule.",
      '',
    );
    // KSM on or off, the estimator reads the same accessed bits: any wss run serves.
    const r = pick(runs, 'wss', undefined) ?? need('wss', 'kernel');
    const w = r === undefined ? undefined : wssOf(r);
    if (r !== undefined && w !== undefined) {
      const ends = w.passEndS.length > 0 ? ` ending ${fmt(w.passEndS[0], 1)}–${fmt(w.passEndS.at(-1), 1)} s after the QEMUs started` : '';
      md.push(`Run ${path.basename(r.file)}: ${w.passEndS.length} passes of ${fmt(w.intervalS, 1)} s${ends}, loops ${w.loopsMiB[0]} and ${w.loopsMiB[1]} MiB, guests of ${fmt(num(r.summary['mem_mib']))} MiB.`, '');
      md.push('| guest | idle MiB | estimate / truth MiB per pass | error % | settled error % |', '|---|---|---|---|---|');
      for (const g of w.guests) {
        const passes = g.passes.map(wssPassText).join(' ');
        md.push(`| ${g.name} | ${g.idleMiB.toFixed(1)} | ${passes} | ${fmt(g.errorPct, 1)} | ${fmt(g.settledErrorPct, 1)} |`);
      }
      md.push('');
    } else if (r !== undefined) md.push(`${path.basename(r.file)} carries no wss passes.`, '');
    const tenth = (x: number | null | undefined): number | null => (x === null || x === undefined ? null : Math.round(x * 10) / 10);
    json['wss_error_pct'] = tenth(w?.errorPct);
    json['wss_settled_error_pct'] = tenth(w?.settledErrorPct);
  }

  md.push('## Missing runs', '');
  if (missing.length === 0) md.push('None: every table has its runs.');
  else md.push(...missing.map((m) => `- ${m}`));
  md.push('');
  json['runs'] = runs.length;
  json['missing_runs'] = missing.length;
  md.push('## JSON', '', '```json', JSON.stringify(json), '```', '');
  return { markdown: md.join('\n'), plots, json, missing };
}
