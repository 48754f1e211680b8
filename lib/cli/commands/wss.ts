// ksm-agent wss: each VM's working set, the guest RAM it touched in a window (lib/wss.ts).
import { estimateWorkingSets } from '../../wss.js';
import type { WssPass } from '../../wss.js';
import { flag, noPositionals, num, parse, strs } from '../args.js';
import type { OptionSpec } from '../args.js';
import { commandHelp } from '../help.js';
import type { Command, Io } from '../command.js';
import { formatBytes, renderTable } from '../../format.js';

const OPTIONS = [
  { name: 'vm', type: 'string', value: 'NAME', multiple: true, description: 'a QEMU VM by name or pid, as ksm-agent vms lists them', default: 'every QEMU VM' },
  { name: 'interval', type: 'string', value: 'SECONDS', description: 'the window of each pass', default: '5' },
  { name: 'passes', type: 'string', value: 'N', description: 'how many windows to measure, one after another', default: '1' },
  {
    name: 'json',
    type: 'boolean',
    description: 'one JSON object per pass, one per line, as each completes: pass, window_seconds, vms [{name, pid, ram_bytes, working_set_bytes}]',
  },
] as const satisfies readonly OptionSpec[];

const HELP = commandHelp({
  command: 'wss',
  options: OPTIONS,
  about: `Each VM's working set: how much of its guest RAM the guest read or wrote during a window.
Each pass clears the accessed bits of the QEMU process's anonymous pages (/proc/PID/clear_refs),
waits the interval, and counts the guest RAM pages accessed since (smaps "Referenced"), at the
host page size backing guest RAM (4 KiB, or 2 MiB when THP backs it).`,
  notes: `While it runs, the host's reclaim sees the VMs' pages as not recently used until the guests
touch them again. Needs root.`,
});

export const wss: Command = {
  name: 'wss',
  summary: "estimate each VM's working set (guest RAM touched per window)",
  options: OPTIONS,
  help: HELP,
  async run(argv: string[], io: Io): Promise<number> {
    const p = parse('wss', argv, OPTIONS);
    noPositionals('wss', p);
    const interval = num('wss', p, 'interval', 0.1, 3600) ?? 5;
    const passes = num('wss', p, 'passes', 1, 1_000_000, true) ?? 1;
    const vms = strs(p, 'vm');
    const json = flag(p, 'json');
    const show = (r: WssPass): void => {
      if (json) {
        io.out(
          JSON.stringify({
            pass: r.pass,
            window_seconds: r.windowMs / 1000,
            vms: r.vms.map((v) => ({ name: v.name, pid: v.pid, ram_bytes: v.ramBytes, working_set_bytes: v.workingSetBytes })),
          }),
        );
        return;
      }
      io.out(`pass ${r.pass} (${(r.windowMs / 1000).toFixed(1)} s window)`);
      io.out(
        renderTable(
          ['NAME', 'PID', 'RAM', 'WORKING SET', '%'],
          r.vms.map((v) => [
            v.name,
            String(v.pid),
            formatBytes(v.ramBytes),
            formatBytes(v.workingSetBytes),
            v.ramBytes > 0 ? ((100 * v.workingSetBytes) / v.ramBytes).toFixed(1) : '-',
          ]),
        ),
      );
    };
    await estimateWorkingSets({ ...(vms.length > 0 ? { vms } : {}), intervalMs: interval * 1000, passes, onPass: show });
    return 0;
  },
};
