// Exclusive caching from userspace (Singleton, HPDC 2012): with QEMU's host caching on, a disk
// block a guest has read sits twice in RAM, in the guest's page cache and in the host's. This
// scans the guests' RAM with the engine, then drops from the host cache the pages of the VMs'
// disk images that a guest already holds. Clean pages only; no file is ever written; no file is
// examined but the VMs' own disk images and the files the caller lists.
//
// A VM's disk images are the regular files its QEMU process has open, never paths its command
// line merely names: a process may write -drive file=/etc/shadow without opening it. Each image is
// reopened through /proc/PID/fd/N (the file the fd refers to, not a path lookup that a rename
// could redirect; O_NOFOLLOW cannot apply, that entry is itself a link the kernel must follow) and
// kept only if it is still the file listVms saw there (st_dev, st_ino). The engine then opens our
// own fd's /proc/self/fd/M, so the file examined is the one checked, whatever happens to the names.
import { open, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { InvalidArgumentError, NotFoundError, errnoOf, fromSystemError } from './errors.js';
import { escapeText } from './escape.js';
import { Scanner } from './scanner.js';
import type { CachePassResult } from './scanner.js';
import { findVm, listVms } from './vms.js';
import type { Vm } from './vms.js';

export interface ScrubOptions {
  /** VMs by name, pid or listVms() object (default: every QEMU VM on the host). */
  vms?: (Vm | string | number)[];
  /**
   * Regular files to examine besides the VMs' disk images; nothing else is touched. The library
   * takes them as the caller's word; see filesMustBeOpen.
   */
  files?: string[];
  /**
   * Accept a listed file only when a QEMU VM on this host has it open (the CLI's --file): it may
   * add another VM's image to the scrub, never an arbitrary file.
   */
  filesMustBeOpen?: boolean;
  /** Find and count the duplicated pages, drop none. */
  dryRun?: boolean;
  /**
   * Engine passes before the cache pass. A page enters the engine's indexes on its second pass,
   * so a new scanner, or one the VMs were just added to, needs 2 (the default then). A reused
   * scanner that tracks every VM already defaults to 1, which takes in what changed since its
   * last pass; 0 looks that last pass up as it is (for a caller that has just scanned).
   */
  passes?: number;
  /** Pause between passes, like ksmd's sleep. */
  intervalMs?: number;
  /**
   * Reuse this scanner (a daemon's); VMs it does not track are added to it; it is left open. It
   * must have smartScan off: smart scan skips guest pages that did not merge, and the cache pass
   * finds only pages its last pass put in an index.
   */
  scanner?: Scanner;
  signal?: AbortSignal;
}

export interface ScrubResult extends CachePassResult {
  /** The VMs whose disk images were examined. */
  vms: { name: string; pid: number }[];
  /** The files examined, in order: the VMs' disk images, then the files listed. */
  paths: string[];
  /** Wall time of the scrub: adding the VMs, the engine passes and the cache pass. */
  elapsedMs: number;
  /** CPU time (user + system) of this process over the same span, thread-pool threads included. */
  cpuMs: number;
}

function label(vm: Vm): string {
  return vm.name ?? `pid ${vm.pid}`;
}

/** The pids of the processes a scanner tracks, to tell which VMs it has already. */
function trackedPids(scanner: Scanner): Set<number> {
  const pids = new Set<number>();
  for (const s of scanner.sources()) if (s.kind === 'process' && s.pid !== undefined) pids.add(s.pid);
  return pids;
}

function checkCount(name: string, value: number | undefined): void {
  if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) {
    throw new InvalidArgumentError(`scrubCache: ${name} must be a whole number >= 0, got ${String(value)}`);
  }
}

async function resolveVms(wanted: ScrubOptions['vms']): Promise<Vm[]> {
  const found =
    wanted === undefined
      ? await listVms({ memory: false })
      : await Promise.all(wanted.map((v) => (typeof v === 'object' ? v : findVm(v, { memory: false }))));
  if (wanted === undefined && found.length === 0) {
    throw new NotFoundError('no QEMU VMs are running: exclusive caching compares the host page cache with guest RAM');
  }
  const byPid = new Map<number, Vm>();
  for (const vm of found) if (!byPid.has(vm.pid)) byPid.set(vm.pid, vm);
  return [...byPid.values()];
}

/** A file to examine, held open so that the engine sees exactly the file that was checked. */
interface HeldFile {
  /** What the result reports: the image's path as the VM has it, or the listed path. */
  shown: string;
  /** dev:ino, so one image under two names (a hard link, another symlink) is one cache. */
  key: string;
  handle: FileHandle;
}

function idOf(st: BigIntStats): string {
  return `${st.dev}:${st.ino}`;
}

/**
 * Opens `file` read-only and returns the handle with its fstat; undefined when it is gone (or is
 * an fd that was closed). `pid` says the path is under /proc/PID, for error messages.
 */
