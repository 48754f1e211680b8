// `ksm-agent run`: the daemon's life. Start: root check, config, the single-instance lock, the
// state file (restoring what a crashed run left), the HTTP server. Run: the agent's ticks and the
// slower periodic jobs. Stop (SIGTERM, SIGINT, a fatal error): restore the settings found at
// start, delete the state file, release the lock. SIGHUP re-reads the config; SIGUSR1 retunes at
// once (ksmtuned's signal, sent by libvirt hooks when a guest starts or stops).
import { readFile } from 'node:fs/promises';
import { AlreadyRunningError, NotPermittedError, RestoreIncompleteError, SamepageError } from '../errors.js';
import { readKsm, snapshotSettings, setKsm } from '../sysfs.js';
import type { KsmSettings, KsmSnapshot } from '../sysfs.js';
import { Agent } from './agent.js';
import { loadConfig, parseListen } from './config.js';
import type { AgentConfig, LoadedConfig } from './config.js';
import { Router, startHttpServer } from './http.js';
import { readTokenFile } from './token-file.js';
import type { HttpServer } from './http.js';
import { acquireInstanceLock } from '../instance-lock.js';
import type { InstanceLock } from '../instance-lock.js';
import { KSMTUNED_IGNORED } from './ksmtuned-conf.js';
import { createLogger } from './log.js';
import type { Logger } from './log.js';
import { createMetrics } from './metrics.js';
import { readMemory } from '../sample.js';
import { readStateFile, removeStateFile, settleStateFile, writeStateFile, STATE_VERSION } from './state-file.js';
import type { AgentStateFile } from './state-file.js';
import { forgetRunningAgent, isRunningAgent, recordRunningAgent, recordedAgent, selfIdentity } from '../running-agent.js';
import { notRestored, restoreAsFarAsSafe, restoreWithHeadroom, unmergeAll } from '../unmerge.js';
import { mountStatusPage } from './web/status-page.js';
import { holdSignals, onInspectorClosed, returnHeldSignal, takeHeldSignal } from '../signal-hold.js';
import { Periodic } from './periodic.js';
import { configChanges, describeRestart, settingsToApply } from './reload.js';
import type { StatusPage } from './web/status-page.js';

export interface DaemonOptions {
  configPath?: string;
  overrides?: Record<string, unknown>;
  verbose?: boolean;
  logger?: Logger;
}

/** Ticks that may fail in a row (a VM vanishing mid-read is normal) before the daemon gives up. */
const MAX_FAILED_TICKS = 10;

async function bootId(): Promise<string | undefined> {
  return (await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => undefined))?.trim();
}

async function load(opts: DaemonOptions): Promise<LoadedConfig> {
  const mem = await readMemory();
  return loadConfig({
    memTotalKiB: Math.floor(mem.totalBytes / 1024),
    ...(opts.configPath === undefined ? {} : { path: opts.configPath }),
    ...(opts.overrides === undefined ? {} : { overrides: opts.overrides }),
  });
}

/**
 * Restores what a run that did not exit cleanly left in the state file, if it is from this boot.
 * Refused while the pid in it is a live ksm-agent (one started with another lock file): those
 * settings are its own to restore, and recovering them would undo its work under it. Returns the
 * settings it could not put back, with their values from the file: the new run still owes them.
 */
