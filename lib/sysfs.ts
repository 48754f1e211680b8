// Reads and writes /sys/kernel/mm/ksm. KSM is host-wide, so writes are validated before the kernel
// sees them, done in an order the kernel accepts, and rolled back when one fails; settings can be
// snapshotted and restored (the agent and the tests never leave them changed).
import { readFileSync, statSync } from 'node:fs';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import {
  InvalidSettingError,
  KsmUnavailableError,
  NotFoundError,
  RestoreIncompleteError,
  SamepageError,
  SettingBusyError,
  UnsupportedFeatureError,
  errnoOf,
  fromSystemError,
} from './errors.js';
import type { RestoreFailure } from './errors.js';
import { kernelRelease } from './kernel.js';
import {
  COUNTER_SPECS,
  SETTING_SPECS,
  formatSetting,
  isCounterName,
  isSettingName,
  parseCounterText,
  parseSettingText,
  selectedChoice,
} from './ksm-files.js';
import type { KsmCounters, KsmSettings, SettingName } from './ksm-files.js';

export type { AdvisorMode, CounterName, KsmCounters, KsmSettings, SettingName, SettingValue } from './ksm-files.js';

export const DEFAULT_KSM_ROOT = '/sys/kernel/mm/ksm';

export interface KsmOptions {
  /** The KSM sysfs directory; a test may point it at a fake tree. */
  root?: string;
  /** The kernel release named in errors (default: the running kernel's). */
  kernel?: string;
}

export interface KsmState {
  settings: KsmSettings;
  counters: KsmCounters;
  /** Files this library does not know (a newer kernel's), raw and trimmed. */
  extra: Record<string, string>;
  /** Names of every file that is writable (by its mode), known or not. */
  writable: string[];
}

interface FileText {
  raw: string;
  writable: boolean;
}

function resolve(opts: KsmOptions): { root: string; kernel: string } {
  return { root: opts.root ?? DEFAULT_KSM_ROOT, kernel: opts.kernel ?? kernelRelease() };
}

/** Reads every file of the KSM directory. Unknown files that cannot be read are left out. */
async function readAll(root: string, kernel: string): Promise<Map<string, FileText>> {
  let names: string[];
  try {
    names = await readdir(root);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT' || errnoOf(err) === 'ENOTDIR') {
      throw new KsmUnavailableError({ path: root, kernel, errno: errnoOf(err) as string, cause: err });
    }
    throw fromSystemError(err, { op: 'list', path: root });
  }
  const entries = await Promise.all(
    names.map(async (name): Promise<[string, FileText] | undefined> => {
      const path = `${root}/${name}`;
      try {
        // Read synchronously: each file is a few bytes the kernel prints at once, and the agent
        // reads all 24 every tick; through the thread pool that was ~150 thread hand-offs a read.
        const st = statSync(path);
        if (!st.isFile()) return undefined;
        // Writability comes from the mode, not from access(2): root may write anything in a fake
        // tree, but the kernel marks its read-only counters 0444.
        return [name, { raw: readFileSync(path, 'utf8'), writable: (st.mode & 0o200) !== 0 }];
      } catch (err) {
        if (isSettingName(name) || isCounterName(name)) throw fromSystemError(err, { op: 'read', path });
        return undefined; // an unknown file without a read method (EIO): nothing to report
      }
    }),
  );
  return new Map(entries.filter((e): e is [string, FileText] => e !== undefined));
}

function toState(files: Map<string, FileText>): KsmState {
  const settings: Record<string, unknown> = {};
  const counters: Record<string, number> = {};
  const extra: Record<string, string> = {};
  const writable: string[] = [];
  for (const [name, file] of [...files].sort(([a], [b]) => a.localeCompare(b))) {
    if (file.writable) writable.push(name);
    if (isSettingName(name)) settings[name] = parseSettingText(name, file.raw);
    else if (isCounterName(name)) counters[name] = parseCounterText(name, file.raw);
    else extra[name] = file.raw.trim();
  }
  return { settings: settings as KsmSettings, counters: counters as KsmCounters, extra, writable };
}

/** Every file of the KSM directory, typed. Throws KsmUnavailableError when there is none. */
export async function readKsm(opts: KsmOptions = {}): Promise<KsmState> {
  const { root, kernel } = resolve(opts);
  return toState(await readAll(root, kernel));
}

export async function readKsmSettings(opts: KsmOptions = {}): Promise<KsmSettings> {
  return (await readKsm(opts)).settings;
}

