// The agent's HTTP side: a small router (method + exact path) and a server bound to 127.0.0.1 by
// default. /metrics and /healthz are registered by the daemon; the status page at / and JSON under
// /api/ by web/status-page.ts. Every request passes a gate before any handler runs:
//   414  a URL longer than maxUrlBytes
//   400  two Host headers; 403 a Host header that does not name this agent (DNS rebinding: http-host.ts)
//   405  any method but GET and HEAD; 413 a GET that carries a body (neither body is read)
//   401  no valid token, when "tokenFile" is set (every route but the public /healthz)
//   403  side-channel routes (/api/vms, /api/matrix, /api/fingerprint) on a non-loopback listen without a token
// and the server itself bounds connections, header size and the time a request may take
// (slowloris), answering 431 and 408 itself. A handler that throws gives `500 internal error`:
// the message, which may name files or pids, goes to the log only.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SamepageError, fromSystemError } from '../errors.js';
import { AUTH_CHALLENGE } from './http-auth.js';
import type { BearerToken } from './http-auth.js';
import { hostAllowed, hostPolicy, isLoopback } from './http-host.js';
import type { HostPolicy } from './http-host.js';
import type { Logger } from './log.js';

export interface Reply {
  status?: number;
  contentType?: string;
  body: string | Buffer;
  headers?: Record<string, string | string[]>;
}

export type Handler = (req: http.IncomingMessage, url: URL) => Promise<Reply> | Reply;

/**
 * Who may read a route: `public` needs no token (a liveness probe), `side-channel` tells which VMs
 * share pages with which (what a cross-VM dedup attack wants), `normal` is everything else.
 */
export type Access = 'public' | 'normal' | 'side-channel';

/** "/api/vms/" and "/api/vms" are one route (the API handler strips trailing slashes too). */
function routeKey(pathname: string): string {
  return pathname.length > 1 ? pathname.replace(/\/+$/, '') : pathname;
}

export class Router {
  private readonly routes = new Map<string, Handler>();
  private readonly prefixes: [string, Handler][] = [];
  private readonly access = new Map<string, Access>();

  get(path: string, handler: Handler, access: Access = 'normal'): this {
    this.routes.set(`GET ${path}`, handler);
    if (access !== 'normal') this.access.set(routeKey(path), access);
    return this;
  }

  /** Every GET under a prefix ("/api/"), for route families such as a JSON API. */
  getPrefix(prefix: string, handler: Handler): this {
    this.prefixes.push([prefix, handler]);
    return this;
  }

  /** Marks paths served by a prefix handler as side-channel data. */
  sideChannel(...paths: string[]): this {
    for (const p of paths) this.access.set(routeKey(p), 'side-channel');
    return this;
  }

  accessOf(pathname: string): Access {
    return this.access.get(routeKey(pathname)) ?? 'normal';
  }

  paths(): string[] {
    return [...this.routes.keys()].map((k) => k.slice(4));
  }

  async handle(req: http.IncomingMessage): Promise<Reply> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    const exact = this.routes.get(`${method} ${url.pathname}`);
    if (exact !== undefined) return exact(req, url);
    if (method === 'GET') {
      const hit = this.prefixes.find(([p]) => url.pathname.startsWith(p));
      if (hit !== undefined) return hit[1](req, url);
    }
    const allowed = this.paths().includes(url.pathname) ? 405 : 404;
    return { status: allowed, contentType: 'text/plain; charset=utf-8', body: allowed === 404 ? `not found; try ${this.paths().join(', ')}\n` : 'method not allowed\n' };
  }
}

