// Logs for journald: one line per event on stderr, no timestamps of our own (the journal adds
// them). Under systemd (JOURNAL_STREAM set) each line starts with a syslog priority prefix
// "<N>", which journald turns into the entry's priority; otherwise the level is written out.
export type Level = 'error' | 'warning' | 'notice' | 'info' | 'debug';

const PRIORITY: Record<Level, number> = { error: 3, warning: 4, notice: 5, info: 6, debug: 7 };

export interface Logger {
  error(msg: string, fields?: Record<string, unknown>): void;
  warning(msg: string, fields?: Record<string, unknown>): void;
  notice(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  debug(msg: string, fields?: Record<string, unknown>): void;
}

/** key=value pairs; values with spaces or quotes are JSON-quoted so the line stays one line. */
function formatFields(fields: Record<string, unknown> | undefined): string {
  if (fields === undefined) return '';
  const parts: string[] = [];
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    const text = typeof v === 'string' ? v : typeof v === 'number' ? String(Math.round(v * 1e6) / 1e6) : JSON.stringify(v);
    parts.push(`${k}=${/^[^\s"=]*$/.test(text) && text !== '' ? text : JSON.stringify(text)}`);
  }
  return parts.length === 0 ? '' : ` ${parts.join(' ')}`;
}

export function createLogger(opts: { verbose?: boolean; journal?: boolean; write?: (line: string) => void } = {}): Logger {
  const journal = opts.journal ?? process.env['JOURNAL_STREAM'] !== undefined;
  const write = opts.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  const emit = (level: Level) => (msg: string, fields?: Record<string, unknown>) => {
    if (level === 'debug' && !opts.verbose) return;
    const text = `${msg.replace(/\n/g, ' ')}${formatFields(fields)}`;
    write(journal ? `<${PRIORITY[level]}>${text}` : `ksm-agent ${level}: ${text}`);
  };
  return { error: emit('error'), warning: emit('warning'), notice: emit('notice'), info: emit('info'), debug: emit('debug') };
}
