/** One QEMU TCG guest: command line, boot until READY, control channel, stop. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { disown, own, type Owned } from './cleanup.js';
import { ControlChannel, type ExecResult } from './channel.js';
import { HarnessError } from './errors.js';
import { formatFillSpec, parseFillSummary, totalFillPages, type FillSpec, type FillSummary } from './fillspec.js';
import type { Lab } from './lab.js';
import { consoleState, consoleTail, readConsole } from './serial.js';

export type DiskCache = 'writeback' | 'none' | 'writethrough' | 'directsync' | 'unsafe';

export interface DiskSpec {
  /** Host file backing the disk; the guest sees disks as /dev/vda, /dev/vdb, ... in this order. */
  path: string;
  format: 'raw';
  /** QEMU cache mode; 'writeback' (the default) keeps host page-cache caching on. */
  cache?: DiskCache;
  readOnly?: boolean;
}

export interface GuestSpec {
  /** Letters, digits, - and _; becomes -name guest=NAME and the guest's hostname. */
  name: string;
  memMiB: number;
  /** false runs QEMU under sp-launch --no-thp, so its guest RAM is never THP-backed. */
  thp: boolean;
  /** What the guest fills at boot: a FillSpec or its text form. */
  fill?: FillSpec | string;
  disks?: DiskSpec[];
  /** Appended to QEMU's command line. */
  qemuArgs?: string[];
  /** Appended to the guest kernel command line. */
  kernelArgs?: string;
  /**
   * A cgroup directory (v1 or v2) QEMU joins before exec (sp-launch --cgroup), so its RAM and the
   * host page cache it fills reading its disks are charged there; see cgroup.ts.
   */
  cgroup?: string;
  /**
   * TCG's translation cache in MiB (QEMU's default reserves up to 1 GiB, and a guest running a
   * compiler fills hundreds of MiB of it: QEMU's RSS then far exceeds guest RAM, which matters
   * inside a memory cgroup). Default: QEMU's own.
   */
  tbSizeMiB?: number;
  /** How long boot + fill may take (default 180 s: TCG on two busy cores is slow). */
  readyTimeoutMs?: number;
}