export interface HttpLimits {
  /** Open connections at once; more are closed as they arrive (a browser opens ~6, Prometheus 1). */
  maxConnections: number;
  /** From the connection's first byte to the end of its headers (slowloris). */
  headersTimeoutMs: number;
  /** From the first byte to the end of the request. */
  requestTimeoutMs: number;
  /** How often the two timeouts above are checked (Node's default is 30 s). */
  checkIntervalMs: number;
  /** A socket with no traffic this long is closed (a client that stops reading its answer). */
  idleTimeoutMs: number;
  /** Request line and headers together; more gets 431. */
  maxHeaderBytes: number;
  /** The request target; longer gets 414. */
  maxUrlBytes: number;
}

export const HTTP_LIMITS: Readonly<HttpLimits> = {
  maxConnections: 32,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 15_000,
  checkIntervalMs: 1000,
  idleTimeoutMs: 30_000,
  maxHeaderBytes: 8192,
  maxUrlBytes: 2048,
};

export interface HttpServerOptions {
  host: string;
  port: number;
  /** Extra Host names to answer (config "allowedHosts"): NAME (any port) or NAME:PORT. */
  allowedHosts?: readonly string[];
  /** When set, every route but the public ones needs it (config "tokenFile"). */
  token?: BearerToken;
  log: Logger;
  limits?: Partial<HttpLimits>;
}

export interface HttpServer {
  /** "http://127.0.0.1:9662" with the port actually bound (for listen port 0). */
  url: string;
  port: number;
  close(): Promise<void>;
}

const TEXT = 'text/plain; charset=utf-8';

function refusal(status: number, body: string, headers: Record<string, string | string[]> = {}): Reply {
  // The connection is closed after a refusal: any body the client sent is left unread.
  return { status, contentType: TEXT, body, headers: { Connection: 'close', 'Cache-Control': 'no-store', ...headers } };
}

interface Gate {
  limits: HttpLimits;
  hosts: HostPolicy;
  token: BearerToken | undefined;
  loopbackListen: boolean;
  router: Router;
}

/** The path the router will see: the same parser, so a check and the route cannot disagree. */
function pathOf(target: string): string | undefined {
  try {
    return new URL(target, 'http://localhost').pathname;
  } catch {
    return undefined;
  }
}

