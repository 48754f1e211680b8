// The engine through the addon and the Scanner class: results, sources, progress, cancellation,
// errors, lifetimes. Real memory and real processes throughout.
import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import {
  InvalidArgumentError,
  NotFoundError,
  ProcessGoneError,
  Scanner,
  allocMergeable,
  pageHash,
} from '../lib/index.js';
import { startFixture } from './helpers/node-child.js';
import { runNodeAsNobody } from './helpers/processes.js';

const PAGE = 4096;

function fillPages(buf: ArrayBuffer, seedOf: (i: number) => number): void {
  const bytes = new Uint8Array(buf);
  for (let i = 0; i < bytes.length / PAGE; i++) {
    const seed = seedOf(i);
    const page = bytes.subarray(i * PAGE, (i + 1) * PAGE);
    if (seed === 0) {
      page.fill(0);
      continue;
    }
    for (let b = 0; b < PAGE; b += 4) new DataView(buf).setUint32(i * PAGE + b, Math.imul(seed, 2654435761) ^ (b * 40503), true);
  }
}

test('two identical pages: the kernel golden case through the addon', async (t) => {
  // Page-aligned memory: the engine scans whole pages only.
  const buf = allocMergeable(2 * PAGE);
  fillPages(buf, () => 7);
  const s = new Scanner();
  const id = s.addBuffer(buf, 'two');
  const first = await s.scan();
  t.is(first.counters.pages_shared, 0);
  t.is(first.counters.pages_volatile, 2);
  const r = await s.scan();
  t.is(r.counters.pages_shared, 1);
  t.is(r.counters.pages_sharing, 1);
  t.is(r.counters.general_profit, 4096 - 2 * 64);
  t.is(r.sources[0]?.id, id);
  t.is(r.sources[0]?.name, 'two');
  t.is(r.sources[0]?.mergingPages, 2);
  t.deepEqual(r.matrix, [[2]]);
  const groups = s.groups();
  t.is(groups.length, 1);
  t.is(groups[0]?.mappings, 2);
  t.is(groups[0]?.hash, pageHash(new Uint8Array(buf, 0, PAGE)));
  await s.close();
});

test('several buffers: per-source figures and the sharing matrix', async (t) => {
  // a: 30 pages of content 1; b: 10 of content 1, 10 of content 2; c: 10 of content 2, 5 unique
  const a = allocMergeable(30 * PAGE);
  const b = allocMergeable(20 * PAGE);
  const c = allocMergeable(15 * PAGE);
  fillPages(a, () => 1);
  fillPages(b, (i) => (i < 10 ? 1 : 2));
  fillPages(c, (i) => (i < 10 ? 2 : 1000 + i));
  const s = new Scanner({ useZeroPages: true });
  s.addBuffer(a, 'a');
  s.addBuffer(b, 'b');
  s.addBuffer(c, 'c');
  const r = await s.scan({ passes: 3 });
  t.is(r.passes, 3);
  t.is(r.counters.pages_shared, 2);
  t.is(r.counters.pages_sharing, 40 + 20 - 2);
  t.deepEqual(r.sources.map((x) => x.mergingPages), [30, 20, 10]);
  // a shares only within itself and with b; c shares with b only.
  t.deepEqual(r.matrix, [
    [30, 30, 0],
    [10, 20, 10],
    [0, 10, 10],
  ]);
  await s.close();
});

test('progress is reported and steps follow pages_to_scan', async (t) => {
  const buf = allocMergeable(2048 * PAGE);
  fillPages(buf, (i) => (i % 2 ? 3 : 10 + i));
  const s = new Scanner({ pagesToScan: 100 });
  s.addBuffer(buf);
  const seen: number[] = [];
  const r = await s.scan({ passes: 2, onProgress: (p) => seen.push(p.pass) });
  t.true(seen.length > 0);
  t.is(r.counters.full_scans, 2);
  const step = await s.scan({ pages: 100 });
  t.is(step.counters.pages_scanned, r.counters.pages_scanned + 100);
  // A progress callback that throws ends the scan with its error.
  await t.throwsAsync(
    s.scan({
      passes: 3,
      onProgress: () => {
        throw new Error('stop here');
      },
    }),
    { message: 'stop here' },
  );
  t.false(s.busy);
  await s.close();
});

