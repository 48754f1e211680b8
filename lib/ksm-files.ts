// What each file of /sys/kernel/mm/ksm holds: its type, the values the kernel accepts, and the
// mainline release that added it (for "unsupported feature" errors). Sources: mm/ksm.c store
// functions in linux-source-6.12 and shared/research/ksm-algorithm.md §6, §10.
import { InvalidSettingError } from './errors.js';

export type AdvisorMode = 'none' | 'scan-time';

/** The writable KSM knobs. Every field is absent when the running kernel lacks the file. */
export interface KsmSettings {
  /** 0 = stop (keep merged pages), 1 = run, 2 = stop and unmerge every page. */
  run?: 0 | 1 | 2;
  pages_to_scan?: number;
  sleep_millisecs?: number;
  /** NUMA kernels only. Changing it needs no merged pages (EBUSY otherwise). */
  merge_across_nodes?: boolean;
  /** At least 2. Changing it needs no merged pages (EBUSY otherwise). */
  max_page_sharing?: number;
  stable_node_chains_prune_millisecs?: number;
  use_zero_pages?: boolean;
  smart_scan?: boolean;
  /** Read from its bracketed form ("[none] scan-time"). While "scan-time", pages_to_scan is the advisor's. */
  advisor_mode?: AdvisorMode;
  /** Percent of one CPU the advisor lets ksmd use. */
  advisor_max_cpu?: number;
  advisor_min_pages_to_scan?: number;
  advisor_max_pages_to_scan?: number;
  /** Seconds the advisor aims for one full scan to take; at least 1. */
  advisor_target_scan_time?: number;
}

/** The read-only KSM counters. Every field is absent when the running kernel lacks the file. */
export interface KsmCounters {
  pages_shared?: number;
  pages_sharing?: number;
  pages_unshared?: number;
  pages_volatile?: number;
  full_scans?: number;
  stable_node_chains?: number;
  stable_node_dups?: number;
  /** Bytes; negative when tracking costs more than merging saves. */
  general_profit?: number;
  ksm_zero_pages?: number;
  pages_scanned?: number;
  pages_skipped?: number;
}

export type SettingName = keyof KsmSettings;
export type CounterName = keyof KsmCounters;
export type SettingValue = NonNullable<KsmSettings[SettingName]>;

interface Since {
  /** First mainline release with the file. */
  since: string;
  /** A config option the file also needs, when it has one. */
  requires?: string;
}

type SettingSpec = Since &
  (
    | {
        kind: 'integer';
        min: number;
        max: number;
        /** A wider range the kernel itself accepts, for restoring values someone else set. */
        kernelMin?: number;
        kernelMax?: number;
      }
    | { kind: 'boolean' }
    | { kind: 'advisor' }
  );

const UINT_MAX = 4294967295;
const INT_MAX = 2147483647;
// ulong knobs accept up to 2^64-1; JavaScript numbers are exact up to 2^53-1, which is far beyond
// any meaningful page count or time.
const ULONG_SAFE = Number.MAX_SAFE_INTEGER;

// Versions for use_zero_pages (4.11), max_page_sharing and the chain files (4.13) and
// ksm_zero_pages (6.5) come from commit history as recalled in the research notes, not from a tree
// of that release; the rest are documented there.
export const SETTING_SPECS: Record<SettingName, SettingSpec> = {
  run: { kind: 'integer', min: 0, max: 2, since: '2.6.32' },
  pages_to_scan: { kind: 'integer', min: 0, max: UINT_MAX, since: '2.6.32' },
  sleep_millisecs: { kind: 'integer', min: 0, max: UINT_MAX, since: '2.6.32' },
  merge_across_nodes: { kind: 'boolean', since: '3.9', requires: 'CONFIG_NUMA' },
  max_page_sharing: { kind: 'integer', min: 2, max: INT_MAX, since: '4.13' },
  stable_node_chains_prune_millisecs: { kind: 'integer', min: 0, max: UINT_MAX, since: '4.13' },
  use_zero_pages: { kind: 'boolean', since: '4.11' },
  smart_scan: { kind: 'boolean', since: '6.7' },
  advisor_mode: { kind: 'advisor', since: '6.8' },
  // ksmd is one thread, so a share above 100 % of a CPU means nothing and 0 stops scanning; the
  // kernel stores any unsigned int, so restoring what someone else set accepts that range.
  advisor_max_cpu: { kind: 'integer', min: 1, max: 100, kernelMin: 0, kernelMax: UINT_MAX, since: '6.8' },
  advisor_min_pages_to_scan: { kind: 'integer', min: 0, max: ULONG_SAFE, since: '6.8' },
  advisor_max_pages_to_scan: { kind: 'integer', min: 0, max: ULONG_SAFE, since: '6.8' },
  advisor_target_scan_time: { kind: 'integer', min: 1, max: ULONG_SAFE, since: '6.8' },
};

