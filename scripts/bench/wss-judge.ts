// The rule the working-set estimator is held to (bench:seed's wss workload, seed-wss.ts, and
// test/wss.test.ts): each pass against the truth of the loops a guest runs, within 10%, and a change
// seen within 2 passes of its completion (the pass during which it completed is the first of those
// 2). A pass during which a change was still under way (a 128 MiB fill can take longer than a pass
// on a loaded host) has no single truth and is not judged.

/** How far an estimate may be from the truth, percent (the bound). */
export const WSS_TOLERANCE_PCT = 10;

/**
 * A change to a guest's loops: begun once `startedAfterPass` passes had ended (when known), complete
 * once `afterPass` had; `truthMiB` from then on.
 */
export interface WssChange {
  startedAfterPass?: number;
  afterPass: number;
  truthMiB: number;
}

export interface WssJudgedPass {
  pass: number;
  estimateMiB: number;
  truthMiB: number;
  errorPct: number;
  /** Not held to the tolerance: a pass during which a change was under way (inTransit), or the
   * first pass after a change completed when it is over the tolerance (allowed once). */
  excused: boolean;
  /** A change began before this pass ended and completed after this pass began; truthMiB is the
   * truth it was heading for. */
  inTransit: boolean;
  /** The 2nd pass after its change or later: the loop ran through the whole window. */
  settled: boolean;
}

/**
 * Each pass of one guest against the truth of the last change completed before it began. Passes
 * before the first change (an idle guest, truth unknown) are not judged.
 */
export function judgeWss(estimatesMiB: readonly number[], changes: readonly WssChange[]): WssJudgedPass[] {
  const out: WssJudgedPass[] = [];
  estimatesMiB.forEach((estimateMiB, i) => {
    const error = (truthMiB: number): number => (100 * Math.abs(estimateMiB - truthMiB)) / truthMiB;
    // Pass i (0-based) ended after i + 1 passes: a change begun after s passes and complete after a
    // was under way during passes s .. a - 1.
    const moving = changes.find((c) => c.startedAfterPass !== undefined && c.startedAfterPass <= i && i < c.afterPass);
    if (moving !== undefined) {
      out.push({ pass: i + 1, estimateMiB, truthMiB: moving.truthMiB, errorPct: error(moving.truthMiB), excused: true, inTransit: true, settled: false });
      return;
    }
    const done = changes.filter((c) => c.afterPass <= i);
    const last = done[done.length - 1];
    if (last === undefined) return;
    const errorPct = error(last.truthMiB);
    // Pass i is the (i - afterPass + 1)-th pass since the change completed; the 2nd must be right.
    const excused = last.afterPass > 0 && i - last.afterPass + 1 < 2 && errorPct > WSS_TOLERANCE_PCT;
    out.push({ pass: i + 1, estimateMiB, truthMiB: last.truthMiB, errorPct, excused, inTransit: false, settled: i - last.afterPass + 1 >= 2 });
  });
  return out;
}

/** A judged pass as the report and the runner print it: estimate/truth MiB, ~ while a change was
 * under way, * for the first pass after one that missed (both excused). */
export function wssPassText(p: WssJudgedPass): string {
  return `${p.estimateMiB.toFixed(1)}/${p.truthMiB}${p.inTransit ? '~' : p.excused ? '*' : ''}`;
}

/** What wssPassText's marks mean. */
export const WSS_MARKS = '~ a change under way during the pass, * the first pass after a change completed (both excused)';

/** The largest error of the passes judged (excused ones left out; `settled`: only those), or null when none was. */
export function wssErrorPct(judged: readonly WssJudgedPass[], settled = false): number | null {
  const errs = judged.filter((j) => !j.excused && (!settled || j.settled)).map((j) => j.errorPct);
  return errs.length === 0 ? null : Math.max(...errs);
}

/** The largest of each guest's figure, or null unless every guest has one. */
export function largest(xs: readonly (number | null)[]): number | null {
  const ok = xs.filter((x): x is number => x !== null);
  return ok.length === xs.length && ok.length > 0 ? Math.max(...ok) : null;
}

