// npm run bench:cache: exclusive caching on this machine. Two TCG guests, each with a raw image of
// random data (cache=writeback, so the host caches what they read), read their disks; the host
// page cache the images hold, and the guests' read throughput, plain against scrubbed by
// scrubCache once the first read is done; and the scrub's CPU time. Several rounds, medians
// reported; a table, then one JSON line last.
//   SAMEPAGE_BENCH_CACHE_MIB  image size per guest (default 256)
//   SAMEPAGE_BENCH_ROUNDS     rounds of plain + scrubbed (default 5)
import { createWriteStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

import { scrubCache } from '../../lib/exclusive-cache.js';
import { startGuests, stopAll, type Guest } from '../qemu/harness.js';
import { dropGuestCache, holdDisk, readDisk } from '../../test/helpers/cache-guest.js';
import { cacheState, cachedCount, evictFile } from '../../test/helpers/pagecache.js';

const PAGE = 4096;
const MIB = 1 << 20;

function envInt(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min) throw new Error(`${name} must be a whole number >= ${min}, got "${raw}"`);
  return n;
}

const IMAGE_MIB = envInt('SAMEPAGE_BENCH_CACHE_MIB', 256, 16);
const ROUNDS = envInt('SAMEPAGE_BENCH_ROUNDS', 5, 1);
// Room for the image in the guest's page cache, plus the guest's own few tens of MiB.
const GUEST_MIB = Math.max(256, IMAGE_MIB * 2);

type Mode = 'plain' | 'scrubbed';

interface Read {
  mibps: number;
  /** Read from the host's disk under the images meanwhile: what the host cache did not serve. */
  diskMib: number;
}

interface Round {
  first: Read;
  cacheMib: number;
  again: Read;
  afterDrop: Read;
  scrub?: { cpuS: number; wallS: number; dropped: number; inGuest: number; dirty: number };
}