/** The answer for a request that must not reach a handler, or undefined when it may. */
function gate(g: Gate, req: http.IncomingMessage): Reply | undefined {
  const target = req.url ?? '/';
  if (Buffer.byteLength(target) > g.limits.maxUrlBytes) return refusal(414, `URI too long: at most ${g.limits.maxUrlBytes} bytes\n`);
  // Node keeps the first of two Host headers; RFC 9112 says such a request gets 400.
  if (req.rawHeaders.filter((h, i) => i % 2 === 0 && h.toLowerCase() === 'host').length > 1) return refusal(400, 'bad request: more than one Host header\n');
  if (!hostAllowed(g.hosts, req.headers.host)) {
    return refusal(403, 'forbidden: the Host header does not name this agent; add the name to "allowedHosts" in the agent config\n');
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') return refusal(405, 'method not allowed: GET and HEAD only\n', { Allow: 'GET, HEAD' });
  const length = req.headers['content-length'];
  if (req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')) {
    return refusal(413, 'request bodies are not accepted\n');
  }
  const pathname = pathOf(target);
  // A target the URL parser refuses ("//[", "http://a:99999/") would throw in every handler.
  if (pathname === undefined) return refusal(400, 'bad request: the request target is not a URL path\n');
  const access = g.router.accessOf(pathname);
  if (g.token !== undefined) {
    if (access !== 'public' && !g.token.matches(req.headers.authorization)) {
      return refusal(401, 'unauthorized: send the token from "tokenFile" as Authorization: Bearer TOKEN\n', { 'WWW-Authenticate': AUTH_CHALLENGE });
    }
  } else if (access === 'side-channel' && !g.loopbackListen) {
    return refusal(403, 'forbidden: this endpoint tells which VMs share memory; on a non-loopback listen address it needs "tokenFile" set (or listen on 127.0.0.1)\n');
  }
  return undefined;
}

export async function startHttpServer(router: Router, opts: HttpServerOptions): Promise<HttpServer> {
  const limits: HttpLimits = { ...HTTP_LIMITS, ...opts.limits };
  const { log } = opts;
  const server = http.createServer({
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    connectionsCheckingInterval: limits.checkIntervalMs,
    // Scrapes are short; do not keep idle keep-alive sockets (and their timers) around.
    keepAliveTimeout: 1000,
    // HTTP/1.1 without Host is answered 400 by Node itself (http-host.ts says why 1.0 is let through).
    requireHostHeader: true,
  });
  server.maxConnections = limits.maxConnections;
  // A socket idle this long is destroyed (no 'timeout' listener: Node's default does that).
  server.setTimeout(limits.idleTimeoutMs);
  let lastDropWarning = 0;
  server.on('drop', () => {
    if (Date.now() - lastDropWarning < 60_000) return;
    lastDropWarning = Date.now();
    log.warning(`http: ${limits.maxConnections} connections are open, the limit: closing new ones as they arrive (warned at most once a minute)`);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(listenError(err, opts.host, opts.port)));
    server.listen(opts.port, opts.host, () => resolve());
  });
  server.on('error', (err) => log.warning(`http: ${err.message}`));
  const address = server.address() as AddressInfo;
  const g: Gate = {
    limits,
    hosts: hostPolicy(opts.host, address.port, opts.allowedHosts ?? []),
    token: opts.token,
    loopbackListen: isLoopback(address.address),
    router,
  };

  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    // Inside the promise chain: whatever throws, the gate included, is a 500 here and never an
    // uncaught exception (which would stop the daemon).
    Promise.resolve()
      .then(() => gate(g, req) ?? router.handle(req))
      .catch((err: unknown): Reply => {
        // The message may name files, pids or VMs: the log gets it, the client a fixed line.
        const pathname = (req.url ?? '/').split('?')[0];
        log.error(`http: ${req.method ?? 'GET'} ${pathname} failed: ${err instanceof Error ? err.message : String(err)}`);
        if (err instanceof Error && err.stack !== undefined) log.debug(`http: ${err.stack}`);
        return refusal(500, 'internal error\n');
      })
      .then((reply) => {
        res.writeHead(reply.status ?? 200, { 'Content-Type': reply.contentType ?? TEXT, 'X-Content-Type-Options': 'nosniff', ...reply.headers });
        res.end(req.method === 'HEAD' ? undefined : reply.body);
      })
      .catch((err: unknown) => {
        log.warning(`http: could not answer: ${err instanceof Error ? err.message : String(err)}`);
        res.destroy();
      });
  });

  const shownHost = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const url = `http://${shownHost}:${address.port}`;
  if (!g.loopbackListen) warnExposed(log, url, opts.token !== undefined);
  return {
    url,
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A listen address other hosts reach: say what they can read, and what to do about it. */
function warnExposed(log: Logger, url: string, withToken: boolean): void {
  if (withToken) {
    log.notice(`listening on ${url}, not a loopback address: every route but /healthz needs the bearer token from "tokenFile"`);
    return;
  }
  log.warning(
    `listening on ${url}, not a loopback address, without a token: anyone who reaches it reads /metrics, which exposes per-VM data (each VM's merged pages and savings, cross-tenant sharing); ` +
      `/api/vms, /api/matrix and /api/fingerprint (which VMs share pages with which) are refused until "tokenFile" is set; set "tokenFile" to a root-only file holding a token, or listen on 127.0.0.1`,
  );
}

function listenError(err: unknown, host: string, port: number): Error {
  const code = (err as { code?: unknown }).code;
  if (code === 'EADDRINUSE') {
    return new SamepageError('IO', `cannot serve metrics on ${host}:${port}: the port is in use; set "listen" to another port (or null for no metrics)`, { errno: 'EADDRINUSE', cause: err });
  }
  return fromSystemError(err, { op: `listen on ${host}:${port} for`, path: 'metrics' });
}

