// The status page's history: one point per 10 s for 24 h (8640 points), in a ring of Float64Array
// columns allocated once. Memory is fixed at capacity × columns × 8 bytes (≈ 760 KB) however long
// the agent runs; the oldest point is overwritten by the newest. NaN stands for "not measured".
import { HISTORY_COLUMNS } from '../../api-types.js';
import type { HistoryColumn } from '../../api-types.js';

export const RESOLUTION_SECONDS = 10;
export const DAY_POINTS = (24 * 3600) / RESOLUTION_SECONDS;

export type TimelinePoint = { t: number } & Partial<Record<Exclude<HistoryColumn, 't'>, number>>;

export class Timeline {
  private readonly columns: Record<HistoryColumn, Float64Array>;
  /** Index of the oldest point. */
  private head = 0;
  private count = 0;

  constructor(readonly capacity: number = DAY_POINTS) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`Timeline capacity must be a positive integer, got ${capacity}`);
    const cols = {} as Record<HistoryColumn, Float64Array>;
    for (const c of HISTORY_COLUMNS) cols[c] = new Float64Array(capacity);
    this.columns = cols;
  }

  get size(): number {
    return this.count;
  }

  /** Bytes the columns' typed arrays hold (measured on the arrays): constant from construction on. */
  get byteLength(): number {
    return Object.values<Float64Array>(this.columns).reduce((sum, column) => sum + column.byteLength, 0);
  }

  push(p: TimelinePoint): void {
    const i = (this.head + this.count) % this.capacity;
    for (const c of HISTORY_COLUMNS) {
      const v = p[c];
      (this.columns[c] as Float64Array)[i] = v === undefined || !Number.isFinite(v) ? NaN : v;
    }
    if (this.count < this.capacity) this.count++;
    else this.head = (this.head + 1) % this.capacity;
  }

  /**
   * The points with t > since (all without it), oldest first, as columns; null for NaN. A scan
   * of every point (at most 8640) rather than a search: the wall clock may step back.
   */
  since(since?: number): Record<HistoryColumn, (number | null)[]> {
    const out = {} as Record<HistoryColumn, (number | null)[]>;
    for (const c of HISTORY_COLUMNS) out[c] = [];
    const t = this.columns.t;
    for (let k = 0; k < this.count; k++) {
      const i = (this.head + k) % this.capacity;
      if (since !== undefined && !((t[i] as number) > since)) continue;
      for (const c of HISTORY_COLUMNS) {
        const v = (this.columns[c] as Float64Array)[i] as number;
        (out[c] as (number | null)[]).push(Number.isNaN(v) ? null : v);
      }
    }
    return out;
  }

  /** The newest point's t, or undefined when empty. */
  lastT(): number | undefined {
    if (this.count === 0) return undefined;
    return this.columns.t[(this.head + this.count - 1) % this.capacity];
  }
}
