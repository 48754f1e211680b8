// The patched kernel's lookahead figures beside the seed's lookahead table: our series (native/kernel)
// booted by test:kernel, whose checks boot (Linux 6.12 under QEMU TCG with -icount, so ksmd's CPU
// time counts guest instructions, not host load) measures ksmd with lookahead off and on over the
// same workloads (scripts/kernel/guest/sp_lookahead.c) and prints one "SP MEASURE workload=W
// lookahead=0|1 key=value..." line per run. test:kernel's own log repeats them as "measure
// checks: ...". This reads either form.

/** One measured run of ksmd in the patched kernel. */
export interface KernelMeasure {
  workload: string;
  lookahead: boolean;
  /** Every numeric key=value of the line. */
  figures: Record<string, number>;
}

/** The lookahead runs of a test:kernel log or serial log; other lines are skipped. */
export function parseKernelMeasures(text: string): KernelMeasure[] {
  const out: KernelMeasure[] = [];
  for (const raw of text.split('\n')) {
    const m = /^(?:SP MEASURE|measure checks:) (workload=.*)$/.exec(raw.replace(/\r$/, ''));
    if (m === null) continue;
    const fields = new Map((m[1] as string).split(' ').map((kv) => kv.split('=') as [string, string]));
    const workload = fields.get('workload');
    const lookahead = fields.get('lookahead');
    if (workload === undefined || !/^[a-z0-9_-]{1,32}$/.test(workload) || (lookahead !== '0' && lookahead !== '1')) continue;
    const figures: Record<string, number> = {};
    for (const [k, v] of fields) if (k !== 'workload' && k !== 'lookahead' && /^\d+(\.\d+)?$/.test(v ?? '')) figures[k] = Number(v);
    out.push({ workload, lookahead: lookahead === '1', figures });
  }
  return out;
}

export interface KernelLookaheadRow {
  workload: string;
  /** How many off/on runs were averaged. */
  runs: [number, number];
  /** pages_shared averaged over the run where it was sampled (vm), else at its end. */
  sharedOff: number;
  sharedOn: number;
  cpuNsPerScanOff: number;
  cpuNsPerScanOn: number;
  hits: number;
  misses: number;
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Per workload, the mean of its lookahead-off runs beside the mean of its lookahead-on runs. */
export function kernelLookahead(measures: readonly KernelMeasure[]): KernelLookaheadRow[] {
  const rows: KernelLookaheadRow[] = [];
  for (const workload of [...new Set(measures.map((m) => m.workload))]) {
    const side = (on: boolean): KernelMeasure[] => measures.filter((m) => m.workload === workload && m.lookahead === on);
    const off = side(false);
    const on = side(true);
    const shared = (m: KernelMeasure): number | undefined => m.figures['avg_pages_shared'] ?? m.figures['pages_shared'];
    const complete = (ms: KernelMeasure[]): boolean => ms.length > 0 && ms.every((m) => shared(m) !== undefined && m.figures['cpu_ns_per_full_scan'] !== undefined);
    if (!complete(off) || !complete(on)) continue;
    rows.push({
      workload,
      runs: [off.length, on.length],
      sharedOff: mean(off.map((m) => shared(m) as number)),
      sharedOn: mean(on.map((m) => shared(m) as number)),
      cpuNsPerScanOff: mean(off.map((m) => m.figures['cpu_ns_per_full_scan'] as number)),
      cpuNsPerScanOn: mean(on.map((m) => m.figures['cpu_ns_per_full_scan'] as number)),
      hits: on.reduce((a, m) => a + (m.figures['lookahead_hits'] ?? 0), 0),
      misses: on.reduce((a, m) => a + (m.figures['lookahead_misses'] ?? 0), 0),
    });
  }
  return rows;
}
