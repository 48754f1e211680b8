/**
 * The QEMU guest harness against real TCG guests: boot, fill, control channel, host-side view of
 * guest RAM, disks, failure reporting and cleanup. Needs root (setup.sh, /proc/PID/mem).
 * Does not touch /sys/kernel/mm/ksm.
 */
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import {
  countPagesEqual,
  ensureLab,
  expectedFill,
  FILL_KINDS,
  HarnessError,
  pageContent,
  startGuests,
  stopAll,
  sweepStaleRunDirs,
  STREAM,
  type FillSpec,
  type Guest,
} from '../scripts/qemu/harness.js';
import { findGuestRam } from '../lib/guest-ram.js';
import { readSmaps } from '../lib/procfs.js';

const FILL: FillSpec = {
  zero: { MiB: 16 },
  shared: { amount: { MiB: 32 }, blockPages: 64, seed: 42 },
  runs: { count: 32, length: 16, seed: 7 },
  hot: { copies: 300, seed: 5 },
  unique: { amount: { MiB: 8 } },
  volatile: { amount: { MiB: 1 }, intervalMs: 50 },
};

let pair: Guest[] = [];

test.after.always(async () => {
  await stopAll();
});

function alive(pid: number): boolean {
  return existsSync(`/proc/${pid}`);
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!alive(pid)) return true;
    await sleep(100);
  }
  return !alive(pid);
}

test.serial('bad guest specs are rejected before anything boots', async (t) => {
  const cases: Array<[Parameters<typeof startGuests>[0], RegExp]> = [
    [[{ name: 'bad name', memMiB: 512, thp: false }], /name must be/],
    [[{ name: 'm', memMiB: 12, thp: false }], /memMiB must be/],
    [[{ name: 'f', memMiB: 256, thp: false, fill: { zero: { MiB: 300 } } }], /fill is 300 MiB but the guest has 256 MiB/],
    [[{ name: 's', memMiB: 256, thp: false, fill: { shared: { amount: { pages: 100 }, blockPages: 64 } } }], /whole number of blocks/],
    [[{ name: 'd', memMiB: 256, thp: false, disks: [{ path: '/nonexistent/x.img', format: 'raw' }] }], /does not exist/],
    [[{ name: 'twin', memMiB: 256, thp: false }, { name: 'twin', memMiB: 256, thp: false }], /already in use/],
  ];
  for (const [specs, re] of cases) {
    const e = await t.throwsAsync(startGuests(specs), { instanceOf: HarnessError });
    t.is((e as HarnessError).code, 'BAD_SPEC');
    t.regex(e!.message, re);
  }
});

test.serial('two THP-off guests boot to READY with the fill they were asked for', async (t) => {
  const started = Date.now();
  pair = await startGuests([
    { name: 'qh-a', memMiB: 512, thp: false, fill: FILL },
    { name: 'qh-b', memMiB: 512, thp: false, fill: FILL },
  ]);
  t.log(`both READY after ${Date.now() - started} ms (${pair.map((g) => `${g.name} ${g.readyMs} ms, fill ${g.bootFill.fillMs} ms`).join('; ')})`);
  t.is(pair.length, 2);
  const want = expectedFill(FILL);
  for (const g of pair) {
    const s = g.bootFill;
    t.is(s.name, g.name);
    t.is(s.tag, 'boot');
    for (const kind of FILL_KINDS) {
      const k = s.kinds[kind];
      t.is(k.expected, want[kind].pages, `${g.name} ${kind} expected`);
      t.is(k.pages, want[kind].pages, `${g.name} ${kind} pages with the intended content`);
      t.is(k.present, want[kind].pages, `${g.name} ${kind} present`);
      t.is(k.distinct, want[kind].distinct, `${g.name} ${kind} distinct`);
    }
    t.is(s.kinds.shared.blockPages, 64);
    t.is(s.kinds.shared.seed, 42);
    t.is(s.kinds.runs.count, 32);
    t.is(s.kinds.unique.source, 'urandom');
    t.is(s.kinds.volatile.intervalMs, 50);
    t.true(s.kinds.runs.contiguousRuns <= 32);
    t.log(`${g.name}: ${s.kinds.runs.contiguousRuns}/32 runs physically contiguous in the guest`);
    t.is(s.totalPages, Object.values(want).reduce((a, k) => a + k.pages, 0));
  }
});

