// A guest that reads its disk and keeps what it read in its page cache, for the exclusive-cache
// test and benchmark: the host caches the image blocks (cache=writeback), the guest holds them too.
import type { Guest } from '../../scripts/qemu/harness.js';

async function sh(guest: Guest, cmd: string): Promise<string> {
  const r = await guest.exec(cmd, 600_000);
  if (r.code !== 0) throw new Error(`guest ${guest.name}: "${cmd}" exited ${r.code}: ${r.stderr.trim()}`);
  return r.stderr;
}

/**
 * Linux drops a block device's page cache when its last opener closes it: a process holding
 * /dev/vda open keeps what dd reads in the guest's cache, as a mounted filesystem would.
 */
export async function holdDisk(guest: Guest): Promise<void> {
  await sh(guest, 'sleep 2147483647 </dev/vda >/dev/null 2>&1 &');
}

/** The guest reads its whole disk (into its page cache); dd's record counts. */
export function readDisk(guest: Guest): Promise<string> {
  return sh(guest, 'dd if=/dev/vda of=/dev/null bs=1M');
}

/** The guest drops its clean page cache, the disk's blocks included. */
export async function dropGuestCache(guest: Guest): Promise<void> {
  await sh(guest, 'echo 3 > /proc/sys/vm/drop_caches');
}

/** Block-device cache of the guest (Buffers in its /proc/meminfo), in KiB. */
export async function guestBuffersKib(guest: Guest): Promise<number> {
  const r = await guest.exec('cat /proc/meminfo');
  const m = /^Buffers:\s+(\d+) kB/m.exec(r.stdout);
  if (m === null) throw new Error(`guest ${guest.name}: no Buffers line in /proc/meminfo`);
  return Number(m[1]);
}