test('an AbortSignal stops a scan; the scanner stays usable', async (t) => {
  const buf = allocMergeable(16384 * PAGE);
  fillPages(buf, (i) => 1 + (i % 4096));
  const s = new Scanner({ smartScan: false });
  s.addBuffer(buf);
  const ac = new AbortController();
  const running = s.scan({ passes: 100000, intervalMs: 1, signal: ac.signal });
  t.true(s.busy);
  t.throws(() => s.counters(), { message: /scan is in progress/ });
  setTimeout(() => ac.abort(), 150);
  const err = await t.throwsAsync(running);
  t.is(err?.name, 'AbortError');
  t.false(s.busy);
  const after = await s.scan();
  t.true(after.counters.full_scans > 1);
  const pre = new AbortController();
  pre.abort();
  await t.throwsAsync(s.scan({ signal: pre.signal }), { name: 'AbortError' });
  await s.close();
});

test('close() waits for a running scan; a closed scanner says so', async (t) => {
  const buf = allocMergeable(8192 * PAGE);
  fillPages(buf, (i) => i + 1);
  const s = new Scanner({ smartScan: false });
  s.addBuffer(buf);
  const running = s.scan({ passes: 100000 });
  await s.close();
  await t.throwsAsync(running, { message: /cancelled/ });
  t.throws(() => s.counters(), { instanceOf: InvalidArgumentError, message: /closed/ });
  await s.close(); // twice is fine
});

test('a process source that exits mid-scan: its pages leave, the scan goes on', async (t) => {
  const child = await startFixture<{ ready: boolean }>('mix-child', ['4096']);
  const s = new Scanner();
  const other = allocMergeable(64 * PAGE);
  fillPages(other, () => 5);
  s.addBuffer(other, 'own');
  await s.addProcess(child.pid, { name: 'child' });
  const before = await s.scan({ passes: 2 });
  const src = before.sources.find((x) => x.name === 'child');
  t.truthy(src);
  t.true((src?.mergingPages ?? 0) > 0);
  const running = s.scan({ passes: 20, intervalMs: 20 });
  setTimeout(() => child.child.kill('SIGKILL'), 60);
  const r = await running;
  const gone = r.sources.find((x) => x.name === 'child');
  t.true(gone?.error instanceof ProcessGoneError);
  t.is(gone?.mergingPages, 0);
  t.is(gone?.rmapItems, 0);
  t.true((gone?.pagesLost ?? 0) > 0);
  t.is(r.sources.find((x) => x.name === 'own')?.mergingPages, 64);
  await child.stop();
  await s.close();
});

test('pagesToScan 0 is accepted as the kernel accepts it: a pass still ends', async (t) => {
  const buf = allocMergeable(64 * PAGE);
  fillPages(buf, (i) => (i % 2 ? 3 : 10 + i));
  const s = new Scanner({ pagesToScan: 0 });
  s.addBuffer(buf);
  t.is(s.settings().pagesToScan, 0);
  s.configure({ pagesToScan: 0 });
  const r = await s.scan({ passes: 2 });
  t.is(r.counters.full_scans, 2);
  t.is(r.counters.pages_scanned, 128);
  await s.close();
});

test('stableNodeChainsPruneMillisecs: the kernel default, taken, and refused out of range', async (t) => {
  const s = new Scanner();
  t.is(s.settings().stableNodeChainsPruneMillisecs, 2000);
  s.configure({ stableNodeChainsPruneMillisecs: 0 });
  t.is(s.settings().stableNodeChainsPruneMillisecs, 0);
  t.is(s.settings().maxPageSharing, 256);
  t.throws(() => s.configure({ stableNodeChainsPruneMillisecs: 2 ** 32 }), { instanceOf: RangeError, message: /stableNodeChainsPruneMillisecs/ });
  t.is(s.settings().stableNodeChainsPruneMillisecs, 0);
  await s.close();
});

