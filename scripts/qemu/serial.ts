/** Reading the guest console (ttyS0, logged to a file by QEMU) for the harness's status lines. */
import { readFileSync } from 'node:fs';

export const READY_LINE = 'SAMEPAGE: READY';
const FILL_PREFIX = 'SAMEPAGE: FILL ';
const ERROR_PREFIX = 'SAMEPAGE: ERROR ';

export interface ConsoleState {
  ready: boolean;
  /** JSON text of the boot fill summary, when printed. */
  fill?: string;
  /** "SAMEPAGE: ERROR ..." lines, without the prefix. */
  errors: string[];
}

export function readConsole(logPath: string): string {
  try {
    return readFileSync(logPath, 'latin1');
  } catch {
    return '';
  }
}

export function consoleState(text: string): ConsoleState {
  const state: ConsoleState = { ready: false, errors: [] };
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (line === READY_LINE) state.ready = true;
    else if (line.startsWith(FILL_PREFIX)) state.fill = line.slice(FILL_PREFIX.length);
    else if (line.startsWith(ERROR_PREFIX)) state.errors.push(line.slice(ERROR_PREFIX.length));
  }
  return state;
}

/** The last `lines` lines of the console log, for error messages. */
export function consoleTail(logPath: string, lines = 30): string {
  const text = readConsole(logPath).trimEnd();
  if (!text) return '(serial log empty)';
  return text.split('\n').slice(-lines).join('\n');
}