async function recoverCrashedRun(stateFile: string, reservePercent: number, log: Logger): Promise<Record<string, string>> {
  const state = await readStateFile(stateFile);
  if (state === undefined) return {};
  if (state.pid !== process.pid && (await isRunningAgent(state.pid, state.startTicks))) {
    throw new AlreadyRunningError(
      `another ksm-agent is already running (pid ${state.pid}): its state file is ${stateFile}; stop it first (systemctl stop ksm-agent, or kill ${state.pid}) — only one agent may tune KSM`,
      { pid: state.pid, path: stateFile },
    );
  }
  const boot = await bootId();
  const stateBoot = state.bootId;
  if (boot !== undefined && stateBoot !== undefined && boot !== stateBoot) {
    log.notice(`state file ${stateFile} is from an earlier boot: KSM settings are the kernel's boot values already; discarding it`);
    await removeStateFile(stateFile);
    return {};
  }
  log.warning(`the last ksm-agent (pid ${state.pid}, started ${state.startedAt}) did not exit cleanly: restoring the KSM settings it found`, { state_file: stateFile });
  const outcome = await restoreAsFarAsSafe(state.snapshot, reservePercent);
  if (outcome.leftOut.length > 0) log.warning(`left ${outcome.leftOut.join(', ')} as they are: restoring them needs every page unmerged (run=2) and MemAvailable cannot absorb that now`);
  for (const f of outcome.failures) log.warning(`could not restore ${f.file}: ${f.error.message}`);
  const left = notRestored(outcome);
  if (left.length === 0) {
    log.notice('restored the KSM settings left by the crashed run', { files: Object.keys(state.snapshot.files).length });
    await removeStateFile(stateFile);
    return {};
  }
  // The state file is rewritten at once with the new run's snapshot, which keeps these values.
  log.warning(`still to restore from the crashed run: ${left.join(', ')}; kept in the state file, put back when this run stops`);
  return Object.fromEntries(Object.entries(state.snapshot.files).filter(([name]) => left.includes(name)));
}

function logConfig(loaded: LoadedConfig, log: Logger): void {
  const c = loaded.config;
  log.info('configuration', {
    config: loaded.configPath ?? '(defaults)',
    ksmtuned_conf: loaded.ksmtuned?.path ?? 'none',
    threshold_percent: c.thresholdPercent,
    threshold_min_kib: c.thresholdMinKiB,
    cpu_budget_percent: c.cpuBudgetPercent,
    interval_s: c.intervalSeconds,
    advisor: c.advisor,
    fingerprint: c.fingerprint.enabled ? `every ${c.fingerprint.intervalSeconds} s or more, key ${c.fingerprint.keyFile}` : 'off',
  });
  for (const key of loaded.ksmtuned?.ignored ?? []) {
    log.info(`${loaded.ksmtuned?.path}: ${key} is not used: ${KSMTUNED_IGNORED[key] ?? ''}`);
  }
}

