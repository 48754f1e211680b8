// The working-set path of the seed benchmark: ksm-agent wss's estimator (lib/wss.ts) on the two
// Debian guests while a program inside each touches a known amount of memory in a loop, changed
// mid-run. The program is sp-fill's volatile kind (in the image), which writes every page of its
// region every 200 ms. The host drives the changes between passes, as test/wss.test.ts does on a
// busybox guest: one idle pass, then A MiB, then A + B MiB (a second loop starts), then B MiB
// (the first loop is killed). Each pass is judged by wss-judge.ts.
import { estimateWorkingSets, type WssPass } from '../../lib/index.js';
import type { DebianGuest } from '../qemu/debian.js';
import { judgeWss, largest, wssErrorPct, type WssChange, type WssJudgedPass } from './wss-judge.js';

const MIB = 1 << 20;

export interface WssGuestRecord {
  name: string;
  pid: number;
  /** The idle pass (before the first loop), MiB: what the guest OS itself touched. */
  idleMiB: number;
  changes: WssChange[];
  passes: WssJudgedPass[];
  /** The largest error over this guest's judged passes. */
  errorPct: number | null;
  /** The same over its settled passes only (2nd after a change and later). */
  settledErrorPct: number | null;
}

export interface WssRun {
  intervalS: number;
  /** The loops' sizes, MiB: A, then A + B, then B. */
  loopsMiB: [number, number];
  guests: WssGuestRecord[];
  /** Every guest's largest error: the run's wss_error_pct. */
  errorPct: number | null;
  settledErrorPct: number | null;
  /** Seconds since QEMU start at each pass's end. */
  passEndS: number[];
}

/** The loops' sizes for a guest of memMiB: a quarter of its RAM each (A, then A + B = half). */
function wssLoops(memMiB: number): [number, number] {
  const q = Math.floor(memMiB / 4);
  return [q, q];
}

/**
 * One pass idle, then `perPhase` passes per phase (A, A + B, B), `intervalS` each, on every guest
 * at once. Returns each guest's passes judged against its own changes.
 */
export async function runWss(guests: readonly DebianGuest[], memMiB: number, intervalS: number, perPhase: number, t0: number): Promise<WssRun> {
  const [a, b] = wssLoops(memMiB);
  const changes: WssChange[][] = guests.map(() => []);
  const estimates: number[][] = guests.map(() => []);
  const passEndS: number[] = [];
  let inFlight: Promise<void> = Promise.resolve();
  // A step that failed (a fill the guest refused, a loop that would not die): kept here rather than
  // as a rejected promise nobody awaits yet, and thrown at the next pass's end.
  let stepError: Error | undefined;
  // The host's steps, each started when the pass before it ends: [after pass N, what, truth then].
  const steps: [number, (g: DebianGuest) => Promise<unknown>, number][] = [
    [1, (g) => g.guest.fill({ volatile: { amount: { MiB: a }, intervalMs: 200 } }, 'wss-a'), a],
    [1 + perPhase, (g) => g.guest.fill({ volatile: { amount: { MiB: b }, intervalMs: 200 } }, 'wss-b'), a + b],
    [1 + 2 * perPhase, (g) => g.guest.stopFill('wss-a'), b],
  ];
  const onPass = async (p: WssPass): Promise<void> => {
    if (stepError) throw stepError;
    passEndS.push(Math.round((Date.now() - t0) / 100) / 10);
    guests.forEach((g, i) => {
      const v = p.vms.find((x) => x.pid === g.guest.pid);
      if (v === undefined) throw new Error(`wss pass ${p.pass}: no reading for ${g.guest.name} (pid ${g.guest.pid})`);
      estimates[i]!.push(v.workingSetBytes / MIB);
    });
    const step = steps.find(([after]) => after === p.pass);
    if (step === undefined) return;
    // One step in flight at a time.
    await inFlight;
    if (stepError) throw stepError;
    const [, act, truth] = step;
    inFlight = Promise.all(
      guests.map(async (g, i) => {
        const startedAfterPass = estimates[i]!.length;
        await act(g);
        changes[i]!.push({ startedAfterPass, afterPass: estimates[i]!.length, truthMiB: truth });
      }),
    ).then(
      () => undefined,
      (e: unknown) => {
        stepError ??= e instanceof Error ? e : new Error(String(e));
      },
    );
  };
  try {
    await estimateWorkingSets({ vms: guests.map((g) => g.guest.pid), intervalMs: intervalS * 1000, passes: 1 + 3 * perPhase, onPass });
  } finally {
    await inFlight;
  }
  if (stepError) throw stepError;
  const records = guests.map((g, i): WssGuestRecord => {
    const passes = judgeWss(estimates[i]!, changes[i]!);
    return {
      name: g.guest.name,
      pid: g.guest.pid,
      idleMiB: estimates[i]![0] ?? 0,
      changes: changes[i]!,
      passes,
      errorPct: wssErrorPct(passes),
      settledErrorPct: wssErrorPct(passes, true),
    };
  });
  return {
    intervalS,
    loopsMiB: [a, b],
    guests: records,
    errorPct: largest(records.map((r) => r.errorPct)),
    settledErrorPct: largest(records.map((r) => r.settledErrorPct)),
    passEndS,
  };
}
