// Just enough PromQL reading to check a dashboard against what an exporter exports: the metric
// names an expression selects, the labels its matchers, `by (...)` lists and legends use, and
// the Prometheus text format's series.

/** Aggregations, functions and keywords: words in an expression that are not metric names. */
const NOT_METRICS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'offset', 'bool', 'and', 'or', 'unless', 'inf', 'nan']);

/** The metric names an expression selects. */
export function metricNames(expr: string): string[] {
  let e = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""'); // label values and other strings
  e = e.replace(/\{[^}]*\}/g, ' '); // label matchers
  e = e.replace(/\[[^\]]*\]/g, ' '); // range and subquery durations
  e = e.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' '); // label lists
  const out = new Set<string>();
  // Not preceded by a digit or a dot: "1e9" is a number, not the metric "e9".
  for (const m of e.matchAll(/(?<![0-9.A-Za-z_:$])[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const rest = e.slice((m.index ?? 0) + m[0].length).trimStart();
    if (rest.startsWith('(')) continue; // a function or an aggregation
    if (NOT_METRICS.has(m[0].toLowerCase())) continue;
    out.add(m[0]);
  }
  return [...out];
}

/** For each `metric{...}` selector: the metric and the label names its matchers use. */
export function selectorLabels(expr: string): { metric: string; labels: string[] }[] {
  const out: { metric: string; labels: string[] }[] = [];
  for (const m of expr.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}/g)) {
    const labels = [...(m[2] as string).matchAll(/([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((l) => l[1] as string);
    out.push({ metric: m[1] as string, labels });
  }
  return out;
}

/** Label names in `by (...)` / `without (...)` lists and in a legend's {{label}} references. */
export function groupingLabels(expr: string, legend = ''): string[] {
  const out = new Set<string>();
  for (const m of expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)) {
    for (const l of (m[1] as string).split(',')) if (l.trim() !== '') out.add(l.trim());
  }
  for (const m of legend.matchAll(/\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g)) out.add(m[1] as string);
  return [...out];
}

export interface Exposition {
  /** Every metric with a # TYPE line. */
  names: Set<string>;
  /** Label names seen on each metric's samples. */
  labels: Map<string, Set<string>>;
  /** Metrics with at least one sample. */
  sampled: Set<string>;
}

/** Reads the Prometheus text format (what GET /metrics returns). */
export function parseExposition(text: string): Exposition {
  const names = new Set<string>();
  const labels = new Map<string, Set<string>>();
  const sampled = new Set<string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) \S+$/.exec(line);
    if (type !== null) names.add(type[1] as string);
    if (line.startsWith('#') || line.trim() === '') continue;
    const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{([^}]*)\})? /.exec(line);
    if (m === null) continue;
    const name = m[1] as string;
    sampled.add(name);
    const set = labels.get(name) ?? new Set<string>();
    for (const l of (m[2] ?? '').matchAll(/([A-Za-z_][A-Za-z0-9_]*)="/g)) set.add(l[1] as string);
    labels.set(name, set);
  }
  return { names, labels, sampled };
}

/** Prometheus text → series ("name{labels}") → value. */
export function parseSamples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}
