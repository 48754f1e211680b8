// The VMs the agent manages, re-listed every few ticks (a /proc walk costs a few ms): their
// pids, names and RSS (ksmtuned's "committed" memory), and whether the set changed.
import { readStatus } from '../procfs.js';
import { listVms } from '../vms.js';
import type { Vm } from '../vms.js';
import { PAGE_SIZE } from '../sample.js';

export interface VmView {
  vms: Vm[];
  /** Σ VmRSS of the QEMU processes, bytes. */
  committedBytes: number;
  /** Pages the VMs could offer KSM: the RSS of those not opted out. */
  candidatePages: number;
  changed: boolean;
}

export class VmWatch {
  private pids = '';
  private last: VmView = { vms: [], committedBytes: 0, candidatePages: 0, changed: false };

  constructor(private readonly isOptedOut: (vm: Vm) => boolean) {}

  async refresh(): Promise<VmView> {
    const vms = await listVms({ memory: false });
    const rss = await Promise.all(vms.map((vm) => readStatus(vm.pid).then((s) => s.vmRssBytes ?? 0, () => 0)));
    const key = vms.map((v) => v.pid).join(',');
    const changed = key !== this.pids;
    this.pids = key;
    const committedBytes = rss.reduce((a, b) => a + b, 0);
    const candidatePages = Math.floor(vms.reduce((a, vm, i) => a + (this.isOptedOut(vm) ? 0 : (rss[i] ?? 0)), 0) / PAGE_SIZE);
    this.last = { vms, committedBytes, candidatePages, changed };
    return this.last;
  }

  /** The last listing, with changed=false (nothing new was looked at). */
  get current(): VmView {
    return { ...this.last, changed: false };
  }
}
