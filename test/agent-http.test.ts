// The agent's HTTP server under bad requests, against real servers: startHttpServer with the real
// Router on 127.0.0.1 (or 0.0.0.0, reached through 127.0.0.1 only), and a real `ksm-agent run`.
// Each test sends the bad request (a foreign Host, too many sockets, a huge header, a long URL, a
// slowloris trickle, a POST body, a handler that throws, a missing or wrong token, a token file
// others can read) and checks the answer, that no handler ran, and what the log says.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { snapshotSettings } from '../lib/sysfs.js';
import { BearerToken } from '../lib/agent/http-auth.js';
import { Router, startHttpServer } from '../lib/agent/http.js';
import type { HttpLimits, HttpServer } from '../lib/agent/http.js';
import { createLogger } from '../lib/agent/log.js';
import { readTokenFile } from '../lib/agent/token-file.js';
import { runCli, startAgent } from './helpers/agent.js';
import type { AgentProcess } from './helpers/agent.js';
import { withSavedKsm } from './helpers/ksm.js';

const TOKEN = 'c2FtZXBhZ2UtdGVzdC10b2tlbi0xMjM0NTY3OA';
/** What the side-channel route answers: must never appear in a refusal. */
const SECRET = 'vm-web-acme shares 1234 pages with vm-db-globex';

let dir = '';
const servers: HttpServer[] = [];
const agents: AgentProcess[] = [];

test.before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'ksm-agent-http-'));
});
test.after.always(async () => {
  for (const s of servers) await s.close();
  for (const a of agents) await a.stop('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

interface Served {
  server: HttpServer;
  log: string[];
  /** Requests that reached a handler. */
  handled: string[];
}

/** A real server with the real Router: /metrics, public /healthz, /api/ with a side-channel /api/vms. */
async function serve(opts: { host?: string; token?: string; allowedHosts?: string[]; limits?: Partial<HttpLimits>; throwing?: Error } = {}): Promise<Served> {
  const log: string[] = [];
  const handled: string[] = [];
  const router = new Router()
    .get('/metrics', (req) => {
      handled.push(`${req.method ?? ''} ${req.url ?? ''}`);
      if (opts.throwing !== undefined) throw opts.throwing;
      return { body: 'samepage_up 1\n' };
    })
    .get('/healthz', () => ({ body: 'ok off\n' }), 'public')
    .getPrefix('/api/', (req) => {
      handled.push(`${req.method ?? ''} ${req.url ?? ''}`);
      return { contentType: 'application/json', body: JSON.stringify({ what: SECRET }) };
    })
    .sideChannel('/api/vms');
  const server = await startHttpServer(router, {
    host: opts.host ?? '127.0.0.1',
    port: 0,
    log: createLogger({ write: (line) => log.push(line), verbose: true }),
    ...(opts.token === undefined ? {} : { token: new BearerToken(opts.token) }),
    ...(opts.allowedHosts === undefined ? {} : { allowedHosts: opts.allowedHosts }),
    ...(opts.limits === undefined ? {} : { limits: opts.limits }),
  });
  servers.push(server);
  return { server, log, handled };
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A GET to 127.0.0.1:port with the headers given (Host included: fetch would not let us set it). */
function get(port: number, target: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: target, method, headers: { Host: `127.0.0.1:${port}`, ...headers }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

interface Exchange {
  text: string;
  /** ms from connecting to the server closing the socket; undefined if still open at the end. */
  closedAfterMs: number | undefined;
}

/**
 * Raw bytes to 127.0.0.1:port: writes each chunk `gapMs` apart (a slowloris trickle when >0) until
 * the server closes the socket or `timeoutMs` passes; returns everything it answered.
 */
function exchange(port: number, chunks: string[], opts: { gapMs?: number; timeoutMs?: number } = {}): Promise<Exchange> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ text, closedAfterMs: closed ? Date.now() - started : undefined });
    };
    const timer = setTimeout(() => finish(false), opts.timeoutMs ?? 3000);
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (text += d));
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
    socket.on('connect', async () => {
      for (const c of chunks) {
        if (done || socket.destroyed) return;
        socket.write(c);
        if ((opts.gapMs ?? 0) > 0) await sleep(opts.gapMs);
      }
    });
  });
}

