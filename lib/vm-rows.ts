// The per-VM rows of `ksm-agent vms --json` and of the status page's /api/vms: one function, so
// the two cannot drift apart. The attribution gives the figures; the caller says each VM's tenant
// and opt-out (the CLI from the config file and the VM's QEMU flags, the daemon from its own).
import type { Attribution, VmSaving } from './attribution.js';
import type { VmRow } from './api-types.js';

export type { VmRow } from './api-types.js';

export interface RowPolicy {
  tenant: string | null;
  optedOut: boolean;
}

/** One row per VM, plus "(other processes)" when KSM users that are not VMs save something. */
export function vmRows(a: Attribution, policyOf: (row: VmSaving, index: number) => RowPolicy): VmRow[] {
  const rows: VmRow[] = a.vms.map((r, i) => {
    const policy = policyOf(r, i);
    const row: VmRow = {
      name: r.name,
      pid: r.pid,
      ram_bytes: r.ramBytes ?? null,
      ksm_pages: r.ksmPages,
      ksm_zero_pages: r.zeroPages,
      rmap_items: r.rmapItems,
      fair_pages: r.fairPages,
      saved_bytes: r.savedBytes,
      top_peer: r.topPeer ?? null,
      tenant: policy.tenant,
      opted_out: policy.optedOut,
    };
    if (r.error !== undefined) row.error = r.error;
    return row;
  });
  if (a.otherBytes !== 0) {
    rows.push({
      name: '(other processes)',
      pid: null,
      ram_bytes: null,
      ksm_pages: 0,
      ksm_zero_pages: 0,
      rmap_items: 0,
      fair_pages: 0,
      saved_bytes: a.otherBytes,
      top_peer: null,
      tenant: null,
      opted_out: false,
    });
  }
  return rows;
}
