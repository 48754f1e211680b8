// The status page's HTML: a static shell that the browser code (client/main.ts) fills from /api/.
// URLs are relative, so the page also works behind a reverse proxy under a path prefix. The only
// inline script is the import map that points the bare specifier "uplot" at the copy the agent
// serves; the Content-Security-Policy allows exactly that script by its hash, and nothing from
// another origin.
import { createHash } from 'node:crypto';

const IMPORT_MAP = JSON.stringify({ imports: { uplot: './assets/vendor/uPlot.esm.js' } });

/** A card: title, what it shows in one line, and the chart's container. */
function card(id: string, title: string, sub: string, body: string): string {
  return `<article class="card" id="card-${id}">
  <h2>${title}</h2>
  <p class="sub">${sub}</p>
  ${body}
</article>`;
}

const chart = (name: string) => `<div class="chart" data-chart="${name}"></div>`;
const canvas = (name: string) => `<div class="chart" data-chart="${name}"><canvas></canvas></div>`;

const KPIS: [string, string][] = [
  ['saved', 'memory saved'],
  ['ratio', 'sharing ratio'],
  ['pages', 'shared / sharing pages'],
  ['scan', 'scan rate'],
  ['cpu', 'ksmd CPU'],
  ['cache', 'cache reclaimed'],
];

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>KSM status</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="./assets/vendor/uPlot.min.css">
<link rel="stylesheet" href="./assets/style.css">
<script type="importmap">${IMPORT_MAP}</script>
<script type="module" src="./assets/app/agent/web/client/main.js"></script>
</head>
<body>
<header>
  <h1>KSM on <span id="host">…</span></h1>
  <span id="state" class="badge">starting</span>
  <span id="updated" class="muted"></span>
  <span id="problem" class="problem" hidden></span>
</header>
<section class="kpis">
${KPIS.map(([id, label]) => `  <div class="kpi"><div class="value" id="kpi-${id}">–</div><div class="label">${label}</div></div>`).join('\n')}
</section>
<main class="grid">
${card('saved', 'Memory saved', 'general_profit: merged pages minus the rmap_items that track candidates', chart('saved'))}
${card('pages', 'KSM pages', 'pages_shared (kept copies), pages_sharing (saved mappings), pages_volatile (changing too fast)', chart('pages'))}
${card('scan', 'Scanning cost', 'pages ksmd scans per second, and its share of one core', chart('scan'))}
${card('cache', 'Exclusive cache', '<span id="cache-note">host page cache dropped by the exclusive-cache scrub</span>', chart('cache'))}
${card('vms', 'Saved per VM', 'fair share: a KSM page mapped m times credits each mapping (m − 1)/m', canvas('vms'))}
${card('matrix', 'Sharing between VMs', '<span id="matrix-note">KSM pages of the row VM that the column VM maps too</span>', canvas('matrix'))}
</main>
<section class="table">
  <h2>VMs</h2>
  <table id="vm-table">
    <thead><tr><th>name</th><th class="num">pid</th><th class="num">RAM</th><th class="num">KSM pages</th><th class="num">saved</th><th>shares most with</th><th>notes</th></tr></thead>
    <tbody></tbody>
  </table>
</section>
<footer class="muted">History: one point every 10 s, 24 h kept in the agent's memory. JSON: <a href="./api/">api/</a> · Prometheus: <a href="./metrics">metrics</a></footer>
</body>
</html>
`;

/** The policy sent with the page: same-origin everything, the import map by its hash. */
export const PAGE_CSP = [
  "default-src 'none'",
  `script-src 'self' 'sha256-${createHash('sha256').update(IMPORT_MAP).digest('base64')}'`,
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');
