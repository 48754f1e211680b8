/**
 * The fill mix a guest writes into its memory, in two forms: a typed object for code and the
 * text form that travels on the kernel command line and the control channel (parsed in C by
 * guest/fillspec.c; the grammar is documented there). Also the guest's summary of what it filled,
 * and the content generator, so host-side checks can recognise filled pages in QEMU's RAM.
 */
import { HarnessError } from './errors.js';

export const PAGE_SIZE = 4096;
const PAGES_PER_MIB = 256;

/** A size: whole MiB or pages. */
export type Amount = { MiB: number } | { pages: number };

export interface FillSpec {
  /** Zero-filled pages (written, so they are present in QEMU's RAM). */
  zero?: Amount;
  /** A seeded block of `blockPages` pages (default 256) repeated to `amount`: identical across
   * guests with the same seed, and each block page repeated amount/blockPages times per guest. */
  shared?: { amount: Amount; blockPages?: number; seed?: number };
  /** `count` runs of `length` consecutive, distinct pages, identical across guests with the same
   * seed (for lookahead); the guest backs them with huge pages so they are physically consecutive. */
  runs?: { count: number; length: number; seed?: number };
  /** `copies` copies of one seeded page; more than 256 exceeds max_page_sharing's default. */
  hot?: { copies: number; seed?: number };
  /** Pages unlike any other: from /dev/urandom, or seeded by the guest name (reproducible). */
  unique?: { amount: Amount; source?: 'urandom' | 'name' };
  /** Pages a guest thread rewrites every `intervalMs` (default 100). */
  volatile?: { amount: Amount; intervalMs?: number };
}

export const FILL_KINDS = ['zero', 'shared', 'runs', 'hot', 'unique', 'volatile'] as const;
export type FillKind = (typeof FILL_KINDS)[number];

/** Per kind, from the guest: `expected` pages asked for, `pages` found holding the intended
 * content after the fill, `present` pages present in the guest's pagemap, `distinct` contents. */
export interface KindSummary {
  expected: number;
  pages: number;
  present: number;
  distinct: number;
}

export interface FillSummary {
  tag: string;
  name: string;
  pageSize: number;
  fillMs: number;
  totalPages: number;
  kinds: {
    zero: KindSummary;
    shared: KindSummary & { blockPages: number; seed: number };
    runs: KindSummary & { count: number; length: number; seed: number; contiguousRuns: number };
    hot: KindSummary & { seed: number };
    unique: KindSummary & { source: 'urandom' | 'name' };
    volatile: KindSummary & { intervalMs: number };
  };
}

// Defaults, written out explicitly into the text form so the guest's own defaults never matter.
const DEFAULT_BLOCK = 256;
const DEFAULT_SEED = 1;
const DEFAULT_INTERVAL_MS = 100;
const MAX_PAGES = 2 ** 28;

function bad(what: string): never {
  throw new HarnessError('BAD_SPEC', `fill spec: ${what}`);
}

function wholeNumber(v: unknown, what: string, min: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > MAX_PAGES) {
    bad(`${what} must be a whole number from ${min} to ${MAX_PAGES}, got ${String(v)}`);
  }
  return v;
}

export function amountPages(a: Amount, what: string): number {
  if ('MiB' in a) return wholeNumber(a.MiB, `${what}.MiB`, 0) * PAGES_PER_MIB;
  if ('pages' in a) return wholeNumber(a.pages, `${what}.pages`, 0);
  return bad(`${what} must be { MiB: n } or { pages: n }`);
}

/** Requested pages and distinct contents per kind, as the guest should report them. */
export function expectedFill(spec: FillSpec): Record<FillKind, { pages: number; distinct: number }> {
  const zero = spec.zero ? amountPages(spec.zero, 'zero') : 0;
  const shared = spec.shared ? amountPages(spec.shared.amount, 'shared.amount') : 0;
  const block = spec.shared?.blockPages ?? DEFAULT_BLOCK;
  const runs = spec.runs ? wholeNumber(spec.runs.count, 'runs.count', 0) * wholeNumber(spec.runs.length, 'runs.length', 1) : 0;
  const hot = spec.hot ? wholeNumber(spec.hot.copies, 'hot.copies', 0) : 0;
  const unique = spec.unique ? amountPages(spec.unique.amount, 'unique.amount') : 0;
  const vol = spec.volatile ? amountPages(spec.volatile.amount, 'volatile.amount') : 0;
  return {
    zero: { pages: zero, distinct: zero > 0 ? 1 : 0 },
    shared: { pages: shared, distinct: Math.min(block, shared) },
    runs: { pages: runs, distinct: runs },
    hot: { pages: hot, distinct: hot > 0 ? 1 : 0 },
    unique: { pages: unique, distinct: unique },
    volatile: { pages: vol, distinct: vol },
  };
}

export function totalFillPages(spec: FillSpec): number {
  return Object.values(expectedFill(spec)).reduce((sum, k) => sum + k.pages, 0);
}

