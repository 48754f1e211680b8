// Real helper processes for tests: a process with mergeable memory (compiled from merge-child.c)
// and a node process running as the unprivileged user nobody.
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

import { NOBODY, nobodyPath } from './nobody.js';

const run = promisify(execFile);

/** Compiled test files live in dist/test/helpers; sources in test/helpers. */
const SOURCE_DIR = path.resolve(__dirname, '../../../test/helpers');
const DIST_LIB = path.resolve(__dirname, '../../lib');

let compiled: Promise<string> | undefined;

/** Builds merge-child.c once per test process with the system C compiler. */
export function mergeChildBinary(): Promise<string> {
  compiled ??= (async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'samepage-merge-child-'));
    // The binary lives as long as this test process; remove it when the process exits.
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const out = path.join(dir, 'merge-child');
    try {
      await run('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', out, path.join(SOURCE_DIR, 'merge-child.c')]);
    } catch (err) {
      throw new Error(`cannot compile test/helpers/merge-child.c with cc: ${(err as Error).message}; install gcc (apt-get install gcc libc6-dev)`);
    }
    return out;
  })();
  return compiled;
}

export interface MergeChild {
  pid: number;
  /** Start address and length of its MADV_MERGEABLE region of identical pages. */
  start: bigint;
  bytes: number;
  /** Closes its stdin and waits for it to exit (kills it by pid if it does not). */
  stop(): Promise<void>;
}

export async function startMergeChild(pages = 64): Promise<MergeChild> {
  const child = spawn(await mergeChildBinary(), [String(pages)], { stdio: ['pipe', 'pipe', 'pipe'] });
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.trim());
    });
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`merge-child exited with ${code} before reporting: ${err}`)));
  });
  const [addr, bytes] = line.split(' ');
  return { pid: child.pid as number, start: BigInt(`0x${addr}`), bytes: Number(bytes), stop: () => stopChild(child) };
}

/** Ends a child we started: close stdin, then SIGTERM, then SIGKILL, always by its own pid. */
export async function stopChild(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.stdin?.end();
  const timer = setTimeout(() => child.kill('SIGTERM'), graceMs);
  const killer = setTimeout(() => child.kill('SIGKILL'), graceMs * 2);
  await exited;
  clearTimeout(timer);
  clearTimeout(killer);
}

export interface NodeResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a node script as nobody (uid/gid 65534), so permission checks are the kernel's, for real.
 * The script is made from the path of dist/lib as nobody reaches it (see nobody.ts).
 */
export async function runNodeAsNobody(script: (distLib: string) => string): Promise<NodeResult> {
  const child = spawn(process.execPath, ['-e', script(nobodyPath(DIST_LIB))], { ...NOBODY, cwd: '/', stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (c) => resolve(c));
  });
  return { code, stdout, stderr };
}

/** A pid that certainly does not exist now: a child that ran and was reaped. */
export async function deadPid(): Promise<number> {
  const child = spawn('true', [], { stdio: 'ignore' });
  await new Promise((resolve) => child.once('exit', resolve));
  return child.pid as number;
}
