/**
 * Exclusive caching against a real TCG guest: a raw image of random data on a virtio disk with
 * host caching on (cache=writeback); the guest reads it, so its page cache and the host's both
 * hold every block. scrubCache must drop at least 90% of the duplicated pages from the host cache
 * (mincore before and after, by test/helpers/pagecache.c, not by the engine), keep a dirty range,
 * change nothing in a dry run, and leave the image and what the guest reads back unchanged.
 * Needs root (QEMU harness, /proc/PID/mem) and cachestat(2) (Linux 6.5+). Does not touch
 * /sys/kernel/mm/ksm.
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fstatSync, fsyncSync, linkSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statfsSync, symlinkSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { InvalidArgumentError, NotFoundError } from '../lib/errors.js';
import { scrubCache, vmCacheFiles } from '../lib/exclusive-cache.js';
import type { ScrubResult } from '../lib/exclusive-cache.js';
import { findGuestRam } from '../lib/guest-ram.js';
import { Scanner } from '../lib/scanner.js';
import { findVm } from '../lib/vms.js';
import type { Vm } from '../lib/vms.js';
import { countPagesEqual, startGuests, stopAll, type Guest } from '../scripts/qemu/harness.js';
import { dropGuestCache, guestBuffersKib, holdDisk, readDisk } from './helpers/cache-guest.js';
import { cacheState, cachedCount, evictFile, pagesIn, reclaimedFilePages, unexplainedCacheChanges, type CacheState } from './helpers/pagecache.js';

const PAGE = 4096;
const IMAGE_MIB = 64;
const PAGES = (IMAGE_MIB << 20) / PAGE;
const GUEST_MIB = 256;
/** Rewritten from the host with the same bytes and no fsync: dirty in the host cache. */
const DIRTY = { first: 4096, pages: 64 };
const TMPFS_MAGIC = 0x01021994;

// /var/tmp, not /tmp: /tmp may be tmpfs, whose pages FADV_DONTNEED cannot drop.
const dir = mkdtempSync('/var/tmp/sp-xcache-');
const img = path.join(dir, 'random.img');
const data = randomBytes(IMAGE_MIB << 20);
const imageSum = createHash('sha256').update(data).digest('hex');
const name = `xcache-${process.pid}`;

interface Setup {
  guest: Guest;
  /** Image pages cached on the host and held in guest RAM after the guest read the disk. */
  duplicated: number[];
  /** The host cache with the dirty range written, before any scrub. */
  before?: CacheState;
}
let setup: Setup | undefined;

test.after.always(async () => {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
});

function needSetup(): Setup {
  if (setup === undefined) throw new Error('needs the guest of the earlier test');
  return setup;
}

test.serial('bad input fails with one clear line naming the thing', async (t) => {
  const cases: Array<[Parameters<typeof scrubCache>[0], typeof NotFoundError | typeof InvalidArgumentError, RegExp]> = [
    [{ vms: ['sp-no-such-vm'] }, NotFoundError, /no QEMU VM named "sp-no-such-vm"/],
    [{ vms: [] }, InvalidArgumentError, /no VMs to compare the host cache with/],
    [{ vms: ['x'], files: ['/nonexistent/disk.img'] }, NotFoundError, /file \/nonexistent\/disk\.img does not exist/],
    [{ vms: ['x'], files: ['/dev/null'] }, InvalidArgumentError, /\/dev\/null is not a regular file/],
    [{ vms: ['x'], files: [dir] }, InvalidArgumentError, /sp-xcache-.* is not a regular file/],
    [{ vms: ['x'], passes: 1 }, InvalidArgumentError, /passes 1 is too few for a new scanner/],
    [{ vms: ['x'], passes: 1.5 }, InvalidArgumentError, /passes must be a whole number >= 0, got 1\.5/],
    [{ vms: ['x'], intervalMs: -5 }, InvalidArgumentError, /intervalMs must be a whole number >= 0, got -5/],
    [{ vms: [process.pid] }, NotFoundError, new RegExp(`process ${process.pid} \\(.*\\) is not a QEMU process`)],
  ];
  for (const [opts, type, re] of cases) {
    const e = await t.throwsAsync(scrubCache(opts), { instanceOf: type }, JSON.stringify(opts));
    t.regex(e!.message, re);
    t.false(e!.message.includes('\n'), 'one line');
  }
});

