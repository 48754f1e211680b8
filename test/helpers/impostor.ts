// Processes that pretend to be QEMU without being it, for the tests of what ksm-agent trusts
// (lib/qemu-exe.ts): a program started with argv[0] "qemu-system-x86_64", one that also renames
// its comm and holds a file open while naming it in -drive, and copies of /usr/bin/sleep named
// qemu-system-x86_64 in places no root-installed QEMU would be. Each is killed by its own pid.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { chmod, chown, copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stopChild } from './processes.js';
import { waitFor } from './wait.js';
import { readFileSync } from 'node:fs';

export interface Impostor {
  pid: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

const started: ChildProcess[] = [];
const dirs: string[] = [];

function track(child: ChildProcess, what: string): Impostor {
  if (child.pid === undefined) throw new Error(`cannot start ${what}`);
  started.push(child);
  return { pid: child.pid, child, stop: () => stopChild(child, 500) };
}

/** Waits until the child's /proc/PID/cmdline starts with argv0 (the exec happened). */
async function execed(imp: Impostor, argv0: string): Promise<Impostor> {
  await waitFor(`pid ${imp.pid} to run as ${argv0}`, 10_000, async () => {
    if (imp.child.exitCode !== null) throw new Error(`pid ${imp.pid} exited with ${imp.child.exitCode}`);
    return readFileSync(`/proc/${imp.pid}/cmdline`, 'latin1').startsWith(`${argv0}\0`) ? true : undefined;
  });
  return imp;
}

/** /usr/bin/sleep with argv[0] "qemu-system-x86_64": exe is sleep, comm "sleep". */
export async function sleepNamedQemu(): Promise<Impostor> {
  const child = spawn('/usr/bin/sleep', ['600'], { argv0: 'qemu-system-x86_64', stdio: 'ignore' });
  return execed(track(child, 'sleep'), 'qemu-system-x86_64');
}

/**
 * A node process whose argv[0] is "qemu-system-x86_64", whose comm it rewrites to "qemu-system-x86"
 * (what a real QEMU's comm reads), and whose command line carries `args` (e.g. -name, -drive
 * file=F). It opens every file in `holdOpen`, so a file it names is also among its fds.
 */
export async function nodeNamedQemu(args: string[], holdOpen: string[] = []): Promise<Impostor> {
  const dir = await mkdtemp('/var/tmp/sp-impostor-');
  dirs.push(dir);
  const script = path.join(dir, 'impostor.js');
  await writeFile(
    script,
    `const fs = require('node:fs');
fs.writeFileSync('/proc/self/comm', 'qemu-system-x86');
const fds = ${JSON.stringify(holdOpen)}.map((f) => fs.openSync(f, 'r'));
process.stdout.write('ready ' + fds.length + '\\n');
setInterval(() => {}, 1 << 30);
`,
  );
  // The script path is the first argument, so node takes every later one as the script's own.
  const child = spawn(process.execPath, [script, ...args], { argv0: 'qemu-system-x86_64', stdio: ['ignore', 'pipe', 'inherit'] });
  const imp = track(child, 'node impostor');
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the node impostor exited with ${String(code)}`)));
    child.stdout?.once('data', () => resolve());
  });
  const comm = readFileSync(`/proc/${imp.pid}/comm`, 'utf8').trim();
  if (comm !== 'qemu-system-x86') throw new Error(`the node impostor's comm is ${comm}`);
  return imp;
}

/**
 * A copy of /usr/bin/sleep named qemu-system-x86_64 in a fresh directory under `parent`, with the
 * given owner and mode, started: its exe's name is QEMU's, its file is not.
 */
export async function sleepCopyNamedQemu(parent: string, owner: { uid: number; gid: number } = { uid: 0, gid: 0 }, mode = 0o755): Promise<Impostor & { exe: string }> {
  const dir = await mkdtemp(path.join(parent, 'sp-impostor-'));
  dirs.push(dir);
  await chmod(dir, 0o755);
  const exe = path.join(dir, 'qemu-system-x86_64');
  await copyFile('/usr/bin/sleep', exe);
  await chown(exe, owner.uid, owner.gid);
  await chmod(exe, mode);
  const child = spawn(exe, ['600'], { stdio: 'ignore' });
  return { ...(await execed(track(child, exe), exe)), exe };
}

/** Kills every impostor this process started, by pid, and removes their directories. */
export async function stopImpostors(): Promise<void> {
  await Promise.all(started.splice(0).map((c) => stopChild(c, 500)));
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}
