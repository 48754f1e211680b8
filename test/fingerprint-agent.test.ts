// The daemon's side of issue 15, for real: a `ksm-agent run` (AgentSandbox) with a fleet key and a
// bearer token sketches the paused TCG guests this test fills, serves them at /api/fingerprint (the
// bytes `ksm-agent fingerprint --out` writes for the same guests) and as per-VM metrics; a real
// `ksm-agent place --from URL --token-file F` reads them. Then what goes wrong: no token, a wrong
// one, a token file others may read, a URL that is no sketch, a foreign key, nothing listening, a
// server that never answers, one that announces too much or redirects; an agent without a key
// (503 naming --init-key), and one on 0.0.0.0 without a token (403: side-channel data).
import test from 'ava';
import { chmod, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { decodeSketches, keyIdOf, readFingerprintKey, readSketchFile, snapshotSettings, sketchBuffer, writeSketchFile } from '../lib/index.js';
import { AgentSandbox, runCli, runCliJson } from './helpers/agent.js';
import { parseSamples } from './helpers/promql.js';
import { startQemu, stopAllQemu } from './helpers/qemu.js';
import { familyPage, writeGuestRam } from './helpers/fingerprint-guests.js';

const RAM = 64 << 20;
const TOKEN = 'ZmluZ2VycHJpbnQtYWdlbnQtdGVzdC10b2tlbg';
const sandbox = new AgentSandbox('samepage-fp-agent-');
let keyFile = '';
let tokenFile = '';
const extraServers: net.Server[] = [];

test.before(async () => {
  await sandbox.open();
  keyFile = path.join(sandbox.dir, 'keys', 'fp.key');
  const r = await runCli(['fingerprint', '--init-key', '--key-file', keyFile]);
  if (r.code !== 0) throw new Error(r.stderr);
  tokenFile = path.join(sandbox.dir, 'token');
  await writeFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
});
test.after.always(async () => {
  for (const s of extraServers) s.close();
  await sandbox.close();
  await stopAllQemu();
});

const page = familyPage;

const fillGuest = (pid: number, content: Buffer): Promise<void> => writeGuestRam(pid, RAM, content);

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function get(port: number, target: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: target, headers: { Host: `127.0.0.1:${port}`, ...headers }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A TCP server on 127.0.0.1 answering each connection with `reply` (never, when undefined). */
async function rawServer(reply?: string): Promise<number> {
  const server = net.createServer((sock) => {
    sock.on('error', () => undefined);
    if (reply !== undefined) sock.end(reply);
  });
  extraServers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

interface PlaceJson {
  current: { saved_pages: number; hosts: { host: string; vms: string[] }[] };
  proposed: { saved_pages: number };
}

test.serial('an agent serves its VMs\' sketches at /api/fingerprint and as metrics; place --from URL reads them with the token', async (t) => {
  const a = await startQemu(['-m', '64', '-name', 'fpa-1'], RAM);
  const b = await startQemu(['-m', '64', '-name', 'fpa-2'], RAM);
  // fpa-1: 1500 pages of family 1 and 200 copies of one page; fpa-2: 800 of fpa-1's and 600 of its own.
  await fillGuest(a.pid, Buffer.concat([...Array.from({ length: 1500 }, (_, i) => page(1, i)), ...Array.from({ length: 200 }, () => page(9, 0))]));
  await fillGuest(b.pid, Buffer.concat([...Array.from({ length: 800 }, (_, i) => page(1, i)), ...Array.from({ length: 600 }, (_, i) => page(2, i))]));
  // What the command writes for the same guests, with the same key.
  const cliFile = path.join(sandbox.dir, 'cli.fp');
  const cli = await runCli(['fingerprint', '--key-file', keyFile, '--vm', 'fpa-1', '--vm', 'fpa-2', '--out', cliFile]);
  t.is(cli.code, 0, cli.stderr);
  const fromCli = await readSketchFile(cliFile);
  const key = await readFingerprintKey(keyFile);

  await sandbox.withSavedKsm(async (before) => {
    // thresholdPercent 0: no memory pressure, so the agent leaves KSM as it is.
    const config = await sandbox.writeConfig('fp', {
      thresholdPercent: 0,
      thresholdMinKiB: 0,
      ksmtunedConf: null,
      intervalSeconds: 0.5,
      listen: '127.0.0.1:0',
      tokenFile,
      // Only this test's guests: others on the host (another test's) would only slow the run down.
      fingerprint: { keyFile, intervalSeconds: 3600, vms: ['fpa-1', 'fpa-2', 'no-such-vm'] },
    });
    const agent = sandbox.agent(['--config', config, ...sandbox.files('fp')]);
    const port = Number(new URL(await agent.metricsUrl()).port);
    await agent.waitForLine(/fingerprint: sketched \d+ VMs? key_id=/, 180_000);
    const bearer = { Authorization: `Bearer ${TOKEN}` };

    t.is((await get(port, '/api/fingerprint')).status, 401, 'side-channel data: the token is needed');
    const r = await get(port, '/api/fingerprint', bearer);
    t.is(r.status, 200, r.body.toString());
    t.is(r.headers['content-type'], 'application/octet-stream');
    t.is(r.headers['cache-control'], 'no-store');
    t.is(r.headers['x-samepage-key-id'], key.id);
    t.true(Number(r.headers['age']) >= 0 && Number(r.headers['age']) < 600, String(r.headers['age']));
    t.true(Number(r.headers['x-samepage-sketch-max-age']) >= 3600, 'the staleness bound covers the interval');
    t.true(Number(r.headers['x-samepage-next-sketch-at']) >= Date.now() / 1000 + 3000, 'the next run is an interval away');
    const served = decodeSketches(r.body, 'served');
    t.is(served.keyId, key.id);
    t.is(served.host, os.hostname());
    t.deepEqual(served.sketches.map((x) => x.name).sort(), ['fpa-1', 'fpa-2'], 'the configured VMs that run, and no other');
    for (const name of ['fpa-1', 'fpa-2']) {
      const s = served.sketches.find((x) => x.name === name);
      const c = fromCli.sketches.find((x) => x.name === name);
      t.truthy(s, `${name} is served`);
      // The same guest memory, the same key: the same sketch as the command's.
      t.deepEqual([...(s?.hashes ?? [])], [...(c?.hashes ?? [])], name);
      t.deepEqual([...(s?.copies ?? [])], [...(c?.copies ?? [])], name);
      t.like(s, { pages: c?.pages, zeroPages: c?.zeroPages, thpZeroPages: c?.thpZeroPages, exact: c?.exact, pid: c?.pid });
    }
    t.is((await get(port, '/api/fingerprint', { ...bearer, Host: `evil.example:${port}` })).status, 403, 'DNS rebinding');
    t.true((JSON.parse((await get(port, '/api/', bearer)).body.toString()) as { endpoints: { path: string }[] }).endpoints.some((e) => e.path === '/api/fingerprint'));

    // Per-VM metrics from the same sketches.
    const m = parseSamples((await get(port, '/metrics', bearer)).body.toString());
    const fpa1 = served.sketches.find((x) => x.name === 'fpa-1');
    t.is(m.get('samepage_vm_fingerprint_pages{vm="fpa-1"}'), fpa1?.pages);
    t.is(m.get('samepage_vm_fingerprint_zero_pages{vm="fpa-1"}'), (fpa1?.zeroPages ?? 0) + (fpa1?.thpZeroPages ?? 0));
    t.true((m.get('samepage_vm_fingerprint_sketch_age_seconds{vm="fpa-2"}') ?? -1) >= 0);
    t.true((m.get('samepage_fingerprint_run_seconds') ?? -1) > 0);

    // place --from URL with the token = place --from the bytes served, saved as a file.
    const url = `http://127.0.0.1:${port}/api/fingerprint`;
    const savedFile = path.join(sandbox.dir, 'served.fp');
    await writeFile(savedFile, r.body);
    const viaUrl = await runCliJson<PlaceJson>(['place', '--from', url, '--token-file', tokenFile, '--json']);
    const viaFile = await runCliJson<PlaceJson>(['place', '--from', savedFile, '--json']);
    t.deepEqual(viaUrl, viaFile);
    t.true(viaUrl.current.hosts.some((h) => h.vms.includes('fpa-1') && h.vms.includes('fpa-2')));
    // http://HOST:PORT alone means the agent's /api/fingerprint.
    t.deepEqual(await runCliJson<PlaceJson>(['place', '--from', `http://127.0.0.1:${port}`, '--token-file', tokenFile, '--json']), viaUrl);
    const human = await runCli(['place', '--from', url, '--token-file', tokenFile]);
    t.is(human.code, 0, human.stderr);
    t.regex(human.stdout, /^now: KSM saves /m);

    // What goes wrong, each with one line naming the URL and the exit code of the file case.
    const wrongToken = path.join(sandbox.dir, 'wrong-token');
    await writeFile(wrongToken, 'not-the-agents-token-0123456789\n', { mode: 0o600 });
    const openToken = path.join(sandbox.dir, 'open-token');
    await writeFile(openToken, `${TOKEN}\n`);
    await chmod(openToken, 0o644);
    const foreignFile = path.join(sandbox.dir, 'foreign.fp');
    const otherKey = Buffer.alloc(32, 5);
    await writeSketchFile(foreignFile, [sketchBuffer(Buffer.concat([page(7, 1), page(7, 2)]), { key: otherKey, id: keyIdOf(otherKey), path: '(test)' }, { name: 'x', host: 'elsewhere' }, 256)], 'elsewhere');
    const silent = await rawServer();
    const huge = await rawServer('HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 300000000\r\n\r\n');
    const redirect = await rawServer(`HTTP/1.1 302 Found\r\nLocation: http://elsewhere.example/steal\r\nContent-Length: 0\r\n\r\n`);
    const nothing = await freePort();
    const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const cases: [string[], number, RegExp][] = [
      [['--from', url], 77, new RegExp(`^ksm-agent place: permission denied: ${esc(url)} answered 401 unauthorized; the agent wants its token: pass the file holding it with --token-file`)],
      [['--from', url, '--token-file', wrongToken], 77, new RegExp(`^ksm-agent place: permission denied: ${esc(url)} answered 401 unauthorized; the token given is not the agent's`)],
      [['--from', url, '--token-file', openToken], 2, /^ksm-agent place: refusing to use .*open-token as the agent's token: it has mode 0644: group or others may read it; chmod 600/],
      [['--from', `http://127.0.0.1:${port}/api/summary`, '--token-file', tokenFile], 2, new RegExp(`^ksm-agent place: http://127\\.0\\.0\\.1:${port}/api/summary is not a usable sketch file: it does not start with the sketch file magic .*; check that the URL is an agent's /api/fingerprint`)],
      [['--from', url, '--from', foreignFile, '--token-file', tokenFile], 2, /^ksm-agent place: .*foreign\.fp was made with fingerprint key [0-9a-f]{16}, http:\/\/127\.0\.0\.1:\d+\/api\/fingerprint with key [0-9a-f]{16}: sketches of different keys are never compared/],
      [['--from', `http://127.0.0.1:${nothing}/api/fingerprint`], 3, new RegExp(`^ksm-agent place: cannot reach http://127\\.0\\.0\\.1:${nothing}/api/fingerprint \\(ECONNREFUSED\\): check the host and port`)],
      [['--from', `http://127.0.0.1:${silent}/api/fingerprint`, '--timeout', '0.5'], 1, new RegExp(`^ksm-agent place: http://127\\.0\\.0\\.1:${silent}/api/fingerprint did not answer within 0\\.5 s`)],
      [['--from', `http://127.0.0.1:${huge}/api/fingerprint`], 2, /answered with 300000000 bytes, more than the 268435456 a sketch file may have/],
      [['--from', `http://127.0.0.1:${redirect}/api/fingerprint`, '--token-file', tokenFile], 2, /answered 302 \(a redirect to http:\/\/elsewhere\.example\/steal\), not followed/],
      [['--from', 'http://user:pw@127.0.0.1:1/api/fingerprint'], 2, /put no credentials in the URL; pass the agent's token with --token-file/],
      [['--from', savedFile, '--token-file', tokenFile], 2, /--token-file is for agents' URLs/],
    ];
    for (const [args, code, message] of cases) {
      const c = await runCli(['place', ...args]);
      t.is(c.code, code, `${args.join(' ')}: ${c.stderr}`);
      t.regex(c.stderr, message, args.join(' '));
      t.is(c.stderr.trim().split('\n').length, 1, args.join(' '));
      t.is(c.stdout, '', args.join(' '));
    }
    t.false(agent.lines.some((l) => /TypeError|internal error/.test(l)), agent.tail());
    t.is(await agent.stop('SIGTERM'), 0, agent.tail());
    t.deepEqual((await snapshotSettings()).files, before.files);
  });
});

test.serial('no key: /api/fingerprint answers 503 naming ksm-agent fingerprint --init-key, and place exits 3 saying so; off loopback without a token: 403', async (t) => {
  await sandbox.withSavedKsm(async (before) => {
    const missing = path.join(sandbox.dir, 'keys', 'none.key');
    const base = { thresholdPercent: 0, thresholdMinKiB: 0, ksmtunedConf: null, intervalSeconds: 0.5, fingerprint: { keyFile: missing } };
    const agent = sandbox.agent(['--config', await sandbox.writeConfig('nokey', { ...base, listen: '127.0.0.1:0' }), ...sandbox.files('nokey')]);
    const port = Number(new URL(await agent.metricsUrl()).port);
    await agent.waitForLine(/^ksm-agent info: fingerprint: not sketching: no fingerprint key at /);
    t.false(agent.lines.some((l) => l.startsWith('ksm-agent warning:')), 'no key is no warning: it is how fingerprints stay off');
    const r = await get(port, '/api/fingerprint');
    t.is(r.status, 503);
    t.is(r.headers['retry-after'], '60');
    const body = JSON.parse(r.body.toString()) as { error: string };
    t.regex(body.error, new RegExp(`^no sketches: no fingerprint key at ${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: create one with "ksm-agent fingerprint --init-key --key-file `));
    const m = parseSamples((await get(port, '/metrics')).body.toString());
    t.false([...m.keys()].some((k) => k.startsWith('samepage_vm_fingerprint_')), 'no per-VM fingerprint series without sketches');
    const p = await runCli(['place', '--from', `http://127.0.0.1:${port}/api/fingerprint`]);
    t.is(p.code, 3, p.stderr);
    t.regex(p.stderr, /^ksm-agent place: http:\/\/127\.0\.0\.1:\d+\/api\/fingerprint has no sketches \(503\): no sketches: no fingerprint key at .*: create one with "ksm-agent fingerprint --init-key/);
    t.is(await agent.stop('SIGTERM'), 0, agent.tail());

    const wide = sandbox.agent(['--config', await sandbox.writeConfig('wide', { ...base, listen: '0.0.0.0:0' }), ...sandbox.files('wide')]);
    const widePort = Number(new URL(await wide.metricsUrl()).port);
    await wide.waitForLine(/started pid=/);
    const refused = await get(widePort, '/api/fingerprint');
    t.is(refused.status, 403);
    t.regex(refused.body.toString(), /this endpoint tells which VMs share memory/);
    t.regex(wide.lines.join('\n'), /\/api\/vms, \/api\/matrix and \/api\/fingerprint .* are refused until "tokenFile" is set/);
    const p2 = await runCli(['place', '--from', `http://127.0.0.1:${widePort}/api/fingerprint`]);
    t.is(p2.code, 77, p2.stderr);
    t.regex(p2.stderr, /answered 403 forbidden: forbidden: this endpoint tells which VMs share memory.*; the agent serves sketches off loopback only with "tokenFile" set/);
    t.is(await wide.stop('SIGTERM'), 0, wide.tail());
    t.deepEqual((await snapshotSettings()).files, before.files);
  });
});

test.serial("the daemon's sketch schedule: one run at a time, each next start max(interval, 19 × the last run) after the last ended; stop() ends it", async (t) => {
  const { FingerprintService, IDLE_PER_BUSY } = await import('../lib/agent/fingerprints.js');
  const { createLogger } = await import('../lib/agent/log.js');
  const lines: string[] = [];
  // An interval far below the config's minimum (10 s), so the CPU bound (19 × the run) is what spaces runs.
  const q = await startQemu(['-m', '64', '-name', 'fpa-sched'], RAM);
  const svc = new FingerprintService({ enabled: true, intervalSeconds: 0.05, keyFile, entries: 256, vms: [String(q.pid)] }, createLogger({ write: (l) => lines.push(l) }));
  t.is(svc.view().problem?.kind, 'pending');
  svc.start();
  const seen: { startedAt: number; finishedAt: number; nextAt: number | undefined; period: number }[] = [];
  const deadline = Date.now() + 240_000;
  while (seen.length < 3 && Date.now() < deadline) {
    const v = svc.view();
    const l = v.latest;
    if (l !== undefined && l.startedAt !== seen[seen.length - 1]?.startedAt) seen.push({ startedAt: l.startedAt, finishedAt: l.finishedAt, nextAt: v.nextAt, period: v.periodSeconds });
    await new Promise((r) => setTimeout(r, 2));
  }
  await svc.stop();
  const after = lines.length;
  t.is(seen.length, 3, lines.join('\n'));
  for (let i = 1; i < seen.length; i++) {
    const prev = seen[i - 1] as (typeof seen)[number];
    const cur = seen[i] as (typeof seen)[number];
    const run = prev.finishedAt - prev.startedAt;
    // Each run starts after the last ended (never two at a time), at least 19 runs' time later.
    // (run is in whole ms of Date.now(), the schedule's own measure in fractions: 2 ms of slack, times 19.)
    t.true(cur.startedAt >= prev.finishedAt + Math.max(50, IDLE_PER_BUSY * (run - 2)) - 5, `run ${i}: started ${cur.startedAt - prev.finishedAt} ms after the last ended (${run} ms long)`);
    t.true(prev.period >= (IDLE_PER_BUSY * (run - 2)) / 1000, `period ${prev.period} s after a run of ${run} ms`);
  }
  await new Promise((r) => setTimeout(r, 300));
  t.is(lines.length, after, 'no run after stop()');
  t.is(svc.view().nextAt, undefined);

  // No VM to sketch (none of the configured ones runs): still a valid sketch file, of the key.
  const none = new FingerprintService({ enabled: true, intervalSeconds: 10, keyFile, entries: null, vms: ['fpa-not-running'] }, createLogger({ write: () => undefined }));
  none.start();
  for (let i = 0; i < 500 && none.view().latest === undefined; i++) await new Promise((r) => setTimeout(r, 20));
  const empty = decodeSketches(none.view().latest?.bytes ?? Buffer.alloc(0), 'empty');
  t.is(empty.keyId, (await readFingerprintKey(keyFile)).id);
  t.deepEqual(empty.sketches, []);
  // SIGHUP's reconfigure: a longer interval re-times the wait; turned off, the sketches are dropped
  // (the endpoint then answers 404 and the metrics have no series); on again, a run starts at once.
  const armed = none.view().nextAt ?? 0;
  none.reconfigure({ enabled: true, intervalSeconds: 600, keyFile, entries: null, vms: ['fpa-not-running'] });
  t.true((none.view().nextAt ?? 0) >= armed + 500_000, 'the next run moved out to the new interval');
  none.reconfigure({ enabled: false, intervalSeconds: 600, keyFile, entries: null, vms: ['fpa-not-running'] });
  t.is(none.view().problem?.kind, 'off');
  t.is(none.view().latest, undefined);
  t.is(none.current(), undefined);
  t.is(none.view().nextAt, undefined);
  none.reconfigure({ enabled: true, intervalSeconds: 600, keyFile, entries: null, vms: ['fpa-not-running'] });
  for (let i = 0; i < 500 && none.view().latest === undefined; i++) await new Promise((r) => setTimeout(r, 20));
  t.truthy(none.view().latest, 'on again: sketched without waiting an interval');
  await none.stop();
  // Off and on again while a run is in flight (started under the old config, aborted): the next
  // run still starts at once when that one ends, not a whole interval later.
  const racing = new FingerprintService({ enabled: true, intervalSeconds: 600, keyFile, entries: null, vms: ['fpa-not-running'] }, createLogger({ write: () => undefined }));
  racing.start();
  await new Promise((r) => setTimeout(r, 0)); // the first run's timer fires first: it is now reading the key
  racing.reconfigure({ enabled: false, intervalSeconds: 600, keyFile, entries: null, vms: ['fpa-not-running'] });
  const reEnabledAt = Date.now();
  racing.reconfigure({ enabled: true, intervalSeconds: 600, keyFile, entries: null, vms: ['fpa-not-running'] });
  for (let i = 0; i < 500 && (racing.view().latest?.startedAt ?? 0) < reEnabledAt; i++) await new Promise((r) => setTimeout(r, 20));
  t.true((racing.view().latest?.startedAt ?? 0) >= reEnabledAt, 'a run started after the re-enable, without waiting an interval');
  await racing.stop();

  // Off: nothing runs and the view says so.
  const off = new FingerprintService({ enabled: false, intervalSeconds: 10, keyFile, entries: null, vms: [] }, createLogger({ write: () => undefined }));
  off.start();
  t.is(off.view().problem?.kind, 'off');
  t.is(off.view().nextAt, undefined);
  await off.stop();
});
