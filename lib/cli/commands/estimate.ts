// ksm-agent estimate: what KSM would save on given processes or VMs, computed by the engine over
// their live memory (read through /proc/PID/mem, never written), before or without KSM running.
// It changes neither guest memory nor any KSM setting.
import { loadVmPolicies } from '../policies.js';
import { optedOut } from '../../tenants.js';
import { vmLabel } from '../../attribution.js';
import { InvalidArgumentError } from '../../errors.js';
import { readKsmSettings } from '../../sysfs.js';
import { Scanner } from '../../scanner.js';
import type { ScanResult } from '../../scanner.js';
import { findVm, listVms } from '../../vms.js';
import { bool01, flag, noPositionals, num, parse, str, strs } from '../args.js';
import type { OptionSpec } from '../args.js';
import { commandHelp } from '../help.js';
import { DEFAULT_CONFIG_PATH } from '../../paths.js';
import type { Command, Io } from '../command.js';
import { UsageError } from '../exit-codes.js';
import { escapeText } from '../../escape.js';
import { formatBytes, formatCount, formatDuration, renderTable } from '../../format.js';
import { progressBar } from '../progress.js';

const TARGETS = 'Targets (at least one)';

const OPTIONS = [
  { name: 'pid', type: 'string', value: 'PID', multiple: true, group: TARGETS, description: 'a process: its mergeable ranges, as KSM would scan them' },
  { name: 'vm', type: 'string', value: 'NAME', multiple: true, group: TARGETS, description: 'a QEMU VM by name or pid, as ksm-agent vms lists them' },
  { name: 'all', type: 'boolean', group: TARGETS, description: 'every QEMU VM except those opted out by the agent config or mem-merge=off' },
  { name: 'passes', type: 'string', value: 'N', description: "full passes, like ksmd's; a page needs two to merge, and the kernel converges in 3-5", default: '4' },
  { name: 'interval', type: 'string', value: 'S', description: "seconds between passes, like ksmd's sleep, so pages that change look volatile", default: '0.1' },
  { name: 'use-zero-pages', type: 'string', value: '0|1', description: 'model this use_zero_pages', default: "the host's" },
  { name: 'max-page-sharing', type: 'string', value: 'N', description: 'model this max_page_sharing', default: "the host's" },
  { name: 'smart-scan', type: 'string', value: '0|1', description: 'model this smart_scan', default: "the host's" },
  {
    name: 'thp-zero-apart',
    type: 'string',
    value: '0|1',
    description: 'leave zero-filled THP subpages out: the kernel maps them to the zero page outside KSM when it splits the huge page',
    default: '1 as root, else 0',
  },
  { name: 'config', type: 'string', value: 'PATH', description: 'the agent config naming opted-out VMs, for --all', default: `${DEFAULT_CONFIG_PATH}, read when it exists` },
  {
    name: 'json',
    type: 'boolean',
    description:
      'pages_shared, pages_sharing, ksm_zero_pages, general_profit, sources [{pid, name, pages, present_pages, merging_pages, ...}], matrix (matrix[i][j]: pages of source i merged with a page of source j), settings',
  },
] as const satisfies readonly OptionSpec[];

const HELP = commandHelp({
  command: 'estimate',
  options: OPTIONS,
  about: `What KSM would save on these processes, computed now by samepage's engine (the kernel's rules
and counters) over their live memory, before or without enabling KSM. It reads the memory
through /proc/PID/mem and never writes it, and it changes no KSM setting.`,
  notes: 'A progress bar shows on a terminal. Needs root for other users\' processes (QEMU).',
});

export interface EstimateJson {
  pages_shared: number;
  pages_sharing: number;
  pages_unshared: number;
  pages_volatile: number;
  ksm_zero_pages: number;
  general_profit: number;
  stable_node_chains: number;
  stable_node_dups: number;
  sources: {
    pid: number | null;
    name: string;
    pages: number;
    present_pages: number;
    merging_pages: number;
    zero_pages: number;
    thp_zero_pages: number;
    rmap_items: number;
    profit_bytes: number;
    error?: string;
  }[];
  matrix: number[][];
  settings: { use_zero_pages: number; max_page_sharing: number; smart_scan: number };
  passes: number;
  interval_seconds: number;
  elapsed_seconds: number;
}

export function estimateJson(r: ScanResult, settings: EstimateJson['settings'], intervalSeconds: number, elapsed: number): EstimateJson {
  const c = r.counters;
  return {
    pages_shared: c.pages_shared,
    pages_sharing: c.pages_sharing,
    pages_unshared: c.pages_unshared,
    pages_volatile: c.pages_volatile,
    ksm_zero_pages: c.ksm_zero_pages,
    general_profit: c.general_profit,
    stable_node_chains: c.stable_node_chains,
    stable_node_dups: c.stable_node_dups,
    sources: r.sources.map((s) => ({
      pid: s.pid ?? null,
      name: s.name,
      pages: s.pages,
      present_pages: s.presentPages,
      merging_pages: s.mergingPages,
      zero_pages: s.zeroPages,
      thp_zero_pages: s.thpZeroPages,
      rmap_items: s.rmapItems,
      profit_bytes: s.profitBytes,
      ...(s.error === undefined ? {} : { error: s.error.message }),
    })),
    matrix: r.matrix,
    settings,
    passes: r.passes,
    interval_seconds: intervalSeconds,
    elapsed_seconds: elapsed,
  };
}

