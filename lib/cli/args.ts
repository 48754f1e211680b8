// Command-line parsing on node:util parseArgs, strict: an unknown option or a bad value is a
// UsageError naming the option and pointing at the command's --help.
import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';
import { UsageError } from './exit-codes.js';

export type Options = NonNullable<ParseArgsConfig['options']>;

export interface Parsed {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
}

export function parse(command: string, argv: string[], options: Options, allowPositionals = false): Parsed {
  try {
    const r = parseArgs({ args: argv, options: { help: { type: 'boolean', short: 'h' }, ...options }, allowPositionals, strict: true });
    return { values: r.values as Parsed['values'], positionals: r.positionals };
  } catch (err) {
    const msg = (err as Error).message.replace(/\. To specify a positional argument.*$/, '');
    throw new UsageError(`${msg}; see ksm-agent ${command} --help`);
  }
}

export function str(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === 'string' ? v : undefined;
}

export function strs(p: Parsed, name: string): string[] {
  const v = p.values[name];
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : typeof v === 'string' ? [v] : [];
}

export function flag(p: Parsed, name: string): boolean {
  return p.values[name] === true;
}

/** A number option within [min, max]; `what` describes it for the error. */
export function num(command: string, p: Parsed, name: string, min: number, max: number, integer = false): number | undefined {
  const text = str(p, name);
  if (text === undefined) return undefined;
  const v = Number(text);
  if (text.trim() === '' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    throw new UsageError(`--${name} ${JSON.stringify(text)}: must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}; see ksm-agent ${command} --help`);
  }
  return v;
}

/** 0/1/yes/no/on/off/true/false. */
export function bool01(command: string, p: Parsed, name: string): boolean | undefined {
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
