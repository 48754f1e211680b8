// SP_PROC_SOFT_DIRTY needs CONFIG_MEM_SOFT_DIRTY, which this host's kernel may lack (the engine then
// refuses the flag: native/core/test/test_process.c). Debian's 6.12 kernel has it, so the same C
// test runs inside a TCG guest booted with that kernel: a statically linked test_process, carried
// in on a raw disk, checks that soft-dirty tracking reads far fewer pages and gives exactly the
// counters of an engine that reads everything.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { startGuests, stopAll } from '../scripts/qemu/harness.js';

const root = path.resolve(__dirname, '../..');
const binary = path.join(root, 'build-release', 'test_process_static');

test.after.always(async () => {
  await stopAll();
});

test('soft-dirty scanning inside a guest whose kernel tracks soft-dirty bits', async (t) => {
  if (!existsSync(binary)) execFileSync('bash', [path.join(root, 'scripts/build-core.sh'), 'release'], { stdio: 'inherit' });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'samepage-softdirty-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // The disk is the binary, padded to whole 4 KiB blocks.
  const bytes = readFileSync(binary);
  const blocks = Math.ceil(bytes.length / 4096);
  const image = path.join(dir, 'test.img');
  writeFileSync(image, Buffer.concat([bytes, Buffer.alloc(blocks * 4096 - bytes.length)]));
  t.is(statSync(image).size % 4096, 0);

  const [guest] = await startGuests([{ name: 'softdirty', memMiB: 384, thp: false, disks: [{ path: image, format: 'raw' }] }]);
  if (!guest) throw new Error('no guest');
  const run = await guest.exec(
    `dd if=/dev/vda of=/tmp/test_process bs=4096 count=${blocks} 2>/dev/null && chmod +x /tmp/test_process && SP_TEST_FILTER=soft-dirty /tmp/test_process`,
    240_000,
  );
  t.log(run.stdout.trim());
  t.is(run.code, 0);
  t.regex(run.stdout, /^ok 1 soft-dirty: fewer reads, same result$/m);
  t.regex(run.stdout, /^1 passed, 0 failed$/m);
  // It really ran the soft-dirty path, not the "kernel lacks it" one.
  t.notRegex(run.stdout, /refused/);
});
