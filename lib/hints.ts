// Reads the page-flag hint table a guest kernel with native/kernel patch 0003 (CONFIG_PAGE_HINTS,
// booted with page_hints=<size>@<gpa>[,<ms>]) keeps in a reserved hole of its RAM, from the host:
// straight out of the QEMU process through /proc/PID/mem at (host address of guest RAM + gpa).
// The layout is the kernel's include/uapi/linux/page_hints.h; native/kernel/README.md has it too.
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { SamepageError, fromSystemError } from './errors.js';
import type { ErrorCode, ErrorDetails } from './errors.js';
import { findGuestRam } from './guest-ram.js';

export const HINT_MAGIC = 0x54485053; // "SPHT" as little-endian bytes
export const HINT_VERSION = 1;
/** Bytes of the version 1 header; the header's own header_size says where the table starts. */
export const HINT_HEADER_BYTES = 64;

/** One byte per guest page frame; a page can carry several bits, 0 means no RAM there. */
export const HintFlag = {
  free: 0x01,
  anon: 0x02,
  pageCache: 0x04,
  slab: 0x08,
  kernel: 0x10,
} as const;
export type HintKind = keyof typeof HintFlag;
/** Bits the format reserves: a table that sets them is from a newer, unknown version. */
export const HINT_RESERVED_BITS = 0xe0;
/**
 * Guest-physical addresses up to here map linearly onto QEMU's RAM block for any guest size: QEMU
 * puts the PCI hole at 2 GiB (q35) or 3 GiB (i440fx) once RAM is big enough, and RAM above it at
 * 4 GiB. A hole must lie below the split for host address = RAM start + gpa to hold.
 */
export const HINT_LINEAR_GPA_LIMIT = 2 ** 31;
/**
 * The most guest page frames a table may describe whatever the guest says: 2^28 frames is a 1 TiB
 * guest, a 256 MiB table. The header is the guest's word (a guest kernel, or whatever wrote those
 * bytes) and its counts decide how much the host allocates, so they are checked against this and
 * against the guest's own RAM before anything is allocated.
 */
export const HINT_MAX_PAGE_COUNT = 2 ** 28;
/** Guest-physical space below 4 GiB that is not RAM (the PCI hole): at most 2 GiB on x86 (q35). */
const PCI_HOLE_MAX_BYTES = 2 ** 31;
const PAGE_BYTES = 4096;

export interface HintHeader {
  magic: number;
  version: number;
  headerSize: number;
  /** Like a seqcount: odd while the guest rewrites the table. */
  seq: number;
  intervalMs: number;
  firstPfn: bigint;
  pageCount: number;
  /** Guest CLOCK_MONOTONIC nanoseconds at the end of the last rewrite. */
  updateNs: bigint;
}

export interface HintTable {
  header: HintHeader;
  /** flags[i] is the hint byte of guest page frame firstPfn + i. */
  flags: Uint8Array;
  /** How many reads it took to get an untorn copy (1 when the first one was whole). */
  attempts: number;
}

export type HintProblem = 'BAD_MAGIC' | 'BAD_VERSION' | 'BAD_HEADER' | 'OUTSIDE_RAM' | 'TORN';

const PROBLEM_CODE: Record<HintProblem, ErrorCode> = {
  BAD_MAGIC: 'NOT_FOUND',
  BAD_VERSION: 'UNSUPPORTED_FEATURE',
  BAD_HEADER: 'INVALID_ARGUMENT',
  OUTSIDE_RAM: 'INVALID_ARGUMENT',
  TORN: 'IO',
};

/** A table that is not there, not understood, or never read whole; `problem` says which. */
export class HintTableError extends SamepageError {
  readonly problem: HintProblem;

  constructor(problem: HintProblem, message: string, details: ErrorDetails = {}) {
    super(PROBLEM_CODE[problem], message, details);
    this.problem = problem;
  }
}

export interface HintLocation {
  /** Guest-physical address of the hole (the page_hints= address). */
  gpa: bigint | number;
  /** The guest's RAM size (QEMU -m) in bytes, to find its RAM exactly; see findGuestRam. */
  ramBytes?: number;
  /** The hole's size (the page_hints= size), to check the table fits in it. */
  holeBytes?: number;
}

export interface ReadHintOptions {
  /** Reads to try before giving up on a table the guest keeps rewriting; default 100. */
  maxAttempts?: number;
  /** Pause between attempts; default 2 ms. */
  retryDelayMs?: number;
}

/** Byte offsets of the header's little-endian fields (include/linux/page_hints.h, patch 0003). */
const HEADER_AT = { magic: 0, version: 4, headerSize: 6, seq: 8, intervalMs: 12, firstPfn: 16, pageCount: 24, updateNs: 32 } as const;

/**
 * Parses and checks a header. `where` names the table in error messages (pid and address).
 */