export async function readKsmCounters(opts: KsmOptions = {}): Promise<KsmCounters> {
  return (await readKsm(opts)).counters;
}

/**
 * The order in which writes are safe. run=2 (unmerge) goes first so that max_page_sharing and
 * merge_across_nodes, which need no merged pages, can follow. The advisor's limits go before
 * advisor_mode because switching to scan-time copies advisor_min_pages_to_scan into
 * pages_to_scan, and pages_to_scan goes after advisor_mode because any switch resets it. Other
 * run values go last, so ksmd starts with the new configuration. Unknown files sit before run.
 */
const WRITE_ORDER: readonly string[] = [
  'max_page_sharing',
  'merge_across_nodes',
  'advisor_max_cpu',
  'advisor_min_pages_to_scan',
  'advisor_max_pages_to_scan',
  'advisor_target_scan_time',
  'advisor_mode',
  'pages_to_scan',
  'sleep_millisecs',
  'stable_node_chains_prune_millisecs',
  'use_zero_pages',
  'smart_scan',
];
const NEEDS_NO_MERGED_PAGES = new Set(['max_page_sharing', 'merge_across_nodes']);

function orderWrites(names: Iterable<string>, runText: string | undefined): string[] {
  const set = new Set(names);
  const known = WRITE_ORDER.filter((n) => set.has(n));
  const unknown = [...set].filter((n) => n !== 'run' && !WRITE_ORDER.includes(n)).sort();
  const order = [...known, ...unknown];
  if (set.has('run')) {
    if (runText === '2') order.unshift('run');
    else order.push('run');
  }
  return order;
}

/** The canonical text of a file's value, for comparing and for writing back. */
function normalize(name: string, raw: string): string {
  if (name === 'advisor_mode') return selectedChoice(raw);
  return raw.trim();
}

async function writeSetting(root: string, name: string, text: string): Promise<void> {
  const path = `${root}/${name}`;
  try {
    await writeFile(path, text);
  } catch (err) {
    throw await explainWriteError(err, root, name, text);
  }
}

async function explainWriteError(err: unknown, root: string, name: string, text: string): Promise<Error> {
  const path = `${root}/${name}`;
  if (errnoOf(err) === 'EBUSY' && NEEDS_NO_MERGED_PAGES.has(name)) {
    const shared = await readCounter(root, 'pages_shared');
    return new SettingBusyError({ setting: name, path, errno: 'EBUSY', cause: err, ...(shared === undefined ? {} : { pagesShared: shared }) });
  }
  if (errnoOf(err) === 'EINVAL' && name === 'pages_to_scan') {
    const mode = await readFile(`${root}/advisor_mode`, 'utf8').then(selectedChoice, () => undefined);
    if (mode === 'scan-time') return advisorOwnsPagesToScan(text, err);
  }
  return fromSystemError(err, { op: `write ${text} to`, path, setting: name, value: text });
}

async function readCounter(root: string, name: string): Promise<number | undefined> {
  try {
    return Number((await readFile(`${root}/${name}`, 'utf8')).trim());
  } catch {
    return undefined;
  }
}

function advisorOwnsPagesToScan(value: unknown, cause?: unknown): InvalidSettingError {
  return new InvalidSettingError({
    setting: 'pages_to_scan',
    value,
    allowed: 'cannot be set while advisor_mode is scan-time (the advisor sets it); set advisor_mode to none first',
    ...(cause === undefined ? {} : { cause }),
  });
}

/** The error for a file this kernel lacks: the release that added it, when the file is known. */
function unsupported(name: string, root: string, kernel: string): SamepageError {
  const spec = isSettingName(name) ? SETTING_SPECS[name] : isCounterName(name) ? COUNTER_SPECS[name] : undefined;
  const path = `${root}/${name}`;
  if (spec === undefined) {
    return new NotFoundError(`KSM file ${name} does not exist on kernel ${kernel} (${path}); it came from another kernel: leave it out`, { path, setting: name });
  }
  return new UnsupportedFeatureError({
    feature: `KSM setting ${name}`,
    since: spec.since,
    kernel,
    path,
    setting: name,
    ...(spec.requires === undefined ? {} : { requires: spec.requires }),
  });
}

/**
 * Changes KSM settings. Every value is checked (type, range, the kernel having the file, the
 * advisor owning pages_to_scan) before anything is written; unchanged values are not rewritten;
 * if a write fails the ones already done are rolled back and the typed error is thrown.
 * max_page_sharing and merge_across_nodes fail with SettingBusyError while merged pages exist,
 * unless the same call sets run to 2, which is then written first.
 */
