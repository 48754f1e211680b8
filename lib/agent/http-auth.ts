// The optional bearer token of the agent's HTTP server (config "tokenFile"). Prometheus sends it
// as `Authorization: Bearer TOKEN` (its `authorization: {credentials_file: ...}`); a browser opening
// the status page cannot add that header, so Basic credentials whose password is the token are
// accepted too (the browser asks once and sends them with every request of the page).
import { createHash, timingSafeEqual } from 'node:crypto';

export const AUTH_CHALLENGE = ['Bearer realm="ksm-agent"', 'Basic realm="ksm-agent", charset="UTF-8"'];

/** RFC 6750's b64token: what fits in an Authorization header without quoting. */
export const TOKEN_RE = /^[A-Za-z0-9._~+/-]+=*$/;
export const TOKEN_MIN_LENGTH = 16;
export const TOKEN_MAX_LENGTH = 1024;

/** SHA-256 first: equal-length buffers for timingSafeEqual, and the token's length stays hidden. */
function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

export class BearerToken {
  private readonly expected: Buffer;

  constructor(token: string) {
    if (!TOKEN_RE.test(token) || token.length < TOKEN_MIN_LENGTH || token.length > TOKEN_MAX_LENGTH) {
      throw new RangeError(`a token must be ${TOKEN_MIN_LENGTH} to ${TOKEN_MAX_LENGTH} characters of A-Z a-z 0-9 . _ ~ + / - (= at the end)`);
    }
    this.expected = digest(token);
  }

  /** Whether an Authorization header carries the token, compared in constant time. */
  matches(authorization: string | undefined): boolean {
    const presented = presentedToken(authorization);
    // Compare even when nothing usable was sent, so the time taken says nothing about why.
    const same = timingSafeEqual(digest(presented ?? ''), this.expected);
    return presented !== undefined && same;
  }
}

/** The token in `Bearer TOKEN` or `Basic base64(user:TOKEN)` (any user name); undefined otherwise. */
function presentedToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^(Bearer|Basic) +(\S+) *$/i.exec(header);
  if (m === null) return undefined;
  const scheme = (m[1] as string).toLowerCase();
  const value = m[2] as string;
  if (scheme === 'bearer') return value;
  const decoded = Buffer.from(value, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? undefined : decoded.slice(colon + 1);
}