async function openChecked(file: string, pid?: number): Promise<{ handle: FileHandle; st: BigIntStats } | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw fromSystemError(err, { op: 'open', path: file, ...(pid === undefined ? {} : { pid }) });
  }
  try {
    return { handle, st: await handle.stat({ bigint: true }) };
  } catch (err) {
    await handle.close();
    throw fromSystemError(err, { op: 'stat', path: file });
  }
}

/**
 * The VM's disk images that are regular files it has open now, each opened through
 * /proc/PID/fd/N and kept only while that fd still holds the file listVms saw (openFileId). A
 * path only named on the command line (no fd) is never opened.
 */
async function heldImages(vm: Vm): Promise<HeldFile[]> {
  const out: HeldFile[] = [];
  try {
    for (const disk of vm.disks) {
      if (!disk.open || disk.fd === undefined || disk.openFileId === undefined) continue;
      const opened = await openChecked(`/proc/${vm.pid}/fd/${disk.fd}`, vm.pid).catch((err: unknown) => {
        // The VM exited since it was listed: it has no images left to scrub.
        if ((err as { code?: unknown }).code === 'PROCESS_GONE') return undefined;
        throw err;
      });
      if (opened === undefined) continue;
      const key = idOf(opened.st);
      // The fd now holds another file (QEMU closed the image and reused the number), or a file
      // that has no page cache of its own (a block device): leave it.
      if (key !== disk.openFileId || !opened.st.isFile() || out.some((f) => f.key === key)) {
        await opened.handle.close();
        continue;
      }
      out.push({ shown: disk.path, key, handle: opened.handle });
    }
  } catch (err) {
    await closeAll(out);
    throw err;
  }
  return out;
}

async function closeAll(files: HeldFile[]): Promise<void> {
  await Promise.all(files.map((f) => f.handle.close().catch(() => undefined)));
}

/**
 * The files whose host cache can hold a VM's disk blocks: the regular files its QEMU process has
 * open (block devices, sockets and paths only named on the command line left out), each once, as
 * the VM names them.
 */
export async function vmCacheFiles(vm: Vm): Promise<string[]> {
  const held = await heldImages(vm);
  await closeAll(held);
  return held.map((f) => f.shown);
}

/** "dev:ino" of every regular file a QEMU VM on this host has open. */
async function openImageIds(): Promise<Set<string>> {
  const ids = new Set<string>();
  for (const vm of await listVms({ memory: false })) {
    for (const d of vm.disks) if (d.openFileId !== undefined) ids.add(d.openFileId);
  }
  return ids;
}

/** The listed files, opened and checked: each must exist and be a regular file (and open in a VM). */
async function listedFiles(files: string[], mustBeOpen: boolean): Promise<HeldFile[]> {
  const out: HeldFile[] = [];
  try {
    for (const [i, given] of files.entries()) {
      if (typeof given !== 'string' || given === '') throw new InvalidArgumentError(`scrubCache: files[${i}] must be a path, got ${JSON.stringify(given)}`);
      const file = path.resolve(given);
      const shown = escapeText(file);
      // stat first: a FIFO or a device must not be opened at all (open could block or act).
      const pre = await stat(file).catch((err: unknown) => {
        if (errnoOf(err) === 'ENOENT') throw new NotFoundError(`scrubCache: file ${shown} does not exist`, { path: file, errno: 'ENOENT' });
        throw fromSystemError(err, { op: 'stat', path: file });
      });
      if (!pre.isFile()) throw new InvalidArgumentError(`scrubCache: ${shown} is not a regular file: only disk image files have a page cache to scrub`, { path: file });
      const opened = await openChecked(file);
      if (opened === undefined) throw new NotFoundError(`scrubCache: file ${shown} does not exist`, { path: file, errno: 'ENOENT' });
      const key = idOf(opened.st);
      out.push({ shown: file, key, handle: opened.handle });
      if (!opened.st.isFile()) throw new InvalidArgumentError(`scrubCache: ${shown} is not a regular file: only disk image files have a page cache to scrub`, { path: file });
    }
    const openIds = mustBeOpen && out.length > 0 ? await openImageIds() : undefined;
    const stray = openIds === undefined ? undefined : out.find((f) => !openIds.has(f.key));
    if (stray !== undefined) {
      throw new NotFoundError(
        `scrubCache: no QEMU VM on this host has ${escapeText(stray.shown)} open: only a running VM's disk image can be scrubbed (ksm-agent vms lists the VMs)`,
        { path: stray.shown },
      );
    }
  } catch (err) {
    await closeAll(out);
    throw err;
  }
  return out;
}

