// Sketch files: the sketches of one `ksm-agent fingerprint` run, in a small binary format.
//
//   0   8 bytes  magic "SPFPRINT"
//   8   u32 LE   format version (1)
//   12  u32 LE   H, bytes of the header JSON (at most MAX_HEADER_BYTES)
//   16  H bytes  header JSON: { keyId, host, createdAt, sketches: [{ name, pid?, uuid?, ramBytes,
//                host, k, pages, zeroPages, thpZeroPages, entries, exact, takenAt, elapsedMs }] }
//   ..  per sketch, in header order: entries × u64 LE hashes (ascending), entries × u32 LE copies
//   end 32 bytes SHA-256 of everything before it
//
// Parsing is strict and bounded: the file's size is checked against a limit before it is read, the
// header's length before it is decoded, every field's type and range, the total size against the
// header's entry counts before any array is made, the checksum, and the hashes' order. A file that
// fails any check is refused with an error naming the file and the check; nothing is guessed.
// Sketches are not secret (keyed hashes, key.ts) but the header names the VMs.
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { InvalidArgumentError, fromSystemError } from '../errors.js';
import { MAX_NAME_CHARS, escapeText } from '../escape.js';
import { writeOwnFileAtomic } from '../safe-files.js';
import { ENTRY_BYTES, MAX_ENTRIES, MIN_ENTRIES } from './sketch.js';
import type { Sketch } from './sketch.js';

const MAGIC = Buffer.from('SPFPRINT', 'latin1');
export const FORMAT_VERSION = 1;
const PREFIX_BYTES = 16;
const CHECKSUM_BYTES = 32;
const MAX_HEADER_BYTES = 4 << 20;
/** Most sketches in one file: a host runs far fewer VMs. */
const MAX_SKETCHES = 4096;
/** Largest sketch file read: bounds the allocation before anything is parsed. */
export const MAX_FILE_BYTES = 256 << 20;
/** Longest text field kept (a VM name is bounded at MAX_NAME_CHARS plus a "…[+N chars]" marker). */
const MAX_TEXT = MAX_NAME_CHARS + 32;
/** A page count no host reaches (2^40 pages = 4 PiB), so arithmetic on counts stays exact. */
const MAX_PAGES = 2 ** 40;

interface SketchHeader {
  name: string;
  pid?: number;
  uuid?: string;
  ramBytes: number;
  host: string;
  k: number;
  pages: number;
  zeroPages: number;
  thpZeroPages: number;
  entries: number;
  exact: boolean;
  takenAt: number;
  elapsedMs: number;
}

interface FileHeader {
  keyId: string;
  host: string;
  createdAt: number;
  sketches: SketchHeader[];
}

/**
 * The bytes of a sketch file holding `sketches` (all of one key). `keyId` names the key when there
 * is no sketch to take it from (a host with no VM running still answers with a valid file).
 */
export function encodeSketches(sketches: readonly Sketch[], host: string, createdAt = Date.now(), keyId = sketches[0]?.keyId): Buffer {
  if (keyId === undefined || !/^[0-9a-f]{16}$/.test(keyId)) throw new InvalidArgumentError('a sketch file needs the id of the key its sketches were made with (16 hex digits)');
  for (const s of sketches) {
    if (s.keyId !== keyId) throw new InvalidArgumentError('one sketch file holds sketches of one key only');
  }
  const header: FileHeader = {
    keyId,
    host,
    createdAt,
    sketches: sketches.map((s) => ({
      name: s.name,
      ...(s.pid === undefined ? {} : { pid: s.pid }),
      ...(s.uuid === undefined ? {} : { uuid: s.uuid }),
      ramBytes: s.ramBytes,
      host: s.host,
      k: s.k,
      pages: s.pages,
      zeroPages: s.zeroPages,
      thpZeroPages: s.thpZeroPages,
      entries: s.hashes.length,
      exact: s.exact,
      takenAt: s.takenAt,
      elapsedMs: Math.round(s.elapsedMs * 1000) / 1000,
    })),
  };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const body = sketches.reduce((a, s) => a + s.hashes.length * ENTRY_BYTES, 0);
  const out = Buffer.alloc(PREFIX_BYTES + json.length + body + CHECKSUM_BYTES);
  MAGIC.copy(out, 0);
  out.writeUInt32LE(FORMAT_VERSION, 8);
  out.writeUInt32LE(json.length, 12);
  json.copy(out, PREFIX_BYTES);
  let off = PREFIX_BYTES + json.length;
  for (const s of sketches) {
    for (const h of s.hashes) {
      out.writeBigUInt64LE(h, off);
      off += 8;
    }
    for (const c of s.copies) {
      out.writeUInt32LE(c, off);
      off += 4;
    }
  }
  createHash('sha256').update(out.subarray(0, off)).digest().copy(out, off);
  return out;
}

