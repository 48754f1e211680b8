// The placement advisor (lib/fingerprint/placement.ts and ksm-agent place) on 6 VMs sketched from
// in-process pages of known contents, on 3 hosts: pairs A, B, C share large blocks, placed crossed
// (and with a decoy: A1 and B1 share a few pages, so greedy starts wrong). The advisor must find
// the pairs, predict their saving within its error, and list the 3 moves. Then the CLI refuses a
// damaged, truncated or foreign-key sketch file with exit 2 and one line naming it.
import test from 'ava';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SketchBuilder, advisePlacement, estimateColocation, keyIdOf, writeSketchFile } from '../lib/index.js';
import type { FingerprintKey, Sketch } from '../lib/index.js';
import { runCli, runCliJson } from './helpers/agent.js';

const GIB = 2 ** 30;
let tmp = '';
test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'samepage-place-'));
});
test.after.always(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function testKey(seed: number): FingerprintKey {
  const key = Buffer.alloc(32, seed);
  return { key, id: keyIdOf(key), path: '(test)' };
}
const KEY = testKey(3);

function page(family: number, id: number): Buffer {
  const p = Buffer.alloc(4096);
  p.writeUInt32LE(family, 0);
  p.writeUInt32LE(id, 4);
  return p;
}

/** A VM: [family, count] blocks of pages; 1 GiB of guest RAM for capacity. */
function vm(name: string, host: string, blocks: [number, number][], k: number, key = KEY): Sketch {
  const b = new SketchBuilder(key, k);
  for (const [family, count] of blocks) for (let i = 0; i < count; i++) b.addPage(page(family, i));
  return b.finish({ name, host, ramBytes: GIB }, key.id, Date.now(), 0);
}

/**
 * Pairs share 3000 pages (families 100, 200, 300); each VM has 1500 of its own; A1 and B1 share 400
 * (family 50). Placed crossed on 3 hosts of 2 VMs.
 */
function fleet(k: number, key = KEY): Sketch[] {
  return [
    vm('A1', 'host-1', [[100, 3000], [1, 1500], [50, 400]], k, key),
    vm('B1', 'host-1', [[200, 3000], [2, 1500], [50, 400]], k, key),
    vm('C1', 'host-2', [[300, 3000], [3, 1500]], k, key),
    vm('A2', 'host-2', [[100, 3000], [4, 1500]], k, key),
    vm('B2', 'host-3', [[200, 3000], [5, 1500]], k, key),
    vm('C2', 'host-3', [[300, 3000], [6, 1500]], k, key),
  ];
}

const groupNames = (hosts: { members: number[] }[], sketches: Sketch[]): string[] =>
  hosts.map((h) => h.members.map((i) => sketches[i]?.name).join('+')).sort();

test('the advisor finds the known best grouping of 6 VMs on 3 hosts, from sampled sketches', (t) => {
  const sketches = fleet(1024); // 4900 distinct contents a VM: sampled, not exact
  t.false(sketches[0]?.exact);
  const a = advisePlacement(sketches);
  t.is(a.capacityBytes, 2 * GIB);
  t.deepEqual(groupNames(a.current.hosts, sketches), ['A1+B1', 'C1+A2', 'B2+C2'].sort());
  t.deepEqual(groupNames(a.proposed.hosts, sketches), ['A1+A2', 'B1+B2', 'C1+C2']);
  t.true(a.steps > 0, 'greedy alone was misled by the decoy; local search fixed it');
  // True savings: now 400 (A1, B1), proposed 3 × 3000.
  const near = (got: number, want: number, se: number, what: string): void => {
    t.true(Math.abs(got - want) <= Math.max(3 * se, 0.05 * want), `${what}: ${got} ±${se} vs ${want}`);
  };
  near(a.current.savedPages, 400, a.current.stdErrPages, 'now');
  near(a.proposed.savedPages, 9000, a.proposed.stdErrPages, 'proposed');
  t.is(a.moves.length, 3);
  const moved = new Set(a.moves.map((m) => m.name));
  t.is(moved.size, 3);
  for (const m of a.moves) t.not(m.from, m.to);
  // Every pair ends on one host, which is one of the current hosts.
  for (const h of a.proposed.hosts) t.true(['host-1', 'host-2', 'host-3'].includes(h.host));
  // The same through estimateColocation, exact sketches: exact figures.
  const exact = fleet(8192);
  t.true(exact.every((s) => s.exact));
  const c = estimateColocation(exact, [[0, 3], [1, 4], [2, 5]]);
  t.is(c.savedPages, 9000);
  t.is(c.stdErrPages, 0);
});

test('capacity and host count: more hosts than now get new names; too little room is refused', (t) => {
  const sketches = fleet(8192);
  const wide = advisePlacement(sketches, { hosts: 4 });
  t.is(wide.proposed.hosts.length, 4);
  t.true(wide.proposed.hosts.some((h) => h.host === 'new-host-1'));
  t.is(wide.proposed.savedPages, 9000);
  // Two hosts of 3 VMs: one pair must split; best is a pair plus the decoy-sharing VM, and a pair.
  const three = advisePlacement(sketches, { hosts: 2, capacityBytes: 3 * GIB });
  t.is(three.proposed.savedPages, 3000 + 400 + 3000);
  // Room for 4: pairs A and B together (with their decoy 400), pair C on the other host.
  const four = advisePlacement(sketches, { hosts: 2, capacityBytes: 4 * GIB });
  t.is(four.proposed.savedPages, 9400);
  t.deepEqual(groupNames(four.proposed.hosts, sketches), ['A1+B1+A2+B2', 'C1+C2']);
  t.throws(() => advisePlacement(sketches, { hosts: 2 }), { message: /does not fit on 2 hosts of 2147483648 bytes: add hosts or raise the capacity/ });
  t.throws(() => advisePlacement(sketches, { capacityBytes: GIB / 2 }), { message: /VM "A1" has 1073741824 bytes of guest RAM, more than a host's capacity/ });
  t.throws(() => advisePlacement([...sketches.slice(0, 5), vm('X', 'host-3', [[1, 10]], 1024, testKey(9))]), { message: /different fingerprint keys cannot be compared/ });
});

interface PlaceJson {
  method: string;
  capacity_bytes: number;
  current: { saved_pages: number; hosts: { host: string; vms: string[] }[] };
  proposed: { saved_pages: number; std_err_pages: number; hosts: { host: string; vms: string[]; general_profit: number; pages_sharing: number }[] };
  moves: { vm: string; from: string; to: string }[];
}

test('ksm-agent place reads one sketch file per host and prints the placement and the moves', async (t) => {
  const sketches = fleet(2048);
  const files = [];
  for (const host of ['host-1', 'host-2', 'host-3']) {
    const file = path.join(tmp, `${host}.fp`);
    await writeSketchFile(file, sketches.filter((s) => s.host === host), host);
    files.push(file);
  }
  const j = await runCliJson<PlaceJson>(['place', ...files.flatMap((f) => ['--from', f]), '--json']);
  t.regex(j.method, /^greedy, then local search/);
  t.is(j.capacity_bytes, 2 * GIB);
  t.deepEqual(j.proposed.hosts.map((h) => [...h.vms].sort().join('+')).sort(), ['A1+A2', 'B1+B2', 'C1+C2']);
  t.is(j.moves.length, 3);
  t.true(Math.abs(j.proposed.saved_pages - 9000) <= 450, String(j.proposed.saved_pages));
  // general_profit: the saving less 64 bytes of rmap_item per resident page (A1 and B1 have 4900, the others 4500).
  const residentPages = (name: string): number => (name === 'A1' || name === 'B1' ? 4900 : 4500);
  for (const h of j.proposed.hosts) t.is(h.general_profit, h.pages_sharing * 4096 - h.vms.reduce((a, v) => a + residentPages(v), 0) * 64);

  const human = await runCli(['place', ...files.flatMap((f) => ['--from', f])]);
  t.is(human.code, 0, human.stderr);
  t.regex(human.stdout, /^now: KSM saves [\d.]+ MiB/m);
  t.regex(human.stdout, /^proposed \(greedy, then local search over single moves and pairwise swaps\): KSM saves [\d.]+ MiB/m);
  t.regex(human.stdout, /^3 moves, \+[\d.]+ MiB saved:$/m);
  t.regex(human.stdout, /^ {2}\S+: host-\d -> host-\d$/m);
});

test('bad input: a damaged, truncated or foreign-key sketch file gets exit 2 and one line naming it', async (t) => {
  const sketches = fleet(1024);
  const good = path.join(tmp, 'good.fp');
  await writeSketchFile(good, sketches.slice(0, 2), 'host-1');
  const bytes = await readFile(good);

  const damaged = path.join(tmp, 'damaged.fp');
  const flipped = Buffer.from(bytes);
  flipped[Math.floor(flipped.length / 2)] ^= 0x40;
  await writeFile(damaged, flipped);
  const truncated = path.join(tmp, 'truncated.fp');
  await writeFile(truncated, bytes.subarray(0, bytes.length - 1000));
  const foreign = path.join(tmp, 'foreign.fp');
  await writeSketchFile(foreign, fleet(1024, testKey(4)).slice(2, 4), 'host-2');
  const notSketch = path.join(tmp, 'notes.txt');
  await writeFile(notSketch, 'hello\n');

  const cases: [string[], RegExp][] = [
    [['--from', good, '--from', damaged], /^ksm-agent place: .*damaged\.fp is not a usable sketch file: its SHA-256 checksum does not match: it is truncated or damaged; take it again/],
    [['--from', truncated], /^ksm-agent place: .*truncated\.fp is not a usable sketch file: its SHA-256 checksum does not match/],
    [['--from', good, '--from', foreign], /^ksm-agent place: .*foreign\.fp was made with fingerprint key [0-9a-f]{16}, .*good\.fp with key [0-9a-f]{16}: sketches of different keys are never compared/],
    [['--from', notSketch], /^ksm-agent place: .*notes\.txt is not a usable sketch file: it does not start with the sketch file magic/],
    [['--from', good, '--from', good], /^ksm-agent place: VM "A1" of host host-1 is in .*good\.fp and .*good\.fp: pass each host's sketch file once/],
    [[], /^ksm-agent place: no sketches: pass --from FILE/],
    [['--from', good, '--capacity', 'lots'], /^ksm-agent place: --capacity "lots": must be a number/],
  ];
  for (const [args, message] of cases) {
    const r = await runCli(['place', ...args]);
    t.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, message);
    t.is(r.stderr.trim().split('\n').length, 1);
    t.is(r.stdout, '');
  }
  t.deepEqual(await readFile(good), bytes, 'place changed no file');
});

test('hostile VM and host names from sketch files are escaped in place output and errors', async (t) => {
  const evilName = 'A1\u001b[2J\nforged line';
  const evilHost = 'host-1\u001b]0;pwned\u0007';
  const sketches = fleet(1024).map((s, i) => (i === 0 ? { ...s, name: evilName, host: evilHost } : i === 1 ? { ...s, host: evilHost } : s));
  const files: string[] = [];
  for (const host of [evilHost, 'host-2', 'host-3']) {
    const file = path.join(tmp, `evil-${files.length}.fp`);
    await writeSketchFile(file, sketches.filter((s) => s.host === host), host);
    files.push(file);
  }
  const r = await runCli(['place', ...files.flatMap((f) => ['--from', f])]);
  t.is(r.code, 0, r.stderr);
  t.false(r.stdout.includes('\u001b'), 'no escape character reaches the terminal');
  t.false(r.stdout.includes('\u0007'));
  t.regex(r.stdout, /A1\\x1b\[2J\\nforged line/);
  t.notRegex(r.stdout, /^forged line/m);
  const j = await runCliJson<PlaceJson>(['place', ...files.flatMap((f) => ['--from', f]), '--json']);
  t.true(j.current.hosts.some((h) => h.host === evilHost && h.vms.includes(evilName)), 'JSON keeps the names as they are (JSON escapes them)');
  const dup = await runCli(['place', '--from', files[0] as string, '--from', files[0] as string]);
  t.is(dup.code, 2);
  t.false(dup.stderr.includes('\u001b'));
  t.is(dup.stderr.trim().split('\n').length, 1);
});