const statusOf = (raw: string): number => Number(/^HTTP\/1\.[01] (\d{3})/.exec(raw)?.[1] ?? 0);

test('DNS rebinding: a foreign Host gets 403 and no data; the loopback names and configured names with the port get 200', async (t) => {
  const { server, handled } = await serve({ allowedHosts: ['ksm.example.test', 'proxy.example.test:8443'] });
  const p = server.port;
  for (const host of ['evil.example', `evil.example:${p}`, `127.0.0.1:${p + 1}`, `evil.example@127.0.0.1:${p}`, `127.0.0.1:${p}/x`, `localhost.evil.example:${p}`, `proxy.example.test:${p}`]) {
    const r = await get(p, '/api/vms', { Host: host });
    t.is(r.status, 403, `Host ${JSON.stringify(host)}`);
    t.false(r.body.includes(SECRET), `Host ${JSON.stringify(host)}: no data`);
  }
  t.deepEqual(handled, [], 'no handler ran for a refused Host');
  // What Chromium sends for http://127.0.0.1:PORT/ and friends, and what allowedHosts adds.
  for (const host of [`127.0.0.1:${p}`, `localhost:${p}`, `LOCALHOST.:${p}`, `[::1]:${p}`, `[0:0:0:0:0:0:0:1]:${p}`, 'ksm.example.test', `ksm.example.test:${p}`, 'proxy.example.test:8443']) {
    const r = await get(p, '/api/vms', { Host: host });
    t.is(r.status, 200, `Host ${host}`);
    t.true(r.body.includes(SECRET));
  }
  // An empty Host, and a second Host after an allowed one (Node would keep the first), are refused.
  handled.length = 0;
  const empty = await exchange(p, ['GET /api/vms HTTP/1.1\r\nHost: \r\n\r\n']);
  t.is(statusOf(empty.text), 403, empty.text);
  const two = await exchange(p, [`GET /api/vms HTTP/1.1\r\nHost: 127.0.0.1:${p}\r\nHost: evil.example\r\n\r\n`]);
  t.is(statusOf(two.text), 400, two.text);
  t.false(empty.text.includes(SECRET) || two.text.includes(SECRET));
  t.deepEqual(handled, [], 'no handler ran for a refused Host');
  // HTTP/1.0 without Host: never a browser, so never DNS rebinding: answered.
  const old = await exchange(p, ['GET /metrics HTTP/1.0\r\n\r\n']);
  t.is(statusOf(old.text), 200, old.text);
  // HTTP/1.1 without Host is malformed (RFC 9112): Node answers 400 before any handler.
  const bare = await exchange(p, ['GET /api/vms HTTP/1.1\r\n\r\n']);
  t.is(statusOf(bare.text), 400, bare.text);
  t.false(bare.text.includes(SECRET));
});

test('Host on an IPv6 loopback listen: [::1]:PORT answers, a foreign name does not', async (t) => {
  const { server } = await serve({ host: '::1' });
  const ask = (host: string) =>
    new Promise<number>((resolve, reject) => {
      http.get({ host: '::1', port: server.port, path: '/metrics', headers: { Host: host }, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      }).on('error', reject);
    });
  t.is(await ask(`[::1]:${server.port}`), 200);
  t.is(await ask(`evil.example:${server.port}`), 403);
});

