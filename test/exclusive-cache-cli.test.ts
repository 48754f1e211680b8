/**
 * `ksm-agent cache` against a real TCG guest that read its raw disk (cache=writeback): --dry-run
 * leaves the host cache as it was page by page; the real run drops at least 90% of the image's
 * cached pages (mincore before and after) and its JSON says how many; a bad VM name is one clear
 * error line; the image is unchanged. The library call is proven in exclusive-cache.test.ts.
 * Needs root and cachestat(2) (Linux 6.5+). Does not touch /sys/kernel/mm/ksm.
 */
import test from 'ava';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startGuests, stopAll, type Guest } from '../scripts/qemu/harness.js';
import { holdDisk, readDisk } from './helpers/cache-guest.js';
import { cacheState, cachedCount, evictFile, pagesIn, reclaimedFilePages, unexplainedCacheChanges } from './helpers/pagecache.js';

// /var/tmp, not /tmp: /tmp may be tmpfs, whose pages FADV_DONTNEED cannot drop.
const dir = mkdtempSync('/var/tmp/sp-xcache-cli-');
const img = path.join(dir, 'random.img');
const data = randomBytes(32 << 20);
const name = `xcache-cli-${process.pid}`;

test.after.always(async () => {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
});

function cli(args: string[]): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [path.resolve(__dirname, '../lib/cli/main.js'), ...args], { encoding: 'utf8' });
}

test.serial('ksm-agent cache: --dry-run changes nothing, the real run drops the duplicated pages', async (t) => {
  writeFileSync(img, data);
  await evictFile(img);
  const [guest] = (await startGuests([
    { name, memMiB: 192, thp: false, disks: [{ path: img, format: 'raw', cache: 'writeback' }] },
  ])) as [Guest];
  await holdDisk(guest);
  await readDisk(guest);
  const before = await cacheState(img);
  t.true(cachedCount(before) >= before.length * 0.95, `host caching is on: ${cachedCount(before)}/${before.length} pages`);

  const reclaimed0 = reclaimedFilePages();
  const dry = cli(['cache', '--vm', name, '--dry-run', '--json']);
  t.is(dry.status, 0, dry.stderr);
  const afterDry = await cacheState(img);
  // A clean page may leave meanwhile only as far as the host's reclaim explains it (CI once saw a
  // 2 MiB folio go here: a runner's memory cgroup at its limit).
  const reclaimedDry = reclaimedFilePages() - reclaimed0;
  t.deepEqual(unexplainedCacheChanges(before, afterDry, reclaimedDry), [], '--dry-run changed nothing');
  const d = JSON.parse(dry.stdout) as Record<string, unknown>;
  t.deepEqual(d['paths'], [img]);
  t.deepEqual(d['vms'], [{ name, pid: guest.pid }]);
  t.true(Number(d['cache_pages_in_guest']) >= cachedCount(before) * 0.9, `in guest ${String(d['cache_pages_in_guest'])}`);
  t.is(d['cache_pages_dropped'], 0);

  const reclaimed1 = reclaimedFilePages();
  const act = cli(['cache', '--vm', name, '--json']);
  t.is(act.status, 0, act.stderr);
  const a = JSON.parse(act.stdout) as Record<string, unknown>;
  const after = await cacheState(img);
  const reclaimedAct = reclaimedFilePages() - reclaimed1;
  const dropped = pagesIn(afterDry, 'cd').filter((i) => after[i] === '.').length;
  t.log(`ksm-agent cache: ${cachedCount(afterDry)} -> ${cachedCount(after)} pages cached; host reclaimed ${reclaimedDry + reclaimedAct} file pages meanwhile`);
  t.true(dropped >= cachedCount(before) * 0.9, `dropped ${dropped} of ${cachedCount(before)}`);
  // What mincore saw go is what the JSON says went, plus at most what the host reclaimed.
  const counted = Number(a['cache_pages_dropped']);
  t.true(counted <= dropped && dropped <= counted + reclaimedAct, `the JSON counts ${counted}, mincore saw ${dropped} go, the host reclaimed ${reclaimedAct}`);

  await guest.stop();
  t.is(createHash('sha256').update(readFileSync(img)).digest('hex'), createHash('sha256').update(data).digest('hex'));
});

test.serial('ksm-agent cache names a VM it cannot find in one line', (t) => {
  const bad = cli(['cache', '--vm', 'sp-no-such-vm']);
  t.is(bad.status, 3, 'not found (lib/cli/exit-codes.ts), not a crash');
  t.is(bad.stdout, '');
  t.regex(bad.stderr, /no QEMU VM named "sp-no-such-vm"/);
  t.is(bad.stderr.trim().split('\n').length, 1, bad.stderr);
});
