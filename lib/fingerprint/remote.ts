// Sketches pulled from a running agent: GET http(s)://HOST:PORT/api/fingerprint, which serves the
// bytes `ksm-agent fingerprint --out` writes (lib/agent/web/api.ts). The answer is bounded like a
// file is: a total time limit (connect and read), the size announced checked before anything is
// read and the bytes counted as they come (a server that sends more is cut off), no redirect
// followed (a redirect could carry the token elsewhere). The bytes are then parsed as strictly as a
// file (file.ts). Every error names the URL (without any user:password in it) and says what to do.
import http from 'node:http';
import https from 'node:https';
import { InvalidArgumentError, NotFoundError, NotPermittedError, SamepageError } from '../errors.js';
import { escapeText } from '../escape.js';
import { MAX_FILE_BYTES, decodeSketches } from './file.js';
import type { SketchFile } from './file.js';

export const FINGERPRINT_PATH = '/api/fingerprint';
export const DEFAULT_FETCH_TIMEOUT_MS = 30_000;

export interface FetchSketchOptions {
  /** The agent's bearer token (its "tokenFile"); sent as Authorization: Bearer. */
  token?: string;
  /** For connecting and reading the whole answer. */
  timeoutMs?: number;
  /** The most bytes accepted (default: the sketch file limit, 256 MiB). */
  maxBytes?: number;
}

/** Whether --from names a URL rather than a file. */
export function isSketchUrl(from: string): boolean {
  return /^https?:\/\//i.test(from);
}

/** The URL to ask: the agent's /api/fingerprint when only http(s)://HOST:PORT[/] is given. */
export function sketchUrl(from: string): URL {
  let url: URL;
  try {
    url = new URL(from);
  } catch {
    throw new InvalidArgumentError(`${escapeText(from)} is not a URL: pass http://HOST:PORT${FINGERPRINT_PATH} (an agent) or a sketch file's path`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidArgumentError(`${escapeText(from)}: only http and https URLs are read`);
  if (url.username !== '' || url.password !== '') throw new InvalidArgumentError(`${shown(url)}: put no credentials in the URL; pass the agent's token with --token-file`);
  if (url.pathname === '/' || url.pathname === '') url.pathname = FINGERPRINT_PATH;
  return url;
}

/** The URL without credentials. */
function plain(url: URL): string {
  const u = new URL(url.href);
  u.username = '';
  u.password = '';
  return u.href;
}

/** The URL as errors show it: escaped, never with credentials. */
function shown(url: URL): string {
  return escapeText(plain(url));
}

/** The error text of a JSON {"error": "..."} answer (the agent's), bounded and escaped; else ''. */
function agentSays(body: Buffer): string {
  try {
    const j = JSON.parse(body.subarray(0, 4096).toString('utf8')) as unknown;
    if (typeof j === 'object' && j !== null && typeof (j as { error?: unknown }).error === 'string') return `: ${escapeText((j as { error: string }).error.slice(0, 600))}`;
  } catch {
    // not the agent's JSON
  }
  return '';
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function get(url: URL, opts: Required<Omit<FetchSketchOptions, 'token'>> & { token?: string }): Promise<Answer> {
  const where = shown(url);
  return new Promise((resolve, reject) => {
    const client = url.protocol === 'https:' ? https : http;
    const headers: Record<string, string> = { Accept: 'application/octet-stream' };
    if (opts.token !== undefined) headers['Authorization'] = `Bearer ${opts.token}`;
    let settled = false;
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      reject(err);
    };
    const req = client.get(url, { headers, agent: false }, (res) => {
      const status = res.statusCode ?? 0;
      const announced = Number(res.headers['content-length'] ?? NaN);
      if (Number.isFinite(announced) && announced > opts.maxBytes) {
        fail(new InvalidArgumentError(`${where} answered with ${announced} bytes, more than the ${opts.maxBytes} a sketch file may have: is it an agent's ${FINGERPRINT_PATH}?`));
        return;
      }
      const chunks: Buffer[] = [];
      let got = 0;
      res.on('data', (d: Buffer) => {
        got += d.length;
        if (got > opts.maxBytes) {
          fail(new InvalidArgumentError(`${where} sent more than the ${opts.maxBytes} bytes a sketch file may have: is it an agent's ${FINGERPRINT_PATH}?`));
          return;
        }
        chunks.push(d);
      });
      res.on('end', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve({ status, headers: res.headers, body: Buffer.concat(chunks) });
      });
      res.on('error', (err) => fail(unreachable(where, err)));
    });
    req.on('error', (err) => fail(unreachable(where, err)));
    const timer = setTimeout(
      () => fail(new SamepageError('IO', `${where} did not answer within ${opts.timeoutMs / 1000} s: check that the agent runs and that this host may reach it (firewall, its "listen" address), or raise --timeout`)),
      opts.timeoutMs,
    );
  });
}

function unreachable(where: string, err: Error): SamepageError {
  const code = (err as { code?: unknown }).code;
  const why = typeof code === 'string' ? code : err.message;
  return new NotFoundError(`cannot reach ${where} (${escapeText(why)}): check the host and port, and that ksm-agent run listens on an address this host reaches (its "listen", 127.0.0.1:9662 by default, is local only)`);
}

/** Reads the sketches an agent serves; refused like a bad file when the answer is not a sketch file. */
export async function fetchSketches(from: string | URL, opts: FetchSketchOptions = {}): Promise<SketchFile> {
  const url = typeof from === 'string' ? sketchUrl(from) : from;
  const where = shown(url);
  const a = await get(url, {
    timeoutMs: opts.timeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS,
    maxBytes: opts.maxBytes ?? MAX_FILE_BYTES,
    ...(opts.token === undefined ? {} : { token: opts.token }),
  });
  if (a.status === 401) {
    const remedy = opts.token === undefined ? "the agent wants its token: pass the file holding it with --token-file (the agent's \"tokenFile\")" : 'the token given is not the agent\'s: pass the file the agent\'s "tokenFile" names';
    throw new NotPermittedError({ what: `${where} answered 401 unauthorized`, remedy });
  }
  if (a.status === 403) {
    throw new NotPermittedError({
      what: `${where} answered 403 forbidden${agentSays(a.body) || `: ${escapeText(a.body.subarray(0, 300).toString('utf8').trim())}`}`,
      remedy: 'the agent serves sketches off loopback only with "tokenFile" set, and only to a Host name in its "allowedHosts"',
    });
  }
  if (a.status >= 300 && a.status < 400) {
    throw new InvalidArgumentError(`${where} answered ${a.status} (a redirect to ${escapeText(String(a.headers.location ?? 'nowhere'))}), not followed: pass the agent's own URL`);
  }
  if (a.status === 404 || a.status === 503) {
    throw new NotFoundError(`${where} has no sketches (${a.status})${agentSays(a.body) || ': is it a ksm-agent run with fingerprints on?'}`);
  }
  if (a.status !== 200) throw new SamepageError('IO', `${where} answered ${a.status}${agentSays(a.body)}`);
  return decodeSketches(a.body, plain(url), `check that the URL is an agent's ${FINGERPRINT_PATH}, or ask it again`);
}
