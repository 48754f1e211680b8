// Prometheus metrics (prom-client, a registry of our own). System values carry node_exporter's
// ksmd collector names (node_ksmd_*) and are read from sysfs at scrape time, so they equal what
// /sys/kernel/mm/ksm says then; what node_exporter does not export is under samepage_ksm_*.
// Per-VM series carry a `vm` label (the VM's name, never the pid: pids churn on restarts); the
// agent's own series are samepage_agent_* plus the standard process_* ones.
// Deep imports keep the package index (Pushgateway, default metrics, OpenTelemetry) unloaded:
// 11 MB less RSS (types/prom-client-lean.d.ts).
import Counter = require('prom-client/lib/counter');
import Gauge = require('prom-client/lib/gauge');
import Registry = require('prom-client/lib/registry');
import type { KsmState } from '../sysfs.js';
import type { Attribution } from '../attribution.js';
import type { Decision, Pressure } from './policy.js';

/** What the metrics read from the running agent at scrape time. */
export interface MetricsSource {
  /** The KSM sysfs files, read now. */
  readKsm(): Promise<KsmState>;
  /** ksmd's CPU seconds so far (utime + stime), read now. */
  ksmdCpuSeconds(): Promise<number | undefined>;
  cowKsm(): Promise<number | undefined>;
  /** Per-VM savings, refreshed when older than vmMetricsSeconds. */
  vmSavings(): Promise<Attribution | undefined>;
  /** Tenants, opt-outs and cross-tenant sharing, by VM label. */
  vmPolicies(): { vm: string; tenant?: string; optedOut: boolean }[];
  crossTenant(): { vm: string; peer: string; pages: number }[];
  agent(): AgentSnapshot;
}

export interface AgentSnapshot {
  decision?: Decision;
  pressure?: Pressure;
  cpuBudget: number;
  ticks: number;
  settingWrites: number;
  errors: number;
  tenantWarnings: number;
  cacheBytesReclaimed: number;
  startedAt: number;
}

const NODE_KSMD_GAUGES: [string, string][] = [
  ['merge_across_nodes', 'Whether pages from different NUMA nodes can be merged (1) or not (0).'],
  ['pages_shared', 'How many KSM pages are in use (the kept copies).'],
  ['pages_sharing', 'How many more mappings share those pages, i.e. how many pages are saved.'],
  ['pages_to_scan', 'How many pages ksmd scans before it sleeps.'],
  ['pages_unshared', 'How many unique pages ksmd checks again and again.'],
  ['pages_volatile', 'How many pages change too fast to be put in a tree.'],
  ['run', 'ksmd state: 0 stopped, 1 running, 2 stopped with every page unmerged.'],
];

function asNumber(v: number | boolean | string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'string') return v === 'scan-time' ? 1 : 0;
  return v;
}