/** Starts like a sketch file: what --out may replace. */
export function looksLikeSketchFile(start: Uint8Array): boolean {
  return Buffer.from(start.subarray(0, MAGIC.length)).equals(MAGIC);
}

export interface SketchFile {
  path: string;
  keyId: string;
  host: string;
  createdAt: number;
  sketches: Sketch[];
}

const RETAKE = 'take it again with ksm-agent fingerprint --out';

class Corrupt extends InvalidArgumentError {
  constructor(file: string, problem: string, remedy = RETAKE) {
    super(`${escapeText(file)} is not a usable sketch file: ${problem}; ${remedy}`, { path: file });
  }
}

/** Parses a sketch file's bytes; `file` names it in errors, which end with `remedy`. */
export function decodeSketches(buf: Buffer, file: string, remedy = RETAKE): SketchFile {
  const bad = (problem: string): Corrupt => new Corrupt(file, problem, remedy);
  if (buf.length < MAGIC.length || !looksLikeSketchFile(buf)) throw bad(`it does not start with the sketch file magic "SPFPRINT" (${buf.length} bytes)`);
  if (buf.length < PREFIX_BYTES + CHECKSUM_BYTES) throw bad(`it is truncated (${buf.length} bytes)`);
  const version = buf.readUInt32LE(8);
  if (version !== FORMAT_VERSION) throw bad(`it is format version ${version}; this ksm-agent reads version ${FORMAT_VERSION}`);
  const headerBytes = buf.readUInt32LE(12);
  if (headerBytes > MAX_HEADER_BYTES || PREFIX_BYTES + headerBytes + CHECKSUM_BYTES > buf.length) throw bad(`its header length ${headerBytes} does not fit in the file (${buf.length} bytes): it is truncated or damaged`);
  const sumAt = buf.length - CHECKSUM_BYTES;
  const sum = createHash('sha256').update(buf.subarray(0, sumAt)).digest();
  if (!sum.equals(buf.subarray(sumAt))) throw bad('its SHA-256 checksum does not match: it is truncated or damaged');
  let raw: unknown;
  try {
    raw = JSON.parse(buf.subarray(PREFIX_BYTES, PREFIX_BYTES + headerBytes).toString('utf8'));
  } catch {
    throw bad('its header is not JSON');
  }
  const header = checkHeader(raw, bad);
  const body = header.sketches.reduce((a, s) => a + s.entries * ENTRY_BYTES, 0);
  if (PREFIX_BYTES + headerBytes + body !== sumAt) throw bad(`its header promises ${body} bytes of entries, the file has ${sumAt - PREFIX_BYTES - headerBytes}`);
  let off = PREFIX_BYTES + headerBytes;
  const sketches: Sketch[] = header.sketches.map((h, index) => {
    const hashes = new BigUint64Array(h.entries);
    const copies = new Uint32Array(h.entries);
    for (let i = 0; i < h.entries; i++, off += 8) {
      const v = buf.readBigUInt64LE(off);
      if (i > 0 && v <= (hashes[i - 1] as bigint)) throw bad(`sketch ${index} ("${escapeText(h.name)}"): its hashes are not strictly ascending`);
      hashes[i] = v;
    }
    let total = 0;
    for (let i = 0; i < h.entries; i++, off += 4) {
      const c = buf.readUInt32LE(off);
      if (c === 0) throw bad(`sketch ${index} ("${escapeText(h.name)}"): an entry has 0 copies`);
      copies[i] = c;
      total += c;
    }
    const nonZero = h.pages - h.zeroPages - h.thpZeroPages;
    if (total > nonZero) throw bad(`sketch ${index} ("${escapeText(h.name)}"): its entries count ${total} pages, more than its ${nonZero} non-zero pages`);
    const s: Sketch = {
      name: h.name,
      ramBytes: h.ramBytes,
      host: h.host,
      keyId: header.keyId,
      k: h.k,
      pages: h.pages,
      zeroPages: h.zeroPages,
      thpZeroPages: h.thpZeroPages,
      hashes,
      copies,
      exact: h.exact,
      takenAt: h.takenAt,
      elapsedMs: h.elapsedMs,
    };
    if (h.pid !== undefined) s.pid = h.pid;
    if (h.uuid !== undefined) s.uuid = h.uuid;
    return s;
  });
  return { path: file, keyId: header.keyId, host: header.host, createdAt: header.createdAt, sketches };
}

