/**
 * Every QEMU the harness starts is registered here and killed when this process ends in any
 * way Node can see: normal exit, SIGINT/SIGTERM/SIGHUP, or an uncaught exception. A SIGKILL of
 * Node is covered by sp-launch --die-with-parent (PR_SET_PDEATHSIG) instead.
 */
import { rmSync } from 'node:fs';

export interface Owned {
  pid: number;
  runDir: string;
  keepRunDir: boolean;
}

const owned = new Set<Owned>();
let installed = false;

function killAllSync(): void {
  for (const o of owned) {
    try {
      process.kill(o.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    if (!o.keepRunDir) rmSync(o.runDir, { recursive: true, force: true });
  }
  owned.clear();
}

/** More work for the same moments, run after the guests are killed (e.g. removing their cgroup). */
const finalizers: (() => void)[] = [];

function runAllSync(): void {
  killAllSync();
  for (const f of finalizers) {
    try {
      f();
    } catch (e) {
      process.stderr.write(`${(e as Error).message}\n`);
    }
  }
}

function onSignal(sig: NodeJS.Signals): void {
  runAllSync();
  // With our listener gone and no other, re-raising gives the default action (exit by signal).
  process.removeListener(sig, onSignal);
  if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on('exit', runAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, onSignal);
  // The monitor runs before Node's own handling and does not swallow the exception.
  process.on('uncaughtExceptionMonitor', runAllSync);
}

/**
 * Run `fn` (synchronous, idempotent) whenever the guests would be killed: on exit, on
 * SIGINT/SIGTERM/SIGHUP, on an uncaught exception; after the guests are killed.
 */
export function atEnd(fn: () => void): void {
  install();
  if (!finalizers.includes(fn)) finalizers.push(fn);
}

export function own(o: Owned): void {
  install();
  owned.add(o);
}

export function disown(o: Owned): void {
  owned.delete(o);
}