/** The text form (all amounts in pages, all options explicit); validates on the way. */
export function formatFillSpec(spec: FillSpec): string {
  const known = new Set<string>(FILL_KINDS);
  for (const key of Object.keys(spec)) {
    if (!known.has(key)) bad(`unknown kind "${key}"; use ${FILL_KINDS.join(', ')}`);
  }
  const items: string[] = [];
  if (spec.zero) items.push(`zero=${amountPages(spec.zero, 'zero')}`);
  if (spec.shared) {
    const pages = amountPages(spec.shared.amount, 'shared.amount');
    const block = wholeNumber(spec.shared.blockPages ?? DEFAULT_BLOCK, 'shared.blockPages', 1);
    if (pages > 0 && (block > pages || pages % block !== 0)) {
      bad(`shared amount (${pages} pages) must be a whole number of blocks of ${block} pages`);
    }
    items.push(`shared=${pages}/block=${block}/seed=${wholeNumber(spec.shared.seed ?? DEFAULT_SEED, 'shared.seed', 0)}`);
  }
  if (spec.runs) {
    const count = wholeNumber(spec.runs.count, 'runs.count', 0);
    const length = wholeNumber(spec.runs.length, 'runs.length', 1);
    items.push(`runs=${count}x${length}/seed=${wholeNumber(spec.runs.seed ?? DEFAULT_SEED, 'runs.seed', 0)}`);
  }
  if (spec.hot) {
    items.push(`hot=${wholeNumber(spec.hot.copies, 'hot.copies', 0)}/seed=${wholeNumber(spec.hot.seed ?? DEFAULT_SEED, 'hot.seed', 0)}`);
  }
  if (spec.unique) {
    const src = spec.unique.source ?? 'urandom';
    if (src !== 'urandom' && src !== 'name') bad(`unique.source must be "urandom" or "name", got ${String(src)}`);
    items.push(`unique=${amountPages(spec.unique.amount, 'unique.amount')}/src=${src}`);
  }
  if (spec.volatile) {
    const ms = wholeNumber(spec.volatile.intervalMs ?? DEFAULT_INTERVAL_MS, 'volatile.intervalMs', 1);
    items.push(`volatile=${amountPages(spec.volatile.amount, 'volatile.amount')}/ms=${ms}`);
  }
  return items.join(',');
}

function parseAmount(text: string, item: string): Amount {
  const m = /^(\d+)([pMG]?)$/.exec(text);
  if (!m) bad(`"${item}": amount is N or Np (pages), NM (MiB) or NG (GiB)`);
  const n = Number(m[1]);
  if (m[2] === 'M') return { MiB: n };
  if (m[2] === 'G') return { MiB: n * 1024 };
  return { pages: n };
}

function parseOptions(rest: string[], item: string, allowed: string[]): Map<string, string> {
  const opts = new Map<string, string>();
  for (const o of rest) {
    const eq = o.indexOf('=');
    const key = eq > 0 ? o.slice(0, eq) : '';
    if (!allowed.includes(key)) {
      bad(`"${item}": option "${o}" not understood; this kind takes ${allowed.map((a) => `${a}=`).join(', ') || 'no options'}`);
    }
    opts.set(key, o.slice(eq + 1));
  }
  return opts;
}

function optNumber(opts: Map<string, string>, key: string, item: string): number | undefined {
  const v = opts.get(key);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) bad(`"${item}": ${key} must be a whole number`);
  return Number(v);
}

/** Parse the text form (as typed on the CLI) into a FillSpec. */
export function parseFillSpec(text: string): FillSpec {
  const spec: FillSpec = {};
  for (const item of text.split(',').filter((s) => s.length > 0)) {
    const [head = '', ...rest] = item.split('/');
    const eq = head.indexOf('=');
    const kind = eq > 0 ? head.slice(0, eq) : '';
    const amount = head.slice(eq + 1);
    if (!(FILL_KINDS as readonly string[]).includes(kind)) {
      bad(`"${item}": write KIND=AMOUNT with KIND one of ${FILL_KINDS.join(', ')}`);
    }
    if (kind in spec) bad(`"${item}": kind "${kind}" given twice`);
    switch (kind as FillKind) {
      case 'zero':
        parseOptions(rest, item, []);
        spec.zero = parseAmount(amount, item);
        break;
      case 'shared': {
        const o = parseOptions(rest, item, ['block', 'seed']);
        spec.shared = { amount: parseAmount(amount, item), blockPages: optNumber(o, 'block', item), seed: optNumber(o, 'seed', item) };
        break;
      }
      case 'runs': {
        const m = /^(\d+)x(\d+)$/.exec(amount);
        if (!m) bad(`"${item}": runs take COUNTxLENGTH in pages, e.g. runs=32x16`);
        const o = parseOptions(rest, item, ['seed']);
        spec.runs = { count: Number(m[1]), length: Number(m[2]), seed: optNumber(o, 'seed', item) };
        break;
      }
      case 'hot': {
        const o = parseOptions(rest, item, ['seed']);
        spec.hot = { copies: amountPages(parseAmount(amount, item), item), seed: optNumber(o, 'seed', item) };
        break;
      }
      case 'unique': {
        const o = parseOptions(rest, item, ['src']);
        const src = o.get('src') ?? 'urandom';
        if (src !== 'urandom' && src !== 'name') bad(`"${item}": src must be urandom or name`);
        spec.unique = { amount: parseAmount(amount, item), source: src };
        break;
      }
      case 'volatile': {
        const o = parseOptions(rest, item, ['ms']);
        spec.volatile = { amount: parseAmount(amount, item), intervalMs: optNumber(o, 'ms', item) };
        break;
      }
    }
  }
  formatFillSpec(spec); // the same checks the object form gets
  return spec;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function num(o: Record<string, unknown>, key: string, where: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new HarnessError('GUEST_ERROR', `fill summary: ${where}.${key} missing or not a number`);
  }
  return v;
}

