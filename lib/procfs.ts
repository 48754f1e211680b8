// Reads /proc: per-process KSM counters, memory maps, command lines and the system-wide files KSM
// reporting needs. Parsing lives in proc-parse.ts; this module does the I/O and turns system errors
// into typed ones (a vanished pid is ProcessGoneError, another user's process NotPermittedError).
import { constants as fsConstants, readFileSync } from 'node:fs';
import { readFile, readdir, readlink, stat } from 'node:fs/promises';
import {
  InvalidArgumentError,
  KsmUnavailableError,
  NotFoundError,
  UnsupportedFeatureError,
  errnoOf,
  fromSystemError,
} from './errors.js';
import {
  parseCmdline,
  parseFdinfoFlags,
  parseKeyValueNumbers,
  parseKsmStat,
  parseMaps,
  parseProcStat,
  parseSizeFields,
  parseSmaps,
  parseStatus,
} from './proc-parse.js';
import type { KsmStat, Mapping, ProcStat, ProcStatus, SmapsEntry } from './proc-parse.js';

export type { IdSet, KsmStat, Mapping, ProcStat, ProcStatus, SmapsEntry } from './proc-parse.js';

const PROC = '/proc';
/** Where the kernel's KSM sysfs directory is; its absence tells "no CONFIG_KSM" from "old kernel". */
const KSM_SYSFS = '/sys/kernel/mm/ksm';

/**
 * Clock ticks per second for utime/stime in /proc/PID/stat. The kernel reports these in USER_HZ,
 * which is 100 on every architecture Linux still supports (sysconf(_SC_CLK_TCK) returns it).
 */
export const USER_HZ = 100;

/** Per-process /proc files that only some kernels have, and the release that added each. */
const PER_PROCESS_KSM_FILES: Record<string, string> = {
  ksm_merging_pages: '5.19',
  ksm_stat: '6.1',
};

export function checkPid(pid: number): void {
  if (!Number.isSafeInteger(pid) || pid <= 0) {
    throw new InvalidArgumentError(`invalid pid ${String(pid)}: a pid is a positive integer, as ps prints it`);
  }
}

async function procRead(pid: number, file: string): Promise<string> {
  checkPid(pid);
  const path = `${PROC}/${pid}/${file}`;
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw await explainProcError(err, pid, file, path, 'read');
  }
}

/**
 * ENOENT on /proc/PID/FILE means the process is gone only if /proc/PID itself is gone; otherwise
 * the kernel lacks the file (no CONFIG_KSM, or a release older than the one that added it).
 */