test('connections beyond maxConnections are closed at once; one freed is usable again', async (t) => {
  const { server, log } = await serve({ limits: { maxConnections: 3 } });
  const held = await Promise.all(
    [1, 2, 3].map(
      () =>
        new Promise<net.Socket>((resolve) => {
          const s = net.connect(server.port, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  await sleep(300); // let the server accept all three
  const extra = await exchange(server.port, [`GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n\r\n`], { timeoutMs: 2000 });
  t.not(extra.closedAfterMs, undefined, 'the 4th connection is closed by the server');
  t.is(extra.text, '', 'and gets no answer');
  t.true(log.some((l) => /http: 3 connections are open, the limit: closing new ones/.test(l)), log.join('\n'));
  (held[0] as net.Socket).destroy();
  await sleep(300);
  const again = await get(server.port, '/metrics');
  t.is(again.status, 200);
  for (const s of held) s.destroy();
});

test('a header block over maxHeaderBytes (8 KiB) gets 431 without reaching a handler', async (t) => {
  const { server, handled } = await serve();
  const r = await exchange(server.port, [`GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nX-Big: ${'a'.repeat(12_000)}\r\n\r\n`]);
  t.is(statusOf(r.text), 431, r.text);
  t.not(r.closedAfterMs, undefined, 'and the connection is closed');
  t.deepEqual(handled, []);
  const fits = await get(server.port, '/metrics', { 'X-Big': 'a'.repeat(6000) });
  t.is(fits.status, 200, 'a 6 KB header is still within the limit');
});

test('a URL over 2048 bytes gets 414 without reaching a handler', async (t) => {
  const { server, handled } = await serve();
  const r = await get(server.port, `/metrics?x=${'a'.repeat(3000)}`);
  t.is(r.status, 414);
  t.deepEqual(handled, []);
  t.is((await get(server.port, `/metrics?x=${'a'.repeat(1000)}`)).status, 200, 'a long but allowed URL still works');
});

test('slowloris: headers trickled byte by byte are cut off after headersTimeout; a silent socket too', async (t) => {
  const limits = { headersTimeoutMs: 600, requestTimeoutMs: 800, checkIntervalMs: 100 };
  const { server, handled } = await serve({ limits });
  const trickle = [`GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n`, ...Array.from({ length: 100 }, (_, i) => `X-${i}: y\r\n`)];
  const r = await exchange(server.port, trickle, { gapMs: 100, timeoutMs: 5000 });
  t.not(r.closedAfterMs, undefined, `the server closed the trickling connection (got ${JSON.stringify(r.text)})`);
  t.true((r.closedAfterMs as number) >= 500 && (r.closedAfterMs as number) < 2500, `closed after ${r.closedAfterMs} ms`);
  t.is(statusOf(r.text), 408, r.text);
  const silent = await exchange(server.port, [], { timeoutMs: 5000 });
  t.not(silent.closedAfterMs, undefined, 'a connection that never sends a byte is closed too');
  t.true((silent.closedAfterMs as number) < 2500, `silent socket closed after ${silent.closedAfterMs} ms`);
  t.deepEqual(handled, []);
});

test('request bodies and targets: a POST of 100 MB gets 405 before the body is sent, a GET with a body 413, an unparsable target 400; none reaches a handler', async (t) => {
  const { server, handled } = await serve();
  const host = `Host: 127.0.0.1:${server.port}`;
  // Only 1 KiB of the announced 100 MB is ever sent: the answer cannot wait for (or buffer) the rest.
  const post = await exchange(server.port, [`POST /metrics HTTP/1.1\r\n${host}\r\nContent-Length: 100000000\r\n\r\n${'z'.repeat(1024)}`]);
  t.is(statusOf(post.text), 405, post.text);
  t.regex(post.text, /\r\nAllow: GET, HEAD\r\n/);
  t.not(post.closedAfterMs, undefined, 'the connection is closed instead of reading the body');
  for (const headers of ['Content-Length: 5\r\n\r\nhello', 'Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n']) {
    const r = await exchange(server.port, [`GET /metrics HTTP/1.1\r\n${host}\r\n${headers}`]);
    t.is(statusOf(r.text), 413, `${headers}: ${r.text}`);
    t.not(r.closedAfterMs, undefined);
  }
  for (const method of ['PUT', 'DELETE', 'OPTIONS', 'PATCH']) t.is((await get(server.port, '/metrics', {}, method)).status, 405, method);
  t.deepEqual(handled, [], 'no handler ran');
  t.is((await get(server.port, '/metrics', {}, 'HEAD')).status, 200, 'HEAD is a GET without the body');
  // A target the URL parser throws on is a 400, not an exception in the server (the daemon would stop).
  for (const target of ['//[', 'http://[', 'http://a:99999/']) {
    const r = await exchange(server.port, [`GET ${target} HTTP/1.1\r\n${host}\r\n\r\n`]);
    t.is(statusOf(r.text), 400, `${target}: ${r.text}`);
  }
  t.is((await get(server.port, '/healthz')).status, 200, 'the server is still up');
});

test('a handler that throws: 500 "internal error" with no message, path or stack; the log has the detail', async (t) => {
  const err = new Error("EACCES: permission denied, open '/var/lib/samepage/secret-vm-acme.json'");
  const { server, log } = await serve({ throwing: err });
  const r = await get(server.port, '/metrics');
  t.is(r.status, 500);
  t.is(r.body, 'internal error\n');
  t.false(/samepage|EACCES|secret|at .*\.js/.test(r.body));
  t.true(log.some((l) => l.includes("ksm-agent error: http: GET /metrics failed: EACCES: permission denied, open '/var/lib/samepage/secret-vm-acme.json'")), log.join('\n'));
  t.true(log.some((l) => /ksm-agent debug: http: Error: EACCES.*at /.test(l)), 'the stack goes to the debug log');
  t.is((await get(server.port, '/healthz')).status, 200, 'the server keeps serving');
});

test('listen 0.0.0.0 without a token: a warning naming /metrics, /api/vms and tokenFile; /api/vms refused, /metrics served', async (t) => {
  const quiet = await serve();
  t.false(quiet.log.some((l) => /not a loopback address/.test(l)), 'no warning on 127.0.0.1');
  const open = await serve({ host: '0.0.0.0' });
  const warning = open.log.find((l) => l.startsWith('ksm-agent warning: listening on http://0.0.0.0:'));
  t.truthy(warning, open.log.join('\n'));
  t.regex(warning as string, /\/metrics, which exposes per-VM data/);
  t.regex(warning as string, /\/api\/vms, \/api\/matrix and \/api\/fingerprint \(which VMs share pages with which\) are refused/);
  t.regex(warning as string, /set "tokenFile"/);
  // Traffic only to 127.0.0.1 (0.0.0.0 includes it).
  const vms = await get(open.server.port, '/api/vms');
  t.is(vms.status, 403);
  t.false(vms.body.includes(SECRET));
  // Every spelling the URL parser reads as /api/vms is the same route, refused alike.
  for (const spelling of ['/api/vms/', '/api/vms?since=0', '/api/./vms', '/api/%2e/vms', '/api/x/../vms', '//other.example/api/vms']) {
    const r = await get(open.server.port, spelling);
    t.is(r.status, 403, spelling);
    t.false(r.body.includes(SECRET), spelling);
  }
  t.is((await get(open.server.port, '/metrics')).status, 200);
  t.is((await get(open.server.port, '/api/summary')).status, 200);
  // On an all-addresses listen, the host's own addresses are names of the agent (IP literals cannot
  // be rebound); on 127.0.0.1 they are not. The request still goes to 127.0.0.1: only Host differs.
  const own = Object.values(os.networkInterfaces())
    .flat()
    .find((a) => a !== undefined && !a.internal && a.family === 'IPv4');
  if (own !== undefined) {
    t.is((await get(open.server.port, '/metrics', { Host: `${own.address}:${open.server.port}` })).status, 200, `Host ${own.address} on 0.0.0.0`);
    t.is((await get(quiet.server.port, '/metrics', { Host: `${own.address}:${quiet.server.port}` })).status, 403, `Host ${own.address} on 127.0.0.1`);
  }
  // With a token the side-channel routes are served to whoever sends it; the warning becomes a notice.
  const guarded = await serve({ host: '0.0.0.0', token: TOKEN });
  t.false(guarded.log.some((l) => l.startsWith('ksm-agent warning:')), guarded.log.join('\n'));
  t.true(guarded.log.some((l) => /^ksm-agent notice: listening on .*needs the bearer token/.test(l)));
  t.is((await get(guarded.server.port, '/api/vms', { Authorization: `Bearer ${TOKEN}` })).status, 200);
});

test('bearer token: none or wrong gets 401 with WWW-Authenticate; the right one 200; /healthz stays open', async (t) => {
  const { server, handled } = await serve({ token: TOKEN });
  const p = server.port;
  for (const auth of [undefined, 'Bearer wrong', `Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, `Token ${TOKEN}`, `Bearer  `, `Bearer ${TOKEN} extra`]) {
    const r = await get(p, '/metrics', auth === undefined ? {} : { Authorization: auth });
    t.is(r.status, 401, String(auth));
    t.regex(String(r.headers['www-authenticate']), /Bearer realm="ksm-agent"/);
    t.false(r.body.includes('samepage_up'));
  }
  t.is((await get(p, '/api/vms')).status, 401, 'every route needs it');
  t.deepEqual(handled, []);
  t.is((await get(p, '/metrics', { Authorization: `Bearer ${TOKEN}` })).status, 200);
  t.is((await get(p, '/metrics', { Authorization: `bearer ${TOKEN}` })).status, 200, 'the scheme is case-insensitive');
  // A browser cannot add a Bearer header to the page's requests: Basic with the token as password works.
  t.is((await get(p, '/api/vms', { Authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` })).status, 200);
  t.is((await get(p, '/api/vms', { Authorization: `Basic ${Buffer.from('admin:nope').toString('base64')}` })).status, 401);
  t.is((await get(p, '/healthz')).status, 200, '/healthz needs no token');
  t.is((await get(p, '/healthz', { Host: 'evil.example' })).status, 403, 'but still a Host of this agent');
});

async function tokenFile(name: string, mode: number, content = `${TOKEN}\n`): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, content);
  await chmod(file, mode);
  return file;
}

async function refusal(t: ExecutionContext, file: string, re: RegExp): Promise<void> {
  const err = await t.throwsAsync(readTokenFile(file));
  t.is(err?.name, 'ConfigError');
  t.true(err?.message.startsWith(`token file ${file} `), err?.message);
  t.regex(err?.message ?? '', re);
}

test('token file: root-only 0600 and 0400 are read; others, links, FIFOs, non-root owners and bad tokens are refused', async (t) => {
  const good = await readTokenFile(await tokenFile('good', 0o600));
  t.true(good.matches(`Bearer ${TOKEN}`));
  t.true((await readTokenFile(await tokenFile('readonly', 0o400))).matches(`Bearer ${TOKEN}`));
  await refusal(t, await tokenFile('world', 0o644), /has mode 0644: only its owner may read it.*: chmod 600 /);
  await refusal(t, await tokenFile('group', 0o640), /has mode 0640/);
  await refusal(t, await tokenFile('others-write', 0o602), /has mode 0602/);
  await refusal(t, await tokenFile('exec', 0o700), /has mode 0700/);
  const nobodys = await tokenFile('nobodys', 0o600);
  await chown(nobodys, 65534, 65534);
  await refusal(t, nobodys, /is owned by uid 65534, not root: chown root:root /);
  const link = path.join(dir, 'link');
  await symlink(path.join(dir, 'good'), link);
  await refusal(t, link, /is a symbolic link: set "tokenFile" to the file itself/);
  const fifo = path.join(dir, 'fifo');
  execFileSync('mkfifo', ['-m', '600', fifo]);
  await refusal(t, fifo, /is not a regular file/);
  await mkdir(path.join(dir, 'adir'), { mode: 0o700 });
  await refusal(t, path.join(dir, 'adir'), /is not a regular file/);
  await refusal(t, path.join(dir, 'missing'), /does not exist: create it as root/);
  await refusal(t, await tokenFile('short', 0o600, 'abc123\n'), /does not hold one token of 16/);
  await refusal(t, await tokenFile('two-lines', 0o600, `${TOKEN}\n${TOKEN}\n`), /does not hold one token/);
  await refusal(t, await tokenFile('spaces', 0o600, 'a token with spaces in it\n'), /does not hold one token/);
  await refusal(t, await tokenFile('huge', 0o600, 'a'.repeat(100_000)), /holds 100000 bytes, more than a token/);
});

function agentFiles(name: string): string[] {
  return ['--state-file', path.join(dir, `${name}.state.json`), '--lock-file', path.join(dir, `${name}.lock`)];
}

test('ksm-agent run with a world-readable tokenFile: exit 2 naming the file; no state file, KSM unchanged', async (t) => {
  await withSavedKsm(async (before) => {
    const file = await tokenFile('agent-world', 0o644);
    const config = path.join(dir, 'world.json');
    await writeFile(config, JSON.stringify({ listen: '127.0.0.1:0', ksmtunedConf: null, tokenFile: file }));
    const r = await runCli(['run', '--config', config, ...agentFiles('world')]);
    t.is(r.code, 2, r.stderr);
    t.is(r.stderr, `ksm-agent run: token file ${file} has mode 0644: only its owner may read it (group and others can read or write it, or bits beyond rw are set): chmod 600 ${file}\n`);
    t.false(existsSync(path.join(dir, 'world.state.json')), 'refused before writing its state file');
    t.deepEqual((await snapshotSettings()).files, before.files);
    // The same through --token-file, and a bad allowedHosts entry, are config errors too.
    const flag = await runCli(['run', '--listen', '127.0.0.1:0', '--no-ksmtuned-conf', '--token-file', file, ...agentFiles('world')]);
    t.is(flag.code, 2, flag.stderr);
    t.regex(flag.stderr, new RegExp(`token file ${file} has mode 0644`));
    await writeFile(config, JSON.stringify({ listen: '127.0.0.1:0', ksmtunedConf: null, allowedHosts: ['*'] }));
    const wild = await runCli(['run', '--config', config, ...agentFiles('world')]);
    t.is(wild.code, 2, wild.stderr);
    t.regex(wild.stderr, /key "allowedHosts": must be an array of host names .*no wildcards.*, got "\*"/);
    t.deepEqual((await snapshotSettings()).files, before.files);
  });
});

test('a real ksm-agent run with tokenFile and allowedHosts: 401 without the token, 200 with it, 403 for a foreign Host', async (t) => {
  await withSavedKsm(async (before) => {
    const file = await tokenFile('agent-token', 0o600);
    const config = path.join(dir, 'token.json');
    // thresholdPercent 0: no memory pressure, so the agent leaves KSM as it is.
    await writeFile(config, JSON.stringify({ thresholdPercent: 0, thresholdMinKiB: 0, ksmtunedConf: null, intervalSeconds: 0.5, listen: '127.0.0.1:0', tokenFile: file, allowedHosts: ['ksm.example.test'] }));
    const a = startAgent(['--config', config, ...agentFiles('token')]);
    agents.push(a);
    const port = Number(new URL(await a.metricsUrl()).port);
    await a.waitForLine(/started pid=\d+ state=off/);
    const bearer = { Authorization: `Bearer ${TOKEN}` };
    t.is((await get(port, '/healthz')).status, 200);
    for (const route of ['/metrics', '/', '/api/summary', '/api/vms', '/api/matrix']) {
      t.is((await get(port, route)).status, 401, `${route} without a token`);
      t.is((await get(port, route, { Authorization: 'Bearer not-the-token-at-all' })).status, 401, `${route} with a wrong token`);
      t.is((await get(port, route, { ...bearer, Host: `evil.example:${port}` })).status, 403, `${route} with a foreign Host`);
    }
    const metrics = await get(port, '/metrics', bearer);
    t.is(metrics.status, 200);
    t.regex(metrics.body, /^node_ksmd_run /m);
    const vms = await get(port, '/api/vms', { ...bearer, Host: 'ksm.example.test' });
    t.is(vms.status, 200);
    t.true(Array.isArray((JSON.parse(vms.body) as { vms: unknown }).vms));
    t.false(a.lines.some((l) => /not a loopback address/.test(l)), 'no exposure warning on 127.0.0.1');
    t.is(await a.stop('SIGTERM'), 0, a.tail());
    t.deepEqual((await snapshotSettings()).files, before.files);
  });
});
