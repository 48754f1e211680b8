// The engine as a class: sources (buffers, processes, VMs, dump files), scans on the thread pool
// with progress and AbortSignal cancellation, and results as plain objects.
import { native } from './binding.js';
import { InvalidArgumentError } from './errors.js';
import type { EngineCounters, NativeEngine, NativeGroup, NativeSettings, NativeSourceInfo } from './native.js';
import { fromNativeError, isCancelled } from './native-errors.js';
import type { HintTable } from './hints.js';
import { findVm } from './vms.js';
import type { Vm } from './vms.js';

export type ScannerSettings = NativeSettings;
export type { EngineCounters } from './native.js';

export interface ProcessSourceOptions {
  name?: string;
  /** Every private anonymous range, not only those marked mergeable (what PR_SET_MEMORY_MERGE would give). */
  allAnon?: boolean;
  /** QEMU: only the guest-RAM range. */
  guestRamOnly?: boolean;
  /** Model THPs as ksmd meets them: a merge splits a THP, and its zero-filled subpages go to the zero page outside KSM. */
  thpZeroApart?: boolean;
}

export interface SourceStats {
  id: number;
  kind: 'memory' | 'process' | 'dump';
  name: string;
  pid?: number;
  ranges: number;
  pages: number;
  presentPages: number;
  /** The kernel's per-process figures (ksm_stat) for this source. */
  rmapItems: number;
  mergingPages: number;
  zeroPages: number;
  profitBytes: number;
  thpZeroPages: number;
  pagesLost: number;
  guestRam?: { start: number; bytes: number };
  error?: Error;
}

export interface ScanProgress {
  pass: number;
  passPages: number;
  passTotal: number;
  pagesScanned: number;
  counters: EngineCounters;
}

export interface ScanOptions {
  /** Full passes to run (default 1). */
  passes?: number;
  /** Instead of passes: scan this many pages, like one ksmd batch. */
  pages?: number;
  /** Pause between passes, like ksmd's sleep (lets volatile pages show as volatile). */
  intervalMs?: number;
  signal?: AbortSignal;
  onProgress?: (p: ScanProgress) => void;
}

export interface ScanResult {
  counters: EngineCounters;
  sources: SourceStats[];
  /** matrix[i][j]: pages of sources[i] merged with a page of sources[j] (i == j: within i). */
  matrix: number[][];
  passes: number;
}

export interface CachePassResult {
  files: number;
  /** Pages of the files in the host page cache. */
  cachePagesTotal: number;
  cachePagesChecked: number;
  /** Cached pages whose content a tracked guest page holds. */
  cachePagesInGuest: number;
  cachePagesDropped: number;
  cacheBytesReclaimed: number;
  /** Matching pages kept because they are dirty or under writeback. */
  dirtySkipped: number;
  /** Files that could not be examined (missing, not a regular file). */
  errors: number;
}

export interface MergeGroup {
  hash: string;
  mappings: number;
  dupIndex: number;
  members: { source: number; address: number }[];
}

function toStats(s: NativeSourceInfo): SourceStats {
  const out: SourceStats = {
    id: s.id,
    kind: s.kind,
    name: s.name,
    ranges: s.ranges,
    pages: s.pages,
    presentPages: s.present_pages,
    rmapItems: s.rmap_items,
    mergingPages: s.merging_pages,
    zeroPages: s.zero_pages,
    profitBytes: s.profit,
    thpZeroPages: s.thp_zero_pages,
    pagesLost: s.pages_lost,
  };
  if (s.kind === 'process') out.pid = s.pid;
  if (s.guest_ram_bytes) out.guestRam = { start: s.guest_ram_start, bytes: s.guest_ram_bytes };
  if (s.error) out.error = fromNativeError(s.error, { what: `scan ${s.name}`, pid: s.pid });
  return out;
}

/** An Error named AbortError, whatever the signal's reason is (often a DOMException). */
function abortError(signal: AbortSignal, what = 'scan'): Error {
  const err = new Error(`the ${what} was aborted`, { cause: signal.reason });
  err.name = 'AbortError';
  return err;
}

export class Scanner {
  private engine: NativeEngine | undefined;
  private readonly pids = new Map<number, number>();

  constructor(settings: ScannerSettings = {}) {
    const Engine = native().Engine;
    this.engine = new Engine(settings);
  }

  private get open(): NativeEngine {
    if (!this.engine) throw new InvalidArgumentError('the scanner is closed: create a new Scanner');
    return this.engine;
  }

  configure(settings: ScannerSettings): void {
    try {
      this.open.configure(settings);
    } catch (err) {
      throw fromNativeError(err, { what: 'configure the scanner' });
    }
  }

  settings(): Required<ScannerSettings> {
    return this.open.settings();
  }

  /**
   * Memory of this process. A buffer from allocMergeable() is scanned in place (Node never detaches
   * it; the scanner keeps it alive as long as the source), so later writes show in the next pass.
   * Any other buffer can be transferred or shrunk under the scan, so the scanner takes a private
   * copy of it now and scans that.
   */
  addBuffer(memory: ArrayBuffer | ArrayBufferView, name?: string): number {
    try {
      return this.open.addMemory(name ?? null, memory);
    } catch (err) {
      throw fromNativeError(err, { what: 'add a buffer' });
    }
  }

