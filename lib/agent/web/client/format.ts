// Numbers for people: the library's formatters, the ones the CLI uses (so the page shows what `ksm-agent vms` prints),
// plus the compact forms an axis needs.
export { formatBytes, formatCount, formatPercent } from '../../../format.js';

/** Compact counts for axes and rates: 1.2k, 35k, 1.5M. */
export function formatShort(n: number): string {
  const a = Math.abs(n);
  if (a >= 1e6) return `${(n / 1e6).toFixed(a >= 1e7 ? 0 : 1)}M`;
  if (a >= 1e3) return `${(n / 1e3).toFixed(a >= 1e4 ? 0 : 1)}k`;
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

export function formatTime(unixSeconds: number): string {
  return new Date(unixSeconds * 1000).toLocaleTimeString('en-GB', { hour12: false });
}

/** "–" for a value that was not measured. */
export function orDash<T>(v: T | null | undefined, f: (x: T) => string): string {
  return v === null || v === undefined ? '–' : f(v);
}
