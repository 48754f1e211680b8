// PNGs of the seed report's plots (seed-report.ts), drawn by uPlot, the chart library the status
// page already ships (a dependency), in Debian's Chromium driven by playwright-core (already a
// devDependency; .ci/run installs chromium for the status-page test). So the report adds no
// package: no browser download, no copied source, and its charts look like the status page's.
// Each plot is a page of exactly width × height CSS pixels at device scale 1, screenshot clipped
// to it: the PNG has that size in pixels.
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { PLOT_SIZE, type Plot } from './seed-report.js';

export const CHROMIUM = process.env['SAMEPAGE_CHROMIUM'] ?? '/usr/bin/chromium';
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

const TITLE_PX = 34;
const LEGEND_PX = 56;

/** Runs in the page: draws one plot into #plot, exactly w × h. */
function draw(plot: Plot, w: number, h: number): void {
  // (browser code: no imports; uPlot is the global the IIFE build defines)
  const doc = (globalThis as unknown as { document: { getElementById(id: string): HTMLLike; createElement(t: string): HTMLLike } }).document;
  interface HTMLLike {
    style: Record<string, string>;
    textContent: string | null;
    appendChild(c: HTMLLike): void;
    getContext?(k: '2d'): Ctx;
    width?: number;
    height?: number;
  }
  interface Ctx {
    fillStyle: string;
    strokeStyle: string;
    font: string;
    textAlign: string;
    textBaseline: string;
    lineWidth: number;
    fillRect(x: number, y: number, w: number, h: number): void;
    beginPath(): void;
    moveTo(x: number, y: number): void;
    lineTo(x: number, y: number): void;
    stroke(): void;
    fillText(t: string, x: number, y: number): void;
    save(): void;
    restore(): void;
    translate(x: number, y: number): void;
    rotate(a: number): void;
  }
  const root = doc.getElementById('plot');
  root.style['width'] = `${w}px`;
  root.style['height'] = `${h}px`;
  const title = doc.createElement('div');
  title.textContent = plot.title;
  Object.assign(title.style, { height: `${TITLE_PX}px`, lineHeight: `${TITLE_PX}px`, font: '600 15px sans-serif', paddingLeft: '12px' });
  root.appendChild(title);
  const bodyH = h - TITLE_PX;
  if (plot.kind === 'lines') {
    const U = (globalThis as unknown as { uPlot: { new (opts: unknown, data: unknown, el: unknown): unknown; join(tables: unknown[]): unknown } }).uPlot;
    const tables = plot.series.map((s) => [s.x, s.y]);
    const data = U.join(tables);
    const markers = plot.markers;
    const opts = {
      width: w,
      height: bodyH - LEGEND_PX,
      legend: { show: true, live: false },
      cursor: { show: false },
      scales: { x: { time: false } },
      axes: [
        { label: plot.xLabel, size: 50 },
        { label: plot.yLabel, size: 70 },
      ],
      series: [{ label: 't' }, ...plot.series.map((s) => ({ label: s.label, stroke: s.color, width: 2, spanGaps: true, points: { show: false } }))],
      hooks: {
        draw: [
          (u: { ctx: Ctx; bbox: { left: number; top: number; width: number; height: number }; valToPos(v: number, scale: string, canvas: boolean): number }) => {
            const { ctx } = u;
            ctx.save();
            ctx.strokeStyle = '#9ca3af';
            ctx.lineWidth = 1;
            ctx.font = '12px sans-serif';
            ctx.fillStyle = '#4b5563';
            ctx.textAlign = 'left';
            ctx.textBaseline = 'top';
            markers.forEach((m, i) => {
              const x = u.valToPos(m.x, 'x', true);
              ctx.beginPath();
              ctx.moveTo(x, u.bbox.top);
              ctx.lineTo(x, u.bbox.top + u.bbox.height);
              ctx.stroke();
              ctx.fillText(m.label, x + 4, u.bbox.top + 4 + 16 * i);
            });
            ctx.restore();
          },
        ],
      },
    };
    new U(opts, data, root);
    return;
  }
  const canvas = doc.createElement('canvas');
  canvas.width = w;
  canvas.height = bodyH;
  root.appendChild(canvas);
  const ctx = canvas.getContext?.('2d') as Ctx;
  const left = 70;
  const right = 20;
  const top = 16;
  const bottom = 60;
  const ph = bodyH - top - bottom;
  const pw = w - left - right;
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, w, bodyH);
  ctx.font = '12px sans-serif';
  ctx.strokeStyle = '#e5e7eb';
  ctx.fillStyle = '#374151';
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (let i = 0; i <= 5; i++) {
    const v = (plot.yMax * i) / 5;
    const y = top + ph - (ph * i) / 5;
    ctx.beginPath();
    ctx.moveTo(left, y);
    ctx.lineTo(left + pw, y);
    ctx.stroke();
    ctx.fillText(v.toFixed(2), left - 8, y);
  }
  ctx.save();
  ctx.translate(16, top + ph / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textAlign = 'center';
  ctx.fillText(plot.yLabel, 0, 0);
  ctx.restore();
  const slot = pw / Math.max(1, plot.bars.length);
  plot.bars.forEach((b, i) => {
    const bh = (ph * Math.min(b.value, plot.yMax)) / plot.yMax;
    const x = left + slot * i + slot * 0.2;
    ctx.fillStyle = b.color;
    ctx.fillRect(x, top + ph - bh, slot * 0.6, bh);
    ctx.fillStyle = '#111827';
    ctx.textAlign = 'center';
    ctx.textBaseline = 'bottom';
    ctx.fillText(b.value.toFixed(3), x + slot * 0.3, top + ph - bh - 2);
    ctx.textBaseline = 'top';
    ctx.fillText(b.label, x + slot * 0.3, top + ph + 8);
  });
}

