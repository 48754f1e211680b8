/** The lab: paths to the guest kernel, initramfs and helper binaries that setup.sh prepares. */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { HarnessError } from './errors.js';

export interface Lab {
  labDir: string;
  /** vmlinuz of the Debian guest kernel. */
  kernel: string;
  kernelVersion: string;
  kernelPackage: string;
  initramfs: string;
  qemu: string;
  helpers: {
    /** sp-launch: --no-thp (the nothp wrapper) and --die-with-parent, then exec. */
    launch: string;
    /** Host builds of the guest programs, for running them outside a guest. */
    fill: string;
    agent: string;
  };
}

/** scripts/qemu in the source tree; this file runs from dist/scripts/qemu. */
export function harnessSourceDir(): string {
  for (const dir of [path.resolve(__dirname, '../../../scripts/qemu'), __dirname]) {
    if (existsSync(path.join(dir, 'setup.sh'))) return dir;
  }
  throw new HarnessError('SETUP_FAILED', `cannot find scripts/qemu/setup.sh above ${__dirname}; run from a samepage checkout`);
}

export function labDir(): string {
  return process.env.SAMEPAGE_LAB ?? '/var/cache/samepage-lab';
}

function runSetup(script: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', (e) => reject(new HarnessError('SETUP_FAILED', `cannot run ${script}: ${e.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolve(out);
      else {
        const tail = out.trim().split('\n').slice(-15).join('\n');
        reject(new HarnessError('SETUP_FAILED', `${script} exited with ${code}:\n${tail}`));
      }
    });
  });
}

function readManifest(file: string): Lab {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new HarnessError('SETUP_FAILED', `cannot read lab manifest ${file}: ${(e as Error).message}; rerun scripts/qemu/setup.sh`);
  }
  const o = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
  const str = (k: string): string => {
    const v = o[k];
    if (typeof v !== 'string' || v === '') {
      throw new HarnessError('SETUP_FAILED', `lab manifest ${file} lacks "${k}"; rerun scripts/qemu/setup.sh`);
    }
    return v;
  };
  const lab: Lab = {
    labDir: str('labDir'),
    kernel: str('kernel'),
    kernelVersion: str('kernelVersion'),
    kernelPackage: str('kernelPackage'),
    initramfs: str('initramfs'),
    qemu: str('qemu'),
    helpers: { launch: str('launch'), fill: str('fill'), agent: str('agent') },
  };
  for (const p of [lab.kernel, lab.initramfs, lab.qemu, lab.helpers.launch]) {
    if (!existsSync(p)) throw new HarnessError('SETUP_FAILED', `lab file ${p} is missing; rerun scripts/qemu/setup.sh`);
  }
  return lab;
}

let pending: Promise<Lab> | undefined;

/**
 * Run setup.sh (idempotent; well under a second when everything is cached) once per process
 * and return the lab's paths. Rejects with SETUP_FAILED and setup.sh's last lines on failure.
 */
export function ensureLab(): Promise<Lab> {
  if (!pending) {
    pending = (async () => {
      await runSetup(path.join(harnessSourceDir(), 'setup.sh'));
      return readManifest(path.join(labDir(), 'lab.json'));
    })();
    // A failed setup may succeed on retry (e.g. apt was locked), so do not cache the failure.
    pending.catch(() => (pending = undefined));
  }
  return pending;
}
