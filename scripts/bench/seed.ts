// npm run bench:seed:run -- --workload NAME: two real Debian 12 guests (scripts/qemu/debian/)
// booted under QEMU TCG, in a memory cgroup with a limit so the host page cache of their disk
// images competes with their RAM, run one workload at once, bounded in time; meanwhile the host
// is sampled (KSM counters and ksmd CPU, the host page cache each image holds, the cgroup's
// charge, each QEMU's RSS and CPU) to a JSON file. The foundation of issue 14's tables.
//
//   --workload boot|compile|bonnie|fio-zipf|desktop|wss   (required)
//   --seconds N        workload length (defaults: boot 60, compile 300, bonnie 600, fio-zipf 120,
//                      desktop 120, wss 30). wss: ksm-agent wss's estimator on the guests while a
//                      loop in each touches a quarter of its RAM, then half, then a quarter: one
//                      idle pass and 3 per step, --seconds / 10 each (seed-wss.ts)
//   --mem MiB          guest RAM (512)
//   --limit MiB|tight|off  the cgroup's memory limit (default: per guest RAM + 256 MiB of QEMU (its
//                      128 MiB TCG cache and the rest), plus 384 MiB of host page cache; tight:
//                      that without the 384, the least it takes, so the host cache lives on what
//                      the guests leave unused; the run's variant gets -tight)
//   --ksm PAGES/MS|off ksmd's pages_to_scan/sleep_millisecs during the run (default 1000/20; KSM
//                      settings saved first and restored after, pages unmerged); off: KSM untouched
//   --interval S       sampling period (2)
//   --file-mib N       bonnie++/fio file size in the guest (default 2 x --mem)
//   --zipf THETA       fio Zipf exponent (1.2)
//   --engine on|off    also run the C engine on the guests the way ksmd runs (--ksm's pages and
//                      sleep, default 1000/20), three times side by side: lookahead off, on, and
//                      on with lookaheadEarly (runs of new copies merge a pass sooner) (the
//                      seed's lookahead table; seed-engine.ts). Default off
//   --host-cache none|drop-all|scrub  drop-all: while the workload runs, every --drop-interval
//                      seconds (default 10) each image is written back and dropped from the host
//                      page cache (POSIX_FADV_DONTNEED): the Zipf table's "drop-all" policy.
//                      scrub: on the same timer, the agent's exclusive-cache scrub (lib/
//                      exclusive-cache.ts, one long-lived scanner as ksm-agent's daemon keeps)
//                      drops the image pages a guest already holds, clean ones only: the tables'
//                      "KSM-exclusive" policy. Default none
//   --init-on-free on|off  the guests boot with init_on_free=1: a page a guest frees (a page-cache
//                      page it evicted, too) is zeroed, so its RAM holds no stale copy of a block
//                      it no longer caches, which the scrub would take for a cached one. Default
//                      off; on adds -init-on-free to the default --out
//   --disk-read MiBps  while the workload runs (not the boot), the QEMUs read from the disk that
//                      holds the images at most this fast (a cgroup v1 blkio read_bps_device
//                      rule; reads the host cache serves are not slowed): slow storage, on which
//                      host cache hits show in the guests' I/O. The variant gets -diskN. Default:
//                      not throttled
//   --out FILE         the JSON (default seed-WORKLOAD[-VARIANT].json)
// Prints a summary and one JSON line last.
import { writeFileSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';

import { Scanner, USER_HZ, findKsmd, readKsm, readProcStat, readStatus, scrubCache, setKsm } from '../../lib/index.js';
import { withSavedKsm } from '../../test/helpers/ksm.js';
import { cacheState, cachedCount } from '../../test/helpers/pagecache.js';
import { createMemoryCgroup, type MemoryCgroup } from '../qemu/cgroup.js';
import { createReadThrottle, type ReadThrottle } from '../qemu/disk-throttle.js';
import { dropFromHostCache, ensureSeedImage, makeRunDir, startDebianGuests, type DebianGuest } from '../qemu/debian.js';
import { stopAll } from '../qemu/harness.js';
import { Periodic } from '../../lib/agent/periodic.js';
import { EnginePairRunner, engineWindow } from './seed-engine.js';
import { runWss, type WssRun } from './seed-wss.js';
import { WSS_MARKS, wssPassText } from './wss-judge.js';
import { hostCacheHitRatio, runFileName, variantOf, type SeedSample } from './seed-report.js';
import { DEFAULT_SECONDS, GRACE_SECONDS, SEED_GUESTS, WORKLOADS, isWorkload, tightLimitMiB, parseResult, workloadScript, type WorkloadName, type WorkloadResult } from './seed-workloads.js';

const MIB = 1 << 20;

type HostCachePolicy = 'none' | 'drop-all' | 'scrub';
const HOST_CACHE_POLICIES: readonly HostCachePolicy[] = ['none', 'drop-all', 'scrub'];

interface Options {
  workload: WorkloadName;
  seconds: number;
  memMiB: number;
  limitMiB: number | undefined;
  ksm: { pages: number; sleepMs: number } | undefined;
  intervalS: number;
  fileMiB: number;
  zipfTheta: number;
  engine: boolean;
  hostCache: HostCachePolicy;
  dropIntervalS: number;
  /** While the workload runs, the QEMUs read their disk at most this fast (MiB/s; 0: as fast as it goes). */
  diskReadMiBps: number;
  /** Guests boot with init_on_free=1: a page the guest frees (a page-cache page it evicted, too) is zeroed, so its RAM holds no stale copy of a block it no longer caches. */
  initOnFree: boolean;
  out: string;
}

function fail(message: string): never {
  process.stderr.write(`bench:seed: ${message}\n`);
  process.exit(2);
}

function wholeNumber(name: string, raw: string | undefined, fallback: number, min: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min) fail(`--${name} must be a whole number >= ${min}, got "${raw}"`);
  return n;
}