  /**
   * A live process. Its /proc files are opened and its maps read on the thread pool; until the
   * promise settles the scanner is busy (other calls throw), as during a scan.
   */
  async addProcess(pid: number, opts: ProcessSourceOptions = {}): Promise<number> {
    if (!Number.isInteger(pid) || pid <= 0) throw new InvalidArgumentError(`pid must be a positive integer, got ${String(pid)}`);
    const f = native().flags;
    const flags = (opts.allAnon ? f.PROC_ALL_ANON : 0) | (opts.guestRamOnly ? f.PROC_GUEST_RAM_ONLY : 0) | (opts.thpZeroApart ? f.PROC_THP_ZERO_APART : 0);
    try {
      const id = await this.open.addProcess(opts.name ?? null, pid, flags);
      this.pids.set(id, pid);
      return id;
    } catch (err) {
      throw fromNativeError(err, { what: `scan process ${pid}`, pid, path: `/proc/${pid}/mem` });
    }
  }

  /** A QEMU VM by name, pid or the object listVms() returned. */
  async addVm(vm: Vm | string | number, opts: Omit<ProcessSourceOptions, 'name'> = {}): Promise<number> {
    const found = typeof vm === 'object' ? vm : await findVm(vm);
    return this.addProcess(found.pid, { ...opts, name: found.name });
  }

  /** A memory dump file, opened and its headers read on the thread pool (the scanner is busy meanwhile). */
  async addDump(path: string, opts: { name?: string; raw?: boolean } = {}): Promise<number> {
    try {
      return await this.open.addDump(opts.name ?? null, path, opts.raw ? native().flags.DUMP_RAW : 0);
    } catch (err) {
      throw fromNativeError(err, { what: `read the memory dump ${path}`, path });
    }
  }

  removeSource(id: number): void {
    try {
      this.open.removeSource(id);
      this.pids.delete(id);
    } catch (err) {
      throw fromNativeError(err, { what: `remove source ${id}` });
    }
  }

  /**
   * Guest page-flag hints for a source (native/kernel patch 3): one byte per guest page of its
   * guest RAM in RAM order (HintFlag bits). Pages the guest reports free are not scanned; the
   * guest's page-cache pages are scanned first. null clears them.
   */
  setHints(id: number, hints: Uint8Array | null): void {
    try {
      this.open.setHints(id, hints);
    } catch (err) {
      throw fromNativeError(err, { what: `set hints of source ${id}` });
    }
  }

  /** setHints() from a table read with readHintTable() (guest frame firstPfn + i = RAM page). */
  applyHintTable(id: number, table: HintTable): void {
    const first = Number(table.header.firstPfn);
    const hints = new Uint8Array(first + table.flags.length);
    hints.set(table.flags, first);
    this.setHints(id, hints);
  }

  async scan(opts: ScanOptions = {}): Promise<ScanResult> {
    const engine = this.open;
    const { signal } = opts;
    if (signal?.aborted) throw abortError(signal);
    const onAbort = (): void => engine.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const scanOpts: { passes?: number; pages?: number; intervalMs?: number } = {};
      if (opts.passes !== undefined) scanOpts.passes = opts.passes;
      if (opts.pages !== undefined) scanOpts.pages = opts.pages;
      if (opts.intervalMs !== undefined) scanOpts.intervalMs = opts.intervalMs;
      const result = await engine.scan(scanOpts, opts.onProgress);
      return {
        counters: result.counters,
        sources: result.sources.map(toStats),
        matrix: engine.matrix(),
        passes: result.passes,
      };
    } catch (err) {
      if (isCancelled(err) && signal?.aborted) throw abortError(signal);
      throw fromNativeError(err, { what: 'scan' });
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Exclusive caching: examines the host page cache of the given files (VM disk images) against
   * the guest pages this scanner tracks (run it right after a scan), and unless dryRun drops the
   * cached pages a guest already holds. Dirty pages are never dropped. File contents never change.
   * The signal (or cancel()) stops it between files and between runs of cached pages: the file
   * being examined then has nothing dropped, the files before it keep their drops.
   */
  async cachePass(paths: string[], opts: { dryRun?: boolean; signal?: AbortSignal } = {}): Promise<CachePassResult> {
    const engine = this.open;
    const { signal } = opts;
    if (signal?.aborted) throw abortError(signal, 'cache pass');
    const onAbort = (): void => engine.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const r = await engine.cachePass(paths, !(opts.dryRun ?? false));
      return {
        files: r.files,
        cachePagesTotal: r.cache_pages_total,
        cachePagesChecked: r.cache_pages_checked,
        cachePagesInGuest: r.cache_pages_in_guest,
        cachePagesDropped: r.cache_pages_dropped,
        cacheBytesReclaimed: r.cache_bytes_reclaimed,
        dirtySkipped: r.dirty_skipped,
        errors: r.errors,
      };
    } catch (err) {
      if (isCancelled(err) && signal?.aborted) throw abortError(signal, 'cache pass');
      if ((err as { code?: unknown }).code === 'ENODATA') {
        throw new InvalidArgumentError('cachePass: the scanner tracks no guest pages yet: add the VMs and scan at least two passes first');
      }
      throw fromNativeError(err, { what: 'exclusive cache pass' });
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  counters(): EngineCounters {
    return this.open.counters();
  }

  sources(): SourceStats[] {
    return this.open.sources().map(toStats);
  }

  groups(): MergeGroup[] {
    return this.open.groups().map((g: NativeGroup) => ({ ...g }));
  }

  matrix(): number[][] {
    return this.open.matrix();
  }

  /** Like writing 2 to run: forget every merge; the sources stay. */
  unmergeAll(): void {
    this.open.unmergeAll();
  }

  /** Stops a running scan or cache pass (it rejects with ECANCELED / the abort reason). */
  cancel(): void {
    this.engine?.cancel();
  }

  get busy(): boolean {
    return this.engine?.busy ?? false;
  }

  /** Frees the engine, after cancelling and waiting for a running scan. */
  async close(): Promise<void> {
    const engine = this.engine;
    this.engine = undefined;
    if (engine) await engine.close();
  }
}
