// lib/native-errors.ts: an addon error (code = errno name, message from sp_strerror) becomes the
// library's typed error. Pure mapping, so the addon errors are built here as the addon builds them.
import test from 'ava';
import { InvalidArgumentError } from '../lib/errors.js';
import { fromNativeError } from '../lib/native-errors.js';

function addonError(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

test('E2BIG (a range over 16 TiB) is an invalid argument naming the limit, not an I/O error', (t) => {
  const native = addonError(
    'add process: too large: an address range over 16 TiB (the most the engine tracks in one range), or too many processes for the live view',
    'E2BIG',
  );
  const err = fromNativeError(native, { what: 'scan process 1234', pid: 1234 });
  t.true(err instanceof InvalidArgumentError);
  t.is((err as InvalidArgumentError).errno, 'E2BIG');
  t.is((err as InvalidArgumentError).pid, 1234);
  t.regex(err.message, /^scan process 1234: .*16 TiB/);
});
