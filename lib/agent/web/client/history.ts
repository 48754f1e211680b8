// The page's copy of the agent's 10 s history: the first poll takes all of it, later polls only
// the points after the newest one held (?since=), trimmed to the agent's capacity.
import { HISTORY_COLUMNS } from '../../../api-types.js';
import type { HistoryColumn, HistoryResponse } from '../../../api-types.js';
import { getJson } from './http.js';

export type Columns = Record<HistoryColumn, (number | null)[]>;

export class HistoryStore {
  readonly columns: Columns;
  private capacity = Infinity;

  constructor() {
    const cols = {} as Columns;
    for (const c of HISTORY_COLUMNS) cols[c] = [];
    this.columns = cols;
  }

  get size(): number {
    return this.columns.t.length;
  }

  /** Fetches the new points; true when there were any. */
  async poll(): Promise<boolean> {
    const t = this.columns.t;
    const last = t[t.length - 1];
    const h = await getJson<HistoryResponse>(last === undefined || last === null ? 'api/history' : `api/history?since=${last}`);
    this.capacity = h.capacity;
    const added = h.columns.t.length;
    for (const c of HISTORY_COLUMNS) {
      const col = this.columns[c];
      col.push(...h.columns[c]);
      if (col.length > this.capacity) col.splice(0, col.length - this.capacity);
    }
    return added > 0;
  }

  /** x values (Unix seconds) for uPlot: t is never null. */
  times(): number[] {
    return this.columns.t.map((v) => v ?? 0);
  }
}
