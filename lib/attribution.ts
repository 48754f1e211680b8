// Per-VM KSM savings that add up: the rule the `vms` command, the metrics and the README state.
//
//   saved_bytes(VM) = fair_pages × 4096 + ksm_zero_pages × 4096 − ksm_rmap_items × 64
//
// fair_pages: each KSM page mapped m times host-wide saves m − 1 pages; each of its m mappings is
// credited (m − 1)/m (from pagemap + kpageflags + kpagecount, livePages()). So the fair pages of
// all KSM users sum to pages_sharing, and with the kernel's per-process ksm_zero_pages and
// ksm_rmap_items the VMs' saved bytes sum to general_profit
// (= (pages_sharing + ksm_zero_pages) × 4096 − rmap_items × 64) when the VMs are the only KSM
// users. Any other KSM user's part is reported as one "other processes" remainder, so the column
// always sums to general_profit.
import { livePages } from './live.js';
import { readKsmStat } from './procfs.js';
import type { Vm } from './vms.js';
import { PAGE_SIZE } from './sample.js';

/** Bytes of one rmap_item on 64-bit kernels: KSM's tracking cost per scanned page. */
export const RMAP_ITEM_BYTES = 64;

export interface VmSaving {
  name: string;
  pid: number;
  ramBytes?: number;
  /** Pages mapped to KSM pages (= /proc/PID/ksm_merging_pages). */
  ksmPages: number;
  /** KSM-placed zero pages (ksm_stat; use_zero_pages=1). */
  zeroPages: number;
  rmapItems: number;
  /** Fair share of pages_sharing (fractional). */
  fairPages: number;
  /** The rule above, rounded so that the column sums to the rounded total. */
  savedBytes: number;
  /** The VM it shares most KSM pages with. */
  topPeer?: { name: string; pid: number; pages: number };
  /** Why the figures could not be read (process gone), when they could not. */
  error?: string;
}

export interface Attribution {
  vms: VmSaving[];
  /** general_profit − Σ VM saved bytes: KSM users that are not VMs (0 when none). */
  otherBytes: number;
  generalProfit: number;
}

/** The label a VM goes by: its name, or "pid-N" when it has none. */
export function vmLabel(vm: Pick<Vm, 'name' | 'pid'>): string {
  return vm.name ?? `pid-${vm.pid}`;
}

/**
 * Rounds values to integers so that their sum equals the rounded exact sum (largest remainder):
 * every row stays within one unit of its exact value and the column adds up.
 */
export function roundToSum(values: number[]): number[] {
  const floors = values.map(Math.floor);
  const target = Math.round(values.reduce((a, b) => a + b, 0));
  let missing = target - floors.reduce((a, b) => a + b, 0);
  const order = values.map((v, i) => [v - Math.floor(v), i] as const).sort((x, y) => y[0] - x[0]);
  const out = [...floors];
  for (const [, i] of order) {
    if (missing <= 0) break;
    out[i] = (out[i] as number) + 1;
    missing--;
  }
  return out;
}

/**
 * Reads what KSM saves for each VM now. generalProfit is the sysfs value read by the caller at
 * about the same time (KSM keeps changing while ksmd runs).
 */
export async function attributeSavings(vms: readonly Vm[], generalProfit: number): Promise<Attribution> {
  const live = await livePages(vms.map((v) => v.pid));
  const stats = await Promise.all(vms.map((v) => readKsmStat(v.pid).catch((err: Error) => err)));
  const exact: number[] = [];
  const rows: VmSaving[] = vms.map((vm, i) => {
    const lp = live[i];
    const st = stats[i];
    const row: VmSaving = { name: vmLabel(vm), pid: vm.pid, ksmPages: 0, zeroPages: 0, rmapItems: 0, fairPages: 0, savedBytes: 0 };
    if (vm.ramBytes !== undefined) row.ramBytes = vm.ramBytes;
    if (st instanceof Error || lp === undefined || lp.error !== undefined) {
      row.error = st instanceof Error ? st.message : (lp?.error?.message ?? 'no pagemap figures');
      exact.push(0);
      return row;
    }
    row.ksmPages = lp.ksmPages;
    row.fairPages = lp.savedPages;
    row.zeroPages = st.ksm_zero_pages ?? 0;
    row.rmapItems = st.ksm_rmap_items ?? 0;
    exact.push(lp.savedPages * PAGE_SIZE + row.zeroPages * PAGE_SIZE - row.rmapItems * RMAP_ITEM_BYTES);
    if (lp.topPeer !== undefined && lp.topPeer.pages > 0) {
      const peer = vms[lp.topPeer.index];
      if (peer !== undefined) row.topPeer = { name: vmLabel(peer), pid: peer.pid, pages: lp.topPeer.pages };
    }
    return row;
  });
  const rounded = roundToSum(exact);
  rows.forEach((r, i) => (r.savedBytes = rounded[i] as number));
  const sum = rounded.reduce((a, b) => a + b, 0);
  return { vms: rows, otherBytes: generalProfit - sum, generalProfit };
}