export async function setKsm(changes: KsmSettings, opts: KsmOptions = {}): Promise<void> {
  const { root, kernel } = resolve(opts);
  if (typeof changes !== 'object' || changes === null) {
    throw new InvalidSettingError({ setting: '(settings)', value: changes, allowed: 'pass an object such as { run: 1, pages_to_scan: 1000 }' });
  }
  const wanted = new Map<string, string>();
  for (const [name, value] of Object.entries(changes)) {
    if (value === undefined) continue;
    wanted.set(name, formatSetting(name, value));
  }
  const files = await readAll(root, kernel);
  for (const name of wanted.keys()) {
    if (!files.has(name)) throw unsupported(name, root, kernel);
  }
  const advisorAfter = wanted.get('advisor_mode') ?? (files.has('advisor_mode') ? normalize('advisor_mode', files.get('advisor_mode')?.raw ?? '') : 'none');
  if (wanted.has('pages_to_scan') && advisorAfter === 'scan-time') {
    throw advisorOwnsPagesToScan(changes.pages_to_scan);
  }

  const done: [string, string][] = [];
  for (const name of orderWrites(wanted.keys(), wanted.get('run'))) {
    const text = wanted.get(name) as string;
    const before = normalize(name, files.get(name)?.raw ?? '');
    // Switching advisor_mode resets pages_to_scan in the kernel, so after a switch it is written
    // even when it equals what was read before.
    const switched = name === 'pages_to_scan' && done.some(([n]) => n === 'advisor_mode');
    if (before === text && !switched) continue;
    try {
      await writeSetting(root, name, text);
      done.push([name, before]);
    } catch (err) {
      const failures = await rollBack(root, done);
      if (failures.length > 0) throw new RestoreIncompleteError(failures, { cause: err });
      throw err;
    }
  }
}

/** Undoes writes newest first; returns what could not be undone. */
async function rollBack(root: string, done: readonly [string, string][]): Promise<RestoreFailure[]> {
  const failures: RestoreFailure[] = [];
  for (const [name, text] of [...done].reverse()) {
    try {
      await writeSetting(root, name, text);
    } catch (err) {
      failures.push({ file: name, error: err instanceof Error ? err : new Error(String(err)) });
    }
  }
  return failures;
}

/** Every writable KSM setting's value, as plain JSON (the agent keeps it in its state file). */
export interface KsmSnapshot {
  /**
   * Where it was taken, for people reading the file. Never used as a place to write: a snapshot
   * is data, often read from a file, and restoring writes under DEFAULT_KSM_ROOT (or the root a
   * test passes in KsmOptions) whatever this says.
   */
  root: string;
  kernel: string;
  takenAt: string;
  /** Setting name (SETTING_SPECS) → canonical text (advisor_mode as its selected word). */
  files: Record<string, string>;
}

/**
 * The known settings (SETTING_SPECS) that are writable here. A newer kernel's unknown files are
 * left out: restoring writes known settings only, so a snapshot never holds anything else.
 */
export async function snapshotSettings(opts: KsmOptions = {}): Promise<KsmSnapshot> {
  const { root, kernel } = resolve(opts);
  const files: Record<string, string> = {};
  for (const [name, file] of await readAll(root, kernel)) {
    if (file.writable && isSettingName(name)) files[name] = normalize(name, file.raw);
  }
  return { root, kernel, takenAt: new Date().toISOString(), files };
}

/**
 * Puts every file of a snapshot back, in the safe order. max_page_sharing and merge_across_nodes
 * refuse changes while merged pages exist: then run=2 unmerges first (the saved run value is
 * written last, so ksmd restarts if it was running). pages_to_scan is left to the advisor when
 * the saved advisor_mode is scan-time, because the kernel refuses it then. The snapshot is checked
 * whole before anything is written (parseSnapshot: known names, valid values). Failures of single
 * writes do not stop the rest; they are reported together in a RestoreIncompleteError.
 */
export async function restoreSettings(snapshot: KsmSnapshot, opts: KsmOptions = {}): Promise<void> {
  const failures = await applySnapshot(snapshot, opts);
  if (failures.length > 0) throw new RestoreIncompleteError(failures, { path: resolve(opts).root });
}

/**
 * restoreSettings without the throw at the end: the settings it could not write, each with its
 * error. A snapshot that is not valid throws before anything is written.
 */
