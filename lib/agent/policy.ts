// The tuning policy, as a pure state machine: each tick it gets a new sample and returns the KSM
// settings it wants. No I/O here, so every rule can be read in one place (README.md, section ksm-agent has
// them in prose) and checked with plain numbers.
//
//   off      no memory pressure (ksmtuned's rule): run=0, merged pages are kept.
//   merging  pressure: run=1, the scan rate is ramped by measured yield inside the ksmd CPU
//            budget (or handed to the kernel's scan-time advisor on big hosts).
//   settled  full passes stopped gaining: run=0 until the VMs change, savings erode, or the
//            recheck timer asks for another look.
import type { KsmSettings } from '../ksm-files.js';
import type { AgentConfig } from './config.js';
import { mergedPages, rates, trackedPages } from '../sample.js';
import type { MemoryFigures, Rates, Sample } from '../sample.js';

export type AgentState = 'off' | 'merging' | 'settled';
export type ScanMode = 'ramp' | 'advisor';

/** ksmd CPU seconds per visited page assumed before the first measurement (measured: 0.6-1.3 µs). */
const PRIOR_COST_PER_PAGE = 1e-6;
/** Savings eroded by this share of what was merged wake a settled agent. */
const EROSION_WAKE = 0.05;
/** ksmd's CPU time per batch the ramp aims at: long enough that waking up is a small part. */
const BATCH_SECONDS = 0.005;
/** A pass gaining fewer pages than this never counts as a gain, whatever its size. */
const MIN_GAIN_PAGES = 16;

export interface Pressure {
  pressure: boolean;
  totalKiB: number;
  freeKiB: number;
  committedKiB: number;
  thresholdKiB: number;
}

/**
 * ksmtuned's start rule: threshold = max(MemTotal × KSM_THRES_COEF / 100, KSM_THRES_CONST); KSM
 * is off while committed + threshold < total and free > threshold, on otherwise. "committed" is
 * the RSS of the VMs; "free" is MemFree + Buffers + Cached as ksmtuned has it, or MemAvailable.
 */
export function memoryPressure(cfg: Pick<AgentConfig, 'thresholdPercent' | 'thresholdMinKiB' | 'freeMemory'>, m: MemoryFigures, committedBytes: number): Pressure {
  const totalKiB = Math.floor(m.totalBytes / 1024);
  const freeKiB = Math.floor((cfg.freeMemory === 'available' ? m.availableBytes : m.freeBytes + m.buffersBytes + m.cachedBytes) / 1024);
  const committedKiB = Math.floor(committedBytes / 1024);
  const thresholdKiB = Math.max(Math.floor((totalKiB * cfg.thresholdPercent) / 100), cfg.thresholdMinKiB);
  const calm = committedKiB + thresholdKiB < totalKiB && freeKiB > thresholdKiB;
  return { pressure: !calm, totalKiB, freeKiB, committedKiB, thresholdKiB };
}

export interface PolicyInput {
  sample: Sample;
  pressure: boolean;
  /** The set of VM processes changed since the last tick. */
  vmsChanged: boolean;
  /** The kernel has advisor_mode (6.8+). */
  hasAdvisor: boolean;
  /** Pages the VMs could offer KSM (their RSS), for sizing a pass before ksmd has tracked them. */
  candidatePages: number;
}

export interface Decision {
  state: AgentState;
  mode: ScanMode;
  /** The agent-owned settings it wants now; the daemon writes those that differ. */
  settings: KsmSettings;
  /** Set when the state changed: why, for the log. */
  transition?: string;
  /** What the ramp measured this tick (for metrics and the log). */
  rates?: Rates;
  yieldEstimate?: number;
  volatileShare: number;
  costPerPage?: number;
  targetCpu: number;
}

interface PassMark {
  fullScans: number;
  merged: number;
  scanned: number;
}

export class Policy {
  state: AgentState = 'off';
  mode: ScanMode = 'ramp';
  private pagesToScan = 0;
  private sleepMs = 0;
  private costPerPage: number | undefined;
  private volatileShare = 0;
  private prev: Sample | undefined;
  private mark: PassMark | undefined;
  private passesThisEpisode = 0;
  private lowPasses = 0;
  private lastPassYield: number | undefined;
  private settled: { mono: number; merged: number } | undefined;
  /** advisor_min_pages_to_scan for this episode: only read by the kernel when the mode switches. */
  private advisorStart: number | undefined;

  constructor(private cfg: AgentConfig) {}

  /** A new configuration (SIGHUP): the state is kept, the next tick uses the new limits. */
  reconfigure(cfg: AgentConfig): void {
    this.cfg = cfg;
  }

