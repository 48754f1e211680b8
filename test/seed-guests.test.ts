/**
 * The seed benchmarks' foundations, for real: the memory cgroup (sp-launch --cgroup charges a
 * process's page cache there and the limit caps it; removed on remove() and on SIGTERM), the
 * Debian 12 image (built by scripts/qemu/debian/build-image.sh from Debian's packages, ~35 s cold,
 * cached after) booted as two TCG guests with systemd, each workload's short smoke run, and the
 * runner end to end, its run file through the report (bench:seed). Needs root; does not touch /sys/kernel/mm/ksm (the runner runs --ksm off).
 */
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { createMemoryCgroup } from '../scripts/qemu/cgroup.js';
import { createReadThrottle, diskOf } from '../scripts/qemu/disk-throttle.js';
import { performance } from 'node:perf_hooks';
import { ensureLab, stopAll } from '../scripts/qemu/harness.js';
import { ensureSeedImage, makeRunDir, startDebianGuests, dropFromHostCache } from '../scripts/qemu/debian.js';
import { ZIPF_FILE, parseResult, workloadScript, type ScriptWorkload } from '../scripts/bench/seed-workloads.js';
import { fioZipfTrace } from '../scripts/bench/zipf-trace.js';

const run = promisify(execFile);
const MIB = 1 << 20;
const root = path.resolve(__dirname, '../..');

test.after.always(async () => {
  await stopAll();
});

