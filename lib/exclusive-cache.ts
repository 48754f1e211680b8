// Exclusive caching from userspace (Singleton, HPDC 2012): with QEMU's host caching on, a disk
// block a guest has read sits twice in RAM, in the guest's page cache and in the host's. This
// scans the guests' RAM with the engine, then drops from the host cache the pages of the VMs'
// disk images that a guest already holds. Clean pages only; no file is ever written; no file is
// examined but the VMs' own disk images and the files the caller lists.
import { stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { InvalidArgumentError, NotFoundError, errnoOf, fromSystemError } from './errors.js';
import { Scanner } from './scanner.js';
import type { CachePassResult } from './scanner.js';
import { findVm, listVms } from './vms.js';
import type { Vm } from './vms.js';

export interface ScrubOptions {
  /** VMs by name, pid or listVms() object (default: every QEMU VM on the host). */
  vms?: (Vm | string | number)[];
  /** Regular files to examine besides the VMs' disk images; nothing else is touched. */
  files?: string[];
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

/** stat() that says "gone" with undefined and any other failure with a typed error. */
async function statOrGone(file: string, pid?: number): Promise<Stats | undefined> {
  try {
    return await stat(file);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw fromSystemError(err, { op: 'stat', path: file, ...(pid === undefined ? {} : { pid }) });
  }
}

interface FileKey {
  file: string;
  /** dev:ino, so one image under two names (a hard link, another symlink) is one cache. */
  key: string;
}

async function imageFiles(vm: Vm): Promise<FileKey[]> {
  const out: FileKey[] = [];
  for (const disk of vm.disks) {
    const viaFd = disk.deleted === true && disk.fd !== undefined;
    const file = viaFd ? `/proc/${vm.pid}/fd/${String(disk.fd)}` : disk.path;
    const st = await statOrGone(file, viaFd ? vm.pid : undefined);
    if (st === undefined || !st.isFile()) continue;
    const key = `${st.dev}:${st.ino}`;
    if (!out.some((f) => f.key === key)) out.push({ file, key });
  }
  return out;
}

/**
 * The files whose host cache can hold a VM's disk blocks: regular files named by its disk options
 * or open in the QEMU process (block devices, sockets and the rest left out), each once. An image
 * deleted while open is reached through /proc/PID/fd/N.
 */
export async function vmCacheFiles(vm: Vm): Promise<string[]> {
  return (await imageFiles(vm)).map((f) => f.file);
}

/** The listed files, checked: each must exist and be a regular file. */
async function listedFiles(files: string[]): Promise<FileKey[]> {
  const out: FileKey[] = [];
  for (const [i, given] of files.entries()) {
    if (typeof given !== 'string' || given === '') throw new InvalidArgumentError(`scrubCache: files[${i}] must be a path, got ${JSON.stringify(given)}`);
    const file = path.resolve(given);
    const st = await statOrGone(file);
    if (st === undefined) throw new NotFoundError(`scrubCache: file ${file} does not exist`, { path: file, errno: 'ENOENT' });
    if (!st.isFile()) throw new InvalidArgumentError(`scrubCache: ${file} is not a regular file: only disk image files have a page cache to scrub`, { path: file });
    out.push({ file, key: `${st.dev}:${st.ino}` });
  }
  return out;
}

/** The paths to examine: the VMs' images, then the listed files, each inode once. */
async function pathsFor(vms: Vm[], listed: FileKey[]): Promise<string[]> {
  const all = [...(await Promise.all(vms.map(imageFiles))).flat(), ...listed];
  return all.filter((f, i) => all.findIndex((g) => g.key === f.key) === i).map((f) => f.file);
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
  const listed = await listedFiles(opts.files ?? []);
  const vms = await resolveVms(opts.vms);
  const paths = await pathsFor(vms, listed);
  const result = (cache: CachePassResult, elapsedMs: number, cpuMs: number): ScrubResult => ({
    ...cache,
    vms: vms.map((vm) => ({ name: label(vm), pid: vm.pid })),
    paths,
    elapsedMs,
    cpuMs,
  });
  if (paths.length === 0) return result(NOTHING, 0, 0);

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
    const cache = await scanner.cachePass(paths, { dryRun: opts.dryRun ?? false });
    const used = process.cpuUsage(cpu);
    return result(cache, performance.now() - started, (used.user + used.system) / 1000);
  } finally {
    if (opts.scanner === undefined) await scanner.close();
  }
}