type Bad = (problem: string) => Corrupt;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function int(o: Record<string, unknown>, key: string, min: number, max: number, bad: Bad, where: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw bad(`${where}${key} is ${JSON.stringify(v) ?? 'missing'}, not a whole number from ${min} to ${max}`);
  return v;
}

function text(o: Record<string, unknown>, key: string, bad: Bad, where: string): string {
  const v = o[key];
  if (typeof v !== 'string' || v.length > MAX_TEXT) throw bad(`${where}${key} is not a string of at most ${MAX_TEXT} characters`);
  return v;
}

function checkHeader(raw: unknown, bad: Bad): FileHeader {
  if (!isRecord(raw)) throw bad('its header is not a JSON object');
  const keyId = raw['keyId'];
  if (typeof keyId !== 'string' || !/^[0-9a-f]{16}$/.test(keyId)) throw bad('its header has no key id (16 hex digits)');
  const host = text(raw, 'host', bad, '');
  const createdAt = int(raw, 'createdAt', 0, Number.MAX_SAFE_INTEGER, bad, '');
  const list = raw['sketches'];
  if (!Array.isArray(list) || list.length > MAX_SKETCHES) throw bad(`its header's sketches is not a list of at most ${MAX_SKETCHES}`);
  const sketches = list.map((item: unknown, i): SketchHeader => {
    const where = `sketch ${i}: `;
    if (!isRecord(item)) throw bad(`${where}not a JSON object`);
    const k = int(item, 'k', MIN_ENTRIES, MAX_ENTRIES, bad, where);
    const pages = int(item, 'pages', 0, MAX_PAGES, bad, where);
    const zeroPages = int(item, 'zeroPages', 0, pages, bad, where);
    const thpZeroPages = int(item, 'thpZeroPages', 0, pages - zeroPages, bad, where);
    const entries = int(item, 'entries', 0, k, bad, where);
    const exact = item['exact'];
    if (typeof exact !== 'boolean') throw bad(`${where}exact is not true or false`);
    if (!exact && entries !== k) throw bad(`${where}a sampled sketch must hold k=${k} entries, it holds ${entries}`);
    const elapsedMs = item['elapsedMs'];
    if (typeof elapsedMs !== 'number' || !Number.isFinite(elapsedMs) || elapsedMs < 0) throw bad(`${where}elapsedMs is not a duration`);
    const h: SketchHeader = {
      name: text(item, 'name', bad, where),
      ramBytes: int(item, 'ramBytes', 0, Number.MAX_SAFE_INTEGER, bad, where),
      host: text(item, 'host', bad, where),
      k,
      pages,
      zeroPages,
      thpZeroPages,
      entries,
      exact,
      takenAt: int(item, 'takenAt', 0, Number.MAX_SAFE_INTEGER, bad, where),
      elapsedMs,
    };
    if (item['pid'] !== undefined) h.pid = int(item, 'pid', 1, 2 ** 22, bad, where);
    if (item['uuid'] !== undefined) h.uuid = text(item, 'uuid', bad, where);
    return h;
  });
  return { keyId, host, createdAt, sketches };
}

/**
 * Reads a sketch file: a regular file (a FIFO or device is refused without blocking) of at most
 * MAX_FILE_BYTES, checked before its bytes are read.
 */
export async function readSketchFile(file: string): Promise<SketchFile> {
  let fh: FileHandle;
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw fromSystemError(err, { op: 'read sketch file', path: file });
  }
  let buf: Buffer;
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new Corrupt(file, 'it is not a regular file');
    if (st.size > MAX_FILE_BYTES) throw new Corrupt(file, `it is ${st.size} bytes, more than the ${MAX_FILE_BYTES} a sketch file may have`);
    buf = Buffer.alloc(st.size);
    const { bytesRead } = await fh.read(buf, 0, st.size, 0);
    if (bytesRead !== st.size) throw new Corrupt(file, `it shrank while being read (${bytesRead} of ${st.size} bytes)`);
  } finally {
    await fh.close();
  }
  return decodeSketches(buf, file);
}

/**
 * Writes a sketch file atomically (safe-files.ts: temp file, fsync, rename). A file already at the
 * path is replaced only if it is a sketch file: --out pointed at anything else is refused untouched.
 */
export async function writeSketchFile(file: string, sketches: readonly Sketch[], host: string): Promise<number> {
  const bytes = encodeSketches(sketches, host);
  await writeOwnFileAtomic({ path: file, what: 'the sketch file' }, bytes, {
    mode: 0o644,
    mayReplace: (existing) => looksLikeSketchFile(Buffer.from(existing, 'latin1')),
    kind: 'a sketch file',
  });
  return bytes.length;
}
