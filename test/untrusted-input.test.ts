// What ksm-agent (root) does with what other processes choose: their argv[0] and comm, their QEMU
// -name, the files their command line names, and a guest's hint table header. Each test tries the
// bad input on real processes (a real paused QEMU, impostors started here) and checks the result:
//   1. a VM is a process running a root-installed QEMU binary, never one that only calls itself so;
//   2. names are escaped wherever they are printed (tables, errors, logs) and bounded; JSON keeps
//      them exactly;
//   3. the cache scrub examines only the images a VM has open, never a path merely named;
//   4. a hostile hint header is refused before anything is allocated for it.
// Needs root. Does not touch /sys/kernel/mm/ksm. Every process started here is killed by its pid.
import test from 'ava';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdtemp, open, readFile, readdir, readlink, rm, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createLogger } from '../lib/agent/log.js';
import { vmTable } from '../lib/cli/commands/vms.js';
import { InvalidArgumentError, NotFoundError } from '../lib/errors.js';
import { MAX_NAME_CHARS, boundText, escapeText } from '../lib/escape.js';
import { scrubCache, vmCacheFiles } from '../lib/exclusive-cache.js';
import { renderPairs, renderTable } from '../lib/format.js';
import { findGuestRam } from '../lib/guest-ram.js';
import { HINT_HEADER_BYTES, HINT_MAGIC, HINT_MAX_PAGE_COUNT, HINT_VERSION, HintTableError, encodeHintHeader, parseHintHeader, readHintTable } from '../lib/hints.js';
import { parseQemuSize } from '../lib/qemu-cmdline.js';
import { qemuExeVerdict } from '../lib/qemu-exe.js';
import { findVm, listVms } from '../lib/vms.js';
import type { VmRow } from '../lib/vm-rows.js';
import { runCli } from './helpers/agent.js';
import { nodeNamedQemu, sleepCopyNamedQemu, sleepNamedQemu, stopImpostors } from './helpers/impostor.js';
import { NOBODY } from './helpers/nobody.js';
import { stopChild } from './helpers/processes.js';
import { hmp, qemuBinary, startQemu, stopAllQemu } from './helpers/qemu.js';
import type { Qemu } from './helpers/qemu.js';
import { waitFor } from './helpers/wait.js';

const MiB = 1024 * 1024;
const EXIT_NOT_FOUND = 3;
/** Clears the screen, then forges a root prompt on a new line. */
const HOSTILE = '\x1b[2J\nroot$ ';
/** A right-to-left override and 100 KB. */
const LONG = `\u202e${'x'.repeat(100_000)}`;
/** What a terminal must never receive from a name: ESC, CR, LF, C1 CSI, bidi overrides. */
const RAW_CONTROL = /[\x1b\r\x9b\u202a-\u202e\u2066-\u2069]/;

let dir = '';
let imageA = '';
let imageB = '';
let hostile: Qemu; // -name HOSTILE, -drive A (open), -drive B (closed after start)
let long: Qemu; // -name LONG

/** The regular files process pid has open, by path. */
async function openPaths(pid: number): Promise<string[]> {
  const out: string[] = [];
  for (const fd of await readdir(`/proc/${pid}/fd`)) out.push(await readlink(`/proc/${pid}/fd/${fd}`).catch(() => ''));
  return out;
}

test.before(async () => {
  await qemuBinary();
  // /var/tmp, not /tmp: /tmp may be tmpfs, which has no page cache to examine.
  dir = await mkdtemp('/var/tmp/sp-untrusted-');
  imageA = path.join(dir, 'a.img');
  imageB = path.join(dir, 'b.img');
  for (const img of [imageA, imageB]) {
    await writeFile(img, randomBytes(MiB));
  }
  const monitor = path.join(dir, 'hostile.mon');
  [hostile, long] = await Promise.all([
    startQemu(
      ['-name', HOSTILE, '-m', '64', '-drive', `file=${imageA},format=raw,if=none,id=d0`, '-drive', `file=${imageB},format=raw,if=none,id=d1`,
        '-monitor', `unix:${monitor},server=on,wait=off`],
      64 * MiB,
    ),
    startQemu(['-name', `guest=${LONG}`, '-m', '64'], 64 * MiB),
  ]);
  // B stays named on the command line, but QEMU no longer has it open.
  await hmp(monitor, 'drive_del d1');
  await waitFor('QEMU to close b.img', 10_000, async () => ((await openPaths(hostile.pid)).includes(imageB) ? undefined : true));
  // Some guest RAM with content, so the engine has pages to track before a cache pass.
  const ram = await findGuestRam(hostile.pid, 64 * MiB);
  const mem = await open(`/proc/${hostile.pid}/mem`, 'r+');
  await mem.write(randomBytes(4 * MiB), 0, 4 * MiB, Number(ram.start) + 8 * MiB);
  await mem.close();
});

