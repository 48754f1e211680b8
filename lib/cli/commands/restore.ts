// ksm-agent restore: puts KSM settings back. In order of preference: a snapshot file given with
// --from, the kernel's boot defaults with --defaults, what a daemon that did not exit cleanly
// left in its state file, or what `ksm-agent set` saved before its first change.
import { DEFAULT_STATE_FILE, UNMERGE_RESERVE_PERCENT } from '../../paths.js';
import { findRunningAgent, isRunningAgent } from '../../running-agent.js';
import { readStateFile, settleStateFile } from '../../agent/state-file.js';
import { notRestored, restoreAsFarAsSafe } from '../../unmerge.js';
import type { RestoreOutcome } from '../../unmerge.js';
import { AlreadyRunningError, NotFoundError } from '../../errors.js';
import { readOwnFile } from '../../safe-files.js';
import { kernelRelease } from '../../kernel.js';
import { DEFAULT_KSM_ROOT, parseSnapshot, readKsm } from '../../sysfs.js';
import type { KsmSnapshot } from '../../sysfs.js';
import { flag, noPositionals, parse, str } from '../args.js';
import type { OptionSpec } from '../args.js';
import { commandHelp } from '../help.js';
import type { Command, Io } from '../command.js';
import { UsageError } from '../exit-codes.js';
import { SAVED_PATH, readSaved, settleSaved } from '../saved.js';

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
A snapshot is data: only the known KSM settings are written, always under /sys/kernel/mm/ksm,
each value checked before anything is written. When every setting is back, the state or saved
file used is deleted; when some are left (see below), it keeps exactly those. A --from file is
never changed. Refused while ksm-agent run is running (whatever lock file it uses): it restores
its own settings when it stops.

Restoring max_page_sharing or merge_across_nodes while pages are merged needs run=2 first; that is
skipped (and reported) unless MemAvailable can absorb the unmerge. --force restores regardless.`,
  notes: 'Needs root.',
});

/**
 * A --from file: a snapshot, or a state file holding one under "snapshot". Data only: its "root"
 * is never where anything is written, and parseSnapshot refuses unknown names and bad values.
 */
async function readSnapshotFile(file: string): Promise<KsmSnapshot> {
  const text = await readOwnFile({ path: file, what: 'a snapshot file' });
  if (text === undefined) throw new NotFoundError(`snapshot file ${file} does not exist`, { path: file });
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${file} is not JSON (${(err as Error).message}): pass a snapshot file`);
  }
  const inner = typeof data === 'object' && data !== null && 'snapshot' in data ? (data as { snapshot: unknown }).snapshot : data;
  return parseSnapshot(inner, `snapshot file ${file}`);
}

async function defaultsSnapshot(): Promise<KsmSnapshot> {
  const { writable } = await readKsm();
  const files: Record<string, string> = {};
  for (const name of writable) {
    const v = KERNEL_DEFAULTS[name];
    if (v !== undefined) files[name] = v;
  }
  return { root: DEFAULT_KSM_ROOT, kernel: kernelRelease(), takenAt: new Date().toISOString(), files };
}

/** Where the settings come from, and what to do with that record once they are (partly) back. */
interface Source {
  label: string;
  snapshot: KsmSnapshot;
  /**
   * Deletes the record when nothing is left, else keeps only what was not restored; returns a
   * sentence for the user, or undefined when there is nothing to say.
   */
  settle(left: string[]): Promise<string | undefined>;
  /** The file still holding what is left, if any. */
  keptIn(left: string[]): string | undefined;
}

async function chooseSource(from: string | undefined, defaults: boolean, statePath: string, savedPath: string): Promise<Source> {
  if (from !== undefined) {
    return {
      label: from,
      snapshot: await readSnapshotFile(from),
      settle: async (left) => (left.length > 0 ? `${from} is left as it was` : undefined),
      keptIn: () => undefined,
    };
  }
  if (defaults) return { label: 'kernel defaults', snapshot: await defaultsSnapshot(), settle: async () => undefined, keptIn: () => undefined };
  const state = await readStateFile(statePath);
  if (state !== undefined) {
    // The pid in a state file is only a hint: alive, started when recorded and running
    // `ksm-agent run`, it is the agent that owns these settings (whatever lock file it took).
    if (await isRunningAgent(state.pid, state.startTicks)) {
      throw new AlreadyRunningError(`ksm-agent run (pid ${state.pid}) is running and owns the state file ${statePath}: stop it instead (it restores the settings it found when it stops)`, { pid: state.pid, path: statePath });
    }
    return {
      label: `${statePath} (left by ksm-agent pid ${state.pid})`,
      snapshot: state.snapshot,
      settle: async (left) => {
        await settleStateFile(statePath, state, left);
        return left.length > 0 ? `kept ${statePath} with only ${left.join(', ')}` : undefined;
      },
      keptIn: (left) => (left.length > 0 ? statePath : undefined),
    };
  }
  const saved = await readSaved(savedPath);
  if (saved !== undefined) {
    return {
      label: savedPath,
      snapshot: saved,
      settle: async (left) => {
        await settleSaved(savedPath, saved, left);
        return left.length > 0 ? `kept ${savedPath} with only ${left.join(', ')}` : undefined;
      },
      keptIn: (left) => (left.length > 0 ? savedPath : undefined),
    };
  }
  throw new NotFoundError(`nothing to restore: no state file (${statePath}) and no settings saved by ksm-agent set (${savedPath}); use --defaults for the kernel's boot values or --from FILE`);
}

function report(io: Io, json: boolean, source: Source, outcome: RestoreOutcome, left: string[], settled: string | undefined): void {
  const restored = Object.fromEntries(Object.entries(source.snapshot.files).filter(([name]) => !left.includes(name)));
  if (json) {
    io.out(
      JSON.stringify(
        {
          source: source.label,
          restored,
          left_out: outcome.leftOut,
          failed: outcome.failures.map((f) => ({ setting: f.file, error: f.error.message })),
          kept_in: source.keptIn(left) ?? null,
        },
        null,
        2,
      ),
    );
    return;
  }
  io.out(`restored ${Object.keys(restored).length} KSM settings from ${source.label}`);
  if (outcome.leftOut.length > 0) io.err(`ksm-agent restore: left ${outcome.leftOut.join(', ')} unchanged: that needs every page unmerged (run=2) and MemAvailable cannot absorb it; free memory, or use --force`);
  for (const f of outcome.failures) io.err(`ksm-agent restore: could not restore ${f.file}: ${f.error.message}`);
  if (settled !== undefined) io.err(`ksm-agent restore: ${settled}; run ksm-agent restore again once that is fixed`);
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
    // Whatever lock file the daemon took: its record under /run names it (running-agent.ts).
    const holder = await findRunningAgent();
    if (holder !== undefined) {
      throw new AlreadyRunningError(`ksm-agent run (pid ${holder}) manages KSM: stop it instead (it restores the settings it found when it stops)`, { pid: holder });
    }
    const source = await chooseSource(str(p, 'from'), flag(p, 'defaults'), str(p, 'state-file') ?? DEFAULT_STATE_FILE, str(p, 'saved') ?? SAVED_PATH);
    // Written under DEFAULT_KSM_ROOT only (no root option is passed); a bad value throws before
    // any write, and then the record is kept whole.
    const outcome = await restoreAsFarAsSafe(source.snapshot, UNMERGE_RESERVE_PERCENT, { force: flag(p, 'force') });
    const left = notRestored(outcome);
    const settled = await source.settle(left);
    report(io, flag(p, 'json'), source, outcome, left, settled);
    return left.length > 0 ? 1 : 0;
  },
};
