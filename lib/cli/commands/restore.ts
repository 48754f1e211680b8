// ksm-agent restore: puts KSM settings back. In order of preference: a snapshot file given with
// --from, the kernel's boot defaults with --defaults, what a daemon that did not exit cleanly
// left in its state file, or what `ksm-agent set` saved before its first change.
import { DEFAULT_LOCK_FILE, DEFAULT_STATE_FILE, UNMERGE_RESERVE_PERCENT } from '../../paths.js';
import { lockHolder } from '../../instance-lock.js';
import { readStateFile, removeStateFile } from '../../agent/state-file.js';
import { restoreWithHeadroom } from '../../unmerge.js';
import { AlreadyRunningError, NotFoundError } from '../../errors.js';
import { readTextIfExists } from '../../safe-files.js';
import { kernelRelease } from '../../kernel.js';
import { readKsm, restoreSettings } from '../../sysfs.js';
import type { KsmSnapshot } from '../../sysfs.js';
import { flag, noPositionals, parse, str } from '../args.js';
import type { OptionSpec } from '../args.js';
import { commandHelp } from '../help.js';
import type { Command, Io } from '../command.js';
import { UsageError } from '../exit-codes.js';
import { SAVED_PATH, readSaved, removeSaved } from '../saved.js';

/** The values Linux boots with (mm/ksm.c defaults, 6.8+ for the advisor files). */
export const KERNEL_DEFAULTS: Record<string, string> = {
  run: '0',
  pages_to_scan: '100',
  sleep_millisecs: '20',
  use_zero_pages: '0',
  max_page_sharing: '256',
  merge_across_nodes: '1',
  smart_scan: '1',
  stable_node_chains_prune_millisecs: '2000',
  advisor_mode: 'none',
  advisor_max_cpu: '70',
  advisor_min_pages_to_scan: '500',
  advisor_max_pages_to_scan: '30000',
  advisor_target_scan_time: '200',
};

const OPTIONS = [
  { name: 'from', type: 'string', value: 'FILE', description: 'a snapshot file, as the state file\'s "snapshot" or as ksm-agent set saves it' },
  {
    name: 'defaults',
    type: 'boolean',
    alternativeTo: 'from',
    description:
      "the kernel's boot values (run=0 pages_to_scan=100 sleep_millisecs=20 use_zero_pages=0 max_page_sharing=256 merge_across_nodes=1 smart_scan=1 advisor_mode=none ...), for the files this kernel has",
  },
  { name: 'state-file', type: 'string', value: 'PATH', description: "the daemon's state file", default: DEFAULT_STATE_FILE },
  { name: 'saved', type: 'string', value: 'PATH', description: 'the settings ksm-agent set saved', default: SAVED_PATH },
  { name: 'force', type: 'boolean', description: 'restore even when MemAvailable cannot absorb the unmerge it needs' },
  { name: 'json', type: 'boolean', description: 'what was restored, as JSON' },
] as const satisfies readonly OptionSpec[];

const HELP = commandHelp({
  command: 'restore',
  options: OPTIONS,
  about: `Puts KSM settings back, from the first of:
  the snapshot file given with --from
  the kernel's boot values, with --defaults
  the daemon's state file (--state-file), left when ksm-agent run did not exit cleanly (SIGKILL,
    OOM): the settings it found at its start
  the settings ksm-agent set saved before its first change (--saved)
The file used is deleted afterwards (not --from). Refused while ksm-agent run is running: it
restores its own settings when it stops.

Restoring max_page_sharing or merge_across_nodes while pages are merged needs run=2 first; that is
skipped (and reported) unless MemAvailable can absorb the unmerge. --force restores regardless.`,
  notes: 'Needs root.',
});

async function readSnapshotFile(file: string): Promise<KsmSnapshot> {
  const text = await readTextIfExists(file);
  if (text === undefined) throw new NotFoundError(`snapshot file ${file} does not exist`, { path: file });
  let data: { files?: unknown; snapshot?: { files?: unknown } };
  try {
    data = JSON.parse(text) as typeof data;
  } catch (err) {
    throw new UsageError(`${file} is not JSON (${(err as Error).message}): pass a snapshot file`);
  }
  const snap = (typeof data.snapshot === 'object' ? data.snapshot : data) as KsmSnapshot;
  if (typeof snap.files !== 'object' || snap.files === null) throw new UsageError(`${file} has no "files" map: pass a snapshot (as the agent's state file or ksm-agent set saves it)`);
  return snap;
}

async function defaultsSnapshot(): Promise<KsmSnapshot> {
  const { writable } = await readKsm();
  const files: Record<string, string> = {};
  for (const name of writable) {
    const v = KERNEL_DEFAULTS[name];
    if (v !== undefined) files[name] = v;
  }
  return { root: '/sys/kernel/mm/ksm', kernel: kernelRelease(), takenAt: new Date().toISOString(), files };
}

export const restore: Command = {
  name: 'restore',
  summary: 'put KSM settings back (crashed daemon, ksm-agent set, a file, or boot defaults)',
  options: OPTIONS,
  help: HELP,
  async run(argv: string[], io: Io): Promise<number> {
    const p = parse('restore', argv, OPTIONS);
    noPositionals('restore', p);
    if (str(p, 'from') !== undefined && flag(p, 'defaults')) throw new UsageError('--from and --defaults exclude each other; see ksm-agent restore --help');
    const holder = await lockHolder(DEFAULT_LOCK_FILE);
    if (holder !== undefined) {
      throw new AlreadyRunningError(`ksm-agent run (pid ${holder}) manages KSM: stop it instead (it restores the settings it found when it stops)`, { pid: holder });
    }
    const statePath = str(p, 'state-file') ?? DEFAULT_STATE_FILE;
    const savedPath = str(p, 'saved') ?? SAVED_PATH;
    let source: string;
    let snapshot: KsmSnapshot;
    let cleanup: () => Promise<void> = async () => undefined;
    const from = str(p, 'from');
    if (from !== undefined) {
      source = from;
      snapshot = await readSnapshotFile(from);
    } else if (flag(p, 'defaults')) {
      source = 'kernel defaults';
      snapshot = await defaultsSnapshot();
    } else {
      const state = await readStateFile(statePath);
      const saved = state === undefined ? await readSaved(savedPath) : undefined;
      if (state !== undefined) {
        source = `${statePath} (left by ksm-agent pid ${state.pid})`;
        snapshot = state.snapshot;
        cleanup = () => removeStateFile(statePath);
      } else if (saved !== undefined) {
        source = savedPath;
        snapshot = saved;
        cleanup = () => removeSaved(savedPath);
      } else {
        throw new NotFoundError(`nothing to restore: no state file (${statePath}) and no settings saved by ksm-agent set (${savedPath}); use --defaults for the kernel's boot values or --from FILE`);
      }
    }
    let leftOut: string[] = [];
    if (flag(p, 'force')) await restoreSettings(snapshot);
    else leftOut = await restoreWithHeadroom(snapshot, UNMERGE_RESERVE_PERCENT);
    await cleanup();
    if (flag(p, 'json')) io.out(JSON.stringify({ source, restored: snapshot.files, left_out: leftOut }, null, 2));
    else {
      io.out(`restored ${Object.keys(snapshot.files).length - leftOut.length} KSM settings from ${source}`);
      if (leftOut.length > 0) io.err(`ksm-agent restore: left ${leftOut.join(', ')} unchanged: that needs every page unmerged (run=2) and MemAvailable cannot absorb it; free memory, or use --force`);
    }
    return leftOut.length > 0 ? 1 : 0;
  },
};
