// Pure parsers for /proc text. Every /proc format the library reads is parsed here and only here,
// so a kernel that changes a format is fixed in one place (procfs.ts does the I/O and errors).

/** Per-process KSM counters from /proc/PID/ksm_stat. Fields the kernel does not print are absent. */
export interface KsmStat {
  /** rmap_items this mm owns: the tracking cost (6.1+). */
  ksm_rmap_items?: number;
  /** KSM-placed zero pages still mapped (6.6+ as a ksm_stat line). */
  ksm_zero_pages?: number;
  /** PTEs of this mm that map KSM pages, zero pages excluded (ksm_stat 6.4+; own file 5.19+). */
  ksm_merging_pages?: number;
  /** Bytes saved minus tracking cost; can be negative (6.4+). */
  ksm_process_profit?: number;
  /** PR_SET_MEMORY_MERGE is set for this process (6.14+). */
  ksm_merge_any?: boolean;
  /** Some VMA of this process is VM_MERGEABLE (6.14+). */
  ksm_mergeable?: boolean;
  /** Lines this library does not know yet, by key: numbers and yes/no parsed, the rest raw. */
  extra: Record<string, number | boolean | string>;
}

const KSM_STAT_NUMBERS = ['ksm_rmap_items', 'ksm_zero_pages', 'ksm_merging_pages', 'ksm_process_profit'] as const;
const KSM_STAT_BOOLEANS = ['ksm_merge_any', 'ksm_mergeable'] as const;

/**
 * Parses ksm_stat by key, not by line position: 6.1 prints one line, 6.12 four, 6.14+ six, and the
 * newer lines use "key: value" where the older ones use "key value".
 */
export function parseKsmStat(text: string): KsmStat {
  const out: KsmStat = { extra: {} };
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z0-9_]+):?\s+(.*?)\s*$/.exec(line);
    if (m === null) continue;
    const key = m[1] as string;
    const value = parseScalar(m[2] as string);
    if ((KSM_STAT_NUMBERS as readonly string[]).includes(key) && typeof value === 'number') {
      out[key as (typeof KSM_STAT_NUMBERS)[number]] = value;
    } else if ((KSM_STAT_BOOLEANS as readonly string[]).includes(key) && typeof value === 'boolean') {
      out[key as (typeof KSM_STAT_BOOLEANS)[number]] = value;
    } else {
      out.extra[key] = value;
    }
  }
  return out;
}

/** A decimal integer (possibly negative), yes/no as a boolean, anything else the trimmed text. */
function parseScalar(raw: string): number | boolean | string {
  if (/^-?\d+$/.test(raw)) return Number(raw);
  if (raw === 'yes') return true;
  if (raw === 'no') return false;
  return raw;
}

/** One line of /proc/PID/maps. Addresses are bigint because user addresses exceed 2^53. */
export interface Mapping {
  start: bigint;
  end: bigint;
  bytes: number;
  /** The four permission characters, e.g. "rw-p". */
  perms: string;
  read: boolean;
  write: boolean;
  exec: boolean;
  /** MAP_SHARED ("s"); KSM never merges shared mappings. */
  shared: boolean;
  offset: bigint;
  dev: string;
  inode: number;
  /** The backing file, a pseudo name like "[heap]", or "" for an unnamed anonymous mapping. */
  path: string;
  /** True when the backing file was deleted (the kernel appends " (deleted)"). */
  deleted: boolean;
  /** No backing file: unnamed, [heap], [stack] or a named anonymous mapping ([anon:NAME]). */
  anonymous: boolean;
}

const MAPS_LINE = /^([0-9a-f]+)-([0-9a-f]+) ([r-][w-][x-][ps]) ([0-9a-f]+) ([0-9a-f]+:[0-9a-f]+) (\d+)(?: +(.*))?$/;

/** Parses one maps/smaps header line, or returns undefined when the line is not one. */
export function parseMapsLine(line: string): Mapping | undefined {
  const m = MAPS_LINE.exec(line);
  if (m === null) return undefined;
  const start = BigInt(`0x${m[1]}`);
  const end = BigInt(`0x${m[2]}`);
  const perms = m[3] as string;
  let path = m[7] ?? '';
  const deleted = path.endsWith(' (deleted)');
  if (deleted) path = path.slice(0, -' (deleted)'.length);
  const inode = Number(m[6]);
  return {
    start,
    end,
    bytes: Number(end - start),
    perms,
    read: perms[0] === 'r',
    write: perms[1] === 'w',
    exec: perms[2] === 'x',
    shared: perms[3] === 's',
    offset: BigInt(`0x${m[4]}`),
    dev: m[5] as string,
    inode,
    path,
    deleted,
    anonymous: inode === 0 && (path === '' || path === '[heap]' || path.startsWith('[stack') || path.startsWith('[anon:')),
  };
}

export function parseMaps(text: string): Mapping[] {
  const out: Mapping[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const mapping = parseMapsLine(line);
    if (mapping === undefined) throw new SyntaxError(`unexpected line in /proc/PID/maps: ${JSON.stringify(line)}`);
    out.push(mapping);
  }
  return out;
}

/** One VMA of /proc/PID/smaps: the maps line plus its fields and VmFlags. */
export interface SmapsEntry extends Mapping {
  /** Size fields in bytes (the kernel prints kB); unitless fields (THPeligible) as printed. */
  fields: Record<string, number>;
  /** Two-letter VmFlags mnemonics ("rd", "wr", "mg", ...). */
  vmFlags: string[];
  /** VM_MERGEABLE ("mg"): KSM may merge pages of this VMA. */
  mergeable: boolean;
}

