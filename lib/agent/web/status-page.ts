// The status page served by `ksm-agent run` on its HTTP port: the page at /, its files under
// /assets/, JSON under /api/ (api.ts), and the 10 s sampler that keeps 24 h of history in memory
// (sampler.ts, timeline.ts). The daemon calls mountStatusPage() once and close() when it stops.
import type { Agent } from '../agent.js';
import type { Reply, Router } from '../http.js';
import type { Logger } from '../log.js';
import { SIDE_CHANNEL_ENDPOINTS, apiHandler } from './api.js';
import type { StatusSource } from './api.js';
import { loadAssets } from './assets.js';
import type { Asset } from './assets.js';
import { SharingMatrix } from './matrix.js';
import { PAGE_CSP, PAGE_HTML } from './page.js';
import { Sampler, liveSource } from './sampler.js';
import { Timeline } from './timeline.js';

export interface StatusPage {
  readonly timeline: Timeline;
  close(): void;
}

const COMMON_HEADERS = { 'X-Content-Type-Options': 'nosniff', 'Cache-Control': 'no-cache' };

/** The agent as the endpoints see it (read through getters: SIGHUP swaps the config). */
export function agentSource(a: Agent): StatusSource {
  const metrics = a.metricsSource();
  return {
    startedAt: a.startedAt,
    intervalSeconds: () => a.config.intervalSeconds,
    cpuBudgetRatio: () => a.config.cpuBudgetPercent / 100,
    vmMetricsSeconds: () => a.config.vmMetricsSeconds,
    cacheConfig: () => a.config.cache,
    cacheBytesReclaimed: () => a.counters.cacheBytesReclaimed,
    decision: () => a.lastDecision,
    pressure: () => a.lastPressure,
    vmSavings: () => a.vmSavings(),
    vmPolicies: () => metrics.vmPolicies(),
    fingerprints: () => a.fingerprints.view(),
  };
}

export function mountStatusPage(router: Router, agent: Agent, log: Logger): StatusPage {
  const src = agentSource(agent);
  const timeline = new Timeline();
  const sampler = new Sampler(timeline, liveSource(src.cacheBytesReclaimed), (err) => log.warning(`status page sample: ${err.message}`));
  const matrix = new SharingMatrix(() => agent.vmSavings());

  // A missing browser build must not stop the agent: the page says what to do instead.
  let assets: Map<string, Asset> | undefined;
  let missing = '';
  try {
    assets = loadAssets();
  } catch (err) {
    missing = err instanceof Error ? err.message : String(err);
    log.warning(`status page unavailable: ${missing}`);
  }
  const unavailable: Reply = { status: 503, body: `status page unavailable: ${missing}\n` };

  router
    .get('/', () => (assets === undefined ? unavailable : { contentType: 'text/html; charset=utf-8', body: PAGE_HTML, headers: { ...COMMON_HEADERS, 'Content-Security-Policy': PAGE_CSP } }))
    .getPrefix('/assets/', (_req, url) => {
      if (assets === undefined) return unavailable;
      const a = assets.get(url.pathname);
      return a === undefined ? { status: 404, body: `no asset ${url.pathname}\n` } : { contentType: a.contentType, body: a.body, headers: COMMON_HEADERS };
    })
    .getPrefix('/api/', apiHandler(src, timeline, () => matrix.get()))
    .sideChannel(...SIDE_CHANNEL_ENDPOINTS);
  sampler.start();
  return { timeline, close: () => sampler.close() };
}