/** Validate the JSON the guest printed after "SAMEPAGE: FILL ". */
export function parseFillSummary(json: string): FillSummary {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (e) {
    throw new HarnessError('GUEST_ERROR', `fill summary is not JSON (${(e as Error).message}): ${json.slice(0, 200)}`);
  }
  if (!isRecord(raw) || !isRecord(raw.kinds) || typeof raw.tag !== 'string' || typeof raw.name !== 'string') {
    throw new HarnessError('GUEST_ERROR', `fill summary lacks tag/name/kinds: ${json.slice(0, 200)}`);
  }
  const kinds = raw.kinds;
  const kind = (k: FillKind, extra: string[]): KindSummary & Record<string, number> => {
    const o = kinds[k];
    if (!isRecord(o)) throw new HarnessError('GUEST_ERROR', `fill summary has no kind "${k}"`);
    const out: KindSummary & Record<string, number> = {
      expected: num(o, 'expected', k),
      pages: num(o, 'pages', k),
      present: num(o, 'present', k),
      distinct: num(o, 'distinct', k),
    };
    for (const e of extra) out[e] = num(o, e, k);
    return out;
  };
  const unique = kinds.unique;
  const source = isRecord(unique) ? unique.source : undefined;
  if (source !== 'urandom' && source !== 'name') throw new HarnessError('GUEST_ERROR', 'fill summary: unique.source missing');
  const s = kind('shared', ['blockPages', 'seed']);
  const r = kind('runs', ['count', 'length', 'seed', 'contiguousRuns']);
  const h = kind('hot', ['seed']);
  const v = kind('volatile', ['intervalMs']);
  return {
    tag: raw.tag,
    name: raw.name,
    pageSize: num(raw, 'pageSize', 'summary'),
    fillMs: num(raw, 'fillMs', 'summary'),
    totalPages: num(raw, 'totalPages', 'summary'),
    kinds: {
      zero: kind('zero', []),
      shared: { ...s, blockPages: s.blockPages ?? 0, seed: s.seed ?? 0 },
      runs: { ...r, count: r.count ?? 0, length: r.length ?? 0, seed: r.seed ?? 0, contiguousRuns: r.contiguousRuns ?? 0 },
      hot: { ...h, seed: h.seed ?? 0 },
      unique: { ...kind('unique', []), source },
      volatile: { ...v, intervalMs: v.intervalMs ?? 0 },
    },
  };
}

/** Content streams, numbered as in guest/prng.h. */
export const STREAM = { shared: 1, runs: 2, hot: 3, unique: 4, volatile: 5 } as const;

const M64 = (1n << 64n) - 1n;
const GOLDEN = 0x9e3779b97f4a7c15n;

function mix64(x: bigint): bigint {
  x = (x + GOLDEN) & M64;
  x = ((x ^ (x >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  x = ((x ^ (x >> 27n)) * 0x94d049bb133111ebn) & M64;
  return x ^ (x >> 31n);
}

/**
 * The exact bytes of page `index` of a seeded stream, as the guest writes them (sp_page_fill in
 * guest/prng.c): e.g. pageContent(STREAM.hot, seed, 0) is every "hot" page, and
 * pageContent(STREAM.shared, seed, i) is page i of the shared block.
 */
export function pageContent(stream: number, seed: number | bigint, index: number | bigint): Buffer {
  let s = mix64(mix64(mix64(BigInt(stream)) ^ (BigInt(seed) & M64)) ^ (BigInt(index) & M64));
  const page = Buffer.alloc(PAGE_SIZE);
  for (let i = 0; i < PAGE_SIZE / 8; i++) {
    s = (s + GOLDEN) & M64;
    let z = s;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
    page.writeBigUInt64LE(z ^ (z >> 31n), i * 8);
  }
  return page;
}
