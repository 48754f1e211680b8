// The running agent: each tick it samples KSM, asks the policy what it wants and writes the
// difference; every few ticks it re-lists the VMs; now and then it checks tenants and opt-outs
// and (when configured) scrubs the host page cache. It also answers the metrics' questions.
import { SamepageError } from '../errors.js';
import { scrubCache } from '../exclusive-cache.js';
import { readKsmStat } from '../procfs.js';
import { Scanner } from '../scanner.js';
import { readKsm, setKsm } from '../sysfs.js';
import type { KsmSettings } from '../sysfs.js';
import type { Vm } from '../vms.js';
import { attributeSavings, vmLabel } from '../attribution.js';
import type { Attribution } from '../attribution.js';
import type { AgentConfig } from './config.js';
import { History } from './history.js';
import type { Logger } from './log.js';
import type { AgentSnapshot, MetricsSource } from './metrics.js';
import { Policy, memoryPressure } from './policy.js';
import type { Decision, Pressure } from './policy.js';
import { hostSavings, ksmdTicks, takeSample } from '../sample.js';
import type { Sample } from '../sample.js';
import { describeSharing, findCrossTenantSharing, optedOut } from '../tenants.js';
import type { CrossTenantSharing } from '../tenants.js';
import { VmWatch } from './vm-watch.js';
import type { VmView } from './vm-watch.js';
import { USER_HZ, readVmstat } from '../procfs.js';
import { FingerprintService } from './fingerprints.js';

/** Re-list VMs at most this often (unless woken by SIGUSR1). */
const VM_REFRESH_MS = 10_000;
/** The same warning is repeated at most this often. */
const WARN_REPEAT_MS = 3_600_000;

export interface AgentCounters {
  ticks: number;
  settingWrites: number;
  errors: number;
  tenantWarnings: number;
  cacheBytesReclaimed: number;
}

function sameValue(a: unknown, b: unknown): boolean {
  return a === b;
}

export class Agent {
  readonly history: History;
  readonly policy: Policy;
  readonly counters: AgentCounters = { ticks: 0, settingWrites: 0, errors: 0, tenantWarnings: 0, cacheBytesReclaimed: 0 };
  readonly startedAt = Date.now();
  /** The VM sketches of /api/fingerprint and their metrics; the daemon starts and stops its schedule. */
  readonly fingerprints: FingerprintService;
  lastSample: Sample | undefined;
  lastDecision: Decision | undefined;
  lastPressure: Pressure | undefined;
  private readonly watch: VmWatch;
  private view: VmView | undefined;
  private lastVmRefresh = 0;
  private attribution: { at: number; value: Promise<Attribution | undefined> } | undefined;
  private crossTenant: CrossTenantSharing[] = [];
  private readonly warned = new Map<string, number>();
  private scanner: Scanner | undefined;
  /** Set when the daemon began to stop: from then on nothing is written to KSM or started. */
  private halted = false;

  constructor(
    private cfg: AgentConfig,
    private readonly log: Logger,
    readonly hasAdvisor: boolean,
  ) {
    this.history = new History(cfg.historySamples);
    this.policy = new Policy(cfg);
    this.watch = new VmWatch((vm) => optedOut(vm, this.cfg).out);
    this.fingerprints = new FingerprintService(cfg.fingerprint, log);
  }

  get config(): AgentConfig {
    return this.cfg;
  }

  reconfigure(cfg: AgentConfig): void {
    this.cfg = cfg;
    this.policy.reconfigure(cfg);
    this.fingerprints.reconfigure(cfg.fingerprint);
    this.attribution = undefined;
  }

