// The agent's HTTP side: a small router (method + exact path) and a server bound to 127.0.0.1 by
// default. /metrics and /healthz are registered by the daemon; a status page at / or JSON under
// /api/ is one more router.get() (the daemon's History holds the series such routes need).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SamepageError, fromSystemError } from '../errors.js';

export interface Reply {
  status?: number;
  contentType?: string;
  body: string | Buffer;
  headers?: Record<string, string>;
}

export type Handler = (req: http.IncomingMessage, url: URL) => Promise<Reply> | Reply;

export class Router {
  private readonly routes = new Map<string, Handler>();
  private readonly prefixes: [string, Handler][] = [];

  get(path: string, handler: Handler): this {
    this.routes.set(`GET ${path}`, handler);
    return this;
  }

  /** Every GET under a prefix ("/api/"), for route families such as a JSON API. */
  getPrefix(prefix: string, handler: Handler): this {
    this.prefixes.push([prefix, handler]);
    return this;
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

export interface HttpServer {
  /** "http://127.0.0.1:9662" with the port actually bound (for listen port 0). */
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function startHttpServer(router: Router, host: string, port: number, onError: (err: Error) => void): Promise<HttpServer> {
  const server = http.createServer((req, res) => {
    router
      .handle(req)
      .catch((err: unknown): Reply => {
        onError(err instanceof Error ? err : new Error(String(err)));
        return { status: 500, contentType: 'text/plain; charset=utf-8', body: `${err instanceof Error ? err.message : String(err)}\n` };
      })
      .then((reply) => {
        res.writeHead(reply.status ?? 200, { 'Content-Type': reply.contentType ?? 'text/plain; charset=utf-8', ...reply.headers });
        res.end(req.method === 'HEAD' ? undefined : reply.body);
      })
      .catch(onError);
  });
  // Scrapes are short; do not keep idle keep-alive sockets (and their timers) around.
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(listenError(err, host, port)));
    server.listen(port, host, () => resolve());
  });
  server.on('error', (err) => onError(err));
  const bound = (server.address() as AddressInfo).port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${bound}`,
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function listenError(err: unknown, host: string, port: number): Error {
  const code = (err as { code?: unknown }).code;
  if (code === 'EADDRINUSE') {
    return new SamepageError('IO', `cannot serve metrics on ${host}:${port}: the port is in use; set "listen" to another port (or null for no metrics)`, { errno: 'EADDRINUSE', cause: err });
  }
  return fromSystemError(err, { op: `listen on ${host}:${port} for`, path: 'metrics' });
}
