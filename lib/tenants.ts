// Page fusion across security domains is a side channel (CAIN, Dedup Est Machina, Flip Feng
// Shui, VUsion): a VM can tell whether another VM holds a page by timing a write to its copy. The
// operator marks VMs with tenants; this finds KSM pages shared between VMs of different tenants,
// and VMs that should be kept out of KSM (opted out in the config, or mem-merge=off) but are not.
import { livePages } from './live.js';
import type { Vm } from './vms.js';
import { vmLabel } from './attribution.js';

/** What the operator says of one VM (the agent's config file, key "vms"). */
export interface VmPolicy {
  /** Tenant (security domain); VMs of different tenants sharing pages raise a warning. */
  tenant?: string;
  /** Keep this VM out of estimates and warn while KSM merges its pages (see README.md, section ksm-agent). */
  optOut?: boolean;
}

/** The per-VM policies, keyed by VM name (or pid). */
export interface VmPolicies {
  vms: Record<string, VmPolicy>;
}

export interface CrossTenantSharing {
  vm: string;
  tenant: string;
  peer: string;
  peerTenant: string;
  /** KSM pages of `vm` shared with `peer` (the peer it shares most with among other tenants). */
  pages: number;
}

/** A VM is opted out by the config, or by QEMU itself (-machine mem-merge=off). */
export function optedOut(vm: Vm, cfg: VmPolicies): { out: boolean; by?: 'config' | 'qemu' } {
  if (cfg.vms[vmLabel(vm)]?.optOut === true) return { out: true, by: 'config' };
  if (!vm.memMerge) return { out: true, by: 'qemu' };
  return { out: false };
}

/**
 * For each VM with a tenant, the VM of another tenant it shares most KSM pages with, if any.
 * VMs without a tenant are not compared (their domain is unknown). One pagemap walk per tagged VM
 * over itself and the VMs of other tenants: O(n²) page-table reads, so the daemon runs it every
 * tenantCheckSeconds, not every tick.
 */
export async function findCrossTenantSharing(vms: readonly Vm[], cfg: VmPolicies): Promise<CrossTenantSharing[]> {
  const tagged = vms.map((vm) => ({ vm, tenant: cfg.vms[vmLabel(vm)]?.tenant })).filter((t): t is { vm: Vm; tenant: string } => t.tenant !== undefined);
  const out: CrossTenantSharing[] = [];
  for (const { vm, tenant } of tagged) {
    const others = tagged.filter((t) => t.tenant !== tenant);
    if (others.length === 0) continue;
    const live = await livePages([vm.pid, ...others.map((o) => o.vm.pid)]).catch(() => undefined);
    const peer = live?.[0]?.topPeer;
    if (peer === undefined || peer.pages <= 0 || peer.index === 0) continue;
    const other = others[peer.index - 1];
    if (other === undefined) continue;
    out.push({ vm: vmLabel(vm), tenant, peer: vmLabel(other.vm), peerTenant: other.tenant, pages: peer.pages });
  }
  return out;
}

export function describeSharing(s: CrossTenantSharing): string {
  return (
    `VMs of different tenants share memory: ${s.vm} (tenant ${s.tenant}) shares ${s.pages} KSM pages with ${s.peer} (tenant ${s.peerTenant}); ` +
    'page fusion across tenants is a side channel: opt one of them out (-machine mem-merge=off, libvirt <nosharepages/>) or keep tenants on separate hosts'
  );
}