test.serial('exec round-trips exit codes, stdout, stderr and binary output, and times out cleanly', async (t) => {
  t.is(pair.length, 2, 'needs the guests of the previous test');
  const [a, b] = pair as [Guest, Guest];
  const r = await a.exec('echo hello; echo oops >&2; exit 7');
  t.is(r.code, 7);
  t.is(r.stdout, 'hello\n');
  t.is(r.stderr, 'oops\n');
  t.is((await b.exec('hostname')).stdout, 'qh-b\n');
  t.deepEqual([...(await a.exec("printf '\\001\\000\\377'")).stdoutBytes], [1, 0, 255]);
  const big = await a.exec("head -c 262144 /dev/zero | tr '\\000' a");
  t.is(big.stdout.length, 262144);
  t.true(/^a+$/.test(big.stdout));
  const e = await t.throwsAsync(a.exec('sleep 30', 1500), { instanceOf: HarnessError });
  t.is((e as HarnessError).code, 'EXEC_TIMEOUT');
  // The killed command must not block the channel.
  t.is((await a.exec('echo after')).stdout, 'after\n');
  t.is((await a.exec('kill -9 $$')).code, 137);
  const fromGuest = await a.fillSummary();
  t.deepEqual(fromGuest, a.bootFill);
});

test('sp-agent behind a slow port forwards every byte of a command that already exited', async (t) => {
  // A loaded TCG guest's UART drains a 4 KiB frame slower than the agent's 200 ms quiet time; the
  // agent cut a fio result after two frames (CI: "Unterminated string in JSON at position 6132").
  // The agent runs on the host here, on a pty read 4 KiB per 300 ms, so its frame writes block
  // after the command has exited with 65,000 bytes still in its pipe.
  const lab = await ensureLab();
  const helper = path.resolve(__dirname, '../../test/helpers/agent-pty.py');
  const { stdout } = await promisify(execFile)('python3', [helper, lab.helpers.agent, "head -c 65000 /dev/zero | tr '\\000' a", '4096', '0.3'], { timeout: 90_000 });
  const r = JSON.parse(stdout) as { code: number; stdout_bytes: number; stdout_distinct: string[] };
  t.deepEqual(r, { code: 0, stdout_bytes: 65000, stdout_distinct: ['a'] });
});

test.serial('QEMU pids are real, THP is off, and both guests hold the same seeded pages in host RAM', async (t) => {
  t.is(pair.length, 2, 'needs the guests of the previous test');
  const counts: number[][] = [];
  for (const g of pair) {
    t.true(alive(g.pid));
    t.regex(readFileSync(`/proc/${g.pid}/cmdline`, 'latin1'), /qemu-system-x86_64\0.*guest=qh-/s);
    t.regex(readFileSync(`/proc/${g.pid}/status`, 'utf8'), /^THP_enabled:\s+0$/m);
    const ram = await findGuestRam(g.pid, g.memMiB << 20);
    const vma = (await readSmaps(g.pid)).find((m) => m.start === ram.start);
    t.truthy(vma, `${g.name}: guest RAM is one VMA`);
    t.true(vma!.mergeable, `${g.name}: guest RAM VmFlags has mg`);
    t.is(vma!.bytes, g.memMiB << 20);
    t.is(vma!.fields.AnonHugePages, 0, `${g.name}: no THP in guest RAM under --no-thp`);
    t.true(vma!.fields.Rss! >= 64 << 20, `${g.name}: the fill is resident (Rss ${vma!.fields.Rss})`);
    const c = countPagesEqual(g.pid, ram, [
      pageContent(STREAM.hot, 5, 0),
      pageContent(STREAM.shared, 42, 0),
      pageContent(STREAM.runs, 7, 100),
      pageContent(STREAM.hot, 6, 0), // a seed nobody filled
    ]);
    t.log(`${g.name}: host RAM holds hot x${c[0]}, shared[0] x${c[1]}, runs[100] x${c[2]}, unfilled x${c[3]}`);
    counts.push(c);
    // At least what the guest wrote; a freed guest buffer may hold a stale extra copy.
    t.true(c[0]! >= 300 && c[0]! <= 304, `hot copies ${c[0]}`);
    t.true(c[1]! >= 32 * 256 / 64 && c[1]! <= 32 * 256 / 64 + 4, `shared[0] copies ${c[1]}`);
    t.true(c[2]! >= 1 && c[2]! <= 3, `runs[100] copies ${c[2]}`);
    t.is(c[3], 0);
  }
});

test.serial('a second fill over the control channel is kept and visible from the host', async (t) => {
  t.is(pair.length, 2, 'needs the guests of the previous test');
  const g = pair[0]!;
  const s = await g.fill({ hot: { copies: 20, seed: 99 }, unique: { amount: { pages: 10 }, source: 'name' } }, 'extra');
  t.is(s.tag, 'extra');
  t.is(s.kinds.hot.pages, 20);
  t.is(s.kinds.unique.pages, 10);
  t.is(s.kinds.unique.source, 'name');
  const pid = (await g.exec('cat /run/samepage/fill-extra.pid')).stdout.trim();
  t.is((await g.exec(`kill -0 ${pid}`)).code, 0, 'the fill daemon keeps running');
  const ram = await findGuestRam(g.pid, g.memMiB << 20);
  t.true(countPagesEqual(g.pid, ram, [pageContent(STREAM.hot, 99, 0)])[0]! >= 20);
  const bad = await t.throwsAsync(g.fill('zero=1X', 'bad'), { instanceOf: HarnessError });
  t.regex(bad!.message, /characters outside|amount is N/);
  const err = await t.throwsAsync(g.fill('hot=5/seed=1/colour=2', 'bad'), { instanceOf: HarnessError });
  t.regex(err!.message, /unknown option/);
});