function options(): Options {
  let values: Record<string, string | undefined>;
  try {
    ({ values } = parseArgs({
      options: {
        workload: { type: 'string' },
        seconds: { type: 'string' },
        mem: { type: 'string' },
        limit: { type: 'string' },
        ksm: { type: 'string' },
        interval: { type: 'string' },
        'file-mib': { type: 'string' },
        zipf: { type: 'string' },
        engine: { type: 'string' },
        'host-cache': { type: 'string' },
        'drop-interval': { type: 'string' },
        'init-on-free': { type: 'string' },
        'disk-read': { type: 'string' },
        out: { type: 'string' },
      },
      strict: true,
    }) as { values: Record<string, string | undefined> });
  } catch (e) {
    fail(`${(e as Error).message}; see the options at the top of scripts/bench/seed.ts`);
  }
  const workload = values['workload'];
  if (workload === undefined || !isWorkload(workload)) fail(`--workload must be one of ${WORKLOADS.join(', ')}, got "${workload ?? ''}"`);
  if (workload === 'wss' && values['seconds'] !== undefined && !(Number(values['seconds']) >= WSS_PASSES)) {
    fail(`--seconds for wss must be at least ${WSS_PASSES} (one second per pass), got "${values['seconds']}"`);
  }
  const memMiB = wholeNumber('mem', values['mem'], 512, 256);
  const limitRaw = values['limit'];
  const floor = tightLimitMiB(memMiB);
  if (limitRaw !== undefined && !['off', 'tight'].includes(limitRaw) && !(Number.isSafeInteger(Number(limitRaw)) && Number(limitRaw) >= floor)) {
    fail(`--limit must be MiB (at least ${floor}: the guests' RAM and QEMU's), tight or off, got "${limitRaw}"`);
  }
  const limitMiB = limitRaw === 'off' ? undefined : limitRaw === 'tight' ? floor : wholeNumber('limit', limitRaw, floor + 384, floor);
  const ksmRaw = values['ksm'] ?? '1000/20';
  let ksm: Options['ksm'];
  if (ksmRaw !== 'off') {
    const m = /^(\d+)\/(\d+)$/.exec(ksmRaw);
    if (!m) fail(`--ksm must be PAGES/SLEEP_MS (e.g. 1000/20) or off, got "${ksmRaw}"`);
    ksm = { pages: Number(m[1]), sleepMs: Number(m[2]) };
  }
  const intervalS = Number(values['interval'] ?? 2);
  if (!(intervalS >= 0.5 && intervalS <= 60)) fail(`--interval must be 0.5 to 60 seconds, got "${values['interval'] ?? ''}"`);
  const zipfTheta = Number(values['zipf'] ?? 1.2);
  if (!(zipfTheta > 0 && zipfTheta < 10)) fail(`--zipf must be a number between 0 and 10, got "${values['zipf'] ?? ''}"`);
  const hostCacheRaw = values['host-cache'] ?? 'none';
  const hostCache = HOST_CACHE_POLICIES.find((p) => p === hostCacheRaw);
  if (hostCache === undefined) fail(`--host-cache must be ${HOST_CACHE_POLICIES.join(', ')}, got "${hostCacheRaw}"`);
  const engineRaw = values['engine'] ?? 'off';
  if (engineRaw !== 'on' && engineRaw !== 'off') fail(`--engine must be on or off, got "${engineRaw}"`);
  const initOnFreeRaw = values['init-on-free'] ?? 'off';
  if (initOnFreeRaw !== 'on' && initOnFreeRaw !== 'off') fail(`--init-on-free must be on or off, got "${initOnFreeRaw}"`);
  const initOnFree = initOnFreeRaw === 'on';
  const o: Omit<Options, 'out'> = {
    workload,
    seconds: wholeNumber('seconds', values['seconds'], DEFAULT_SECONDS[workload], 1),
    memMiB,
    limitMiB,
    ksm,
    intervalS,
    fileMiB: wholeNumber('file-mib', values['file-mib'], 2 * memMiB, 16),
    zipfTheta,
    engine: engineRaw === 'on',
    hostCache,
    dropIntervalS: wholeNumber('drop-interval', values['drop-interval'], 10, 1),
    initOnFree,
    diskReadMiBps: wholeNumber('disk-read', values['disk-read'], 0, 1),
  };
  // The report's name for a run like this one (seed-report.ts): what bench:seed looks for.
  return { ...o, out: values['out'] ?? runFileName(workload, variantOf({ ...o })) };
}

