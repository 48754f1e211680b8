// A trace-driven model of the Zipf table's two caches (issue 14's "truly exclusive" policy, which
// the runner cannot apply to real guests): each guest's page cache and the host's page cache of
// both images, LRU each, fed fio's own sequence of reads (zipf-trace.ts). The guests read the
// same sequence, each at its measured IOPS, from the end of fio's file layout on; a guest miss is a
// read of the image, which the host cache serves or not. Host policies, every intervalS seconds:
//   none             nothing: a block the host read stays until the host's LRU evicts it;
//   drop-all         the host cache emptied;
//   scrub            the host drops the blocks the guest holds (the agent's scrub, ideal: every
//                    page, where the real one leaves large folios it cannot drop whole);
//   scrub-hot        the same, but only the blocks the guest read again (hit) since the last tick:
//                    the host keeps its copy of a block the guest holds but is not using, the one
//                    the guest evicts next. Not runnable for real: the host cannot see the
//                    guest's reads of its own cache (page-flag hints carrying the guest's LRU
//                    state would tell it);
//   truly-exclusive  a block is in one cache only: a host hit moves the block into the guest,
//                    a block the guest evicts goes to the host (no timer).
// Pure and deterministic: no I/O.

export const ZIPF_SIM_POLICIES = ['none', 'drop-all', 'scrub', 'scrub-hot', 'truly-exclusive'] as const;
export type ZipfSimPolicy = (typeof ZIPF_SIM_POLICIES)[number];

/** An LRU set of ids in [0, size), in typed arrays: O(1) touch, insert, remove; no allocation after construction. */
export class Lru implements GuestCache {
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private readonly present: Uint8Array;
  /** The sentinel: next[sentinel] is the most recent, prev[sentinel] the least. */
  private readonly sentinel: number;
  private count = 0;

  constructor(
    size: number,
    private room: number,
  ) {
    if (!Number.isInteger(size) || size < 0) throw new Error(`Lru: size must be a whole number, got ${size}`);
    if (!Number.isInteger(room) || room < 0) throw new Error(`Lru: capacity must be a whole number, got ${room}`);
    this.prev = new Int32Array(size + 1);
    this.next = new Int32Array(size + 1);
    this.present = new Uint8Array(size);
    this.sentinel = size;
    this.prev[size] = this.next[size] = size;
  }

  get size(): number {
    return this.count;
  }

  get capacity(): number {
    return this.room;
  }

  /** A new capacity: the least recent ids go until the rest fit. */
  resize(capacity: number): void {
    if (!Number.isInteger(capacity) || capacity < 0) throw new Error(`Lru: capacity must be a whole number, got ${capacity}`);
    this.room = capacity;
    while (this.count > capacity) this.remove(this.prev[this.sentinel] as number);
  }

  has(id: number): boolean {
    return this.present[id] === 1;
  }

  private unlink(id: number): void {
    const p = this.prev[id] as number;
    const n = this.next[id] as number;
    this.next[p] = n;
    this.prev[n] = p;
  }

  private linkFront(id: number): void {
    const s = this.sentinel;
    const first = this.next[s] as number;
    this.prev[id] = s;
    this.next[id] = first;
    this.prev[first] = id;
    this.next[s] = id;
  }

  /** Makes id the most recent; returns true when it was there (a hit). */
  touch(id: number): boolean {
    if (this.present[id] !== 1) return false;
    this.unlink(id);
    this.linkFront(id);
    return true;
  }

  /** Adds id as the most recent (or makes it so); returns the id evicted to make room, or -1. */
  insert(id: number): number {
    if (this.touch(id)) return -1;
    if (this.capacity === 0) return id;
    let evicted = -1;
    if (this.count >= this.capacity) {
      evicted = this.prev[this.sentinel] as number;
      this.remove(evicted);
    }
    this.present[id] = 1;
    this.count++;
    this.linkFront(id);
    return evicted;
  }

  remove(id: number): boolean {
    if (this.present[id] !== 1) return false;
    this.unlink(id);
    this.present[id] = 0;
    this.count--;
    return true;
  }

  clear(): void {
    for (let id = this.next[this.sentinel] as number; id !== this.sentinel; id = this.next[id] as number) this.present[id] = 0;
    this.prev[this.sentinel] = this.next[this.sentinel] = this.sentinel;
    this.count = 0;
  }

  /** The least recent id, or -1 when empty. */
  oldest(): number {
    return this.count === 0 ? -1 : (this.prev[this.sentinel] as number);
  }

