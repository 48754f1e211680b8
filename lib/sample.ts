// One reading of everything the agent and the CLI judge KSM by: the sysfs files, ksmd's CPU time
// (from /proc/<ksmd>/stat), the memory figures the start threshold uses, and cow_ksm. Two
// readings give rates: pages scanned per second, ksmd's share of a core, new merges per page.
import { performance } from 'node:perf_hooks';
import { readKsm } from './sysfs.js';
import type { KsmCounters, KsmState } from './sysfs.js';
import { readFileSync } from 'node:fs';
import { parseProcStat } from './proc-parse.js';
import { USER_HZ, findKsmd, readMeminfo, readVmstat } from './procfs.js';

export const PAGE_SIZE = 4096;

export interface MemoryFigures {
  totalBytes: number;
  freeBytes: number;
  availableBytes: number;
  buffersBytes: number;
  cachedBytes: number;
}

export interface Sample {
  /** Wall clock (ms since the epoch), for people and the history. */
  at: number;
  /** Monotonic clock (ms), for rates. */
  mono: number;
  ksm: KsmState;
  /** ksmd's utime + stime in clock ticks; undefined when ksmd is not visible (a container). */
  ksmdTicks?: number;
  memory: MemoryFigures;
  /** /proc/vmstat cow_ksm: writes that broke a KSM page (copy-on-write). */
  cowKsm?: number;
}

let ksmdPid: number | undefined;

/** ksmd's CPU ticks; finds the thread once and again if it went (it lives as long as the kernel). */
export async function ksmdTicks(): Promise<number | undefined> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      ksmdPid ??= await findKsmd();
      // Synchronously, as sysfs: a one-line file read every tick.
      const st = parseProcStat(readFileSync(`/proc/${ksmdPid}/stat`, 'utf8'));
      if (st.comm === 'ksmd') return st.utime + st.stime;
    } catch {
      // not found (container) or stale pid: look again once
    }
    ksmdPid = undefined;
  }
  return undefined;
}

export async function readMemory(): Promise<MemoryFigures> {
  const m = await readMeminfo();
  return {
    totalBytes: m['MemTotal'] ?? 0,
    freeBytes: m['MemFree'] ?? 0,
    availableBytes: m['MemAvailable'] ?? m['MemFree'] ?? 0,
    buffersBytes: m['Buffers'] ?? 0,
    cachedBytes: m['Cached'] ?? 0,
  };
}

export async function takeSample(opts: { root?: string } = {}): Promise<Sample> {
  const [ksm, ticks, memory, vmstat] = await Promise.all([
    readKsm(opts.root === undefined ? {} : { root: opts.root }),
    ksmdTicks(),
    readMemory(),
    readVmstat().catch(() => undefined),
  ]);
  const s: Sample = { at: Date.now(), mono: performance.now(), ksm, memory };
  if (ticks !== undefined) s.ksmdTicks = ticks;
  if (vmstat?.cow_ksm !== undefined) s.cowKsm = vmstat.cow_ksm;
  return s;
}

/** Bytes of one rmap_item on a 64-bit kernel: what general_profit charges per page ksmd tracks. */
export const RMAP_ITEM_BYTES = 64;

export interface HostSavings {
  bytes: number;
  /** The kernel has no general_profit (before 6.4): bytes is computed from the page counters. */
  estimated: boolean;
}

/**
 * What KSM saves host-wide: general_profit (6.4+), or on older kernels the kernel's own formula
 * from files every kernel has, (pages_sharing + ksm_zero_pages) × 4096 − rmap_items × 64, where
 * rmap_items = pages_shared + pages_sharing + pages_unshared + pages_volatile (the kernel prints
 * pages_volatile as exactly that remainder). Kernels before 6.5 do not count KSM zero pages, so
 * pages merged into the zero page (use_zero_pages=1) are missing from the estimate.
 */
export function hostSavings(c: KsmCounters): HostSavings {
  if (c.general_profit !== undefined) return { bytes: c.general_profit, estimated: false };
  const tracked = (c.pages_shared ?? 0) + (c.pages_sharing ?? 0) + (c.pages_unshared ?? 0) + (c.pages_volatile ?? 0);
  return { bytes: ((c.pages_sharing ?? 0) + (c.ksm_zero_pages ?? 0)) * PAGE_SIZE - tracked * RMAP_ITEM_BYTES, estimated: true };
}

