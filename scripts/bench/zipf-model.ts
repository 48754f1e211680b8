// The Zipf table's truly exclusive policy, from the cache model (zipf-sim.ts) over fio's own reads
// (zipf-trace.ts), fitted to and checked against the real runs, once with each kind of guest cache
// (LRU; Linux's active and inactive lists in outline):
//   - each guest's page cache (pages) is the one under which the model's guests miss as often as
//     the real guests of the no-action run did (their QEMUs' Δrchar / 4 KiB while fio ran);
//   - the host cache's room is the most the no-action run's host cache held; its content when the
//     reads begin, what it held at most in the first timer interval (fio's layout); both either
//     all fio's, or less what the host held of the images before fio started (two host starts);
//   - the model then runs each policy that was measured (no action, drop-all, scrub) with that
//     run's own read counts (its IOPS x fio's run time), and its host hit ratio is set beside the
//     measured one. The model counts as validated when all three were measured and every one is
//     within TOLERANCE.
// Only then is the truly exclusive policy's hit ratio (run with the no-action run's reads) a figure:
// the validated fit's that is nearest the measurements.
import { BLOCK, fioZipfTrace, type ZipfTraceOptions } from './zipf-trace.js';
import { GUEST_CACHES, fitGuestPages, simulateZipf, type GuestCacheKind, type ZipfSimPolicy } from './zipf-sim.js';
import { INIT_ON_FREE, TIGHT, during, finiteNumber, pick, qemuReadsMiB, trulyExclusiveOf, withQemuReads, type SeedRun, type SeedSample } from './seed-report.js';

/** Largest gap, absolute, between a measured and a modelled hit ratio for the model to count. */
export const ZIPF_MODEL_TOLERANCE = 0.05;
const MIB = 1024 * 1024;

export interface ZipfModelRow {
  policy: ZipfSimPolicy;
  /** The run's variant in the report (kernel, drop-all, scrub, with the setting's suffix), or a modelled-only policy (scrub-hot, truly-exclusive). */
  variant: string;
  measured: number | null;
  modelled: number;
  /** The model's mean host cache, MiB (both images). */
  modelledHostMiB: number;
  /** Reads that missed the guests' caches: the QEMUs' Δrchar in pages (null: not measured) and the model's. */
  measuredMisses: number | null;
  modelledMisses: number;
}

/** What the host cache held of fio's file: all the images' pages, or those added since fio started. */
export type HostStart = 'image' | 'since-fio';

/** The model under one kind of guest cache and one host start: fitted, run under each policy, compared. */
export interface ZipfModelFit {
  cache: GuestCacheKind;
  hostStart: HostStart;
  guestPages: number;
  /** The host cache's room for fio's blocks, and what it held of them when the reads began. */
  hostPages: number;
  hostStartPages: number;
  /** Measured policies, model beside measurement; then truly exclusive (measured null). */
  rows: ZipfModelRow[];
  maxError: number;
  validated: boolean;
}

export interface ZipfModel {
  /** The guests' setting the runs share, as a variant suffix: one of ZIPF_MODEL_SETTINGS ('' is plain). */
  setting: string;
  traceReads: number;
  fileMiB: number;
  theta: number;
  tolerance: number;
  /** One per host start and guest cache kind (LRU, and Linux's two lists in outline). */
  fits: ZipfModelFit[];
  /** The truly exclusive hit ratio of the validated fit nearest the measurements, or null when none is. */
  trulyExclusive: number | null;
}

const num = finiteNumber;

/** Reads of each guest while fio ran: its IOPS x fio's run time (options.seconds). */
export function readsPerGuest(run: SeedRun): number[] {
  const seconds = num(run.options['seconds']);
  const results = Array.isArray(run.summary['results']) ? (run.summary['results'] as unknown[]) : [];
  const iops = results.map((r) => (typeof r === 'object' && r !== null ? num((r as Record<string, unknown>)['read_iops']) : null));
  if (seconds === null || iops.length === 0 || iops.some((v) => v === null)) throw new Error(`${run.file}: no fio read_iops for every guest, or no options.seconds`);
  return iops.map((v) => Math.round((v as number) * seconds));
}

