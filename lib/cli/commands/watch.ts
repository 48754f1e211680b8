// ksm-agent watch: a live view, refreshed every second: status plus the per-VM table on a
// terminal (redrawn in place), one line per refresh when piped, NDJSON with --json.
import { setTimeout as sleep } from 'node:timers/promises';
import { fullPassSeconds, rates, takeSample } from '../../sample.js';
import type { Sample } from '../../sample.js';
import { flag, noPositionals, num, parse, str } from '../args.js';
import type { OptionSpec } from '../args.js';
import { commandHelp } from '../help.js';
import { DEFAULT_CONFIG_PATH } from '../../paths.js';
import type { Command, Io } from '../command.js';
import { escapeText } from '../../escape.js';
import { formatBytes, formatCount, formatPercent, renderPairs } from '../../format.js';
import { readStatus, statusJson, statusLines } from './status.js';
import type { StatusReport } from './status.js';
import { noVmsFound } from '../../vms.js';
import { readVmRows, vmTable } from './vms.js';

const OPTIONS = [
  { name: 'interval', type: 'string', value: 'S', description: 'seconds between refreshes', default: '1' },
  { name: 'count', type: 'string', value: 'N', description: 'stop after N refreshes', default: 'until Ctrl-C' },
  { name: 'no-vms', type: 'boolean', description: 'leave out the per-VM table, which needs root' },
  { name: 'json', type: 'boolean', description: 'NDJSON: one JSON object per refresh' },
  { name: 'config', type: 'string', value: 'PATH', description: 'agent config for tenants and opt-outs in the VM table', default: `${DEFAULT_CONFIG_PATH}, read when it exists` },
] as const satisfies readonly OptionSpec[];

const HELP = commandHelp({
  command: 'watch',
  options: OPTIONS,
  about: `A live view of KSM, refreshed every second: what status shows plus the per-VM table (as vms).
On a terminal the screen is redrawn in place; piped, one line per refresh; --json writes one JSON
object per refresh (status --json plus "vms").`,
});

function oneLine(s: Sample, r: StatusReport): string {
  const c = s.ksm.counters;
  const pass = r.rates === undefined ? undefined : fullPassSeconds(s, r.rates);
  return [
    new Date(s.at).toISOString().slice(11, 19),
    `run=${s.ksm.settings.run ?? '-'}`,
    `saved=${formatBytes(c.general_profit ?? 0)}`,
    `shared=${formatCount(c.pages_shared ?? 0)}`,
    `sharing=${formatCount(c.pages_sharing ?? 0)}`,
    `scan=${formatCount(r.rates?.scannedPerSecond ?? 0)}/s`,
    `pass=${pass === undefined ? '-' : `${pass.toFixed(1)}s`}`,
    `ksmd=${r.rates?.ksmdCpu === undefined ? '-' : formatPercent(r.rates.ksmdCpu)}`,
  ].join(' ');
}

export const watch: Command = {
  name: 'watch',
  summary: 'a live view of KSM and the VMs, refreshed every second',
  options: OPTIONS,
  help: HELP,
  async run(argv: string[], io: Io): Promise<number> {
    const p = parse('watch', argv, OPTIONS);
    noPositionals('watch', p);
    const interval = num('watch', p, 'interval', 0.2, 3600) ?? 1;
    const count = num('watch', p, 'count', 1, Number.MAX_SAFE_INTEGER, true);
    const withVms = !flag(p, 'no-vms');
    const json = flag(p, 'json');
    let stop = false;
    const onInt = () => (stop = true);
    process.once('SIGINT', onInt);
    try {
      let prev = await takeSample();
      const first = await readStatus(0);
      for (let i = 0; !stop && (count === undefined || i < count); i++) {
        await sleep(interval * 1000);
        const cur = await takeSample();
        const report: StatusReport = { sample: cur, rates: rates(prev, cur), ...(first.agentPid === undefined ? {} : { agentPid: first.agentPid }) };
        prev = cur;
        const vmPart = withVms ? await readVmRows(str(p, 'config')).catch((err: Error) => err) : undefined;
        if (json) {
          io.out(JSON.stringify({ ...statusJson(report), vms: vmPart instanceof Error ? { error: vmPart.message } : (vmPart?.rows ?? null) }));
        } else if (io.stdoutTty) {
          const table = vmPart === undefined ? '' : vmPart instanceof Error ? `VMs: ${escapeText(vmPart.message)}` : vmPart.rows.length === 0 ? noVmsFound() : vmTable(vmPart.rows, vmPart.generalProfit);
          // Clear the screen and go home, then redraw: one frame per refresh.
          io.out(`\x1b[2J\x1b[H${renderPairs(statusLines(report))}\n\n${table}\n\n(every ${interval} s; Ctrl-C to stop)`);
        } else {
          io.out(oneLine(cur, report));
        }
      }
    } finally {
      process.off('SIGINT', onInt);
    }
    return 0;
  },
};
