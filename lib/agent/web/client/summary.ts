// The header and the row of figures above the charts, from /api/summary.
import type { SummaryResponse } from '../../../api-types.js';
import { formatBytes, formatCount, formatPercent, formatShort, formatTime, orDash } from './format.js';

function set(id: string, text: string): void {
  const el = document.getElementById(id);
  if (el !== null) el.textContent = text;
}

export function drawSummary(s: SummaryResponse): void {
  document.title = `KSM · ${s.hostname}`;
  set('host', s.hostname);
  const badge = document.getElementById('state');
  if (badge !== null) {
    const a = s.agent;
    badge.textContent = `${a.state}${a.state === 'merging' ? ` (${a.mode ?? 'ramp'})` : ''}${a.memory_pressure === true ? ' · memory pressure' : ''}`;
    badge.className = `badge ${a.state}`;
    badge.title = `ksm-agent pid ${a.pid}; run=${s.ksm.run}, pages_to_scan=${s.ksm.pages_to_scan}, sleep_millisecs=${s.ksm.sleep_millisecs}`;
  }
  set('updated', `updated ${formatTime(s.at)}`);
  set('kpi-saved', formatBytes(s.ksm.general_profit));
  set('kpi-ratio', orDash(s.sharing_ratio, (r) => `${r.toFixed(2)}×`));
  set('kpi-pages', `${formatShort(s.ksm.pages_shared)} / ${formatShort(s.ksm.pages_sharing)}`);
  set('kpi-scan', orDash(s.scan_pages_per_second, (r) => `${formatShort(r)}/s`));
  set('kpi-cpu', orDash(s.ksmd_cpu_ratio, (r) => `${formatPercent(r)} / ${formatPercent(s.agent.ksmd_cpu_budget_ratio, 0)}`));
  set('kpi-cache', s.cache.enabled ? formatBytes(s.cache.bytes_reclaimed_total) : 'off');
  set(
    'cache-note',
    s.cache.enabled
      ? `host page cache dropped by the exclusive-cache scrub (every ${formatCount(s.cache.interval_seconds)} s${s.cache.dry_run ? ', dry run: counts only' : ''})`
      : 'the exclusive-cache scrub is off (config key "cache"): nothing is reclaimed',
  );
}