export function parseSmaps(text: string): SmapsEntry[] {
  const out: SmapsEntry[] = [];
  let cur: SmapsEntry | undefined;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const mapping = parseMapsLine(line);
    if (mapping !== undefined) {
      cur = { ...mapping, fields: {}, vmFlags: [], mergeable: false };
      out.push(cur);
      continue;
    }
    if (cur === undefined) throw new SyntaxError(`unexpected line before the first mapping in smaps: ${JSON.stringify(line)}`);
    if (line.startsWith('VmFlags:')) {
      cur.vmFlags = line.slice('VmFlags:'.length).trim().split(/\s+/).filter((f) => f !== '');
      cur.mergeable = cur.vmFlags.includes('mg');
      continue;
    }
    const field = parseSizeField(line);
    if (field !== undefined) cur.fields[field[0]] = field[1];
  }
  return out;
}

/** "Key:   123 kB" → ["Key", 125952]; "Key: 7" → ["Key", 7]; anything else → undefined. */
export function parseSizeField(line: string): [string, number] | undefined {
  const m = /^([A-Za-z0-9_()]+):\s+(-?\d+)(?:\s+(kB))?\s*$/.exec(line);
  if (m === null) return undefined;
  const n = Number(m[2]);
  return [m[1] as string, m[3] === 'kB' ? n * 1024 : n];
}

/** Parses a "Key: value [kB]" file (smaps_rollup, meminfo): sizes to bytes, other numbers as is. */
export function parseSizeFields(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const field = parseSizeField(line);
    if (field !== undefined) out[field[0]] = field[1];
  }
  return out;
}

/** Parses "key value" lines (/proc/vmstat). */
export function parseKeyValueNumbers(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^(\S+)\s+(-?\d+)\s*$/.exec(line);
    if (m !== null) out[m[1] as string] = Number(m[2]);
  }
  return out;
}

/** The NUL-separated argv of /proc/PID/cmdline; empty for kernel threads and zombies. */
export function parseCmdline(text: string): string[] {
  if (text === '') return [];
  const args = text.split('\0');
  if (args[args.length - 1] === '') args.pop();
  return args;
}

export interface IdSet {
  real: number;
  effective: number;
  saved: number;
  fs: number;
}

export interface ProcStatus {
  name: string;
  /** One state letter: R, S, D, Z, T, t, X, I. */
  state: string;
  tgid: number;
  pid: number;
  ppid: number;
  uid: IdSet;
  gid: IdSet;
  /** Absent for kernel threads, which have no mm. */
  vmRssBytes?: number;
  vmSizeBytes?: number;
  vmSwapBytes?: number;
  threads?: number;
  /** Every line, raw, by key. */
  raw: Record<string, string>;
}

export function parseStatus(text: string): ProcStatus {
  const raw: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) raw[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  const need = (key: string): string => {
    const v = raw[key];
    if (v === undefined) throw new SyntaxError(`/proc/PID/status has no ${key} line`);
    return v;
  };
  const ids = (key: string): IdSet => {
    const [real, effective, saved, fs] = need(key).split(/\s+/).map(Number);
    return { real: real ?? NaN, effective: effective ?? NaN, saved: saved ?? NaN, fs: fs ?? NaN };
  };
  const kb = (key: string): number | undefined => {
    const v = raw[key];
    return v === undefined ? undefined : (parseSizeField(`${key}: ${v}`)?.[1] ?? undefined);
  };
  const status: ProcStatus = {
    name: need('Name'),
    state: need('State').charAt(0),
    tgid: Number(need('Tgid')),
    pid: Number(need('Pid')),
    ppid: Number(need('PPid')),
    uid: ids('Uid'),
    gid: ids('Gid'),
    raw,
  };
  const rss = kb('VmRSS');
  if (rss !== undefined) status.vmRssBytes = rss;
  const size = kb('VmSize');
  if (size !== undefined) status.vmSizeBytes = size;
  const swap = kb('VmSwap');
  if (swap !== undefined) status.vmSwapBytes = swap;
  if (raw['Threads'] !== undefined) status.threads = Number(raw['Threads']);
  return status;
}

/** The fields of /proc/PID/stat this library uses. CPU times are in clock ticks (USER_HZ). */
export interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  utime: number;
  stime: number;
  numThreads: number;
  /** Start time after boot, in clock ticks. */
  starttime: number;
  vsizeBytes: number;
  rssPages: number;
}

export function parseProcStat(text: string): ProcStat {
  // comm may hold spaces and parentheses, so split at the last ")".
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) throw new SyntaxError(`unexpected /proc/PID/stat format: ${JSON.stringify(text.slice(0, 80))}`);
  const rest = text.slice(close + 2).trim().split(/\s+/);
  // rest[0] is field 3 (state) of proc(5); field N is rest[N - 3].
  const field = (n: number): number => Number(rest[n - 3]);
  return {
    pid: Number(text.slice(0, open).trim()),
    comm: text.slice(open + 1, close),
    state: rest[0] ?? '',
    ppid: field(4),
    utime: field(14),
    stime: field(15),
    numThreads: field(20),
    starttime: field(22),
    vsizeBytes: field(23),
    rssPages: field(24),
  };
}

/** The flags line of /proc/PID/fdinfo/N (octal open flags). */
export function parseFdinfoFlags(text: string): number | undefined {
  const m = /^flags:\s+([0-7]+)\s*$/m.exec(text);
  return m === null ? undefined : parseInt(m[1] as string, 8);
}
