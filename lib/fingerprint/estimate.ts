// What KSM would save on a group of VMs put together on one host, from their sketches taken apart.
//
// The prediction is of the kernel's counters once ksmd has converged over the group (every
// resident page scanned at least twice, nothing volatile, the VMs the only mergeable memory):
//   pages_sharing  = Σ over non-zero contents of (c - ceil(c / max_page_sharing)), c = copies in
//                    the group; plus the zero-filled pages the same way when use_zero_pages=0;
//   ksm_zero_pages = the zero-filled pages, when use_zero_pages=1;
//   general_profit = (pages_sharing + ksm_zero_pages) × 4096 − rmap_items × 64, rmap_items taken
//                    as the resident pages (KSM keeps one 64-byte rmap_item per scanned page),
//                    less those mapped to the zero page: the zero-filled THP subpages (the kernel
//                    maps them there when KSM splits the huge page; they count nowhere) and the
//                    ksm_zero_pages.
// Zero pages are counted exactly. The non-zero part is a ratio estimate over the union's bottom-k
// sample (sketch.ts): saving = (non-zero pages) × Σ_sample s(c) / Σ_sample c. It uses the exact page
// total and the sample only for the share of pages that merge away, which is far more precise than
// pages − (k-1)/h_k when the saving is small next to the pages (the distinct count's 1/sqrt(k) error
// would apply to all pages, not to the saving). Its standard error is computed from the sample
// (the ratio estimator's variance with the finite-population correction), and reported.
import { InvalidArgumentError } from '../errors.js';
import { RMAP_ITEM_BYTES } from '../attribution.js';
import { escapeText } from '../escape.js';
import { PAGE_BYTES, unitHash } from './sketch.js';
import type { Sketch } from './sketch.js';

export interface KsmModel {
  /** The host's use_zero_pages (default false, the kernel's default). */
  useZeroPages: boolean;
  /** The host's max_page_sharing (default 256). */
  maxPageSharing: number;
}

export const DEFAULT_KSM_MODEL: KsmModel = { useZeroPages: false, maxPageSharing: 256 };

export interface GroupEstimate {
  /** Indices into the sketches given. */
  members: number[];
  /** Resident pages of the group, zero-filled ones included. */
  pages: number;
  zeroPages: number;
  /** Zero-filled THP subpages: the kernel maps them to the zero page itself, outside KSM's counters. */
  thpZeroPages: number;
  /** Estimated distinct non-zero contents of the group (exact when `exact`). */
  distinct: number;
  /** Of those, held by at least two members: |A ∩ B| for a pair. */
  sharedContents: number;
  /** Predicted /sys/kernel/mm/ksm/pages_sharing over the group. */
  pagesSharing: number;
  /** Predicted ksm_zero_pages (0 unless use_zero_pages). */
  ksmZeroPages: number;
  /** pagesSharing + ksmZeroPages: pages KSM frees. */
  savedPages: number;
  savedBytes: number;
  /** Predicted general_profit: savedBytes less the rmap_items' 64 bytes a resident page. */
  generalProfit: number;
  /** One standard error of savedPages (0 when exact). */
  stdErrPages: number;
  /** Every member's sketch held all its contents: the figures are exact, not estimates. */
  exact: boolean;
  /** Sample entries the estimate used. */
  sample: number;
}

/** Pages KSM frees for a content held `copies` times (a stable node has at most max_page_sharing sharers). */
function savedFor(copies: number, maxPageSharing: number): number {
  return copies === 0 ? 0 : copies - Math.ceil(copies / maxPageSharing);
}

/** The sketches' key must be one; a sketch of another key hashes the same page to another value. */
export function checkSameKey(sketches: readonly Sketch[]): void {
  const first = sketches[0];
  for (const s of sketches) {
    if (first !== undefined && s.keyId !== first.keyId) {
      throw new InvalidArgumentError(
        `sketches made with different fingerprint keys cannot be compared: "${escapeText(first.name)}" has key ${first.keyId}, "${escapeText(s.name)}" has key ${s.keyId}; sketch every host with the same key file (ksm-agent fingerprint --key-file)`,
      );
    }
  }
}