  /** One control step. `refreshVms` forces a new VM listing (start, SIGUSR1). */
  async tick(refreshVms = false): Promise<Decision> {
    this.counters.ticks++;
    const sample = await takeSample();
    if (refreshVms || this.view === undefined || sample.mono - this.lastVmRefresh >= VM_REFRESH_MS) {
      const before = this.view;
      this.view = await this.watch.refresh();
      this.lastVmRefresh = sample.mono;
      if (before !== undefined && this.view.changed) {
        this.attribution = undefined;
        this.log.info('VMs changed', { vms: this.view.vms.map(vmLabel).join(',') || '(none)' });
      }
      await this.checkOptOuts(this.view.vms);
    } else {
      this.view = this.watch.current;
    }
    const view = this.view;
    const pressure = memoryPressure(this.cfg, sample.memory, view.committedBytes);
    const decision = this.policy.step({
      sample,
      pressure: pressure.pressure,
      vmsChanged: view.changed,
      hasAdvisor: this.hasAdvisor,
      candidatePages: view.candidatePages,
    });
    const r = decision.rates;
    if (r !== undefined && decision.state === 'merging') {
      this.log.debug('tick', {
        ksmd_cpu: r.ksmdCpu,
        visited_per_s: r.visitedPerSecond,
        cost_us: decision.costPerPage === undefined ? undefined : decision.costPerPage * 1e6,
        yield: decision.yieldEstimate,
        target_cpu: decision.targetCpu,
        merged: r.merged,
      });
    }
    // Stopping began while this tick read: the daemon restores what it found, so nothing to do.
    if (this.halted) return decision;
    await this.apply(sample, decision.settings);
    // Logged once the settings are written, so the log never runs ahead of sysfs.
    if (decision.transition !== undefined) {
      this.log.notice(`state ${decision.state}: ${decision.transition}`, {
        mode: decision.state === 'merging' ? decision.mode : undefined,
        free_kib: pressure.freeKiB,
        committed_kib: pressure.committedKiB,
        threshold_kib: pressure.thresholdKiB,
        saved_bytes: sample.ksm.counters.general_profit,
      });
    }
    this.lastSample = sample;
    this.lastDecision = decision;
    this.lastPressure = pressure;
    this.record(sample, decision, pressure);
    return decision;
  }

  /**
   * No more writes: the daemon is restoring the settings it found. A tick already past its reads
   * leaves KSM alone (the daemon also waits for it before restoring).
   */
  halt(): void {
    this.halted = true;
  }

  /** Writes the settings that differ from the sample (setKsm orders and validates them). */
  private async apply(sample: Sample, wanted: KsmSettings): Promise<void> {
    if (this.halted) return;
    const changes: KsmSettings = {};
    let any = false;
    for (const [k, v] of Object.entries(wanted) as [keyof KsmSettings, KsmSettings[keyof KsmSettings]][]) {
      if (v === undefined || sameValue(sample.ksm.settings[k], v)) continue;
      (changes as Record<string, unknown>)[k] = v;
      any = true;
    }
    if (!any) return;
    await setKsm(changes);
    this.counters.settingWrites++;
    this.log.debug('set KSM', changes as Record<string, unknown>);
  }

  private record(s: Sample, d: Decision, p: Pressure): void {
    const c = s.ksm.counters;
    const point = {
      at: s.at,
      state: d.state,
      mode: d.mode,
      run: s.ksm.settings.run ?? 0,
      pagesToScan: s.ksm.settings.pages_to_scan ?? 0,
      sleepMillisecs: s.ksm.settings.sleep_millisecs ?? 0,
      pagesShared: c.pages_shared ?? 0,
      pagesSharing: c.pages_sharing ?? 0,
      ksmZeroPages: c.ksm_zero_pages ?? 0,
      generalProfit: c.general_profit ?? 0,
      fullScans: c.full_scans ?? 0,
      pressure: p.pressure,
    };
    this.history.push({
      ...point,
      ...(d.rates?.ksmdCpu === undefined ? {} : { ksmdCpu: d.rates.ksmdCpu }),
      ...(d.yieldEstimate === undefined ? {} : { yield: d.yieldEstimate }),
    });
  }

  /** Logs a warning unless the same one was logged within the last hour. */
  private warnOnce(key: string, message: string): boolean {
    const now = Date.now();
    const last = this.warned.get(key);
    if (last !== undefined && now - last < WARN_REPEAT_MS) return false;
    this.warned.set(key, now);
    this.log.warning(message);
    return true;
  }

  /**
   * The agent cannot unmerge another process's memory (madvise works on one's own mappings only,
   * and process_madvise takes no KSM advice), so an opt-out is honoured by leaving the VM out of
   * estimates and candidate counts, and enforced by warning while KSM still merges its pages.
   */
  private async checkOptOuts(vms: Vm[]): Promise<void> {
    for (const vm of vms) {
      const o = optedOut(vm, this.cfg);
      if (!o.out || o.by !== 'config') continue;
      const merging = await readKsmStat(vm.pid).then((s) => s.ksm_merging_pages ?? 0, () => 0);
      if (merging > 0) {
        this.warnOnce(
          `optout:${vm.pid}`,
          `VM ${vmLabel(vm)} is opted out of KSM in the agent config, but KSM merges ${merging} of its pages: the agent cannot unmerge another process's memory; restart the VM with -machine mem-merge=off (libvirt: <memoryBacking><nosharepages/></memoryBacking>) to keep KSM away from it`,
        );
      }
    }
  }