export function createMetrics(src: MetricsSource): InstanceType<typeof Registry> {
  const registry = new Registry();
  const reg = [registry];
  type Read = () => number | undefined | Promise<number | undefined>;

  /** A gauge whose value is read at scrape time; absent (no sample) when the read gives nothing. */
  const gauge = (name: string, help: string, read: Read): void => {
    new Gauge({
      name,
      help,
      registers: reg,
      async collect() {
        const v = await read();
        if (v === undefined) this.reset();
        else this.set(v);
      },
    });
  };
  /** A counter that mirrors a total kept elsewhere (the kernel's, or the agent's). */
  const total = (name: string, help: string, read: Read): void => {
    new Counter({
      name,
      help,
      registers: reg,
      async collect() {
        const v = await read();
        this.reset();
        if (v !== undefined) this.inc(v);
      },
    });
  };
  /** A gauge with one series per label value, 1 for the current one and 0 for the others. */
  const oneHot = (name: string, help: string, label: string, values: string[], current: () => string): void => {
    new Gauge({
      name,
      help,
      labelNames: [label],
      registers: reg,
      collect() {
        const now = current();
        for (const v of values) this.set({ [label]: v }, v === now ? 1 : 0);
      },
    });
  };

  // Each scrape reads sysfs once; every collect of that scrape shares the reading.
  let reading: Promise<KsmState> | undefined;
  const ksm = (): Promise<KsmState> => (reading ??= src.readKsm().finally(() => setImmediate(() => (reading = undefined))));
  const file = (name: string) => async (): Promise<number | undefined> => {
    const k = await ksm();
    return asNumber(k.settings[name as keyof typeof k.settings] ?? k.counters[name as keyof typeof k.counters]);
  };

  for (const [name, help] of NODE_KSMD_GAUGES) gauge(`node_ksmd_${name}`, help, file(name));
  total('node_ksmd_full_scans_total', 'How many times all mergeable areas have been scanned.', file('full_scans'));
  gauge('node_ksmd_sleep_seconds', 'Seconds ksmd sleeps between batches (sleep_millisecs / 1000).', async () => {
    const v = await file('sleep_millisecs')();
    return v === undefined ? undefined : v / 1000;
  });
  gauge('node_ksmd_general_profit_bytes', 'Net bytes KSM saves: merged pages minus the rmap_items that track candidates (can be negative).', file('general_profit'));

  // Beyond node_exporter.
  total('samepage_ksm_pages_scanned_total', 'Pages ksmd has scanned (6.7+).', file('pages_scanned'));
  total('samepage_ksm_pages_skipped_total', 'Pages smart_scan skipped (6.7+).', file('pages_skipped'));
  gauge('samepage_ksm_zero_pages', 'Empty pages KSM mapped to the zero page (use_zero_pages=1).', file('ksm_zero_pages'));
  gauge('samepage_ksm_stable_node_chains', 'KSM pages that reached max_page_sharing.', file('stable_node_chains'));
  gauge('samepage_ksm_stable_node_dups', 'Duplicated KSM pages of those chains.', file('stable_node_dups'));
  new Gauge({
    name: 'samepage_ksm_setting',
    help: 'Every writable KSM setting by file name (booleans 0/1; advisor_mode 1 = scan-time).',
    labelNames: ['setting'],
    registers: reg,
    async collect() {
      this.reset();
      for (const [name, value] of Object.entries((await ksm()).settings)) {
        const v = asNumber(value as number | boolean | string | undefined);
        if (v !== undefined) this.set({ setting: name }, v);
      }
    },
  });
  total('samepage_ksmd_cpu_seconds_total', 'CPU time the ksmd kernel thread has used (utime + stime from /proc/<ksmd>/stat).', () => src.ksmdCpuSeconds());
  total('samepage_cow_ksm_total', 'Writes that broke a KSM page (copy-on-write), from /proc/vmstat cow_ksm.', () => src.cowKsm());

  // Per VM. One attribution per scrape, shared by the gauges below.
  let vmReading: Promise<Attribution | undefined> | undefined;
  const vms = (): Promise<Attribution | undefined> => (vmReading ??= src.vmSavings().finally(() => setImmediate(() => (vmReading = undefined))));
  const perVm = (name: string, help: string, pick: (v: Attribution['vms'][number]) => number | undefined): void => {
    new Gauge({
      name,
      help,
      labelNames: ['vm'],
      registers: reg,
      async collect() {
        this.reset();
        const a = await vms();
        for (const row of a?.vms ?? []) {
          const v = pick(row);
          if (v !== undefined && row.error === undefined) this.set({ vm: row.name }, v);
        }
      },
    });
  };
  perVm('samepage_vm_saved_bytes', 'Bytes KSM saves for this VM, attributed fairly (the column sums to general_profit; README.md, section ksm-agent).', (r) => r.savedBytes);
  perVm('samepage_vm_ksm_pages', 'Pages of this VM mapped to KSM pages (ksm_merging_pages).', (r) => r.ksmPages);
  perVm('samepage_vm_ksm_zero_pages', 'Pages of this VM KSM mapped to the zero page.', (r) => r.zeroPages);
  perVm('samepage_vm_rmap_items', 'rmap_items KSM keeps for this VM (64 bytes each).', (r) => r.rmapItems);
  perVm('samepage_vm_ram_bytes', 'Guest RAM size from the QEMU command line.', (r) => r.ramBytes);
  gauge('samepage_other_saved_bytes', 'general_profit not attributed to any VM: KSM users that are not QEMU processes.', async () => (await vms())?.otherBytes);
  new Gauge({
    name: 'samepage_vm_info',
    help: 'Per-VM policy: tenant (empty when none) and opted_out (1 = keep KSM away from this VM).',
    labelNames: ['vm', 'tenant', 'opted_out'],
    registers: reg,
    collect() {
      this.reset();
      for (const p of src.vmPolicies()) this.set({ vm: p.vm, tenant: p.tenant ?? '', opted_out: p.optedOut ? '1' : '0' }, 1);
    },
  });
  new Gauge({
    name: 'samepage_vm_cross_tenant_pages',
    help: 'KSM pages this VM shares with a VM of another tenant (a page-fusion side channel).',
    labelNames: ['vm', 'peer'],
    registers: reg,
    collect() {
      this.reset();
      for (const c of src.crossTenant()) this.set({ vm: c.vm, peer: c.peer }, c.pages);
    },
  });

  // The agent itself.
  const a = (): AgentSnapshot => src.agent();
  oneHot('samepage_agent_state', 'The policy state: off (no memory pressure), merging, settled (nothing more to gain).', 'state', ['off', 'merging', 'settled'], () => a().decision?.state ?? 'off');
  oneHot('samepage_agent_scan_mode', 'Who sets the scan rate while merging: the agent (ramp) or the kernel advisor (advisor).', 'mode', ['ramp', 'advisor'], () => a().decision?.mode ?? 'ramp');
  const pressure = (pick: (p: Pressure) => number): Read => () => {
    const p = a().pressure;
    return p === undefined ? undefined : pick(p);
  };
  gauge('samepage_agent_memory_pressure', '1 when memory use is past the start threshold (ksmtuned rule).', pressure((p) => (p.pressure ? 1 : 0)));
  gauge('samepage_agent_threshold_bytes', 'The start threshold: max(MemTotal × thresholdPercent, thresholdMinKiB).', pressure((p) => p.thresholdKiB * 1024));
  gauge('samepage_agent_committed_bytes', 'RSS of the VMs (ksmtuned: committed memory).', pressure((p) => p.committedKiB * 1024));
  gauge('samepage_agent_free_bytes', 'Free memory as the threshold counts it.', pressure((p) => p.freeKiB * 1024));
  gauge('samepage_agent_ksmd_cpu_ratio', "ksmd's share of one core over the last tick.", () => a().decision?.rates?.ksmdCpu);
  gauge('samepage_agent_ksmd_cpu_budget_ratio', 'The ksmd CPU budget, as a share of one core.', () => a().cpuBudget);
  gauge('samepage_agent_target_cpu_ratio', 'The share of a core the ramp aims ksmd at now (budget × effort).', () => a().decision?.targetCpu);
  gauge('samepage_agent_yield_ratio', 'New merges per scanned page: the yield that steers the ramp.', () => a().decision?.yieldEstimate);
  gauge('samepage_agent_volatile_ratio', 'Smoothed share of tracked pages that are volatile.', () => a().decision?.volatileShare);
  total('samepage_agent_ticks_total', 'Policy ticks run.', () => a().ticks);
  total('samepage_agent_setting_writes_total', 'Times the agent changed KSM settings.', () => a().settingWrites);
  total('samepage_agent_errors_total', 'Ticks that failed (logged).', () => a().errors);
  total('samepage_agent_tenant_warnings_total', 'Cross-tenant sharing warnings logged.', () => a().tenantWarnings);
  total('samepage_agent_cache_bytes_reclaimed_total', 'Host page cache dropped by exclusive-cache scrubs.', () => a().cacheBytesReclaimed);

  // The standard process metrics, computed at scrape (prom-client's default set would add an
  // event-loop monitor that wakes every 10 ms, which an idle agent should not pay for).
  total('process_cpu_seconds_total', 'Total user and system CPU time spent in seconds.', () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  });
  gauge('process_resident_memory_bytes', 'Resident memory size in bytes.', () => process.memoryUsage.rss());
  gauge('process_start_time_seconds', 'Start time of the process since unix epoch in seconds.', () => Math.round(a().startedAt / 1000));
  return registry;
}