/** Pages the QEMUs read (Δrchar) while the workload ran. */
export function guestMissPages(run: SeedRun): number {
  const r = qemuReadsMiB(during(run));
  if (r === null) throw new Error(`${run.file}: fewer than two samples of the QEMUs' reads while fio ran`);
  return Math.round((r.rcharMiB * MIB) / BLOCK);
}

const hostMiB = (s: SeedSample): number => s.imageCacheMiB.reduce((x, y) => x + y, 0);

export interface ZipfModelInput {
  /** The guests' setting, a variant suffix ('' by default): the rows' variants carry it. */
  setting?: string;
  /** The no-action run (variant kernel) and any of drop-all and scrub. */
  none: SeedRun;
  others: { variant: 'drop-all' | 'scrub'; run: SeedRun }[];
  /** Measured host hit ratio of a run (the report's hitRatioOf). */
  hitRatio: (run: SeedRun) => number | null;
  /** Where the reads come from; fio on this host by default. */
  trace?: (o: ZipfTraceOptions) => Uint32Array;
}

export function zipfModel(input: ZipfModelInput): ZipfModel {
  const { none, others, hitRatio } = input;
  const setting = input.setting ?? '';
  const fileMiB = num(none.options['fileMiB']);
  const theta = num(none.options['zipfTheta']);
  const seconds = num(none.options['seconds']);
  if (fileMiB === null || theta === null || seconds === null) throw new Error(`${none.file}: options fileMiB, zipfTheta and seconds are needed`);
  for (const o of others) {
    for (const k of ['fileMiB', 'zipfTheta', 'seconds', 'memMiB', 'limitMiB']) {
      if (o.run.options[k] !== none.options[k]) throw new Error(`${o.run.file}: options.${k} differs from ${none.file}'s: the model needs runs of one job`);
    }
  }
  const fileBlocks = (fileMiB * MIB) / BLOCK;
  const reads = [none, ...others.map((o) => o.run)].map(readsPerGuest);
  const traceReads = Math.max(...reads.flat());
  const trace = (input.trace ?? fioZipfTrace)({ fileMiB, theta, reads: traceReads });

  const noneReads = reads[0] as number[];
  const noneMisses = guestMissPages(none);
  const ss = withQemuReads(during(none));
  const first = ss[0];
  if (first === undefined) throw new Error(`${none.file}: no samples while fio ran`);
  const intervalS = num(others[0]?.run.options['dropIntervalS']) ?? 10;
  const pages = (mib: number): number => Math.max(0, Math.round((mib * MIB) / BLOCK));
  const peakMiB = Math.max(...ss.map(hostMiB));
  const afterLayoutMiB = Math.max(...ss.filter((s) => s.t <= first.t + intervalS).map(hostMiB));
  // What of the images' cache was fio's is not measured: the host also held the pages the guests
  // read at boot (kernel, libraries) when fio started. Both ends are modelled: all of it fio's
  // (those pages evicted by the layout), or none of the boot pages (they stayed, taking room).
  // The room is not one figure: the host cache grew from the layout's to its peak as the guests
  // missed, and shrank again as their RAM grew into the cgroup. The no-action run's host held what
  // its room let it at each sample, so that curve is the model's room under every policy (on the
  // reads' clock: the reads end where the workload's samples do).
  const last = ss.at(-1) as SeedSample;
  const roomOf = (offsetMiB: number): { t: number; pages: number }[] =>
    ss.map((s) => ({ t: s.t - (last.t - seconds), pages: pages(hostMiB(s) - offsetMiB) })).filter((r) => r.t > 0);
  const hostStarts: { hostStart: HostStart; hostPages: number; hostStartPages: number; hostRoom: { t: number; pages: number }[] }[] = [
    { hostStart: 'image', hostPages: pages(peakMiB), hostStartPages: pages(afterLayoutMiB), hostRoom: roomOf(0) },
    { hostStart: 'since-fio', hostPages: pages(peakMiB - hostMiB(first)), hostStartPages: pages(afterLayoutMiB - hostMiB(first)), hostRoom: roomOf(hostMiB(first)) },
  ];

  const fitted = new Map(GUEST_CACHES.map((cache) => [cache, fitGuestPages(trace, fileBlocks, noneReads, cache, noneMisses)]));
  const fits = hostStarts.flatMap(({ hostStart, hostPages, hostStartPages, hostRoom }) =>
    GUEST_CACHES.map((cache): ZipfModelFit => {
      const guestPages = fitted.get(cache) as number;
      const model = (policy: ZipfSimPolicy, readsOf: number[]): Pick<ZipfModelRow, 'modelled' | 'modelledHostMiB' | 'modelledMisses'> => {
        const r = simulateZipf({ trace, fileBlocks, readsPerGuest: readsOf, seconds, guestPages, guestCache: cache, hostPages, hostStartPages, hostRoom, policy, intervalS });
        return { modelled: r.hitRatio, modelledHostMiB: (r.avgHostPages * BLOCK) / MIB, modelledMisses: r.guestMisses };
      };
      const rows: ZipfModelRow[] = [{ policy: 'none', variant: `kernel${setting}`, measured: hitRatio(none), measuredMisses: noneMisses, ...model('none', noneReads) }];
      others.forEach((o, i) =>
        rows.push({ policy: o.variant, variant: `${o.variant}${setting}`, measured: hitRatio(o.run), measuredMisses: guestMissPages(o.run), ...model(o.variant, reads[i + 1] as number[]) }),
      );
      const maxError = Math.max(...rows.map((r) => (r.measured === null ? Infinity : Math.abs(r.modelled - r.measured))));
      // Beside the measured policies, with the no-action run's reads: the scrub as it could be with
      // the guest's own recency (scrub-hot, not runnable here), and the truly exclusive cache.
      rows.push({ policy: 'scrub-hot', variant: 'scrub-hot', measured: null, measuredMisses: null, ...model('scrub-hot', noneReads) });
      rows.push({ policy: 'truly-exclusive', variant: 'truly-exclusive', measured: null, measuredMisses: null, ...model('truly-exclusive', noneReads) });
      const validated = maxError <= ZIPF_MODEL_TOLERANCE && (['drop-all', 'scrub'] as const).every((v) => others.some((o) => o.variant === v));
      return { cache, hostStart, guestPages, hostPages, hostStartPages, rows, maxError, validated };
    }),
  );
  return { setting, traceReads, fileMiB, theta, tolerance: ZIPF_MODEL_TOLERANCE, fits, trulyExclusive: trulyExclusiveOf({ fits }) };
}