function humanReport(e: EstimateJson): string {
  const lines = [
    `estimate: ${e.sources.length} source${e.sources.length === 1 ? '' : 's'}, ${e.passes} passes ${formatDuration(e.interval_seconds)} apart, in ${formatDuration(e.elapsed_seconds)}` +
      ` (use_zero_pages=${e.settings.use_zero_pages} max_page_sharing=${e.settings.max_page_sharing} smart_scan=${e.settings.smart_scan})`,
    `KSM would save ${formatBytes(e.general_profit)} (general_profit): ${formatCount(e.pages_sharing)} pages sharing ${formatCount(e.pages_shared)} KSM pages` +
      `${e.ksm_zero_pages > 0 ? `, ${formatCount(e.ksm_zero_pages)} zero pages` : ''}`,
    '',
  ];
  const names = e.sources.map((s) => s.name);
  const rows = e.sources.map((s, i) => {
    const row = e.matrix[i] ?? [];
    const peers = row
      .map((pages, j) => [j, pages] as const)
      .filter(([j, pages]) => j !== i && pages > 0)
      .sort((a, b) => b[1] - a[1])
      .map(([j, pages]) => `${names[j]} ${formatCount(pages)}`)
      .join(', ');
    return [
      s.name,
      s.pid === null ? '' : String(s.pid),
      formatCount(s.present_pages),
      formatCount(s.merging_pages),
      formatCount(row[i] ?? 0),
      formatCount(s.zero_pages),
      formatCount(s.thp_zero_pages),
      s.error ?? (peers === '' ? '-' : peers),
    ];
  });
  lines.push(
    renderTable(['NAME', 'PID', 'PRESENT', 'WOULD MERGE', 'WITHIN ITSELF', 'ZERO', 'THP ZERO', 'SHARES WITH (pages)'], rows, ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'left']),
  );
  return lines.join('\n');
}

export const estimate: Command = {
  name: 'estimate',
  summary: 'what KSM would save on processes/VMs, computed from their live memory (changes nothing)',
  options: OPTIONS,
  help: HELP,
  async run(argv: string[], io: Io): Promise<number> {
    const p = parse('estimate', argv, OPTIONS);
    noPositionals('estimate', p);
    const passes = num('estimate', p, 'passes', 1, 1000, true) ?? 4;
    const interval = num('estimate', p, 'interval', 0, 60) ?? 0.1;
    const pids = strs(p, 'pid').map((t) => {
      if (!/^\d+$/.test(t) || Number(t) <= 0) throw new UsageError(`--pid ${JSON.stringify(t)}: a pid is a positive integer, as ps prints it`);
      return Number(t);
    });
    const vmNames = strs(p, 'vm');
    if (pids.length === 0 && vmNames.length === 0 && !flag(p, 'all')) {
      throw new UsageError('nothing to estimate: name processes with --pid, VMs with --vm, or use --all; see ksm-agent estimate --help');
    }

    const host = await readKsmSettings();
    const useZeroPages = bool01('estimate', p, 'use-zero-pages') ?? host.use_zero_pages ?? false;
    const maxPageSharing = num('estimate', p, 'max-page-sharing', 2, 1 << 30, true) ?? host.max_page_sharing ?? 256;
    const smartScan = bool01('estimate', p, 'smart-scan') ?? host.smart_scan ?? true;
    const thpZeroApart = bool01('estimate', p, 'thp-zero-apart') ?? process.geteuid?.() === 0;

    // Targets: explicit pids and VMs first (a typo fails before any memory is read), then --all.
    const targets = new Map<number, string | undefined>();
    for (const pid of pids) targets.set(pid, undefined);
    for (const name of vmNames) {
      const vm = await findVm(name, { memory: false });
      targets.set(vm.pid, vmLabel(vm));
    }
    if (flag(p, 'all')) {
      const policies = await loadVmPolicies(str(p, 'config'));
      const all = await listVms({ memory: false });
      const kept = all.filter((vm) => !optedOut(vm, policies).out);
      if (kept.length === 0 && targets.size === 0) {
        throw new InvalidArgumentError(
          all.length === 0 ? 'no QEMU VMs are running: start some, or name processes with --pid' : `every running VM is opted out of KSM (${escapeText(all.map(vmLabel).join(', '))}): nothing to estimate`,
        );
      }
      for (const vm of kept) targets.set(vm.pid, vmLabel(vm));
    }

    const scanner = new Scanner({
      useZeroPages,
      maxPageSharing,
      smartScan,
      ...(host.stable_node_chains_prune_millisecs === undefined ? {} : { stableNodeChainsPruneMillisecs: host.stable_node_chains_prune_millisecs }),
    });
    const bar = progressBar(io.stderrTty);
    const abort = new AbortController();
    const onInt = () => abort.abort(new Error('interrupted'));
    process.once('SIGINT', onInt);
    const started = performance.now();
    try {
      for (const [pid, name] of targets) await scanner.addProcess(pid, { ...(name === undefined ? {} : { name }), thpZeroApart });
      const result = await scanner.scan({
        passes,
        intervalMs: Math.round(interval * 1000),
        signal: abort.signal,
        onProgress: (pr) => bar.update((pr.pass - 1 + (pr.passTotal > 0 ? pr.passPages / pr.passTotal : 0)) / passes, `pass ${pr.pass}/${passes}`),
      });
      bar.done();
      const e = estimateJson(result, { use_zero_pages: useZeroPages ? 1 : 0, max_page_sharing: maxPageSharing, smart_scan: smartScan ? 1 : 0 }, interval, (performance.now() - started) / 1000);
      io.out(flag(p, 'json') ? JSON.stringify(e, null, 2) : humanReport(e));
      return 0;
    } finally {
      bar.done();
      process.off('SIGINT', onInt);
      await scanner.close();
    }
  },
};
