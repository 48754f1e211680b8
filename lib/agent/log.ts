// Logs for journald: one line per event on stderr, no timestamps of our own (the journal adds
// them). Under systemd (JOURNAL_STREAM set) each line starts with a syslog priority prefix
// "<N>", which journald turns into the entry's priority; otherwise the level is written out.
// Messages and values carry VM names, disk paths and error text that other processes chose: each
// goes through escapeText (a newline is "\n", ESC is "\x1b") and a length bound, so one event is
// always one line and a name cannot forge another entry or reach a terminal tailing the log.
import { boundText, escapeText } from '../escape.js';

export type Level = 'error' | 'warning' | 'notice' | 'info' | 'debug';

const PRIORITY: Record<Level, number> = { error: 3, warning: 4, notice: 5, info: 6, debug: 7 };

export interface Logger {
  error(msg: string, fields?: Record<string, unknown>): void;
  warning(msg: string, fields?: Record<string, unknown>): void;
  notice(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  debug(msg: string, fields?: Record<string, unknown>): void;
}

/** Longest message kept, and longest field value, in characters before escaping. */
const MAX_MESSAGE_CHARS = 4096;
const MAX_VALUE_CHARS = 1024;

/** Text made safe for one log line: bounded, then escaped (no control character is left). */
function logText(text: string, max: number): string {
  return escapeText(boundText(text, max));
}

/**
 * key=value pairs; a value with spaces, quotes or "=" (or an empty one) is double-quoted with its
 * quotes escaped. Values are escaped first, so a quoted value holds no raw control character either.
 */
function formatFields(fields: Record<string, unknown> | undefined): string {
  if (fields === undefined) return '';
  const parts: string[] = [];
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    const raw = typeof v === 'string' ? v : typeof v === 'number' ? String(Math.round(v * 1e6) / 1e6) : (JSON.stringify(v) ?? String(v));
    const text = logText(raw, MAX_VALUE_CHARS);
    parts.push(`${logText(k, 64)}=${/^[^\s"=]*$/.test(text) && text !== '' ? text : `"${text.replace(/"/g, '\\"')}"`}`);
  }
  return parts.length === 0 ? '' : ` ${parts.join(' ')}`;
}

export function createLogger(opts: { verbose?: boolean; journal?: boolean; write?: (line: string) => void } = {}): Logger {
  const journal = opts.journal ?? process.env['JOURNAL_STREAM'] !== undefined;
  const write = opts.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  const emit = (level: Level) => (msg: string, fields?: Record<string, unknown>) => {
    if (level === 'debug' && !opts.verbose) return;
    const text = `${logText(msg, MAX_MESSAGE_CHARS)}${formatFields(fields)}`;
    write(journal ? `<${PRIORITY[level]}>${text}` : `ksm-agent ${level}: ${text}`);
  };
  return { error: emit('error'), warning: emit('warning'), notice: emit('notice'), info: emit('info'), debug: emit('debug') };
}