type Sample = SeedSample;

/** rchar and read_bytes of /proc/PID/io, in MiB. */
async function readIo(pid: number): Promise<{ rcharMiB: number; readMiB: number }> {
  const text = await readFile(`/proc/${pid}/io`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(text)?.[1] ?? NaN) / MIB;
  return { rcharMiB: field('rchar'), readMiB: field('read_bytes') };
}

/**
 * The pid of the process whose command line names each image copy (its QEMU), or undefined while
 * none does: the sampler reads the QEMUs from their start, before startDebianGuests() resolves.
 */
async function pidsByImage(images: readonly string[]): Promise<(number | undefined)[]> {
  const found: (number | undefined)[] = images.map(() => undefined);
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let args: string[];
    try {
      args = (await readFile(`/proc/${e}/cmdline`, 'utf8')).split('\0');
    } catch {
      continue; // gone meanwhile
    }
    images.forEach((img, i) => {
      if (found[i] === undefined && args.some((a) => a.includes(img)) && !args[0]?.endsWith('sp-launch')) found[i] = Number(e);
    });
  }
  return found;
}

class Sampler {
  readonly samples: Sample[] = [];
  phase = 'booting';
  private running = true;
  private loop: Promise<void> | undefined;
  images: string[] = [];
  guests: DebianGuest[] = [];
  private pids: (number | undefined)[] = [undefined];
  /** The engines with lookahead off, on and early, started once every QEMU runs (--engine on). */
  engine: EnginePairRunner | undefined;
  private engineStarted = false;

  constructor(
    private readonly t0: number,
    private readonly ksmd: number,
    private readonly intervalMs: number,
    private readonly cgroup: MemoryCgroup | undefined,
  ) {}

