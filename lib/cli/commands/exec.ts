// ksm-agent exec -- CMD ARGS...: runs a program with PR_SET_MEMORY_MERGE set, so KSM may merge
// all of its anonymous memory (and its children's: the flag survives fork and execve, checked on
// 6.12 and 6.18). The flag is set on this process and inherited by the child it spawns.
import { spawn } from 'node:child_process';
import os from 'node:os';
import { setMemoryMerge } from '../../merging.js';
import { parse } from '../args.js';
import type { OptionSpec } from '../args.js';
import { commandHelp } from '../help.js';
import type { Command, Io } from '../command.js';
import { UsageError } from '../exit-codes.js';

/** exec takes no options of its own: everything after them is COMMAND's. */
const OPTIONS = [] as const satisfies readonly OptionSpec[];

const HELP = commandHelp({
  command: 'exec',
  operands: '[--] COMMAND [ARGS...]',
  options: OPTIONS,
  about: `Runs COMMAND with prctl(PR_SET_MEMORY_MERGE, 1): every compatible anonymous mapping of it (and of
its children) becomes a KSM candidate, without changes to the program (Linux 6.4+). KSM still
merges only while ksmd runs (run=1: ksm-agent run, or ksm-agent set run=1).`,
  notes: `Only an option before COMMAND is ksm-agent's; use -- when COMMAND itself begins with a dash.
Exit status: COMMAND's, or 128+N when a signal N ended it; 127 when it cannot be started.
Signals sent to ksm-agent (SIGINT, SIGTERM, SIGHUP) are passed on to COMMAND.`,
});

export const exec: Command = {
  name: 'exec',
  summary: 'run a program with PR_SET_MEMORY_MERGE (KSM for all of its memory)',
  options: OPTIONS,
  help: HELP,
  async run(argv: string[], io: Io): Promise<number> {
    // A dash before COMMAND is a (mistyped) option of ours, not a program: refuse it as parse() does.
    if (argv[0] !== undefined && argv[0] !== '--' && argv[0].startsWith('-')) parse('exec', argv.slice(0, 1), OPTIONS);
    const args = argv[0] === '--' ? argv.slice(1) : argv;
    if (args.length === 0) throw new UsageError('no command to run: ksm-agent exec -- COMMAND [ARGS...]; see ksm-agent exec --help');
    setMemoryMerge(true);
    const [cmd, ...rest] = args as [string, ...string[]];
    const child = spawn(cmd, rest, { stdio: 'inherit' });
    const forward = (sig: NodeJS.Signals) => () => void child.kill(sig);
    const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((sig) => [sig, forward(sig)] as const);
    for (const [sig, h] of handlers) process.on(sig, h);
    try {
      return await new Promise<number>((resolve) => {
        child.once('error', (err) => {
          io.err(`ksm-agent exec: cannot run ${cmd}: ${err.message}; check the command name and PATH`);
          resolve(127);
        });
        child.once('exit', (code, signal) => {
          if (signal !== null) {
            resolve(128 + (os.constants.signals[signal] ?? 0));
          } else resolve(code ?? 1);
        });
      });
    } finally {
      for (const [sig, h] of handlers) process.off(sig, h);
    }
  },
};
