// ksm-agent fingerprint against real QEMU processes: two paused TCG guests whose RAM the test fills
// with pages of known contents (through /proc/PID/mem; the command itself only reads), sketched by
// the real CLI as root. Then what it refuses: a key others may read, a symlinked key, a missing key,
// and --out pointed at a file that is not a sketch, each with exit 2 (3 for the missing key) and the
// file left as it was.
import test from 'ava';
import { chmod, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { estimateGroup, fingerprintVms, readFingerprintKey, readSketchFile } from '../lib/index.js';
import { runCli, runCliJson } from './helpers/agent.js';
import { startQemu, stopAllQemu } from './helpers/qemu.js';
import { familyPage, writeGuestRam } from './helpers/fingerprint-guests.js';

const RAM = 64 << 20;
let tmp = '';
let keyFile = '';

test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'samepage-fp-cli-'));
  keyFile = path.join(tmp, 'keys', 'fp.key');
  const r = await runCli(['fingerprint', '--init-key', '--key-file', keyFile]);
  if (r.code !== 0) throw new Error(r.stderr);
});
test.after.always(async () => {
  await stopAllQemu();
  await rm(tmp, { recursive: true, force: true });
});

const page = familyPage;

function pages(family: number, from: number, to: number): Buffer[] {
  return Array.from({ length: to - from }, (_, i) => page(family, from + i));
}

const fillGuest = (pid: number, content: Buffer): Promise<void> => writeGuestRam(pid, RAM, content);

interface FpJson {
  host: string;
  key_id: string;
  out: string | null;
  file_bytes: number | null;
  vms: { name: string; pid: number; pages: number; zero_pages: number; thp_zero_pages: number; distinct: number; exact: boolean; entries: number; sketch_bytes: number; ms: number }[];
  failures: unknown[];
}

