// The VM-by-VM sharing matrix as a heat map: cell (row i, column j) is the KSM pages of VM i that
// VM j maps too, coloured on a square-root scale (a few big pairs would otherwise wash out the
// rest) and labelled in MiB where it fits. The diagonal has no meaning here and is left grey.
import type { MatrixResponse } from '../../../api-types.js';
import { FONT, emptyNote, fitCanvas, fitText } from './canvas.js';
import { formatBytes } from './format.js';

const LOW: [number, number, number] = [239, 246, 255];
const HIGH: [number, number, number] = [30, 58, 138];
const ZERO = '#f8fafc';
const DIAGONAL = '#e5e7eb';
const PAGE = 4096;

/** Colour of a share f in [0, 1] (hex, so the exact pixels can be found again). */
export function heatColor(f: number): string {
  const c = LOW.map((lo, k) => Math.round(lo + ((HIGH[k] as number) - lo) * Math.sqrt(Math.min(1, Math.max(0, f)))));
  return `#${c.map((v) => v.toString(16).padStart(2, '0')).join('')}`;
}

export function drawHeatmap(container: HTMLElement, m: MatrixResponse): void {
  const canvas = container.querySelector('canvas') as HTMLCanvasElement;
  const width = container.clientWidth;
  const height = container.clientHeight - 4;
  const ctx = fitCanvas(canvas, width, height);
  const n = m.names.length;
  if (m.error !== undefined || n < 2) {
    emptyNote(container, m.error !== undefined ? `not read: ${m.error}` : 'needs two VMs or more');
    container.dataset.colors = '';
    return;
  }
  emptyNote(container, undefined);
  ctx.font = FONT;
  const labelW = Math.min(width * 0.3, Math.max(...m.names.map((s) => ctx.measureText(s).width)) + 8);
  const top = 18;
  const legend = 22;
  const cell = Math.floor(Math.min((width - labelW) / n, (height - top - legend) / n, 90));
  const max = Math.max(1, ...m.pages.flatMap((row, i) => row.filter((_, j) => j !== i)));
  let maxColor = '';
  for (let i = 0; i < n; i++) {
    ctx.fillStyle = '#1d2430';
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    ctx.fillText(fitText(ctx, m.names[i] as string, labelW - 8), labelW - 6, top + i * cell + cell / 2);
    ctx.textAlign = 'center';
    ctx.textBaseline = 'bottom';
    ctx.fillText(fitText(ctx, m.names[i] as string, cell - 4), labelW + i * cell + cell / 2, top - 3);
    for (let j = 0; j < n; j++) {
      const v = m.pages[i]?.[j] ?? 0;
      const color = i === j ? DIAGONAL : v === 0 ? ZERO : heatColor(v / max);
      if (i !== j && v === max) maxColor = color;
      ctx.fillStyle = color;
      ctx.fillRect(labelW + j * cell, top + i * cell, cell - 2, cell - 2);
      if (i !== j && cell >= 44) {
        ctx.fillStyle = v / max > 0.35 ? '#ffffff' : '#1d2430';
        ctx.textAlign = 'center';
        ctx.textBaseline = 'middle';
        ctx.fillText(fitText(ctx, formatBytes(v * PAGE), cell - 6), labelW + j * cell + (cell - 2) / 2, top + i * cell + (cell - 2) / 2);
      }
    }
  }
  // Legend: the scale from 0 to the largest cell.
  const ly = top + n * cell + 6;
  const lw = Math.min(160, width - labelW - 100);
  for (let k = 0; k < lw; k++) {
    ctx.fillStyle = heatColor(k / (lw - 1));
    ctx.fillRect(labelW + k, ly, 1, 10);
  }
  ctx.fillStyle = '#5d6878';
  ctx.textAlign = 'left';
  ctx.textBaseline = 'middle';
  ctx.fillText(`0 … ${formatBytes(max * PAGE)}`, labelW + lw + 6, ly + 5);
  container.dataset.colors = maxColor;
}
