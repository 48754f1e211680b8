// Guests of known memory for the fingerprint accuracy test and bench:placement: paused TCG QEMUs
// (test/helpers/qemu.ts) whose RAM is filled through /proc/PID/mem (the test's own setup; the code
// under test only reads) with real file contents, so sharing levels are those of real images:
//   acc-a: 192 MiB of the host's shared libraries + 16 MiB of its own pages
//   acc-b: the first 144 MiB of the same libraries + 32 MiB of its own (the "same OS image")
//   acc-c: 96 MiB of /usr/bin + the libraries' last 48 MiB + 8 MiB of its own (another image)
import { open, readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { findGuestRam } from '../../lib/guest-ram.js';
import { readKsm, setKsm } from '../../lib/sysfs.js';
import { startQemu } from './qemu.js';

const MIB = 2 ** 20;
const PAGE = 4096;
export const GUEST_RAM = 320 * MIB;

/** Up to `bytes` of the regular files of `dir` (sorted by name), each padded to whole pages. */
async function image(dir: string, bytes: number, filter: (name: string) => boolean): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  for (const name of (await readdir(dir)).filter(filter).sort()) {
    if (total >= bytes) break;
    const file = path.join(dir, name);
    const st = await stat(file).catch(() => undefined);
    if (st === undefined || !st.isFile() || st.size === 0) continue;
    const data = await readFile(file);
    const padded = Buffer.alloc(Math.ceil(data.length / PAGE) * PAGE);
    data.copy(padded);
    parts.push(padded);
    total += padded.length;
  }
  const all = Buffer.concat(parts);
  if (all.length < bytes) throw new Error(`${dir} holds only ${all.length} bytes of files; the guests need ${bytes}`);
  return all.subarray(0, bytes);
}

/** `count` pages no other guest has: the guest's tag and the page number. */
function own(tag: number, count: number): Buffer {
  const b = Buffer.alloc(count * PAGE);
  for (let i = 0; i < count; i++) {
    b.writeUInt32LE(tag, i * PAGE);
    b.writeUInt32LE(i, i * PAGE + 4);
    b.writeUInt32LE(0x600d_f00d, i * PAGE + 2048);
  }
  return b;
}

/** The three guests' contents, by name. */
export async function guestContents(): Promise<Record<string, Buffer>> {
  const libs = await image('/usr/lib/x86_64-linux-gnu', 192 * MIB, (n) => n.includes('.so'));
  const bins = await image('/usr/bin', 96 * MIB, () => true);
  return {
    'acc-a': Buffer.concat([libs, own(0xa, 4096)]),
    'acc-b': Buffer.concat([libs.subarray(0, 144 * MIB), own(0xb, 8192)]),
    'acc-c': Buffer.concat([bins, libs.subarray(144 * MIB, 192 * MIB), own(0xc, 2048)]),
  };
}

/** A page of a "family" of contents: pages of one family and id are equal, all others differ. */
export function familyPage(family: number, id: number): Buffer {
  const p = Buffer.alloc(PAGE);
  p.writeUInt32LE(family, 0);
  p.writeUInt32LE(id, 4);
  p.fill(family & 0xff, 8, 64);
  return p;
}

/** The test's own setup: writes `content` at the start of a paused guest's RAM of `ramBytes`. */
export async function writeGuestRam(pid: number, ramBytes: number, content: Buffer): Promise<void> {
  const ram = await findGuestRam(pid, ramBytes);
  const fh = await open(`/proc/${pid}/mem`, 'r+');
  try {
    await fh.write(content, 0, content.length, Number(ram.start));
  } finally {
    await fh.close();
  }
}

/** Starts a paused guest named `name` and writes `content` at the start of its RAM; its pid. */
export async function startFilledGuest(name: string, content: Buffer): Promise<number> {
  const q = await startQemu(['-m', String(GUEST_RAM / MIB), '-name', name], GUEST_RAM);
  await writeGuestRam(q.pid, GUEST_RAM, content);
  return q.pid;
}

/** Runs ksmd fast until two full passes in a row change neither pages_shared, pages_sharing nor ksm_zero_pages; then stops it. */
export async function converge(): Promise<void> {
  await setKsm({ pages_to_scan: 10000, sleep_millisecs: 10, run: 1 });
  const start = (await readKsm()).counters.full_scans ?? 0;
  let last = { scans: start, key: '' };
  let steady = 0;
  for (let i = 0; i < 600; i++) {
    await sleep(100);
    const c = (await readKsm()).counters;
    const scans = c.full_scans ?? 0;
    if (scans === last.scans) continue;
    const key = `${c.pages_shared}/${c.pages_sharing}/${c.ksm_zero_pages}`;
    steady = key === last.key ? steady + (scans - last.scans) : 0;
    last = { scans, key };
    if (scans - start >= 4 && steady >= 2) break;
  }
  await setKsm({ run: 0 });
}
