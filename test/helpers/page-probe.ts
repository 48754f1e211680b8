// What the status page drew, read inside the page. Plain JavaScript in a string: the tests are
// compiled without DOM types (they would clash with Node's), and this runs in the browser.
//
// For each chart container ([data-chart]): its canvas size, how many pixels are painted at all,
// and for each colour the page says it drew (data-colors, "#rrggbb,...") how many opaque pixels
// have that colour (±6 per channel, for anti-aliasing); plus the table's rows.

export interface ChartProbe {
  name: string;
  width: number;
  height: number;
  painted: number;
  colors: Record<string, number>;
  points: number;
}

export interface RowProbe {
  name: string;
  pid: string;
  ramBytes: string;
  ksmPages: string;
  savedBytes: string;
  topPeer: string;
  topPeerPages: string;
  cells: string[];
}

export interface PageProbe {
  charts: ChartProbe[];
  rows: RowProbe[];
  rendered: number;
}

export const PROBE = `(() => {
  const rgb = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  const charts = [...document.querySelectorAll('[data-chart]')].map((el) => {
    const colors = (el.dataset.colors || '').split(',').filter((c) => c !== '');
    const counts = Object.fromEntries(colors.map((c) => [c, 0]));
    const canvas = el.querySelector('canvas');
    const out = { name: el.dataset.chart, width: 0, height: 0, painted: 0, colors: counts, points: Number(el.dataset.points || 0) };
    if (canvas === null || canvas.width === 0 || canvas.height === 0) return out;
    out.width = canvas.width;
    out.height = canvas.height;
    const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const want = colors.map(rgb);
    for (let i = 0; i < px.length; i += 4) {
      if (px[i + 3] === 0) continue;
      out.painted++;
      if (px[i + 3] !== 255) continue;
      want.forEach(([r, g, b], k) => {
        if (Math.abs(px[i] - r) <= 6 && Math.abs(px[i + 1] - g) <= 6 && Math.abs(px[i + 2] - b) <= 6) counts[colors[k]]++;
      });
    }
    return out;
  });
  const rows = [...document.querySelectorAll('#vm-table tbody tr')].map((tr) => ({
    name: tr.dataset.name, pid: tr.dataset.pid, ramBytes: tr.dataset.ramBytes, ksmPages: tr.dataset.ksmPages,
    savedBytes: tr.dataset.savedBytes, topPeer: tr.dataset.topPeer, topPeerPages: tr.dataset.topPeerPages,
    cells: [...tr.cells].map((td) => td.textContent),
  }));
  return { charts, rows, rendered: Number(document.body.dataset.rendered || 0) };
})()`;