  start(): void {
    this.loop = (async () => {
      while (this.running) {
        const next = Date.now() + this.intervalMs;
        try {
          this.samples.push(await this.sample());
        } catch (e) {
          // A guest going away mid-sample ends the run elsewhere; the sample is just skipped.
          process.stderr.write(`sample skipped: ${(e as Error).message}\n`);
        }
        await sleep(Math.max(0, next - Date.now()));
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  private async sample(): Promise<Sample> {
    const t = (Date.now() - this.t0) / 1000;
    const { counters } = await readKsm();
    const ksm: Record<string, number> = {};
    for (const k of ['pages_shared', 'pages_sharing', 'pages_unshared', 'pages_volatile', 'full_scans', 'general_profit', 'pages_scanned'] as const) {
      const v = counters[k];
      if (v !== undefined) ksm[k] = v;
    }
    const kstat = await readProcStat(this.ksmd);
    const imageCacheMiB: number[] = [];
    const qemu: Sample['qemu'] = [];
    for (const img of this.images) imageCacheMiB.push((cachedCount(await cacheState(img)) * 4096) / MIB);
    if (this.guests.length > 0) this.pids = this.guests.map((g) => g.guest.pid);
    else if (this.images.length > 0 && this.pids.some((p) => p === undefined)) this.pids = await pidsByImage(this.images);
    for (const pid of this.pids) {
      if (pid === undefined) break; // sampled once every QEMU runs, so qemu[i] is always guest i
      try {
        const st = await readProcStat(pid);
        const status = await readStatus(pid);
        qemu.push({ rssMiB: (status.vmRssBytes ?? 0) / MIB, cpuS: (st.utime + st.stime) / USER_HZ, ...(await readIo(pid)) });
      } catch (e) {
        if (this.guests.length > 0) throw e;
        this.pids = this.images.map(() => undefined); // a wrapper that exec'd away, or a QEMU that failed: look again
        qemu.length = 0;
        break;
      }
    }
    if (qemu.length !== this.images.length) qemu.length = 0;
    if (this.engine && !this.engineStarted && qemu.length > 0) {
      this.engineStarted = true;
      await this.engine.start(this.pids as number[]);
    }
    return {
      t,
      phase: this.phase,
      ksm,
      ksmdCpuS: (kstat.utime + kstat.stime) / USER_HZ,
      imageCacheMiB,
      ...(this.cgroup ? { cgroup: this.cgroup.usage() } : {}),
      qemu,
      ...(this.engine && this.engineStarted ? { engine: this.engine.sample() } : {}),
    };
  }
}

const r1 = (x: number): number => Math.round(x * 10) / 10;

/**
 * A host-cache policy's job every interval, on the daemon's own timer (lib/agent/periodic.ts: runs
 * never overlap); the first error a run meets stops it, and stop() throws that error.
 */
function every(name: string, intervalMs: number, job: () => Promise<void>): { stop(): Promise<void> } {
  let failure: unknown;
  const periodic: Periodic = new Periodic(name, intervalMs / 1000, job, (_name, err) => {
    failure ??= err;
    void periodic.stop();
  });
  return {
    async stop() {
      await periodic.stop();
      if (failure !== undefined) throw failure;
    },
  };
}

/** The drop-all policy: every interval, each image written back and dropped from the host cache. */
function dropAllEvery(images: readonly string[], intervalMs: number): { stop(): Promise<void> } {
  return every('drop-all', intervalMs, async () => {
    for (const img of images) await dropFromHostCache(img);
  });
}

/** One scrub of the scrub policy, as the run file keeps it. */
interface ScrubRecord {
  /** Seconds since the QEMUs started, at the scrub's end. */
  t: number;
  cachedPages: number;
  inGuestPages: number;
  droppedPages: number;
  dirtySkipped: number;
  ms: number;
  cpuMs: number;
}

/**
 * The scrub policy: every interval, the agent's exclusive-cache scrub over the guests' QEMUs with
 * one long-lived scanner (smart scan off, as the agent's), so each scrub after the first takes in
 * only one engine pass of what changed. The images are found from the QEMUs' open files.
 */
function scrubEvery(pids: readonly number[], intervalMs: number, t0: number): { log: ScrubRecord[]; stop(): Promise<void> } {
  const log: ScrubRecord[] = [];
  let scanner: Scanner | undefined;
  const timer = every('scrub', intervalMs, async () => {
    if (scanner === undefined) {
      const { settings } = await readKsm();
      scanner = new Scanner({ useZeroPages: settings.use_zero_pages ?? false, maxPageSharing: settings.max_page_sharing ?? 256, smartScan: false });
    }
    const r = await scrubCache({ scanner, vms: [...pids], intervalMs: 50 });
    log.push({
      t: r1((Date.now() - t0) / 1000),
      cachedPages: r.cachePagesTotal,
      inGuestPages: r.cachePagesInGuest,
      droppedPages: r.cachePagesDropped,
      dirtySkipped: r.dirtySkipped,
      ms: Math.round(r.elapsedMs),
      cpuMs: Math.round(r.cpuMs),
    });
  });
  return {
    log,
    async stop() {
      try {
        await timer.stop();
      } finally {
        await scanner?.close();
      }
    },
  };
}

/** The engines' figures over the window (boot: from QEMU's start; else the workload). */
function engineSummary(o: Options, window: Sample[], error: Error | undefined): Record<string, unknown> {
  const ss = window.filter((s): s is Sample & { engine: NonNullable<Sample['engine']> } => s.engine !== undefined);
  const budget = o.ksm ?? { pages: 1000, sleepMs: 20 };
  return {
    pages_to_scan: budget.pages,
    sleep_millisecs: budget.sleepMs,
    off: engineWindow(ss.map((s) => ({ t: s.t, e: s.engine.off }))),
    on: engineWindow(ss.map((s) => ({ t: s.t, e: s.engine.on }))),
    early: engineWindow(ss.flatMap((s) => (s.engine.early ? [{ t: s.t, e: s.engine.early }] : []))),
    ...(error ? { error: error.message } : {}),
  };
}
/** The wss workload's figures: the largest error of any judged pass, and what the idle guests touched. */
function wssSummary(w: WssRun): Record<string, number | null> {
  return {
    wss_error_pct: w.errorPct === null ? null : Math.round(w.errorPct * 100) / 100,
    wss_settled_error_pct: w.settledErrorPct === null ? null : Math.round(w.settledErrorPct * 100) / 100,
    wss_idle_mib: r1(avg(w.guests.map((g) => g.idleMiB))),
    wss_interval_s: w.intervalS,
  };
}
/** The scrub policy's figures: scrubs made, pages dropped, and their CPU over the workload. */
function scrubSummary(log: readonly ScrubRecord[], workloadS: number): Record<string, number> {
  const sum = (f: (r: ScrubRecord) => number): number => log.reduce((a, r) => a + f(r), 0);
  return {
    scrubs: log.length,
    pages_dropped: sum((r) => r.droppedPages),
    pages_in_guest: sum((r) => r.inGuestPages),
    dirty_skipped: sum((r) => r.dirtySkipped),
    scrub_cpu_pct: workloadS > 0 ? r1(sum((r) => r.cpuMs) / 10 / workloadS) : 0,
    avg_scrub_ms: log.length > 0 ? Math.round(sum((r) => r.ms) / log.length) : 0,
  };
}
const avg = (xs: number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

/** wss: passes per step (A, A + B, B), after one idle pass. */
const WSS_PER_STEP = 3;
const WSS_PASSES = 1 + 3 * WSS_PER_STEP;

async function runBench(o: Options): Promise<void> {
  const image = await ensureSeedImage();
  process.stderr.write(`image ${image.path} ready in ${image.ensureMs} ms\n`);
  const runDir = makeRunDir();
  const cgroup = o.limitMiB === undefined ? undefined : createMemoryCgroup(o.workload, o.limitMiB);
  const ksmd = await findKsmd();
  const t0 = Date.now();
  const sampler = new Sampler(t0, ksmd, o.intervalS * 1000, cgroup);
  let result: WorkloadResult[] = [];
  let workloadStart = 0;
  let workloadEnd = 0;
  let guests: DebianGuest[] = [];
  let scrubber: ReturnType<typeof scrubEvery> | undefined;
  let wssRun: WssRun | undefined;
  let failure: Error | undefined;
  let throttle: ReadThrottle | undefined;
  let diskReadMiB: number | null = null;
  try {
    if (o.ksm) await setKsm({ pages_to_scan: o.ksm.pages, sleep_millisecs: o.ksm.sleepMs, run: 1 });
    if (o.engine) {
      // The engines follow the host's KSM rules (zero pages, sharing limit, smart scan).
      const { settings } = await readKsm();
      const budget = o.ksm ?? { pages: 1000, sleepMs: 20 };
      sampler.engine = new EnginePairRunner(budget.pages, budget.sleepMs, {
        useZeroPages: settings.use_zero_pages ?? false,
        maxPageSharing: settings.max_page_sharing ?? 256,
        smartScan: settings.smart_scan ?? true,
        stableNodeChainsPruneMillisecs: settings.stable_node_chains_prune_millisecs ?? 2000,
      });
    }
    sampler.start();
    guests = await startDebianGuests(
      image,
      runDir,
      SEED_GUESTS.map((name) => ({ name, memMiB: o.memMiB, ...(cgroup ? { cgroup: cgroup.dir } : {}), ...(o.initOnFree ? { kernelArgs: 'init_on_free=1' } : {}) })),
      (paths) => (sampler.images = paths),
    );
    sampler.guests = guests;
    for (const g of guests) {
      process.stderr.write(`${g.guest.name}: login prompt after ${((g.loginMs ?? NaN) / 1000).toFixed(1)} s, READY after ${(g.readyMs / 1000).toFixed(1)} s\n`);
    }
    sampler.phase = o.workload;
    workloadStart = (Date.now() - t0) / 1000;
    if (o.diskReadMiBps > 0) {
      // After boot: the workload's reads, not the boot's, meet the slow disk.
      throttle = createReadThrottle(o.workload, guests[0]!.image, o.diskReadMiBps * MIB);
      for (const g of guests) throttle.add(g.guest.pid);
    }
    const dropper = o.hostCache === 'drop-all' ? dropAllEvery(guests.map((g) => g.image), o.dropIntervalS * 1000) : undefined;
    scrubber = o.hostCache === 'scrub' ? scrubEvery(guests.map((g) => g.guest.pid), o.dropIntervalS * 1000, t0) : undefined;
    let outs;
    const workload = o.workload;
    try {
      if (workload === 'wss') wssRun = await runWss(guests, o.memMiB, o.seconds / WSS_PASSES, WSS_PER_STEP, t0);
      else outs = await Promise.all(guests.map((g) => g.guest.exec(workloadScript(workload, o), (o.seconds + GRACE_SECONDS[workload]) * 1000)));
    } finally {
      await dropper?.stop();
      await scrubber?.stop();
    }
    workloadEnd = (Date.now() - t0) / 1000;
    if (throttle) diskReadMiB = r1(throttle.readBytes() / MIB);
    if (workload !== 'wss') {
      result = (outs ?? []).map((r, i) => {
        if (r.code !== 0 && !r.stdout.includes('SEED_RESULT')) {
          throw new Error(`${SEED_GUESTS[i]}: workload ${workload} exited with ${r.code}:\n${(r.stdout + r.stderr).slice(-800)}`);
        }
        return parseResult(workload, r.stdout);
      });
    }
  } catch (e) {
    failure = e as Error;
    const kills = cgroup?.oomKills() ?? 0;
    if (kills > 0) {
      failure = new Error(`${failure.message}\nthe cgroup's OOM killer killed ${kills} process(es): raise --limit (now ${o.limitMiB} MiB) or lower --mem`);
    }
  } finally {
    throttle?.remove();
    await sampler.stop();
    await sampler.engine?.stop();
    await stopAll();
  }
  const oomKills = cgroup?.oomKills() ?? 0;
  await cgroup?.remove();

  const during = sampler.samples.filter((s) => s.phase === o.workload);
  const all = sampler.samples;
  const cpu = (ss: Sample[]): number => {
    if (ss.length < 2) return 0;
    const a = ss[0] as Sample;
    const b = ss[ss.length - 1] as Sample;
    return (100 * (b.ksmdCpuS - a.ksmdCpuS)) / (b.t - a.t);
  };
  const sumCache = (s: Sample): number => s.imageCacheMiB.reduce((a, b) => a + b, 0);
  const summary = {
    workload: o.workload,
    guests: SEED_GUESTS.length,
    mem_mib: o.memMiB,
    limit_mib: o.limitMiB ?? null,
    ksm: o.ksm ? `${o.ksm.pages}/${o.ksm.sleepMs}` : 'off',
    cgroup_version: cgroup?.version ?? null,
    image_ensure_ms: image.ensureMs,
    login_s: guests.map((g) => (g.loginMs === undefined ? null : r1(g.loginMs / 1000))),
    ready_s: guests.map((g) => r1(g.readyMs / 1000)),
    workload_s: r1(workloadEnd - workloadStart),
    avg_pages_shared: Math.round(avg(during.map((s) => s.ksm['pages_shared'] ?? 0))),
    avg_pages_sharing: Math.round(avg(during.map((s) => s.ksm['pages_sharing'] ?? 0))),
    avg_pages_shared_from_boot: Math.round(avg(all.map((s) => s.ksm['pages_shared'] ?? 0))),
    ksmd_cpu_pct: r1(cpu(during.length >= 2 ? during : all)),
    avg_host_cache_mib: r1(avg(during.map(sumCache))),
    peak_host_cache_mib: r1(Math.max(0, ...all.map(sumCache))),
    avg_cgroup_file_mib: cgroup ? r1(avg(during.map((s) => (s.cgroup?.fileBytes ?? 0) / MIB))) : null,
    engine: sampler.engine ? engineSummary(o, o.workload === 'boot' ? all : during, sampler.engine.error) : null,
    host_cache_hit_ratio: ((h) => (h === null ? null : Math.round(h * 1000) / 1000))(hostCacheHitRatio(during)),
    ...(scrubber ? scrubSummary(scrubber.log, workloadEnd - workloadStart) : {}),
    ...(wssRun ? wssSummary(wssRun) : {}),
    ...(o.diskReadMiBps > 0 ? { disk_read_mibps: o.diskReadMiBps, disk_read_mib: diskReadMiB } : {}),
    oom_kills: oomKills,
    samples: all.length,
    results: result,
  };
  writeFileSync(o.out, `${JSON.stringify({ writtenAt: new Date().toISOString(), options: o, image: image.manifest, summary, ...(failure ? { error: failure.message } : {}), samples: all, ...(scrubber ? { scrubs: scrubber.log } : {}), ...(wssRun ? { wss: wssRun } : {}) }, null, 1)}\n`);
  if (failure) {
    process.stderr.write(`samples so far written to ${o.out}\n`);
    throw failure;
  }
  const lines = [
    `seed ${o.workload}: 2 Debian guests x ${o.memMiB} MiB (TCG, THP off, cache=writeback), cgroup limit ${o.limitMiB ?? 'none'} MiB, ksmd ${summary.ksm}`,
    `  login prompt after ${summary.login_s.join(' / ')} s; READY after ${summary.ready_s.join(' / ')} s; workload ${summary.workload_s} s`,
    `  pages_shared avg ${summary.avg_pages_shared} (from boot ${summary.avg_pages_shared_from_boot}), pages_sharing avg ${summary.avg_pages_sharing}; ksmd CPU ${summary.ksmd_cpu_pct} %`,
    `  host cache of the images avg ${summary.avg_host_cache_mib} MiB, peak ${summary.peak_host_cache_mib} MiB; cgroup page cache avg ${summary.avg_cgroup_file_mib ?? '-'} MiB; host cache hit ratio ${summary.host_cache_hit_ratio ?? '-'}`,
    ...(summary.engine ? [`  engine (lookahead off / on / early): ${JSON.stringify(summary.engine)}`] : []),
    ...(scrubber ? [`  scrub: ${JSON.stringify(scrubSummary(scrubber.log, workloadEnd - workloadStart))}`] : []),
    ...(wssRun ? wssRun.guests.map((g) => `  wss ${g.name}: idle ${r1(g.idleMiB)} MiB; ${g.passes.map(wssPassText).join(' ')} MiB (estimate/truth; ${WSS_MARKS}); largest error ${g.errorPct === null ? '-' : r1(g.errorPct)}%, settled ${g.settledErrorPct === null ? '-' : r1(g.settledErrorPct)}%`) : []),
    `  results: ${JSON.stringify(result)}`,
    `  ${all.length} samples in ${o.out}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n${JSON.stringify(summary)}\n`);
}

async function main(): Promise<void> {
  const o = options();
  if (process.getuid?.() !== 0) fail('needs root (KSM sysfs, cgroups, mmdebstrap); rerun with sudo');
  if (o.ksm) await withSavedKsm(() => runBench(o));
  else await runBench(o);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:seed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