  /** Ids from the least recent to the most recent. */
  *oldestFirst(): Generator<number> {
    for (let id = this.prev[this.sentinel] as number; id !== this.sentinel; id = this.prev[id] as number) yield id;
  }
}

/** A guest's page cache: what the simulation asks of it. */
export interface GuestCache {
  /** A read: true on a hit (the cache's order updated). */
  touch(block: number): boolean;
  /** A miss read in; the block evicted to make room, or -1. */
  insert(block: number): number;
  has(block: number): boolean;
}

/**
 * Linux's page cache in outline (mm/vmscan.c, mm/swap.c): a block read in goes to the inactive
 * list; read again while there, it is promoted to the active list; the active list is kept to
 * half the cache by moving its least recent block to the inactive list's head; eviction takes the
 * inactive list's least recent block. (Not modelled: the referenced bit's second chance, refault
 * activation, multi-gen LRU.) It is the model's second kind of guest cache, to see whether its
 * figures hang on LRU: on the seed runs' fio trace both fit to about the same size (235 MiB).
 */
export class TwoListCache implements GuestCache {
  private readonly inactive: Lru;
  private readonly active: Lru;

  constructor(
    size: number,
    readonly capacity: number,
  ) {
    this.inactive = new Lru(size, capacity);
    this.active = new Lru(size, Math.max(0, Math.floor(capacity / 2)));
  }

  has(block: number): boolean {
    return this.inactive.has(block) || this.active.has(block);
  }

  touch(block: number): boolean {
    if (this.active.touch(block)) return true;
    if (!this.inactive.remove(block)) return false;
    const demoted = this.active.insert(block);
    // The active list's oldest goes back to the inactive list's head; nothing leaves the cache.
    if (demoted >= 0) this.inactive.insert(demoted);
    return true;
  }

  insert(block: number): number {
    if (this.touch(block)) return -1;
    if (this.capacity === 0) return block;
    if (this.inactive.size + this.active.size < this.capacity) return this.inactive.insert(block);
    const victim = this.inactive.size > 0 ? this.inactive.oldest() : this.active.oldest();
    if (this.inactive.has(victim)) this.inactive.remove(victim);
    else this.active.remove(victim);
    this.inactive.insert(block);
    return victim;
  }
}

export const GUEST_CACHES = ['lru', 'two-list'] as const;
export type GuestCacheKind = (typeof GUEST_CACHES)[number];

export function guestCache(kind: GuestCacheKind, size: number, capacity: number): GuestCache {
  return kind === 'lru' ? new Lru(size, capacity) : new TwoListCache(size, capacity);
}

export interface ZipfSimInput {
  /** fio's reads, as block numbers (4 KiB) of its file, in order; every guest reads a prefix of it. */
  trace: Uint32Array;
  /** Blocks in fio's file. */
  fileBlocks: number;
  /** Reads each guest made while fio ran (its IOPS x the run time); at most trace.length. */
  readsPerGuest: readonly number[];
  /** How long the reads took, s: guest g's read i happens at i * seconds / readsPerGuest[g]. */
  seconds: number;
  /** Each guest's page cache for the file, pages. */
  guestPages: number;
  /** How a guest's cache chooses what to evict (default lru). */
  guestCache?: GuestCacheKind;
  /** The host cache's room for both images, pages. */
  hostPages: number;
  /**
   * The room over time, when it changes (the guests' RAM grows into the memory cgroup and leaves
   * the host cache less): from each entry's t (s, on the reads' clock) the room is its pages, until
   * the next; before the first, hostPages. Sorted by t.
   */
  hostRoom?: readonly { t: number; pages: number }[];
  /** Pages of the images the host cache held when the reads began (after the layout). */
  hostStartPages: number;
  policy: ZipfSimPolicy;
  /** The drop-all and scrub timer, s. */
  intervalS: number;
}

export interface ZipfSimResult {
  reads: number;
  guestMisses: number;
  hostHits: number;
  /** hostHits / guestMisses: the host cache's hit ratio over the reads that reached it. */
  hitRatio: number;
  /** The host cache's mean size over the timer's ticks and the end, pages. */
  avgHostPages: number;
}

