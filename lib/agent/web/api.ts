// The status page's JSON endpoints under /api/ (all GET, all `Cache-Control: no-store`):
//   /api/            this list
//   /api/summary     KSM counters read now, the agent's state, the last tick's rates
//   /api/history     the 10 s history (?since=T, Unix seconds: only newer points)
//   /api/vms         per-VM savings: the rows of `ksm-agent vms --json`
//   /api/matrix      VM-by-VM shared KSM pages, from the live page tables
//   /api/cache       the exclusive-cache scrub: configuration and bytes reclaimed
//   /api/fingerprint every VM's page-content sketch: the bytes `ksm-agent fingerprint --out` writes
//                    (application/octet-stream), taken by the daemon on its own schedule
//                    (lib/agent/fingerprints.ts); the headers say how old they are
// Shapes: api-types.ts. Errors: {"error": "..."} with 400 (bad query) or 404 (no such endpoint);
// /api/fingerprint answers 503 (with Retry-After) while it has no sketch: no key file, the first
// run not finished, or runs failing; 404 when fingerprints are off in the config.
//
// Who can read them. /api/vms, /api/matrix and /api/fingerprint are side-channel data: which VMs
// share how many pages with which (the sketches let anyone estimate that for any two VMs), exactly
// what a cross-VM deduplication attack (CAIN, Dedup Est Machina, VUsion) wants to know before
// timing writes. The sketches' hashes are keyed, so they reveal no page contents without the fleet
// key, but they do reveal which VMs hold the same pages. They are served:
//   - with "tokenFile" set: only to a client sending the token (like every route but /healthz);
//   - without a token on a loopback listen (the default 127.0.0.1:9662): to every process on the
//     host, any user, and to guests on QEMU user-mode networking (SLIRP without restrict=on
//     forwards a guest's 10.0.2.2 to the host's 127.0.0.1): set "tokenFile" on such hosts;
//   - without a token on any other listen address: to nobody (403; http.ts), since anyone on the
//     network would otherwise read them. /metrics still answers there, with per-VM series, and the
//     agent logs a warning at start saying so.
// Browsers on other sites cannot read any of it: Host must name the agent (DNS rebinding,
// http-host.ts) and no CORS header is sent.
import os from 'node:os';
import type { Handler, Reply } from '../http.js';
import { readKsm } from '../../sysfs.js';
import type { Attribution } from '../../attribution.js';
import type { CacheConfig } from '../config.js';
import type { Decision, Pressure } from '../policy.js';
import { vmRows } from '../../vm-rows.js';
import type { CacheResponse, HistoryResponse, IndexResponse, MatrixResponse, SummaryResponse, VmsResponse } from '../../api-types.js';
import { pageCounts } from './sampler.js';
import { RESOLUTION_SECONDS } from './timeline.js';
import type { Timeline } from './timeline.js';
import type { FingerprintView } from '../fingerprints.js';

/** What the endpoints read from the running agent. */
export interface StatusSource {
  startedAt: number;
  intervalSeconds(): number;
  cpuBudgetRatio(): number;
  vmMetricsSeconds(): number;
  cacheConfig(): CacheConfig;
  cacheBytesReclaimed(): number;
  decision(): Decision | undefined;
  pressure(): Pressure | undefined;
  vmSavings(): Promise<Attribution | undefined>;
  vmPolicies(): { vm: string; tenant?: string; optedOut: boolean }[];
  fingerprints(): FingerprintView;
}

/** Endpoints whose answers tell which VMs share memory with which (see the top of this file). */
export const SIDE_CHANNEL_ENDPOINTS = ['/api/vms', '/api/matrix', '/api/fingerprint'];

const ENDPOINTS: IndexResponse['endpoints'] = [
  { path: '/api/summary', what: 'KSM counters read now, the agent state and the last tick rates' },
  { path: '/api/history?since=T', what: `one point per ${RESOLUTION_SECONDS} s for 24 h: saved bytes, KSM pages, scan rate, ksmd CPU, cache bytes reclaimed (since: Unix seconds, optional)` },
  { path: '/api/vms', what: 'per-VM savings, the rows of ksm-agent vms --json' },
  { path: '/api/matrix', what: 'VM-by-VM shared KSM pages from the live page tables' },
  { path: '/api/cache', what: 'exclusive-cache scrub: configuration and bytes reclaimed' },
  { path: '/api/fingerprint', what: 'every VM\'s page-content sketch, the sketch file ksm-agent fingerprint --out writes (binary), for ksm-agent place --from URL' },
];

export function json(value: unknown, status = 200): Reply {
  return { status, contentType: 'application/json; charset=utf-8', body: `${JSON.stringify(value)}\n`, headers: { 'Cache-Control': 'no-store' } };
}

function cache(src: StatusSource): CacheResponse {
  const c = src.cacheConfig();
  return { enabled: c.enabled, dry_run: c.dryRun, interval_seconds: c.intervalSeconds, vms: [...c.vms], bytes_reclaimed_total: src.cacheBytesReclaimed() };
}

async function summary(src: StatusSource, timeline: Timeline): Promise<SummaryResponse> {
  const { counters: c, settings: s } = await readKsm();
  const d = src.decision();
  const p = src.pressure();
  const shared = c.pages_shared ?? 0;
  return {
    at: Date.now() / 1000,
    hostname: os.hostname(),
    agent: {
      pid: process.pid,
      started_at: src.startedAt / 1000,
      state: d?.state ?? 'starting',
      mode: d?.mode ?? null,
      memory_pressure: p?.pressure ?? null,
      interval_seconds: src.intervalSeconds(),
      ksmd_cpu_budget_ratio: src.cpuBudgetRatio(),
    },
    ksm: {
      run: s.run ?? 0,
      ...pageCounts(c),
      general_profit: c.general_profit ?? 0,
      full_scans: c.full_scans ?? 0,
      pages_to_scan: s.pages_to_scan ?? 0,
      sleep_millisecs: s.sleep_millisecs ?? 0,
    },
    sharing_ratio: shared > 0 ? (c.pages_sharing ?? 0) / shared : null,
    scan_pages_per_second: d?.rates?.scannedPerSecond ?? null,
    ksmd_cpu_ratio: d?.rates?.ksmdCpu ?? null,
    cache: cache(src),
    history: { resolution_seconds: RESOLUTION_SECONDS, capacity: timeline.capacity, size: timeline.size },
  };
}

