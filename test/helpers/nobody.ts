// Children that run as the unprivileged user nobody (uid 65534) must reach the compiled library,
// its node_modules and the addon. A checkout under a private directory (/root is 0700, `mktemp -d`
// makes 0700) is out of nobody's reach, and every such test would then fail on "Cannot find
// module" instead of on the permission check it is about. So, only when nobody cannot reach the
// checkout, its children use a read-only bind mount of it under /run (0755): the same files, no
// copy, no permission of the user's directories changed. Unmounted when this test process exits;
// one left by a killed run is removed by the next.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmdirSync } from 'node:fs';
import path from 'node:path';

export const NOBODY = { uid: 65534, gid: 65534 } as const;

/** The checkout: compiled tests live in dist/test/helpers. */
const CHECKOUT = path.resolve(__dirname, '../../..');
const MOUNT_PREFIX = 'samepage-nobody-';

let root: string | undefined;

function nobodyCanRead(file: string): boolean {
  const probe = `require('node:fs').accessSync(${JSON.stringify(file)}, require('node:fs').constants.R_OK)`;
  const r = spawnSync(process.execPath, ['-e', probe], { ...NOBODY, cwd: '/', stdio: 'ignore' });
  return r.status === 0;
}

function mustRun(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.error?.message || `exit ${String(r.status)}`}`);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Mounts of runs that were killed before they could unmount. */
function removeStaleMounts(): void {
  for (const name of readdirSync('/run')) {
    if (!name.startsWith(MOUNT_PREFIX)) continue;
    const pid = Number(name.slice(MOUNT_PREFIX.length));
    if (!Number.isInteger(pid) || pidAlive(pid)) continue;
    const dir = path.join('/run', name);
    spawnSync('umount', ['-l', dir], { stdio: 'ignore' });
    try {
      rmdirSync(dir);
    } catch {
      // Still mounted or not empty: not ours to force.
    }
  }
}

function mountCheckout(): string {
  removeStaleMounts();
  const dir = path.join('/run', `${MOUNT_PREFIX}${process.pid}`);
  if (!existsSync(dir)) mkdirSync(dir, { mode: 0o755 });
  mustRun('mount', ['--bind', CHECKOUT, dir]);
  process.once('exit', () => {
    spawnSync('umount', ['-l', dir], { stdio: 'ignore' });
    try {
      rmdirSync(dir);
    } catch {
      // Left for removeStaleMounts().
    }
  });
  mustRun('mount', ['-o', 'remount,bind,ro', dir]);
  return dir;
}

/** The checkout as nobody can reach it: the checkout itself, or a read-only bind mount of it. */
function nobodyRoot(): string {
  if (root === undefined) {
    const probe = path.join(CHECKOUT, 'dist', 'lib', 'index.js');
    root = nobodyCanRead(probe) ? CHECKOUT : mountCheckout();
    if (!nobodyCanRead(path.join(root, 'dist', 'lib', 'index.js'))) {
      throw new Error(`user nobody cannot read ${probe}, even through ${root}: the checkout itself must be readable by others (chmod o+rX)`);
    }
  }
  return root;
}

/** Where nobody finds the file at `file`, a path inside the checkout. */
export function nobodyPath(file: string): string {
  const rel = path.relative(CHECKOUT, file);
  if (rel.startsWith('..') || path.isAbsolute(rel)) throw new Error(`${file} is not inside the checkout ${CHECKOUT}`);
  return path.join(nobodyRoot(), rel);
}
