// The shape of the native addon (native/addon), as the rest of the library sees it. Only
// binding.ts loads it; everything else imports these types.

export interface NativeSettings {
  pagesToScan?: number;
  maxPageSharing?: number;
  useZeroPages?: boolean;
  smartScan?: boolean;
  lookahead?: boolean;
  contentCacheBytes?: number;
  /** As the kernel's knob: how often, per chain, a lookup walks all its dups (ms; 0: always). */
  stableNodeChainsPruneMillisecs?: number;
  /**
   * Walk both KSM trees node by node as the kernel does: the unstable one by memcmp against each
   * page on the path as it is now (giving up at a page that went), the stable one dropping every
   * merged page a descent meets that lost all its mappings. Pages written or dropped mid-pass then
   * mislead, stop or empty searches exactly as in ksmd, at a page read per tree level. Off (the
   * default), hash indexes find the same matches wherever pages hold still within a pass.
   */
  exactTrees?: boolean;
  /**
   * Research, not the kernel: with lookahead on, a page equal to the page after its run's last
   * partner merges even when the checksum gate would hold it back (its first visit, or changed
   * since the last), so runs of new copies merge a pass sooner. Changes results; off by default.
   */
  lookaheadEarly?: boolean;
}

/** The engine's counters: the kernel's names for the kernel's figures, then the engine's own. */
export interface EngineCounters {
  pages_shared: number;
  pages_sharing: number;
  pages_unshared: number;
  pages_volatile: number;
  pages_skipped: number;
  pages_scanned: number;
  full_scans: number;
  stable_node_chains: number;
  stable_node_dups: number;
  ksm_zero_pages: number;
  general_profit: number;
  rmap_items: number;
  page_compares: number;
  full_compares: number;
  bytes_read: number;
  lookahead_hits: number;
  lookahead_misses: number;
  /** Merges of pages the checksum gate held back, made by lookaheadEarly. */
  lookahead_early: number;
  pages_lost: number;
  tracking_bytes: number;
  tracked_pages: number;
  /** Distinct contents with a merged page: regular merged pages, and chains that still have one. */
  merged_contents: number;
  cache_bytes: number;
}

export interface NativeSourceInfo {
  id: number;
  kind: 'memory' | 'process' | 'dump';
  pid: number;
  name: string;
  ranges: number;
  pages: number;
  present_pages: number;
  rmap_items: number;
  merging_pages: number;
  zero_pages: number;
  profit: number;
  thp_zero_pages: number;
  pages_lost: number;
  guest_ram_start: number;
  guest_ram_bytes: number;
  error?: NativeError;
}

export interface NativeProgress {
  pass: number;
  passPages: number;
  passTotal: number;
  pagesScanned: number;
  counters: EngineCounters;
}

export interface NativeScanResult {
  counters: EngineCounters;
  sources: NativeSourceInfo[];
  passes: number;
}

export interface NativeGroup {
  hash: string;
  mappings: number;
  dupIndex: number;
  members: { source: number; address: number }[];
}

export interface NativeLiveProcess {
  pid: number;
  error?: NativeError;
  scanned_pages: number;
  present_pages: number;
  swapped_pages: number;
  ksm_pages: number;
  zero_pages: number;
  thp_pages: number;
  saved_pages: number;
  top_peer?: number;
  top_peer_pages?: number;
}

export interface NativeCacheResult {
  files: number;
  cache_pages_total: number;
  cache_pages_checked: number;
  cache_pages_in_guest: number;
  cache_pages_dropped: number;
  cache_bytes_reclaimed: number;
  dirty_skipped: number;
  errors: number;
}

/** An Error thrown by the addon: code is the errno name, errno its number. */
export interface NativeError extends Error {
  code: string;
  errno: number;
}

export interface NativeEngine {
  configure(settings: NativeSettings): void;
  settings(): Required<NativeSettings>;
  addMemory(name: string | null, memory: ArrayBuffer | ArrayBufferView): number;
  /** Opening and reading the process's maps happen on the thread pool; the engine is busy meanwhile. */
  addProcess(name: string | null, pid: number, flags: number): Promise<number>;
  addDump(name: string | null, path: string, flags: number): Promise<number>;
  removeSource(id: number): void;
  setHints(id: number, hints: Uint8Array | null): void;
  sources(): NativeSourceInfo[];
  counters(): EngineCounters;
  groups(): NativeGroup[];
  matrix(): number[][];
  unmergeAll(): void;
  scan(
    opts: { passes?: number; pages?: number; intervalMs?: number; progressEveryPages?: number },
    onProgress?: (p: NativeProgress) => void,
  ): Promise<NativeScanResult>;
  cachePass(paths: string[], act: boolean): Promise<NativeCacheResult>;
  cancel(): void;
  close(): Promise<void>;
  readonly busy: boolean;
}

/** An exclusive flock held by this process; release() closes its descriptor (idempotent). */
export interface NativeFileLock {
  release(): void;
  readonly held: boolean;
}

export interface NativeBinding {
  Engine: new (settings?: NativeSettings) => NativeEngine;
  liveProcesses(pids: number[], flags: number): Promise<{ processes: NativeLiveProcess[]; matrix: number[][] }>;
  pageHash(page: Uint8Array): string;
  setMemoryMerge(on: boolean): void;
  getMemoryMerge(): boolean;
  allocMergeable(bytes: number, noHugePages?: boolean): ArrayBuffer;
  lockFile(path: string): Promise<NativeFileLock>;
  flags: {
    PROC_ALL_ANON: number;
    PROC_GUEST_RAM_ONLY: number;
    PROC_THP_ZERO_APART: number;
    DUMP_RAW: number;
    CACHE_ACT: number;
  };
  pageSize: number;
}
