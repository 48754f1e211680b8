// The lookahead path of the seed benchmark: the C engine run on the live guests the way ksmd runs
// (a batch of pages_to_scan pages, then sleep_millisecs), three times side by side in the same run:
// lookahead off, on, and on with lookaheadEarly (a page that continues a run merges even when the
// checksum gate would hold it back a pass; research, not the kernel). Each reads the QEMUs' mergeable ranges (what ksmd
// scans) through /proc/PID/mem and never writes them; the kernel's ksmd goes on merging meanwhile.
// Their counters (pages_shared, compares, lookahead hits) and the CPU each one's batches took are
// sampled with the host's figures (scripts/bench/seed.ts).
import { setTimeout as sleep } from 'node:timers/promises';
import { Scanner, type EngineCounters, type ScannerSettings } from '../../lib/index.js';

/** One engine's figures at a sample. */
export interface EngineSample {
  pages_shared: number;
  pages_sharing: number;
  pages_scanned: number;
  full_scans: number;
  page_compares: number;
  full_compares: number;
  lookahead_hits: number;
  lookahead_misses: number;
  /** Merges of pages the gate held back (the early engine; absent from runs before it). */
  lookahead_early?: number;
  /** CPU of this process (user + system) while this engine's batches ran, seconds. */
  cpuS: number;
  batches: number;
}

export interface EnginePair {
  off: EngineSample;
  on: EngineSample;
  /** Lookahead on with lookaheadEarly (runs made from 2026-12-05 22:40 UTC on). */
  early?: EngineSample;
}

/** The engines of a run, as a sample names them. */
export const ENGINE_SIDES = ['off', 'on', 'early'] as const;
export type EngineSide = (typeof ENGINE_SIDES)[number];

const FIELDS = ['pages_shared', 'pages_sharing', 'pages_scanned', 'full_scans', 'page_compares', 'full_compares', 'lookahead_hits', 'lookahead_misses', 'lookahead_early'] as const;

class Side {
  readonly scanner: Scanner;
  counters: EngineCounters | undefined;
  cpuS = 0;
  batches = 0;
  constructor(settings: ScannerSettings) {
    this.scanner = new Scanner(settings);
  }
  sample(): EngineSample {
    const out = { cpuS: this.cpuS, batches: this.batches } as EngineSample;
    for (const k of FIELDS) out[k] = this.counters?.[k] ?? 0;
    return out;
  }
}

export class EnginePairRunner {
  private readonly sides: Record<EngineSide, Side>;
  private running = false;
  private loop: Promise<void> | undefined;
  /** The first error a batch met (a QEMU gone): the loop stops there. */
  error: Error | undefined;

  constructor(
    private readonly pages: number,
    private readonly sleepMs: number,
    settings: ScannerSettings,
  ) {
    const base = { ...settings, pagesToScan: pages };
    this.sides = {
      off: new Side({ ...base, lookahead: false }),
      on: new Side({ ...base, lookahead: true }),
      early: new Side({ ...base, lookahead: true, lookaheadEarly: true }),
    };
  }

  /** Adds the QEMUs to every engine and starts the batches. */
  async start(pids: readonly number[]): Promise<void> {
    for (const side of Object.values(this.sides)) for (const pid of pids) await side.scanner.addProcess(pid, { name: `qemu-${pid}` });
    this.running = true;
    const all = ENGINE_SIDES.map((k) => this.sides[k]);
    let round = 0;
    this.loop = (async () => {
      while (this.running) {
        try {
          // Rotate which engine goes first, so none always reads pages another just warmed.
          const order = all.map((_, i) => all[(i + round) % all.length] as Side);
          round++;
          for (const side of order) {
            const c0 = process.cpuUsage();
            const r = await side.scanner.scan({ pages: this.pages });
            const c = process.cpuUsage(c0);
            side.cpuS += (c.user + c.system) / 1e6;
            side.batches++;
            side.counters = r.counters;
          }
        } catch (e) {
          this.error = e as Error;
          this.running = false;
          break;
        }
        await sleep(this.sleepMs);
      }
    })();
  }

  sample(): EnginePair {
    return { off: this.sides.off.sample(), on: this.sides.on.sample(), early: this.sides.early.sample() };
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    for (const side of Object.values(this.sides)) await side.scanner.close();
  }
}

const r1 = (x: number): number => Math.round(x * 10) / 10;
const r3 = (x: number): number => Math.round(x * 1000) / 1000;

/** One engine's figures over a window of samples (t in seconds). */
export function engineWindow(ss: readonly { t: number; e: EngineSample }[]): Record<string, number | null> {
  const a = ss[0];
  const b = ss.at(-1);
  if (a === undefined || b === undefined) return { avg_pages_shared: null };
  const dt = b.t - a.t;
  const scanned = b.e.pages_scanned - a.e.pages_scanned;
  const hits = b.e.lookahead_hits - a.e.lookahead_hits;
  const misses = b.e.lookahead_misses - a.e.lookahead_misses;
  const early = b.e.lookahead_early === undefined ? null : b.e.lookahead_early - (a.e.lookahead_early ?? 0);
  return {
    avg_pages_shared: Math.round(ss.reduce((x, s) => x + s.e.pages_shared, 0) / ss.length),
    avg_pages_sharing: Math.round(ss.reduce((x, s) => x + s.e.pages_sharing, 0) / ss.length),
    cpu_pct: dt > 0 ? r1((100 * (b.e.cpuS - a.e.cpuS)) / dt) : null,
    pages_scanned: scanned,
    full_scans: b.e.full_scans - a.e.full_scans,
    compares_per_page: scanned > 0 ? r3((b.e.page_compares - a.e.page_compares) / scanned) : null,
    full_compares_per_page: scanned > 0 ? r3((b.e.full_compares - a.e.full_compares) / scanned) : null,
    lookahead_hits: hits,
    lookahead_misses: misses,
    lookahead_hit_rate: hits + misses > 0 ? r3(hits / (hits + misses)) : null,
    // Only from runs whose engines counted it (older run files lack it).
    ...(early === null ? {} : { lookahead_early: early }),
  };
}
