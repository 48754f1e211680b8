// What every ksm-agent command is: a name, one line for the command list, its option table (the
// one its run() parses with, args.ts), its --help text (made from that table, help.ts), and a
// run function returning the exit code. Output goes through Io so the CLI writes in one place.
import type { OptionSpec } from './args.js';

export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** stdout is a terminal (tables and live views) */
  readonly stdoutTty: boolean;
  /** stderr is a terminal (progress bars) */
  readonly stderrTty: boolean;
  readonly columns: number;
}

export interface Command {
  name: string;
  summary: string;
  /** every option run() accepts besides -h/--help */
  options: readonly OptionSpec[];
  help: string;
  run(argv: string[], io: Io): Promise<number>;
}

export function processIo(): Io {
  return {
    out: (text) => void process.stdout.write(text.endsWith('\n') ? text : `${text}\n`),
    err: (text) => void process.stderr.write(text.endsWith('\n') ? text : `${text}\n`),
    stdoutTty: process.stdout.isTTY === true,
    stderrTty: process.stderr.isTTY === true,
    columns: process.stdout.columns ?? 100,
  };
}
