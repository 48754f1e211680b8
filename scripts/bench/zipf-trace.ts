// fio's own sequence of Zipf reads, for the cache model (zipf-sim.ts): fio run on the host with the
// job the guests ran (seed-workloads.ts: 4 KiB random reads, random_distribution=zipf:THETA,
// time_based, its default fixed seed, so the offsets are the ones each guest's fio read), stopped
// at `reads` reads by io_size, its iolog (--write_iolog) parsed into block numbers. The file fio lays out goes in a
// directory of our own under the system's temporary directory and is removed with it.
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { ZIPF_FILE } from './seed-workloads.js';

export const BLOCK = 4096;
/** A bound on the reads asked of fio (the trace takes 4 bytes a read here, its log ~50 on disk): the guests made under 3.1 M each in 60 s. */
export const MAX_TRACE_READS = 6_000_000;

export interface ZipfTraceOptions {
  fileMiB: number;
  theta: number;
  reads: number;
}

/** Parses fio iolog text (version 2 or 3): the block numbers of its 4 KiB reads, in order, at most `limit`. */
export function parseIolog(text: string, fileBlocks: number, limit = MAX_TRACE_READS): Uint32Array {
  const parser = new IologParser(fileBlocks, limit);
  parser.push(text);
  return parser.end();
}

/** fio iolog lines in, block numbers out; fed in pieces, so a log of millions of reads is never one string. */
class IologParser {
  private readonly out: Uint32Array;
  private n = 0;
  private rest = '';
  private header: string | undefined;

  constructor(
    private readonly fileBlocks: number,
    limit: number,
  ) {
    this.out = new Uint32Array(limit);
  }

  get full(): boolean {
    return this.n >= this.out.length;
  }

  push(text: string): void {
    const lines = (this.rest + text).split('\n');
    this.rest = lines.pop() ?? '';
    for (const line of lines) this.line(line);
  }

  end(): Uint32Array {
    if (this.rest !== '') this.line(this.rest);
    this.rest = '';
    if (this.header === undefined) throw new Error('fio iolog: empty');
    return this.out.slice(0, this.n);
  }

  private line(line: string): void {
    if (this.header === undefined) {
      this.header = line.trim();
      if (!/^fio version [23] iolog$/.test(this.header)) throw new Error(`fio iolog: unexpected header "${this.header.slice(0, 60)}"`);
      return;
    }
    if (this.full) return;
    const f = line.trim().split(/\s+/);
    // v3: TIME FILE ACTION [OFFSET LENGTH]; v2: FILE ACTION [OFFSET LENGTH].
    const i = f.indexOf('read');
    if (i < 0) return;
    const offset = Number(f[i + 1]);
    const length = Number(f[i + 2]);
    if (!Number.isSafeInteger(offset) || offset % BLOCK !== 0 || length !== BLOCK || offset / BLOCK >= this.fileBlocks) {
      throw new Error(`fio iolog: a read that is not one aligned 4 KiB block of the file: "${f.join(' ').slice(0, 80)}"`);
    }
    this.out[this.n++] = offset / BLOCK;
  }
}

/** Runs fio for the trace (as root: a mount namespace); an Error that says what is missing otherwise. */
export function fioZipfTrace(o: ZipfTraceOptions): Uint32Array {
  if (!Number.isInteger(o.fileMiB) || o.fileMiB < 1) throw new Error(`zipf trace: fileMiB must be a whole number >= 1, got ${o.fileMiB}`);
  if (!(o.theta > 0)) throw new Error(`zipf trace: theta must be positive, got ${o.theta}`);
  if (!Number.isInteger(o.reads) || o.reads < 1 || o.reads > MAX_TRACE_READS) throw new Error(`zipf trace: reads must be 1..${MAX_TRACE_READS}, got ${o.reads}`);
  const dir = mkdtempSync(path.join(tmpdir(), 'samepage-zipf-'));
  try {
    const log = path.join(dir, 'reads.iolog');
    // io_size past the file's size: fio goes on reading the file until it has read that much, the
    // same stream as the guests' time_based run gave (checked: 50,000 reads of a 64 MiB file, three
    // files' worth, equal), and stops at exactly `reads` reads. fio seeds its Zipf generator from
    // the file's name, so the file is the guests' own path, in a tmpfs of a mount namespace of its
    // own: this host's directory of that name is never touched (no file, no symlink followed).
    const fio = [
      'fio',
      '--name=zipf',
      `--filename=${ZIPF_FILE}`,
      `--size=${o.fileMiB}M`,
      `--io_size=${o.reads * (BLOCK / 1024)}k`,
      '--rw=randread',
      `--random_distribution=zipf:${o.theta}`,
      '--bs=4k',
      '--ioengine=psync',
      `--write_iolog=${log}`,
      '--output-format=terse',
    ];
    const r = spawnSync(
      'unshare',
      ['--mount', '--propagation', 'private', '--', 'sh', '-c', 'mount -t tmpfs -o mode=0700 tmpfs "$1" && shift && exec "$@"', 'sh', path.dirname(ZIPF_FILE), ...fio],
      { encoding: 'utf8', maxBuffer: 1 << 20 },
    );
    if (r.error !== undefined) throw new Error(`zipf trace: cannot run unshare (${r.error.message}): it is util-linux's`);
    const said = (r.stderr || r.stdout).trim().split('\n').slice(-2).join(' ');
    if (r.status === 127 || /fio: (not found|No such file)/.test(said)) throw new Error(`zipf trace: fio is not installed: apt-get install fio (${said})`);
    if (r.status !== 0) throw new Error(`zipf trace: fio in a private mount namespace exited with ${r.status ?? r.signal} (it needs root): ${said}`);
    const parser = new IologParser((o.fileMiB * 1024 * 1024) / BLOCK, o.reads);
    const fd = openSync(log, 'r');
    try {
      const buf = Buffer.alloc(16 << 20);
      const decoder = new StringDecoder('utf8');
      for (let got = readSync(fd, buf); got > 0 && !parser.full; got = readSync(fd, buf)) parser.push(decoder.write(buf.subarray(0, got)));
      parser.push(decoder.end());
    } finally {
      closeSync(fd);
    }
    const trace = parser.end();
    if (trace.length < o.reads) throw new Error(`zipf trace: fio logged ${trace.length} reads, ${o.reads} asked`);
    return trace;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
