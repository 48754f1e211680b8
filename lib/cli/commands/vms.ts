// ksm-agent vms: what KSM saves for each VM, attributed so that the column sums to the host's
// saving (general_profit), and which VM each one shares most with.
import { attributeSavings } from '../../attribution.js';
import type { Attribution } from '../../attribution.js';
import { vmRows } from '../../vm-rows.js';
import type { VmRow } from '../../vm-rows.js';
import { loadVmPolicies } from '../policies.js';
import { optedOut } from '../../tenants.js';
import { readKsm } from '../../sysfs.js';
import { hostSavings } from '../../sample.js';
import { NotPermittedError } from '../../errors.js';
import { listVms, noVmsFound } from '../../vms.js';
import type { Vm } from '../../vms.js';
import { flag, noPositionals, parse, str } from '../args.js';
import type { OptionSpec } from '../args.js';
import { commandHelp } from '../help.js';
import { DEFAULT_CONFIG_PATH } from '../../paths.js';
import type { Command, Io } from '../command.js';
import { formatBytes, formatCount, renderTable } from '../../format.js';

const OPTIONS = [
  {
    name: 'json',
    type: 'boolean',
    description:
      'an array, one object per VM: name, pid, ram_bytes, ksm_pages, ksm_zero_pages, rmap_items, fair_pages, saved_bytes, top_peer {name, pid, pages}, tenant, opted_out; plus a last entry {"name": "(other processes)", ...} when non-VM processes use KSM',
  },
  { name: 'config', type: 'string', value: 'PATH', description: 'the agent config that names tenants and opt-outs', default: `${DEFAULT_CONFIG_PATH}, read when it exists` },
] as const satisfies readonly OptionSpec[];

const HELP = commandHelp({
  command: 'vms',
  options: OPTIONS,
  about: `Every QEMU VM on this host with what KSM saves for it now:
  NAME, PID, RAM (guest RAM from -m), KSM PAGES (its pages mapped to KSM pages, as
  /proc/PID/ksm_merging_pages), SAVED, SHARES MOST WITH (the VM it has most KSM pages in common
  with), and its tenant / opt-out from the agent config.

How SAVED is attributed (fair, and it adds up):
  saved = fair_pages × 4096 + ksm_zero_pages × 4096 − ksm_rmap_items × 64
  A KSM page mapped m times host-wide saves m − 1 pages; each of its m mappings is credited
  (m − 1)/m of a page (pagemap + kpageflags + kpagecount). ksm_zero_pages and ksm_rmap_items are
  the VM's own (/proc/PID/ksm_stat). The fair pages of all KSM users sum to pages_sharing, so the
  SAVED column sums to general_profit; KSM users that are not VMs show as one "(other processes)"
  row, so the total is always general_profit. Rounded to whole bytes by largest remainder.`,
  notes: 'Needs root (page frame numbers in /proc/PID/pagemap need CAP_SYS_ADMIN).',
});

export type { VmRow } from '../../vm-rows.js';

export async function readVmRows(configPath?: string): Promise<{ rows: VmRow[]; generalProfit: number; estimated: boolean }> {
  const policies = await loadVmPolicies(configPath);
  const vms = await listVms({ memory: false });
  // ksmd may merge (and guests unshare) while the pagemaps are read: take a reading whose
  // general_profit did not move meanwhile, so the column adds up (at most 3 tries).
  // Kernels before 6.4 have no general_profit: the same formula from the page counters stands in.
  let a: Attribution | undefined;
  let estimated = false;
  for (let attempt = 0; attempt < 3; attempt++) {
    const before = hostSavings((await readKsm()).counters);
    estimated = before.estimated;
    a = await attributeSavings(vms, before.bytes);
    if (hostSavings((await readKsm()).counters).bytes === before.bytes) break;
  }
  const result = a as Attribution;
  const rows = vmRows(result, (r, i) => ({ tenant: policies.vms[r.name]?.tenant ?? null, optedOut: optedOut(vms[i] as Vm, policies).out }));
  return { rows, generalProfit: result.generalProfit, estimated };
}

export function vmTable(rows: VmRow[], generalProfit: number, estimated = false): string {
  const body = rows.map((r) => [
    r.name,
    r.pid === null ? '' : String(r.pid),
    r.ram_bytes === null ? '' : formatBytes(r.ram_bytes),
    r.pid === null ? '' : formatCount(r.ksm_pages),
    formatBytes(r.saved_bytes),
    r.top_peer === null ? '' : `${r.top_peer.name} (${formatCount(r.top_peer.pages)} pages)`,
    [r.tenant === null ? '' : `tenant ${r.tenant}`, r.opted_out ? 'opted out' : '', r.error ?? ''].filter((x) => x !== '').join(', '),
  ]);
  body.push(['total', '', '', '', formatBytes(generalProfit), '', estimated ? 'estimate (no general_profit before Linux 6.4): pages_sharing × 4096 − tracked pages × 64' : 'general_profit']);
  return renderTable(['NAME', 'PID', 'RAM', 'KSM PAGES', 'SAVED', 'SHARES MOST WITH', 'NOTES'], body, ['left', 'right', 'right', 'right', 'right', 'left', 'left']);
}

export const vms: Command = {
  name: 'vms',
  summary: 'per-VM savings (fair, summing to general_profit) and who shares with whom',
  options: OPTIONS,
  help: HELP,
  async run(argv: string[], io: Io): Promise<number> {
    const p = parse('vms', argv, OPTIONS);
    noPositionals('vms', p);
    const { rows, generalProfit, estimated } = await readVmRows(str(p, 'config'));
    // No VM row ("(other processes)" has no pid): a user other than root cannot verify other
    // users' QEMU processes (their /proc/PID/exe needs ptrace access), so "none" would be a guess:
    // say so with 77, in JSON mode too, rather than print a list a script would take for the truth.
    if (rows.every((r) => r.pid === null) && process.geteuid?.() !== 0) {
      throw new NotPermittedError({ what: "other users' QEMU processes cannot be verified as VMs without ptrace access to /proc/PID/exe, and none of your own were found", remedy: 'run as root (sudo ksm-agent vms)', capability: 'CAP_SYS_PTRACE' });
    }
    if (flag(p, 'json')) io.out(JSON.stringify(rows, null, 2));
    else if (rows.length === 0) io.out(noVmsFound());
    else io.out(vmTable(rows, generalProfit, estimated));
    return 0;
  },
};