/** The files to examine: the VMs' images, then the listed files, each inode once; open. */
async function filesFor(vms: Vm[], listed: HeldFile[]): Promise<HeldFile[]> {
  const all: HeldFile[] = [];
  try {
    for (const vm of vms) all.push(...(await heldImages(vm)));
  } catch (err) {
    await closeAll([...all, ...listed]);
    throw err;
  }
  all.push(...listed);
  const kept: HeldFile[] = [];
  const dropped: HeldFile[] = [];
  for (const f of all) (kept.some((g) => g.key === f.key) ? dropped : kept).push(f);
  await closeAll(dropped);
  return kept;
}

const NOTHING: CachePassResult = {
  files: 0,
  cachePagesTotal: 0,
  cachePagesChecked: 0,
  cachePagesInGuest: 0,
  cachePagesDropped: 0,
  cacheBytesReclaimed: 0,
  dirtySkipped: 0,
  errors: 0,
};

/**
 * Scans the VMs' guest RAM with the engine (a new scanner, or the one given), then examines the
 * host page cache of their disk images (and of the files listed) and, unless dryRun, drops the
 * clean cached pages a tracked guest page already holds. Dirty pages are only counted.
 */
export async function scrubCache(opts: ScrubOptions = {}): Promise<ScrubResult> {
  checkCount('passes', opts.passes);
  checkCount('intervalMs', opts.intervalMs);
  if (opts.vms !== undefined && !Array.isArray(opts.vms)) throw new InvalidArgumentError('scrubCache: vms must be an array of VM names, pids or listVms() objects');
  if (opts.files !== undefined && !Array.isArray(opts.files)) throw new InvalidArgumentError('scrubCache: files must be an array of paths');
  if (opts.scanner === undefined && opts.vms !== undefined && opts.vms.length === 0) {
    throw new InvalidArgumentError('scrubCache: no VMs to compare the host cache with: name some in vms, or pass a scanner that tracks them');
  }
  if (opts.scanner?.settings().smartScan === true) {
    throw new InvalidArgumentError(
      'scrubCache: the scanner has smartScan on, which skips guest pages that did not merge, so the cache pass would miss most of them: create the scrubbing scanner with { smartScan: false }',
    );
  }
  if (opts.scanner === undefined && opts.passes !== undefined && opts.passes < 2) {
    throw new InvalidArgumentError(`scrubCache: passes ${opts.passes} is too few for a new scanner: a guest page enters the engine's indexes on its second pass; use passes >= 2`);
  }
  // The caller's own input first, so a typo fails before any /proc walk.
  const listed = await listedFiles(opts.files ?? [], opts.filesMustBeOpen ?? false);
  const vms = await resolveVms(opts.vms).catch(async (err: unknown) => {
    await closeAll(listed);
    throw err;
  });
  const files = await filesFor(vms, listed);
  try {
    return await scrubHeld(vms, files, opts);
  } finally {
    await closeAll(files);
  }
}

async function scrubHeld(vms: Vm[], files: HeldFile[], opts: ScrubOptions): Promise<ScrubResult> {
  const paths = files.map((f) => f.shown);
  const result = (cache: CachePassResult, elapsedMs: number, cpuMs: number): ScrubResult => ({
    ...cache,
    vms: vms.map((vm) => ({ name: label(vm), pid: vm.pid })),
    paths,
    elapsedMs,
    cpuMs,
  });
  if (files.length === 0) return result(NOTHING, 0, 0);

  const started = performance.now();
  const cpu = process.cpuUsage();
  const scanner = opts.scanner ?? new Scanner({ smartScan: false });
  try {
    const tracked = trackedPids(scanner);
    const fresh = vms.filter((vm) => !tracked.has(vm.pid));
    const needs = opts.scanner === undefined || fresh.length > 0 ? 2 : 0;
    const passes = opts.passes ?? Math.max(needs, 1);
    if (passes < needs) {
      const names = fresh.map(label).join(', ');
      throw new InvalidArgumentError(`scrubCache: passes ${passes} is too few: ${names} would be new to the scanner, and a guest page enters the engine's indexes on its second pass; use passes >= 2`);
    }
    for (const vm of fresh) await scanner.addVm(vm, { guestRamOnly: true });
    if (passes > 0) {
      await scanner.scan({
        passes,
        ...(opts.intervalMs === undefined ? {} : { intervalMs: opts.intervalMs }),
        ...(opts.signal === undefined ? {} : { signal: opts.signal }),
      });
    }
    // Our own descriptors: the engine opens exactly the files checked above.
    const cache = await scanner.cachePass(
      files.map((f) => `/proc/self/fd/${f.handle.fd}`),
      { dryRun: opts.dryRun ?? false, ...(opts.signal === undefined ? {} : { signal: opts.signal }) },
    );
    const used = process.cpuUsage(cpu);
    return result(cache, performance.now() - started, (used.user + used.system) / 1000);
  } finally {
    if (opts.scanner === undefined) await scanner.close();
  }
}