export function parseHintHeader(bytes: Uint8Array, where: string): HintHeader {
  if (bytes.length < HINT_HEADER_BYTES) {
    throw new HintTableError('BAD_HEADER', `hint table header at ${where} is ${bytes.length} bytes, expected ${HINT_HEADER_BYTES}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const header: HintHeader = {
    magic: view.getUint32(HEADER_AT.magic, true),
    version: view.getUint16(HEADER_AT.version, true),
    headerSize: view.getUint16(HEADER_AT.headerSize, true),
    seq: view.getUint32(HEADER_AT.seq, true),
    intervalMs: view.getUint32(HEADER_AT.intervalMs, true),
    firstPfn: view.getBigUint64(HEADER_AT.firstPfn, true),
    pageCount: Number(view.getBigUint64(HEADER_AT.pageCount, true)),
    updateNs: view.getBigUint64(HEADER_AT.updateNs, true),
  };
  if (header.magic !== HINT_MAGIC) {
    throw new HintTableError(
      'BAD_MAGIC',
      `no hint table at ${where}: magic is 0x${hex(header.magic)}, expected 0x${hex(HINT_MAGIC)} ("SPHT"); check the page_hints= address and that the guest kernel has CONFIG_PAGE_HINTS`,
    );
  }
  if (header.version !== HINT_VERSION) {
    throw new HintTableError(
      'BAD_VERSION',
      `hint table at ${where} has version ${header.version}; this reader understands version ${HINT_VERSION}: update samepage`,
    );
  }
  const pageCount = view.getBigUint64(HEADER_AT.pageCount, true);
  if (header.headerSize < HINT_HEADER_BYTES || pageCount === 0n || pageCount > BigInt(HINT_MAX_PAGE_COUNT)) {
    throw new HintTableError(
      'BAD_HEADER',
      `hint table at ${where} has a bad header (header_size ${header.headerSize}, page_count ${pageCount}, at most ${HINT_MAX_PAGE_COUNT}): the hole holds something else, or the guest overwrote it`,
    );
  }
  if (header.firstPfn + pageCount > BigInt(HINT_MAX_PAGE_COUNT)) {
    throw new HintTableError(
      'BAD_HEADER',
      `hint table at ${where} has a bad header (first_pfn ${header.firstPfn} + page_count ${pageCount} is past frame ${HINT_MAX_PAGE_COUNT}): the hole holds something else, or the guest overwrote it`,
    );
  }
  return header;
}

/**
 * The 64 bytes of a header as the guest lays them out, unchecked: what parseHintHeader reads. For
 * writing a table back (a guest RAM dump whose table must be untorn) and for building test tables;
 * `pageCount` may be a bigint, to write a hostile count past what a number holds exactly.
 */
export function encodeHintHeader(header: Omit<HintHeader, 'pageCount'> & { pageCount: number | bigint }): Uint8Array {
  const bytes = new Uint8Array(HINT_HEADER_BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint32(HEADER_AT.magic, header.magic, true);
  view.setUint16(HEADER_AT.version, header.version, true);
  view.setUint16(HEADER_AT.headerSize, header.headerSize, true);
  view.setUint32(HEADER_AT.seq, header.seq, true);
  view.setUint32(HEADER_AT.intervalMs, header.intervalMs, true);
  view.setBigUint64(HEADER_AT.firstPfn, header.firstPfn, true);
  view.setBigUint64(HEADER_AT.pageCount, BigInt(header.pageCount), true);
  view.setBigUint64(HEADER_AT.updateNs, header.updateNs, true);
  return bytes;
}

/**
 * Checks a parsed header against the guest it came from, before the table is allocated or read:
 * the table must lie inside guest RAM below the linear split (`ramEnd`, from gpa 0), fit the hole
 * when its size is known, and describe no more page frames than a guest of `ramBytes` can have
 * (its RAM plus the PCI hole). Every figure is a BigInt, so no sum can overflow or round.
 */
export function checkHintBounds(
  header: HintHeader,
  gpa: bigint,
  ram: { ramBytes: number; ramEnd: bigint; holeBytes?: number },
  where: string,
  details: ErrorDetails = {},
): void {
  const pageCount = BigInt(header.pageCount);
  const tableEnd = gpa + BigInt(header.headerSize) + pageCount;
  if (tableEnd > ram.ramEnd) {
    throw new HintTableError(
      'OUTSIDE_RAM',
      `hint table at ${where} claims ${header.pageCount} pages, which runs past the guest's ${ram.ramBytes} bytes of RAM: the hole holds something else`,
      details,
    );
  }
  if (ram.holeBytes !== undefined && tableEnd - gpa > BigInt(ram.holeBytes)) {
    throw new HintTableError('BAD_HEADER', `hint table at ${where} needs ${tableEnd - gpa} bytes but the hole is ${ram.holeBytes}: check the page_hints= size`, details);
  }
  const maxFrames = (BigInt(ram.ramBytes) + BigInt(PCI_HOLE_MAX_BYTES) + BigInt(PAGE_BYTES - 1)) / BigInt(PAGE_BYTES);
  if (header.firstPfn + pageCount > maxFrames) {
    throw new HintTableError(
      'BAD_HEADER',
      `hint table at ${where} describes frames ${header.firstPfn} to ${header.firstPfn + pageCount - 1n}, past the ${maxFrames} frames a guest of ${ram.ramBytes} bytes can have: the hole holds something else`,
      details,
    );
  }
}