test.serial('vmCacheFiles: the regular files a VM has open, each inode once, a deleted one too; never a path only named', async (t) => {
  const d = mkdtempSync('/var/tmp/sp-xcache-files-');
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  const a = path.join(d, 'a.img');
  writeFileSync(a, 'x'.repeat(PAGE));
  linkSync(a, path.join(d, 'hardlink.img'));
  symlinkSync(a, path.join(d, 'symlink.img'));
  mkdirSync(path.join(d, 'dir'));
  const other = path.join(d, 'other.img');
  writeFileSync(other, 'z'.repeat(PAGE));
  // This process stands in for QEMU: what it holds open is what a VM has open.
  const held = (file: string): number => {
    const fd = openSync(file, 'r');
    t.teardown(() => closeSync(fd));
    return fd;
  };
  const idOf = (fd: number): string => {
    const st = fstatSync(fd, { bigint: true });
    return `${st.dev}:${st.ino}`;
  };
  const viaLink = held(path.join(d, 'hardlink.img'));
  const viaA = held(a);
  const devNull = held('/dev/null');
  // A real deleted-but-open image.
  const gone = path.join(d, 'gone.img');
  writeFileSync(gone, 'y'.repeat(PAGE));
  const goneFd = held(gone);
  unlinkSync(gone);
  // An fd that now holds another file than the one listed (QEMU closed the image, reused the number).
  const reused = held(other);
  const vm: Vm = {
    pid: process.pid,
    uid: 0,
    memMerge: true,
    cmdline: [],
    warnings: [],
    disks: [
      { path: a, source: 'cmdline', open: false },
      { path: path.join(d, 'hardlink.img'), source: 'fd', open: true, fd: viaLink, openFileId: idOf(viaLink) },
      { path: a, source: 'fd', open: true, fd: viaA, openFileId: idOf(viaA) },
      { path: path.join(d, 'symlink.img'), source: 'cmdline', open: false },
      { path: path.join(d, 'dir'), source: 'cmdline', open: false },
      { path: path.join(d, 'missing.img'), source: 'cmdline', open: false },
      { path: '/dev/null', source: 'fd', open: true, fd: devNull, openFileId: idOf(devNull) },
      { path: gone, source: 'fd', open: true, fd: goneFd, deleted: true, openFileId: idOf(goneFd) },
      { path: path.join(d, 'listed-then-closed.img'), source: 'fd', open: true, fd: reused, openFileId: idOf(viaLink) },
      { path: path.join(d, 'no-id.img'), source: 'fd', open: true, fd: reused },
    ],
  };
  t.deepEqual(await vmCacheFiles(vm), [path.join(d, 'hardlink.img'), gone]);
});

test.serial('the guest reads its disk: host and guest page caches both hold the image', async (t) => {
  t.not(statfsSync(dir).type, TMPFS_MAGIC, `${dir} is on tmpfs: its pages cannot be dropped`);
  const fd = openSync(img, 'w');
  writeSync(fd, data);
  fsyncSync(fd);
  closeSync(fd);
  // Start from an empty host cache, so what it holds later is what the guest's reads brought in.
  await evictFile(img);
  t.is(cachedCount(await cacheState(img)), 0, 'the image left the host cache');

  const [guest] = (await startGuests([
    { name, memMiB: GUEST_MIB, thp: false, disks: [{ path: img, format: 'raw', cache: 'writeback' }] },
  ])) as [Guest];
  await holdDisk(guest);
  t.regex(await readDisk(guest), new RegExp(`^${IMAGE_MIB}\\+0 records in`));
  const buffers = await guestBuffersKib(guest);
  t.true(buffers >= IMAGE_MIB * 1024, `the guest's block-device cache holds the image (Buffers ${buffers} kB)`);

  const state = await cacheState(img);
  t.is(state.length, PAGES);
  t.true(cachedCount(state) >= PAGES * 0.95, `host caching is on: ${cachedCount(state)}/${PAGES} pages cached`);
  t.is(pagesIn(state, 'd').length, 0, 'nothing dirty yet');

  // Which image pages guest RAM holds, read from the host by content (pread on /proc/PID/mem).
  const ram = await findGuestRam(guest.pid, GUEST_MIB << 20);
  const pages = Array.from({ length: PAGES }, (_, i) => data.subarray(i * PAGE, (i + 1) * PAGE));
  const inGuest = countPagesEqual(guest.pid, ram, pages);
  const duplicated = pagesIn(state, 'cd').filter((i) => (inGuest[i] ?? 0) > 0);
  t.log(`host cache ${cachedCount(state)} pages, guest RAM holds ${inGuest.filter((n) => n > 0).length}, both: ${duplicated.length} of ${PAGES}`);
  t.true(duplicated.length >= PAGES * 0.95, `duplicated pages ${duplicated.length}`);
  setup = { guest, duplicated };
});