/** Pages that KSM saves right now: extra mappings of KSM pages plus KSM-placed zero pages. */
export function mergedPages(s: Sample): number {
  return (s.ksm.counters.pages_sharing ?? 0) + (s.ksm.counters.ksm_zero_pages ?? 0);
}

/** Pages ksmd keeps rmap_items for: its candidate set, roughly what one full pass visits. */
export function trackedPages(s: Sample): number {
  const c = s.ksm.counters;
  return (c.pages_shared ?? 0) + (c.pages_sharing ?? 0) + (c.pages_unshared ?? 0) + (c.pages_volatile ?? 0);
}

export interface Rates {
  seconds: number;
  /** ksmd CPU as a fraction of one core; undefined without ksmd's stat. */
  ksmdCpu?: number;
  ksmdCpuSeconds?: number;
  /** Pages ksmd looked at per second (pages_scanned, 6.7+); undefined on older kernels. */
  scannedPerSecond?: number;
  scanned?: number;
  /** Pages scanned plus pages smart_scan skipped, per second: the speed of a full pass. */
  visitedPerSecond?: number;
  /**
   * visitedPerSecond is computed from ksmd's settings, not counted: kernels before 6.7 have no
   * pages_scanned (see settingsVisitRate).
   */
  visitedEstimated?: boolean;
  /** Change of mergedPages() (new merges minus pages unshared by writes). */
  merged: number;
  /** New merges per scanned page: the yield of the scanning done between the samples. */
  yield?: number;
  fullScans: number;
  cowKsm?: number;
}

export function rates(a: Sample, b: Sample): Rates {
  const seconds = Math.max(1e-3, (b.mono - a.mono) / 1000);
  const r: Rates = {
    seconds,
    merged: mergedPages(b) - mergedPages(a),
    fullScans: (b.ksm.counters.full_scans ?? 0) - (a.ksm.counters.full_scans ?? 0),
  };
  if (a.ksmdTicks !== undefined && b.ksmdTicks !== undefined) {
    r.ksmdCpuSeconds = (b.ksmdTicks - a.ksmdTicks) / USER_HZ;
    r.ksmdCpu = r.ksmdCpuSeconds / seconds;
  }
  const sa = a.ksm.counters.pages_scanned;
  const sb = b.ksm.counters.pages_scanned;
  if (sa !== undefined && sb !== undefined) {
    r.scanned = sb - sa;
    r.scannedPerSecond = r.scanned / seconds;
    if (r.scanned > 0) r.yield = r.merged / r.scanned;
    const skipped = (b.ksm.counters.pages_skipped ?? 0) - (a.ksm.counters.pages_skipped ?? 0);
    r.visitedPerSecond = (r.scanned + skipped) / seconds;
  } else {
    r.visitedPerSecond = settingsVisitRate(a, r.ksmdCpu);
    r.visitedEstimated = true;
    const visited = r.visitedPerSecond * seconds;
    if (visited > 0) r.yield = r.merged / visited;
  }
  if (a.cowKsm !== undefined && b.cowKsm !== undefined) r.cowKsm = b.cowKsm - a.cowKsm;
  return r;
}

/**
 * Pages ksmd visits per second by its settings, for kernels without pages_scanned (before 6.7):
 * pages_to_scan every sleep_millisecs while run=1, each batch's own CPU time added to the sleep
 * (ksmd sleeps 1 − cpu of each second, when its CPU share over the same interval is known). The
 * settings in force are the earlier reading's; 0 while ksmd is stopped.
 */
export function settingsVisitRate(s: Sample, ksmdCpu: number | undefined): number {
  const { run, pages_to_scan: pages, sleep_millisecs: sleepMs } = s.ksm.settings;
  if (run !== 1 || pages === undefined || sleepMs === undefined || sleepMs <= 0) return 0;
  const sleeping = ksmdCpu === undefined ? 1 : Math.max(0, 1 - Math.min(1, ksmdCpu));
  return (pages * sleeping * 1000) / sleepMs;
}

/** Seconds one full pass takes at the measured scan rate, or undefined when ksmd is not scanning. */
export function fullPassSeconds(s: Sample, r: Rates): number | undefined {
  const pages = trackedPages(s);
  const speed = r.visitedPerSecond ?? r.scannedPerSecond;
  if (speed === undefined || speed <= 0 || pages === 0) return undefined;
  return pages / speed;
}
