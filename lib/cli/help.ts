// A command's --help text, made from its option table (args.ts): the usage line and the aligned
// option blocks are generated, the prose around them (what the command does, examples, exit
// codes, "Needs root") is the command's own. One table feeds this and the parser, so the two
// cannot drift apart.
import { HELP_OPTION } from './args.js';
import type { OptionSpec } from './args.js';

/** Help lines are wrapped to this many columns. */
const WIDTH = 100;
/** The option column never grows past this; a longer option puts its description on the next line. */
const MAX_OPTION_COLUMN = 24;

export interface HelpSource {
  command: string;
  /** the operands in the usage line, after the command name: "KEY=VALUE...", "[--] COMMAND [ARGS...]" */
  operands?: string;
  options: readonly OptionSpec[];
  /** prose between the usage line and the options: what the command does */
  about: string;
  /** prose after the options: examples, exit status, privileges */
  notes?: string;
}

export function commandHelp(src: HelpSource): string {
  checkTable(src);
  const parts = [usageLine(src), '', src.about.trim(), '', optionBlocks(src.options)];
  if (src.notes !== undefined) parts.push('', src.notes.trim());
  return parts.join('\n');
}

/** A table mistake fails when the command's module loads (every test that runs the CLI), not in a user's hands. */
function checkTable(src: HelpSource): void {
  const names = new Set<string>();
  for (const o of [...src.options, HELP_OPTION]) {
    if (names.has(o.name)) throw new Error(`ksm-agent ${src.command}: option --${o.name} is in its table twice (every table has --help already)`);
    names.add(o.name);
  }
  for (const o of src.options) {
    if (o.alternativeTo !== undefined && !names.has(o.alternativeTo)) throw new Error(`ksm-agent ${src.command}: --${o.name} excludes --${o.alternativeTo}, which is not in its table`);
  }
}

/** "--vm NAME" or "--json": how an option is written on a command line. */
function spelling(o: OptionSpec): string {
  return o.type === 'string' ? `--${o.name} ${o.value}` : `--${o.name}`;
}

/** "Usage: ksm-agent CMD OPERANDS [--a X]... [--b | --c]", wrapped under the first item. */
export function usageLine(src: HelpSource): string {
  const items: string[] = src.operands === undefined ? [] : [src.operands];
  const shown = new Set<string>();
  for (const o of src.options) {
    if (shown.has(o.name)) continue;
    // An option and the ones it excludes share one bracket: [--listen HOST:PORT | --no-listen].
    const together = src.options.filter((x) => x === o || x.alternativeTo === o.name || o.alternativeTo === x.name);
    for (const x of together) shown.add(x.name);
    items.push(`[${together.map(spelling).join(' | ')}]${o.multiple === true ? '...' : ''}`);
  }
  const head = `Usage: ksm-agent ${src.command}`;
  return wrap(items, head, ' '.repeat(head.length));
}

/** The options grouped under their headings, in table order, --help last in "Options". */
export function optionBlocks(options: readonly OptionSpec[]): string {
  const all = [...options, HELP_OPTION];
  const left = (o: OptionSpec): string => `${o.short === undefined ? '' : `-${o.short}, `}${spelling(o)}`;
  const column = Math.min(MAX_OPTION_COLUMN, Math.max(...all.map((o) => left(o).length)));
  const groups = new Map<string, OptionSpec[]>();
  for (const o of all) {
    const g = o.group ?? 'Options';
    groups.set(g, [...(groups.get(g) ?? []), o]);
  }
  const blocks: string[] = [];
  for (const [heading, members] of groups) {
    const overrides = members.some((o) => o.configKey !== undefined);
    const lines = [`${heading}${overrides ? ' ([key]: the config file key it overrides)' : ''}:`];
    // Descriptions start two columns past the widest option, continuation lines under them.
    const indent = ' '.repeat(2 + column + 1);
    for (const o of members) {
      const name = left(o);
      const words = describe(o).split(' ');
      if (name.length > column) lines.push(`  ${name}`, wrap(words, indent, indent));
      else lines.push(wrap(words, `  ${name.padEnd(column)} `, indent));
    }
    blocks.push(lines.join('\n'));
  }
  return blocks.join('\n\n');
}

/** The description with its config key, repeatability and default. */
function describe(o: OptionSpec): string {
  const notes = [...(o.multiple === true ? ['repeatable'] : []), ...(o.default === undefined ? [] : [`default: ${o.default}`])];
  return `${o.description}${o.configKey === undefined ? '' : ` [${o.configKey}]`}${notes.length === 0 ? '' : ` (${notes.join('; ')})`}`;
}

/**
 * `first` then each item after a space; past WIDTH columns a new line starts with `next` (so its
 * items line up one column after `next`). An item is never split.
 */
function wrap(items: string[], first: string, next: string): string {
  const lines: string[] = [];
  let line = first;
  let fresh = true;
  for (const item of items) {
    if (!fresh && line.length + 1 + item.length > WIDTH) {
      lines.push(line);
      line = next;
    }
    line += ` ${item}`;
    fresh = false;
  }
  lines.push(line);
  return lines.join('\n');
}
