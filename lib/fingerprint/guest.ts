// Sketches of running QEMU VMs: what KSM would scan in them, read through /proc/PID/mem (opened
// read-only, never written), only where /proc/PID/pagemap says a page is resident. What KSM scans
// is every private anonymous VM_MERGEABLE range: guest RAM, and QEMU's ROM blocks (the BIOS and
// option ROMs, the same in every guest of one QEMU build, with zero-filled pages); measured on
// this host, leaving the ROMs out missed ~33 zero pages and ~30 shared pages a guest. A VM with
// mem-merge=off has no such range; its guest RAM is sketched, for what KSM would do if it were on. A page that is not resident is not
// read at all: reading it would fault the zero page into the guest's mapping, and KSM does not
// scan it either (ksmd only looks at pages present in the page tables). Swapped-out pages are left
// out for the same reason; they are counted in `swappedPages`.
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import os from 'node:os';
import { InvalidArgumentError, SamepageError, fromSystemError } from '../errors.js';
import { findVm, listVms } from '../vms.js';
import type { Vm } from '../vms.js';
import { vmLabel } from '../attribution.js';
import { readSmaps } from '../procfs.js';
import { PAGE_BYTES, SketchBuilder, defaultEntries } from './sketch.js';
import type { Sketch } from './sketch.js';
import type { FingerprintKey } from './key.js';

/** Pages read per pagemap/mem round trip: 2 MiB of guest RAM, 4 KiB of pagemap. */
const CHUNK_PAGES = 512;
const PRESENT = 1n << 63n;
const SWAPPED = 1n << 62n;

export interface FingerprintOptions {
  key: FingerprintKey;
  /** VMs by name or pid (as ksm-agent vms lists them); every running QEMU VM when absent or empty. */
  vms?: readonly (string | number)[];
  /** k, the most entries of each sketch; default defaultEntries(guest RAM pages). */
  entries?: number;
  signal?: AbortSignal;
}

export interface FingerprintFailure {
  name: string;
  pid: number;
  error: Error;
}

export interface VmSketch extends Sketch {
  /** Pages of guest RAM swapped out when it was read (not sketched). */
  swappedPages: number;
}

export interface FingerprintResult {
  sketches: VmSketch[];
  /** VMs that could not be sketched (no guest RAM found, exited meanwhile), one entry each. */
  failures: FingerprintFailure[];
}

/** Sketches the guest RAM of the named VMs, or of every running QEMU VM. Needs root (ptrace access). */
export async function fingerprintVms(opts: FingerprintOptions): Promise<FingerprintResult> {
  const named = opts.vms ?? [];
  // Named VMs are all found before any memory is read, so a typo fails fast.
  const vms: Vm[] = named.length > 0 ? await Promise.all(named.map((n) => findVm(n))) : await listVms();
  const host = os.hostname();
  const out: FingerprintResult = { sketches: [], failures: [] };
  for (const vm of vms) {
    opts.signal?.throwIfAborted();
    try {
      out.sketches.push(await fingerprintVm(vm, host, opts));
    } catch (err) {
      if (!(err instanceof SamepageError) || named.length > 0) throw err;
      out.failures.push({ name: vmLabel(vm), pid: vm.pid, error: err });
    }
  }
  return out;
}

/** One VM's sketch; `host` is recorded in it (placement compares it with where the VM should go). */
export async function fingerprintVm(vm: Vm, host: string, opts: Omit<FingerprintOptions, 'vms'>): Promise<VmSketch> {
  const ram = vm.guestRam;
  if (ram === undefined) {
    const why = vm.warnings.find((w) => w.startsWith('guest RAM')) ?? 'its guest RAM was not found';
    throw new InvalidArgumentError(`cannot sketch VM ${vmLabel(vm)} (pid ${vm.pid}): ${why}`, { pid: vm.pid });
  }
  const started = performance.now();
  let ranges: { start: bigint; bytes: number }[] = (await readSmaps(vm.pid)).filter((v) => v.mergeable && v.anonymous && !v.shared).map((v) => ({ start: v.start, bytes: v.bytes }));
  if (ranges.length === 0) ranges = [ram];
  const builder = new SketchBuilder(opts.key, opts.entries ?? defaultEntries(Math.ceil(ram.bytes / PAGE_BYTES)));
  let swappedPages = 0;
  for (const r of ranges) swappedPages += await sketchRange(vm.pid, r.start, r.bytes, builder, opts.signal);
  const source = { name: vmLabel(vm), ramBytes: vm.ramBytes ?? ram.bytes, host, pid: vm.pid, ...(vm.uuid === undefined ? {} : { uuid: vm.uuid }) };
  return { ...builder.finish(source, opts.key.id, Date.now(), performance.now() - started), swappedPages };
}

async function openProc(pid: number, file: string): Promise<FileHandle> {
  const p = `/proc/${pid}/${file}`;
  try {
    return await open(p, constants.O_RDONLY);
  } catch (err) {
    throw fromSystemError(err, { op: 'read', path: p, pid });
  }
}

