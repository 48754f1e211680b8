// ksm-agent's --help against its parsers, through the real CLI (dist/lib/cli/main.js): for every
// command `ksm-agent --help` lists, the help names every option the command accepts and the
// command accepts every option its help names. Acceptance is checked on the command's own run():
// each flag is followed by an unknown one, so the parser, which stops at the first option it does
// not know, must name the unknown one and not the flag (and nothing runs: parsing comes first).
import test from 'ava';
import path from 'node:path';
import { snapshotSettings } from '../lib/sysfs.js';
import { lockKsm } from '../lib/ksm-lock.js';
import type { Command } from '../lib/cli/command.js';
import type { OptionSpec } from '../lib/cli/args.js';
import { runCli } from './helpers/agent.js';

/** Not an option of any command: what the parser must stop at. */
const SENTINEL = '--zz-not-an-option';

async function commandNames(): Promise<string[]> {
  const top = await runCli(['--help']);
  if (top.code !== 0) throw new Error(`ksm-agent --help exited ${String(top.code)}: ${top.stderr}`);
  const list = top.stdout.split('\n\nCommands:\n')[1]?.split('\n\n')[0] ?? '';
  return [...list.matchAll(/^ {2}([a-z][a-z-]*) {2,}/gm)].map((m) => m[1] as string);
}

/** The module of command NAME exports it as NAME (lib/cli/commands/NAME.ts). */
function commandModule(name: string): Command {
  const mod = require(path.join(__dirname, '../lib/cli/commands', `${name}.js`)) as Record<string, Command | undefined>;
  const cmd = mod[name];
  if (cmd?.name !== name) throw new Error(`lib/cli/commands/${name}.ts does not export the command ${name}`);
  return cmd;
}

interface HelpParts {
  text: string;
  usage: string;
  /** lines of the option blocks: those that start with "  -" and their continuation lines */
  blocks: string[][];
}

function splitHelp(text: string): HelpParts {
  const paragraphs = text.trimEnd().split('\n\n');
  const blocks = paragraphs.map((p) => p.split('\n')).filter((lines) => /^[A-Z].*:$/.test(lines[0] ?? '') && lines.slice(1).every((l) => l.startsWith('  ')) && /^ {2}-/.test(lines[1] ?? ''));
  return { text, usage: paragraphs[0] ?? '', blocks };
}

const spelling = (o: OptionSpec): string => (o.type === 'string' ? `--${o.name} ${o.value}` : `--${o.name}`);
const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const flagsIn = (text: string): string[] => [...new Set([...text.matchAll(/(?<![\w-])--([a-z][a-z0-9-]*)/g)].map((m) => m[1] as string))];

test('every command ksm-agent --help lists answers --help and -h with exit 0 and its own help text', async (t) => {
  const names = await commandNames();
  t.true(names.length >= 9, `commands listed: ${names.join(', ')}`);
  for (const name of names) {
    const r = await runCli([name, '--help']);
    t.is(r.code, 0, `${name} --help: ${r.stderr}`);
    t.is(r.stderr, '', name);
    t.true(r.stdout.startsWith(`Usage: ksm-agent ${name}`), `${name}: ${r.stdout.slice(0, 80)}`);
    t.is(r.stdout, `${commandModule(name).help}\n`, `${name}: the bin prints the command's help`);
    const short = await runCli([name, '-h']);
    t.is(short.code, 0, `${name} -h`);
    t.is(short.stdout, r.stdout, `${name} -h = --help`);
  }
});

test('every option in a command table is in its usage line and in an option block, once, spelt as parsed', async (t) => {
  for (const name of await commandNames()) {
    const cmd = commandModule(name);
    const help = splitHelp((await runCli([name, '--help'])).stdout);
    const entries = help.blocks.flatMap((b) => b.slice(1)).filter((l) => /^ {2}-/.test(l));
    for (const o of cmd.options) {
      t.true(help.usage.includes(`[${spelling(o)}`) || help.usage.includes(`| ${spelling(o)}`), `${name}: usage lacks ${spelling(o)}:\n${help.usage}`);
      if (o.multiple === true) t.regex(help.usage, new RegExp(`\\[${escapeRe(spelling(o))}\\]\\.\\.\\.`), `${name}: ${o.name} is repeatable`);
      const lines = entries.filter((l) => new RegExp(`^ {2}(-${o.short ?? '#'}, )?${escapeRe(spelling(o))}( |$)`).test(l));
      t.is(lines.length, 1, `${name}: one Options entry for --${o.name}`);
    }
    t.is(entries.filter((l) => /^ {2}-h, --help {2,}this text$/.test(l)).length, 1, `${name}: -h, --help listed`);
    t.is(entries.length, cmd.options.length + 1, `${name}: no option entry without a table row`);
  }
});