test.after.always(async () => {
  await stopImpostors();
  await stopAllQemu();
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

// --- the escape function --------------------------------------------------------------------

test('escapeText shows controls, bidi controls and lone surrogates as visible escapes, keeps printable text', (t) => {
  t.is(escapeText(HOSTILE), '\\x1b[2J\\nroot$ ');
  t.is(escapeText('a\rb\tc\x00d\x7fe\x9bf'), 'a\\rb\\tc\\x00d\\x7fe\\x9bf');
  t.is(escapeText('abc\u202edcba\u2066x\u2069\u200f'), 'abc\\u202edcba\\u2066x\\u2069\\u200f');
  t.is(escapeText('line\u2028sep'), 'line\\u2028sep');
  t.is(escapeText('lone \ud800 high, lone \udc00 low'), 'lone \\ud800 high, lone \\udc00 low');
  t.is(escapeText('back\\slash'), 'back\\\\slash', 'a backslash is escaped, so an escape reads back unambiguously');
  const printable = 'vm-été 日本 🐧 gam,ma "q" \'s\' $x';
  t.is(escapeText(printable), printable);
  for (let c = 0; c <= 0x9f; c++) {
    if (c >= 0x20 && c < 0x7f) continue;
    t.regex(escapeText(String.fromCharCode(c)), /^\\[a-z0-9]+$/, `U+${c.toString(16)} shown as an escape`);
  }
});

test('boundText cuts long text with a marker and never splits a surrogate pair', (t) => {
  t.is(boundText('short', 10), 'short');
  const cut = boundText(LONG, MAX_NAME_CHARS);
  t.is(cut, `${LONG.slice(0, MAX_NAME_CHARS)}…[+${LONG.length - MAX_NAME_CHARS} chars]`);
  const emoji = `${'a'.repeat(9)}🐧🐧`; // the penguin is two code units, at 9-10
  t.is(boundText(emoji, 10), `${'a'.repeat(9)}…[+4 chars]`);
});

test('a QEMU size too large for exact arithmetic is refused, not turned into Infinity', (t) => {
  t.throws(() => parseQemuSize('99999999999999999999T', 'm'), { instanceOf: InvalidArgumentError, message: /is too large/ });
  t.throws(() => parseQemuSize(`1${'0'.repeat(400)}`, 'b'), { instanceOf: InvalidArgumentError, message: /is too large/ });
  t.is(parseQemuSize('4P', 'b'), 4 * 2 ** 50, 'a size that fits is still taken');
});

test('tables and pairs escape every cell: one line per row whatever a name holds', (t) => {
  const table = renderTable(['NAME', 'PID'], [[HOSTILE, '1'], ['\u202eevil', '2']]);
  t.is(table.split('\n').length, 3);
  t.false(RAW_CONTROL.test(table));
  t.regex(table, /^\\x1b\[2J\\nroot\$\s+1$/m);
  const pairs = renderPairs([['VMs', `${HOSTILE} (1)`]]);
  t.is(pairs.split('\n').length, 1);
  t.false(RAW_CONTROL.test(pairs));
});

test('log lines stay one line per event, with no control character, whatever the message and fields hold', (t) => {
  const lines: string[] = [];
  for (const journal of [false, true]) {
    const log = createLogger({ write: (l) => lines.push(l), journal, verbose: true });
    log.warning(`VM ${HOSTILE} opted out`, { vm: HOSTILE, path: '/var/lib/x y\n<3>forged', quoted: 'a"b', long: LONG, n: 3 });
    log.info(HOSTILE);
  }
  t.is(lines.length, 4, 'four events, four lines');
  for (const l of lines) {
    t.false(/[\x00-\x1f\x7f\x9b\u202a-\u202e\u2066-\u2069]/.test(l), JSON.stringify(l));
    t.false(l.includes('\n'));
  }
  t.regex(lines[0] ?? '', /^ksm-agent warning: VM \\x1b\[2J\\nroot\$  opted out vm="\\x1b\[2J\\nroot\$ " path="\/var\/lib\/x y\\n<3>forged" quoted="a\\"b" long="\\u202ex+…\[\+\d+ chars\]" n=3$/);
  t.true((lines[0] ?? '').length < 2000, 'a 100 KB value is bounded');
  t.regex(lines[2] ?? '', /^<4>VM \\x1b/);
});

// --- 1. what makes a VM ---------------------------------------------------------------------

test('rule 1: a real QEMU is a VM; argv[0] or comm "qemu-system-x86_64" alone, or a QEMU-named copy of another program, is not', async (t) => {
  const real = await qemuExeVerdict(hostile.pid);
  t.deepEqual(real, { qemu: true, exe: '/usr/bin/qemu-system-x86_64' });

  const argv0 = await sleepNamedQemu();
  const fakeName = `fake-vm-${process.pid}`;
  const withComm = await nodeNamedQemu(['-name', fakeName, '-m', '64', '-drive', `file=${imageB},format=raw`], [imageB]);
  const inTmp = await sleepCopyNamedQemu('/var/tmp');
  // /run is root's and 0755: the directory chain passes, the file's owner or mode does not.
  const notRoots = await sleepCopyNamedQemu('/run', NOBODY);
  const groupWritable = await sleepCopyNamedQemu('/run', { uid: 0, gid: 0 }, 0o775);
  const cases = [
    [argv0, /executable \/usr\/bin\/sleep is not a QEMU system emulator/],
    [withComm, /executable \S*node\S* is not a QEMU system emulator/],
    [inTmp, /not in a root-only directory: \/var\/tmp is owned by uid 0 with mode 1777/],
    [notRoots, /owned by uid 65534 with mode 755: not a root-installed binary/],
    [groupWritable, /owned by uid 0 with mode 775: not a root-installed binary/],
  ] as const;
  t.is((await readFile(`/proc/${withComm.pid}/comm`, 'utf8')).trim(), 'qemu-system-x86', 'the impostor has QEMU comm');

  const listed = (await listVms({ memory: false })).map((v) => v.pid);
  t.true(listed.includes(hostile.pid), 'the real QEMU is listed');
  for (const [imp, why] of cases) {
    const verdict = await qemuExeVerdict(imp.pid);
    t.false(verdict.qemu, `pid ${imp.pid}`);
    t.regex(verdict.qemu ? '' : verdict.why, why);
    t.false(listed.includes(imp.pid), `impostor ${imp.pid} is not listed`);
    const e = await t.throwsAsync(findVm(imp.pid), { instanceOf: NotFoundError });
    t.regex(e?.message ?? '', new RegExp(`process ${imp.pid} \\(.*\\) is not a QEMU process: its executable`));
  }
  await t.throwsAsync(findVm(fakeName), { instanceOf: NotFoundError, message: new RegExp(`no QEMU VM named "${fakeName}"`) });

  // The CLI shows the same: the impostors are in no table and no JSON.
  const json = await runCli(['vms', '--json']);
  t.is(json.code, 0, json.stderr);
  const pids = (JSON.parse(json.stdout) as VmRow[]).map((r) => r.pid);
  t.true(pids.includes(hostile.pid));
  for (const [imp] of cases) t.false(pids.includes(imp.pid), `ksm-agent vms --json leaves out ${imp.pid}`);
  const text = await runCli(['vms']);
  t.is(text.code, 0, text.stderr);
  t.false(text.stdout.includes(fakeName));
  for (const [imp] of cases) t.false(new RegExp(`\\s${imp.pid}\\s`).test(text.stdout), `ksm-agent vms leaves out ${imp.pid}`);
  // A non-root user cannot read root's /proc/PID/exe: it is told so, not shown argv-only "VMs".
  const asNobody = await runCli(['vms'], { asNobody: true });
  t.is(asNobody.code, 77, asNobody.stdout + asNobody.stderr);
  t.is(asNobody.stdout, '');
  t.regex(asNobody.stderr, /^ksm-agent vms: permission denied: other users' QEMU processes cannot be verified as VMs .*; run as root/);
  const byPid = await runCli(['estimate', '--vm', String(withComm.pid), '--passes', '1']);
  t.is(byPid.code, EXIT_NOT_FOUND, byPid.stderr);
  t.regex(byPid.stderr, new RegExp(`^ksm-agent estimate: process ${withComm.pid} \\(qemu-system-x86\\) is not a QEMU process`));
});

test('rule 1: a QEMU whose binary was deleted while it runs (a package upgrade) is still a VM', async (t) => {
  const bindir = await mkdtemp('/run/sp-upgraded-');
  t.teardown(() => rm(bindir, { recursive: true, force: true }));
  const exe = path.join(bindir, 'qemu-system-x86_64');
  await copyFile(await qemuBinary(), exe);
  // A copy looks for its TCG module next to itself unless told where the package keeps them;
  // -machine none needs no firmware, and still maps guest RAM.
  const child = spawn(exe, ['-accel', 'tcg', '-S', '-nodefaults', '-display', 'none', '-machine', 'none', '-name', 'upgraded', '-m', '32'], {
    stdio: 'ignore',
    env: { ...process.env, QEMU_MODULE_DIR: '/usr/lib/x86_64-linux-gnu/qemu' },
  });
  t.teardown(() => stopChild(child, 1000));
  const pid = child.pid as number;
  await waitFor('the copied QEMU to map its RAM', 30_000, () => findGuestRam(pid, 32 * MiB));
  t.deepEqual(await qemuExeVerdict(pid), { qemu: true, exe }, 'root put it in a root-only directory');
  await unlink(exe);
  t.deepEqual(await qemuExeVerdict(pid), { qemu: true, exe: `${exe} (deleted)` });
  t.is((await listVms({ memory: false })).find((v) => v.pid === pid)?.name, 'upgraded');
});

// --- 2. names shown escaped, kept exact in JSON, bounded --------------------------------------

test('rule 2: ksm-agent vms prints a hostile name escaped in one row; --json keeps it exactly; a 100 KB name is bounded', async (t) => {
  const vms = await listVms({ memory: false });
  t.is(vms.find((v) => v.pid === hostile.pid)?.name, HOSTILE);
  const longVm = vms.find((v) => v.pid === long.pid);
  t.is(longVm?.name, `${LONG.slice(0, MAX_NAME_CHARS)}…[+${LONG.length - MAX_NAME_CHARS} chars]`);
  t.true((longVm?.cmdline.join(' ').length ?? Infinity) < 10_000, 'the command line kept is bounded');

  const text = await runCli(['vms']);
  t.is(text.code, 0, text.stderr);
  t.false(RAW_CONTROL.test(text.stdout), 'no raw ESC, CR, CSI or bidi override reaches the terminal');
  const lines = text.stdout.split('\n');
  const row = lines.find((l) => l.startsWith('\\x1b[2J\\nroot$ '));
  t.truthy(row, text.stdout);
  t.regex(row ?? '', new RegExp(`\\s${hostile.pid}\\s`), 'the name and its pid are on one line');
  t.false(lines.some((l) => l.startsWith('root$')), 'no forged line');
  t.true(lines.some((l) => l.startsWith(`\\u202e${'x'.repeat(MAX_NAME_CHARS - 1)}…[+`)), 'the long name, escaped and cut');
  t.true(lines.every((l) => l.length < 2000), 'no 100 KB row');

  const json = await runCli(['vms', '--json']);
  t.is(json.code, 0, json.stderr);
  const rows = JSON.parse(json.stdout) as VmRow[];
  t.is(rows.find((r) => r.pid === hostile.pid)?.name, HOSTILE, 'JSON keeps the exact name');
  t.is(rows.find((r) => r.pid === long.pid)?.name, longVm?.name);

  // What watch draws on a terminal each second is this same table.
  const drawn = vmTable(rows, 0);
  t.false(RAW_CONTROL.test(drawn));
  t.is(drawn.split('\n').length, rows.length + 2);
});

test('rule 2: estimate, cache, watch and error messages print a hostile name escaped', async (t) => {
  const est = await runCli(['estimate', '--vm', String(hostile.pid), '--passes', '1', '--interval', '0']);
  t.is(est.code, 0, est.stderr);
  t.false(RAW_CONTROL.test(est.stdout + est.stderr));
  t.regex(est.stdout, new RegExp(`^\\\\x1b\\[2J\\\\nroot\\$\\s+${hostile.pid}\\s`, 'm'));

  const cache = await runCli(['cache', '--vm', String(hostile.pid), '--dry-run']);
  t.is(cache.code, 0, cache.stderr);
  t.false(RAW_CONTROL.test(cache.stdout));
  t.regex(cache.stdout, new RegExp(`^VMs\\s+\\\\x1b\\[2J\\\\nroot\\$  \\(${hostile.pid}\\)$`, 'm'));

  const watch = await runCli(['watch', '--count', '1', '--interval', '0.2', '--json']);
  t.is(watch.code, 0, watch.stderr);
  const frames = watch.stdout.trim().split('\n').map((l) => JSON.parse(l) as { vms: VmRow[] });
  t.is(frames.length, 1, 'one JSON object per line');
  t.is(frames[0]?.vms.find((r) => r.pid === hostile.pid)?.name, HOSTILE);

  // "no such VM" lists the running ones: still one line, the hostile one escaped.
  const missing = await runCli(['cache', '--vm', 'sp-no-such-vm', '--dry-run']);
  t.is(missing.code, EXIT_NOT_FOUND, missing.stderr);
  t.is(missing.stderr.trim().split('\n').length, 1, missing.stderr);
  t.false(RAW_CONTROL.test(missing.stderr));
  t.true(missing.stderr.includes('\\x1b[2J\\nroot$ '), missing.stderr);
  t.is(missing.stdout, '');
});

// --- 3. the cache scrub touches only what a VM has open ---------------------------------------

test('rule 3: the scrub examines the image a VM has open, never a path its command line only names', async (t) => {
  const vm = await findVm(hostile.pid, { memory: false });
  t.like(vm.disks.find((d) => d.path === imageA), { open: true, source: 'cmdline' });
  t.like(vm.disks.find((d) => d.path === imageB), { open: false, source: 'cmdline' }, 'B is named, not open');
  t.deepEqual(await vmCacheFiles(vm), [imageA]);

  const dry = await runCli(['cache', '--vm', String(hostile.pid), '--dry-run', '--json']);
  t.is(dry.code, 0, dry.stderr);
  const r = JSON.parse(dry.stdout) as { paths: string[]; files: number };
  t.deepEqual(r.paths, [imageA]);
  t.is(r.files, 1);

  // --file cannot add a file no VM has open (B, or /etc/shadow); it can add an open image.
  for (const file of [imageB, '/etc/shadow']) {
    const bad = await runCli(['cache', '--vm', String(hostile.pid), '--file', file, '--dry-run', '--json']);
    t.is(bad.code, EXIT_NOT_FOUND, bad.stderr);
    t.regex(bad.stderr, new RegExp(`^ksm-agent cache: scrubCache: no QEMU VM on this host has ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} open`));
    t.is(bad.stdout, '');
  }
  const ok = await runCli(['cache', '--vm', String(hostile.pid), '--file', imageA, '--dry-run', '--json']);
  t.is(ok.code, 0, ok.stderr);
  t.deepEqual((JSON.parse(ok.stdout) as { paths: string[] }).paths, [imageA]);

  // The library still takes the caller's own list.
  const lib = await scrubCache({ vms: [hostile.pid], files: [imageB], dryRun: true });
  t.deepEqual(lib.paths, [imageA, imageB]);
});

test('rule 3: a process that only calls itself QEMU, naming and holding a file, gets nothing examined', async (t) => {
  const name = `fake-cache-${process.pid}`;
  const imp = await nodeNamedQemu(['-name', name, '-drive', `file=${imageB},format=raw`, '-drive', 'file=/etc/shadow,format=raw'], [imageB]);
  t.true((await openPaths(imp.pid)).includes(imageB), 'the impostor holds B open');
  for (const vm of [String(imp.pid), name]) {
    const r = await runCli(['cache', '--vm', vm, '--dry-run', '--json']);
    t.is(r.code, EXIT_NOT_FOUND, r.stderr);
    t.is(r.stdout, '', 'no result: nothing examined');
  }
  const lib = await t.throwsAsync(scrubCache({ vms: [imp.pid], dryRun: true }), { instanceOf: NotFoundError });
  t.regex(lib?.message ?? '', /is not a QEMU process/);
  // Held open by the impostor, B is still no VM's image.
  const viaFile = await runCli(['cache', '--vm', String(hostile.pid), '--file', imageB, '--dry-run']);
  t.is(viaFile.code, EXIT_NOT_FOUND, viaFile.stderr);
});

// --- 4. a hostile hint header -----------------------------------------------------------------

const HOLE_GPA = 32 * MiB;

function header(fields: { pageCount: bigint; firstPfn?: bigint; headerSize?: number; seq?: number }): Uint8Array {
  return encodeHintHeader({
    magic: HINT_MAGIC,
    version: HINT_VERSION,
    headerSize: fields.headerSize ?? HINT_HEADER_BYTES,
    seq: fields.seq ?? 2,
    intervalMs: 100,
    firstPfn: fields.firstPfn ?? 0n,
    pageCount: fields.pageCount,
    updateNs: 123n,
  });
}

// Serial: no other test of this file allocates while the memory figure is compared.
test.serial('rule 4: hostile hint headers in guest RAM are refused before the table is allocated', async (t) => {
  const pid = long.pid;
  const ram = await findGuestRam(pid, 64 * MiB);
  const mem = await open(`/proc/${pid}/mem`, 'r+');
  t.teardown(() => mem.close());
  const plant = async (h: Uint8Array): Promise<void> => {
    await mem.write(h, 0, h.length, Number(ram.start) + HOLE_GPA);
  };
  const loc = { gpa: HOLE_GPA, ramBytes: 64 * MiB };

  // A well-formed table is read: the crafted layout is right, so the refusals below are for their reason.
  await plant(header({ pageCount: 16384n }));
  const good = await readHintTable(pid, loc);
  t.is(good.flags.length, 16384);

  const hostileHeaders: [string, Uint8Array, RegExp][] = [
    ['page_count 2^40', header({ pageCount: 2n ** 40n }), /page_count 1099511627776, at most 268435456/],
    ['page_count 2^64-1 (-1 as signed)', header({ pageCount: 2n ** 64n - 1n }), /page_count 18446744073709551615/],
    ['first_pfn 2^40', header({ pageCount: 16n, firstPfn: 2n ** 40n }), /first_pfn 1099511627776 \+ page_count 16 is past frame/],
    ['first_pfn + page_count wrapping 2^64', header({ pageCount: 16n, firstPfn: 2n ** 64n - 8n }), /first_pfn 18446744073709551608/],
    // 16 MiB fits in the RAM after the hole, but no 64 MiB guest has 16 Mi page frames.
    ['page_count 16 Mi in a 64 MiB guest', header({ pageCount: 16n * 1024n * 1024n }), /past the 540672 frames a guest of 67108864 bytes can have/],
    ['page_count past the end of RAM', header({ pageCount: BigInt(HINT_MAX_PAGE_COUNT) }), /runs past the guest's 67108864 bytes of RAM/],
  ];
  for (const [what, h, re] of hostileHeaders) {
    await plant(h);
    const before = process.memoryUsage().arrayBuffers;
    const e = await t.throwsAsync(readHintTable(pid, loc), { instanceOf: HintTableError }, what);
    t.regex(e?.message ?? '', re, what);
    t.true(['BAD_HEADER', 'OUTSIDE_RAM'].includes(e?.problem ?? ''), what);
    // A refused read allocates its 64-byte header only (the 16 Mi header asked for a 16 MiB table).
    t.true(process.memoryUsage().arrayBuffers - before < 4 * MiB, `${what}: nothing big allocated`);
    // The same header checked on its own, as a dump reader would.
    if (e?.problem === 'BAD_HEADER' && !/frames a guest/.test(e.message)) t.throws(() => parseHintHeader(h, what), { instanceOf: HintTableError });
  }
  const past = await t.throwsAsync(readHintTable(pid, { gpa: 64 * MiB, ramBytes: 64 * MiB }), { instanceOf: HintTableError });
  t.is(past?.problem, 'OUTSIDE_RAM', 'a hole address past RAM');
  const huge = await t.throwsAsync(readHintTable(pid, { gpa: 2n ** 62n, ramBytes: 64 * MiB }), { instanceOf: HintTableError });
  t.is(huge?.problem, 'OUTSIDE_RAM');
});