  /** Cross-tenant sharing check (run every tenantCheckSeconds). */
  async checkTenants(): Promise<CrossTenantSharing[]> {
    const vms = this.view?.vms ?? [];
    this.crossTenant = await findCrossTenantSharing(vms, this.cfg);
    for (const s of this.crossTenant) {
      if (this.warnOnce(`tenant:${s.vm}:${s.peer}`, describeSharing(s))) this.counters.tenantWarnings++;
    }
    return this.crossTenant;
  }

  /** One exclusive-cache scrub over the configured VMs with the agent's long-lived scanner. */
  async scrubCache(): Promise<void> {
    if (this.halted) return;
    const c = this.cfg.cache;
    const { settings } = await readKsm();
    this.scanner ??= new Scanner({
      useZeroPages: settings.use_zero_pages ?? false,
      maxPageSharing: settings.max_page_sharing ?? 256,
      // Never the host's smart_scan: it skips guest pages that did not merge, and the cache pass
      // must see every guest page (scrubCache refuses a smart-scanning engine, so on a host with
      // smart_scan=1, the kernel default, every periodic scrub failed).
      smartScan: false,
    });
    try {
      const r = await scrubCache({ scanner: this.scanner, dryRun: c.dryRun, ...(c.vms.length > 0 ? { vms: c.vms } : {}), intervalMs: 50 });
      this.counters.cacheBytesReclaimed += r.cacheBytesReclaimed;
      this.log.info(c.dryRun ? 'cache scrub (dry run)' : 'cache scrub', {
        files: r.files,
        cached_pages: r.cachePagesTotal,
        in_guest: r.cachePagesInGuest,
        dropped: r.cachePagesDropped,
        reclaimed_bytes: r.cacheBytesReclaimed,
        ms: Math.round(r.elapsedMs),
      });
    } catch (err) {
      if (err instanceof SamepageError && err.code === 'NOT_FOUND') {
        this.log.debug(`cache scrub skipped: ${err.message}`);
        return;
      }
      throw err;
    }
  }

  /** Per-VM savings, recomputed when older than vmMetricsSeconds. */
  vmSavings(): Promise<Attribution | undefined> {
    const now = Date.now();
    if (this.attribution === undefined || now - this.attribution.at >= this.cfg.vmMetricsSeconds * 1000) {
      const vms = this.view?.vms ?? [];
      const value = readKsm()
        .then((k) => attributeSavings(vms, hostSavings(k.counters).bytes))
        .catch((err: unknown) => {
          this.log.warning(`per-VM savings: ${err instanceof Error ? err.message : String(err)}`);
          return undefined;
        });
      this.attribution = { at: now, value };
    }
    return this.attribution.value;
  }

  snapshot(): AgentSnapshot {
    const s: AgentSnapshot = { cpuBudget: this.cfg.cpuBudgetPercent / 100, startedAt: this.startedAt, ...this.counters };
    if (this.lastDecision !== undefined) s.decision = this.lastDecision;
    if (this.lastPressure !== undefined) s.pressure = this.lastPressure;
    return s;
  }

  metricsSource(): MetricsSource {
    return {
      readKsm: () => readKsm(),
      ksmdCpuSeconds: async () => {
        const ticks = await ksmdTicks();
        return ticks === undefined ? undefined : ticks / USER_HZ;
      },
      cowKsm: async () => (await readVmstat().catch(() => undefined))?.cow_ksm,
      vmSavings: () => this.vmSavings(),
      vmPolicies: () =>
        (this.view?.vms ?? []).map((vm) => {
          const tenant = this.cfg.vms[vmLabel(vm)]?.tenant;
          return { vm: vmLabel(vm), optedOut: optedOut(vm, this.cfg).out, ...(tenant === undefined ? {} : { tenant }) };
        }),
      crossTenant: () => this.crossTenant.map((c) => ({ vm: c.vm, peer: c.peer, pages: c.pages })),
      fingerprints: () => this.fingerprints.current(),
      agent: () => this.snapshot(),
    };
  }

  async close(): Promise<void> {
    await this.fingerprints.stop();
    const s = this.scanner;
    this.scanner = undefined;
    if (s !== undefined) await s.close();
  }
}
