// ksm-agent set KEY=VALUE...: changes KSM settings (validated, ordered and rolled back on failure
// by the library). The settings found before the first change are saved so that
// `ksm-agent restore` can put them back. run=2 is refused when memory cannot absorb the unmerge.
import { UNMERGE_RESERVE_PERCENT } from '../../paths.js';
import { findRunningAgent } from '../../running-agent.js';
import { unmergeHeadroom } from '../../unmerge.js';
import { parseSettingInput } from '../../ksm-files.js';
import type { KsmSettings } from '../../ksm-files.js';
import { readKsmSettings, setKsm, snapshotSettings } from '../../sysfs.js';
import { flag, parse, str } from '../args.js';
import type { OptionSpec } from '../args.js';
import { commandHelp } from '../help.js';
import type { Command, Io } from '../command.js';
import { UsageError } from '../exit-codes.js';
import { formatBytes } from '../../format.js';
import { SAVED_PATH, readSaved, writeSaved } from '../saved.js';

const OPTIONS = [
  { name: 'force', type: 'boolean', description: 'write run=2 even without that headroom (the OOM killer may act)' },
  { name: 'no-save', type: 'boolean', description: 'do not save the settings for restore' },
  { name: 'saved', type: 'string', value: 'PATH', description: 'where to save them', default: SAVED_PATH },
  { name: 'json', type: 'boolean', description: 'print the settings after the change as JSON' },
] as const satisfies readonly OptionSpec[];

const HELP = commandHelp({
  command: 'set',
  operands: 'KEY=VALUE...',
  options: OPTIONS,
  about: `Changes KSM settings (files of /sys/kernel/mm/ksm), e.g.
  ksm-agent set run=1 pages_to_scan=1000 sleep_millisecs=20
  ksm-agent set use_zero_pages=1 advisor_mode=scan-time advisor_max_cpu=30
Every value is checked before anything is written; writes go in an order the kernel accepts;
if one fails, the ones done are undone. Booleans take 1/0, yes/no, on/off, true/false.

Before the first change the current settings are saved (--saved); "ksm-agent restore" puts them
back. A later set keeps that first snapshot.

run=2 stops ksmd and unmerges every page, which needs a free page for each merged one: it is
refused unless MemAvailable covers pages_sharing + ksm_zero_pages plus 5% of RAM.`,
  notes: 'Needs root. While "ksm-agent run" manages KSM it may change these again.',
});

export function parseAssignments(words: string[]): KsmSettings {
  if (words.length === 0) throw new UsageError('nothing to set: give KEY=VALUE pairs, e.g. ksm-agent set run=1 pages_to_scan=1000; see ksm-agent set --help');
  const out: Record<string, unknown> = {};
  for (const w of words) {
    const m = /^([a-z_]+)=(.*)$/.exec(w);
    if (m === null) throw new UsageError(`"${w}" is not KEY=VALUE (e.g. pages_to_scan=1000); see ksm-agent set --help`);
    out[m[1] as string] = parseSettingInput(m[1] as string, m[2] as string);
  }
  return out as KsmSettings;
}

export const set: Command = {
  name: 'set',
  summary: 'change KSM settings (saved first, for restore)',
  options: OPTIONS,
  help: HELP,
  async run(argv: string[], io: Io): Promise<number> {
    const p = parse('set', argv, OPTIONS, true);
    const changes = parseAssignments(p.positionals);
    const holder = await findRunningAgent();
    if (holder !== undefined) io.err(`ksm-agent set: note: ksm-agent run (pid ${holder}) manages KSM and may change these settings again`);
    if (changes.run === 2 && !flag(p, 'force')) {
      const h = await unmergeHeadroom(UNMERGE_RESERVE_PERCENT);
      if (!h.ok) {
        throw new UsageError(
          `refusing run=2: unmerging needs ${formatBytes(h.neededBytes)} but MemAvailable is ${formatBytes(h.availableBytes)} and ${formatBytes(h.reserveBytes)} must stay free; free memory first, or pass --force`,
        );
      }
    }
    const savedPath = str(p, 'saved') ?? SAVED_PATH;
    if (!flag(p, 'no-save') && (await readSaved(savedPath)) === undefined) await writeSaved(savedPath, await snapshotSettings());
    await setKsm(changes);
    const now = await readKsmSettings();
    if (flag(p, 'json')) io.out(JSON.stringify(now, null, 2));
    else io.out(Object.keys(changes).map((k) => `${k}=${String(now[k as keyof KsmSettings])}`).join(' '));
    return 0;
  },
};
