// Where page_hints= may put the hint table (native/kernel patch 0003): boots the patched guest kernel
// built by scripts/kernel/test-kernel.sh under QEMU TCG with unsafe holes and checks that each is
// refused with its kernel message, that no table appears there in guest RAM and that the guest
// boots normally (its test program reaches READY); a safe hole gets its table; with KASLR the
// kernel is never put in a large hole (4 boots, where a kernel that ignored the hole would land in
// it 86% of the time) and is still moved around. Every boot's serial log goes through
// scripts/kernel/scan-splats.sh. Needs root (/proc/PID/mem of QEMU).
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { HINT_MAGIC, readHintTable } from '../lib/hints.js';
import { findGuestRam } from '../lib/guest-ram.js';

const cache = process.env.SAMEPAGE_KERNEL_CACHE ?? '/var/cache/samepage-kernel';
const artifacts = process.env.SAMEPAGE_KERNEL_ARTIFACTS ?? join(cache, 'artifacts');
const kernel = join(artifacts, 'bzImage');
const initrd = join(artifacts, 'initramfs.cpio.gz');
// test-kernel.sh passes its fresh artifacts; otherwise the cache's kernel must be of this series
// (it records the series it applied), not one built before these checks existed.
const seriesDir = resolve(__dirname, '../../native/kernel');
function seriesId(): string {
  const hash = createHash('sha256');
  const series = readFileSync(join(seriesDir, 'series'), 'utf8');
  hash.update(series);
  for (const p of series.split('\n').filter((l) => !/^\s*(#|$)/.test(l))) hash.update(readFileSync(join(seriesDir, p)));
  return hash.digest('hex');
}
const stale =
  process.env.SAMEPAGE_KERNEL_ARTIFACTS === undefined && existsSync(kernel) &&
  (existsSync(join(cache, 'series.applied')) ? readFileSync(join(cache, 'series.applied'), 'utf8').trim() : '') !== seriesId();
const SCAN_SPLATS = resolve(__dirname, '../../scripts/kernel/scan-splats.sh');
const logDir = mkdtempSync(join(os.tmpdir(), 'hints-placement-'));
test.after.always(() => rmSync(logDir, { recursive: true, force: true }));

const MiB = 1024 * 1024;
const RAM_MIB = 512;
// QEMU keeps the top 128 KiB of -m for ACPI data: RAM ends there (e820).
const RAM_END = RAM_MIB * MiB - 128 * 1024;
// 64 B of header and one byte for each frame below RAM_END.
const TABLE_BYTES = 64 + RAM_END / 4096;
const MIN_HOLE = Math.ceil(TABLE_BYTES / 4096) * 4096;

interface Boot {
  pid: number;
  serial: string;
  /** Physical range of the kernel image, from the guest's /proc/iomem. */
  kernel: { start: number; end: number };
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/** Boots the hints guest with `args` on its command line; resolves once its program said READY. */
async function boot(t: ExecutionContext, args: string): Promise<Boot> {
  const append = `console=ttyS0 panic=-1 brd.rd_nr=1 brd.rd_size=16384 sp_mode=hints ${args}`;
  const qemu = spawn('qemu-system-x86_64', [
    '-accel', 'tcg', '-machine', 'mem-merge=off', '-m', String(RAM_MIB), '-smp', '1', '-nodefaults', '-vga', 'none',
    '-display', 'none', '-no-reboot', '-kernel', kernel, '-initrd', initrd, '-append', append, '-serial', 'stdio', '-monitor', 'none',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let serial = '';
  let stderr = '';
  t.teardown(() => {
    qemu.kill('SIGKILL');
    // A kernel report anywhere in the boot fails the test.
    const log = join(logDir, `${t.title.replace(/\W+/g, '_')}-${qemu.pid ?? 0}.log`);
    writeFileSync(log, serial);
    const scan = spawnSync('bash', [SCAN_SPLATS, log], { encoding: 'utf8' });
    if (scan.status !== 0) t.fail(`kernel report in the serial log of "${append}":\n${scan.stdout}${scan.stderr}`);
  });
  qemu.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`guest not READY after 240 s (${append}); serial tail:\n${serial.slice(-3000)}`)), 240_000);
    qemu.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`QEMU exited (${String(code)}) before READY (${append}): ${stderr.trim()}\nserial tail:\n${serial.slice(-3000)}`));
    });
    qemu.stdout.on('data', (d: Buffer) => {
      serial += d.toString();
      if (!/^SP HINTS READY [^\r\n]*\r?\n/m.test(serial) || qemu.pid === undefined) return;
      clearTimeout(timer);
      const k = /^SP HINTS KERNEL start=(0x[0-9a-f]+) end=(0x[0-9a-f]+)/m.exec(serial);
      resolvePromise({ pid: qemu.pid, serial: serial.replace(/\r/g, ''), kernel: { start: Number(k?.[1] ?? NaN), end: Number(k?.[2] ?? NaN) } });
    });
  });
}