test.serial('a memory cgroup: sp-launch --cgroup charges the page cache a reader fills, the limit caps it, remove() deletes it', async (t) => {
  const lab = await ensureLab();
  const dir = mkdtempSync('/var/tmp/sp-cgroup-test-');
  const file = path.join(dir, 'data');
  try {
    writeFileSync(file, randomBytes(160 * MIB));
    const cg = createMemoryCgroup('test', 64);
    t.true(existsSync(path.join(cg.dir, 'cgroup.procs')));
    t.is(cg.limitBytes, 64 * MIB);
    // A reader outside the cgroup: nothing is charged to it.
    await dropFromHostCache(file);
    await run('sh', ['-c', `cat ${file} > /dev/null`]);
    t.true(cg.usage().fileBytes < 4 * MIB, `outside reader charged ${cg.usage().fileBytes} bytes`);
    // The same read through sp-launch --cgroup: charged, and held under the 64 MiB limit.
    await dropFromHostCache(file);
    await run(lab.helpers.launch, ['--cgroup', cg.dir, '--', 'sh', '-c', `cat ${file} > /dev/null`]);
    const u = cg.usage();
    t.true(u.fileBytes > 16 * MIB, `reader in the cgroup: only ${u.fileBytes} bytes of page cache charged`);
    t.true(u.currentBytes <= 64 * MIB, `charge ${u.currentBytes} over the 64 MiB limit`);
    await cg.remove();
    t.false(existsSync(cg.dir));
    // A bad directory is refused before exec, naming it.
    const bad = await run(lab.helpers.launch, ['--cgroup', '/nonexistent-cg', '--', 'true']).catch((e: { code: number; stderr: string }) => e);
    t.is((bad as { code: number }).code, 127);
    t.regex((bad as { stderr: string }).stderr, /\/nonexistent-cg\/cgroup\.procs/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.serial('a read throttle: a process moved in reads the disk at the rate, host cache hits are not slowed, remove() lets it go', async (t) => {
  const dir = mkdtempSync('/var/tmp/sp-throttle-test-');
  const file = path.join(dir, 'data');
  const rate = 16 * MIB;
  try {
    writeFileSync(file, randomBytes(48 * MIB));
    const throttle = createReadThrottle('test', file, rate);
    t.regex(readFileSync(path.join(throttle.dir, 'blkio.throttle.read_bps_device'), 'utf8'), new RegExp(`^${throttle.device} ${rate}\\n`));
    // A reader that waits for its line on stdin, so it is inside before it reads.
    const timedRead = async (): Promise<number> => {
      const child = spawn('sh', ['-c', `read go; exec dd if=${file} of=/dev/null bs=1M status=none`], { stdio: ['pipe', 'ignore', 'inherit'] });
      throttle.add(child.pid!);
      const start = performance.now();
      child.stdin.end('go\n');
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      t.is(code, 0);
      return (performance.now() - start) / 1000;
    };
    await dropFromHostCache(file);
    const slow = await timedRead();
    // 48 MiB at 16 MiB/s: 3 s, less the first slice the throttle lets through.
    t.true(slow >= 2, `48 MiB read from disk in ${slow.toFixed(2)} s at 16 MiB/s`);
    t.true(throttle.readBytes() >= 40 * MIB, `the group read ${throttle.readBytes()} bytes from ${throttle.device}`);
    // Now in the host cache: the same read is not throttled.
    const cached = await timedRead();
    t.true(cached < slow / 4, `cached read ${cached.toFixed(2)} s, from disk ${slow.toFixed(2)} s`);
    throttle.remove();
    t.false(existsSync(throttle.dir));
    throttle.remove();
    // Bad input is refused before anything is made.
    t.throws(() => createReadThrottle('test', file, 0), { message: /bytes per second >= 1, got 0/ });
    t.throws(() => createReadThrottle('test', '/proc/self/status', rate), { message: /not a block device|is on device/ });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.serial('diskOf: a file on a partition is throttled on its whole disk (a loop device with an MBR partition, ext4 on it)', async (t) => {
  const dir = mkdtempSync('/tmp/sp-disk-of-');
  const image = path.join(dir, 'disk.img');
  const mnt = path.join(dir, 'mnt');
  let loop: string | undefined;
  let node: string | undefined;
  let mounted = false;
  const sh = (cmd: string, args: string[]) => promisify(execFile)(cmd, args);
  try {
    // 64 MiB with one Linux partition from sector 2048 to the end, written by hand (no fdisk here).
    const mbr = Buffer.alloc(512);
    mbr.writeUInt8(0x83, 446 + 4);
    mbr.writeUInt32LE(2048, 446 + 8);
    mbr.writeUInt32LE(64 * 2048 - 2048, 446 + 12);
    mbr.writeUInt16LE(0xaa55, 510);
    writeFileSync(image, mbr);
    await sh('truncate', ['-s', '64M', image]);
    loop = (await sh('losetup', ['-fP', '--show', image])).stdout.trim();
    const name = path.basename(loop);
    // The kernel may or may not have scanned the table on attach: partx adds what it missed.
    if (!existsSync(`/sys/class/block/${name}p1`)) await sh('partx', ['-a', loop]);
    const partDev = readFileSync(`/sys/class/block/${name}p1/dev`, 'utf8').trim();
    const diskDev = readFileSync(`/sys/class/block/${name}/dev`, 'utf8').trim();
    // No udev here to make the partition's node: make it from the kernel's numbers.
    if (!existsSync(`${loop}p1`)) {
      const [major, minor] = partDev.split(':') as [string, string];
      await sh('mknod', [`${loop}p1`, 'b', major, minor]);
      node = `${loop}p1`;
    }
    await sh('mkfs.ext4', ['-q', `${loop}p1`]);
    await sh('mkdir', ['-p', mnt]);
    await sh('mount', [`${loop}p1`, mnt]);
    mounted = true;
    writeFileSync(path.join(mnt, 'f'), 'x');
    t.not(partDev, diskDev);
    t.is(diskOf(path.join(mnt, 'f')), diskDev, `the partition ${partDev} is on the disk ${diskDev}`);
    t.is(diskOf(image), diskOf(dir), 'a file on a whole disk or its partition: the disk under /tmp either way');
  } finally {
    if (mounted) await sh('umount', [mnt]);
    if (node) rmSync(node, { force: true });
    if (loop) await sh('losetup', ['-d', loop]);
    rmSync(dir, { recursive: true, force: true });
  }
});

test.serial('a memory cgroup is removed when its process is ended by SIGTERM', async (t) => {
  const js = `const { createMemoryCgroup } = require(${JSON.stringify(path.join(root, 'dist/scripts/qemu/cgroup.js'))});
const cg = createMemoryCgroup('sigterm', 128); console.log(cg.dir); setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['-e', js], { stdio: ['ignore', 'pipe', 'inherit'] });
  const dir = await new Promise<string>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(d.toString().trim())));
  t.true(existsSync(dir));
  child.kill('SIGTERM');
  const [, signal] = await new Promise<[number | null, string | null]>((resolve) => child.once('exit', (c, s) => resolve([c, s])));
  t.is(signal, 'SIGTERM');
  t.false(existsSync(dir), `${dir} left behind`);
});

test.serial('two Debian 12 guests boot with systemd in a memory cgroup, and each workload runs briefly', async (t) => {
  const image = await ensureSeedImage();
  t.log(`image ${image.path}: ${JSON.stringify(image.manifest)} (ensure ${image.ensureMs} ms)`);
  const runDir = makeRunDir();
  const cg = createMemoryCgroup('smoke', 2048);
  try {
    const gs = await startDebianGuests(image, runDir, [
      { name: 'smoke-a', memMiB: 512, cgroup: cg.dir },
      { name: 'smoke-b', memMiB: 512, cgroup: cg.dir },
    ]);
    for (const g of gs) t.log(`${g.guest.name}: login ${g.loginMs} ms, READY ${g.readyMs} ms`);
    const [a, b] = gs.map((g) => g.guest);
    if (!a || !b) throw new Error('two guests expected');
    t.deepEqual(cg.pids().sort(), [a.pid, b.pid].sort(), 'both QEMUs in the cgroup');
    t.true(cg.usage().fileBytes > 8 * MIB, 'the images read at boot are charged as page cache');
    t.true(gs.every((g) => g.loginMs !== undefined), 'a login prompt on each serial console');
    for (const g of [a, b]) {
      const r = await g.exec('cat /proc/1/comm /etc/debian_version; uname -r; hostname');
      const [init, version, kernel] = r.stdout.split('\n');
      t.is(init, 'systemd');
      t.regex(version ?? '', /^12\./);
      t.regex(kernel ?? '', /^6\.12\./);
    }
    const opts = { memMiB: 32, fileMiB: 64, zipfTheta: 1.2 };
    const smoke = async (g: typeof a, name: ScriptWorkload, seconds: number): Promise<Record<string, unknown>> => {
      const r = await g.exec(workloadScript(name, { ...opts, seconds }), (seconds + 240) * 1000);
      t.is(r.code, 0, `${name}: ${r.stdout.slice(-400)} ${r.stderr.slice(-400)}`);
      return parseResult(name, r.stdout);
    };
    const [desktop, fio] = await Promise.all([smoke(a, 'desktop', 12), smoke(b, 'fio-zipf', 5)]);
    t.log(`desktop ${JSON.stringify(desktop)}; fio-zipf ${JSON.stringify(fio)}`);
    t.true((desktop['launches'] as number) >= 3 && (desktop['fonts'] as number) > 0);
    t.true((fio['read_iops'] as number) > 0);
    // The Zipf model's trace (zipf-trace.ts, fio on this host) is the guests' own sequence of reads:
    // 2000 reads of the guest's fio, past one 64 MiB file's worth and logged, equal the host's.
    const logged = await b.exec(
      `fio --name=zipf --filename=${ZIPF_FILE} --size=64M --io_size=8000k --rw=randread --random_distribution=zipf:1.2 --bs=4k --ioengine=psync --write_iolog=/tmp/zipf.iolog --output-format=terse >/dev/null && awk '$3 == "read" { print $4 / 4096 }' /tmp/zipf.iolog`,
      120_000,
    );
    t.is(logged.code, 0, logged.stderr);
    const hostTrace = fioZipfTrace({ fileMiB: 64, theta: 1.2, reads: 2000 });
    t.deepEqual(logged.stdout.trim().split('\n').map(Number), [...hostTrace], "the guest's 2000 reads are the host's");
    const [bonnie, compile] = await Promise.all([smoke(a, 'bonnie', 300), smoke(b, 'compile', 20)]);
    t.log(`bonnie ${JSON.stringify(bonnie)}; compile ${JSON.stringify(compile)}`);
    // The char tests are slow enough to time under TCG; the block ones on a 64 MiB file may be
    // too fast for bonnie++ ("+++++", null here).
    for (const k of ['putc_kps', 'getc_kps']) t.true((bonnie[k] as number) > 0, k);
    for (const k of ['put_block_kps', 'rewrite_kps', 'get_block_kps', 'seeks_per_s']) t.true(bonnie[k] === null || (bonnie[k] as number) > 0, k);
    t.true(Array.isArray(compile['build_seconds']) && typeof compile['builds'] === 'number');
  } finally {
    await stopAll();
    await cg.remove();
  }
});

test.serial('the runner: bad options exit 2 naming them; a boot run with the engines writes samples of KSM, host cache and QEMU reads, and the report reads it', async (t) => {
  const cli = path.join(root, 'dist/scripts/bench/seed.js');
  const bad = await run(process.execPath, [cli, '--workload', 'nope']).catch((e: { code: number; stderr: string }) => e);
  t.is((bad as { code: number }).code, 2);
  t.regex((bad as { stderr: string }).stderr, /--workload must be one of boot, compile, bonnie, fio-zipf, desktop/);
  const dir = mkdtempSync('/var/tmp/sp-seed-runner-');
  try {
    const out = path.join(dir, 'boot.json');
    const r = await run(process.execPath, [cli, '--workload', 'boot', '--seconds', '6', '--ksm', 'off', '--engine', 'on', '--host-cache', 'drop-all', '--drop-interval', '2', '--interval', '1', '--out', out], {
      maxBuffer: 1 << 24,
    });
    const last = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { ready_s: number[]; login_s: (number | null)[]; samples: number; peak_host_cache_mib: number };
    t.log(r.stdout);
    t.is(last.ready_s.length, 2);
    t.true(last.login_s.every((x) => typeof x === 'number'));
    t.true(last.peak_host_cache_mib > 8, 'the images were sampled in the host cache');
    const file = JSON.parse(readFileSync(out, 'utf8')) as { samples: { phase: string; imageCacheMiB: number[] }[] };
    t.is(file.samples.length, last.samples);
    t.true(file.samples.some((s) => s.phase === 'booting' && s.imageCacheMiB.length === 2));
    t.true(file.samples.some((s) => s.phase === 'boot'));
    // QEMU's reads (/proc/PID/io) sampled from its start, and the report made from this run file.
    const qemuReads = (file.samples as unknown as { phase: string; qemu: { rcharMiB?: number }[] }[]).filter((s) => s.phase === 'booting' && s.qemu.length === 2);
    t.true(qemuReads.length > 0 && qemuReads.every((s) => s.qemu.every((q) => typeof q.rcharMiB === 'number')), 'QEMU reads sampled while booting');
    const report = path.join(dir, 'report');
    const rr = await run(process.execPath, [path.join(root, 'dist/scripts/bench/seed-report-cli.js'), '--runs', out, '--out', report, '--measure', 'none', '--plots', 'off']);
    const line = JSON.parse(rr.stdout.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
    t.is(line['runs'], 1);
    t.regex(readFileSync(path.join(report, 'report.md'), 'utf8'), /\| boot\.json \| boot \| lookahead \| 2 × 512 MiB \|/);
    // The engine path: both engines scanned the guests the way ksmd runs (1000 pages / 20 ms).
    const engine = (JSON.parse(readFileSync(out, 'utf8')) as { summary: { engine: { off: Record<string, number>; on: Record<string, number>; early: Record<string, number> } } }).summary.engine;
    t.true(engine.off['pages_scanned']! > 10_000 && engine.on['pages_scanned']! > 10_000 && engine.early['pages_scanned']! > 10_000, JSON.stringify(engine));
    t.is(engine.on['lookahead_early'], 0);
    t.is(typeof engine.early['lookahead_early'], 'number', 'the third engine, lookahead early, counts the merges the gate held back');
    // The same merges with lookahead on and off, near enough: the two engines read the live, booting
    // guests a batch apart, so each sees pages the other did not, and while pages_shared climbs an
    // engine a few batches ahead in its pass averages higher. Seven runs here were 0.0-0.4% apart,
    // one CI run 1.3% (9137 vs 9014), one 5.1% (8439 vs 8011, 17 vs 18 full scans in the window).
    // native/core/test/test_lookahead.c holds them to equal counters on memory read alike.
    t.true(Math.abs(engine.on['avg_pages_shared']! - engine.off['avg_pages_shared']!) <= 0.1 * engine.off['avg_pages_shared']! && engine.off['avg_pages_shared']! > 1000, JSON.stringify(engine));
    t.is(typeof (line['lookahead_shared_ratio'] as Record<string, unknown>)['boot'], 'number');
    // The drop-all path ran alongside: the images were dropped while the workload ran.
    const run1 = JSON.parse(readFileSync(out, 'utf8')) as { options: { hostCache: string }; samples: { phase: string; imageCacheMiB: number[] }[] };
    t.is(run1.options.hostCache, 'drop-all');
    const inBoot = run1.samples.filter((s) => s.phase === 'boot').map((s) => s.imageCacheMiB.reduce((a, b) => a + b, 0));
    t.true(Math.min(...inBoot) < 0.5 * last.peak_host_cache_mib, `image cache while dropping: ${inBoot.join(', ')} MiB; peak ${last.peak_host_cache_mib}`);
    const badCache = await run(process.execPath, [cli, '--workload', 'boot', '--host-cache', 'some']).catch((e: { code: number; stderr: string }) => e);
    t.is((badCache as { code: number }).code, 2);
    t.regex((badCache as { stderr: string }).stderr, /--host-cache must be none, drop-all, scrub, got "some"/);
    const badFree = await run(process.execPath, [cli, '--workload', 'boot', '--init-on-free', 'yes']).catch((e: { code: number; stderr: string }) => e);
    t.is((badFree as { code: number }).code, 2);
    t.regex((badFree as { stderr: string }).stderr, /--init-on-free must be on or off, got "yes"/);
    const badLimit = await run(process.execPath, [cli, '--workload', 'boot', '--limit', '1000']).catch((e: { code: number; stderr: string }) => e);
    t.is((badLimit as { code: number }).code, 2);
    t.regex((badLimit as { stderr: string }).stderr, /--limit must be MiB \(at least 1536: the guests' RAM and QEMU's\), tight or off, got "1000"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.serial('the runner\'s wss workload: the estimator on both Debian guests while their loops grow and shrink, judged pass by pass, and the report reads it', async (t) => {
  const cli = path.join(root, 'dist/scripts/bench/seed.js');
  const short = await run(process.execPath, [cli, '--workload', 'wss', '--seconds', '5']).catch((e: { code: number; stderr: string }) => e);
  t.is((short as { code: number }).code, 2);
  t.regex((short as { stderr: string }).stderr, /--seconds for wss must be at least 10 \(one second per pass\), got "5"/);
  const dir = mkdtempSync('/var/tmp/sp-seed-wss-');
  try {
    const out = path.join(dir, 'seed-wss.json');
    // 2 s passes: one idle, then 3 each at 128, 256 and 128 MiB of loops per 512 MiB guest.
    const r = await run(process.execPath, [cli, '--workload', 'wss', '--seconds', '20', '--ksm', 'off', '--out', out], { maxBuffer: 1 << 24 });
    t.log(r.stdout);
    const file = JSON.parse(readFileSync(out, 'utf8')) as {
      summary: Record<string, number | null>;
      wss: { intervalS: number; loopsMiB: number[]; errorPct: number; guests: { changes: { truthMiB: number }[]; passes: { excused: boolean; settled: boolean; errorPct: number }[] }[] };
    };
    t.is(file.wss.intervalS, 2);
    t.deepEqual(file.wss.loopsMiB, [128, 128]);
    for (const g of file.wss.guests) {
      t.deepEqual(g.changes.map((c) => c.truthMiB), [128, 256, 128]);
      t.is(g.passes.length, 9);
      // Once a loop has run through a whole window, the estimate is within the 10%.
      for (const p of g.passes.filter((x) => x.settled)) t.true(p.errorPct <= 10, JSON.stringify(p));
    }
    t.is(typeof file.summary['wss_error_pct'], 'number');
    const report = path.join(dir, 'report');
    const rr = await run(process.execPath, [path.join(root, 'dist/scripts/bench/seed-report-cli.js'), '--runs', out, '--out', report, '--table', 'wss', '--measure', 'none', '--plots', 'off']);
    const line = JSON.parse(rr.stdout.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
    // The report's tenth is of the run's own figure: rounding the summary's two decimals again
    // can differ (CI at fc3927d: a figure of 7.345 to 7.35 was 7.35 there, whose tenth is 7.4, where the report said 7.3).
    t.is(line['wss_error_pct'], Math.round(file.wss.errorPct * 10) / 10);
    t.is(file.summary['wss_error_pct'], Math.round(file.wss.errorPct * 100) / 100);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.serial("the runner's scrub policy: the agent's exclusive-cache scrub drops image pages both guests hold, and the Zipf table reads the run", async (t) => {
  const cli = path.join(root, 'dist/scripts/bench/seed.js');
  const dir = mkdtempSync('/var/tmp/sp-seed-scrub-');
  try {
    const out = path.join(dir, 'seed-fio-zipf-scrub.json');
    // fio lays out a 64 MiB file in each guest and reads it: its blocks are in the guest's page
    // cache and, through QEMU's cache=writeback, in the host's: what a scrub drops.
    const r = await run(process.execPath, [cli, '--workload', 'fio-zipf', '--seconds', '20', '--file-mib', '64', '--ksm', 'off', '--host-cache', 'scrub', '--drop-interval', '4', '--interval', '1', '--out', out], {
      maxBuffer: 1 << 24,
    });
    t.log(r.stdout);
    const file = JSON.parse(readFileSync(out, 'utf8')) as {
      options: { hostCache: string };
      summary: Record<string, number>;
      scrubs: { cachedPages: number; inGuestPages: number; droppedPages: number; dirtySkipped: number }[];
    };
    t.is(file.options.hostCache, 'scrub');
    t.true(file.scrubs.length >= 2, `${file.scrubs.length} scrubs`);
    t.is(file.summary['scrubs'], file.scrubs.length);
    t.is(file.summary['pages_dropped'], file.scrubs.reduce((a, s) => a + s.droppedPages, 0));
    t.true((file.summary['pages_dropped'] ?? 0) > 0, 'some image pages a guest holds were dropped');
    // Dropped only what a guest holds, and never a dirty page.
    for (const s of file.scrubs) t.true(s.droppedPages + s.dirtySkipped <= s.inGuestPages && s.inGuestPages <= s.cachedPages, JSON.stringify(s));
    t.true((file.summary['scrub_cpu_pct'] ?? -1) > 0);
    const report = path.join(dir, 'report');
    const rr = await run(process.execPath, [path.join(root, 'dist/scripts/bench/seed-report-cli.js'), '--runs', out, '--out', report, '--table', 'zipf', '--measure', 'none', '--plots', 'off']);
    const line = JSON.parse(rr.stdout.trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
    t.is(typeof line['zipf_hit_ratio_ksm_exclusive'], 'number');
    t.regex(readFileSync(path.join(report, 'report.md'), 'utf8'), /\| KSM-exclusive \(our scrub\) \| \d\.\d{3} \|/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
