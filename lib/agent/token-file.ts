// Reads the HTTP bearer token (config "tokenFile") the way a secret must be read: the file itself
// (O_NOFOLLOW: a symbolic link is refused, so nobody who can write the directory can point the
// agent at another file), a regular file (O_NONBLOCK: a FIFO cannot hang the start), owned by root
// and readable by root only (mode 0600 or 0400), checked on the open descriptor (fstat), so what is
// checked is what is read. Anything else stops the start with a ConfigError naming the file.
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { UnsafeFileError, errnoOf, fromSystemError } from '../errors.js';
import { BearerToken, TOKEN_MAX_LENGTH, TOKEN_MIN_LENGTH, TOKEN_RE } from './http-auth.js';
import { ConfigError } from './config-error.js';

const MAKE_ONE = 'create it as root: (umask 077; openssl rand -hex 32 > FILE)';

function problem(file: string, what: string, remedy: string): ConfigError {
  return new ConfigError(`token file ${file} ${what}: ${remedy}`, { path: file });
}

export async function readTokenFile(file: string): Promise<BearerToken> {
  let fh;
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    const errno = errnoOf(err);
    if (errno === 'ELOOP') throw problem(file, 'is a symbolic link', 'set "tokenFile" to the file itself (links are not followed)');
    if (errno === 'ENOENT') throw problem(file, 'does not exist', MAKE_ONE.replace('FILE', file));
    throw problem(file, `cannot be opened (${errno ?? String(err)})`, 'check the path and that root can read it');
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw problem(file, 'is not a regular file', MAKE_ONE.replace('FILE', file));
    if (st.uid !== 0) throw problem(file, `is owned by uid ${st.uid}, not root`, `chown root:root ${file}`);
    const mode = st.mode & 0o7777;
    if ((mode & ~0o600) !== 0) {
      throw problem(file, `has mode 0${mode.toString(8)}: only its owner may read it (group and others can read or write it, or bits beyond rw are set)`, `chmod 600 ${file}`);
    }
    if (st.size > TOKEN_MAX_LENGTH + 2) throw problem(file, `holds ${st.size} bytes, more than a token (at most ${TOKEN_MAX_LENGTH})`, MAKE_ONE.replace('FILE', file));
    const text = (await fh.readFile('utf8')).replace(/\r?\n$/, '');
    if (!TOKEN_RE.test(text) || text.length < TOKEN_MIN_LENGTH || text.length > TOKEN_MAX_LENGTH) {
      throw problem(file, `does not hold one token of ${TOKEN_MIN_LENGTH} to ${TOKEN_MAX_LENGTH} characters (A-Z a-z 0-9 . _ ~ + / -) on one line`, MAKE_ONE.replace('FILE', file));
    }
    return new BearerToken(text);
  } finally {
    await fh.close();
  }
}

/**
 * The token a client sends to an agent (ksm-agent place --token-file): the same file rules as the
 * agent's own (no link, a regular file, no group or other bits, checked on the descriptor), but
 * owned by root or by the user running the command, since place needs no root. Returns the text.
 */
export async function readClientTokenFile(file: string): Promise<string> {
  const me = process.geteuid?.() ?? 0;
  const unsafe = (problem: string, remedy: string): UnsafeFileError => new UnsafeFileError({ path: file, what: "the agent's token", problem, remedy });
  let fh;
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    if (errnoOf(err) === 'ELOOP') throw unsafe('is a symbolic link', 'pass the file itself (links are not followed)');
    throw fromSystemError(err, { op: "read the agent's token", path: file });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw unsafe('is not a regular file', 'pass the file holding the token the agent\'s "tokenFile" names');
    if (st.uid !== 0 && st.uid !== me) throw unsafe(`is owned by uid ${st.uid}, not root${me === 0 ? '' : ` or uid ${me}`}`, `chown it to yourself or root`);
    const mode = st.mode & 0o7777;
    if ((mode & 0o077) !== 0) throw unsafe(`has mode 0${mode.toString(8)}: group or others may read it`, `chmod 600 ${file}, and change the agent's token if others may have read it`);
    if (st.size > TOKEN_MAX_LENGTH + 2) throw unsafe(`holds ${st.size} bytes, more than a token (at most ${TOKEN_MAX_LENGTH})`, 'pass the file holding only the token');
    const text = (await fh.readFile('utf8')).replace(/\r?\n$/, '');
    if (!TOKEN_RE.test(text) || text.length < TOKEN_MIN_LENGTH || text.length > TOKEN_MAX_LENGTH) {
      throw unsafe(`does not hold one token of ${TOKEN_MIN_LENGTH} to ${TOKEN_MAX_LENGTH} characters (A-Z a-z 0-9 . _ ~ + / -) on one line`, 'pass the file holding only the token');
    }
    return text;
  } finally {
    await fh.close();
  }
}