export interface Guest {
  readonly name: string;
  /** The qemu-system-x86_64 process (sp-launch execs it in place). */
  readonly pid: number;
  readonly memMiB: number;
  readonly thp: boolean;
  readonly serialLogPath: string;
  readonly controlSocketPath: string;
  /** The summary the guest printed after its boot fill. */
  readonly bootFill: FillSummary;
  /** Wall time from spawning QEMU to READY. */
  readonly readyMs: number;
  /** Run a busybox sh command in the guest. */
  exec(cmd: string, timeoutMs?: number): Promise<ExecResult>;
  /** Fill more memory now (kept by a new daemon named by tag); resolves with its summary. */
  fill(spec: FillSpec | string, tag: string): Promise<FillSummary>;
  /** Re-read a fill's summary from the guest (/run/samepage/fill-TAG.json). */
  fillSummary(tag?: string): Promise<FillSummary>;
  /** End a fill's daemon (its memory is freed in the guest); rejects if the guest could not. */
  stopFill(tag: string): Promise<void>;
  /** Kill QEMU, wait until it is gone, remove its socket and temp files. Idempotent. */
  stop(): Promise<void>;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/;
const TAG_RE = /^[A-Za-z0-9_-]{1,32}$/;
const CACHES: readonly DiskCache[] = ['writeback', 'none', 'writethrough', 'directsync', 'unsafe'];
const running = new Set<string>();

function bad(message: string): never {
  throw new HarnessError('BAD_SPEC', message);
}

function fillText(fill: FillSpec | string | undefined): string {
  if (fill === undefined) return '';
  return typeof fill === 'string' ? fill : formatFillSpec(fill);
}

/** Check a spec before anything starts, so a typo costs no boot. */
export function validateSpec(spec: GuestSpec): void {
  const who = `guest "${String(spec.name)}"`;
  if (typeof spec.name !== 'string' || !NAME_RE.test(spec.name)) {
    bad(`${who}: name must be 1-32 letters, digits, - or _ (starting with a letter or digit)`);
  }
  if (!Number.isSafeInteger(spec.memMiB) || spec.memMiB < 128 || spec.memMiB > 65536) {
    bad(`${who}: memMiB must be a whole number from 128 to 65536, got ${String(spec.memMiB)}`);
  }
  if (typeof spec.thp !== 'boolean') bad(`${who}: thp must be true or false`);
  if (typeof spec.fill === 'object') {
    const fillMiB = totalFillPages(spec.fill) / 256;
    if (fillMiB > spec.memMiB) bad(`${who}: the fill is ${fillMiB} MiB but the guest has ${spec.memMiB} MiB; raise memMiB`);
  }
  if (/\s/.test(fillText(spec.fill))) bad(`${who}: the fill text must not contain spaces (it goes on the kernel command line)`);
  for (const [i, d] of (spec.disks ?? []).entries()) {
    if (d.format !== 'raw') bad(`${who}: disk ${i} format must be 'raw'`);
    if (d.cache !== undefined && !CACHES.includes(d.cache)) bad(`${who}: disk ${i} cache must be one of ${CACHES.join(', ')}`);
    if (!existsSync(d.path) || !statSync(d.path).isFile()) bad(`${who}: disk image ${d.path} does not exist or is not a file; create it first`);
  }
  if (spec.readyTimeoutMs !== undefined && !(spec.readyTimeoutMs > 0)) bad(`${who}: readyTimeoutMs must be positive`);
  if (spec.tbSizeMiB !== undefined && !(Number.isSafeInteger(spec.tbSizeMiB) && spec.tbSizeMiB >= 8 && spec.tbSizeMiB <= 4096)) {
    bad(`${who}: tbSizeMiB must be a whole number from 8 to 4096, got ${String(spec.tbSizeMiB)}`);
  }
  if (spec.cgroup !== undefined && !existsSync(path.join(spec.cgroup, 'cgroup.procs'))) {
    bad(`${who}: cgroup ${spec.cgroup} has no cgroup.procs; create it first (scripts/qemu/cgroup.ts)`);
  }
}

/** QEMU option values separate with commas; a literal comma is written twice. */
function qv(value: string): string {
  return value.replace(/,/g, ',,');
}

function qemuArgs(lab: Lab, spec: GuestSpec, runDir: string): string[] {
  const disks = spec.disks ?? [];
  const cmdline = [
    'console=ttyS0',
    'panic=-1',
    'quiet',
    `sp_name=${spec.name}`,
    `sp_disks=${disks.length}`,
    ...(fillText(spec.fill) ? [`sp_fill=${fillText(spec.fill)}`] : []),
    ...(spec.kernelArgs ? [spec.kernelArgs] : []),
  ].join(' ');
  const args = [
    '-name', `guest=${qv(spec.name)}`,
    '-accel', spec.tbSizeMiB === undefined ? 'tcg' : `tcg,tb-size=${spec.tbSizeMiB}`,
    '-m', String(spec.memMiB),
    '-smp', '1',
    // No default devices and no VGA: no 16 MiB video RAM block beside guest RAM.
    '-nodefaults', '-vga', 'none', '-display', 'none', '-no-reboot', '-monitor', 'none',
    '-pidfile', path.join(runDir, 'qemu.pid'),
    '-kernel', lab.kernel,
    '-initrd', lab.initramfs,
    '-append', cmdline,
    '-serial', `file:${qv(path.join(runDir, 'serial.log'))}`,
    '-chardev', `socket,id=spctl,path=${qv(path.join(runDir, 'ctl.sock'))},server=on,wait=off`,
    '-serial', 'chardev:spctl',
  ];
  disks.forEach((d, i) => {
    const ro = d.readOnly ? ',readonly=on' : '';
    args.push('-drive', `file=${qv(d.path)},if=none,id=spdisk${i},format=raw,cache=${d.cache ?? 'writeback'}${ro}`);
    args.push('-device', `virtio-blk-pci,drive=spdisk${i}`);
  });
  return [...args, ...(spec.qemuArgs ?? [])];
}

class QemuGuest implements Guest {
  readonly name: string;
  readonly memMiB: number;
  readonly thp: boolean;
  readonly serialLogPath: string;
  readonly controlSocketPath: string;
  bootFill!: FillSummary;
  readyMs = 0;
  private channel: ControlChannel | undefined;
  private exitInfo: string | undefined;
  private readonly exited: Promise<void>;
  private stopping: Promise<void> | undefined;
  private stderr = '';

