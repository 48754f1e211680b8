// scripts/grafana/ksm-agent.json: an importable Grafana dashboard (the classic JSON model with a
// DS_PROMETHEUS input), whose every query asks for metrics and labels that a real `ksm-agent run`
// exports. The agent runs on this host with a real QEMU process as its VM (paused, -S, and
// mem-merge=off so KSM never touches it), so the per-VM series exist with their `vm` label.
import test from 'ava';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { listVms } from '../lib/index.js';
import { startAgent } from './helpers/agent.js';
import type { AgentProcess } from './helpers/agent.js';
import { withSavedKsm } from './helpers/ksm.js';
import { groupingLabels, metricNames, parseExposition, selectorLabels } from './helpers/promql.js';

const FILE = path.resolve(__dirname, '../../scripts/grafana/ksm-agent.json');
const DS = { type: 'prometheus', uid: '${DS_PROMETHEUS}' };
/** Labels Prometheus adds to every scraped series. */
const TARGET_LABELS = ['instance', 'job'];
const BUILTIN_VARS = ['__rate_interval', '__interval', '__range'];
const VM_NAME = `graf-vm-${process.pid}`;

interface Target {
  datasource?: unknown;
  expr?: string;
  legendFormat?: string;
  refId?: string;
}
interface Panel {
  id?: number;
  type?: string;
  title?: string;
  datasource?: unknown;
  gridPos?: { x: number; y: number; w: number; h: number };
  targets?: Target[];
  panels?: Panel[];
  collapsed?: boolean;
  repeat?: string;
}
interface Variable {
  name: string;
  type: string;
  datasource?: unknown;
  query?: { query?: string } | string;
  multi?: boolean;
  includeAll?: boolean;
}
interface Dashboard {
  __inputs?: { name: string; type: string; pluginId: string }[];
  __requires?: { type: string; id: string }[];
  title?: string;
  uid?: string;
  schemaVersion?: number;
  panels?: Panel[];
  templating?: { list: Variable[] };
}

const dashboard = JSON.parse(readFileSync(FILE, 'utf8')) as Dashboard;

/** Every panel, the ones inside collapsed rows too. */
function allPanels(d: Dashboard): Panel[] {
  return (d.panels ?? []).flatMap((p) => [p, ...(p.panels ?? [])]);
}

function variableQuery(v: Variable): string {
  return typeof v.query === 'string' ? v.query : (v.query?.query ?? '');
}

/** Every PromQL query in the dashboard with where it is: panel targets and variable queries. */
function queries(d: Dashboard): { where: string; expr: string; legend: string }[] {
  const out: { where: string; expr: string; legend: string }[] = [];
  for (const p of allPanels(d)) for (const t of p.targets ?? []) out.push({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr ?? '', legend: t.legendFormat ?? '' });
  for (const v of d.templating?.list ?? []) {
    // label_values(selector, label): the selector is PromQL, the label must exist on it.
    const m = /^label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\)$/.exec(variableQuery(v));
    if (m !== null) out.push({ where: `variable $${v.name}`, expr: `${m[1] as string}`, legend: `{{${m[2] as string}}}` });
  }
  return out;
}

