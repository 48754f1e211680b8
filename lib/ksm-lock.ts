// The project's lock for code that changes the host's KSM settings in tests and benchmarks: an
// exclusive flock on one file, shared with the C tests (native/core/test/ksm_sysfs.c), so no two
// of them change KSM at once. Released by the returned function or when the process exits.
import { native } from './binding.js';

export const KSM_LOCK_PATH = '/run/lock/samepage-ksm.lock';

export async function lockKsm(path: string = KSM_LOCK_PATH): Promise<() => void> {
  const b = native();
  const fd = await b.lockFile(path);
  let held = true;
  return () => {
    if (held) b.closeFd(fd);
    held = false;
  };
}
