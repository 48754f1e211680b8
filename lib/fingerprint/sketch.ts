// A VM's page-content sketch: what KSM could merge in it, in at most k entries.
//
// Design (issue 15). Every resident page of guest RAM is hashed with a keyed hash (HMAC-SHA256 with
// the fleet key, truncated to 64 bits; key.ts says why keyed). Zero-filled pages are counted apart,
// exactly: KSM treats them specially (use_zero_pages maps them to the zero page) and they are the
// most common content by far, which would otherwise crowd one sample slot with a huge count.
// Of the other contents the sketch keeps a bottom-k sample (KMV: the k smallest distinct hashes),
// each with its number of copies inside the VM. Because the hash is a pseudo-random function of
// the content, the k smallest hashes are a uniform random sample of the VM's distinct contents, and
// for any set of VMs the k smallest hashes of their union are a uniform sample of the union's
// contents, whose copies in every VM are known: a hash below the union's k-th smallest is below
// each member's k-th smallest too, so every member's sketch holds it if that VM holds the content.
// That is what makes any group of VMs estimable from sketches taken apart (estimate.ts).
//
// Why bottom-k rather than HyperLogLog or Bloom filters: KSM's saving needs copies per content
// (a content held c times saves c-1 pages, or c-ceil(c/max_page_sharing)), which HLL cannot carry,
// and a Bloom filter (Memory Buddies) gives only the overlap of two VMs, not of a group.
// Size: 12 bytes an entry (8 hash + 4 count). k = pages/64, at least 4096 and at most 65536
// (768 KiB), i.e. 1 MiB per 16 GiB (12 B per 64 pages = 48 KiB per GiB); a VM with fewer distinct
// contents than k is sketched exactly. Error: the distinct count of a union has relative standard
// error about 1/sqrt(k-2) (0.4% at k = 65536, 1.6% at 4096); the saving is estimated by a ratio over
// the same sample, whose standard error estimate.ts computes from the sample itself.
import { createHmac } from 'node:crypto';
import { InvalidArgumentError } from '../errors.js';
import type { FingerprintKey } from './key.js';

export const PAGE_BYTES = 4096;
/** Bounds on k, the entries of a sketch (see the top of this file). */
export const MIN_ENTRIES = 256;
export const MAX_ENTRIES = 1 << 20;
export const DEFAULT_MIN_ENTRIES = 4096;
export const DEFAULT_MAX_ENTRIES = 65536;
/** One sketch entry per this many pages by default: 12 B / 64 pages = 1 MiB per 16 GiB. */
export const PAGES_PER_ENTRY = 64;
/** Bytes an entry takes in a sketch file: a 64-bit hash and a 32-bit count. */
export const ENTRY_BYTES = 12;

/** k for a VM of `pages` pages, when the caller does not choose it. */
export function defaultEntries(pages: number): number {
  return Math.min(DEFAULT_MAX_ENTRIES, Math.max(DEFAULT_MIN_ENTRIES, Math.ceil(pages / PAGES_PER_ENTRY)));
}

export interface SketchSource {
  /** The VM's name (raw, bounded: escape to print), or the caller's label for a buffer. */
  name: string;
  pid?: number;
  uuid?: string;
  /** Guest RAM size (the -m size) in bytes, for capacity in placement. */
  ramBytes: number;
  /** os.hostname() of the host the VM ran on when sketched. */
  host: string;
}

export interface Sketch extends SketchSource {
  /** Id of the key that hashed it (key.ts): sketches of different keys are never compared. */
  keyId: string;
  /** k: the most entries kept. */
  k: number;
  /** Resident pages hashed (zero-filled ones included). */
  pages: number;
  /** Of those, zero-filled (KSM merges them, or maps them to the zero page with use_zero_pages). */
  zeroPages: number;
  /**
   * Of those, zero-filled subpages of transparent huge pages: when KSM splits the huge page to
   * merge its subpages, the kernel maps these to the zero page itself, outside KSM's counters.
   */
  thpZeroPages: number;
  /** The k smallest distinct hashes of the non-zero pages, ascending. */
  hashes: BigUint64Array;
  /** copies[i]: pages of this VM holding the content of hashes[i]. */
  copies: Uint32Array;
  /** True when the VM had no more distinct non-zero contents than k: the sketch holds them all. */
  exact: boolean;
  /** When it was taken (ms since the epoch) and how long it took. */
  takenAt: number;
  elapsedMs: number;
}

const ZERO_PAGE = Buffer.alloc(PAGE_BYTES);
const TWO_POW_64 = 2 ** 64;

/**
 * Builds a sketch page by page: hashes below the current k-th smallest go to a pending buffer;
 * a full buffer is sorted and merged into the kept entries (equal hashes add their copies). The
 * threshold only falls, so every copy of a content that ends up kept was counted.
 */