/** The KSM figures of the sketches put together; `limit` caps the sample (the advisor searches with fewer entries). */
export function estimateGroup(sketches: readonly Sketch[], members: readonly number[], model: KsmModel = DEFAULT_KSM_MODEL, limit?: number): GroupEstimate {
  if (new Set(members).size !== members.length) throw new InvalidArgumentError(`a group names a sketch twice (${members.join(', ')}): a VM counts once`);
  const group = members.map((i) => {
    const s = sketches[i];
    if (s === undefined) throw new InvalidArgumentError(`no sketch ${i}: there are ${sketches.length}`);
    return s;
  });
  checkSameKey(group);
  // k of the union: the smallest k among members that hold a sample (an exact sketch has every
  // content, so it bounds nothing).
  let k = Infinity;
  for (const s of group) if (!s.exact) k = Math.min(k, s.k);
  if (limit !== undefined) k = Math.min(k, limit);
  const exact = k === Infinity;
  const pages = group.reduce((a, s) => a + s.pages, 0);
  const zeroPages = group.reduce((a, s) => a + s.zeroPages, 0);
  const thpZeroPages = group.reduce((a, s) => a + s.thpZeroPages, 0);
  const nonZero = pages - zeroPages - thpZeroPages;

  // Merge the members' ascending hash lists, summing copies of equal hashes, up to k entries.
  const pos = group.map(() => 0);
  const sampleCopies: number[] = [];
  let lastHash = 0n;
  let shared = 0;
  while (sampleCopies.length < k) {
    let min: bigint | undefined;
    for (let g = 0; g < group.length; g++) {
      const h = (group[g] as Sketch).hashes[pos[g] as number];
      if (h !== undefined && (min === undefined || h < min)) min = h;
    }
    if (min === undefined) break;
    let c = 0;
    let holders = 0;
    for (let g = 0; g < group.length; g++) {
      const s = group[g] as Sketch;
      const p = pos[g] as number;
      if (s.hashes[p] === min) {
        c += s.copies[p] as number;
        holders++;
        pos[g] = p + 1;
      }
    }
    if (holders > 1) shared++;
    sampleCopies.push(c);
    lastHash = min;
  }

  const n = sampleCopies.length;
  let sumC = 0;
  let sumS = 0;
  for (const c of sampleCopies) {
    sumC += c;
    sumS += savedFor(c, model.maxPageSharing);
  }
  // The sample is all of the union when every member was exact or the union has fewer than k contents.
  const complete = exact || n < k;
  const distinct = complete ? n : (n - 1) / unitHash(lastHash);
  const ratio = sumC === 0 ? 0 : sumS / sumC;
  const nonZeroSaved = complete ? sumS : nonZero * ratio;
  let stdErrPages = 0;
  if (!complete && n > 1 && sumC > 0) {
    const meanC = sumC / n;
    let ss = 0;
    for (const c of sampleCopies) {
      const e = savedFor(c, model.maxPageSharing) - ratio * c;
      ss += e * e;
    }
    const fpc = Math.max(0, 1 - n / distinct);
    stdErrPages = nonZero * Math.sqrt((fpc * ss) / (n - 1) / n) / meanC;
  }
  const zeroSharing = model.useZeroPages ? 0 : savedFor(zeroPages, model.maxPageSharing);
  const ksmZeroPages = model.useZeroPages ? zeroPages : 0;
  const pagesSharing = Math.round(nonZeroSaved) + zeroSharing;
  const savedPages = pagesSharing + ksmZeroPages;
  return {
    members: [...members],
    pages,
    zeroPages,
    thpZeroPages,
    distinct: Math.round(distinct),
    sharedContents: n === 0 ? 0 : Math.round((distinct * shared) / n),
    pagesSharing,
    ksmZeroPages,
    savedPages,
    savedBytes: savedPages * PAGE_BYTES,
    // A page mapped to the zero page (a zero THP subpage by the kernel, or a zero page by KSM with
    // use_zero_pages) loses its rmap_item: measured exact against the kernel on this host.
    generalProfit: savedPages * PAGE_BYTES - (pages - thpZeroPages - ksmZeroPages) * RMAP_ITEM_BYTES,
    stdErrPages: Math.round(stdErrPages),
    exact: complete,
    sample: n,
  };
}

export interface Colocation {
  groups: GroupEstimate[];
  /** Σ savedPages of the groups. */
  savedPages: number;
  savedBytes: number;
  /** Σ of the groups' standard errors in quadrature. */
  stdErrPages: number;
}

/**
 * The KSM saving of each group of sketches (indices into `sketches`) placed together on its own
 * host, and in total. A sketch may be in at most one group.
 */
export function estimateColocation(sketches: readonly Sketch[], groups: readonly (readonly number[])[], model: KsmModel = DEFAULT_KSM_MODEL): Colocation {
  checkSameKey(sketches);
  const seen = new Set<number>();
  for (const g of groups) {
    for (const i of g) {
      if (!Number.isInteger(i) || i < 0 || i >= sketches.length) throw new InvalidArgumentError(`group member ${String(i)} is not a sketch index (0..${sketches.length - 1})`);
      if (seen.has(i)) throw new InvalidArgumentError(`sketch ${i} ("${escapeText((sketches[i] as Sketch).name)}") is in two groups: a VM runs on one host`);
      seen.add(i);
    }
  }
  const estimates = groups.map((g) => estimateGroup(sketches, g, model));
  const savedPages = estimates.reduce((a, e) => a + e.savedPages, 0);
  return {
    groups: estimates,
    savedPages,
    savedBytes: savedPages * PAGE_BYTES,
    stdErrPages: Math.round(Math.sqrt(estimates.reduce((a, e) => a + e.stdErrPages ** 2, 0))),
  };
}

/** Estimated distinct non-zero contents two VMs both hold, |A ∩ B|: the union's sample share held by both. */
export function estimateOverlap(a: Sketch, b: Sketch): number {
  return estimateGroup([a, b], [0, 1]).sharedContents;
}
