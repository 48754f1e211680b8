// Sketches of running QEMU VMs: their guest RAM read through /proc/PID/mem (opened read-only, never
// written), only where /proc/PID/pagemap says a page is resident. A page that is not resident is not
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
  const builder = new SketchBuilder(opts.key, opts.entries ?? defaultEntries(Math.ceil(ram.bytes / PAGE_BYTES)));
  const swappedPages = await sketchRange(vm.pid, ram.start, ram.bytes, builder, opts.signal);
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

/** Feeds the resident pages of [start, start+bytes) of process pid to the builder; returns the swapped-out pages. */
export async function sketchRange(pid: number, start: bigint, bytes: number, builder: SketchBuilder, signal?: AbortSignal): Promise<number> {
  if (start % BigInt(PAGE_BYTES) !== 0n || bytes % PAGE_BYTES !== 0) throw new InvalidArgumentError(`guest RAM of process ${pid} is not page-aligned`, { pid });
  const pagemap = await openProc(pid, 'pagemap');
  let mem: FileHandle | undefined;
  try {
    mem = await openProc(pid, 'mem');
    const entries = Buffer.alloc(CHUNK_PAGES * 8);
    const data = Buffer.alloc(CHUNK_PAGES * PAGE_BYTES);
    const pages = bytes / PAGE_BYTES;
    const firstPage = start / BigInt(PAGE_BYTES);
    let swapped = 0;
    for (let done = 0; done < pages; done += CHUNK_PAGES) {
      signal?.throwIfAborted();
      const n = Math.min(CHUNK_PAGES, pages - done);
      const pageNo = firstPage + BigInt(done);
      await readExactly(pagemap, entries, n * 8, pageNo * 8n, pid, 'pagemap');
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
        builder.addPages(data.subarray(0, len));
        i = j;
      }
    }
    return swapped;
  } finally {
    await pagemap.close();
    await mem?.close();
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