export class SketchBuilder {
  private readonly key: Buffer;
  readonly k: number;
  private kept = new BigUint64Array(0);
  private keptCopies = new Uint32Array(0);
  private pending: BigUint64Array;
  private pendingLength = 0;
  private threshold = 0xffff_ffff_ffff_ffffn;
  /** Distinct contents ever dropped for being above the threshold: the sketch is then a sample. */
  private truncated = false;
  pages = 0;
  zeroPages = 0;
  thpZeroPages = 0;

  constructor(key: FingerprintKey, k: number) {
    if (!Number.isInteger(k) || k < MIN_ENTRIES || k > MAX_ENTRIES) {
      throw new InvalidArgumentError(`a sketch's entries must be a whole number from ${MIN_ENTRIES} to ${MAX_ENTRIES}, not ${String(k)}`);
    }
    this.key = key.key;
    this.k = k;
    this.pending = new BigUint64Array(Math.max(4096, k));
  }

  /** One page (exactly PAGE_BYTES); `inThp`: it is a subpage of a transparent huge page. */
  addPage(page: Uint8Array, inThp = false): void {
    this.pages++;
    if (ZERO_PAGE.equals(page)) {
      if (inThp) this.thpZeroPages++;
      else this.zeroPages++;
      return;
    }
    const digest = createHmac('sha256', this.key).update(page).digest();
    const h = digest.readBigUInt64BE(0);
    if (h > this.threshold) {
      this.truncated = true;
      return;
    }
    this.pending[this.pendingLength++] = h;
    if (this.pendingLength === this.pending.length) this.flush();
  }

  /** Every whole page of `buf` (a trailing partial page is an error: guest RAM is page-sized). */
  addPages(buf: Uint8Array, inThp = false): void {
    if (buf.length % PAGE_BYTES !== 0) throw new InvalidArgumentError(`a buffer to sketch must be a whole number of ${PAGE_BYTES}-byte pages, not ${buf.length} bytes`);
    for (let off = 0; off < buf.length; off += PAGE_BYTES) this.addPage(buf.subarray(off, off + PAGE_BYTES), inThp);
  }

  private flush(): void {
    const pend = this.pending.subarray(0, this.pendingLength).sort();
    const outHashes = new BigUint64Array(Math.min(this.k, this.kept.length + pend.length));
    const outCopies = new Uint32Array(outHashes.length);
    let n = 0;
    let i = 0;
    let j = 0;
    while (n < outHashes.length && (i < this.kept.length || j < pend.length)) {
      const a = i < this.kept.length ? (this.kept[i] as bigint) : undefined;
      const b = j < pend.length ? (pend[j] as bigint) : undefined;
      let h: bigint;
      let c = 0;
      if (b === undefined || (a !== undefined && a <= b)) {
        h = a as bigint;
        c = this.keptCopies[i] as number;
        i++;
      } else {
        h = b;
      }
      while (j < pend.length && pend[j] === h) {
        c++;
        j++;
      }
      outHashes[n] = h;
      outCopies[n] = c;
      n++;
    }
    if (i < this.kept.length || j < pend.length) this.truncated = true;
    this.kept = outHashes.subarray(0, n);
    this.keptCopies = outCopies.subarray(0, n);
    this.pendingLength = 0;
    if (n === this.k) this.threshold = this.kept[n - 1] as bigint;
  }

  finish(source: SketchSource, keyId: string, takenAt: number, elapsedMs: number): Sketch {
    this.flush();
    return {
      ...source,
      keyId,
      k: this.k,
      pages: this.pages,
      zeroPages: this.zeroPages,
      thpZeroPages: this.thpZeroPages,
      hashes: this.kept.slice(),
      copies: this.keptCopies.slice(),
      exact: !this.truncated,
      takenAt,
      elapsedMs,
    };
  }
}

/**
 * A sketch of a buffer's pages, as if they were a VM's resident guest RAM (tests, and callers who
 * read memory themselves). `entries` defaults to defaultEntries(pages).
 */
export function sketchBuffer(buf: Uint8Array, key: FingerprintKey, source: Partial<SketchSource> & { name: string }, entries?: number): Sketch {
  const started = performance.now();
  const b = new SketchBuilder(key, entries ?? defaultEntries(buf.length / PAGE_BYTES));
  b.addPages(buf);
  return b.finish({ ramBytes: buf.length, host: '', ...source }, key.id, Date.now(), performance.now() - started);
}

/** A hash as a fraction of the 64-bit range, in [0, 1). */
export function unitHash(h: bigint): number {
  return Number(h) / TWO_POW_64;
}

/** Distinct non-zero contents of one sketch: exact when it holds them all, else (k-1)/h_k. */
export function distinctEstimate(s: Sketch): number {
  if (s.exact) return s.hashes.length;
  const last = s.hashes[s.hashes.length - 1];
  if (last === undefined) return 0;
  return (s.hashes.length - 1) / unitHash(last);
}

/** Bytes the sketch takes in a sketch file (its entries; the header is a few hundred bytes more). */
export function sketchBytes(s: Sketch): number {
  return s.hashes.length * ENTRY_BYTES;
}
