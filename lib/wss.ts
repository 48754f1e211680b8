// Working-set estimation for QEMU VMs: how much of each guest's RAM the guest touched in a window.
//
// Each pass clears the accessed ("young") bits of the QEMU process's anonymous pages
// (/proc/PID/clear_refs = 2, which also clears their referenced flags), waits the interval,
// then sums smaps "Referenced:" over the VMA(s) of guest RAM: the guest RAM pages read or written
// by the guest (through QEMU, KVM or TCG alike) during the window. The estimate is that byte
// count. Granularity is the host page backing guest RAM: 4 KiB, or 2 MiB for THP-backed RAM (a
// guest touching one byte of a huge page counts the whole 2 MiB).
//
// Side effect, the same as any clear_refs user's (e.g. wss tools, CRIU): reclaim sees the VM's
// pages as not recently used until the guest touches them again. Nothing else changes; KSM
// reads pages without setting accessed bits, so it does not inflate the estimate.
import { writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { fromSystemError, InvalidArgumentError, NotFoundError } from './errors.js';
import { readSmaps } from './procfs.js';
import { findVm, listVms, noVmsFound, type Vm } from './vms.js';

export interface WssReading {
  name: string;
  pid: number;
  /** Guest RAM size (the host range found in the QEMU process). */
  ramBytes: number;
  /** Guest RAM bytes referenced during the window. */
  workingSetBytes: number;
}

export interface WssPass {
  /** 1, 2, ... */
  pass: number;
  /** The window actually measured (clear to read), ms. */
  windowMs: number;
  vms: WssReading[];
}

export interface WssOptions {
  /** VMs by name or pid; default every QEMU VM. */
  vms?: (string | number)[];
  /** The window per pass, ms (default 5000). */
  intervalMs?: number;
  /** Passes (default 1). */
  passes?: number;
  /** Called after each pass, as it completes. */
  onPass?: (p: WssPass) => void | Promise<void>;
  signal?: AbortSignal;
}

interface Target {
  name: string;
  pid: number;
  start: bigint;
  end: bigint;
}

function target(vm: Vm): Target {
  if (vm.guestRam === undefined) {
    throw new NotFoundError(`cannot find the guest RAM of VM ${vm.name ?? vm.pid} (pid ${vm.pid}): ${vm.warnings.join('; ') || 'no mergeable anonymous range of its -m size'}`, {
      pid: vm.pid,
    });
  }
  return { name: vm.name ?? String(vm.pid), pid: vm.pid, start: vm.guestRam.start, end: vm.guestRam.start + BigInt(vm.guestRam.bytes) };
}

async function clearReferenced(pid: number): Promise<void> {
  const path = `/proc/${pid}/clear_refs`;
  try {
    await writeFile(path, '2');
  } catch (e) {
    throw fromSystemError(e, { op: 'write 2 to', path, pid });
  }
}

/** Referenced bytes in [t.start, t.end), and the range's size. */
async function referenced(t: Target): Promise<{ referenced: number; bytes: number }> {
  let ref = 0;
  let bytes = 0;
  for (const e of await readSmaps(t.pid)) {
    if (e.start >= t.end || e.end <= t.start) continue;
    // Guest RAM is one VMA unless something split it (mprotect, madvise): sum the pieces.
    ref += e.fields['Referenced'] ?? 0;
    bytes += e.bytes;
  }
  return { referenced: ref, bytes };
}

/** Measure `passes` windows of `intervalMs` each; resolves to every pass. */
export async function estimateWorkingSets(opts: WssOptions = {}): Promise<WssPass[]> {
  const intervalMs = opts.intervalMs ?? 5000;
  const passes = opts.passes ?? 1;
  if (!(Number.isFinite(intervalMs) && intervalMs >= 100 && intervalMs <= 3_600_000)) {
    throw new InvalidArgumentError(`the interval must be from 0.1 s to 1 hour, got ${String(intervalMs)} ms`);
  }
  if (!(Number.isSafeInteger(passes) && passes >= 1)) throw new InvalidArgumentError(`passes must be a whole number >= 1, got ${String(passes)}`);
  const vms = opts.vms && opts.vms.length > 0 ? await Promise.all(opts.vms.map((v) => findVm(v))) : await listVms();
  if (vms.length === 0) throw new NotFoundError(noVmsFound());
  const targets = vms.map(target);
  const out: WssPass[] = [];
  for (let pass = 1; pass <= passes; pass++) {
    opts.signal?.throwIfAborted();
    const t0 = Date.now();
    for (const t of targets) await clearReferenced(t.pid);
    await sleep(intervalMs, undefined, opts.signal ? { signal: opts.signal } : {});
    const readings: WssReading[] = [];
    for (const t of targets) {
      const r = await referenced(t);
      readings.push({ name: t.name, pid: t.pid, ramBytes: r.bytes, workingSetBytes: r.referenced });
    }
    const p: WssPass = { pass, windowMs: Date.now() - t0, vms: readings };
    out.push(p);
    await opts.onPass?.(p);
  }
  return out;
}
