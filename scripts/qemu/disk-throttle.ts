/**
 * Slow storage for the guests' disk images: a cgroup v1 blkio group whose read_bps_device rule
 * caps how fast the processes moved into it read from the disk that holds a given file. Reads the
 * host page cache serves are not throttled, so a host cache hit costs what it did and a miss
 * costs what a slow disk would: what the seed's I/O figures assume, on a host whose virtual disk
 * is fast.
 *
 * Only processes moved in by add() are ever in the group; remove() moves them back to the root of
 * the hierarchy and removes the group, as does the exit or a stopping signal of this process
 * (cleanup.ts). Cgroup v2 (io.max) is not handled: this host mounts blkio on v1, so v2 could not
 * be tested here, and a throttle that may not throttle would make the figures lie.
 */
import { existsSync, readFileSync, readdirSync, realpathSync, rmdirSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { readPids } from './cgroup.js';
import { atEnd } from './cleanup.js';
import { HarnessError } from './errors.js';

const PREFIX = 'samepage-seed-disk-';

export interface ReadThrottle {
  readonly dir: string;
  /** The whole disk the rule names, "MAJOR:MINOR". */
  readonly device: string;
  readonly bytesPerSecond: number;
  /** Move a process (all its threads) into the group. */
  add(pid: number): void;
  /** Bytes read from the device by the group's processes since it was made (blkio.throttle.io_service_bytes). */
  readBytes(): number;
  /** Move what is inside back to the root and remove the group. Idempotent. */
  remove(): void;
}

/** The mount point of the v1 hierarchy with the blkio controller, or undefined. */
function blkioRoot(): string | undefined {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [pre, post = ''] = line.split(' - ');
    const fields = (pre ?? '').split(' ');
    const [fstype, , superOptions = ''] = post.split(' ');
    if (fstype === 'cgroup' && superOptions.split(',').includes('blkio') && fields[3] === '/') return fields[4];
  }
  return undefined;
}

/** The whole disk under a file's filesystem as "MAJOR:MINOR" (a partition's parent disk). */
export function diskOf(file: string): string {
  const dev = statSync(file, { bigint: true }).dev;
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  const sys = `/sys/dev/block/${major}:${minor}`;
  if (!existsSync(sys)) {
    throw new HarnessError('BAD_SPEC', `${file} is on device ${major}:${minor}, which is not a block device (${sys} is missing): a throttle needs the images on a disk`);
  }
  // A partition's directory sits inside its disk's, whose "dev" names the disk. /sys/dev/block/M:m
  // is a link: resolve it first, or ".." would be taken lexically, inside /sys/dev/block.
  return existsSync(path.join(sys, 'partition')) ? readFileSync(path.join(path.dirname(realpathSync(sys)), 'dev'), 'utf8').trim() : `${major}:${minor}`;
}

const live = new Set<Throttle>();

class Throttle implements ReadThrottle {
  private removed = false;
  constructor(
    readonly root: string,
    readonly dir: string,
    readonly device: string,
    readonly bytesPerSecond: number,
  ) {}

  add(pid: number): void {
    write(path.join(this.dir, 'cgroup.procs'), String(pid));
  }

  readBytes(): number {
    for (const line of readFileSync(path.join(this.dir, 'blkio.throttle.io_service_bytes'), 'utf8').split('\n')) {
      const [dev, op, value] = line.split(' ');
      if (dev === this.device && op === 'Read') return Number(value);
    }
    return 0;
  }

  remove(): void {
    if (this.removed) return;
    // Moving a process out leaves it running: the guests outlive their slow disk.
    for (const pid of readPids(this.dir)) {
      try {
        writeFileSync(path.join(this.root, 'cgroup.procs'), String(pid));
      } catch {
        // gone meanwhile
      }
    }
    try {
      rmdirSync(this.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new HarnessError('SETUP_FAILED', `cannot remove ${this.dir}: ${(e as Error).message}`);
    }
    this.removed = true;
    live.delete(this);
  }
}

function write(file: string, value: string): void {
  try {
    writeFileSync(file, value);
  } catch (e) {
    throw new HarnessError('SETUP_FAILED', `cannot write "${value}" to ${file}: ${(e as Error).message} (run as root)`);
  }
}

function removeAllSync(): void {
  for (const t of [...live]) {
    try {
      t.remove();
    } catch (e) {
      process.stderr.write(`${(e as Error).message}\n`);
    }
  }
}

/** Groups left by runs that were SIGKILLed (named after their pid, which is gone) and are empty. */
function sweepStale(root: string): void {
  for (const e of readdirSync(root)) {
    const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(e);
    if (!m || existsSync(`/proc/${m[1]}`) || readPids(path.join(root, e)).length > 0) continue;
    try {
      rmdirSync(path.join(root, e));
    } catch {
      // busy or gone: leave it
    }
  }
}

/**
 * A read throttle of `bytesPerSecond` on the disk holding `file`, for the processes add() moves
 * in. Throws HarnessError BAD_SPEC for a bad rate or a file not on a disk, SETUP_FAILED where the
 * host has no v1 blkio hierarchy or a file cannot be written.
 */
export function createReadThrottle(tag: string, file: string, bytesPerSecond: number): ReadThrottle {
  if (!/^[A-Za-z0-9_-]{1,32}$/.test(tag)) throw new HarnessError('BAD_SPEC', `throttle tag "${tag}" must be 1-32 letters, digits, - or _`);
  if (!Number.isSafeInteger(bytesPerSecond) || bytesPerSecond < 1) {
    throw new HarnessError('BAD_SPEC', `read throttle must be a whole number of bytes per second >= 1, got ${String(bytesPerSecond)}`);
  }
  const root = blkioRoot();
  if (root === undefined) {
    throw new HarnessError('SETUP_FAILED', 'no cgroup v1 blkio hierarchy is mounted, which the read throttle needs (cgroup v2 io.max is not handled); run without it');
  }
  const device = diskOf(file);
  sweepStale(root);
  const dir = path.join(root, `${PREFIX}${process.pid}-${tag}`);
  try {
    mkdirSync(dir);
  } catch (e) {
    throw new HarnessError('SETUP_FAILED', `cannot create cgroup ${dir}: ${(e as Error).message} (run as root)`);
  }
  const t = new Throttle(root, dir, device, bytesPerSecond);
  atEnd(removeAllSync);
  live.add(t);
  try {
    write(path.join(dir, 'blkio.throttle.read_bps_device'), `${device} ${bytesPerSecond}`);
  } catch (e) {
    t.remove();
    throw e;
  }
  return t;
}