  step(input: PolicyInput): Decision {
    const { sample } = input;
    const r = this.prev === undefined ? undefined : rates(this.prev, sample);
    this.prev = sample;
    if (r !== undefined) this.learn(sample, r);

    let transition: string | undefined;
    const enter = (state: AgentState, why: string): void => {
      if (state === 'merging') this.startEpisode(sample, input);
      if (state === 'settled') this.settled = { mono: sample.mono, merged: mergedPages(sample) };
      this.state = state;
      transition = why;
    };

    if (!input.pressure) {
      if (this.state !== 'off') enter('off', 'memory pressure is gone (below the threshold)');
    } else if (this.state === 'off') {
      enter('merging', 'memory pressure: past the threshold');
    } else if (this.state === 'merging') {
      if (this.passCheck(sample)) {
        enter('settled', `${this.lowPasses} full passes in a row gained almost nothing`);
      }
    } else if (this.state === 'settled') {
      const wake = this.wakeReason(sample, input);
      if (wake !== undefined) enter('merging', wake);
    }

    const budget = this.cfg.cpuBudgetPercent / 100;
    const targetCpu = budget * this.effort();
    const decision: Decision = {
      state: this.state,
      mode: this.mode,
      settings: this.state === 'merging' ? this.scanSettings(targetCpu, input.hasAdvisor) : { run: 0 },
      volatileShare: this.volatileShare,
      targetCpu: this.state === 'merging' ? targetCpu : 0,
    };
    if (transition !== undefined) decision.transition = transition;
    if (r !== undefined) decision.rates = r;
    const y = this.yieldEstimate(r);
    if (y !== undefined) decision.yieldEstimate = y;
    if (this.costPerPage !== undefined) decision.costPerPage = this.costPerPage;
    return decision;
  }

  /** Updates the cost per page and the volatile share from what ksmd did since the last tick. */
  private learn(s: Sample, r: Rates): void {
    const visited = (r.visitedPerSecond ?? 0) * r.seconds;
    // Below ~1000 pages the tick-granular CPU time (10 ms) is mostly rounding.
    if (r.ksmdCpuSeconds !== undefined && visited >= 1000 && r.ksmdCpuSeconds > 0) {
      const c = r.ksmdCpuSeconds / visited;
      this.costPerPage = this.costPerPage === undefined ? c : 0.5 * this.costPerPage + 0.5 * c;
    }
    const tracked = trackedPages(s);
    if (tracked > 0) {
      const v = (s.ksm.counters.pages_volatile ?? 0) / tracked;
      // pages_volatile and pages_unshared swap from sample to sample under smart_scan; smooth it.
      this.volatileShare = 0.7 * this.volatileShare + 0.3 * v;
    }
  }

  private startEpisode(s: Sample, input: PolicyInput): void {
    this.mark = { fullScans: s.ksm.counters.full_scans ?? 0, merged: mergedPages(s), scanned: s.ksm.counters.pages_scanned ?? 0 };
    this.passesThisEpisode = 0;
    this.lowPasses = 0;
    this.lastPassYield = undefined;
    this.settled = undefined;
    this.mode = this.chooseMode(s, input);
    this.pagesToScan = 0; // recomputed from the budget by scanSettings()
    this.advisorStart = undefined;
  }

  /**
   * The kernel's scan-time advisor keeps a full pass near a target time within a CPU cap, but it
   * measures in whole seconds and never goes below ~10% CPU: good for big hosts, coarse for small
   * ones. "auto" uses it where a full pass at the budget takes at least advisorMinPassSeconds.
   */
  private chooseMode(s: Sample, input: PolicyInput): ScanMode {
    if (!input.hasAdvisor || this.cfg.advisor === 'off') return 'ramp';
    if (this.cfg.advisor === 'on') return 'advisor';
    if (this.cfg.cpuBudgetPercent < 10) return 'ramp';
    const pages = Math.max(trackedPages(s), input.candidatePages);
    const passSeconds = (pages * (this.costPerPage ?? PRIOR_COST_PER_PAGE)) / (this.cfg.cpuBudgetPercent / 100);
    return passSeconds >= this.cfg.advisorMinPassSeconds ? 'advisor' : 'ramp';
  }

  /**
   * At each completed full pass: did it gain? A pass gains when new merges exceed minYield per
   * scanned page (and MIN_GAIN_PAGES). Returns true when settlePasses passes in a row did not.
   */
  private passCheck(s: Sample): boolean {
    const full = s.ksm.counters.full_scans ?? 0;
    if (this.mark === undefined || full <= this.mark.fullScans) return false;
    const passes = full - this.mark.fullScans;
    const gain = (mergedPages(s) - this.mark.merged) / passes;
    // A full pass visits every page ksmd tracks: that count stands in for pages_scanned on
    // kernels before 6.7, which lack it.
    const scannedNow = s.ksm.counters.pages_scanned;
    const scanned = scannedNow === undefined ? trackedPages(s) : (scannedNow - this.mark.scanned) / passes;
    this.lastPassYield = scanned > 0 ? gain / scanned : undefined;
    const low = gain < Math.max(MIN_GAIN_PAGES, this.cfg.minYield * scanned);
    this.lowPasses = low ? this.lowPasses + passes : 0;
    this.passesThisEpisode += passes;
    this.mark = { fullScans: full, merged: mergedPages(s), scanned: s.ksm.counters.pages_scanned ?? 0 };
    return this.lowPasses >= this.cfg.settlePasses;
  }

