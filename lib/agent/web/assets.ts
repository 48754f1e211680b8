// The status page's files, all served by the agent itself (no CDN, works offline): the HTML and
// CSS (page.ts, style.ts), the browser code that client/tsconfig.json compiles into
// dist/lib/agent/web/browser/ (a tree like lib/'s: agent/web/client/main.js, api-types.js,
// format.js; inside dist/lib, so npm pack ships it), and uPlot from the uplot
// package, a runtime dependency resolved where npm installed it. Read once at start (≈ 200 KB).
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { SamepageError } from '../../errors.js';
import { STYLE_CSS } from './style.js';

export interface Asset {
  contentType: string;
  body: string | Buffer;
}

/** Where the compiled browser code is: beside this module in dist/lib/agent/web. */
export const BROWSER_DIR = path.join(__dirname, 'browser');
export const ENTRY = '/assets/app/agent/web/client/main.js';

const JS = 'text/javascript; charset=utf-8';
const CSS = 'text/css; charset=utf-8';

function jsFiles(dir: string, prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? jsFiles(path.join(dir, e.name), `${prefix}${e.name}/`) : e.name.endsWith('.js') ? [`${prefix}${e.name}`] : [],
  );
}

/**
 * URL path → file. Throws a SamepageError naming what is missing when the browser code was not
 * built (a checkout compiled with the main tsconfig only) or uplot is not installed.
 */
export function loadAssets(): Map<string, Asset> {
  const out = new Map<string, Asset>();
  out.set('/assets/style.css', { contentType: CSS, body: STYLE_CSS });
  let uplot: string;
  try {
    uplot = path.dirname(require.resolve('uplot/dist/uPlot.esm.js'));
  } catch (err) {
    throw new SamepageError('NOT_FOUND', 'the status page needs the uplot package, which is not installed: run npm install in the samepage package', { cause: err });
  }
  out.set('/assets/vendor/uPlot.esm.js', { contentType: JS, body: readFileSync(path.join(uplot, 'uPlot.esm.js')) });
  out.set('/assets/vendor/uPlot.min.css', { contentType: CSS, body: readFileSync(path.join(uplot, 'uPlot.min.css')) });
  let files: string[] = [];
  try {
    files = jsFiles(BROWSER_DIR);
  } catch {
    // reported below
  }
  for (const f of files) out.set(`/assets/app/${f}`, { contentType: JS, body: readFileSync(path.join(BROWSER_DIR, f)) });
  if (!out.has(ENTRY)) {
    throw new SamepageError('NOT_FOUND', `the status page's browser code is not built (${path.join(BROWSER_DIR, 'agent', 'web', 'client', 'main.js')} is missing): run npm run build:ts`, { path: BROWSER_DIR });
  }
  return out;
}
