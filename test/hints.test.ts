// The host-side check of the page-flag hint table (native/kernel patch 0003): boots the patched guest
// kernel built by scripts/kernel/test-kernel.sh under QEMU TCG with page_hints=, lets its test
// program (scripts/kernel/guest/sp_guest.c, sp_mode=hints) fill memory with known kinds of pages and
// print their page frame numbers, then reads the table out of QEMU's guest RAM with lib/hints.ts and
// checks it against what the guest said. Needs root (/proc/PID/mem of QEMU).
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HINT_RESERVED_BITS, HintFlag, HintTableError, countHints, encodeHintHeader, parseHintHeader, planScan, readHintTable } from '../lib/hints.js';
import type { PfnRun } from '../lib/hints.js';
import { findGuestRam } from '../lib/guest-ram.js';
import { Scanner } from '../lib/scanner.js';

// Only the kernel and guest program test-kernel.sh has just built from this tree: the cache's copy
// may come from another checkout, whose guest program prints other figures.
const artifacts = process.env.SAMEPAGE_KERNEL_ARTIFACTS;
const bzImage = join(artifacts ?? '', 'bzImage');
const initramfs = join(artifacts ?? '', 'initramfs.cpio.gz');
const haveKernel = artifacts !== undefined && existsSync(bzImage) && existsSync(initramfs);
// test-kernel.sh sets this: each boot's serial output is written there as hints-<n>.log when the
// test ends, and scanned for kernel reports (scan-splats.sh) like its own boots.
const serialDir = process.env.SAMEPAGE_KERNEL_SERIAL_DIR;
let boots = 0;

const ramDump = process.env.SAMEPAGE_KERNEL_RAM_DUMP;
/** The dump's size: guest frames 0..32767, the hole at 64 MiB among them. */
const DUMP_BYTES = 128 * 1024 * 1024;

const PAGE = 4096;
const RAM_BYTES = 512 * 1024 * 1024;
const HOLE_GPA = 64 * 1024 * 1024; // clear of the kernel image (16 MiB) and the initramfs (top of RAM)
const HOLE_BYTES = 256 * 1024; // 64 B header + one byte for each of the 131072 page frames
const INTERVAL_MS = 100;

interface GuestReport {
  anon: number[];
  cache: number[];
  memtotalKb: number;
  memfreeKb: number;
  /** Pages on the per-cpu free lists: free in the table, not in MemFree. */
  pcpKb: number;
  slabKb: number;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const q of running) q.kill('SIGKILL');
});

/** Boots the hints guest and resolves once it printed READY; the caller stops it. */
async function bootHintsGuest(t: ExecutionContext): Promise<{ pid: number; report: GuestReport }> {
  // No "quiet": WARN and lockdep reports are printed at KERN_WARNING, which quiet hides.
  const append = `console=ttyS0 panic=-1 brd.rd_nr=1 brd.rd_size=16384 sp_mode=hints page_hints=${HOLE_BYTES}@${HOLE_GPA},${INTERVAL_MS}`;
  const qemu = spawn(
    'qemu-system-x86_64',
    // mem-merge=off: this guest's RAM stays out of the host's KSM, which other tests may be measuring.
    // 2 vCPUs as test-kernel.sh's boots; test.serial: one guest at a time.
    ['-accel', 'tcg', '-machine', 'mem-merge=off', '-m', String(RAM_BYTES >> 20), '-smp', '2', '-nodefaults', '-vga', 'none', '-display', 'none',
      '-no-reboot', '-kernel', bzImage, '-initrd', initramfs, '-append', append, '-serial', 'stdio', '-monitor', 'none'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  running.add(qemu);
  let serial = '';
  const boot = ++boots;
  t.teardown(async () => {
    qemu.kill('SIGKILL');
    running.delete(qemu);
    if (serialDir !== undefined) await writeFile(join(serialDir, `hints-${boot}.log`), serial);
  });
  let stderr = '';
  qemu.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`hints guest not READY after 180 s; serial tail:\n${serial.slice(-2000)}`)), 180_000);
    qemu.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`QEMU exited (${String(code)}) before READY: ${stderr.trim()}\nserial tail:\n${serial.slice(-2000)}`));
    });
    qemu.stdout?.on('data', (d: Buffer) => {
      serial += d.toString();
      const guest = withoutKernelRecords(serial);
      const ready = /^SP HINTS READY ([^\r\n]*)\r?\n/m.exec(guest); // a whole line
      if (ready === null || qemu.pid === undefined) return;
      clearTimeout(timer);
      const kv = Object.fromEntries((ready[1] ?? '').trim().split(/\s+/).map((p) => p.split('=') as [string, string]));
      try {
        resolve({
          pid: qemu.pid,
          report: {
            anon: pfns(guest, 'anon'),
            cache: pfns(guest, 'cache'),
            memtotalKb: Number(kv.memtotal_kb),
            memfreeKb: Number(kv.memfree_kb),
            pcpKb: Number(kv.pcp_kb),
            slabKb: Number(kv.slab_kb),
          },
        });
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });
}