test.serial('a dry run finds the duplicated pages and changes nothing', async (t) => {
  const s = needSetup();
  const fd = openSync(img, 'r+');
  writeSync(fd, data, DIRTY.first * PAGE, DIRTY.pages * PAGE, DIRTY.first * PAGE); // same bytes, no fsync
  closeSync(fd);
  const before = await cacheState(img);
  for (let i = DIRTY.first; i < DIRTY.first + DIRTY.pages; i++) t.is(before[i], 'd', `page ${i} dirty`);
  s.before = before;

  const reclaimed0 = reclaimedFilePages();
  const r = await scrubCache({ vms: [name], dryRun: true });
  const after = await cacheState(img);
  // A clean page may leave meanwhile only as far as the host's reclaim explains it (CI saw two
  // 2 MiB folios go here once: a runner's memory cgroup at its limit).
  const reclaimed = reclaimedFilePages() - reclaimed0;
  t.deepEqual(unexplainedCacheChanges(before, after, reclaimed), [], 'the host cache is as it was, page by page, dirty pages included');
  t.deepEqual(r.vms, [{ name, pid: s.guest.pid }]);
  t.deepEqual(r.paths, [img]);
  t.is(r.files, 1);
  t.is(r.errors, 0);
  t.true(r.cachePagesTotal <= cachedCount(before) && r.cachePagesTotal >= cachedCount(before) - reclaimed, `total ${r.cachePagesTotal} of ${cachedCount(before)} cached before, ${reclaimed} reclaimed meanwhile`);
  t.is(r.cachePagesChecked, r.cachePagesTotal);
  t.true(r.cachePagesInGuest >= s.duplicated.length * 0.9, `in guest ${r.cachePagesInGuest} of ${s.duplicated.length} duplicated`);
  t.true(r.cachePagesInGuest <= r.cachePagesChecked);
  t.is(r.cachePagesDropped, 0);
  t.is(r.cacheBytesReclaimed, 0);
  t.true(r.cpuMs > 0 && r.elapsedMs > 0);
  t.log(summary('dry run', r));
});

test.serial('the scrub drops at least 90% of the duplicated pages and keeps the dirty ones', async (t) => {
  const s = needSetup();
  const before = s.before;
  if (before === undefined) throw new Error('needs the dirty range of the earlier test');
  const dirty = pagesIn(before, 'd');
  // Counted from the cache as it is now: the host may have reclaimed pages since the dry run.
  const now = await cacheState(img);
  const reclaimed0 = reclaimedFilePages();
  const r = await scrubCache({ vms: [s.guest.pid] });
  const after = await cacheState(img);
  const reclaimed = reclaimedFilePages() - reclaimed0;

  const dropped = pagesIn(now, 'cd').filter((i) => after[i] === '.');
  const dupDropped = s.duplicated.filter((i) => after[i] === '.');
  const share = dupDropped.length / s.duplicated.length;
  t.log(summary('scrub', r));
  t.log(`mincore: ${cachedCount(before)} -> ${cachedCount(after)} pages cached; ${dupDropped.length}/${s.duplicated.length} duplicated pages dropped (${(share * 100).toFixed(1)}%); ${dirty.length} dirty kept`);
  t.true(share >= 0.9, `dropped ${(share * 100).toFixed(1)}% of the duplicated pages`);
  // What mincore saw go is what the engine counts, plus at most what the host reclaimed meanwhile.
  t.true(r.cachePagesDropped <= dropped.length && dropped.length <= r.cachePagesDropped + reclaimed,
    `the engine counts ${r.cachePagesDropped}, mincore saw ${dropped.length} go, the host reclaimed ${reclaimed}`);
  t.is(r.cacheBytesReclaimed, r.cachePagesDropped * PAGE);
  // Still dirty after the pass, so dirty all through it: the pass saw them dirty and kept them.
  for (const i of dirty) t.is(after[i], 'd', `dirty page ${i} kept`);
  t.true(r.dirtySkipped >= DIRTY.pages && r.dirtySkipped <= dirty.length, `dirtySkipped ${r.dirtySkipped}`);
  t.is(pagesIn(after, 'cd').filter((i) => now[i] === '.').length, 0, 'no page was read into the host cache');
});