test('option blocks are aligned: every description starts in one column, continuation lines under it', async (t) => {
  for (const name of await commandNames()) {
    const help = splitHelp((await runCli([name, '--help'])).stdout);
    t.true(help.blocks.length >= 1, `${name} has an Options block`);
    for (const block of help.blocks) {
      const columns = new Set<number>();
      for (const line of block.slice(1)) {
        const entry = /^( {2}(?:-\w, )?--[a-z0-9-]+(?: \S+)? {2,})\S/.exec(line);
        const continuation = /^( +)\S/.exec(line);
        if (entry !== null) columns.add((entry[1] as string).length);
        else if (!/^ {2}-/.test(line)) columns.add((continuation?.[1] as string).length);
        t.true(line.length <= 100, `${name}: line over 100 columns: ${line}`);
      }
      // An option too wide for the column puts its description on the next line, at the column.
      t.is(columns.size, 1, `${name}, ${block[0]}: description columns ${[...columns].join(', ')}`);
    }
  }
});

test("every --flag a command's help names is accepted by that command's own parser (the real run())", async (t) => {
  for (const name of await commandNames()) {
    const cmd = commandModule(name);
    const flags = flagsIn((await runCli([name, '--help'])).stdout).filter((f) => f !== 'help');
    t.deepEqual(flags.filter((f) => !cmd.options.some((o) => o.name === f)), [], `${name}: its help names options its table lacks`);
    for (const f of flags) {
      // A dummy value after an option that takes one; none after a boolean (it is no operand).
      const takesValue = cmd.options.find((o) => o.name === f)?.type === 'string';
      const r = await runCli([name, `--${f}`, ...(takesValue ? ['dummy'] : []), SENTINEL]);
      t.is(r.code, 2, `${name} --${f}: ${r.stderr}`);
      t.notRegex(r.stderr, new RegExp(`Unknown option '--${f}'`), `${name} refuses --${f}, which its help names`);
      t.regex(r.stderr, new RegExp(`^ksm-agent ${name}: Unknown option '${SENTINEL}'`), `${name} --${f}: the parser went past --${f}`);
    }
  }
});

test('the drift this replaced: estimate shows --config and --thp-zero-apart in its usage line, and takes them', async (t) => {
  const help = splitHelp((await runCli(['estimate', '--help'])).stdout);
  t.regex(help.usage, /\[--config PATH\]/);
  t.regex(help.usage, /\[--thp-zero-apart 0\|1\]/);
  t.regex(help.usage, /\[--pid PID\]\.\.\. \[--vm NAME\]\.\.\./);
  for (const f of ['--config', '--thp-zero-apart']) {
    const r = await runCli(['estimate', f, '1', SENTINEL]);
    t.regex(r.stderr, new RegExp(`Unknown option '${SENTINEL}'`), f);
  }
});

test("a misspelt flag: exit 2, one line naming the flag, the likely one and the command's --help; nothing runs", async (t) => {
  const release = await lockKsm(); // settings compared before and after: no other test may change them meanwhile
  try {
    const before = await snapshotSettings();
    for (const name of await commandNames()) {
      const cmd = commandModule(name);
      // A letter dropped from the command's first option (--help for exec, which has none).
      const meant = cmd.options[0]?.name ?? 'help';
      const typo = meant.slice(0, 1) + meant.slice(2);
      const r = await runCli([name, `--${typo}`, ...(name === 'set' ? ['run=1'] : name === 'exec' ? ['true'] : [])]);
      t.is(r.code, 2, `${name} --${typo}: ${r.stderr}`);
      t.is(r.stdout, '', name);
      t.is(r.stderr.trimEnd().split('\n').length, 1, `${name}: one line: ${r.stderr}`);
      t.regex(r.stderr, new RegExp(`^ksm-agent ${name}: Unknown option '--${typo}' \\(did you mean --${meant}\\?\\); see ksm-agent ${name} --help$`, 'm'));
    }
    const unlike = await runCli(['status', '--colour']);
    t.is(unlike.code, 2);
    t.regex(unlike.stderr, /^ksm-agent status: Unknown option '--colour'; see ksm-agent status --help$/m, 'no guess when nothing is close');
    t.deepEqual((await snapshotSettings()).files, before.files, 'no KSM setting changed');
  } finally {
    release();
  }
});
