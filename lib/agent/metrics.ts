// Prometheus metrics (prom-client, a registry of our own). System values carry node_exporter's
// ksmd collector names (node_ksmd_*) and are read from sysfs at scrape time, so they equal what
// /sys/kernel/mm/ksm says then; what node_exporter does not export is under samepage_ksm_*.
// Per-VM series carry a `vm` label (the VM's name, never the pid: pids churn on restarts); the
// agent's own series are samepage_agent_* plus the standard process_* ones.
//
// One collector per source, each run once per scrape before the registry is serialized: the KSM
// one reads sysfs (and ksmd's stat, /proc/vmstat) once and sets every KSM series, the per-VM one
// takes one attribution, the agent one one snapshot. A value the source lacks (a file an older
// kernel does not have) leaves its series without a sample rather than a made-up 0; the agent's
// own gauges read 0 until it has a value, as dashboards expect.
import { Counter, Gauge, Registry } from 'prom-client';
import type { KsmState } from '../sysfs.js';
import type { Attribution } from '../attribution.js';
import type { Decision, Pressure } from './policy.js';
import type { FingerprintSnapshot } from './fingerprints.js';
import { distinctEstimate } from '../fingerprint/sketch.js';

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
  /** The daemon's latest VM sketches (fingerprints.ts), kept between runs; undefined when none. */
  fingerprints(): FingerprintSnapshot | undefined;
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

/** The endpoint's view: what /metrics answers with. */
export interface MetricsEndpoint {
  readonly contentType: string;
  /** Runs every collector once, then the exposition text. */
  metrics(): Promise<string>;
}

type Collect = () => Promise<void>;

/** Series without labels, built on one registry; absent values leave no sample. */
class Series {
  constructor(private readonly registry: Registry) {}

  gauge(name: string, help: string): (v: number | undefined) => void {
    const g = new Gauge({ name, help, registers: [this.registry] });
    return (v) => (v === undefined ? g.remove() : g.set(v));
  }

  /**
   * A gauge of the agent's own state, 0 while it has no value yet (before the first tick, no yield
   * measured): dashboards built on these series always find one.
   */
  agentGauge(name: string, help: string): (v: number | undefined) => void {
    const g = new Gauge({ name, help, registers: [this.registry] });
    return (v) => g.set(v ?? 0);
  }

  /** A counter that mirrors a total kept elsewhere (the kernel's, or the agent's). */
  total(name: string, help: string): (v: number | undefined) => void {
    const c = new Counter({ name, help, registers: [this.registry] });
    return (v) => {
      c.reset();
      if (v === undefined) c.remove();
      else c.inc(v);
    };
  }

  /** One series per label value, 1 for the current one and 0 for the others. */
  oneHot(name: string, help: string, label: string, values: string[]): (current: string) => void {
    const g = new Gauge({ name, help, labelNames: [label], registers: [this.registry] });
    return (current) => {
      for (const v of values) g.set({ [label]: v }, v === current ? 1 : 0);
    };
  }
}

/** sysfs, ksmd's CPU time and cow_ksm: read once per scrape. */
function ksmCollector(registry: Registry, series: Series, src: MetricsSource): Collect {
  const files = NODE_KSMD_GAUGES.map(([name, help]) => [name, series.gauge(`node_ksmd_${name}`, help)] as const);
  const fullScans = series.total('node_ksmd_full_scans_total', 'How many times all mergeable areas have been scanned.');
  const sleepSeconds = series.gauge('node_ksmd_sleep_seconds', 'Seconds ksmd sleeps between batches (sleep_millisecs / 1000).');
  const generalProfit = series.gauge('node_ksmd_general_profit_bytes', 'Net bytes KSM saves: merged pages minus the rmap_items that track candidates (can be negative).');
  // Beyond node_exporter.
  const scanned = series.total('samepage_ksm_pages_scanned_total', 'Pages ksmd has scanned (6.7+).');
  const skipped = series.total('samepage_ksm_pages_skipped_total', 'Pages smart_scan skipped (6.7+).');
  const zeroPages = series.gauge('samepage_ksm_zero_pages', 'Empty pages KSM mapped to the zero page (use_zero_pages=1).');
  const chains = series.gauge('samepage_ksm_stable_node_chains', 'KSM pages that reached max_page_sharing.');
  const dups = series.gauge('samepage_ksm_stable_node_dups', 'Duplicated KSM pages of those chains.');
  const setting = new Gauge({
    name: 'samepage_ksm_setting',
    help: 'Every writable KSM setting by file name (booleans 0/1; advisor_mode 1 = scan-time).',
    labelNames: ['setting'],
    registers: [registry],
  });
  const ksmdCpu = series.total('samepage_ksmd_cpu_seconds_total', 'CPU time the ksmd kernel thread has used (utime + stime from /proc/<ksmd>/stat).');
  const cowKsm = series.total('samepage_cow_ksm_total', 'Writes that broke a KSM page (copy-on-write), from /proc/vmstat cow_ksm.');

  return async () => {
    const [k, cpu, cow] = await Promise.all([src.readKsm(), src.ksmdCpuSeconds(), src.cowKsm()]);
    const file = (name: string): number | undefined => asNumber(k.settings[name as keyof KsmState['settings']] ?? k.counters[name as keyof KsmState['counters']]);
    for (const [name, set] of files) set(file(name));
    fullScans(file('full_scans'));
    const sleep = file('sleep_millisecs');
    sleepSeconds(sleep === undefined ? undefined : sleep / 1000);
    generalProfit(file('general_profit'));
    scanned(file('pages_scanned'));
    skipped(file('pages_skipped'));
    zeroPages(file('ksm_zero_pages'));
    chains(file('stable_node_chains'));
    dups(file('stable_node_dups'));
    setting.reset();
    for (const [name, value] of Object.entries(k.settings)) {
      const v = asNumber(value as number | boolean | string | undefined);
      if (v !== undefined) setting.set({ setting: name }, v);
    }
    ksmdCpu(cpu);
    cowKsm(cow);
  };
}