/** Renders every plot to OUTDIR/plot.file; returns the files written. */
export async function renderPlots(plots: readonly Plot[], outDir: string, size = PLOT_SIZE): Promise<string[]> {
  if (plots.length === 0) return [];
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: the plots are drawn in Debian's Chromium (apt-get install chromium), or set SAMEPAGE_CHROMIUM`);
  const uplotDir = path.dirname(require.resolve('uplot/dist/uPlot.iife.min.js'));
  const profile = await mkdtemp(path.join(os.tmpdir(), 'samepage-plots-'));
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: size, deviceScaleFactor: 1 });
  const written: string[] = [];
  try {
    for (const plot of plots) {
      // A fresh page per plot: one page's globals (uPlot, the constants) never meet the next's.
      const page = await context.newPage();
      const problems: string[] = [];
      page.on('pageerror', (e) => problems.push(e.message));
      await page.setContent('<!doctype html><html><head><style>html,body{margin:0;background:#fff;overflow:hidden}#plot{background:#fff;overflow:hidden}</style></head><body><div id="plot"></div></body></html>');
      await page.addStyleTag({ path: path.join(uplotDir, 'uPlot.min.css') });
      await page.addScriptTag({ path: path.join(uplotDir, 'uPlot.iife.min.js') });
      await page.addScriptTag({ content: `window.__draw = ${draw.toString()}; const TITLE_PX = ${TITLE_PX}, LEGEND_PX = ${LEGEND_PX};` });
      await page.evaluate(([p, w, h]) => (globalThis as unknown as { __draw(p: unknown, w: number, h: number): void }).__draw(p, w, h), [plot, size.width, size.height] as const);
      if (problems.length > 0) throw new Error(`drawing ${plot.file}: ${problems.join('; ')}`);
      const png = await page.screenshot({ clip: { x: 0, y: 0, width: size.width, height: size.height }, type: 'png' });
      const file = path.join(outDir, plot.file);
      await writeFile(file, png);
      written.push(file);
      await page.close();
    }
  } finally {
    await context.close().catch(() => undefined);
    await rm(profile, { recursive: true, force: true });
  }
  return written;
}
