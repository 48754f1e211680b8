/**
 * Real Debian 12 guests for the seed benchmarks: the image from debian/build-image.sh (cached
 * under /var/cache/samepage), one sparse copy per guest booted as its root disk (virtio-blk,
 * host cache on by default) with systemd as init, driven through the same control channel as
 * the busybox guests (sp-agent, started by samepage-agent.service once the system is up).
 *
 *   const image = await ensureSeedImage();
 *   const run = makeRunDir();                       // /var/tmp/sp-seed-XXXX, removed on exit
 *   const gs = await startDebianGuests(image, run, [{ name: 'a', memMiB: 512 }, { name: 'b', memMiB: 512 }]);
 *   await gs[0].guest.exec('uname -r');
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { harnessSourceDir } from './lab.js';
import { HarnessError } from './errors.js';
import { readConsole } from './serial.js';
import { startGuests, type DiskCache, type DiskSpec, type Guest } from './harness.js';

/** TCG translation cache per guest: enough for a compiler, small enough to plan memory with. */
export const DEFAULT_TB_SIZE_MIB = 128;

export interface SeedImage {
  path: string;
  /** What build-image.sh recorded: suite, packages, source versions, build times. */
  manifest: Record<string, unknown>;
  /** Wall time of this ensureSeedImage() call (a cached image: well under a second). */
  ensureMs: number;
}

export interface DebianGuestSpec {
  name: string;
  memMiB: number;
  /** Default false: QEMU without THP, so KSM counts every guest page (lab.md §1). */
  thp?: boolean;
  /** Host cache mode of the root disk; default writeback (host page cache on). */
  cache?: DiskCache;
  /** A memory cgroup directory QEMU joins before exec (cgroup.ts). */
  cgroup?: string;
  /** More disks after the root (/dev/vdb, ...). */
  extraDisks?: DiskSpec[];
  /** TCG translation cache, MiB (default 128: QEMU's RSS stays near guest RAM + 200 MiB). */
  tbSizeMiB?: number;
  /** Appended to the kernel command line. */
  kernelArgs?: string;
  /** Boot to READY (default 600 s). */
  readyTimeoutMs?: number;
}

export interface DebianGuest {
  guest: Guest;
  /** This guest's copy of the image (its root disk). */
  image: string;
  /** Spawn to "login:" on the serial console (getty up), ms; undefined if not seen. */
  loginMs: number | undefined;
  /** Spawn to READY (samepage-agent.service up after multi-user.target), ms. */
  readyMs: number;
}