/** Per VM: one attribution (cached by the agent for vmMetricsSeconds), policies, cross-tenant sharing. */
function vmCollector(registry: Registry, series: Series, src: MetricsSource): Collect {
  const perVm = (name: string, help: string, pick: (v: Attribution['vms'][number]) => number | undefined) => ({
    gauge: new Gauge({ name, help, labelNames: ['vm'], registers: [registry] }),
    pick,
  });
  const rows = [
    perVm('samepage_vm_saved_bytes', 'Bytes KSM saves for this VM, attributed fairly (the column sums to general_profit; README.md, section ksm-agent).', (r) => r.savedBytes),
    perVm('samepage_vm_ksm_pages', 'Pages of this VM mapped to KSM pages (ksm_merging_pages).', (r) => r.ksmPages),
    perVm('samepage_vm_ksm_zero_pages', 'Pages of this VM KSM mapped to the zero page.', (r) => r.zeroPages),
    perVm('samepage_vm_rmap_items', 'rmap_items KSM keeps for this VM (64 bytes each).', (r) => r.rmapItems),
    perVm('samepage_vm_ram_bytes', 'Guest RAM size from the QEMU command line.', (r) => r.ramBytes),
  ];
  const other = series.gauge('samepage_other_saved_bytes', 'general_profit not attributed to any VM: KSM users that are not QEMU processes.');
  const info = new Gauge({
    name: 'samepage_vm_info',
    help: 'Per-VM policy: tenant (empty when none) and opted_out (1 = keep KSM away from this VM).',
    labelNames: ['vm', 'tenant', 'opted_out'],
    registers: [registry],
  });
  const crossTenant = new Gauge({
    name: 'samepage_vm_cross_tenant_pages',
    help: 'KSM pages this VM shares with a VM of another tenant (a page-fusion side channel).',
    labelNames: ['vm', 'peer'],
    registers: [registry],
  });

  return async () => {
    const a = await src.vmSavings();
    for (const { gauge, pick } of rows) {
      gauge.reset();
      for (const row of a?.vms ?? []) {
        const v = pick(row);
        if (v !== undefined && row.error === undefined) gauge.set({ vm: row.name }, v);
      }
    }
    other(a?.otherBytes);
    info.reset();
    for (const p of src.vmPolicies()) info.set({ vm: p.vm, tenant: p.tenant ?? '', opted_out: p.optedOut ? '1' : '0' }, 1);
    crossTenant.reset();
    for (const c of src.crossTenant()) crossTenant.set({ vm: c.vm, peer: c.peer }, c.pages);
  };
}

/**
 * Per VM, the summary figures of the daemon's latest sketches (no sketching at scrape time: the
 * sketches are taken on their own schedule, fingerprints.ts). VM labels are the sketches' names,
 * the same bounded labels as the other per-VM series; prom-client escapes them.
 */
function fingerprintCollector(registry: Registry, series: Series, src: MetricsSource): Collect {
  const perVm = (name: string, help: string) => new Gauge({ name, help, labelNames: ['vm'], registers: [registry] });
  const pages = perVm('samepage_vm_fingerprint_pages', 'Resident pages of this VM KSM would scan (guest RAM and ROMs), at its latest sketch.');
  const zero = perVm('samepage_vm_fingerprint_zero_pages', 'Of those, zero-filled pages (zero subpages of huge pages included), at its latest sketch.');
  const distinct = perVm('samepage_vm_fingerprint_distinct_estimate', 'Distinct non-zero page contents of this VM, estimated from its sketch (exact for a complete sketch).');
  const age = perVm('samepage_vm_fingerprint_sketch_age_seconds', 'Seconds since this VM was sketched.');
  const duration = series.gauge('samepage_fingerprint_run_seconds', 'How long the latest run that sketched every VM took (about 2 s per GiB of guest RAM).');
  return () => {
    const f = src.fingerprints();
    const now = Date.now();
    for (const g of [pages, zero, distinct, age]) g.reset();
    for (const s of f?.sketches ?? []) {
      const vm = { vm: s.name };
      pages.set(vm, s.pages);
      zero.set(vm, s.zeroPages + s.thpZeroPages);
      distinct.set(vm, Math.round(distinctEstimate(s)));
      age.set(vm, Math.max(0, (now - s.takenAt) / 1000));
    }
    duration(f === undefined ? undefined : (f.finishedAt - f.startedAt) / 1000);
    return Promise.resolve();
  };
}