function check(input: ZipfSimInput): void {
  const { trace, fileBlocks, readsPerGuest, seconds, guestPages, hostPages, hostStartPages, intervalS } = input;
  const whole = (n: number): boolean => Number.isInteger(n) && n >= 0;
  if (!whole(fileBlocks) || fileBlocks === 0) throw new Error(`zipf-sim: fileBlocks must be a positive whole number, got ${fileBlocks}`);
  if (readsPerGuest.length === 0 || !readsPerGuest.every((r) => whole(r) && r <= trace.length)) {
    throw new Error(`zipf-sim: readsPerGuest must be whole numbers up to the trace's ${trace.length} reads, got ${readsPerGuest.join(', ')}`);
  }
  if (!(seconds > 0) || !(intervalS > 0)) throw new Error(`zipf-sim: seconds and intervalS must be positive, got ${seconds} and ${intervalS}`);
  if (![guestPages, hostPages, hostStartPages, ...(input.hostRoom ?? []).map((r) => r.pages)].every(whole)) throw new Error('zipf-sim: page counts must be whole numbers');
  const room = input.hostRoom ?? [];
  if (room.some((r, i) => !Number.isFinite(r.t) || (i > 0 && r.t < (room[i - 1] as { t: number }).t))) throw new Error('zipf-sim: hostRoom must be sorted by a finite t');
  for (const b of trace) if (b >= fileBlocks) throw new Error(`zipf-sim: block ${b} is past the file's ${fileBlocks} blocks`);
}

/** Fills the caches as fio's layout leaves them: each guest holds the end of its file; the host the blocks before (exclusive) or the end too. */
function layout(input: ZipfSimInput, guests: GuestCache[], host: Lru): void {
  const { fileBlocks, guestPages, hostStartPages, policy } = input;
  const n = guests.length;
  for (const g of guests) for (let b = Math.max(0, fileBlocks - guestPages); b < fileBlocks; b++) g.insert(b);
  const perGuest = Math.floor(hostStartPages / n);
  // Exclusive: the host took what each guest evicted while it wrote the file, the newest last.
  const end = policy === 'truly-exclusive' ? Math.max(0, fileBlocks - guestPages) : fileBlocks;
  for (let b = Math.max(0, end - perGuest); b < end; b++) for (let g = 0; g < n; g++) host.insert(g * fileBlocks + b);
}

export function simulateZipf(input: ZipfSimInput): ZipfSimResult {
  check(input);
  const { trace, fileBlocks, readsPerGuest, seconds, guestPages, hostPages, policy, intervalS } = input;
  const n = readsPerGuest.length;
  const guests = readsPerGuest.map(() => guestCache(input.guestCache ?? 'lru', fileBlocks, guestPages));
  const host = new Lru(fileBlocks * n, hostPages);
  layout(input, guests, host);
  const next = readsPerGuest.map(() => 0);
  const step = readsPerGuest.map((r) => (r === 0 ? Infinity : seconds / r));
  let nextTick = policy === 'drop-all' || policy === 'scrub' || policy === 'scrub-hot' ? intervalS : Infinity;
  // scrub-hot: which blocks each guest read from its cache since the last tick.
  const hot = policy === 'scrub-hot' ? readsPerGuest.map(() => new Uint8Array(fileBlocks)) : [];
  let guestMisses = 0;
  let hostHits = 0;
  let sizeSum = 0;
  let sizes = 0;
  const room = input.hostRoom ?? [];
  let roomAt = 0;
  for (;;) {
    // The guest whose next read comes first (ties: the lower guest).
    let g = -1;
    let t = Infinity;
    for (let i = 0; i < n; i++) {
      if ((next[i] as number) >= (readsPerGuest[i] as number)) continue;
      const at = (next[i] as number) * (step[i] as number);
      if (at < t) (t = at), (g = i);
    }
    for (; roomAt < room.length && (room[roomAt] as { t: number }).t <= t; roomAt++) host.resize((room[roomAt] as { pages: number }).pages);
    while (nextTick <= t && nextTick < seconds) {
      if (policy === 'drop-all') host.clear();
      else {
        for (const id of [...host.oldestFirst()]) {
          const g = Math.floor(id / fileBlocks);
          const b = id % fileBlocks;
          if (guests[g]?.has(b) && (policy === 'scrub' || hot[g]?.[b] === 1)) host.remove(id);
        }
        for (const h of hot) h.fill(0);
      }
      sizeSum += host.size;
      sizes++;
      nextTick += intervalS;
    }
    if (g < 0) break;
    const block = trace[next[g] as number] as number;
    next[g] = (next[g] as number) + 1;
    const guest = guests[g] as GuestCache;
    if (guest.touch(block)) {
      if (hot.length > 0) (hot[g] as Uint8Array)[block] = 1;
      continue;
    }
    guestMisses++;
    const id = g * fileBlocks + block;
    if (policy === 'truly-exclusive') {
      if (host.remove(id)) hostHits++;
      const evicted = guest.insert(block);
      if (evicted >= 0) host.insert(g * fileBlocks + evicted);
    } else {
      if (host.touch(id)) hostHits++;
      else host.insert(id);
      guest.insert(block);
    }
  }
  sizeSum += host.size;
  sizes++;
  const reads = readsPerGuest.reduce((a, b) => a + b, 0);
  return { reads, guestMisses, hostHits, hitRatio: guestMisses === 0 ? 0 : hostHits / guestMisses, avgHostPages: sizeSum / sizes };
}

