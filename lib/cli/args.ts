// Command-line parsing on node:util parseArgs, strict: an unknown option or a bad value is a
// UsageError naming the option and pointing at the command's --help.
//
// Each command declares its options once, as a table of OptionSpec; the parser's configuration
// (here) and the usage line and Options block of its --help (help.ts) are both made from that
// table, so the help cannot name an option the parser refuses, nor leave out one it accepts.
// The table's names also type the readers below: str(p, 'confg') does not compile.
import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';
import { UsageError } from './exit-codes.js';

interface OptionBase<N extends string> {
  /** the long name, without the dashes */
  readonly name: N;
  /** a one-letter alias (-v) */
  readonly short?: string;
  /** may be given more than once; every value is kept */
  readonly multiple?: boolean;
  /** what it does, in one line (wrapped for display) */
  readonly description: string;
  /** the value used when the option is absent, as shown in the help ("4", "every QEMU VM") */
  readonly default?: string;
  /** the agent config key this option overrides, shown as [key] */
  readonly configKey?: string;
  /** the heading of the help block that lists it; "Options" when absent */
  readonly group?: string;
  /** another option of the same table this one excludes: the usage line shows [--a X | --b] */
  readonly alternativeTo?: string;
}

export interface StringOption<N extends string = string> extends OptionBase<N> {
  readonly type: 'string';
  /** the value's name in the help: FILE, PATH, N, HOST:PORT, 0|1 */
  readonly value: string;
}

export interface BooleanOption<N extends string = string> extends OptionBase<N> {
  readonly type: 'boolean';
}

export type OptionSpec<N extends string = string> = StringOption<N> | BooleanOption<N>;

/** Every command accepts -h/--help (main.ts answers it before the command runs). */
export const HELP_OPTION: BooleanOption<'help'> = { name: 'help', short: 'h', type: 'boolean', description: 'this text' };

type Value = string | boolean | (string | boolean)[] | undefined;

export interface Parsed<N extends string = string> {
  values: Partial<Record<N | 'help', Value>>;
  positionals: string[];
}

/** The node:util parseArgs configuration for a table (plus --help). */
export function parseArgsOptions(options: readonly OptionSpec[]): NonNullable<ParseArgsConfig['options']> {
  const out: NonNullable<ParseArgsConfig['options']> = {};
  for (const o of [...options, HELP_OPTION]) {
    out[o.name] = { type: o.type, ...(o.multiple === true ? { multiple: true } : {}), ...(o.short === undefined ? {} : { short: o.short }) };
  }
  return out;
}

export function parse<const T extends readonly OptionSpec[]>(command: string, argv: string[], options: T, allowPositionals = false): Parsed<T[number]['name']> {
  try {
    const r = parseArgs({ args: argv, options: parseArgsOptions(options), allowPositionals, strict: true });
    return { values: r.values as Parsed<T[number]['name']>['values'], positionals: r.positionals };
  } catch (err) {
    const msg = (err as Error).message.replace(/\. To specify a positional argument.*$/, '');
    const unknown = /^Unknown option '(--?[^'=]+)'/.exec(msg)?.[1];
    const guess = unknown === undefined ? undefined : closestOption(unknown, [...options, HELP_OPTION]);
    throw new UsageError(`${msg}${guess === undefined ? '' : ` (did you mean --${guess}?)`}; see ksm-agent ${command} --help`);
  }
}

/** The option a mistyped flag most likely meant: a unique prefix, or at most 2 edits away. */
export function closestOption(typed: string, options: readonly OptionSpec[]): string | undefined {
  const word = typed.replace(/^-+/, '');
  const names = options.map((o) => o.name);
  const prefixed = names.filter((n) => n.startsWith(word));
  if (word.length >= 2 && prefixed.length === 1) return prefixed[0];
  let best: { name: string; distance: number } | undefined;
  for (const name of names) {
    const distance = editDistance(word, name);
    if (distance <= 2 && (best === undefined || distance < best.distance)) best = { name, distance };
  }
  return best?.name;
}

/** Levenshtein distance (insert, delete, substitute), for short flag names. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min((prev[j] as number) + 1, (cur[j - 1] as number) + 1, (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length] as number;
}

export function str<N extends string>(p: Parsed<N>, name: N): string | undefined {
  const v = p.values[name];
  return typeof v === 'string' ? v : undefined;
}

export function strs<N extends string>(p: Parsed<N>, name: N): string[] {
  const v = p.values[name];
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : typeof v === 'string' ? [v] : [];
}

export function flag<N extends string>(p: Parsed<N>, name: N): boolean {
  return p.values[name] === true;
}

/** A number option within [min, max]; the error names the option and the command's --help. */
export function num<N extends string>(command: string, p: Parsed<N>, name: N, min: number, max: number, integer = false): number | undefined {
  const text = str(p, name);
  if (text === undefined) return undefined;
  const v = Number(text);
  if (text.trim() === '' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    throw new UsageError(`--${name} ${JSON.stringify(text)}: must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}; see ksm-agent ${command} --help`);
  }
  return v;
}

/** 0/1/yes/no/on/off/true/false. */
export function bool01<N extends string>(command: string, p: Parsed<N>, name: N): boolean | undefined {
  const text = str(p, name);
  if (text === undefined) return undefined;
  const t = text.toLowerCase();
  if (['1', 'yes', 'on', 'true', 'y'].includes(t)) return true;
  if (['0', 'no', 'off', 'false', 'n'].includes(t)) return false;
  throw new UsageError(`--${name} ${JSON.stringify(text)}: must be 0 or 1; see ksm-agent ${command} --help`);
}

export function noPositionals(command: string, p: Parsed): void {
  if (p.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(p.positionals[0])}; see ksm-agent ${command} --help`);
}
