// Saved memory per VM as horizontal bars on a canvas, largest first; "(other processes)" in grey.
// A VM can save less than nothing (its rmap_items cost more than its merged pages): such a bar
// goes left of the zero line.
import type { VmRow } from '../../../api-types.js';
import { FONT, emptyNote, fitCanvas, fitText } from './canvas.js';
import { formatBytes } from './format.js';

export const VM_COLORS = ['#2563eb', '#16a34a', '#d97706', '#7c3aed', '#db2777', '#0891b2', '#65a30d', '#dc2626'];
const OTHER = '#9ca3af';
const ROW = 24;
const BAR = 16;

export function vmColor(index: number): string {
  return VM_COLORS[index % VM_COLORS.length] as string;
}

export function drawBars(container: HTMLElement, rows: VmRow[]): void {
  const canvas = container.querySelector('canvas') as HTMLCanvasElement;
  const width = container.clientWidth;
  const sorted = rows.map((r, i) => ({ r, color: r.pid === null ? OTHER : vmColor(i) })).sort((a, b) => b.r.saved_bytes - a.r.saved_bytes);
  const height = Math.max(container.clientHeight - 4, sorted.length * ROW + 8);
  const ctx = fitCanvas(canvas, width, height);
  if (sorted.length === 0) {
    emptyNote(container, 'no QEMU VMs');
    container.dataset.colors = '';
    return;
  }
  emptyNote(container, undefined);
  ctx.font = FONT;
  ctx.textBaseline = 'middle';
  const labelW = Math.min(width * 0.35, Math.max(...sorted.map((s) => ctx.measureText(s.r.name).width)) + 8);
  const valueW = 72;
  const lo = Math.min(0, ...sorted.map((s) => s.r.saved_bytes));
  const hi = Math.max(0, ...sorted.map((s) => s.r.saved_bytes));
  const plotW = Math.max(10, width - labelW - valueW);
  const x = (v: number) => Math.round(labelW + ((v - lo) / (hi - lo || 1)) * plotW);
  const drawn = new Set<string>();
  sorted.forEach(({ r, color }, i) => {
    const y = 4 + i * ROW;
    ctx.fillStyle = '#1d2430';
    ctx.textAlign = 'left';
    ctx.fillText(fitText(ctx, r.name, labelW - 8), 0, y + ROW / 2);
    const x0 = x(0);
    const x1 = x(r.saved_bytes);
    if (x1 !== x0) {
      ctx.fillStyle = color;
      ctx.fillRect(Math.min(x0, x1), y + (ROW - BAR) / 2, Math.abs(x1 - x0), BAR);
      drawn.add(color);
    }
    ctx.fillStyle = r.saved_bytes < 0 ? '#b91c1c' : '#1d2430';
    ctx.fillText(formatBytes(r.saved_bytes), Math.max(x0, x1) + 6, y + ROW / 2);
  });
  ctx.fillStyle = '#9ca3af';
  ctx.fillRect(x(0), 0, 1, sorted.length * ROW + 8);
  container.dataset.colors = [...drawn].join(',');
}
