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
import { cacheState, cachedCount, evictFile, pagesIn } from './helpers/pagecache.js';

// /var/tmp, not /tmp: /tmp may be tmpfs, whose pages FADV_DONTNEED cannot drop.
const dir = mkdtempSync('/var/tmp/sp-xcache-cli-');
const img = path.join(dir, 'random.img');
const data = randomBytes(32 << 20);
const name = `xcache-cli-${process.pid}`;

test.after.always(async () => {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
});

/** /proc/vmstat's counters of reclaim and of dropped or invalidated page cache. */
function readVmstat(): Map<string, number> {
  const keep = /^(pgsteal_|pgscan_|drop_pagecache|workingset_|thp_split_page|nr_file_pages)/;
  return new Map(
    readFileSync('/proc/vmstat', 'utf8')
      .split('\n')
      .map((l) => l.split(' '))
      .filter(([k]) => k !== undefined && keep.test(k))
      .map(([k, v]) => [k!, Number(v)]),
  );
}

function vmstatDelta(a: Map<string, number>, b: Map<string, number>): string {
  const moved = [...b].filter(([k, v]) => v !== a.get(k)).map(([k, v]) => `${k} ${v - (a.get(k) ?? 0)}`);
  return moved.length > 0 ? moved.join(', ') : 'none';
}

/** Page indexes as runs "start-end", at most 8 of them. */
function describeRuns(pages: number[]): string {
  const runs: string[] = [];
  for (let i = 0; i < pages.length; ) {
    let j = i;
    while (j + 1 < pages.length && pages[j + 1] === pages[j]! + 1) j++;
    runs.push(`${pages[i]}-${pages[j]}`);
    i = j + 1;
  }
  return runs.length === 0 ? 'none' : runs.slice(0, 8).join(' ') + (runs.length > 8 ? ` (+${runs.length - 8} runs)` : '');
}

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

  const vm0 = readVmstat();
  const dry = cli(['cache', '--vm', name, '--dry-run', '--json']);
  t.is(dry.status, 0, dry.stderr);
  const afterDry = await cacheState(img);
  // One CI run saw a 2 MiB folio leave the cache here, once in many runs: if it happens again, say
  // where (which pages) and whether the host reclaimed or dropped anything meanwhile.
  t.is(afterDry, before, `--dry-run changed nothing; pages now gone: ${describeRuns(pagesIn(before, 'cd').filter((i) => afterDry[i] === '.'))}; vmstat deltas: ${vmstatDelta(vm0, readVmstat())}`);
  const d = JSON.parse(dry.stdout) as Record<string, unknown>;
  t.deepEqual(d['paths'], [img]);
  t.deepEqual(d['vms'], [{ name, pid: guest.pid }]);
  t.true(Number(d['cache_pages_in_guest']) >= cachedCount(before) * 0.9, `in guest ${String(d['cache_pages_in_guest'])}`);
  t.is(d['cache_pages_dropped'], 0);

  const act = cli(['cache', '--vm', name, '--json']);
  t.is(act.status, 0, act.stderr);
  const a = JSON.parse(act.stdout) as Record<string, unknown>;
  const after = await cacheState(img);
  const dropped = pagesIn(before, 'cd').filter((i) => after[i] === '.').length;
  t.log(`ksm-agent cache: ${cachedCount(before)} -> ${cachedCount(after)} pages cached`);
  t.true(dropped >= cachedCount(before) * 0.9, `dropped ${dropped} of ${cachedCount(before)}`);
  t.is(a['cache_pages_dropped'], dropped, 'the JSON counts what mincore saw go');

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
