/**
 * A memory cgroup for guests under memory pressure: QEMU joins it before exec (GuestSpec.cgroup,
 * sp-launch --cgroup), so the guest RAM it touches and the host page cache it fills reading its
 * disk images are charged to it and compete under one limit, as on a full host.
 *
 * Works with the memory controller on cgroup v2 (memory.max, created under the v2 root with
 * +memory in its subtree_control) or on a v1 hierarchy (memory.limit_in_bytes, created under
 * this process's own memory cgroup), whichever the host mounts it on.
 *
 * The cgroup is removed by remove(), and also when this process exits, is interrupted (after
 * cleanup.ts has killed the guests), or (next time one is created) after it was SIGKILLed. Only processes that joined it (our QEMUs) are
 * ever killed, by the pids its cgroup.procs lists.
 */
import { existsSync, readFileSync, readdirSync, rmdirSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { atEnd } from './cleanup.js';
import { HarnessError } from './errors.js';

export interface MemoryUsage {
  /** All memory charged: anonymous (guest RAM), page cache, kernel. */
  currentBytes: number;
  /** Page cache charged (v2 "file", v1 "total_cache"). */
  fileBytes: number;
  /** Anonymous memory charged (v2 "anon", v1 "total_rss"). */
  anonBytes: number;
  /** Page-cache pages read back soon after eviction (v2 workingset_refault_file; v1: absent). */
  refaultFile?: number;
}

export interface MemoryCgroup {
  readonly dir: string;
  readonly version: 1 | 2;
  readonly limitBytes: number;
  usage(): MemoryUsage;
  /** Processes the cgroup's OOM killer has killed so far (v2 memory.events, v1 memory.oom_control). */
  oomKills(): number;
  /** Pids in the cgroup now. */
  pids(): number[];
  /** SIGKILL what is left inside, then remove the directory. Idempotent. */
  remove(): Promise<void>;
}

const PREFIX = 'samepage-seed-';
const live = new Set<CgroupImpl>();

interface Mount {
  point: string;
  root: string;
  fstype: string;
  options: string;
}

function mounts(): Mount[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      // id parent major:minor root point options [optional...] - fstype source superoptions
      const [pre, post = ''] = line.split(' - ');
      const f = (pre ?? '').split(' ');
      const g = post.split(' ');
      return { root: f[3] ?? '', point: f[4] ?? '', fstype: g[0] ?? '', options: g[2] ?? '' };
    });
}

/** This process's cgroup path in the hierarchy whose controllers field is `controllers` ('' = v2). */
function ownPath(match: (controllers: string) => boolean): string | undefined {
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (m && match(m[1] as string)) return m[2];
  }
  return undefined;
}

function within(mount: Mount, cgPath: string): string {
  const rel = mount.root !== '/' && cgPath.startsWith(mount.root) ? cgPath.slice(mount.root.length) : cgPath;
  return path.join(mount.point, rel);
}

/** Where a memory cgroup can be made on this host, and which version. */
export function memoryControllerParent(): { parent: string; version: 1 | 2 } {
  const all = mounts();
  const v2 = all.find((m) => m.fstype === 'cgroup2');
  if (v2) {
    const controllers = readFileSync(path.join(v2.point, 'cgroup.controllers'), 'utf8');
    if (/\bmemory\b/.test(controllers)) return { parent: v2.point, version: 2 };
  }
  const v1 = all.find((m) => m.fstype === 'cgroup' && m.options.split(',').includes('memory'));
  if (v1) {
    const own = ownPath((c) => c.split(',').includes('memory')) ?? '/';
    return { parent: within(v1, own), version: 1 };
  }
  throw new HarnessError(
    'SETUP_FAILED',
    'no memory cgroup controller is mounted (neither cgroup v2 with "memory" in cgroup.controllers nor a v1 "memory" hierarchy); mount one or run without a memory limit',
  );
}

function readStat(file: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const [k, v] = line.split(' ');
    if (k && v !== undefined) out.set(k, Number(v));
  }
  return out;
}

