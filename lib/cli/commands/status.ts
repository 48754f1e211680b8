// ksm-agent status: KSM on this host at a glance. Two readings --sample seconds apart give the
// scan rate, the time of a full pass and ksmd's CPU share.
import { setTimeout as sleep } from 'node:timers/promises';
import { findRunningAgent } from '../../running-agent.js';
import { fullPassSeconds, rates, takeSample } from '../../sample.js';
import type { Rates, Sample } from '../../sample.js';
import { flag, noPositionals, num, parse } from '../args.js';
import type { OptionSpec } from '../args.js';
import { commandHelp } from '../help.js';
import type { Command, Io } from '../command.js';
import { formatBytes, formatCount, formatDuration, formatPercent, renderPairs } from '../../format.js';

const OPTIONS = [
  {
    name: 'json',
    type: 'boolean',
    description:
      'machine-readable: "ksm" holds every file of /sys/kernel/mm/ksm by its name (numbers as the kernel prints them, advisor_mode as its selected word), plus saved_bytes (= general_profit), sharing_ratio, scan and CPU figures',
  },
  { name: 'sample', type: 'string', value: 'SECONDS', description: 'measure rates over this long; 0: settings and counters only', default: '1' },
] as const satisfies readonly OptionSpec[];

const HELP = commandHelp({
  command: 'status',
  options: OPTIONS,
  about: `KSM on this host at a glance: running or not, memory saved (general_profit), the sharing ratio,
the scan rate and the time one full pass takes, ksmd's CPU share, and every setting.`,
  notes: "Works as any user (sysfs and ksmd's /proc/PID/stat are world-readable).",
});

/** Every KSM file by name, with the value as the kernel prints it (booleans as 0/1). */
export function ksmJson(s: Sample): Record<string, number | string> {
  const out: Record<string, number | string> = {};
  const all: Record<string, unknown> = { ...s.ksm.settings, ...s.ksm.counters };
  for (const [k, v] of Object.entries(all)) out[k] = typeof v === 'boolean' ? (v ? 1 : 0) : (v as number | string);
  for (const [k, v] of Object.entries(s.ksm.extra)) out[k] = /^-?\d+$/.test(v) ? Number(v) : v;
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
}

export function runState(run: number | undefined): string {
  if (run === 1) return 'running (run=1)';
  if (run === 2) return 'stopped, every page unmerged (run=2)';
  return 'stopped (run=0; merged pages stay merged)';
}

export function sharingRatio(s: Sample): number | undefined {
  const shared = s.ksm.counters.pages_shared ?? 0;
  return shared > 0 ? (s.ksm.counters.pages_sharing ?? 0) / shared : undefined;
}

/** The knobs people look at first, then the rest by name. */
const FIRST = ['run', 'pages_to_scan', 'sleep_millisecs', 'use_zero_pages', 'max_page_sharing', 'merge_across_nodes', 'smart_scan', 'advisor_mode'];

export function settingsLine(s: Sample): string {
  const rank = (k: string): number => (FIRST.includes(k) ? FIRST.indexOf(k) : FIRST.length);
  return Object.entries(s.ksm.settings)
    .sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b))
    .map(([k, v]) => `${k}=${typeof v === 'boolean' ? (v ? 1 : 0) : String(v)}`)
    .join(' ');
}

export interface StatusReport {
  sample: Sample;
  rates?: Rates;
  agentPid?: number;
}

export async function readStatus(sampleSeconds: number): Promise<StatusReport> {
  const first = await takeSample();
  const holder = await findRunningAgent();
  if (sampleSeconds <= 0) return { sample: first, ...(holder === undefined ? {} : { agentPid: holder }) };
  await sleep(sampleSeconds * 1000);
  const second = await takeSample();
  return { sample: second, rates: rates(first, second), ...(holder === undefined ? {} : { agentPid: holder }) };
}

export function statusLines(r: StatusReport): [string, string][] {
  const s = r.sample;
  const c = s.ksm.counters;
  const ratio = sharingRatio(s);
  const pairs: [string, string][] = [
    ['KSM', runState(s.ksm.settings.run)],
    [
      'saved',
      `${formatBytes(c.general_profit ?? (c.pages_sharing ?? 0) * 4096)} (general_profit: ${formatCount(c.pages_sharing ?? 0)} pages sharing ${formatCount(c.pages_shared ?? 0)} KSM pages${c.ksm_zero_pages ? `, ${formatCount(c.ksm_zero_pages)} zero pages` : ''})`,
    ],
    ['sharing', ratio === undefined ? 'no KSM pages' : `${ratio.toFixed(2)} mappings saved per KSM page`],
  ];
  if (r.rates !== undefined) {
    const pass = fullPassSeconds(s, r.rates);
    const rate = r.rates.scannedPerSecond;
    pairs.push([
      'scanning',
      rate === undefined
        ? 'pages_scanned is not available on this kernel'
        : rate === 0
          ? `idle (${formatCount(c.full_scans ?? 0)} full passes so far)`
          : `${formatCount(rate)} pages/s, a full pass ≈ ${pass === undefined ? '-' : formatDuration(pass)} (${formatCount(c.full_scans ?? 0)} so far)`,
    ]);
    pairs.push(['ksmd CPU', r.rates.ksmdCpu === undefined ? 'ksmd is not visible (another pid namespace)' : `${formatPercent(r.rates.ksmdCpu)} of a core`]);
  }
  pairs.push(['settings', settingsLine(s)]);
  pairs.push(['agent', r.agentPid === undefined ? 'not running' : `ksm-agent run is managing KSM (pid ${r.agentPid})`]);
  return pairs;
}

export function statusJson(r: StatusReport): Record<string, unknown> {
  const s = r.sample;
  const pass = r.rates === undefined ? undefined : fullPassSeconds(s, r.rates);
  return {
    ksm: ksmJson(s),
    saved_bytes: s.ksm.counters.general_profit ?? (s.ksm.counters.pages_sharing ?? 0) * 4096,
    sharing_ratio: sharingRatio(s) ?? null,
    sample_seconds: r.rates?.seconds ?? 0,
    pages_scanned_per_second: r.rates?.scannedPerSecond ?? null,
    full_pass_seconds: pass ?? null,
    ksmd_cpu_ratio: r.rates?.ksmdCpu ?? null,
    agent_pid: r.agentPid ?? null,
  };
}

export const status: Command = {
  name: 'status',
  summary: 'KSM at a glance: saved memory, sharing, scan rate, ksmd CPU, settings',
  options: OPTIONS,
  help: HELP,
  async run(argv: string[], io: Io): Promise<number> {
    const p = parse('status', argv, OPTIONS);
    noPositionals('status', p);
    const seconds = num('status', p, 'sample', 0, 60) ?? 1;
    const report = await readStatus(seconds);
    if (flag(p, 'json')) io.out(JSON.stringify(statusJson(report), null, 2));
    else io.out(renderPairs(statusLines(report)));
    return 0;
  },
};