async function explainProcError(err: unknown, pid: number, file: string, path: string, op: string): Promise<Error> {
  if (errnoOf(err) === 'ENOENT' && (await exists(`${PROC}/${pid}`))) {
    const since = PER_PROCESS_KSM_FILES[file];
    if (since !== undefined) {
      if (!(await exists(KSM_SYSFS))) return new KsmUnavailableError({ path: KSM_SYSFS, pid, cause: err });
      return new UnsupportedFeatureError({ feature: `/proc/PID/${file}`, since, path, pid, errno: 'ENOENT', cause: err });
    }
    return new NotFoundError(`cannot ${op} ${path}: this kernel has no such file`, { path, pid, errno: 'ENOENT', cause: err });
  }
  return fromSystemError(err, { op, path, pid });
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** /proc/PID/ksm_stat by key. Kernel threads and zombies have no mm: every field is then absent. */
export async function readKsmStat(pid: number): Promise<KsmStat> {
  return parseKsmStat(await procRead(pid, 'ksm_stat'));
}

/** /proc/PID/ksm_merging_pages; undefined for a process without an mm (kernel thread, zombie). */
export async function readKsmMergingPages(pid: number): Promise<number | undefined> {
  const text = (await procRead(pid, 'ksm_merging_pages')).trim();
  return text === '' ? undefined : Number(text);
}

/** /proc/PID/smaps_rollup: size fields in bytes (Rss, Pss, Pss_Anon, KSM, Swap, ...). */
export async function readSmapsRollup(pid: number): Promise<Record<string, number>> {
  return parseSizeFields(await procRead(pid, 'smaps_rollup'));
}

export async function readMaps(pid: number): Promise<Mapping[]> {
  return parseMaps(await procRead(pid, 'maps'));
}

/** /proc/PID/smaps with VmFlags, so callers can find the mergeable ("mg") ranges. */
export async function readSmaps(pid: number): Promise<SmapsEntry[]> {
  return parseSmaps(await procRead(pid, 'smaps'));
}

export async function readCmdline(pid: number): Promise<string[]> {
  return parseCmdline(await procRead(pid, 'cmdline'));
}

/** The short command name (comm), at most 15 characters. */
export async function readComm(pid: number): Promise<string> {
  return (await procRead(pid, 'comm')).replace(/\n$/, '');
}

export async function readStatus(pid: number): Promise<ProcStatus> {
  return parseStatus(await procRead(pid, 'status'));
}

/** /proc/PID/stat: CPU times in clock ticks (divide by USER_HZ for seconds). */
export async function readProcStat(pid: number): Promise<ProcStat> {
  return parseProcStat(await procRead(pid, 'stat'));
}

/** The executable's path, or undefined for kernel threads (which have none). */
export async function readExe(pid: number): Promise<string | undefined> {
  checkPid(pid);
  const path = `${PROC}/${pid}/exe`;
  try {
    return await readlink(path);
  } catch (err) {
    // A kernel thread's exe link exists but cannot be resolved (ENOENT) while /proc/PID stays.
    if (errnoOf(err) === 'ENOENT' && (await exists(`${PROC}/${pid}`))) return undefined;
    throw fromSystemError(err, { op: 'read', path, pid });
  }
}

/** Every pid in /proc, ascending. */
export async function listPids(): Promise<number[]> {
  const names = await readdir(PROC);
  return names.filter((n) => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b);
}

/** The pid of the ksmd kernel thread (its CPU time is ksmd's cost). */
export async function findKsmd(): Promise<number> {
  for (const pid of await listPids()) {
    let stat: ProcStat;
    try {
      stat = await readProcStat(pid);
    } catch {
      continue; // exited while we looked: not ksmd, which lives as long as the kernel
    }
    // ksmd is a child of kthreadd (pid 2); a user process could call itself "ksmd".
    if (stat.comm === 'ksmd' && stat.ppid === 2) return pid;
  }
  if (!(await exists(KSM_SYSFS))) throw new KsmUnavailableError({ path: KSM_SYSFS });
  throw new NotFoundError(
    'no ksmd kernel thread in /proc although KSM is configured: /proc belongs to another pid namespace (a container); run on the host',
    { path: PROC },
  );
}

/** /proc/meminfo: sizes in bytes (the kernel prints kB), counts (HugePages_Total) as printed. */
export async function readMeminfo(): Promise<Record<string, number>> {
  return parseSizeFields(await readGlobal('meminfo'));
}

/** /proc/vmstat counters; cow_ksm and ksm_swpin_copy are the KSM ones. */
export interface Vmstat {
  cow_ksm?: number;
  ksm_swpin_copy?: number;
  [key: string]: number | undefined;
}

export async function readVmstat(): Promise<Vmstat> {
  return parseKeyValueNumbers(await readGlobal('vmstat'));
}

async function readGlobal(file: string): Promise<string> {
  const path = `${PROC}/${file}`;
  try {
    // Synchronously: meminfo and vmstat are a few KiB the kernel prints at once, read every tick.
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw fromSystemError(err, { op: 'read', path });
  }
}

/** One open file descriptor of a process. */
export interface OpenFile {
  fd: number;
  /** The link target: a path, or a pseudo name like "socket:[123]", "pipe:[4]", "anon_inode:...". */
  target: string;
  /** Access mode from fdinfo: "r", "w" or "rw"; undefined if fdinfo could not be read. */
  access?: 'r' | 'w' | 'rw';
  /** The fd refers to a regular file (stat through /proc/PID/fd/N, so deleted files count too). */
  regularFile: boolean;
  blockDevice: boolean;
  deleted: boolean;
}

/** The open file descriptors of a process. Fds closed while listing are left out. */
export async function readOpenFiles(pid: number): Promise<OpenFile[]> {
  checkPid(pid);
  const dir = `${PROC}/${pid}/fd`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    throw fromSystemError(err, { op: 'list', path: dir, pid });
  }
  const out: OpenFile[] = [];
  for (const name of names) {
    const fd = Number(name);
    let target: string;
    let mode: number;
    try {
      target = await readlink(`${dir}/${name}`);
      mode = (await stat(`${dir}/${name}`)).mode;
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') continue; // closed meanwhile; if the process went, readdir told us
      throw fromSystemError(err, { op: 'read', path: `${dir}/${name}`, pid });
    }
    const file: OpenFile = {
      fd,
      target: target.replace(/ \(deleted\)$/, ''),
      regularFile: (mode & fsConstants.S_IFMT) === fsConstants.S_IFREG,
      blockDevice: (mode & fsConstants.S_IFMT) === fsConstants.S_IFBLK,
      deleted: target.endsWith(' (deleted)'),
    };
    try {
      const flags = parseFdinfoFlags(await readFile(`${PROC}/${pid}/fdinfo/${name}`, 'utf8'));
      if (flags !== undefined) file.access = (['r', 'w', 'rw'] as const)[flags & 3];
    } catch {
      // fdinfo is best effort: the fd may have closed between the two reads.
    }
    out.push(file);
  }
  return out;
}
