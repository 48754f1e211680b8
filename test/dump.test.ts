// A memory dump written by QEMU itself (HMP dump-guest-memory, an ELF core with one PT_LOAD per
// RAM block, guest-physical addresses in p_paddr) gives the engine what the live guest gives it:
// the same merged contents, page for page, once the guest is paused.
import test from 'ava';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { Scanner } from '../lib/index.js';
import { startGuests, stopAll } from '../scripts/qemu/harness.js';
import { hmp } from './helpers/qemu.js';

test.after.always(async () => {
  await stopAll();
});

test('a dump-guest-memory ELF core and the live guest give the same merges', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'samepage-dump-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const monitor = path.join(dir, 'monitor.sock');
  const [guest] = await startGuests([
    {
      name: 'dumped',
      memMiB: 256,
      thp: false,
      fill: { shared: { amount: { MiB: 16 }, blockPages: 64, seed: 5 }, hot: { copies: 300, seed: 6 }, unique: { amount: { MiB: 8 }, source: 'name' } },
      qemuArgs: ['-monitor', `unix:${monitor},server=on,wait=off`],
    },
  ]);
  if (!guest) throw new Error('no guest');
  // Paused, the guest's memory stays as it is between the live scan and the dump.
  await hmp(monitor, 'stop');
  const live = new Scanner({ useZeroPages: true });
  await live.addProcess(guest.pid, { guestRamOnly: true });
  const a = (await live.scan({ passes: 2 })).counters;
  await live.close();

  const core = path.join(dir, 'guest.core');
  const reply = await hmp(monitor, `dump-guest-memory ${core}`);
  t.is(reply.trim(), '', `dump-guest-memory said: ${reply}`);
  t.true(statSync(core).size > 256 * 1024 * 1024);
  const fromDump = new Scanner({ useZeroPages: true });
  const id = await fromDump.addDump(core, { name: 'core' });
  const src = fromDump.sources().find((s) => s.id === id);
  // All of guest RAM, plus the small ROM/firmware blocks QEMU also dumps.
  t.true((src?.pages ?? 0) >= (256 * 1024 * 1024) / 4096, `${src?.pages} pages in the dump`);
  t.true((src?.ranges ?? 0) >= 1);
  const b = (await fromDump.scan({ passes: 2 })).counters;
  // The dump has one more block than guest RAM: the BIOS ROM mapped just below 4 GiB, whose pages
  // also sit, shadowed, in guest RAM. Its pages are the only difference.
  const romStart = 2 ** 32 - 256 * 1024;
  const romMembers = fromDump
    .groups()
    .flatMap((g) => g.members)
    .filter((m) => m.address >= romStart && m.address < 2 ** 32).length;
  await fromDump.close();
  t.log(`live: shared ${a.pages_shared} sharing ${a.pages_sharing} zero ${a.ksm_zero_pages}; dump: shared ${b.pages_shared} sharing ${b.pages_sharing} zero ${b.ksm_zero_pages}`);
  // Non-zero contents are present both ways; zero pages never touched by the guest are in the
  // dump only (as zeros), so they count as zero pages there.
  t.log(`ROM pages merged with guest RAM pages in the dump: ${romMembers}`);
  t.true(a.pages_sharing > 4000);
  // Each ROM page that matches adds one mapping: a new merged page (ROM + its RAM twin) or one
  // more mapping of an existing one.
  t.is(b.pages_sharing - a.pages_sharing, romMembers);
  t.true(b.pages_shared - a.pages_shared <= romMembers && b.pages_shared >= a.pages_shared);
  t.true(b.ksm_zero_pages >= a.ksm_zero_pages);
});