/**
 * The first DUMP_BYTES of guest RAM, read through /proc/PID/mem while the guest runs, with an untorn
 * copy of the hint table (header with an even seq, then every frame's byte) put back at the hole:
 * the guest rewrites the table every INTERVAL_MS, so the bulk read may catch it half written.
 */
async function dumpGuestRam(pid: number, loc: { gpa: number; ramBytes: number; holeBytes: number }): Promise<Buffer> {
  const ram = await findGuestRam(pid, RAM_BYTES);
  const dump = Buffer.alloc(DUMP_BYTES);
  const mem = await open(`/proc/${pid}/mem`, 'r');
  try {
    for (let off = 0; off < DUMP_BYTES; ) {
      const { bytesRead } = await mem.read(dump, off, Math.min(8 << 20, DUMP_BYTES - off), Number(ram.start) + off);
      if (bytesRead <= 0) throw new Error(`guest RAM of QEMU ${pid} ended at ${off} bytes`);
      off += bytesRead;
    }
  } finally {
    await mem.close();
  }
  const { header, flags } = await readHintTable(pid, loc);
  dump.set(encodeHintHeader(header), loc.gpa);
  dump.set(flags, loc.gpa + header.headerSize);
  return dump;
}

/**
 * The serial output with the kernel's console records taken out. A record ("[    1.655778] tsc: ...")
 * is written whole under the port lock, but between two pieces of a guest program's line when the
 * other vCPU logs while that line drains: removing records up to their newline gives the line back.
 */
function withoutKernelRecords(serial: string): string {
  return serial.replace(/\[ *\d+\.\d{6}\] [^\n]*\n/g, '');
}

/** The guest's PFN list of one kind, printed a chunk per line ("SP HINTS PFNS kind total first list"). */
function pfns(serial: string, kind: string): number[] {
  const lines = new RegExp(`^SP HINTS PFNS ${kind} (\\d+) (\\d+) ([0-9a-f,]+)\\r?$`, 'gm');
  const list: number[] = [];
  let total = -1;
  for (const m of serial.matchAll(lines)) {
    if (Number(m[2]) !== list.length) {
      throw new Error(`the guest's ${kind} PFN line starting at ${m[2]} follows ${list.length} PFNs: a line was lost or garbled`);
    }
    total = Number(m[1]);
    list.push(...(m[3] ?? '').split(',').map((h) => parseInt(h, 16)));
  }
  if (total < 0) throw new Error(`the guest printed no ${kind} page frame numbers`);
  if (list.length !== total) throw new Error(`the guest printed ${list.length} ${kind} PFNs, announced ${total}`);
  return list;
}

