// Feeds the status page's Timeline every 10 s with its own reading of KSM (sysfs, ksmd's CPU
// time), independent of the agent's tick interval (0.2-60 s): the history's resolution is 10 s
// whatever the tuning loop does. Rates (pages scanned per second, ksmd's share of a core) are
// over the 10 s between two readings, from the kernel's cumulative counters.
import type { KsmCounters } from '../../sysfs.js';
import { rates, takeSample } from '../../sample.js';
import type { Sample } from '../../sample.js';
import type { SummaryResponse } from '../../api-types.js';
import { RESOLUTION_SECONDS } from './timeline.js';
import type { Timeline, TimelinePoint } from './timeline.js';

export interface SamplerSource {
  read(): Promise<Sample>;
  /** Host page-cache bytes the exclusive-cache scrub has dropped so far. */
  cacheBytesReclaimed(): number;
}

export const liveSource = (cacheBytesReclaimed: () => number): SamplerSource => ({ read: () => takeSample(), cacheBytesReclaimed });

/** The page counters the history and /api/summary show (0 for a file this kernel lacks). */
export function pageCounts(c: KsmCounters): Pick<SummaryResponse['ksm'], 'pages_shared' | 'pages_sharing' | 'pages_unshared' | 'pages_volatile' | 'ksm_zero_pages'> {
  return {
    pages_shared: c.pages_shared ?? 0,
    pages_sharing: c.pages_sharing ?? 0,
    pages_unshared: c.pages_unshared ?? 0,
    pages_volatile: c.pages_volatile ?? 0,
    ksm_zero_pages: c.ksm_zero_pages ?? 0,
  };
}

export function toPoint(s: Sample, prev: Sample | undefined, cacheBytes: number): TimelinePoint {
  const c = s.ksm.counters;
  const p: TimelinePoint = {
    t: s.at / 1000,
    saved_bytes: c.general_profit ?? 0,
    ...pageCounts(c),
    cache_bytes_reclaimed: cacheBytes,
    run: s.ksm.settings.run ?? 0,
  };
  if (prev !== undefined) {
    const r = rates(prev, s);
    // Rounded to what a chart can show: the JSON of 8640 points stays small.
    if (r.scannedPerSecond !== undefined) p.scan_pages_per_second = Math.round(r.scannedPerSecond * 10) / 10;
    if (r.ksmdCpu !== undefined) p.ksmd_cpu_ratio = Math.round(r.ksmdCpu * 1e5) / 1e5;
  }
  return p;
}

export class Sampler {
  private prev: Sample | undefined;
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(
    private readonly timeline: Timeline,
    private readonly source: SamplerSource,
    private readonly onError: (err: Error) => void,
  ) {}

  /** Takes a point now, then one every `seconds`. */
  start(seconds = RESOLUTION_SECONDS): void {
    void this.sample();
    this.timer = setInterval(() => void this.sample(), seconds * 1000);
  }

  /** One reading into the timeline; skipped while the previous one is still being read. */
  async sample(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const s = await this.source.read();
      this.timeline.push(toPoint(s, this.prev, this.source.cacheBytesReclaimed()));
      this.prev = s;
    } catch (err) {
      this.onError(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.busy = false;
    }
  }

  close(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}
