// Page-content sketches (lib/fingerprint): built from in-process pages of known contents, so every
// estimate is checked against the true figure; the sketch file format round-trips and refuses
// damaged, truncated and foreign-key files; the key file is refused unless it is root's secret.
import test from 'ava';
import { chmod, lstat, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  SketchBuilder,
  decodeSketches,
  encodeSketches,
  estimateColocation,
  estimateGroup,
  estimateOverlap,
  initFingerprintKey,
  keyIdOf,
  readFingerprintKey,
  readSketchFile,
  sketchBuffer,
  writeSketchFile,
} from '../lib/index.js';
import type { FingerprintKey, Sketch } from '../lib/index.js';
import { distinctEstimate } from '../lib/fingerprint/sketch.js';

let tmp = '';
test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'samepage-fp-'));
});
test.after.always(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function testKey(seed: number): FingerprintKey {
  const key = Buffer.alloc(32, seed);
  return { key, id: keyIdOf(key), path: '(test)' };
}
const KEY = testKey(7);

/** A page whose content is named by (family, id): equal names, equal pages. */
function page(family: number, id: number): Buffer {
  const p = Buffer.alloc(4096);
  p.writeUInt32LE(family, 0);
  p.writeUInt32LE(id, 4);
  p.writeUInt32LE(family ^ id ^ 0x5a5a5a5a, 4092);
  return p;
}

/** A sketch from a list of page names, without holding all pages at once; [0, 0] is a zero page. */
function sketchOf(name: string, pages: Iterable<[number, number]>, k: number, key = KEY): Sketch {
  const b = new SketchBuilder(key, k);
  const zero = Buffer.alloc(4096);
  for (const [family, id] of pages) b.addPage(family === 0 && id === 0 ? zero : page(family, id));
  return b.finish({ name, ramBytes: b.pages * 4096, host: 'h' }, key.id, Date.now(), 0);
}

function* range(family: number, from: number, to: number): Generator<[number, number]> {
  for (let i = from; i < to; i++) yield [family, i];
}

test('a small buffer is sketched exactly: pages, zero pages, distinct contents and the saving within it', (t) => {
  // 10 distinct pages, 3 of them twice more, 5 zero pages.
  const pages = [...range(1, 0, 10), [1, 0], [1, 0], [1, 1], [1, 1], [1, 2], [1, 2], ...Array.from({ length: 5 }, (): [number, number] => [0, 0])];
  const buf = Buffer.concat(pages.map(([f, i]) => (f === 0 ? Buffer.alloc(4096) : page(f, i))));
  const s = sketchBuffer(buf, KEY, { name: 'small' });
  t.is(s.pages, 21);
  t.is(s.zeroPages, 5);
  t.true(s.exact);
  t.is(s.hashes.length, 10);
  t.is(distinctEstimate(s), 10);
  const e = estimateGroup([s], [0]);
  t.true(e.exact);
  // 16 non-zero pages of 10 contents save 6; 5 zero pages merge into one KSM page: 4 more.
  t.is(e.pagesSharing, 6 + 4);
  t.is(e.savedBytes, 10 * 4096);
  t.is(e.generalProfit, 10 * 4096 - 21 * 64);
  const z = estimateGroup([s], [0], { useZeroPages: true, maxPageSharing: 256 });
  t.is(z.pagesSharing, 6);
  t.is(z.ksmZeroPages, 5);
  t.is(z.generalProfit, 11 * 4096 - (21 - 5) * 64);
  t.throws(() => sketchBuffer(Buffer.alloc(4097), KEY, { name: 'odd' }), { message: /whole number of 4096-byte pages/ });
});

test('max_page_sharing: a content held 600 times frees 600 - ceil(600/256) pages', (t) => {
  const s = sketchOf('dup', Array.from({ length: 600 }, (): [number, number] => [3, 1]), 1024);
  t.is(estimateGroup([s], [0]).pagesSharing, 597);
  t.is(estimateGroup([s], [0], { useZeroPages: false, maxPageSharing: 100 }).pagesSharing, 594);
});

test('sampled sketches estimate the saving of a pair and their overlap within the stated error', (t) => {
  // A and B hold 40000 distinct pages each; 12000 are the same contents; each also has 2000 pages
  // that are copies of its own first 2000. True pair saving: 12000 + 2000 + 2000.
  const a = sketchOf('a', [...range(10, 0, 40000), ...range(10, 0, 2000)], 2048);
  const b = sketchOf('b', [...range(10, 0, 12000), ...range(11, 12000, 40000), ...range(11, 12000, 14000)], 2048);
  t.false(a.exact);
  t.is(a.hashes.length, 2048);
  const within = (got: number, want: number, rel: number, what: string): void => {
    t.true(Math.abs(got - want) <= want * rel, `${what}: ${got} vs ${want}`);
  };
  within(distinctEstimate(a), 40000, 0.07, 'distinct A');
  const pair = estimateGroup([a, b], [0, 1]);
  t.false(pair.exact);
  t.is(pair.pages, 84000);
  within(pair.distinct, 68000, 0.07, 'distinct A ∪ B');
  t.true(Math.abs(pair.pagesSharing - 16000) <= 3 * pair.stdErrPages + 1, `saving ${pair.pagesSharing} ± ${pair.stdErrPages} vs 16000`);
  within(pair.pagesSharing, 16000, 0.1, 'pair saving');
  within(estimateOverlap(a, b), 12000, 0.15, '|A ∩ B|');
  const both = estimateColocation([a, b], [[0], [1]]);
  within(both.savedPages, 4000, 0.25, 'apart');
  t.throws(() => estimateColocation([a, b], [[0, 1], [1]]), { message: /is in two groups/ });
  t.throws(() => estimateGroup([a, b], [0, 0]), { message: /a group names a sketch twice/ });
});

test('sketches of different keys are never compared', (t) => {
  const a = sketchOf('a', range(1, 0, 100), 256);
  const b = sketchOf('other-fleet', range(1, 0, 100), 256, testKey(8));
  t.throws(() => estimateGroup([a, b], [0, 1]), { message: /different fingerprint keys cannot be compared: "a" has key [0-9a-f]{16}, "other-fleet" has key/ });
  t.throws(() => estimateColocation([a, b], [[0], [1]]), { message: /different fingerprint keys/ });
});

test('a sketch file round-trips, and a damaged, truncated or lying one is refused naming the file', async (t) => {
  const a = sketchOf('vm-a', [...range(1, 0, 3000), ...range(1, 0, 50)], 1024);
  const b = sketchOf('vm-\u001b[31mb', range(2, 0, 30), 1024);
  const bytes = encodeSketches([a, b], 'host-1', 1234);
  const back = decodeSketches(bytes, 'x.fp');
  t.is(back.keyId, KEY.id);
  t.is(back.host, 'host-1');
  t.is(back.sketches.length, 2);
  const [a2, b2] = back.sketches as [Sketch, Sketch];
  t.deepEqual([...a2.hashes], [...a.hashes]);
  t.deepEqual([...a2.copies], [...a.copies]);
  t.is(b2.name, b.name);
  t.is(a2.exact, false);
  t.is(b2.exact, true);
  t.deepEqual(estimateGroup(back.sketches, [0, 1]), estimateGroup([a, b], [0, 1]));

  const flipped = Buffer.from(bytes);
  flipped[flipped.length - 100] ^= 1;
  t.throws(() => decodeSketches(flipped, '/x/a.fp'), { message: /^\/x\/a\.fp is not a usable sketch file: its SHA-256 checksum does not match/ });
  t.throws(() => decodeSketches(bytes.subarray(0, bytes.length - 7), 'cut.fp'), { message: /cut\.fp is not a usable sketch file: its SHA-256 checksum does not match: it is truncated/ });
  t.throws(() => decodeSketches(bytes.subarray(0, 20), 'tiny.fp'), { message: /tiny\.fp is not a usable sketch file: it is truncated \(20 bytes\)/ });
  t.throws(() => decodeSketches(bytes.subarray(0, 200), 'short.fp'), { message: /short\.fp is not a usable sketch file: its header length \d+ does not fit in the file \(200 bytes\)/ });
  t.throws(() => decodeSketches(Buffer.from('{"not":"a sketch"}'), 'j.fp'), { message: /does not start with the sketch file magic/ });
  const future = Buffer.from(bytes);
  future.writeUInt32LE(9, 8);
  t.throws(() => decodeSketches(future, 'v.fp'), { message: /format version 9; this ksm-agent reads version 1/ });
  // A header that lies about its entries, with a checksum made to match: the sizes do not add up.
  const { createHash } = await import('node:crypto');
  const hlen = bytes.readUInt32LE(12);
  const json = bytes.subarray(16, 16 + hlen).toString('utf8').replace('"entries":30', '"entries":31');
  const lying = Buffer.concat([bytes.subarray(0, 12), Buffer.alloc(4), Buffer.from(json), bytes.subarray(16 + hlen, bytes.length - 32)]);
  lying.writeUInt32LE(Buffer.byteLength(json), 12);
  const relabelled = Buffer.concat([lying, createHash('sha256').update(lying).digest()]);
  t.throws(() => decodeSketches(relabelled, 'lie.fp'), { message: /its header promises \d+ bytes of entries, the file has \d+/ });
  // The name, hostile, is escaped in errors that show it.
  const unsorted = Buffer.from(bytes);
  const entriesAt = 16 + hlen + a.hashes.length * 12;
  unsorted.writeBigUInt64LE(0n, entriesAt + 8);
  const fixed = Buffer.concat([unsorted.subarray(0, unsorted.length - 32), createHash('sha256').update(unsorted.subarray(0, unsorted.length - 32)).digest()]);
  t.throws(() => decodeSketches(fixed, 'u.fp'), { message: /sketch 1 \("vm-\\x1b\[31mb"\): its hashes are not strictly ascending/ });
});

test('sketch files are written atomically and --out never replaces a file that is not a sketch', async (t) => {
  const a = sketchOf('vm-a', range(1, 0, 500), 256);
  const file = path.join(tmp, 'fleet.fp');
  const bytes = await writeSketchFile(file, [a], 'h1');
  t.is((await stat(file)).size, bytes);
  t.is((await readSketchFile(file)).sketches[0]?.name, 'vm-a');
  await writeSketchFile(file, [a], 'h2'); // a sketch file may be replaced
  t.is((await readSketchFile(file)).host, 'h2');
  const notes = path.join(tmp, 'notes.txt');
  await writeFile(notes, 'precious\n');
  await t.throwsAsync(writeSketchFile(notes, [a], 'h1'), { message: /refusing to use .*notes\.txt as the sketch file: it exists and is not a sketch file/ });
  t.is(await readFile(notes, 'utf8'), 'precious\n');
  await t.throwsAsync(readSketchFile(notes), { message: /notes\.txt is not a usable sketch file: it does not start with the sketch file magic/ });
  await t.throwsAsync(readSketchFile('/dev/null'), { message: /\/dev\/null is not a usable sketch file: it is not a regular file/ });
  await t.throwsAsync(readSketchFile(path.join(tmp, 'absent.fp')), { message: /absent\.fp: it does not exist/ });
});

test('the key file: created 0600 once, never replaced; refused when others may read it, when a symlink, in a writable directory', async (t) => {
  const dir = await mkdtemp(path.join(tmp, 'keys-'));
  const file = path.join(dir, 'sub', 'fp.key');
  const made = await initFingerprintKey(file);
  t.is((await stat(file)).mode & 0o777, 0o600);
  t.regex(await readFile(file, 'utf8'), /^[0-9a-f]{64}\n$/);
  const read = await readFingerprintKey(file);
  t.true(read.key.equals(made.key));
  t.regex(read.id, /^[0-9a-f]{16}$/);
  await t.throwsAsync(initFingerprintKey(file), { message: /refusing to use .*fp\.key as the fingerprint key: it exists already; a key is never replaced/ });
  t.true((await readFingerprintKey(file)).key.equals(made.key));

  await chmod(file, 0o644);
  await t.throwsAsync(readFingerprintKey(file), { message: /fp\.key as the fingerprint key: it may be read or written by group or others \(mode 0644\); chmod 600/ });
  await chmod(file, 0o400);
  t.true((await readFingerprintKey(file)).key.equals(made.key));

  const link = path.join(dir, 'sub', 'link.key');
  await symlink(file, link);
  await t.throwsAsync(readFingerprintKey(link), { message: /link\.key as the fingerprint key: it is a symbolic link/ });
  t.true((await lstat(link)).isSymbolicLink());

  await chmod(path.join(dir, 'sub'), 0o777);
  await t.throwsAsync(readFingerprintKey(file), { message: /which group or others may write/ });
  await chmod(path.join(dir, 'sub'), 0o755);

  const junk = path.join(dir, 'sub', 'junk.key');
  await writeFile(junk, 'not a key', { mode: 0o600 });
  await t.throwsAsync(readFingerprintKey(junk), { message: /does not hold a key \(64 lower-case hex digits\)/ });
  await t.throwsAsync(readFingerprintKey(path.join(dir, 'none.key')), { message: /no fingerprint key at .*none\.key: create one with "ksm-agent fingerprint --init-key --key-file/ });
});