/**
 * Reads the hint table of the guest in QEMU process `pid`, retrying while the guest is rewriting it
 * (odd sequence number, or a different one after the table was read). Needs root or ptrace access.
 */
export async function readHintTable(pid: number, loc: HintLocation, options: ReadHintOptions = {}): Promise<HintTable> {
  const gpa = BigInt(loc.gpa);
  const maxAttempts = options.maxAttempts ?? 100;
  const retryDelayMs = options.retryDelayMs ?? 2;
  const ram = await findGuestRam(pid, loc.ramBytes);
  const where = `guest-physical 0x${gpa.toString(16)} of QEMU process ${pid}`;
  // Below the PCI hole split only, unless the whole guest RAM is below 2 GiB anyway.
  const ramEnd = BigInt(ram.bytes > HINT_LINEAR_GPA_LIMIT ? HINT_LINEAR_GPA_LIMIT : ram.bytes);
  if (gpa < 0n || gpa + BigInt(HINT_HEADER_BYTES) > ramEnd) {
    throw new HintTableError(
      'OUTSIDE_RAM',
      `hint hole at ${where} is outside the guest's ${ram.bytes} bytes of RAM (or above the 2 GiB split of a bigger guest): use the address given to page_hints=, below min(RAM size, 2 GiB)`,
      { pid },
    );
  }

  const path = `/proc/${pid}/mem`;
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw fromSystemError(err, { op: 'open', path, pid });
  }
  try {
    const base = ram.start + gpa;
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      const header = parseHintHeader(await readAt(fh, base, HINT_HEADER_BYTES, path, pid), where);
      // Before the table is allocated: its size is the guest's word.
      checkHintBounds(header, gpa, { ramBytes: ram.bytes, ramEnd, ...(loc.holeBytes === undefined ? {} : { holeBytes: loc.holeBytes }) }, where, { pid });
      if (header.seq % 2 === 0) {
        const flags = await readAt(fh, base + BigInt(header.headerSize), header.pageCount, path, pid);
        const after = new DataView((await readAt(fh, base + 8n, 4, path, pid)).buffer).getUint32(0, true);
        if (after === header.seq) return { header, flags, attempts: attempt };
      }
      await sleep(retryDelayMs);
    }
    throw new HintTableError(
      'TORN',
      `hint table at ${where} was being rewritten on each of ${maxAttempts} reads: is the guest's rewrite interval shorter than a read? try again or raise maxAttempts`,
      { pid },
    );
  } finally {
    await fh.close();
  }
}

/** How many page frames carry each hint bit, and how many have no bit (no RAM). */
export function countHints(flags: Uint8Array): Record<HintKind | 'none', number> {
  const counts: Record<HintKind | 'none', number> = { free: 0, anon: 0, pageCache: 0, slab: 0, kernel: 0, none: 0 };
  const kinds = Object.entries(HintFlag) as [HintKind, number][];
  for (const byte of flags) {
    if (byte === 0) counts.none++;
    for (const [kind, bit] of kinds) if (byte & bit) counts[kind]++;
  }
  return counts;
}

/** A run of consecutive guest page frames: first frame and count. */
export type PfnRun = readonly [pfn: number, count: number];

export interface HintScanPlan {
  /** Frames the guest reports as page cache: scan them first, they are the most often shared. */
  first: PfnRun[];
  /** The other frames with RAM that are not free, in address order. */
  then: PfnRun[];
  /** Frames left out because the guest reports them free: their content means nothing. */
  skippedFree: number;
}

/**
 * The order in which a host engine should visit a guest's pages given its hints: page cache first
 * (as XLH scanned pages with recent I/O first), then the rest, without free pages. The host address
 * of frame f is (guest RAM start + f * 4096) for frames below HINT_LINEAR_GPA_LIMIT.
 */
export function planScan(table: HintTable): HintScanPlan {
  const first: [number, number][] = [];
  const then: [number, number][] = [];
  let skippedFree = 0;
  const base = Number(table.header.firstPfn);
  const push = (runs: [number, number][], pfn: number): void => {
    const last = runs[runs.length - 1];
    if (last !== undefined && last[0] + last[1] === pfn) last[1]++;
    else runs.push([pfn, 1]);
  };
  table.flags.forEach((byte, i) => {
    if (byte === 0) return; // no RAM
    if (byte & HintFlag.free) skippedFree++;
    else push(byte & HintFlag.pageCache ? first : then, base + i);
  });
  return { first, then, skippedFree };
}

async function readAt(fh: FileHandle, position: bigint, length: number, path: string, pid: number): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  let done = 0;
  try {
    while (done < length) {
      // Host user-space addresses are below 2^47, so a double holds them exactly.
      const { bytesRead } = await fh.read(buf, done, length - done, Number(position) + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
  } catch (err) {
    throw fromSystemError(err, { op: 'read', path, pid });
  }
  if (done !== length) {
    throw new SamepageError('IO', `cannot read ${length} bytes at 0x${position.toString(16)} of ${path}: got ${done}`, { path, pid });
  }
  return buf;
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}
