// The running kernel's version, for feature checks and for error messages that name the release
// a missing feature needs.
import os from 'node:os';

/** The running kernel's release string, as `uname -r` prints it (e.g. "6.18.44-fc-v657"). */
export function kernelRelease(): string {
  return os.release();
}

/** [major, minor, patch] parsed from a release like "6.12.115+deb12-amd64"; missing parts are 0. */
export function parseKernelVersion(release: string): [number, number, number] {
  const m = /^(\d+)(?:\.(\d+))?(?:\.(\d+))?/.exec(release.trim());
  if (m === null) {
    throw new TypeError(`cannot parse kernel release "${release}": expected it to start with MAJOR.MINOR, as uname -r prints it`);
  }
  return [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0)];
}

/** True when `release` is at least `version` ("6.8", "2.6.32"). */
export function kernelAtLeast(release: string, version: string): boolean {
  const a = parseKernelVersion(release);
  const b = parseKernelVersion(version);
  for (let i = 0; i < 3; i++) {
    if (a[i] !== b[i]) return (a[i] as number) > (b[i] as number);
  }
  return true;
}
