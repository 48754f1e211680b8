// Starts real QEMU processes for tests: paused (-S), no guest kernel needed, TCG (no /dev/kvm).
// Every process started here is killed by its own pid in stopAllQemu().
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { access } from 'node:fs/promises';
import { constants } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { findGuestRam } from '../../lib/guest-ram.js';
import { stopChild } from './processes.js';
import { waitFor } from './wait.js';

const started: ChildProcess[] = [];

/** The QEMU binary on PATH; fails with what to install when it is missing. */
export async function qemuBinary(): Promise<string> {
  for (const dir of (process.env['PATH'] ?? '').split(':')) {
    const candidate = path.join(dir, 'qemu-system-x86_64');
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this PATH entry
    }
  }
  throw new Error('qemu-system-x86_64 is not installed: run scripts/qemu/setup.sh as root (it installs the qemu-system-x86 apt package)');
}

export interface Qemu {
  pid: number;
  child: ChildProcess;
  stderr(): string;
}

/**
 * Starts `qemu-system-x86_64 -accel tcg -S -nodefaults -display none ARGS` and waits until guest
 * RAM of `ramBytes` is mapped, so callers can inspect the process at once.
 */
export async function startQemu(args: string[], ramBytes: number, opts: { cwd?: string } = {}): Promise<Qemu> {
  const binary = await qemuBinary();
  const child = spawn(binary, ['-accel', 'tcg', '-S', '-nodefaults', '-display', 'none', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
  });
  started.push(child);
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const pid = child.pid;
  if (pid === undefined) throw new Error(`cannot start ${binary}: ${err}`);
  await waitFor(`QEMU pid ${pid} to map ${ramBytes} bytes of guest RAM`, 30_000, async () => {
    if (child.exitCode !== null) throw new Error(`QEMU exited with ${child.exitCode}: ${err.trim()}`);
    return findGuestRam(pid, ramBytes);
  });
  return { pid, child, stderr: () => err };
}

/** Kills every QEMU this process started, each by its pid, and waits for them to exit. */
export async function stopAllQemu(): Promise<void> {
  await Promise.all(started.splice(0).map((child) => stopChild(child, 2000)));
}

/** Sends one HMP command over a `-monitor unix:PATH,server=on,wait=off` socket; returns the reply. */
export async function hmp(socketPath: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    let buf = '';
    let sent = false;
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no reply from the QEMU monitor at ${socketPath} to "${command}": ${JSON.stringify(buf.slice(-200))}`));
    }, 10_000);
    sock.on('data', (d: Buffer) => {
      buf += d.toString();
      if (!sent && buf.includes('(qemu) ')) {
        sent = true;
        buf = '';
        sock.write(`${command}\n`);
      } else if (sent && /\r?\n\(qemu\) $/.test(buf)) {
        clearTimeout(timer);
        sock.end();
        // The monitor echoes input with terminal escapes; the reply is what follows the last echo.
        const lines = buf.split(/\r?\n/);
        resolve(lines.slice(1, -1).join('\n'));
      }
    });
    sock.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