if (!haveKernel) {
  const why = artifacts === undefined ? 'SAMEPAGE_KERNEL_ARTIFACTS is not set' : `no bzImage / initramfs.cpio.gz in ${artifacts}`;
  test.skip(`hint table in a patched guest (${why}: npm run test:kernel builds them from this tree and runs this test)`, () => {});
} else {
  test.serial('hint table read from QEMU guest RAM is filled and matches the guest', async (t) => {
    const { pid, report } = await bootHintsGuest(t);
    const loc = { gpa: HOLE_GPA, ramBytes: RAM_BYTES, holeBytes: HOLE_BYTES };
    const table = await readHintTable(pid, loc);
    const { header, flags } = table;

    // Header: the guest's own page frame count (QEMU keeps the top 128 KiB of -m for firmware).
    t.is(header.intervalMs, INTERVAL_MS);
    t.is(header.firstPfn, 0n);
    t.true(header.pageCount <= RAM_BYTES / PAGE && header.pageCount > RAM_BYTES / PAGE - 1024, `page_count ${header.pageCount}`);
    t.is(header.seq % 2, 0);
    t.is(flags.length, header.pageCount);
    t.is(flags.filter((b) => (b & HINT_RESERVED_BITS) !== 0).length, 0, 'no reserved bits set');

    // Pages the guest holds, by kind, carry that kind's bit.
    const missing = (list: number[], bit: number): number => list.filter((pfn) => ((flags[pfn] ?? 0) & bit) === 0).length;
    t.is(missing(report.anon, HintFlag.anon), 0, `${report.anon.length} anonymous pages of the guest program flagged anon`);
    t.is(missing(report.cache, HintFlag.pageCache), 0, `${report.cache.length} mapped /dev/ram0 pages flagged page cache`);
    // The hole itself is reserved memory.
    const hole = flags.subarray(HOLE_GPA / PAGE, (HOLE_GPA + HOLE_BYTES) / PAGE);
    t.is(hole.filter((b) => b !== HintFlag.kernel).length, 0, 'hole pages flagged kernel/reserved');

    // Totals agree with the guest kernel's /proc/meminfo, read around the same rewrite.
    const counts = countHints(flags);
    const totalKb = report.memtotalKb;
    // The table's free pages are the buddy's (MemFree) and the per-cpu lists' (up to several MiB on
    // 2 vCPUs, which MemFree leaves out: a run without them was 9.9 MiB apart, one with them 0.3 MiB).
    t.true(Number.isFinite(report.pcpKb), `the guest reported no pcp_kb (${String(report.pcpKb)}): is the initramfs older than test/hints.test.ts?`);
    const freeKb = report.memfreeKb + report.pcpKb;
    t.true(Math.abs(counts.free * 4 - freeKb) < totalKb * 0.01, `free ${counts.free * 4} kB vs MemFree ${report.memfreeKb} kB + per-cpu lists ${report.pcpKb} kB`);
    t.true(Math.abs(counts.slab * 4 - report.slabKb) < Math.max(512, report.slabKb * 0.25), `slab ${counts.slab * 4} kB vs Slab ${report.slabKb} kB`);
    t.true(counts.anon >= report.anon.length && counts.pageCache >= report.cache.length);
    t.log(`counts ${JSON.stringify(counts)}; MemFree ${report.memfreeKb} kB, per-cpu lists ${report.pcpKb} kB, Slab ${report.slabKb} kB`);

    // A scan plan from it: page cache first, free frames left out, every other RAM frame once.
    const plan = planScan(table);
    const frames = (runs: PfnRun[]): Set<number> => new Set(runs.flatMap(([pfn, n]) => Array.from({ length: n }, (_, k) => pfn + k)));
    const first = frames(plan.first);
    const then = frames(plan.then);
    t.is(first.size, counts.pageCache, 'first: exactly the page cache frames');
    t.is(plan.skippedFree, counts.free);
    t.is(first.size + then.size + plan.skippedFree + counts.none, header.pageCount, 'every frame in one place');
    t.true(report.cache.every((pfn) => first.has(pfn)) && report.anon.every((pfn) => then.has(pfn)));

    // The guest keeps rewriting it: the sequence number moves on, always even when read whole.
    await sleep(5 * INTERVAL_MS);
    let attempts = 0;
    let last = header.seq;
    for (let i = 0; i < 20; i++) {
      const again = await readHintTable(pid, loc);
      attempts += again.attempts;
      t.is(again.header.seq % 2, 0);
      t.true(again.header.seq >= last);
      last = again.header.seq;
    }
    t.true(last > header.seq, `seq ${header.seq} -> ${last}`);
    t.log(`20 reads took ${attempts} attempts (retries after torn reads: ${attempts - 20})`);

    // test-kernel.sh asks for the first DUMP_BYTES of this guest's RAM, with a whole table, for the
    // boot in which ksmd reads a real guest's hints (patch 0004, sp_ksm_hints_guest()).
    if (ramDump !== undefined) {
      await writeFile(ramDump, await dumpGuestRam(pid, loc));
      t.log(`${DUMP_BYTES >> 20} MiB of guest RAM written to ${ramDump}`);
    }
  });

  test.serial('the engine leaves out the pages the guest reports free', async (t) => {
    const { pid } = await bootHintsGuest(t);
    const table = await readHintTable(pid, { gpa: HOLE_GPA, ramBytes: RAM_BYTES, holeBytes: HOLE_BYTES });
    // The guest RAM of this guest is not madvised (mem-merge=off): scan every private range's
    // guest RAM, once without hints and once with them.
    const scan = async (hinted: boolean): Promise<{ tracked: number; present: number }> => {
      const s = new Scanner({ smartScan: false });
      const id = await s.addProcess(pid, { guestRamOnly: true, allAnon: true });
      if (hinted) s.applyHintTable(id, table);
      const r = await s.scan();
      await s.close();
      return { tracked: r.counters.rmap_items, present: r.sources[0]?.presentPages ?? 0 };
    };
    const plain = await scan(false);
    const hinted = await scan(true);
    // Which guest pages are in host RAM, from QEMU's pagemap: the hinted scan must track exactly
    // those the guest did not report free.
    const ram = await findGuestRam(pid, RAM_BYTES);
    const pagemap = await open(`/proc/${pid}/pagemap`, 'r');
    const entries = Buffer.alloc((RAM_BYTES / PAGE) * 8);
    await pagemap.read(entries, 0, entries.length, Number(ram.start / BigInt(PAGE)) * 8);
    await pagemap.close();
    let presentNotFree = 0;
    let presentFree = 0;
    for (let i = 0; i < RAM_BYTES / PAGE; i++) {
      const present = (entries.readBigUInt64LE(i * 8) >> 63n) === 1n;
      if (!present) continue;
      if (((table.flags[i] ?? 0) & HintFlag.free) !== 0) presentFree++;
      else presentNotFree++;
    }
    t.log(`guest RAM pages present on the host: ${plain.present} (${presentFree} of them free in the guest); scanned with hints: ${hinted.tracked}`);
    t.true(plain.tracked > 0 && presentFree > 0);
    t.is(plain.tracked, plain.present);
    // The guest keeps running between the table read and the scans: allow a little drift.
    t.true(Math.abs(hinted.tracked - presentNotFree) <= presentNotFree * 0.02 + 16, `${hinted.tracked} vs ${presentNotFree}`);
    t.true(hinted.tracked < plain.tracked);
  });

  test.serial('hint reader errors name the problem on a real guest', async (t) => {
    const { pid } = await bootHintsGuest(t);
    const badMagic = await t.throwsAsync(readHintTable(pid, { gpa: HOLE_GPA + PAGE, ramBytes: RAM_BYTES }), { instanceOf: HintTableError });
    t.is(badMagic?.problem, 'BAD_MAGIC');
    t.regex(badMagic?.message ?? '', /page_hints= address/);

    const outside = await t.throwsAsync(readHintTable(pid, { gpa: RAM_BYTES + PAGE, ramBytes: RAM_BYTES }), { instanceOf: HintTableError });
    t.is(outside?.problem, 'OUTSIDE_RAM');

    const small = await t.throwsAsync(readHintTable(pid, { gpa: HOLE_GPA, ramBytes: RAM_BYTES, holeBytes: PAGE }), { instanceOf: HintTableError });
    t.is(small?.problem, 'BAD_HEADER');

    // A real header with a version this reader does not know.
    const ram = await findGuestRam(pid, RAM_BYTES);
    const fh = await open(`/proc/${pid}/mem`, 'r');
    const raw = new Uint8Array(64);
    await fh.read(raw, 0, 64, Number(ram.start) + HOLE_GPA);
    await fh.close();
    t.is(parseHintHeader(raw, 'test').version, 1);
    // The writer lays a header out as the guest kernel does (the dump above relies on it).
    t.deepEqual(encodeHintHeader(parseHintHeader(raw, 'test')), raw);
    raw[4] = 2;
    const version = t.throws(() => parseHintHeader(raw, 'test'), { instanceOf: HintTableError });
    t.is(version?.problem, 'BAD_VERSION');
  });
}
