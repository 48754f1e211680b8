// How ksm-agent prints figures for people: byte sizes in binary units, percentages, rates, and
// plain-text tables whose columns line up. JSON output never goes through here. Every cell and
// value of a table goes through escapeText: cells carry VM names, process names and disk paths that
// other processes chose, which must not move the cursor or add a row.
import { escapeText } from './escape.js';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'] as const;

/** 1536 -> "1.5 KiB"; keeps the sign (general_profit can be negative). */
export function formatBytes(bytes: number): string {
  const sign = bytes < 0 ? '-' : '';
  let v = Math.abs(bytes);
  let unit = 0;
  while (v >= 1024 && unit < UNITS.length - 1) {
    v /= 1024;
    unit++;
  }
  const digits = unit === 0 ? 0 : v >= 100 ? 0 : v >= 10 ? 1 : 2;
  return `${sign}${v.toFixed(digits)} ${UNITS[unit]}`;
}

/** A fraction as a percentage: 0.1234 -> "12.3%". */
export function formatPercent(fraction: number, digits = 1): string {
  if (!Number.isFinite(fraction)) return '-';
  return `${(fraction * 100).toFixed(digits)}%`;
}

/** Seconds as "850 ms", "12.3 s", "4 min 10 s" or "2 h 5 min". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '-';
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

/** A count with thousands separators: 1234567 -> "1,234,567". */
export function formatCount(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export type Align = 'left' | 'right';

/** Rows of cells as aligned text; the first row is the header. Numbers align right. */
export function renderTable(header: string[], rows: string[][], align: Align[] = []): string {
  header = header.map(escapeText);
  rows = rows.map((r) => r.map(escapeText));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => ((align[i] ?? 'left') === 'right' ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** "key   value" lines with the values in one column; keys and values escaped, one line each. */
export function renderPairs(pairs: [string, string][]): string {
  const escaped = pairs.map(([k, v]) => [escapeText(k), escapeText(v)] as const);
  const width = Math.max(0, ...escaped.map(([k]) => k.length));
  return escaped.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}