test.serial('a reused scanner is kept open; it runs one pass unless told 0; new VMs need two', async (t) => {
  const s = needSetup();
  const vm = await findVm(s.guest.pid);
  const smart = new Scanner({ smartScan: true });
  t.teardown(() => smart.close());
  const refused = await t.throwsAsync(scrubCache({ vms: [vm], scanner: smart }), { instanceOf: InvalidArgumentError });
  t.regex(refused!.message, /the scanner has smartScan on/);

  const scanner = new Scanner({ smartScan: false });
  t.teardown(() => scanner.close());
  const e = await t.throwsAsync(scrubCache({ vms: [vm], scanner, passes: 1 }), { instanceOf: InvalidArgumentError });
  t.regex(e!.message, new RegExp(`passes 1 is too few: ${name} would be new to the scanner`));
  t.is(scanner.sources().length, 0, 'a refused call adds nothing to the scanner');

  await scanner.addVm(vm, { guestRamOnly: true });
  await scanner.scan({ passes: 2 });
  const scanned = scanner.counters().pages_scanned;
  const perPass = scanned / 2;
  const r = await scrubCache({ vms: [vm], scanner, dryRun: true, passes: 0 });
  t.is(scanner.counters().pages_scanned, scanned, 'passes 0: no pass was run');
  // What the scrub left cached is the dirty range, held by the guest too.
  t.true(r.cachePagesInGuest >= DIRTY.pages, `in guest ${r.cachePagesInGuest}`);
  t.is(r.cachePagesDropped, 0);
  const again = await scrubCache({ vms: [vm], scanner, dryRun: true });
  t.is(scanner.counters().pages_scanned, scanned + perPass, 'by default one more pass');
  t.is(again.cachePagesInGuest, r.cachePagesInGuest);
  t.is(scanner.counters().full_scans, 3);
});

test.serial('the guest reads the data back correctly', async (t) => {
  const s = needSetup();
  const sum = (out: string): string => out.split(/\s+/)[0] ?? '';
  const cached = await s.guest.exec('sha256sum /dev/vda');
  t.is(cached.code, 0, cached.stderr);
  t.is(sum(cached.stdout), imageSum, 'from the guest page cache');
  // Now from the disk, through QEMU and the host (where the scrub dropped the blocks).
  await dropGuestCache(s.guest);
  const buffers = await guestBuffersKib(s.guest);
  t.true(buffers < 1024, `the guest dropped its cache (Buffers ${buffers} kB)`);
  const reread = await s.guest.exec('sha256sum /dev/vda');
  t.is(reread.code, 0, reread.stderr);
  t.is(sum(reread.stdout), imageSum, 'read again through the host');
  // The re-read fills the host cache again (cache=writeback); a host short of memory could evict
  // some of it, so the count is in the message.
  const recached = cachedCount(await cacheState(img));
  t.true(recached >= PAGES * 0.95, `the re-read went through the host cache: ${recached} of ${PAGES} pages cached`);
});

test.serial('the image is unchanged after all the scrubs', async (t) => {
  await needSetup().guest.stop();
  t.is(createHash('sha256').update(readFileSync(img)).digest('hex'), imageSum);
});

test.serial('with cache=none (O_DIRECT) the host caches nothing and the scrub has nothing to drop', async (t) => {
  const direct = path.join(dir, 'direct.img');
  writeFileSync(direct, data.subarray(0, 16 << 20));
  await evictFile(direct);
  const [g] = (await startGuests([
    { name: `${name}-nc`, memMiB: 192, thp: false, disks: [{ path: direct, format: 'raw', cache: 'none' }] },
  ])) as [Guest];
  t.teardown(() => g.stop());
  await holdDisk(g);
  await readDisk(g);
  t.is(cachedCount(await cacheState(direct)), 0, 'QEMU read the image with O_DIRECT');
  const r = await scrubCache({ vms: [g.pid] });
  t.deepEqual(r.paths, [direct]);
  t.is(r.cachePagesTotal, 0);
  t.is(r.cachePagesDropped, 0);
});

function summary(what: string, r: ScrubResult): string {
  return `${what}: total ${r.cachePagesTotal}, checked ${r.cachePagesChecked}, in guest ${r.cachePagesInGuest}, dropped ${r.cachePagesDropped}, dirty kept ${r.dirtySkipped}, ${(r.cacheBytesReclaimed / 2 ** 20).toFixed(1)} MiB reclaimed; ${r.elapsedMs.toFixed(0)} ms, CPU ${r.cpuMs.toFixed(0)} ms`;
}