test.serial('stop() ends QEMU and removes the guest files', async (t) => {
  t.is(pair.length, 2, 'needs the guests of the previous test');
  await Promise.all(pair.map((g) => g.stop()));
  for (const g of pair) {
    t.false(alive(g.pid), `${g.name} pid ${g.pid} gone`);
    t.false(existsSync(g.serialLogPath));
    t.false(existsSync(g.controlSocketPath));
  }
  await pair[0]!.stop(); // idempotent
  const e = await t.throwsAsync(pair[0]!.exec('true'), { instanceOf: HarnessError });
  t.is((e as HarnessError).code, 'CHANNEL');
});

test.serial('a raw virtio-blk disk reads back with the host sha256 (THP-on guest)', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sp-qh-disk-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const img = path.join(dir, 'random.img');
  const data = randomBytes(64 << 20);
  writeFileSync(img, data);
  const hostSum = createHash('sha256').update(data).digest('hex');
  const [g] = (await startGuests([
    { name: 'qh-disk', memMiB: 256, thp: true, disks: [{ path: img, format: 'raw', cache: 'writeback' }] },
  ])) as [Guest];
  t.teardown(() => g.stop());
  // thp: true leaves QEMU's THP setting alone (the --no-thp guests above read 0 here).
  t.regex(readFileSync(`/proc/${g.pid}/status`, 'utf8'), /^THP_enabled:\s+1$/m);
  const sum = await g.exec('sha256sum /dev/vda');
  t.is(sum.code, 0, sum.stderr);
  t.is(sum.stdout.split(/\s+/)[0], hostSum);
  t.is((await g.exec('blockdev --getsize64 /dev/vda')).stdout.trim(), String(64 << 20));
  const dd = await g.exec('dd if=/dev/vda of=/dev/null bs=1M');
  t.is(dd.code, 0);
  t.regex(dd.stderr, /64\+0 records in/);
  t.is((await g.exec('echo 3 > /proc/sys/vm/drop_caches')).code, 0);
  await g.stop();
  t.false(alive(g.pid));
});

test.serial('a guest that cannot fill fails fast with its serial log, and its QEMU is gone', async (t) => {
  const e = await t.throwsAsync(
    startGuests([{ name: 'qh-oom', memMiB: 256, thp: true, fill: { zero: { MiB: 250 } } }]),
    { instanceOf: HarnessError },
  );
  t.is((e as HarnessError).code, 'GUEST_ERROR');
  t.regex(e!.message, /SAMEPAGE: ERROR fill: the fill needs 250 MiB/);
  t.regex(e!.message, /serial log tail/);
  const pid = Number(/\(pid (\d+)\)/.exec(e!.message)?.[1]);
  t.true(pid > 0);
  t.false(alive(pid));
});

// A child Node process that boots a guest, prints its pid, then dies the way `how` says.
function childThatDies(how: 'sigkill' | 'throw' | 'sigterm'): Promise<{ pid: number; runDir: string; exit: Promise<number | null> }> {
  const harness = path.resolve(__dirname, '../scripts/qemu/harness.js');
  const script = `
    const h = require(${JSON.stringify(harness)});
    h.startGuests([{ name: 'qh-orphan-${how}', memMiB: 192, thp: false }]).then(([g]) => {
      console.log('PID ' + g.pid + ' ' + require('path').dirname(g.serialLogPath));
      if (${JSON.stringify(how)} === 'throw') setTimeout(() => { throw new Error('boom'); }, 100);
      else setInterval(() => {}, 1000);
    });`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /PID (\d+) (\S+)\n/.exec(out);
      if (m) {
        const pid = Number(m[1]);
        const runDir = m[2]!;
        if (how === 'sigkill') child.kill('SIGKILL');
        if (how === 'sigterm') child.kill('SIGTERM');
        resolve({ pid, runDir, exit });
      }
    });
    void exit.then((code) => reject(new Error(`child exited (${code}) before printing a pid: ${err}`)));
  });
}

for (const how of ['sigkill', 'throw', 'sigterm'] as const) {
  test.serial(`QEMU does not outlive a test process that dies by ${how}`, async (t) => {
    const { pid, runDir, exit } = await childThatDies(how);
    t.true(pid > 0);
    // If the harness failed, this test must not be the one that leaves QEMU behind.
    t.teardown(() => {
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    });
    await exit;
    t.true(await waitGone(pid, 5000), `qemu pid ${pid} still running after its parent died`);
    // A SIGKILLed harness cannot clean up; the next start sweeps its files.
    if (how === 'sigkill') t.true(existsSync(runDir) === false || sweepStaleRunDirs().includes(runDir));
    t.false(existsSync(runDir), `run dir ${runDir} left behind`);
  });
}
