// The JSON of the status page's /api/ endpoints, shared by the server (lib/agent/web/*.ts) and the
// browser code (client/, compiled by its own tsconfig): one definition, so a renamed field fails
// to compile on both sides. No Node or DOM imports here: both programs include this file.
// Field names are snake_case, like every `ksm-agent ... --json`.

/** History columns, in this order; `t` is Unix seconds. */
export const HISTORY_COLUMNS = [
  't',
  'saved_bytes',
  'pages_shared',
  'pages_sharing',
  'pages_unshared',
  'pages_volatile',
  'ksm_zero_pages',
  'scan_pages_per_second',
  'ksmd_cpu_ratio',
  'cache_bytes_reclaimed',
  'run',
] as const;

export type HistoryColumn = (typeof HISTORY_COLUMNS)[number];

/** GET /api/history?since=T: the points newer than T (Unix seconds), oldest first. */
export interface HistoryResponse {
  resolution_seconds: number;
  /** Points kept at most (24 h at the resolution). */
  capacity: number;
  /** Points kept now. */
  size: number;
  /** Equal-length columns; null = not measured (rates of the first point, no ksmd stat). */
  columns: Record<HistoryColumn, (number | null)[]>;
}

/** One VM, exactly as `ksm-agent vms --json` prints it. */
export interface VmRow {
  name: string;
  pid: number | null;
  ram_bytes: number | null;
  ksm_pages: number;
  ksm_zero_pages: number;
  rmap_items: number;
  fair_pages: number;
  saved_bytes: number;
  top_peer: { name: string; pid: number; pages: number } | null;
  tenant: string | null;
  opted_out: boolean;
  error?: string;
}

/** GET /api/vms: the agent's per-VM attribution (the rows of `ksm-agent vms --json`). */
export interface VmsResponse {
  /** When the attribution was read (Unix seconds); null before the first one. */
  at: number | null;
  /** The agent recomputes the attribution at most this often (vmMetricsSeconds). */
  refresh_seconds: number;
  general_profit: number;
  vms: VmRow[];
}

/** GET /api/matrix: which VM shares how many KSM pages with which, from the live pagemaps. */
export interface MatrixResponse {
  /** When it was computed (Unix seconds); null when there are no VMs. */
  at: number | null;
  /** How it was computed, in words (the page shows it). */
  method: string;
  names: string[];
  pids: number[];
  /** Each VM's pages mapped to a KSM page (any sharer). */
  ksm_pages: number[];
  /** pages[i][j]: pages of VM i mapped to a KSM page that VM j maps too; 0 on the diagonal. */
  pages: number[][];
  /** VMs left out of the matrix (beyond the size limit), by name. */
  omitted: string[];
  /** Recomputed at most this often. */
  refresh_seconds: number;
  error?: string;
}

/** GET /api/cache: the exclusive-cache scrub (README.md, section Exclusive caching) as configured and done. */
export interface CacheResponse {
  enabled: boolean;
  dry_run: boolean;
  interval_seconds: number;
  /** VM names or pids it is limited to; empty = every VM. */
  vms: string[];
  /** Host page-cache bytes dropped since the agent started (a dry run drops none). */
  bytes_reclaimed_total: number;
}

export type AgentStateName = 'off' | 'merging' | 'settled' | 'starting';

/** GET /api/summary: the numbers at the top of the page. */
export interface SummaryResponse {
  at: number;
  hostname: string;
  agent: {
    pid: number;
    started_at: number;
    state: AgentStateName;
    mode: 'ramp' | 'advisor' | null;
    memory_pressure: boolean | null;
    interval_seconds: number;
    ksmd_cpu_budget_ratio: number;
  };
  /** The KSM sysfs files read now (counters and the scan settings). */
  ksm: {
    run: number;
    pages_shared: number;
    pages_sharing: number;
    pages_unshared: number;
    pages_volatile: number;
    ksm_zero_pages: number;
    general_profit: number;
    full_scans: number;
    pages_to_scan: number;
    sleep_millisecs: number;
  };
  /** pages_sharing / pages_shared; null without KSM pages. */
  sharing_ratio: number | null;
  /** Over the agent's last tick; null when not measured. */
  scan_pages_per_second: number | null;
  ksmd_cpu_ratio: number | null;
  cache: CacheResponse;
  history: { resolution_seconds: number; capacity: number; size: number };
}

/** GET /api/: what is here. */
export interface IndexResponse {
  endpoints: { path: string; what: string }[];
}
