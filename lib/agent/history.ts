// A bounded in-memory history of what the agent saw and did, one point per tick: the metrics
// endpoint reads the newest point, and a status page or /api/ route can read the series.
import type { AgentState, ScanMode } from './policy.js';

export interface HistoryPoint {
  /** Wall clock, ms since the epoch. */
  at: number;
  state: AgentState;
  mode: ScanMode;
  run: number;
  pagesToScan: number;
  sleepMillisecs: number;
  pagesShared: number;
  pagesSharing: number;
  ksmZeroPages: number;
  generalProfit: number;
  fullScans: number;
  /** ksmd's share of one core over the last tick. */
  ksmdCpu?: number;
  /** New merges per scanned page over the last tick. */
  yield?: number;
  pressure: boolean;
}

export class History {
  private readonly points: HistoryPoint[] = [];

  constructor(private cap: number) {}

  get capacity(): number {
    return this.cap;
  }

  /** A new bound (SIGHUP changed historySamples): the oldest points go when it shrinks. */
  resize(capacity: number): void {
    this.cap = capacity;
    if (this.points.length > capacity) this.points.splice(0, this.points.length - capacity);
  }

  push(p: HistoryPoint): void {
    this.points.push(p);
    if (this.points.length > this.cap) this.points.splice(0, this.points.length - this.cap);
  }

  latest(): HistoryPoint | undefined {
    return this.points[this.points.length - 1];
  }

  /** Points newer than `since` (ms since the epoch), oldest first; all of them without it. */
  since(since?: number): HistoryPoint[] {
    return since === undefined ? [...this.points] : this.points.filter((p) => p.at > since);
  }

  get size(): number {
    return this.points.length;
  }
}
