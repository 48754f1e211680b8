// The status page's stylesheet (served at assets/style.css). Sized so that the six charts and
// the figures above them fit a 1280×800 screen; one column on narrow screens.
export const STYLE_CSS = `
:root {
  --fg: #1d2430; --muted: #5d6878; --line: #dde2ea; --bg: #f4f6f9; --card: #ffffff;
  --accent: #2563eb; --warn: #b45309; --bad: #b91c1c;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  font-size: 14px; color: var(--fg); background: var(--bg);
}
body { margin: 0; padding: 10px 16px 16px; }
header { display: flex; align-items: baseline; gap: 12px; flex-wrap: wrap; }
h1 { font-size: 20px; margin: 0; font-weight: 600; }
h2 { font-size: 14px; margin: 0; font-weight: 600; }
.muted { color: var(--muted); font-size: 12px; }
.badge { padding: 2px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; background: #e5e7eb; }
.badge.merging { background: #dbeafe; color: #1e40af; }
.badge.settled { background: #dcfce7; color: #166534; }
.badge.off { background: #f3f4f6; color: #4b5563; }
.problem { color: var(--bad); font-weight: 600; }
.kpis { display: grid; grid-template-columns: repeat(6, 1fr); gap: 10px; margin: 10px 0; }
.kpi { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 6px 10px; }
.kpi .value { font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; white-space: nowrap; }
.kpi .label { color: var(--muted); font-size: 12px; }
.grid { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 10px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; min-width: 0; }
.card .sub { color: var(--muted); font-size: 11px; margin: 2px 0 4px; height: 26px; overflow: hidden; }
.chart { width: 100%; height: 200px; position: relative; }
.chart canvas { display: block; }
.chart .empty { position: absolute; inset: 0; display: flex; align-items: center; justify-content: center; color: var(--muted); }
.uplot { font-family: inherit; }
.u-legend { font-size: 11px; }
.u-legend .u-series > * { padding: 1px 2px; }
.u-legend.u-inline tr { margin-right: 6px; }
.u-legend .u-series:first-child { display: none; } /* the time: the axis shows it */
.u-legend .u-marker { width: 10px; height: 10px; }
section.table { margin-top: 10px; background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; }
table { border-collapse: collapse; width: 100%; margin-top: 6px; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { color: var(--muted); font-weight: 600; font-size: 12px; }
td.num, th.num { text-align: right; }
tr.other td { color: var(--muted); font-style: italic; }
footer { margin-top: 10px; }
a { color: var(--accent); }
@media (max-width: 1000px) {
  .grid { grid-template-columns: 1fr; }
  .kpis { grid-template-columns: repeat(3, 1fr); }
}
`;
