// The project's lock for code that changes the host's KSM settings in tests and benchmarks: an
// exclusive flock on one file, shared with the C tests (native/core/test/ksm_sysfs.c), so no two
// of them change KSM at once. Released by the returned function (idempotent) or when the process exits.
import { native } from './binding.js';
import { fromNativeError } from './native-errors.js';

export const KSM_LOCK_PATH = '/run/lock/samepage-ksm.lock';

export async function lockKsm(path: string = KSM_LOCK_PATH): Promise<() => void> {
  const lock = await native()
    .lockFile(path)
    .catch((err: unknown) => {
      // Never "locked" when it is not: open or flock failed, and the error names the file and errno.
      throw fromNativeError(err, { what: 'take the KSM lock', path });
    });
  return () => lock.release();
}