/** The pids a cgroup directory lists (v1 or v2), none if it is gone. */
export function readPids(dir: string): number[] {
  try {
    return readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Kill what is inside (only processes that joined it), wait until empty, rmdir. */
function removeSync(dir: string): void {
  if (!existsSync(dir)) return;
  for (let i = 0; i < 100; i++) {
    const pids = readPids(dir);
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    try {
      rmdirSync(dir);
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY') throw e;
    }
    sleepSync(50);
  }
  throw new HarnessError('SETUP_FAILED', `cannot remove cgroup ${dir}: still busy after 5 s (pids: ${readPids(dir).join(' ') || 'none'})`);
}

class CgroupImpl implements MemoryCgroup {
  private removed = false;
  constructor(
    readonly dir: string,
    readonly version: 1 | 2,
    readonly limitBytes: number,
  ) {}

  usage(): MemoryUsage {
    if (this.version === 2) {
      const stat = readStat(path.join(this.dir, 'memory.stat'));
      const refault = stat.get('workingset_refault_file');
      return {
        currentBytes: Number(readFileSync(path.join(this.dir, 'memory.current'), 'utf8')),
        fileBytes: stat.get('file') ?? 0,
        anonBytes: stat.get('anon') ?? 0,
        ...(refault === undefined ? {} : { refaultFile: refault }),
      };
    }
    const stat = readStat(path.join(this.dir, 'memory.stat'));
    return {
      currentBytes: Number(readFileSync(path.join(this.dir, 'memory.usage_in_bytes'), 'utf8')),
      fileBytes: stat.get('total_cache') ?? stat.get('cache') ?? 0,
      anonBytes: stat.get('total_rss') ?? stat.get('rss') ?? 0,
    };
  }

  oomKills(): number {
    const file = path.join(this.dir, this.version === 2 ? 'memory.events' : 'memory.oom_control');
    const stat = readStat(file);
    return stat.get('oom_kill') ?? 0;
  }

  pids(): number[] {
    return readPids(this.dir);
  }

  removeNow(): void {
    if (this.removed) return;
    removeSync(this.dir);
    this.removed = true;
    live.delete(this);
  }

  async remove(): Promise<void> {
    this.removeNow();
  }
}

function removeAllSync(): void {
  for (const cg of [...live]) {
    try {
      cg.removeNow();
    } catch (e) {
      process.stderr.write(`${(e as Error).message}\n`);
    }
  }
}

/** Remove cgroups left by runs that were SIGKILLed (named after their pid, which is gone). */
export function sweepStaleCgroups(parent: string): string[] {
  const removed: string[] = [];
  let entries: string[] = [];
  try {
    entries = readdirSync(parent);
  } catch {
    return removed;
  }
  for (const e of entries) {
    const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(e);
    if (!m || existsSync(`/proc/${m[1]}`)) continue;
    const dir = path.join(parent, e);
    // Its QEMUs died with their parent (PR_SET_PDEATHSIG); anything still inside is left alone.
    if (readPids(dir).length > 0) continue;
    try {
      rmdirSync(dir);
      removed.push(dir);
    } catch {
      // busy or gone: leave it
    }
  }
  return removed;
}

/**
 * Create a memory cgroup limited to `limitMiB` (named samepage-seed-PID-TAG). Throws
 * HarnessError SETUP_FAILED naming the file that could not be written.
 */
export function createMemoryCgroup(tag: string, limitMiB: number): MemoryCgroup {
  if (!/^[A-Za-z0-9_-]{1,32}$/.test(tag)) throw new HarnessError('BAD_SPEC', `cgroup tag "${tag}" must be 1-32 letters, digits, - or _`);
  if (!Number.isSafeInteger(limitMiB) || limitMiB < 64) {
    throw new HarnessError('BAD_SPEC', `memory limit must be a whole number of MiB >= 64, got ${String(limitMiB)}`);
  }
  const { parent, version } = memoryControllerParent();
  sweepStaleCgroups(parent);
  const write = (file: string, value: string): void => {
    try {
      writeFileSync(file, value);
    } catch (e) {
      throw new HarnessError('SETUP_FAILED', `cannot write "${value.trim()}" to ${file}: ${(e as Error).message} (run as root)`);
    }
  };
  if (version === 2) {
    const ctl = path.join(parent, 'cgroup.subtree_control');
    if (!/\bmemory\b/.test(readFileSync(ctl, 'utf8'))) write(ctl, '+memory');
  }
  const dir = path.join(parent, `${PREFIX}${process.pid}-${tag}`);
  try {
    mkdirSync(dir);
  } catch (e) {
    throw new HarnessError('SETUP_FAILED', `cannot create cgroup ${dir}: ${(e as Error).message} (run as root)`);
  }
  const cg = new CgroupImpl(dir, version, limitMiB * 1024 * 1024);
  atEnd(removeAllSync);
  live.add(cg);
  try {
    write(path.join(dir, version === 2 ? 'memory.max' : 'memory.limit_in_bytes'), String(cg.limitBytes));
  } catch (e) {
    cg.removeNow();
    throw e;
  }
  return cg;
}