function run(cmd: string, args: string[], what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e) => reject(new HarnessError('SETUP_FAILED', `${what}: cannot run ${cmd}: ${e.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolve(out);
      else reject(new HarnessError('SETUP_FAILED', `${what} exited with ${code}:\n${err.trim().split('\n').slice(-15).join('\n')}`));
    });
  });
}

/** Build the image if missing or its recipe changed (debian/build-image.sh), else reuse it. */
export async function ensureSeedImage(): Promise<SeedImage> {
  const t0 = Date.now();
  const script = path.join(harnessSourceDir(), 'debian', 'build-image.sh');
  const out = await run('bash', [script], 'scripts/qemu/debian/build-image.sh');
  const img = out.trim().split('\n').pop() ?? '';
  if (!img.endsWith('.img')) throw new HarnessError('SETUP_FAILED', `build-image.sh printed no image path (got "${img}")`);
  let manifest: Record<string, unknown> = {};
  try {
    manifest = JSON.parse(readFileSync(`${img}.json`, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new HarnessError('SETUP_FAILED', `cannot read ${img}.json: ${(e as Error).message}; remove ${img} and rebuild`);
  }
  return { path: img, manifest, ensureMs: Date.now() - t0 };
}

/**
 * A directory on a real filesystem (not tmpfs: its pages are the host page cache we measure)
 * for the guests' image copies; removed when this process exits.
 */
export function makeRunDir(base = process.env.SAMEPAGE_SEED_RUN_DIR ?? '/var/tmp'): string {
  const dir = mkdtempSync(path.join(base, 'sp-seed-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * A sparse copy of the image for one guest (each guest writes its own root), written back and
 * dropped from the host page cache so every run starts with a cold host cache.
 */
export async function copyImage(image: SeedImage, runDir: string, name: string): Promise<string> {
  const dest = path.join(runDir, `${name}.img`);
  await run('cp', ['--sparse=always', image.path, dest], `copying ${image.path}`);
  await dropFromHostCache(dest);
  return dest;
}

/** fsync the file, then POSIX_FADV_DONTNEED it: none of it stays in the host page cache. */
export async function dropFromHostCache(file: string): Promise<void> {
  // dd with iflag=nocache over zero bytes calls posix_fadvise(DONTNEED) on the whole file;
  // conv=fsync writes it back first so dirty pages can be dropped too.
  await run('dd', [`if=${file}`, `of=${file}`, 'oflag=nocache', 'conv=notrunc,fsync', 'count=0', 'status=none'], `dropping ${file} from the host cache`);
  await run('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none'], `dropping ${file} from the host cache`);
}

/** Boot Debian guests in parallel from fresh copies of the image; resolves when all are READY. */
export async function startDebianGuests(
  image: SeedImage,
  runDir: string,
  specs: DebianGuestSpec[],
  /** Called with the guests' image copies just before QEMU starts (to sample their host cache during boot). */
  onImages?: (paths: string[]) => void,
): Promise<DebianGuest[]> {
  const copies = await Promise.all(specs.map((s) => copyImage(image, runDir, s.name)));
  onImages?.(copies);
  const t0 = Date.now();
  const logins = new Map<string, number>();
  let watching = true;
  let guests: Guest[] = [];
  // The serial logs only exist once QEMU runs; startGuests() does not say where until it
  // resolves, so the login prompt is looked for in every sp-qemu-NAME-* run dir meanwhile.
  const watch = (async () => {
    while (watching) {
      for (const s of specs) {
        if (logins.has(s.name)) continue;
        for (const e of readdirSync(os.tmpdir())) {
          if (!e.startsWith(`sp-qemu-${s.name}-`)) continue;
          if (/\blogin: /.test(readConsole(path.join(os.tmpdir(), e, 'serial.log')))) logins.set(s.name, Date.now() - t0);
        }
      }
      await sleep(100);
    }
  })();
  try {
    guests = await startGuests(
      specs.map((s, i) => ({
        name: s.name,
        memMiB: s.memMiB,
        thp: s.thp ?? false,
        disks: [{ path: copies[i] as string, format: 'raw' as const, cache: s.cache ?? 'writeback' }, ...(s.extraDisks ?? [])],
        kernelArgs: ['sp_root=/dev/vda', s.kernelArgs ?? ''].join(' ').trim(),
        readyTimeoutMs: s.readyTimeoutMs ?? 600_000,
        tbSizeMiB: s.tbSizeMiB ?? DEFAULT_TB_SIZE_MIB,
        ...(s.cgroup === undefined ? {} : { cgroup: s.cgroup }),
      })),
    );
  } finally {
    watching = false;
    await watch;
  }
  // READY comes from a unit ordered after multi-user.target, like the getty, so the login
  // prompt may still be on its way: wait for it a little longer.
  const until = Date.now() + 60_000;
  while (guests.some((g) => !logins.has(g.name)) && Date.now() < until) {
    for (const g of guests) {
      if (!logins.has(g.name) && /\blogin: /.test(readConsole(g.serialLogPath))) logins.set(g.name, Date.now() - t0);
    }
    await sleep(100);
  }
  return guests.map((g, i) => ({ guest: g, image: copies[i] as string, loginMs: logins.get(g.name), readyMs: g.readyMs }));
}