/** kpageflags bits (include/uapi/linux/kernel-page-flags.h). */
const KPF_THP = 22n;
const KPF_ZERO_PAGE = 24n;
const PFN_MASK = (1n << 55n) - 1n;

/**
 * Feeds the resident pages of [start, start+bytes) of process pid to the builder; returns the
 * swapped-out pages. With /proc/kpageflags (root), a page that maps the shared zero page (a read
 * fault, or KSM's use_zero_pages) is left out, as KSM leaves it, and a zero-filled subpage of a
 * THP is counted apart (SketchBuilder.addPage). Without it every resident page counts as small.
 */
export async function sketchRange(pid: number, start: bigint, bytes: number, builder: SketchBuilder, signal?: AbortSignal): Promise<number> {
  if (start % BigInt(PAGE_BYTES) !== 0n || bytes % PAGE_BYTES !== 0) throw new InvalidArgumentError(`guest RAM of process ${pid} is not page-aligned`, { pid });
  const pagemap = await openProc(pid, 'pagemap');
  let mem: FileHandle | undefined;
  // Page frame flags need CAP_SYS_ADMIN; without them the sketch is still right, only less exact.
  const kpageflags = await open('/proc/kpageflags', constants.O_RDONLY).catch(() => undefined);
  try {
    mem = await openProc(pid, 'mem');
    const entries = Buffer.alloc(CHUNK_PAGES * 8);
    const flags = new BigUint64Array(CHUNK_PAGES);
    const flagBuf = Buffer.alloc(CHUNK_PAGES * 8);
    const data = Buffer.alloc(CHUNK_PAGES * PAGE_BYTES);
    const pages = bytes / PAGE_BYTES;
    const firstPage = start / BigInt(PAGE_BYTES);
    let swapped = 0;
    for (let done = 0; done < pages; done += CHUNK_PAGES) {
      signal?.throwIfAborted();
      const n = Math.min(CHUNK_PAGES, pages - done);
      const pageNo = firstPage + BigInt(done);
      await readExactly(pagemap, entries, n * 8, pageNo * 8n, pid, 'pagemap');
      if (kpageflags !== undefined) await readFlags(kpageflags, entries, n, flags, flagBuf);
      // Runs of resident pages are read from mem in one call each.
      let i = 0;
      while (i < n) {
        const e = entries.readBigUInt64LE(i * 8);
        if ((e & PRESENT) === 0n) {
          if ((e & SWAPPED) !== 0n) swapped++;
          i++;
          continue;
        }
        let j = i + 1;
        while (j < n && (entries.readBigUInt64LE(j * 8) & PRESENT) !== 0n) j++;
        const len = (j - i) * PAGE_BYTES;
        await readExactly(mem, data, len, (pageNo + BigInt(i)) * BigInt(PAGE_BYTES), pid, 'mem');
        for (let q = i; q < j; q++) {
          const f = kpageflags === undefined ? 0n : (flags[q] as bigint);
          if ((f >> KPF_ZERO_PAGE) & 1n) continue;
          const off = (q - i) * PAGE_BYTES;
          builder.addPage(data.subarray(off, off + PAGE_BYTES), ((f >> KPF_THP) & 1n) === 1n);
        }
        i = j;
      }
    }
    return swapped;
  } finally {
    await pagemap.close();
    await mem?.close();
    await kpageflags?.close();
  }
}

/** flags[i] = kpageflags of the frame of pagemap entry i (0 when not present or PFNs hidden), read by runs of consecutive frames. */
async function readFlags(kpageflags: FileHandle, entries: Buffer, n: number, flags: BigUint64Array, buf: Buffer): Promise<void> {
  flags.fill(0n);
  let i = 0;
  while (i < n) {
    const e = entries.readBigUInt64LE(i * 8);
    const pfn = e & PFN_MASK;
    if ((e & PRESENT) === 0n || pfn === 0n) {
      i++;
      continue;
    }
    let j = i + 1;
    while (j < n) {
      const f = entries.readBigUInt64LE(j * 8);
      if ((f & PRESENT) === 0n || (f & PFN_MASK) !== pfn + BigInt(j - i)) break;
      j++;
    }
    const { bytesRead } = await kpageflags.read(buf, 0, (j - i) * 8, Number(pfn) * 8);
    for (let q = 0; q < bytesRead / 8; q++) flags[i + q] = buf.readBigUInt64LE(q * 8);
    i = j;
  }
}

async function readExactly(fh: FileHandle, buf: Buffer, length: number, position: bigint, pid: number, file: string): Promise<void> {
  let got = 0;
  while (got < length) {
    let r;
    try {
      // User-space addresses are below 2^47: exact as a number.
      r = await fh.read(buf, got, length - got, Number(position) + got);
    } catch (err) {
      throw fromSystemError(err, { op: 'read', path: `/proc/${pid}/${file}`, pid });
    }
    // 0 bytes: the mapping went away (the VM exited or unmapped its RAM) while it was read.
    if (r.bytesRead === 0) throw fromSystemError(Object.assign(new Error('short read'), { code: 'ESRCH' }), { op: 'read', path: `/proc/${pid}/${file}`, pid });
    got += r.bytesRead;
  }
}
