// The status page: polls the agent's /api/ every 10 s (its history resolution) and redraws.
// body[data-rendered] counts completed refreshes, for people debugging and for the browser test.
import type { MatrixResponse, SummaryResponse, VmsResponse } from '../../../api-types.js';
import { drawBars } from './bars.js';
import { CHARTS, TimeChart } from './charts.js';
import { formatCount } from './format.js';
import { drawHeatmap } from './heatmap.js';
import { HistoryStore } from './history.js';
import { getJson } from './http.js';
import { drawSummary } from './summary.js';
import { drawTable } from './table.js';

const POLL_MS = 10_000;

function container(name: string): HTMLElement {
  const el = document.querySelector<HTMLElement>(`[data-chart="${name}"]`);
  if (el === null) throw new Error(`the page has no chart "${name}"`);
  return el;
}

function showProblem(text: string | undefined): void {
  const el = document.getElementById('problem') as HTMLElement;
  el.hidden = text === undefined;
  el.textContent = text ?? '';
}

function matrixNote(m: MatrixResponse): string {
  const parts = [`KSM pages of the row VM that the column VM maps too; from ${m.method}`];
  if (m.omitted.length > 0) parts.push(`${formatCount(m.omitted.length)} VMs with fewer KSM pages left out: ${m.omitted.join(', ')}`);
  return parts.join('. ');
}

async function main(): Promise<void> {
  const history = new HistoryStore();
  const charts = CHARTS.map((spec) => new TimeChart(spec, container(spec.name)));
  const table = document.getElementById('vm-table') as HTMLTableElement;
  let last: { vms?: VmsResponse; matrix?: MatrixResponse } = {};
  let rendered = 0;

  const redrawCanvases = () => {
    if (last.vms !== undefined) drawBars(container('vms'), last.vms.vms);
    if (last.matrix !== undefined) drawHeatmap(container('matrix'), last.matrix);
  };
  new ResizeObserver(redrawCanvases).observe(document.querySelector('main') as HTMLElement);

  let busy = false;
  const refresh = async () => {
    if (busy) return; // a slow answer (a big host's matrix) must not pile up requests
    busy = true;
    try {
      const [summary, vms, matrix] = await Promise.all([getJson<SummaryResponse>('api/summary'), getJson<VmsResponse>('api/vms'), getJson<MatrixResponse>('api/matrix'), history.poll()]);
      drawSummary(summary);
      for (const c of charts) c.update(history);
      last = { vms, matrix };
      redrawCanvases();
      drawTable(table, vms.vms);
      const note = document.getElementById('matrix-note');
      if (note !== null) note.textContent = matrixNote(matrix);
      showProblem(undefined);
      document.body.dataset.rendered = String(++rendered);
    } catch (err) {
      showProblem(err instanceof Error ? err.message : String(err));
    } finally {
      busy = false;
    }
  };
  await refresh();
  setInterval(() => void refresh(), POLL_MS);
}

void main();
