// A canvas sized to its container in device pixels (sharp on high-DPI screens), and the "nothing
// to show" note the bar chart and the heat map put in place of a drawing.

/** Resizes `canvas` to width × height CSS pixels and returns a context in CSS pixels. */
export function fitCanvas(canvas: HTMLCanvasElement, width: number, height: number): CanvasRenderingContext2D {
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(width * dpr));
  canvas.height = Math.max(1, Math.round(height * dpr));
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext('2d');
  if (ctx === null) throw new Error('no 2D canvas context');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  return ctx;
}

/** Shows `text` over the container (or removes the note when text is undefined). */
export function emptyNote(container: HTMLElement, text: string | undefined): void {
  let note = container.querySelector<HTMLElement>('.empty');
  if (text === undefined) {
    note?.remove();
    return;
  }
  if (note === null) {
    note = document.createElement('div');
    note.className = 'empty';
    container.append(note);
  }
  note.textContent = text;
}

/** `text` cut with an ellipsis to fit `max` pixels. */
export function fitText(ctx: CanvasRenderingContext2D, text: string, max: number): string {
  if (ctx.measureText(text).width <= max) return text;
  let s = text;
  while (s.length > 1 && ctx.measureText(`${s}…`).width > max) s = s.slice(0, -1);
  return `${s}…`;
}

export const FONT = '12px system-ui, "DejaVu Sans", sans-serif';
