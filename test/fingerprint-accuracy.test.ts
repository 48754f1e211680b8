// Sketch predictions against the real KSM on this host. Three paused TCG guests hold known
// memory: A and B the same "OS image" (the host's shared libraries, 192 and 144 MiB of it), C
// another image (96 MiB of the host's /usr/bin) with 48 MiB of A's libraries; each also has pages of
// its own (and the files' own repeated pages). They are sketched apart with the real CLI (KSM not
// running), then each pair and the three together run alone under KSM until ksmd converges; the
// kernel's pages_sharing and general_profit must be within 5% of the prediction, pages_sharing also
// within 4 standard errors of the sketch. use_zero_pages=1. The key is fixed so that each run draws
// the same sample. With sketches holding every content (--entries 65536) the prediction equalled
// the kernel's pages_sharing exactly on this host. KSM settings are saved and restored.
import test from 'ava';
import { createHash } from 'node:crypto';
import { mkdtemp, open, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { findGuestRam } from '../lib/guest-ram.js';
import { estimateGroup, readKsm, readSketchFile, setKsm } from '../lib/index.js';
import type { Sketch } from '../lib/index.js';
import { runCli, waitForQuietHost } from './helpers/agent.js';
import { withSavedKsm } from './helpers/ksm.js';
import { startQemu, stopAllQemu } from './helpers/qemu.js';

const MIB = 2 ** 20;
const RAM = 320 * MIB;
const PAGE = 4096;
/** 288 KiB a sketch; the guests hold 38000-50000 distinct pages each, so the sketches are samples. */
const ENTRIES = 24576;
let tmp = '';

test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'samepage-fp-acc-'));
});
test.after.always(async () => {
  await stopAllQemu();
  await rm(tmp, { recursive: true, force: true });
});

/** Up to `bytes` of the regular files of `dir` (sorted by name), each padded to whole pages. */
async function image(dir: string, bytes: number, filter: (name: string) => boolean): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  for (const name of (await readdir(dir)).filter(filter).sort()) {
    if (total >= bytes) break;
    const file = path.join(dir, name);
    const st = await stat(file).catch(() => undefined);
    if (st === undefined || !st.isFile() || st.size === 0) continue;
    const data = await readFile(file);
    const padded = Buffer.alloc(Math.ceil(data.length / PAGE) * PAGE);
    data.copy(padded);
    parts.push(padded);
    total += padded.length;
  }
  const all = Buffer.concat(parts);
  if (all.length < bytes) throw new Error(`${dir} holds only ${all.length} bytes of files; the test needs ${bytes}`);
  return all.subarray(0, bytes);
}

/** `count` pages no other guest has: the guest's tag and the page number. */
function own(tag: number, count: number): Buffer {
  const b = Buffer.alloc(count * PAGE);
  for (let i = 0; i < count; i++) {
    b.writeUInt32LE(tag, i * PAGE);
    b.writeUInt32LE(i, i * PAGE + 4);
    b.writeUInt32LE(0x600d_f00d, i * PAGE + 2048);
  }
  return b;
}

async function fillGuest(pid: number, content: Buffer): Promise<void> {
  const ram = await findGuestRam(pid, RAM);
  const fh = await open(`/proc/${pid}/mem`, 'r+');
  try {
    await fh.write(content, 0, content.length, Number(ram.start));
  } finally {
    await fh.close();
  }
}

/** Runs ksmd fast until two full passes in a row change neither pages_shared nor pages_sharing. */
async function converge(): Promise<void> {
  await setKsm({ pages_to_scan: 10000, sleep_millisecs: 10, run: 1 });
  const start = (await readKsm()).counters.full_scans ?? 0;
  let last = { scans: start, key: '' };
  let steady = 0;
  for (let i = 0; i < 600; i++) {
    await sleep(100);
    const c = (await readKsm()).counters;
    const scans = c.full_scans ?? 0;
    if (scans === last.scans) continue;
    const key = `${c.pages_shared}/${c.pages_sharing}/${c.ksm_zero_pages}`;
    steady = key === last.key ? steady + (scans - last.scans) : 0;
    last = { scans, key };
    if (scans - start >= 4 && steady >= 2) break;
  }
  await setKsm({ run: 0 });
}