test.serial('fingerprint sketches running QEMU guests: exact page figures, a sketch file place can read', async (t) => {
  const a = await startQemu(['-m', '64', '-name', 'fp-a'], RAM);
  const b = await startQemu(['-m', '64', '-name', 'fp-b'], RAM);
  // Two guests left empty: what every guest of this QEMU holds anyway (its ROM blocks, which KSM
  // merges too), the baseline the filled guests are compared with.
  await startQemu(['-m', '64', '-name', 'fp-e1'], RAM);
  await startQemu(['-m', '64', '-name', 'fp-e2'], RAM);
  // A: 2000 distinct pages and 300 copies of one more; B: 1000 of A's pages and 1000 of its own.
  await fillGuest(a.pid, Buffer.concat([...pages(1, 0, 2000), ...Array.from({ length: 300 }, () => page(9, 0))]));
  await fillGuest(b.pid, Buffer.concat([...pages(1, 0, 1000), ...pages(2, 0, 1000)]));
  const out = path.join(tmp, 'host.fp');
  const names = ['fp-a', String(b.pid), 'fp-e1', 'fp-e2'];
  const j = await runCliJson<FpJson>(['fingerprint', '--key-file', keyFile, ...names.flatMap((n) => ['--vm', n]), '--out', out, '--json']);
  t.deepEqual(j.vms.map((v) => v.name), ['fp-a', 'fp-b', 'fp-e1', 'fp-e2']);
  t.is(j.vms[0]?.pid, a.pid);
  const [va, vb, ve] = j.vms;
  // Non-zero figures are exact, over the empty guest's.
  const nonZero = (v: FpJson['vms'][number] | undefined): number => (v === undefined ? NaN : v.pages - v.zero_pages - v.thp_zero_pages);
  t.is(nonZero(va) - nonZero(ve), 2300);
  t.is(nonZero(vb) - nonZero(ve), 2000);
  t.is((va?.distinct ?? 0) - (ve?.distinct ?? 0), 2001);
  t.is((vb?.distinct ?? 0) - (ve?.distinct ?? 0), 2000);
  t.true(va?.exact);
  t.is(va?.sketch_bytes, (va?.distinct ?? 0) * 12);
  t.is(j.host, os.hostname());
  t.is(j.out, out);
  t.is((await stat(out)).size, j.file_bytes ?? -1);

  const file = await readSketchFile(out);
  t.is(file.keyId, j.key_id);
  t.deepEqual(file.sketches.map((s) => s.host), names.map(() => os.hostname()));
  const model = { useZeroPages: true, maxPageSharing: 256 };
  const pair = estimateGroup(file.sketches, [0, 1], model);
  const empty = estimateGroup(file.sketches, [2, 3], model);
  // Over two empty guests: 1000 pages of B match A's; 300 copies of one page in A save
  // 300 - ceil(300/256) = 298 (a KSM page has at most max_page_sharing sharers). Exact: the
  // sketches are complete.
  t.is(pair.pagesSharing - empty.pagesSharing, 1000 + 298);
  t.true(pair.exact);

  // The library call gives the same sketch as the command (same key, same memory).
  const lib = await fingerprintVms({ key: await readFingerprintKey(keyFile), vms: ['fp-a'] });
  t.deepEqual(lib.failures, []);
  t.is(lib.sketches[0]?.pid, a.pid);
  t.deepEqual([...(lib.sketches[0]?.hashes ?? [])], [...(file.sketches[0]?.hashes ?? [])]);
  t.deepEqual([...(lib.sketches[0]?.copies ?? [])], [...(file.sketches[0]?.copies ?? [])]);

  const human = await runCli(['fingerprint', '--key-file', keyFile, '--vm', 'fp-a']);
  t.is(human.code, 0, human.stderr);
  t.regex(human.stdout, new RegExp(`^fp-a +${a.pid} +[\\d,]+ +[\\d,]+ +${(va?.distinct ?? 0).toLocaleString('en-US')} +[\\d.]+ KiB +\\d+$`, 'm'));
  t.regex(human.stdout, /nothing written \(pass --out FILE/);
});

test.serial('bad input: a key others may read, a symlinked key, no key, --out at a file that is not a sketch', async (t) => {
  await startQemu(['-m', '64', '-name', 'fp-c'], RAM);
  const open644 = path.join(tmp, 'keys', 'open.key');
  await writeFile(open644, await readFile(keyFile), { mode: 0o644 });
  await chmod(open644, 0o644);
  const r1 = await runCli(['fingerprint', '--key-file', open644, '--vm', 'fp-c']);
  t.is(r1.code, 2);
  t.regex(r1.stderr, /^ksm-agent fingerprint: refusing to use .*open\.key as the fingerprint key: it may be read or written by group or others \(mode 0644\); chmod 600/);
  t.is(r1.stderr.trim().split('\n').length, 1);
  t.is(r1.stdout, '');

  const link = path.join(tmp, 'keys', 'link.key');
  await symlink(keyFile, link);
  const r2 = await runCli(['fingerprint', '--key-file', link, '--vm', 'fp-c']);
  t.is(r2.code, 2);
  t.regex(r2.stderr, /link\.key as the fingerprint key: it is a symbolic link/);

  const r3 = await runCli(['fingerprint', '--key-file', path.join(tmp, 'keys', 'none.key')]);
  t.is(r3.code, 3);
  t.regex(r3.stderr, /no fingerprint key at .*none\.key: create one with "ksm-agent fingerprint --init-key --key-file /);

  const r4 = await runCli(['fingerprint', '--init-key', '--key-file', keyFile]);
  t.is(r4.code, 2);
  t.regex(r4.stderr, /it exists already; a key is never replaced/);

  const precious = path.join(tmp, 'precious.conf');
  await writeFile(precious, 'do not replace\n');
  const r5 = await runCli(['fingerprint', '--key-file', keyFile, '--vm', 'fp-c', '--out', precious]);
  t.is(r5.code, 2);
  t.regex(r5.stderr, /refusing to use .*precious\.conf as the sketch file: it exists and is not a sketch file/);
  t.is(await readFile(precious, 'utf8'), 'do not replace\n');

  // Not root: the key (root's, in root's directory) is not even reachable; exit 77, nothing read.
  const r8 = await runCli(['fingerprint', '--key-file', keyFile, '--vm', 'fp-c'], { asNobody: true });
  t.is(r8.code, 77, r8.stderr);
  t.regex(r8.stderr, /^ksm-agent fingerprint: permission denied: cannot read the fingerprint key .*fp\.key; run as root$/m);

  const r6 = await runCli(['fingerprint', '--key-file', keyFile, '--vm', 'no-such-vm']);
  t.is(r6.code, 3);
  t.regex(r6.stderr, /no QEMU VM named "no-such-vm"/);
  const r7 = await runCli(['fingerprint', '--key-file', keyFile, '--entries', '7']);
  t.is(r7.code, 2);
  t.regex(r7.stderr, /--entries "7": must be an integer from 256 to 1048576/);
});