/** The 4 bytes at guest-physical `gpa` as a little-endian number, read out of QEMU. */
async function magicAt(pid: number, gpa: number): Promise<number> {
  const ram = await findGuestRam(pid, RAM_MIB * MiB);
  const fh = await open(`/proc/${pid}/mem`, 'r');
  try {
    const b = Buffer.alloc(4);
    await fh.read(b, 0, 4, Number(ram.start) + gpa);
    return b.readUInt32LE(0);
  } finally {
    await fh.close();
  }
}

/** page_hints kernel lines of a boot's serial log. */
const kernelLines = (serial: string): string[] => serial.split('\n').filter((l) => /^(\[ *[0-9.]+\] )?page_hints: /.test(l));

/** The initrd QEMU loaded, from the kernel's RAMDISK line of a boot. */
let ramdisk: { start: number; end: number } | undefined;

if (!existsSync(kernel) || !existsSync(initrd) || stale) {
  const why = stale ? `${kernel} was built from another version of native/kernel` : `no ${kernel} / ${initrd}`;
  test.skip(`hint table placement in a patched guest (${why}: run npm run test:kernel, which builds them and runs this test)`, () => {});
} else {
  test.serial('a safe hole gets the table', async (t) => {
    const gpa = 64 * MiB;
    const { pid, serial, kernel: k } = await boot(t, `page_hints=256K@${gpa},100`);
    const lines = kernelLines(serial);
    t.is(lines.length, 1, lines.join('\n'));
    t.regex(lines[0] ?? '', /page_hints: \d+ page frames in \[mem 0x0*4000000-0x0*4040000\], every 100 ms$/);
    const table = await readHintTable(pid, { gpa, ramBytes: RAM_MIB * MiB, holeBytes: 256 * 1024 });
    t.is(table.header.pageCount, RAM_END / 4096);
    t.true(k.end <= gpa || k.start >= gpa + 256 * 1024, `kernel ${hex(k.start)}-${hex(k.end)}`);
    const rd = /RAMDISK: \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\]/.exec(serial);
    if (rd !== null) ramdisk = { start: Number(rd[1]), end: Number(rd[2]) + 1 };
    t.truthy(ramdisk, 'the kernel printed where the initrd is');
  });

  // Each refused placement: its message, no other page_hints line, no table at the address, and
  // the guest still booted (boot() resolved at READY).
  const refusals: { name: string; args: string; message: RegExp; gpa?: number }[] = [
    { name: 'misaligned address', args: 'page_hints=256K@0x4000800,100', message: /refusing page_hints=256K@0x4000800,100: .*page aligned: no hints published$/, gpa: 0x4000000 },
    { name: 'misaligned size', args: 'page_hints=0x40800@64M,100', message: /refusing page_hints=0x40800@64M,100: .*page aligned: no hints published$/, gpa: 64 * MiB },
    { name: 'too small for every frame', args: `page_hints=${MIN_HOLE - 4096}@64M,100`, message: /refusing \[mem 0x0*4000000-0x0*4020000\]: too small for the table of 131040 page frames \(needs 131104 bytes\): no hints published$/, gpa: 64 * MiB },
    { name: 'below 1 MiB', args: 'page_hints=256K@512K,100', message: /refusing \[mem 0x0*80000-0x0*c0000\]: below 1 MiB, which is kept for firmware and the real-mode trampoline: no hints published$/, gpa: 512 * 1024 },
    // memmap=4M$96M: firmware-reserved memory in the middle of RAM (e820 "reserved").
    { name: 'not RAM (e820 reserved)', args: 'memmap=4M$96M page_hints=256K@97M,100', message: /refusing \[mem 0x0*6100000-0x0*6140000\]: not all of it is RAM: no hints published$/, gpa: 97 * MiB },
    { name: 'beyond the end of RAM', args: 'page_hints=256K@1G,100', message: /refusing \[mem 0x0*40000000-0x0*40040000\]: beyond the end of RAM at 0x0*1ffe0000: no hints published$/ },
    { name: 'across the end of RAM', args: `page_hints=256K@${RAM_END - 128 * 1024},100`, message: /refusing \[mem 0x0*1ffc0000-0x0*20000000\]: beyond the end of RAM at 0x0*1ffe0000: no hints published$/, gpa: RAM_END - 128 * 1024 },
    // Without KASLR the kernel is where it was linked, at 16 MiB.
    { name: 'the kernel image (nokaslr)', args: 'nokaslr page_hints=256K@16M,100', message: /refusing \[mem 0x0*1000000-0x0*1040000\]: overlaps the kernel image \[mem 0x0*1000000-0x[0-9a-f]+\]: no hints published$/, gpa: 16 * MiB },
  ];
  for (const r of refusals) {
    test.serial(`refused: ${r.name}`, async (t) => {
      const { pid, serial } = await boot(t, r.args);
      const lines = kernelLines(serial);
      t.is(lines.length, 1, lines.join('\n'));
      t.regex(lines[0] ?? '', r.message);
      if (r.gpa !== undefined) t.not(await magicAt(pid, r.gpa), HINT_MAGIC, `no table at ${hex(r.gpa)}`);
    });
  }

  test.serial('refused: the initrd', async (t) => {
    // The table's first page inside the initrd QEMU loaded below the top of RAM (found by the safe
    // boot above): a hole of the smallest size that ends where the initrd ends.
    if (ramdisk === undefined) return t.fail('the safe boot did not say where the initrd is');
    const end = Math.floor(ramdisk.end / 4096) * 4096;
    const gpa = end - MIN_HOLE;
    t.true(gpa >= ramdisk.start, `initrd ${hex(ramdisk.start)}-${hex(ramdisk.end)} holds ${MIN_HOLE} bytes`);
    const { pid, serial } = await boot(t, `page_hints=${MIN_HOLE}@${gpa},100`);
    const lines = kernelLines(serial);
    t.is(lines.length, 1, lines.join('\n'));
    t.regex(lines[0] ?? '', /refusing \[mem 0x[0-9a-f]+-0x[0-9a-f]+\]: overlaps the initrd \[mem 0x[0-9a-f]+-0x[0-9a-f]+\]: no hints published$/);
    t.not(await magicAt(pid, gpa), HINT_MAGIC);
  });

  test.serial('KASLR keeps the kernel out of a large hole', async (t) => {
    // 384 MiB of the 512: a kernel image (~22 MiB with the debug options) placed at random without
    // regard to the hole would overlap it 86% of the time.
    const gpa = 64 * MiB;
    const size = 384 * MiB;
    const starts: number[] = [];
    for (let i = 0; i < 4; i++) {
      const { pid, serial, kernel: k } = await boot(t, `page_hints=${size}@${gpa},100`);
      t.false(Number.isNaN(k.start) || Number.isNaN(k.end), 'the guest printed where its kernel is');
      t.true(k.end <= gpa || k.start >= gpa + size, `boot ${i + 1}: kernel ${hex(k.start)}-${hex(k.end)} outside the hole`);
      t.deepEqual(kernelLines(serial).map((l) => l.replace(/^.*page_hints: /, '')), ['131040 page frames in [mem 0x0000000004000000-0x000000001c000000], every 100 ms']);
      const table = await readHintTable(pid, { gpa, ramBytes: RAM_MIB * MiB, holeBytes: size });
      t.is(table.header.pageCount, RAM_END / 4096);
      starts.push(k.start);
      process.kill(pid, 'SIGKILL'); // one 512 MiB guest at a time
    }
    t.log(`kernel placed at ${starts.map(hex).join(', ')}`);
    t.true(starts.some((s) => s !== 16 * MiB), 'KASLR moved the kernel from 16 MiB in at least one boot');
  });
}