test.serial('predicted pages_sharing of pairs and of all three, from sketches taken apart, is within 5% of the kernel', async (t) => {
  t.timeout(120_000);
  const libs = await image('/usr/lib/x86_64-linux-gnu', 192 * MIB, (n) => n.includes('.so'));
  const bins = await image('/usr/bin', 96 * MIB, () => true);
  const contents: Record<string, Buffer> = {
    'acc-a': Buffer.concat([libs, own(0xa, 4096)]),
    'acc-b': Buffer.concat([libs.subarray(0, 144 * MIB), own(0xb, 8192)]),
    'acc-c': Buffer.concat([bins, libs.subarray(144 * MIB, 192 * MIB), own(0xc, 2048)]),
  };
  const names = Object.keys(contents);

  // Sketch each guest, KSM not merging (run=0 held under the lock while they run).
  const sketchFile = path.join(tmp, 'acc.fp');
  // A fixed key: the sample, and so the outcome, is the same on every run on this host.
  const keyFile = path.join(tmp, 'fp.key');
  await writeFile(keyFile, `${createHash('sha256').update('samepage fingerprint accuracy test').digest('hex')}\n`, { mode: 0o600 });
  await withSavedKsm(async () => {
    await setKsm({ run: 0 });
    for (const name of names) await fillGuest((await startQemu(['-m', String(RAM / MIB), '-name', name], RAM)).pid, contents[name] as Buffer);
    const r = await runCli(['fingerprint', '--key-file', keyFile, '--entries', String(ENTRIES), ...names.flatMap((n) => ['--vm', n]), '--out', sketchFile]);
    t.is(r.code, 0, r.stderr);
    t.log(r.stdout);
    await stopAllQemu();
  });
  const sketches: Sketch[] = (await readSketchFile(sketchFile)).sketches;
  t.deepEqual(sketches.map((s) => s.name), names);
  t.true(sketches.every((s) => !s.exact), 'the sketches are samples (more distinct contents than entries)');

  const groups = [[0, 1], [0, 2], [1, 2], [0, 1, 2]];
  const errors: number[] = [];
  const profitErrors: number[] = [];
  for (const g of groups) {
    const label = g.map((i) => names[i]).join('+');
    await withSavedKsm(async () => {
      await setKsm({ run: 2 });
      await setKsm({ use_zero_pages: true });
      const maxPageSharing = (await readKsm()).settings.max_page_sharing ?? 256;
      const guests = [];
      for (const i of g) {
        const name = names[i] as string;
        const q = await startQemu(['-m', String(RAM / MIB), '-name', name], RAM);
        await fillGuest(q.pid, contents[name] as Buffer);
        guests.push(q.pid);
      }
      await waitForQuietHost(guests, 60_000);
      await converge();
      const c = (await readKsm()).counters;
      const predicted = estimateGroup(sketches, g, { useZeroPages: true, maxPageSharing });
      const kernel = c.pages_sharing ?? 0;
      const err = (predicted.pagesSharing - kernel) / kernel;
      errors.push(Math.abs(err));
      t.log(
        `${label}: predicted pages_sharing ${predicted.pagesSharing} ±${predicted.stdErrPages}, kernel ${kernel} (${(err * 100).toFixed(2)}%); ` +
          `general_profit predicted ${predicted.generalProfit}, kernel ${c.general_profit} (ksm_zero_pages ${c.ksm_zero_pages} predicted ${predicted.ksmZeroPages}; THP zero ${predicted.thpZeroPages})`,
      );
      t.true(Math.abs(err) <= 0.05, `${label}: ${predicted.pagesSharing} vs kernel ${kernel}`);
      t.true(Math.abs(predicted.pagesSharing - kernel) <= 4 * predicted.stdErrPages + 0.005 * kernel, `${label}: within the sketch's error ±${predicted.stdErrPages}`);
      const profit = c.general_profit ?? 0;
      const profitErr = (predicted.generalProfit - profit) / profit;
      profitErrors.push(Math.abs(profitErr));
      t.true(Math.abs(profitErr) <= 0.05, `${label}: general_profit ${predicted.generalProfit} vs kernel ${profit}`);
      await stopAllQemu();
    });
  }
  t.log(`max |error|: pages_sharing ${(Math.max(...errors) * 100).toFixed(2)}%, general_profit ${(Math.max(...profitErrors) * 100).toFixed(2)}%`);
});
