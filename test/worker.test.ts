// The addon is context-aware: it loads and scans in worker threads, and a worker that ends (or is
// terminated) in the middle of a scan tears down cleanly.
import test from 'ava';
import path from 'node:path';
import { Worker } from 'node:worker_threads';

const LIB = path.resolve(__dirname, '../lib/index.js');

function runWorker(code: string): { worker: Worker; done: Promise<unknown> } {
  const worker = new Worker(`const { parentPort } = require('node:worker_threads'); const lib = require(${JSON.stringify(LIB)}); (async () => { ${code} })().catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }));`, { eval: true });
  const done = new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (c) => resolve({ exit: c }));
  });
  return { worker, done };
}

test('a scan in a worker thread gives the same result as on the main thread', async (t) => {
  const { done } = runWorker(`
    const buf = lib.allocMergeable(64 * 4096);
    new Uint8Array(buf).fill(9);
    const s = new lib.Scanner();
    s.addBuffer(buf);
    const r = await s.scan({ passes: 2 });
    await s.close();
    parentPort.postMessage({ shared: r.counters.pages_shared, sharing: r.counters.pages_sharing });
  `);
  t.deepEqual(await done, { shared: 1, sharing: 63 });
});

test('two workers scan at once, each with its own engine', async (t) => {
  const code = (n: number) => `
    const buf = lib.allocMergeable(${n} * 4096);
    new Uint8Array(buf).fill(${n % 250});
    const s = new lib.Scanner();
    s.addBuffer(buf);
    const r = await s.scan({ passes: 3 });
    await s.close();
    parentPort.postMessage(r.counters.pages_sharing);
  `;
  const [a, b] = [runWorker(code(300)), runWorker(code(100))];
  t.deepEqual(await Promise.all([a.done, b.done]), [298, 99]);
});

test('terminating a worker in the middle of a long scan is clean', async (t) => {
  const { worker, done } = runWorker(`
    const buf = lib.allocMergeable(16384 * 4096);
    const u = new Uint32Array(buf);
    for (let i = 0; i < u.length; i++) u[i] = i;
    const s = new lib.Scanner({ smartScan: false });
    s.addBuffer(buf);
    parentPort.postMessage('scanning');
    await s.scan({ passes: 1000000 });
  `);
  t.is(await done, 'scanning');
  await new Promise((r) => setTimeout(r, 100));
  const code = await worker.terminate();
  t.is(code, 1);
  // The main thread (and its own engine) carries on.
  const lib = require(LIB) as typeof import('../lib/index.js');
  const s = new lib.Scanner();
  s.addBuffer(lib.allocMergeable(8192));
  t.is((await s.scan()).counters.pages_scanned, 2);
  await s.close();
});

test('a worker that ends with a scan running exits cleanly', async (t) => {
  const { done } = runWorker(`
    const buf = lib.allocMergeable(8192 * 4096);
    new Uint32Array(buf).forEach((_, i, a) => { a[i] = i; });
    const s = new lib.Scanner({ smartScan: false });
    s.addBuffer(buf);
    s.scan({ passes: 1000000 }).catch(() => {});
    setTimeout(() => process.exit(0), 100);
  `);
  t.deepEqual(await done, { exit: 0 });
});