test('lookaheadEarly: off by default, taken, counted in lookahead_early; a run copied after its first page merges a pass sooner', async (t) => {
  const a = allocMergeable(64 * PAGE);
  const b = allocMergeable(64 * PAGE);
  fillPages(a, (i) => 100 + i);
  fillPages(b, (i) => 500 + i);
  const shared: Scanner[] = [];
  for (const lookaheadEarly of [false, true]) {
    const s = new Scanner();
    t.is(s.settings().lookaheadEarly, false);
    s.configure({ lookaheadEarly });
    t.is(s.settings().lookaheadEarly, lookaheadEarly);
    s.addBuffer(a);
    s.addBuffer(b);
    shared.push(s);
  }
  for (const s of shared) await s.scan();
  // The run's first page equal in both before pass 2, the rest of the copy after it.
  fillPages(b, (i) => (i === 10 ? 110 : 500 + i));
  for (const s of shared) await s.scan();
  fillPages(b, (i) => (i >= 10 && i < 40 ? 100 + i : 500 + i));
  const [plain, early] = await Promise.all(shared.map(async (s) => (await s.scan()).counters));
  t.is(plain?.pages_shared, 1);
  t.is(early?.pages_shared, 30);
  t.is(early?.lookahead_early, 29);
  t.is(plain?.lookahead_early, 0);
  t.throws(() => shared[1]?.configure({ lookaheadEarly: 'yes' as unknown as boolean }), { instanceOf: TypeError, message: /lookaheadEarly must be a boolean/ });
  for (const s of shared) await s.close();
});

test('exactTrees: off by default, taken, the same result as the default walk on memory that holds still, refused when not a boolean', async (t) => {
  const buf = allocMergeable(300 * PAGE);
  fillPages(buf, (i) => (i % 3 === 0 ? 1000 + i : 1 + (i % 40)));
  const results = [];
  for (const exactTrees of [false, true]) {
    const s = new Scanner();
    t.is(s.settings().exactTrees, false);
    s.configure({ exactTrees });
    t.is(s.settings().exactTrees, exactTrees);
    s.addBuffer(buf);
    await s.scan({ passes: 3 });
    results.push((await s.scan()).counters);
    if (exactTrees) {
      t.throws(() => s.configure({ exactTrees: 1 as unknown as boolean }), { instanceOf: TypeError, message: /exactTrees must be a boolean/ });
      t.is(s.settings().exactTrees, true);
    }
    await s.close();
  }
  const [index, tree] = results;
  t.is(tree?.pages_shared, 40);
  t.is(tree?.pages_sharing, 160);
  t.is(tree?.pages_shared, index?.pages_shared);
  t.is(tree?.pages_sharing, index?.pages_sharing);
  t.is(tree?.pages_unshared, index?.pages_unshared);
  t.is(tree?.pages_volatile, index?.pages_volatile);
});

test('errors name the thing: gone pid, bad input, missing dump, no permission', async (t) => {
  const s = new Scanner();
  await t.throwsAsync(s.addProcess(4194303), { instanceOf: ProcessGoneError });
  await t.throwsAsync(s.addProcess(-3), { instanceOf: InvalidArgumentError });
  await t.throwsAsync(s.addDump('/nonexistent/dump.img'), { instanceOf: NotFoundError, message: /dump\.img/ });
  t.throws(() => new Scanner({ maxPageSharing: 1 }), { instanceOf: RangeError, message: /maxPageSharing/ });
  t.throws(() => s.configure({ pagesToScan: -1 }), { instanceOf: RangeError });
  const dir = await mkdtemp(path.join(os.tmpdir(), 'samepage-bad-dump-'));
  const bad = path.join(dir, 'bad.elf');
  const header = Buffer.alloc(64);
  header.write('\x7fELF', 0, 'latin1');
  header[4] = 2;
  header[5] = 1;
  header.writeUInt16LE(4, 16); // ET_CORE
  header.writeUInt16LE(56, 54); // e_phentsize
  header.writeUInt16LE(1, 56); // one segment, past the end of the file
  header.writeBigUInt64LE(64n, 32);
  const ph = Buffer.alloc(56);
  ph.writeUInt32LE(1, 0);
  ph.writeBigUInt64LE(1n << 40n, 32);
  await writeFile(bad, Buffer.concat([header, ph]));
  await t.throwsAsync(s.addDump(bad), { instanceOf: InvalidArgumentError, message: /not a valid memory dump/ });
  await rm(dir, { recursive: true });
  // A user without ptrace rights on root's processes.
  const out = await runNodeAsNobody((lib) => `
    const { Scanner } = require(${JSON.stringify(path.join(lib, 'index.js'))});
    new Scanner().addProcess(1).then(() => console.log('no error'), (e) => console.log(e.code, e.capability));
  `);
  t.regex(out.stdout.trim(), /^NOT_PERMITTED CAP_SYS_PTRACE$/);
  await s.close();
});