/** The guests' settings a model is made for: plain, booted with init_on_free=1, and that at the tight limit. */
export const ZIPF_MODEL_SETTINGS = ['', INIT_ON_FREE, `${INIT_ON_FREE}${TIGHT}`] as const;

/** A model that could not be made for a setting, and why. */
export interface ZipfModelError {
  setting: string;
  error: string;
}

/**
 * One model per guest setting that has a no-action fio-zipf run, over that setting's runs (its
 * no-action, drop-all and scrub runs, the newest of each): a setting's runs share their guests'
 * behaviour, so only they can check a model together.
 */
export function zipfModels(runs: readonly SeedRun[], hitRatio: ZipfModelInput['hitRatio'], trace?: ZipfModelInput['trace']): (ZipfModel | ZipfModelError)[] {
  return ZIPF_MODEL_SETTINGS.flatMap((setting): (ZipfModel | ZipfModelError)[] => {
    const none = pick(runs, 'fio-zipf', `kernel${setting}`);
    if (none === undefined) return [];
    const others = (['drop-all', 'scrub'] as const).flatMap((variant) => {
      const run = pick(runs, 'fio-zipf', `${variant}${setting}`);
      return run === undefined ? [] : [{ variant, run }];
    });
    try {
      return [zipfModel({ setting, none, others, hitRatio, ...(trace !== undefined ? { trace } : {}) })];
    } catch (e) {
      return [{ setting, error: (e as Error).message }];
    }
  });
}
