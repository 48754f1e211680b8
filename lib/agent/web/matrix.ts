// The VM-by-VM sharing matrix of the status page, from the live page tables, not an estimate:
// pages[i][j] = pages of VM i mapped to a KSM page that VM j maps too (liveSharing: one walk of
// the VMs' /proc/PID/pagemap and /proc/kpageflags, plus the other KSM users' for the sharer
// counts). A walk takes a fraction of a second per 16 GiB VM, so the matrix is recomputed at most
// every REFRESH_SECONDS, and never more than a tenth of the time (a slow walk on a big host waits
// longer before the next), one computation at a time. The heat map stays readable up to MAX_VMS
// VMs: those with the most KSM pages are kept, the others named as omitted.
import { performance } from 'node:perf_hooks';
import { liveSharing } from '../../live.js';
import type { LiveSharing } from '../../live.js';
import type { Attribution } from '../../attribution.js';
import type { MatrixResponse } from '../../api-types.js';

export const MAX_VMS = 16;
export const REFRESH_SECONDS = 30;
export const METHOD = 'the live page tables (/proc/PID/pagemap, /proc/kpageflags)';

export type Walk = (pids: number[]) => Promise<LiveSharing>;

export class SharingMatrix {
  private last: MatrixResponse | undefined;
  /** performance.now() after which `last` is stale. */
  private staleAt = -Infinity;
  private pending: Promise<MatrixResponse> | undefined;

  constructor(
    private readonly attribution: () => Promise<Attribution | undefined>,
    private readonly walk: Walk = (pids) => liveSharing(pids),
    private readonly maxVms = MAX_VMS,
  ) {}

  /** The matrix, recomputed when stale; concurrent callers share one computation. */
  get(): Promise<MatrixResponse> {
    if (this.last !== undefined && performance.now() < this.staleAt) return Promise.resolve(this.last);
    this.pending ??= this.compute().finally(() => (this.pending = undefined));
    return this.pending;
  }

  private async compute(): Promise<MatrixResponse> {
    const a = await this.attribution();
    const rows = (a?.vms ?? []).filter((r) => r.error === undefined);
    // The VMs with the most KSM pages (ties by name, so the choice is stable between refreshes).
    const ranked = [...rows].sort((x, y) => y.ksmPages - x.ksmPages || x.name.localeCompare(y.name));
    const kept = ranked.slice(0, this.maxVms).sort((x, y) => x.name.localeCompare(y.name));
    const base: MatrixResponse = {
      at: null,
      method: METHOD,
      names: kept.map((r) => r.name),
      pids: kept.map((r) => r.pid),
      ksm_pages: [],
      pages: [],
      omitted: ranked.slice(this.maxVms).map((r) => r.name),
      refresh_seconds: REFRESH_SECONDS,
    };
    if (kept.length === 0) return base;
    const started = performance.now();
    let out: MatrixResponse;
    try {
      const live = await this.walk(base.pids);
      const failed = live.processes.find((p) => p.error !== undefined);
      if (failed?.error !== undefined) throw failed.error;
      out = { ...base, at: Date.now() / 1000, ksm_pages: live.processes.map((p) => p.ksmPages), pages: live.matrix };
    } catch (err) {
      // A VM that exited since the attribution: say so now, try again at the next request.
      return { ...base, error: err instanceof Error ? err.message : String(err) };
    }
    const took = performance.now() - started;
    this.last = out;
    this.staleAt = performance.now() + Math.max(REFRESH_SECONDS * 1000, 10 * took);
    return out;
  }
}