test('the dashboard is importable: classic model, DS_PROMETHEUS input, valid panels and layout, per-VM panels on $vm', (t) => {
  const d = dashboard;
  t.is(typeof d.title, 'string');
  t.regex(d.uid ?? '', /^[A-Za-z0-9_-]{1,40}$/);
  t.true(Number.isInteger(d.schemaVersion) && (d.schemaVersion ?? 0) >= 36, `schemaVersion ${d.schemaVersion}`);
  t.deepEqual(d.__inputs?.map((i) => [i.name, i.type, i.pluginId]), [['DS_PROMETHEUS', 'datasource', 'prometheus']]);
  t.truthy(d.__requires?.find((r) => r.type === 'datasource' && r.id === 'prometheus'));
  t.truthy(d.__requires?.find((r) => r.type === 'grafana'));

  const panels = allPanels(d);
  const ids = panels.map((p) => p.id);
  t.true(ids.every((id) => Number.isInteger(id)), 'every panel has an id');
  t.is(new Set(ids).size, ids.length, 'panel ids are unique');
  const required = new Set((d.__requires ?? []).filter((r) => r.type === 'panel').map((r) => r.id));
  for (const p of panels) {
    const g = p.gridPos;
    t.truthy(g, `${p.title}: gridPos`);
    if (g === undefined) continue;
    t.true([g.x, g.y, g.w, g.h].every((v) => Number.isInteger(v) && v >= 0) && g.w > 0 && g.h > 0 && g.x + g.w <= 24, `${p.title}: gridPos ${JSON.stringify(g)}`);
    if (p.type === 'row') continue;
    t.true(required.has(p.type ?? ''), `${p.title}: panel type ${p.type} is in __requires`);
    t.deepEqual(p.datasource, DS, `${p.title}: datasource is the DS_PROMETHEUS input`);
    t.true((p.targets ?? []).length > 0, `${p.title}: has queries`);
    const refs = (p.targets ?? []).map((x) => x.refId);
    t.is(new Set(refs).size, refs.length, `${p.title}: refIds unique`);
    for (const x of p.targets ?? []) {
      t.deepEqual(x.datasource, DS, `${p.title} ${x.refId}: datasource`);
      t.true((x.expr ?? '').length > 0, `${p.title} ${x.refId}: expr`);
    }
  }
  // No two panels of the open layout (top level, and each collapsed row's own) overlap.
  const overlaps: string[] = [];
  for (const group of [(d.panels ?? []), ...(d.panels ?? []).filter((p) => p.collapsed === true).map((p) => p.panels ?? [])]) {
    const boxes = group.filter((p) => p.gridPos !== undefined);
    for (const [i, a] of boxes.entries()) {
      for (const b of boxes.slice(i + 1)) {
        const ga = a.gridPos as NonNullable<Panel['gridPos']>;
        const gb = b.gridPos as NonNullable<Panel['gridPos']>;
        if (ga.x < gb.x + gb.w && gb.x < ga.x + ga.w && ga.y < gb.y + gb.h && gb.y < ga.y + ga.h) overlaps.push(`${a.title} / ${b.title}`);
      }
    }
  }
  t.deepEqual(overlaps, []);

  // Variables: every $var used is defined; $vm is a multi-value query variable on our data source.
  const vars = new Map((d.templating?.list ?? []).map((v) => [v.name, v]));
  const vm = vars.get('vm');
  t.is(vm?.type, 'query');
  t.deepEqual(vm?.datasource, DS);
  t.true(vm?.multi === true && vm.includeAll === true);
  for (const q of queries(d)) {
    for (const m of q.expr.matchAll(/\$\{?([A-Za-z_][A-Za-z0-9_]*)/g)) {
      const name = m[1] as string;
      t.true(vars.has(name) || BUILTIN_VARS.includes(name), `${q.where}: $${name} is defined`);
    }
  }
  // Per-VM panels: several filter on $vm, and a row repeats per VM.
  const perVm = panels.filter((p) => (p.targets ?? []).some((x) => /vm=~?"\$vm"/.test(x.expr ?? '')));
  t.true(perVm.length >= 8, `per-VM panels: ${perVm.map((p) => p.title).join(', ')}`);
  t.truthy(panels.find((p) => p.type === 'row' && p.repeat === 'vm'), 'a row repeated for each VM');
});

let dir = '';
let qemu: ChildProcess | undefined;
let agent: AgentProcess | undefined;

test.before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'samepage-grafana-'));
});
test.after.always(async () => {
  await agent?.stop('SIGKILL');
  qemu?.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

test.serial('every metric and label the dashboard queries is exported by a running ksm-agent', async (t) => {
  // A real QEMU process, stopped before its first instruction (-S), its RAM never mergeable.
  qemu = spawn('qemu-system-x86_64', ['-name', VM_NAME, '-machine', 'pc,mem-merge=off', '-m', '64', '-nodefaults', '-display', 'none', '-monitor', 'none', '-S'], { stdio: 'ignore' });
  const failed = new Promise<never>((_, reject) => qemu?.once('error', (e) => reject(new Error(`qemu-system-x86_64 did not start (${e.message}): bash scripts/qemu/setup.sh installs it`))));
  for (let i = 0; i < 100 && !(await listVms({ memory: false })).some((v) => v.name === VM_NAME); i++) await Promise.race([sleep(100), failed]);
  t.truthy((await listVms({ memory: false })).find((v) => v.name === VM_NAME), 'the QEMU process is a VM');

  const text = await withSavedKsm(async () => {
    const config = path.join(dir, 'agent.json');
    await writeFile(config, JSON.stringify({ thresholdPercent: 0, thresholdMinKiB: 0, ksmtunedConf: null, intervalSeconds: 0.5, listen: '127.0.0.1:0', vmMetricsSeconds: 1, vms: { [VM_NAME]: { tenant: 'acme' } } }));
    agent = startAgent(['--config', config, '--state-file', path.join(dir, 'state.json'), '--lock-file', path.join(dir, 'agent.lock')]);
    const url = await agent.metricsUrl();
    await agent.waitForLine(/started pid=\d+/);
    const body = await (await fetch(url)).text();
    t.is(await agent.stop('SIGTERM'), 0);
    agent = undefined;
    return body;
  });
  const exported = parseExposition(text);
  t.true((exported.labels.get('samepage_vm_saved_bytes') ?? new Set()).has('vm'), 'per-VM series carry a vm label');
  t.true(text.includes(`samepage_vm_info{vm="${VM_NAME}",tenant="acme",opted_out="1"} 1`), 'the QEMU process is the VM in the metrics');

  const checked = new Set<string>();
  const unsampled = new Set<string>();
  for (const q of queries(dashboard)) {
    const names = metricNames(q.expr);
    t.true(names.length > 0, `${q.where}: selects a metric: ${q.expr}`);
    for (const name of names) {
      t.true(exported.names.has(name), `${q.where}: ${name} is exported`);
      checked.add(name);
    }
    for (const { metric, labels } of selectorLabels(q.expr)) {
      // Labels show on samples only; a metric without any here is listed below.
      if (!exported.sampled.has(metric)) {
        unsampled.add(metric);
        continue;
      }
      for (const l of labels) t.true(TARGET_LABELS.includes(l) || (exported.labels.get(metric)?.has(l) ?? false), `${q.where}: ${metric} has label ${l}`);
    }
    // Labels a legend or a by() clause names must be on one of the metrics the query selects.
    for (const l of groupingLabels(q.expr, q.legend)) {
      t.true(TARGET_LABELS.includes(l) || names.some((n) => exported.labels.get(n)?.has(l)), `${q.where}: label ${l} is on ${names.join(' or ')}`);
    }
  }
  // Only cross-tenant sharing has no series here: no two tenants' VMs share pages on this host.
  t.deepEqual([...unsampled], ['samepage_vm_cross_tenant_pages']);
  t.log(`${checked.size} metrics queried, all exported: ${[...checked].sort().join(' ')}`);
  // The dashboard covers the node_exporter-compatible core and the per-VM series.
  for (const m of ['node_ksmd_general_profit_bytes', 'node_ksmd_pages_sharing', 'samepage_vm_saved_bytes', 'samepage_ksmd_cpu_seconds_total', 'samepage_agent_cache_bytes_reclaimed_total']) t.true(checked.has(m), m);
});
