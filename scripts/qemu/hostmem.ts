/**
 * Counting pages of given contents in a QEMU process's guest RAM, to check from the host what a
 * guest's fill put there. Find the range with lib's findGuestRam(pid, memMiB << 20). Reads
 * /proc/PID/pagemap (present pages only) and /proc/PID/mem; needs root or ptrace rights.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { PAGE_SIZE } from './fillspec.js';

const PRESENT = 1n << 63n;
const CHUNK_PAGES = 4096; // 16 MiB per /proc/PID/mem read

/**
 * For each target page, how many present pages of the range hold exactly that content. Holes are
 * never read: reading them through /proc/PID/mem would fault in pages and change what KSM sees.
 */
export function countPagesEqual(pid: number, range: { start: bigint; bytes: number }, targets: Buffer[]): number[] {
  const counts = targets.map(() => 0);
  const byPrefix = new Map<bigint, number[]>();
  targets.forEach((t, i) => {
    const k = t.readBigUInt64LE(0);
    byPrefix.set(k, [...(byPrefix.get(k) ?? []), i]);
  });
  const start = Number(range.start); // user addresses are below 2^47, exact as a double
  const pages = Math.floor(range.bytes / PAGE_SIZE);
  const pm = openSync(`/proc/${pid}/pagemap`, 'r');
  const mem = openSync(`/proc/${pid}/mem`, 'r');
  try {
    const entries = Buffer.alloc(CHUNK_PAGES * 8);
    const data = Buffer.alloc(CHUNK_PAGES * PAGE_SIZE);
    for (let base = 0; base < pages; base += CHUNK_PAGES) {
      const n = Math.min(CHUNK_PAGES, pages - base);
      readSync(pm, entries, 0, n * 8, (start / PAGE_SIZE + base) * 8);
      const present = (i: number): boolean => (entries.readBigUInt64LE(i * 8) & PRESENT) !== 0n;
      for (let i = 0; i < n; ) {
        if (!present(i)) {
          i++;
          continue;
        }
        let j = i;
        while (j < n && present(j)) j++;
        const len = (j - i) * PAGE_SIZE;
        readSync(mem, data, 0, len, start + (base + i) * PAGE_SIZE);
        for (let off = 0; off < len; off += PAGE_SIZE) {
          const cands = byPrefix.get(data.readBigUInt64LE(off));
          if (!cands) continue;
          const page = data.subarray(off, off + PAGE_SIZE);
          for (const c of cands) if (page.equals(targets[c]!)) counts[c]!++;
        }
        i = j;
      }
    }
  } finally {
    closeSync(pm);
    closeSync(mem);
  }
  return counts;
}