  private wakeReason(s: Sample, input: PolicyInput): string | undefined {
    if (input.vmsChanged) return 'the set of VMs changed';
    const at = this.settled;
    if (at === undefined) return 'no record of the settled state';
    const merged = mergedPages(s);
    if (at.merged > 0 && merged < at.merged * (1 - EROSION_WAKE)) {
      return `savings eroded: ${at.merged - merged} merged pages were unshared by writes since settling`;
    }
    if ((s.mono - at.mono) / 1000 >= this.cfg.recheckSeconds) return `recheck after ${this.cfg.recheckSeconds} s settled`;
    return undefined;
  }

  /** The yield that steers the effort: the better of the last full pass and the last tick. */
  private yieldEstimate(r: Rates | undefined): number | undefined {
    const tick = r?.yield;
    if (tick === undefined) return this.lastPassYield;
    if (this.lastPassYield === undefined) return tick;
    return Math.max(tick, this.lastPassYield);
  }

  /**
   * Share of the CPU budget to use, 0.1-1. Full effort until two passes have shown the yield
   * (a page's first visit only records its checksum, and counts as volatile meanwhile). Then it
   * follows the yield of the last full pass: full at 10 × minYield, proportionally less down to
   * minYield, times (1 − ½ × the volatile share): pages that change between passes, scanned
   * faster, only merge to be unshared again. A pass below minYield counts toward settling and is
   * confirmed at full effort: a pass costs the same CPU at any speed, and the sooner ksmd stops
   * the less it costs.
   */
  private effort(): number {
    const y = this.lastPassYield;
    if (this.passesThisEpisode < 2 || y === undefined || y < this.cfg.minYield) return 1;
    const volatile = 1 - 0.5 * Math.min(1, this.volatileShare);
    const fullAt = Math.max(1e-9, 10 * this.cfg.minYield);
    return Math.min(1, Math.max(0.1, y / fullAt)) * volatile;
  }

  private scanSettings(targetCpu: number, hasAdvisor: boolean): KsmSettings {
    const c = this.costPerPage ?? PRIOR_COST_PER_PAGE;
    const u = Math.min(0.95, Math.max(0.005, targetCpu));
    // One batch of P pages costs P·c seconds of CPU and is followed by S of sleep, so ksmd uses
    // P·c / (S + P·c) of a core. Batches of about BATCH_SECONDS keep ksmd's per-wakeup cost small
    // (at 100 pages a batch it is most of the CPU); the share then sets the sleep, never shorter
    // than sleepMillisecs, and the batch fills the rest: P = u·S / (c·(1 − u)).
    let sleep = Math.min(this.cfg.sleepMillisecsMax, Math.max(this.cfg.sleepMillisecs, Math.round(((BATCH_SECONDS * (1 - u)) / u) * 1000)));
    let pages = Math.round((u * (sleep / 1000)) / (c * (1 - u)));
    if (pages < this.cfg.pagesToScanMin) {
      pages = this.cfg.pagesToScanMin;
      sleep = Math.min(this.cfg.sleepMillisecsMax, Math.max(sleep, Math.round(((pages * c * (1 - u)) / u) * 1000)));
    }
    pages = Math.min(this.cfg.pagesToScanMax, pages);
    // Within 10% of what is set, keep it: the cost estimate wobbles from tick to tick, and a
    // sysfs write per tick buys nothing.
    if (this.pagesToScan > 0 && Math.abs(pages - this.pagesToScan) <= 0.1 * this.pagesToScan && sleep === this.sleepMs) {
      pages = this.pagesToScan;
    }
    this.pagesToScan = pages;
    this.sleepMs = sleep;
    if (this.mode === 'advisor') {
      return {
        advisor_max_cpu: Math.max(10, Math.round(u * 100)),
        advisor_target_scan_time: this.cfg.advisorTargetScanSeconds,
        // Switching to scan-time starts ksmd at advisor_min_pages_to_scan: start at the budget.
        advisor_min_pages_to_scan: (this.advisorStart ??= Math.max(1, pages)),
        advisor_max_pages_to_scan: this.cfg.pagesToScanMax,
        advisor_mode: 'scan-time',
        sleep_millisecs: sleep,
        run: 1,
      };
    }
    const s: KsmSettings = { pages_to_scan: pages, sleep_millisecs: sleep, run: 1 };
    if (hasAdvisor) s.advisor_mode = 'none';
    return s;
  }

  /** The scan rate the ramp last chose (pages per batch, sleep between batches). */
  get rate(): { pagesToScan: number; sleepMs: number } {
    return { pagesToScan: this.pagesToScan, sleepMs: this.sleepMs };
  }
}