/** Runs until SIGTERM/SIGINT; resolves with the exit code. */
export async function runDaemon(opts: DaemonOptions = {}): Promise<number> {
  // Before anything that can take time: the bin holds these from its first line, a library
  // caller gets the same from here on.
  holdSignals(['SIGUSR1', 'SIGHUP']);
  const log = opts.logger ?? createLogger({ verbose: opts.verbose ?? false });
  onInspectorClosed((url) =>
    log.warning(`a SIGUSR1 came in the milliseconds before ksm-agent could handle it and Node opened its inspector on ${url}; closed it (Node 22.14+ rules this out with --disable-sigusr1)`),
  );
  if (process.geteuid?.() !== 0) {
    throw new NotPermittedError({
      what: 'ksm-agent run tunes KSM for the whole host',
      remedy: 'run it as root (sudo ksm-agent run, or the systemd unit scripts/systemd/ksm-agent.service): it writes /sys/kernel/mm/ksm and reads the VMs\' /proc/PID/pagemap',
    });
  }
  let loaded = await load(opts);
  let cfg = loaded.config;
  // Read before the lock and the state file: a token file that is not root-only changes nothing.
  const token = cfg.listen === null || cfg.tokenFile === null ? undefined : await readTokenFile(cfg.tokenFile);
  const initial = await readKsm(); // KSM present? (KsmUnavailableError otherwise)
  const lock: InstanceLock = await acquireInstanceLock(cfg.lockFile);
  let server: HttpServer | undefined;
  let statusPage: StatusPage | undefined;
  let snapshot: KsmSnapshot | undefined;
  let state: AgentStateFile | undefined;
  // Fixed at start (a SIGHUP may load another stateFile, which takes effect at the next start).
  const stateFilePath = cfg.stateFile;
  let agent: Agent | undefined;
  // The periodic jobs by name (tick, tenant check, cache scrub), and those SIGHUP stopped.
  const jobs = new Map<string, Periodic>();
  const retired: Promise<void>[] = [];
  // Set first thing in stop(): from then on no tick starts and nothing writes KSM settings.
  let shuttingDown = false;
  let stopping: Promise<number> | undefined;
  let resolveExit: (code: number) => void = () => undefined;
  const exited = new Promise<number>((resolve) => (resolveExit = resolve));

  const stop = (why: string, code: number): Promise<number> => {
    shuttingDown = true;
    agent?.halt();
    stopping ??= (async () => {
      log.notice(`stopping: ${why}`);
      statusPage?.close();
      let rc = code;
      // Every job disarmed and its run in progress finished, and the chain of ticks and setting
      // writes drained: nothing writes KSM after the restore below.
      await Promise.all([...[...jobs.values()].map((j) => j.stop()), ...retired, agent?.fingerprints.stop()]);
      await inFlight;
      if (snapshot !== undefined) {
        try {
          if (cfg.unmergeOnExit) {
            const h = await unmergeAll(cfg.unmergeReservePercent);
            if (h.ok) log.notice('unmerged every KSM page (unmergeOnExit)', { bytes: h.neededBytes });
            else log.warning('not unmerging at exit: MemAvailable cannot absorb it', { needed_bytes: h.neededBytes, available_bytes: h.availableBytes });
          }
          const kept = await restoreWithHeadroom(snapshot, cfg.unmergeReservePercent);
          if (kept.length > 0) log.warning(`left ${kept.join(', ')} as they are: restoring them needs run=2 and MemAvailable cannot absorb it`);
          // A partial restore keeps what is still to restore in the state file.
          if (state !== undefined) await settleStateFile(stateFilePath, state, kept);
          log.notice('restored the KSM settings found at start', { files: Object.keys(snapshot.files).length - kept.length });
        } catch (err) {
          rc = 1;
          const detail = err instanceof RestoreIncompleteError ? err.message : (err as Error).message;
          log.error(`could not restore the KSM settings: ${detail}; the state file ${stateFilePath} is kept, the next start restores them (or run ksm-agent restore)`);
        }
      }
      await agent?.close().catch(() => undefined);
      if (server !== undefined) await server.close().catch(() => undefined);
      await forgetRunningAgent().catch((err: unknown) => log.warning(`${err instanceof Error ? err.message : String(err)}`));
      lock.release();
      resolveExit(rc);
      return rc;
    })();
    return stopping;
  };

  // The tick in progress and the settings writes queued behind it; never rejects.
  let inFlight: Promise<unknown> = Promise.resolve();
  const handlers: [NodeJS.Signals, () => void][] = [];
  let failedTicks = 0;
  const onSignal = (sig: NodeJS.Signals) => void stop(`received ${sig}`, 0);
  const onFatal = (err: unknown) => {
    log.error(`fatal: ${err instanceof Error ? err.message : String(err)}`);
    void stop('fatal error', 1);
  };

  try {
    logConfig(loaded, log);
    // One agent per host whatever lock file each was given: the record under /run names the
    // running one (running-agent.ts); this one records itself for status, set and restore.
    const other = await recordedAgent();
    if (other !== undefined && other.pid !== process.pid) {
      throw new AlreadyRunningError(
        `another ksm-agent is already running (pid ${other.pid}, lock file ${other.lockFile}): stop it first (systemctl stop ksm-agent, or kill ${other.pid}) — only one agent may tune KSM`,
        { pid: other.pid },
      );
    }
    await recordRunningAgent({ lockFile: cfg.lockFile, stateFile: stateFilePath });
    const owed = await recoverCrashedRun(stateFilePath, cfg.unmergeReservePercent, log);
    const found = await snapshotSettings();
    // What a crashed run could not put back goes back at this run's exit, with its old values.
    snapshot = { ...found, files: { ...found.files, ...owed } };
    const boot = await bootId();
    const me = await selfIdentity();
    state = { version: STATE_VERSION, pid: me.pid, startTicks: me.startTicks, startedAt: new Date().toISOString(), snapshot, ...(boot === undefined ? {} : { bootId: boot }) };
    await writeStateFile(stateFilePath, state);
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    process.on('uncaughtException', onFatal);
    process.on('unhandledRejection', onFatal);

    if (Object.keys(cfg.settings).length > 0) await applyFixedSettings(cfg.settings, cfg.unmergeReservePercent, log);
    agent = new Agent(cfg, log, initial.settings.advisor_mode !== undefined);
    const a = agent;

    if (cfg.listen !== null) {
      const where = parseListen(cfg.listen);
      if (where === undefined) throw new SamepageError('INVALID_ARGUMENT', `listen ${cfg.listen} is not HOST:PORT`);
      const registry = createMetrics(a.metricsSource());
      const router = new Router()
        .get('/metrics', async () => ({ contentType: registry.contentType, body: await registry.metrics() }))
        .get('/healthz', () => ({ body: `ok ${a.lastDecision?.state ?? 'starting'}\n` }), 'public');
      statusPage = mountStatusPage(router, a, log);
      server = await startHttpServer(router, { host: where.host, port: where.port, allowedHosts: cfg.allowedHosts, log, ...(token === undefined ? {} : { token }) });
      log.notice(`serving metrics on ${server.url}/metrics`);
    }

    /** Runs `step` after the tick or settings write in progress; never once stopping began. */
    const serially = (step: () => Promise<unknown>): Promise<unknown> => {
      if (shuttingDown) return inFlight;
      inFlight = inFlight.then(() => (shuttingDown ? undefined : step())).catch((err: unknown) => log.error(`${err instanceof Error ? err.message : String(err)}`));
      return inFlight;
    };
    const runTick = (refresh: boolean): Promise<unknown> =>
      serially(() =>
        a.tick(refresh).then(
          () => (failedTicks = 0),
          (err: unknown) => {
            a.counters.errors++;
            failedTicks++;
            log.error(`tick failed: ${err instanceof Error ? err.message : String(err)}`);
            if (failedTicks >= MAX_FAILED_TICKS) void stop(`${failedTicks} ticks failed in a row`, 1);
          },
        ),
      );

    const onJobError = (name: string, err: unknown): void => log.warning(`${name}: ${err instanceof Error ? err.message : String(err)}`);
    /** Starts, re-times or stops the job `name` so it runs every `seconds` (undefined: not at all). */
    const syncJob = (name: string, seconds: number | undefined, job: () => Promise<unknown>): void => {
      const running = jobs.get(name);
      if (seconds === undefined) {
        if (running === undefined) return;
        jobs.delete(name);
        retired.push(running.stop());
        log.info(`${name}: stopped`);
      } else if (running === undefined) {
        jobs.set(name, new Periodic(name, seconds, job, onJobError));
        log.info(`${name}: every ${seconds} s`);
      } else if (running.periodSeconds !== seconds) {
        running.setPeriod(seconds);
        log.info(`${name}: every ${seconds} s now`);
      }
    };
    const syncJobs = (c: AgentConfig): void => {
      if (shuttingDown) return;
      syncJob('tick', c.intervalSeconds, () => runTick(false));
      syncJob('tenant check', Object.values(c.vms).some((v) => v.tenant !== undefined) ? c.tenantCheckSeconds : undefined, () => a.checkTenants());
      syncJob('cache scrub', c.cache.enabled ? c.cache.intervalSeconds : undefined, () => a.scrubCache());
    };

    // SIGHUP: every key that can change while running does (the policy's limits at the next tick,
    // the jobs' periods, tenants, the cache scrub, the fixed KSM settings); the keys read at start
    // keep their value, and a warning names each that changed. Reloads run one at a time.
    let reloading: Promise<void> = Promise.resolve();
    const reload = (): void => {
      reloading = reloading.then(async () => {
        let next: LoadedConfig;
        try {
          next = await load(opts);
        } catch (err) {
          log.error(`configuration not reloaded, keeping the old one: ${err instanceof Error ? err.message : String(err)}`);
          return;
        }
        if (shuttingDown) return;
        const before = cfg;
        const changes = configChanges(before, next.config);
        loaded = { ...next, config: changes.next };
        cfg = changes.next;
        a.reconfigure(cfg);
        a.history.resize(cfg.historySamples);
        logConfig(loaded, log);
        syncJobs(cfg);
        if (changes.applied.includes('settings')) {
          const wanted = settingsToApply(before.settings, cfg.settings, snapshot);
          await serially(() => applyFixedSettings(wanted, cfg.unmergeReservePercent, log).catch((err: unknown) => log.error(`settings not applied: ${err instanceof Error ? err.message : String(err)}`)));
        }
        if (changes.restart.length > 0) {
          log.warning(`these keys take effect only at the next start and keep their running value until then: ${describeRestart(changes.restart)}; restart ksm-agent (systemctl restart ksm-agent) to apply them`);
        }
        log.notice('configuration reloaded', { changed: changes.applied.join(',') || '(nothing)' });
      });
    };
    const onUsr1 = (): void => {
      if (shuttingDown) return; // restoring the settings found at start: no retune now
      log.info('SIGUSR1: re-listing the VMs and retuning now');
      void runTick(true);
    };
    const onHup = (): void => {
      if (shuttingDown) return;
      log.info('SIGHUP: reloading the configuration');
      reload();
    };
    // Held since the bin's first line (lib/signal-hold.ts); what came meanwhile is acted on below.
    const earlyUsr1 = takeHeldSignal('SIGUSR1', onUsr1);
    const earlyHup = takeHeldSignal('SIGHUP', onHup);
    handlers.push(['SIGUSR1', onUsr1], ['SIGHUP', onHup]);

    await runTick(true);
    log.notice('started', { pid: process.pid, state: a.lastDecision?.state, advisor_available: a.hasAdvisor });
    syncJobs(cfg);
    // The first sketch run starts now, in the background (fingerprints.ts: its own schedule).
    if (!shuttingDown) a.fingerprints.start();
    if (earlyUsr1 > 0) onUsr1();
    if (earlyHup > 0) onHup();
  } catch (err) {
    await stop(`start failed: ${err instanceof Error ? err.message : String(err)}`, 1);
    throw err;
  }
  const code = await exited;
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  process.off('uncaughtException', onFatal);
  process.off('unhandledRejection', onFatal);
  for (const [sig, handler] of handlers) returnHeldSignal(sig, handler);
  return code;
}

/** The config's fixed KSM settings; a change that needs run=2 is skipped without headroom. */
async function applyFixedSettings(settings: KsmSettings, reservePercent: number, log: Logger): Promise<void> {
  const { settings: now, counters } = await readKsm();
  const merged = (counters.pages_shared ?? 0) + (counters.pages_sharing ?? 0) + (counters.ksm_zero_pages ?? 0);
  const wanted: KsmSettings = { ...settings };
  const needUnmerge = (['max_page_sharing', 'merge_across_nodes'] as const).filter((k) => wanted[k] !== undefined && wanted[k] !== now[k]);
  if (needUnmerge.length > 0 && merged > 0) {
    const h = await unmergeAll(reservePercent);
    if (!h.ok) {
      for (const k of needUnmerge) delete wanted[k];
      log.warning(`not changing ${needUnmerge.join(', ')}: that needs every KSM page unmerged (run=2) and MemAvailable cannot absorb it`, { needed_bytes: h.neededBytes, available_bytes: h.availableBytes });
    }
  }
  await setKsm(wanted);
  log.info('applied the configured KSM settings', settings as Record<string, unknown>);
}