/** The attribution's first sighting: the agent caches one per vmMetricsSeconds. */
const seenAt = new WeakMap<Attribution, number>();

async function vms(src: StatusSource): Promise<VmsResponse> {
  const a = await src.vmSavings();
  if (a === undefined) return { at: null, refresh_seconds: src.vmMetricsSeconds(), general_profit: 0, vms: [] };
  if (!seenAt.has(a)) seenAt.set(a, Date.now() / 1000);
  const policies = new Map(src.vmPolicies().map((p) => [p.vm, p]));
  const rows = vmRows(a, (r) => {
    const p = policies.get(r.name);
    return { tenant: p?.tenant ?? null, optedOut: p?.optedOut ?? false };
  });
  return { at: seenAt.get(a) ?? null, refresh_seconds: src.vmMetricsSeconds(), general_profit: a.generalProfit, vms: rows };
}

function history(timeline: Timeline, url: URL): Reply {
  const raw = url.searchParams.get('since');
  const since = raw === null || raw === '' ? undefined : Number(raw);
  if (since !== undefined && !Number.isFinite(since)) return json({ error: `since must be a number of Unix seconds, got ${JSON.stringify(raw)}` }, 400);
  const body: HistoryResponse = { resolution_seconds: RESOLUTION_SECONDS, capacity: timeline.capacity, size: timeline.size, columns: timeline.since(since) };
  return json(body);
}

/** A file name safe in a Content-Disposition header: the host name, letters, digits, . _ - only. */
function sketchFileName(host: string): string {
  const clean = host.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 64);
  return `${clean === '' ? 'host' : clean}.fp`;
}

/**
 * The latest sketches, or why there are none. Headers on a 200: Age (seconds since the run that
 * took them started: the oldest a sketch in it can be), X-Samepage-Sketch-Taken-At and
 * X-Samepage-Next-Sketch-At (Unix seconds), X-Samepage-Sketch-Max-Age (seconds: the oldest a
 * sketch served here gets, the schedule's period plus two runs), X-Samepage-Key-Id.
 */
function fingerprint(src: StatusSource): Reply {
  const v = src.fingerprints();
  const p = v.problem;
  const retry = String(Math.max(1, Math.min(60, Math.ceil(v.periodSeconds))));
  if (p?.kind === 'off') return json({ error: 'fingerprints are off in this agent\'s config ("fingerprint": {"enabled": false}); set it to true and reload (SIGHUP)' }, 404);
  const latest = v.latest;
  if (latest === undefined) {
    const unavailable = (error: string, seconds: string): Reply => {
      const r = json({ error }, 503);
      return { ...r, headers: { ...r.headers, 'Retry-After': seconds } };
    };
    if (p?.kind === 'key') return unavailable(`no sketches: ${p.message}; the agent looks for the key again within a minute`, '60');
    if (p?.kind === 'failed') return unavailable('no sketches: the last run failed; the agent\'s log says why (journalctl -u ksm-agent)', retry);
    const since = p?.kind === 'pending' ? Math.round((Date.now() - p.since) / 1000) : 0;
    return unavailable(`no sketches yet: the first run is under way (${since} s so far, about 2 s per GiB of guest RAM); retry later`, '10');
  }
  const now = Date.now();
  const runSeconds = (latest.finishedAt - latest.startedAt) / 1000;
  const headers: Record<string, string> = {
    'Cache-Control': 'no-store',
    'Content-Disposition': `attachment; filename="${sketchFileName(latest.host)}"`,
    'Last-Modified': new Date(latest.finishedAt).toUTCString(),
    Age: String(Math.max(0, Math.floor((now - latest.startedAt) / 1000))),
    'X-Samepage-Sketch-Taken-At': String(Math.floor(latest.startedAt / 1000)),
    'X-Samepage-Sketch-Max-Age': String(Math.ceil(v.periodSeconds + 2 * runSeconds)),
    'X-Samepage-Key-Id': latest.keyId,
  };
  if (v.nextAt !== undefined) headers['X-Samepage-Next-Sketch-At'] = String(Math.ceil(v.nextAt / 1000));
  return { status: 200, contentType: 'application/octet-stream', body: latest.bytes, headers };
}

/** One handler for every GET under /api/. */
export function apiHandler(src: StatusSource, timeline: Timeline, matrix: () => Promise<MatrixResponse>): Handler {
  return async (_req, url) => {
    switch (url.pathname.replace(/\/+$/, '')) {
      case '/api':
        return json({ endpoints: ENDPOINTS } satisfies IndexResponse);
      case '/api/summary':
        return json(await summary(src, timeline));
      case '/api/history':
        return history(timeline, url);
      case '/api/vms':
        return json(await vms(src));
      case '/api/matrix':
        return json(await matrix());
      case '/api/cache':
        return json(cache(src));
      case '/api/fingerprint':
        return fingerprint(src);
      default:
        return json({ error: `no endpoint ${url.pathname}; try ${ENDPOINTS.map((e) => e.path.split('?')[0]).join(', ')}` }, 404);
    }
  };
}
