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
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { estimateGroup, readKsm, readSketchFile, setKsm } from '../lib/index.js';
import type { Sketch } from '../lib/index.js';
import { runCli, waitForQuietHost } from './helpers/agent.js';
import { withSavedKsm } from './helpers/ksm.js';
import { stopAllQemu } from './helpers/qemu.js';
import { converge, guestContents, startFilledGuest } from './helpers/fingerprint-guests.js';

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

test.serial('predicted pages_sharing of pairs and of all three, from sketches taken apart, is within 5% of the kernel', async (t) => {
  t.timeout(120_000);
  const contents = await guestContents();
  const names = Object.keys(contents);

  // Sketch each guest, KSM not merging (run=0 held under the lock while they run).
  const sketchFile = path.join(tmp, 'acc.fp');
  // A fixed key: the sample, and so the outcome, is the same on every run on this host.
  const keyFile = path.join(tmp, 'fp.key');
  await writeFile(keyFile, `${createHash('sha256').update('samepage fingerprint accuracy test').digest('hex')}\n`, { mode: 0o600 });
  await withSavedKsm(async () => {
    await setKsm({ run: 0 });
    for (const name of names) await startFilledGuest(name, contents[name] as Buffer);
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
      for (const i of g) guests.push(await startFilledGuest(names[i] as string, contents[names[i] as string] as Buffer));
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