export const COUNTER_SPECS: Record<CounterName, Since> = {
  pages_shared: { since: '2.6.32' },
  pages_sharing: { since: '2.6.32' },
  pages_unshared: { since: '2.6.32' },
  pages_volatile: { since: '2.6.32' },
  full_scans: { since: '2.6.32' },
  stable_node_chains: { since: '4.13' },
  stable_node_dups: { since: '4.13' },
  general_profit: { since: '6.4' },
  ksm_zero_pages: { since: '6.5' },
  pages_scanned: { since: '6.7' },
  pages_skipped: { since: '6.7' },
};

export const SETTING_NAMES = Object.keys(SETTING_SPECS) as SettingName[];
export const COUNTER_NAMES = Object.keys(COUNTER_SPECS) as CounterName[];

export function isSettingName(name: string): name is SettingName {
  return Object.prototype.hasOwnProperty.call(SETTING_SPECS, name);
}

export function isCounterName(name: string): name is CounterName {
  return Object.prototype.hasOwnProperty.call(COUNTER_SPECS, name);
}

/** The selected word of a bracketed choice ("[none] scan-time" → "none"), or the text itself. */
export function selectedChoice(text: string): string {
  const m = /\[([^\]]*)\]/.exec(text);
  return (m === null ? text : (m[1] as string)).trim();
}

/**
 * Parses what the kernel printed for a known setting. Throws a SyntaxError naming the file when
 * the text does not have the expected form (a kernel that changed a format).
 */
export function parseSettingText(name: SettingName, raw: string): SettingValue {
  const spec = SETTING_SPECS[name];
  const text = raw.trim();
  if (spec.kind === 'advisor') {
    const mode = selectedChoice(text);
    if (mode === 'none' || mode === 'scan-time') return mode;
    throw new SyntaxError(`unexpected content in KSM file ${name}: ${JSON.stringify(text)} (expected "[none] scan-time" or "none [scan-time]")`);
  }
  if (!/^\d+$/.test(text)) {
    throw new SyntaxError(`unexpected content in KSM file ${name}: ${JSON.stringify(text)} (expected a non-negative integer)`);
  }
  const n = Number(text);
  return spec.kind === 'boolean' ? n !== 0 : (n as SettingValue);
}

/** Parses a counter's text; counters are integers, some of them signed (general_profit). */
export function parseCounterText(name: CounterName, raw: string): number {
  const text = raw.trim();
  if (!/^-?\d+$/.test(text)) {
    throw new SyntaxError(`unexpected content in KSM file ${name}: ${JSON.stringify(text)} (expected an integer)`);
  }
  return Number(text);
}

/**
 * Checks a value for a setting and returns the text to write. `kernelRange` widens integer ranges
 * to what the kernel itself accepts (used when restoring values read back from the kernel).
 */
export function formatSetting(name: string, value: unknown, kernelRange = false): string {
  if (!isSettingName(name)) {
    const what = isCounterName(name) ? 'is a read-only counter' : 'is not a KSM setting';
    throw new InvalidSettingError({ setting: name, value, allowed: `${name} ${what}; settings are ${SETTING_NAMES.join(', ')}` });
  }
  const spec = SETTING_SPECS[name];
  switch (spec.kind) {
    case 'boolean':
      if (typeof value !== 'boolean') {
        throw new InvalidSettingError({ setting: name, value, allowed: 'must be true or false' });
      }
      return value ? '1' : '0';
    case 'advisor':
      if (value !== 'none' && value !== 'scan-time') {
        throw new InvalidSettingError({ setting: name, value, allowed: 'must be "none" or "scan-time"' });
      }
      return value;
    case 'integer': {
      const min = kernelRange ? (spec.kernelMin ?? spec.min) : spec.min;
      const max = kernelRange ? (spec.kernelMax ?? spec.max) : spec.max;
      if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
        throw new InvalidSettingError({ setting: name, value, allowed: `must be an integer from ${min} to ${max}` });
      }
      return String(value);
    }
  }
}

/**
 * Parses a value typed by a person (CLI, config file) for a setting: integers in decimal, booleans
 * as 1/0, y/n, yes/no, on/off or true/false (kstrtobool's words plus true/false).
 */
export function parseSettingInput(name: string, text: string): SettingValue {
  if (!isSettingName(name)) {
    formatSetting(name, text); // throws the "not a setting" error
  }
  const spec = SETTING_SPECS[name as SettingName];
  const t = text.trim().toLowerCase();
  let value: unknown = text;
  if (spec.kind === 'boolean') {
    if (['1', 'y', 'yes', 'on', 'true'].includes(t)) value = true;
    else if (['0', 'n', 'no', 'off', 'false'].includes(t)) value = false;
  } else if (spec.kind === 'advisor') {
    value = t;
  } else if (/^\d+$/.test(t)) {
    value = Number(t);
  }
  formatSetting(name, value);
  return value as SettingValue;
}
