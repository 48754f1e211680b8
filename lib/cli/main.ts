#!/usr/bin/env -S node --lite-mode --no-expose-wasm --inspect-port=0.0.0.1:9229
// ksm-agent: the command-line entry point. Finds the command, runs it, and turns any failure into
// one line on stderr ("ksm-agent CMD: what happened; what to do") and its exit code.
//
// Why the flags on the first line: --lite-mode runs JavaScript without the optimizing compilers.
// The daemon's JavaScript is a few file reads a tick (the heavy work is in the kernel and the
// addon), and without them its RSS drops from ~58 to ~51 MB for the same CPU (measured over
// 120 s with two guests: 0.68% vs 0.74% of a core). --no-expose-wasm silences V8's note that
// lite mode turns WebAssembly off (nothing here uses it). Both also keep V8 from ever mapping
// memory writable and executable, so the unit's MemoryDenyWriteExecute=yes holds (plain node
// aborts under it). --inspect-port=0.0.0.1:9229: Node 20 has no flag to keep SIGUSR1 from its
// inspector (--disable-sigusr1 came in 22.14), and before any JavaScript runs its own SIGUSR1
// handler would open a debugger on 127.0.0.1:9229. 0.0.0.1 is no address of this host, so such an
// inspector fails to bind ("address not available") and nothing ever listens; the first import
// below then holds SIGUSR1 so that Node's handler is not even reached.
import './early-signals.js';
import { SamepageError } from '../errors.js';
import type { Command } from './command.js';
import { processIo } from './command.js';
import { cache } from './commands/cache.js';
import { estimate } from './commands/estimate.js';
import { exec } from './commands/exec.js';
import { fingerprint } from './commands/fingerprint.js';
import { place } from './commands/place.js';
import { restore } from './commands/restore.js';
import { run } from './commands/run.js';
import { set } from './commands/set.js';
import { status } from './commands/status.js';
import { vms } from './commands/vms.js';
import { watch } from './commands/watch.js';
import { wss } from './commands/wss.js';
import { EXIT, exitCodeOf } from './exit-codes.js';

const COMMANDS: Command[] = [status, vms, estimate, watch, exec, set, restore, run, cache, fingerprint, place, wss];

function globalHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'Usage: ksm-agent COMMAND [OPTIONS]',
    '',
    'Kernel Samepage Merging (KSM) for KVM hosts: what it saves, per VM, what it would save, and a',
    'daemon that tunes it.',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Run "ksm-agent COMMAND --help" for a command\'s options. Read commands take --json.',
    'Exit codes: 0 ok, 1 failure, 2 bad input, 3 not found, 4 not supported here, 5 busy,',
    '77 not permitted, 130 interrupted.',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const io = processIo();
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.out(globalHelp());
    return name === undefined ? EXIT.USAGE : EXIT.OK;
  }
  if (name === '--version') {
    io.out(require('../../../package.json').version as string);
    return EXIT.OK;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (command === undefined) {
    io.err(`ksm-agent: unknown command "${name}"; commands: ${COMMANDS.map((c) => c.name).join(', ')} (ksm-agent --help)`);
    return EXIT.USAGE;
  }
  if (rest[0] === '--help' || rest[0] === '-h' || (command.name !== 'exec' && (rest.includes('--help') || rest.includes('-h')))) {
    io.out(command.help);
    return EXIT.OK;
  }
  try {
    return await command.run(rest, io);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    io.err(`ksm-agent ${command.name}: ${message}`);
    if (process.env['KSM_AGENT_DEBUG'] === '1' && err instanceof Error && !(err instanceof SamepageError)) io.err(err.stack ?? '');
    return exitCodeOf(err);
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
      // A daemon or a live view may leave handles (a pending flock, a socket); the command is done.
      process.exit(code);
    },
    (err: unknown) => {
      process.stderr.write(`ksm-agent: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(EXIT.FAILURE);
    },
  );
}