export async function applySnapshot(snapshot: KsmSnapshot, opts: KsmOptions = {}): Promise<RestoreFailure[]> {
  const { root, kernel } = resolve(opts);
  const wanted = new Map(Object.entries(parseSnapshot(snapshot, 'the snapshot').files));
  const present = await readAll(root, kernel);
  const failures: RestoreFailure[] = [];
  let unmerged = false;

  for (const name of orderWrites(wanted.keys(), wanted.get('run'))) {
    const text = wanted.get(name) as string;
    const file = present.get(name);
    if (file === undefined) {
      failures.push({ file: name, error: unsupported(name, root, kernel) });
      continue;
    }
    if (!file.writable) {
      failures.push({ file: name, error: new InvalidSettingError({ setting: name, value: text, allowed: `${name} is read-only on this kernel; remove it from the snapshot` }) });
      continue;
    }
    if (name === 'pages_to_scan' && wanted.get('advisor_mode') === 'scan-time') continue;
    try {
      // Read just before writing: an earlier write (advisor_mode, run=2) may have changed it.
      const current = normalize(name, await readFile(`${root}/${name}`, 'utf8'));
      if (current === text) continue;
      try {
        await writeFile(`${root}/${name}`, text);
      } catch (err) {
        if (errnoOf(err) !== 'EBUSY' || !NEEDS_NO_MERGED_PAGES.has(name) || unmerged) throw err;
        await writeSetting(root, 'run', '2');
        unmerged = true;
        await writeFile(`${root}/${name}`, text);
      }
    } catch (err) {
      const error = errnoOf(err) === undefined ? (err as Error) : await explainWriteError(err, root, name, text);
      failures.push({ file: name, error });
    }
  }
  return failures;
}

/** The canonical text of a snapshot value, or why it is not one. */
function snapshotValue(name: SettingName, text: unknown): { text: string } | { problem: string } {
  if (typeof text !== 'string') return { problem: `${name} must map to a string (the text KSM prints), got ${JSON.stringify(text) ?? String(text)}` };
  const spec = SETTING_SPECS[name];
  const trimmed = text.trim();
  // Booleans are exactly 0 or 1 as KSM prints them (parseSettingText would read "7" as true).
  if (spec.kind === 'boolean' && trimmed !== '0' && trimmed !== '1') return { problem: `${name}=${JSON.stringify(text)} is not 0 or 1` };
  try {
    // Parse and re-format: a corrupt file must not write garbage into the kernel, but a value
    // someone else set (advisor_max_cpu 150) is restored as long as the kernel takes it.
    return { text: formatSetting(name, parseSettingText(name, trimmed), true) };
  } catch (err) {
    return { problem: `${name}=${JSON.stringify(text)}: ${err instanceof InvalidSettingError ? err.allowed : (err as Error).message}` };
  }
}

/**
 * Checks a snapshot that came from anywhere (the state file, saved settings, --from FILE) and
 * returns it with canonical values. Only known settings (SETTING_SPECS) with valid values pass;
 * every problem is named at once, and nothing is written from a snapshot that has any. `source`
 * names where it came from in the error.
 */
export function parseSnapshot(data: unknown, source: string): KsmSnapshot {
  const refuse = (problems: string): SamepageError =>
    new SamepageError('INVALID_SETTING', `refusing ${source}: ${problems}; nothing was written: fix or remove those entries, or restore with --defaults`);
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw refuse('a snapshot is a JSON object with a "files" map');
  const snap = data as Partial<Record<keyof KsmSnapshot, unknown>>;
  if (typeof snap.files !== 'object' || snap.files === null || Array.isArray(snap.files)) throw refuse('it has no "files" map of setting name to value');
  const entries = Object.entries(snap.files as Record<string, unknown>);
  const unknown = entries.map(([n]) => n).filter((n) => !isSettingName(n));
  const problems: string[] = [];
  if (unknown.length > 0) {
    problems.push(`${unknown.map((n) => JSON.stringify(n)).join(', ')} ${unknown.length === 1 ? 'is not a KSM setting' : 'are not KSM settings'} (settings are ${Object.keys(SETTING_SPECS).join(', ')})`);
  }
  const files: Record<string, string> = {};
  for (const [name, value] of entries) {
    if (!isSettingName(name)) continue;
    const v = snapshotValue(name, value);
    if ('problem' in v) problems.push(v.problem);
    else files[name] = v.text;
  }
  if (problems.length > 0) throw refuse(problems.join('; '));
  return {
    root: typeof snap.root === 'string' ? snap.root : DEFAULT_KSM_ROOT,
    kernel: typeof snap.kernel === 'string' ? snap.kernel : '',
    takenAt: typeof snap.takenAt === 'string' ? snap.takenAt : '',
    files,
  };
}
