// Finds the host address range of a QEMU guest's RAM inside the QEMU process.
//
// QEMU allocates guest RAM as one private anonymous mapping per RAM block, madvises it
// MADV_MERGEABLE (unless -machine mem-merge=off) and MADV_DONTFORK, and keeps a PROT_NONE guard
// page after it. The TCG translation buffer is a bigger private anonymous mapping (1 GiB here), but
// it is executable and never mergeable, so it is excluded; see shared/research/lab.md §1.
import { InvalidArgumentError, NotFoundError } from './errors.js';
import { readSmaps } from './procfs.js';
import type { SmapsEntry } from './proc-parse.js';

export interface GuestRam {
  /** Host virtual address of the first byte of guest RAM in the QEMU process. */
  start: bigint;
  bytes: number;
}

const PAGE = 4096;

/**
 * The host range of guest RAM in QEMU process `pid`. With `ramBytes` (the -m size) the range must be
 * exactly that size; without it, the largest candidate wins.
 */
export async function findGuestRam(pid: number, ramBytes?: number): Promise<{ start: bigint; bytes: number }> {
  return guestRamFromSmaps(pid, await readSmaps(pid), ramBytes);
}

/** The same search over an smaps list the caller already has (vms.ts reads smaps once). */
export function guestRamFromSmaps(pid: number, smaps: readonly SmapsEntry[], ramBytes?: number): GuestRam {
  if (ramBytes !== undefined && (!Number.isSafeInteger(ramBytes) || ramBytes <= 0)) {
    throw new InvalidArgumentError(`invalid guest RAM size ${String(ramBytes)} for process ${pid}: pass a positive whole number of bytes, or leave it out`, { pid });
  }
  const runs = candidateRuns(smaps);
  // Guest RAM is mergeable when QEMU madvised it; with mem-merge=off it still carries MADV_DONTFORK
  // ("dc"), which QEMU sets on RAM blocks so a fork does not copy guest memory.
  const tiers = [runs.filter((r) => r.mergeable), runs.filter((r) => !r.mergeable && r.dontCopy)];
  if (ramBytes !== undefined) {
    const want = Math.ceil(ramBytes / PAGE) * PAGE;
    for (const tier of tiers) {
      const hit = tier.find((r) => r.bytes === want);
      if (hit !== undefined) return { start: hit.start, bytes: hit.bytes };
    }
    throw new NotFoundError(
      `no guest RAM of ${want} bytes in process ${pid}: no private anonymous mergeable or MADV_DONTFORK mapping of that size (largest: ${describe(runs)}); check the -m size, or the RAM is file or shared-memory backed, which KSM cannot merge`,
      { pid },
    );
  }
  for (const tier of tiers) {
    const best = tier.reduce<Run | undefined>((a, r) => (a === undefined || r.bytes > a.bytes ? r : a), undefined);
    if (best !== undefined) return { start: best.start, bytes: best.bytes };
  }
  throw new NotFoundError(
    `no guest RAM in process ${pid}: it has no private anonymous mergeable or MADV_DONTFORK mapping; is it a QEMU process, and is its RAM anonymous (not -mem-path or a shared memory backend)?`,
    { pid },
  );
}

interface Run {
  start: bigint;
  bytes: number;
  mergeable: boolean;
  dontCopy: boolean;
}

/**
 * Private, anonymous, read-write, non-executable VMAs, with address-adjacent ones of the same kind
 * joined: a RAM block whose VMA was split (a sub-range madvised differently) is still one block.
 */
function candidateRuns(smaps: readonly SmapsEntry[]): Run[] {
  const runs: Run[] = [];
  let last: (Run & { end: bigint }) | undefined;
  for (const vma of smaps) {
    if (!vma.anonymous || vma.shared || !vma.read || !vma.write || vma.exec || vma.path !== '') {
      last = undefined;
      continue;
    }
    const dontCopy = vma.vmFlags.includes('dc');
    if (last !== undefined && last.end === vma.start && last.mergeable === vma.mergeable && last.dontCopy === dontCopy) {
      last.bytes += vma.bytes;
      last.end = vma.end;
      continue;
    }
    last = { start: vma.start, end: vma.end, bytes: vma.bytes, mergeable: vma.mergeable, dontCopy };
    runs.push(last);
  }
  return runs.map(({ start, bytes, mergeable, dontCopy }) => ({ start, bytes, mergeable, dontCopy }));
}

function describe(runs: readonly Run[]): string {
  const top = [...runs].sort((a, b) => b.bytes - a.bytes).slice(0, 3);
  if (top.length === 0) return 'none';
  return top.map((r) => `${r.bytes} bytes at 0x${r.start.toString(16)}${r.mergeable ? ' mergeable' : ''}`).join(', ');
}