/**
 * LRU stack distances of every read of the trace, after the layout's writes of blocks 0..fileBlocks-1
 * (Mattson: a read misses in an LRU cache of G pages exactly when its distance is >= G; -1: never
 * seen). One pass with a Fenwick tree over positions, each block marked at its latest access.
 */
export function stackDistances(trace: Uint32Array, fileBlocks: number, reads: number): Int32Array {
  const total = fileBlocks + reads;
  const tree = new Int32Array(total + 1);
  const add = (i: number, v: number): void => {
    for (let x = i + 1; x <= total; x += x & -x) tree[x] = (tree[x] as number) + v;
  };
  const prefix = (i: number): number => {
    let s = 0;
    for (let x = i; x > 0; x -= x & -x) s += tree[x] as number;
    return s;
  };
  const last = new Int32Array(fileBlocks).fill(-1);
  const out = new Int32Array(reads);
  for (let pos = 0; pos < total; pos++) {
    const block = pos < fileBlocks ? pos : (trace[pos - fileBlocks] as number);
    const p = last[block] as number;
    if (pos >= fileBlocks) out[pos - fileBlocks] = p < 0 ? -1 : prefix(pos) - prefix(p + 1);
    if (p >= 0) add(p, -1);
    add(pos, 1);
    last[block] = pos;
  }
  return out;
}

/** Guest misses of all guests for an LRU guest cache of `pages` (each guest reads a prefix of the distances). */
export function missesFor(distances: Int32Array, readsPerGuest: readonly number[], pages: number): number {
  let misses = 0;
  for (const reads of readsPerGuest) for (let i = 0; i < reads; i++) if ((distances[i] as number) < 0 || (distances[i] as number) >= pages) misses++;
  return misses;
}

/** The smallest guest cache (pages) whose misses do not exceed `misses`: LRU misses only fall as the cache grows. */
export function guestPagesFor(distances: Int32Array, readsPerGuest: readonly number[], fileBlocks: number, misses: number): number {
  return smallestPages(fileBlocks, (pages) => missesFor(distances, readsPerGuest, pages) <= misses);
}

/** The smallest page count in [0, most] that `enough` accepts (bisection: once accepted, every larger count is). */
function smallestPages(most: number, enough: (pages: number) => boolean): number {
  let lo = 0;
  let hi = most;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (enough(mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Guest misses of all guests (each on its own cache, after the layout) for a cache of `pages`. */
export function guestMisses(trace: Uint32Array, fileBlocks: number, readsPerGuest: readonly number[], kind: GuestCacheKind, pages: number): number {
  let misses = 0;
  for (const reads of readsPerGuest) {
    const cache = guestCache(kind, fileBlocks, pages);
    for (let b = Math.max(0, fileBlocks - pages); b < fileBlocks; b++) cache.insert(b);
    for (let i = 0; i < reads; i++) {
      const block = trace[i] as number;
      if (!cache.touch(block)) (misses++, cache.insert(block));
    }
  }
  return misses;
}

/**
 * The guest cache (pages) whose misses come nearest to `misses` from below: LRU by its stack
 * distances, exactly; the two-list cache by bisection over whole runs (its misses fall as it grows,
 * though not as strictly as LRU's).
 */
export function fitGuestPages(trace: Uint32Array, fileBlocks: number, readsPerGuest: readonly number[], kind: GuestCacheKind, misses: number): number {
  if (kind === 'lru') return guestPagesFor(stackDistances(trace, fileBlocks, Math.max(0, ...readsPerGuest)), readsPerGuest, fileBlocks, misses);
  return smallestPages(fileBlocks, (pages) => guestMisses(trace, fileBlocks, readsPerGuest, kind, pages) <= misses);
}