  constructor(
    private readonly spec: GuestSpec,
    child: ChildProcess,
    private readonly owned: Owned,
  ) {
    this.name = spec.name;
    this.memMiB = spec.memMiB;
    this.thp = spec.thp;
    this.serialLogPath = path.join(owned.runDir, 'serial.log');
    this.controlSocketPath = path.join(owned.runDir, 'ctl.sock');
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitInfo = signal ? `killed by ${signal}` : `exit code ${code}`;
        resolve();
      });
    });
    child.stderr?.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-4000)));
    child.stdout?.on('data', () => undefined);
    // A guest someone forgot to stop must not keep Node alive; the exit hook kills it.
    child.unref();
  }

  get pid(): number {
    return this.owned.pid;
  }

  private failure(code: 'QEMU_EXITED' | 'GUEST_ERROR' | 'READY_TIMEOUT', what: string): HarnessError {
    const stderr = this.stderr.trim() ? `\nQEMU stderr:\n${this.stderr.trim()}` : '';
    return new HarnessError(code, `guest ${this.name} (pid ${this.pid}): ${what}${stderr}\nserial log tail:\n${consoleTail(this.serialLogPath)}`);
  }

  async boot(started: number): Promise<void> {
    const timeoutMs = this.spec.readyTimeoutMs ?? 180_000;
    for (;;) {
      const state = consoleState(readConsole(this.serialLogPath));
      if (state.errors.length > 0) throw this.failure('GUEST_ERROR', `the guest reported: ${state.errors.join('; ')}`);
      if (state.ready) {
        if (state.fill === undefined) throw this.failure('GUEST_ERROR', 'READY without a fill summary');
        this.bootFill = parseFillSummary(state.fill);
        break;
      }
      if (this.exitInfo) throw this.failure('QEMU_EXITED', `QEMU ended (${this.exitInfo}) before the guest was ready`);
      if (Date.now() - started > timeoutMs) {
        throw this.failure('READY_TIMEOUT', `no "SAMEPAGE: READY" within ${timeoutMs} ms`);
      }
      await Promise.race([sleep(250), this.exited]);
    }
    this.readyMs = Date.now() - started;
    this.checkPid();
    this.channel = await ControlChannel.open(this.controlSocketPath, `guest ${this.name}`, 15_000);
  }

  /** The pid tests read /proc with must be QEMU itself, as QEMU's own pidfile says. */
  private checkPid(): void {
    const pidfile = readFileSync(path.join(this.owned.runDir, 'qemu.pid'), 'utf8').trim();
    const exe = readlinkSync(`/proc/${this.pid}/exe`);
    if (Number(pidfile) !== this.pid || !path.basename(exe).startsWith('qemu-system-x86_64')) {
      throw this.failure('GUEST_ERROR', `pid ${this.pid} is not QEMU (pidfile says ${pidfile}, exe ${exe})`);
    }
  }

  exec(cmd: string, timeoutMs?: number): Promise<ExecResult> {
    if (!this.channel) return Promise.reject(new HarnessError('CHANNEL', `guest ${this.name}: not running`));
    return this.channel.exec(cmd, timeoutMs);
  }

  async fill(spec: FillSpec | string, tag: string): Promise<FillSummary> {
    if (!TAG_RE.test(tag)) bad(`fill tag "${tag}" must be 1-32 letters, digits, - or _`);
    const text = fillText(spec);
    if (!/^[A-Za-z0-9=,/x]*$/.test(text)) bad(`fill spec "${text}" has characters outside the fill grammar`);
    // /bin in the busybox initramfs; /usr/local/sbin in the Debian images (scripts/qemu/debian/).
    const r = await this.exec(`f=/bin/sp-fill; [ -x $f ] || f=/usr/local/sbin/sp-fill; $f --daemon --tag ${tag} --spec '${text}'`, 600_000);
    const line = r.stdout.split('\n').find((l) => l.startsWith('SAMEPAGE: FILL '));
    if (r.code !== 0 || !line) {
      throw new HarnessError('GUEST_ERROR', `guest ${this.name}: fill "${tag}" failed (exit ${r.code}): ${(r.stdout + r.stderr).trim()}`);
    }
    return parseFillSummary(line.slice('SAMEPAGE: FILL '.length));
  }

  async fillSummary(tag = 'boot'): Promise<FillSummary> {
    if (!TAG_RE.test(tag)) bad(`fill tag "${tag}" must be 1-32 letters, digits, - or _`);
    const r = await this.exec(`cat /run/samepage/fill-${tag}.json`);
    if (r.code !== 0) throw new HarnessError('GUEST_ERROR', `guest ${this.name}: no fill "${tag}": ${r.stderr.trim()}`);
    return parseFillSummary(r.stdout.trim());
  }

  async stopFill(tag: string): Promise<void> {
    if (!TAG_RE.test(tag)) bad(`fill tag "${tag}" must be 1-32 letters, digits, - or _`);
    const r = await this.exec(`kill $(cat /run/samepage/fill-${tag}.pid)`);
    if (r.code !== 0) throw new HarnessError('GUEST_ERROR', `guest ${this.name}: could not stop fill "${tag}" (exit ${r.code}): ${r.stderr.trim()}`);
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.channel?.close();
      if (!this.exitInfo) {
        try {
          process.kill(this.pid, 'SIGTERM');
        } catch {
          // exited meanwhile
        }
        // The ref'd timer keeps Node alive until QEMU is reaped.
        const escalate = setTimeout(() => {
          try {
            process.kill(this.pid, 'SIGKILL');
          } catch {
            // gone
          }
        }, 10_000);
        await this.exited;
        clearTimeout(escalate);
      }
      running.delete(this.name);
      disown(this.owned);
      if (!this.owned.keepRunDir) rmSync(this.owned.runDir, { recursive: true, force: true });
    })();
    return this.stopping;
  }
}