/** The agent's own state and counters, and the standard process_* series: one snapshot. */
function agentCollector(series: Series, src: MetricsSource): Collect {
  const state = series.oneHot('samepage_agent_state', 'The policy state: off (no memory pressure), merging, settled (nothing more to gain).', 'state', ['off', 'merging', 'settled']);
  const mode = series.oneHot('samepage_agent_scan_mode', 'Who sets the scan rate while merging: the agent (ramp) or the kernel advisor (advisor).', 'mode', ['ramp', 'advisor']);
  const pressure = series.agentGauge('samepage_agent_memory_pressure', '1 when memory use is past the start threshold (ksmtuned rule).');
  const threshold = series.agentGauge('samepage_agent_threshold_bytes', 'The start threshold: max(MemTotal × thresholdPercent, thresholdMinKiB).');
  const committed = series.agentGauge('samepage_agent_committed_bytes', 'RSS of the VMs (ksmtuned: committed memory).');
  const free = series.agentGauge('samepage_agent_free_bytes', 'Free memory as the threshold counts it.');
  const ksmdCpu = series.agentGauge('samepage_agent_ksmd_cpu_ratio', "ksmd's share of one core over the last tick.");
  const budget = series.agentGauge('samepage_agent_ksmd_cpu_budget_ratio', 'The ksmd CPU budget, as a share of one core.');
  const target = series.agentGauge('samepage_agent_target_cpu_ratio', 'The share of a core the ramp aims ksmd at now (budget × effort).');
  const yieldRatio = series.agentGauge('samepage_agent_yield_ratio', 'New merges per scanned page: the yield that steers the ramp.');
  const volatile = series.agentGauge('samepage_agent_volatile_ratio', 'Smoothed share of tracked pages that are volatile.');
  const ticks = series.total('samepage_agent_ticks_total', 'Policy ticks run.');
  const writes = series.total('samepage_agent_setting_writes_total', 'Times the agent changed KSM settings.');
  const errors = series.total('samepage_agent_errors_total', 'Ticks that failed (logged).');
  const tenantWarnings = series.total('samepage_agent_tenant_warnings_total', 'Cross-tenant sharing warnings logged.');
  const reclaimed = series.total('samepage_agent_cache_bytes_reclaimed_total', 'Host page cache dropped by exclusive-cache scrubs.');
  // The standard process metrics, computed at scrape (prom-client's default set would add an
  // event-loop monitor that wakes every 10 ms, which an idle agent should not pay for).
  const cpuSeconds = series.total('process_cpu_seconds_total', 'Total user and system CPU time spent in seconds.');
  const rss = series.gauge('process_resident_memory_bytes', 'Resident memory size in bytes.');
  const startTime = series.gauge('process_start_time_seconds', 'Start time of the process since unix epoch in seconds.');

  return () => {
    const a = src.agent();
    const d = a.decision;
    const p = a.pressure;
    state(d?.state ?? 'off');
    mode(d?.mode ?? 'ramp');
    pressure(p === undefined ? undefined : p.pressure ? 1 : 0);
    threshold(p === undefined ? undefined : p.thresholdKiB * 1024);
    committed(p === undefined ? undefined : p.committedKiB * 1024);
    free(p === undefined ? undefined : p.freeKiB * 1024);
    ksmdCpu(d?.rates?.ksmdCpu);
    budget(a.cpuBudget);
    target(d?.targetCpu);
    yieldRatio(d?.yieldEstimate);
    volatile(d?.volatileShare);
    ticks(a.ticks);
    writes(a.settingWrites);
    errors(a.errors);
    tenantWarnings(a.tenantWarnings);
    reclaimed(a.cacheBytesReclaimed);
    const u = process.cpuUsage();
    cpuSeconds((u.user + u.system) / 1e6);
    rss(process.memoryUsage.rss());
    startTime(Math.round(a.startedAt / 1000));
    return Promise.resolve();
  };
}

export function createMetrics(src: MetricsSource): MetricsEndpoint {
  const registry = new Registry();
  const series = new Series(registry);
  const collectors = [ksmCollector(registry, series, src), vmCollector(registry, series, src), fingerprintCollector(registry, series, src), agentCollector(series, src)];
  return {
    contentType: registry.contentType,
    async metrics() {
      await Promise.all(collectors.map((collect) => collect()));
      return registry.metrics();
    },
  };
}
