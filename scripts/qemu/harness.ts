/**
 * The QEMU guest harness: boot TCG guests with a known memory fill, run commands in them, and
 * make sure none outlives the test. See README.md beside this file.
 *
 *   const lab = await ensureLab();
 *   const [a, b] = await startGuests([{ name: 'a', memMiB: 512, thp: false, fill }, ...]);
 *   await a.exec('sha256sum /dev/vda');
 *   await stopAll();
 */
import { ensureLab } from './lab.js';
import { startGuests as startWithLab, type Guest, type GuestSpec } from './guest.js';

export { ensureLab, labDir, type Lab } from './lab.js';
export { stopAll, sweepStaleRunDirs, validateSpec, type DiskCache, type DiskSpec, type Guest, type GuestSpec } from './guest.js';
export type { ExecResult } from './channel.js';
export { HarnessError, type HarnessErrorCode } from './errors.js';
export { countPagesEqual } from './hostmem.js';
export {
  expectedFill,
  formatFillSpec,
  pageContent,
  parseFillSpec,
  parseFillSummary,
  totalFillPages,
  FILL_KINDS,
  PAGE_SIZE,
  STREAM,
  type Amount,
  type FillKind,
  type FillSpec,
  type FillSummary,
  type KindSummary,
} from './fillspec.js';

/** Boot the guests in parallel (running setup.sh first if needed) and wait until all are READY. */
export async function startGuests(specs: GuestSpec[]): Promise<Guest[]> {
  return startWithLab(await ensureLab(), specs);
}