const guests = new Set<QemuGuest>();
const RUN_PREFIX = 'sp-qemu-';

/**
 * Remove run dirs (serial log, socket, pidfile) left by harness processes that were SIGKILLed:
 * their QEMU died with them (PR_SET_PDEATHSIG) but nothing was left to delete the files. A dir
 * belongs to the Node process whose pid is in its "owner" file.
 */
export function sweepStaleRunDirs(): string[] {
  const removed: string[] = [];
  for (const entry of readdirSync(os.tmpdir())) {
    if (!entry.startsWith(RUN_PREFIX)) continue;
    const dir = path.join(os.tmpdir(), entry);
    let owner = NaN;
    try {
      owner = Number(readFileSync(path.join(dir, 'owner'), 'utf8'));
    } catch {
      continue; // not ours, or still being created
    }
    if (Number.isSafeInteger(owner) && owner > 0 && !existsSync(`/proc/${owner}`)) {
      rmSync(dir, { recursive: true, force: true });
      removed.push(dir);
    }
  }
  return removed;
}

/** Start one guest and wait until it is READY; on failure it is stopped and the error thrown. */
export async function startGuest(lab: Lab, spec: GuestSpec): Promise<Guest> {
  const runDir = mkdtempSync(path.join(os.tmpdir(), `${RUN_PREFIX}${spec.name}-`));
  writeFileSync(path.join(runDir, 'owner'), String(process.pid));
  const launchArgs = [
    ...(spec.thp ? [] : ['--no-thp']),
    '--die-with-parent',
    ...(spec.cgroup === undefined ? [] : ['--cgroup', spec.cgroup]),
    '--',
    lab.qemu,
    ...qemuArgs(lab, spec, runDir),
  ];
  const started = Date.now();
  const child = spawn(lab.helpers.launch, launchArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid === undefined) {
    rmSync(runDir, { recursive: true, force: true });
    throw new HarnessError('QEMU_EXITED', `guest ${spec.name}: could not spawn ${lab.helpers.launch}`);
  }
  const owned: Owned = { pid: child.pid, runDir, keepRunDir: process.env.SAMEPAGE_KEEP_GUEST_FILES === '1' };
  own(owned);
  const guest = new QemuGuest(spec, child, owned);
  guests.add(guest);
  try {
    await guest.boot(started);
    return guest;
  } catch (e) {
    await guest.stop();
    guests.delete(guest);
    throw e;
  }
}

/** Boot guests in parallel; if any fails, all of this call's guests are stopped. */
export async function startGuests(lab: Lab, specs: GuestSpec[]): Promise<Guest[]> {
  const names = new Set<string>();
  for (const s of specs) {
    validateSpec(s);
    if (names.has(s.name) || running.has(s.name)) bad(`guest name "${s.name}" is already in use; names must be unique`);
    names.add(s.name);
  }
  sweepStaleRunDirs();
  for (const n of names) running.add(n);
  const results = await Promise.allSettled(specs.map((s) => startGuest(lab, s)));
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  const ok = results.filter((r): r is PromiseFulfilledResult<Guest> => r.status === 'fulfilled').map((r) => r.value);
  if (failed.length > 0) {
    await Promise.all(ok.map((g) => g.stop()));
    for (const n of names) running.delete(n);
    const first = failed[0]!.reason as Error;
    if (failed.length === 1) throw first;
    const err = new HarnessError(
      first instanceof HarnessError ? first.code : 'QEMU_EXITED',
      `${failed.length} of ${specs.length} guests failed to start:\n${failed.map((f) => (f.reason as Error).message).join('\n---\n')}`,
    );
    throw err;
  }
  return ok;
}

/** Stop every guest this process started. */
export async function stopAll(): Promise<void> {
  const all = [...guests];
  guests.clear();
  await Promise.all(all.map((g) => g.stop()));
}
