// Which Host header values the agent's HTTP server answers: its defence against DNS rebinding.
// A page on evil.example whose name is re-pointed at 127.0.0.1 after it loaded makes the victim's
// browser send requests to the agent that the browser believes are same-origin with evil.example,
// so the page could read /api/vms. Those requests carry `Host: evil.example:PORT`; answering only
// Host values that name this agent (its listen address, the loopback names, names the operator
// configured) stops them. IP literals cannot be re-pointed, so every address of the host is safe
// to accept when the agent listens on all of them (0.0.0.0, ::).
import net from 'node:net';
import os from 'node:os';

export interface HostPolicy {
  /** The port the server bound (the one a browser puts in Host). */
  readonly port: number;
  /** Canonical names accepted with `port` (or with no port when port is 80). */
  readonly names: ReadonlySet<string>;
  /** Configured names accepted with any port (a reverse proxy's public name) or with one port. */
  readonly extra: ReadonlyMap<string, number | undefined>;
  /** Listening on every address: each interface address of the host is accepted too. */
  readonly wildcard: boolean;
}

/** A Host value (or an allowedHosts entry): a DNS name, an IPv4 address or a bracketed IPv6 one. */
const HOST_RE = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.?)(?::(\d{1,5}))?$/;

export interface ParsedHost {
  /** Lower case, no trailing dot, IPv6 without brackets in its canonical form. */
  name: string;
  port?: number;
}

/** Parses `name[:port]`; undefined for anything else (userinfo, paths, spaces, bad ports). */
export function parseHost(text: string): ParsedHost | undefined {
  const m = HOST_RE.exec(text);
  if (m === null) return undefined;
  let name = (m[1] as string).toLowerCase().replace(/\.$/, '');
  if (name.startsWith('[')) {
    name = name.slice(1, -1);
    if (!net.isIPv6(name)) return undefined;
    name = canonicalIPv6(name);
  }
  if (m[2] === undefined) return { name };
  const port = Number(m[2]);
  return port >= 1 && port <= 65535 ? { name, port } : undefined;
}

/** `0:0:0:0:0:0:0:1` and `::1` are the same address; the URL parser writes both as `::1`. */
function canonicalIPv6(addr: string): string {
  return new URL(`http://[${addr}]/`).hostname.slice(1, -1);
}

function canonicalName(host: string): string {
  return net.isIPv6(host) ? canonicalIPv6(host) : host.toLowerCase().replace(/\.$/, '');
}

export function isWildcard(host: string): boolean {
  return host === '' || host === '0.0.0.0' || (net.isIPv6(host) && canonicalIPv6(host) === '::');
}

/** 127.0.0.0/8, ::1 and IPv4-mapped 127.x: addresses only this host's processes reach. */
export function isLoopback(address: string): boolean {
  const v4 = address.toLowerCase().replace(/^::ffff:/, '');
  if (net.isIPv4(v4)) return v4.startsWith('127.');
  return net.isIPv6(address) && canonicalIPv6(address) === '::1';
}

export function hostPolicy(listenHost: string, port: number, allowedHosts: readonly string[]): HostPolicy {
  const names = new Set(['localhost', '127.0.0.1', '::1']);
  if (!isWildcard(listenHost)) names.add(canonicalName(listenHost));
  const extra = new Map<string, number | undefined>();
  for (const entry of allowedHosts) {
    const h = parseHost(entry);
    if (h === undefined) throw new RangeError(`allowed host ${JSON.stringify(entry)} is not NAME or NAME:PORT`);
    extra.set(h.name, h.port);
  }
  return { port, names, extra, wildcard: isWildcard(listenHost) };
}

function interfaceAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) out.add(canonicalName(a.address.replace(/%.*$/, '')));
  }
  return out;
}

/**
 * Whether a request with this Host header may be answered. A request without one is allowed:
 * Node already answers 400 to an HTTP/1.1 request without Host (requireHostHeader), so only an
 * HTTP/1.0 client gets here without it, and that is never a browser (every browser sends Host),
 * while DNS rebinding needs a browser. Old monitoring probes that speak HTTP/1.0 keep working.
 */
export function hostAllowed(policy: HostPolicy, header: string | undefined): boolean {
  if (header === undefined) return true;
  const h = parseHost(header);
  if (h === undefined) return false;
  if (policy.extra.has(h.name)) {
    const want = policy.extra.get(h.name);
    return want === undefined || h.port === want;
  }
  const portOk = h.port === undefined ? policy.port === 80 : h.port === policy.port;
  if (!portOk) return false;
  if (policy.names.has(h.name)) return true;
  return policy.wildcard && net.isIP(h.name) !== 0 && interfaceAddresses().has(h.name);
}