async function writeImage(file: string): Promise<void> {
  // Random data in 16 MiB pieces: no two pages alike, within or across the images.
  const out = createWriteStream(file);
  for (let done = 0; done < IMAGE_MIB; done += 16) {
    if (!out.write(randomBytes(Math.min(16, IMAGE_MIB - done) * MIB))) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

/** The sysfs stat file of the block device holding `file` (glibc's dev_t encoding). */
function diskStatFile(file: string): string {
  const dev = statSync(file).dev;
  const major = Math.floor(dev / 256) & 0xfff;
  const minor = (dev & 0xff) | (Math.floor(dev / 4096) & 0xfff00);
  return `/sys/dev/block/${major}:${minor}/stat`;
}

/** MiB read from a block device so far (the third field of its stat file counts 512-byte sectors). */
function diskReadMib(statFile: string): number {
  const sectors = Number(readFileSync(statFile, 'utf8').trim().split(/\s+/)[2]);
  return (sectors * 512) / MIB;
}

/** Both guests read their whole disk at once; aggregate MiB/s over the wall time of both. */
async function readDisks(guests: Guest[], diskStat: string): Promise<Read> {
  const disk0 = diskReadMib(diskStat);
  const t0 = performance.now();
  await Promise.all(guests.map(readDisk));
  const mibps = (guests.length * IMAGE_MIB) / ((performance.now() - t0) / 1000);
  return { mibps, diskMib: diskReadMib(diskStat) - disk0 };
}

async function hostCacheMib(images: string[]): Promise<number> {
  let pages = 0;
  for (const img of images) pages += cachedCount(await cacheState(img));
  return (pages * PAGE) / MIB;
}

async function round(mode: Mode, guests: Guest[], images: string[], diskStat: string): Promise<Round> {
  // A cold start on both sides: the host cache empty, the guests' caches empty.
  for (const img of images) await evictFile(img);
  await Promise.all(guests.map(dropGuestCache));
  const first = await readDisks(guests, diskStat);
  let scrub: Round['scrub'];
  if (mode === 'scrubbed') {
    const r = await scrubCache({ vms: guests.map((g) => g.pid) });
    scrub = { cpuS: r.cpuMs / 1000, wallS: r.elapsedMs / 1000, dropped: r.cachePagesDropped, inGuest: r.cachePagesInGuest, dirty: r.dirtySkipped };
  }
  const cacheMib = await hostCacheMib(images);
  const again = await readDisks(guests, diskStat);
  // The guests forget the data and read it again: from the host cache, or what it no longer has,
  // from the disk.
  await Promise.all(guests.map(dropGuestCache));
  const afterDrop = await readDisks(guests, diskStat);
  return { first, cacheMib, again, afterDrop, ...(scrub === undefined ? {} : { scrub }) };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

const round2 = (x: number): number => Math.round(x * 100) / 100;

async function main(): Promise<void> {
  // /var/tmp, not /tmp: /tmp may be tmpfs, whose pages FADV_DONTNEED cannot drop.
  const dir = mkdtempSync('/var/tmp/sp-bench-cache-');
  const images = ['a', 'b'].map((n) => path.join(dir, `${n}.img`));
  try {
    for (const img of images) await writeImage(img);
    const diskStat = diskStatFile(images[0] as string);
    const guests = await startGuests(
      ['a', 'b'].map((n, i) => ({
        name: `bench-cache-${n}`,
        memMiB: GUEST_MIB,
        thp: false,
        disks: [{ path: images[i] as string, format: 'raw' as const, cache: 'writeback' as const }],
      })),
    );
    await Promise.all(guests.map(holdDisk));
    const runs: Record<Mode, Round[]> = { plain: [], scrubbed: [] };
    for (let i = 0; i < ROUNDS; i++) {
      for (const mode of ['plain', 'scrubbed'] as const) {
        const r = await round(mode, guests, images, diskStat);
        runs[mode].push(r);
        process.stderr.write(`round ${i + 1}/${ROUNDS} ${mode}: ${JSON.stringify(r)}\n`);
      }
    }
    report(runs);
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

function report(runs: Record<Mode, Round[]>): void {
  const m = (mode: Mode, pick: (r: Round) => number): number => median(runs[mode].map(pick));
  const scrubs = runs.scrubbed.map((r) => r.scrub).filter((s) => s !== undefined);
  const s = (key: 'cpuS' | 'wallS' | 'dropped' | 'inGuest' | 'dirty'): number => median(scrubs.map((x) => x[key]));
  const both = (pick: (r: Round) => number, digits: number): [string, string] => [m('plain', pick).toFixed(digits), m('scrubbed', pick).toFixed(digits)];
  const rows: [string, string, string][] = [
    ['host page cache held by the images (MiB)', ...both((r) => r.cacheMib, 1)],
    ['guest read, first: host cache cold (MiB/s)', ...both((r) => r.first.mibps, 0)],
    ['  of which read from the host disk (MiB)', ...both((r) => r.first.diskMib, 0)],
    ['guest read again (MiB/s)', ...both((r) => r.again.mibps, 0)],
    ['  of which read from the host disk (MiB)', ...both((r) => r.again.diskMib, 0)],
    ['guest read after the guest drops its cache (MiB/s)', ...both((r) => r.afterDrop.mibps, 0)],
    ['  of which read from the host disk (MiB)', ...both((r) => r.afterDrop.diskMib, 0)],
    ['scrub CPU time (s)', '-', s('cpuS').toFixed(2)],
    ['scrub wall time (s)', '-', s('wallS').toFixed(2)],
    ['scrub: pages in a guest / dropped / dirty kept', '-', `${s('inGuest')} / ${s('dropped')} / ${s('dirty')}`],
  ];
  const w = Math.max(...rows.map((r) => r[0].length));
  const lines = [
    `exclusive caching: 2 TCG guests x ${GUEST_MIB} MiB, each reading a ${IMAGE_MIB} MiB raw image of random data (cache=writeback); medians of ${ROUNDS} rounds; read rates are both guests together`,
    `${''.padEnd(w)}  ${'plain'.padStart(9)}  ${'scrubbed'.padStart(9)}`,
    ...rows.map(([k, a, b]) => `${k.padEnd(w)}  ${a.padStart(9)}  ${b.padStart(9)}`),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  const json = {
    host_cache_mb_plain: round2(m('plain', (r) => r.cacheMib)),
    host_cache_mb_scrubbed: round2(m('scrubbed', (r) => r.cacheMib)),
    guest_read_mbps_plain: round2(m('plain', (r) => r.again.mibps)),
    guest_read_mbps_scrubbed: round2(m('scrubbed', (r) => r.again.mibps)),
    scrub_cpu_s: round2(s('cpuS')),
    guest_first_read_mbps_plain: round2(m('plain', (r) => r.first.mibps)),
    guest_first_read_mbps_scrubbed: round2(m('scrubbed', (r) => r.first.mibps)),
    guest_read_after_drop_mbps_plain: round2(m('plain', (r) => r.afterDrop.mibps)),
    guest_read_after_drop_mbps_scrubbed: round2(m('scrubbed', (r) => r.afterDrop.mibps)),
    host_disk_read_after_drop_mb_plain: round2(m('plain', (r) => r.afterDrop.diskMib)),
    host_disk_read_after_drop_mb_scrubbed: round2(m('scrubbed', (r) => r.afterDrop.diskMib)),
    scrub_wall_s: round2(s('wallS')),
    scrub_pages_dropped: s('dropped'),
    image_mb: IMAGE_MIB,
    guests: 2,
    rounds: ROUNDS,
  };
  process.stdout.write(`${JSON.stringify(json)}\n`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
