// npm run bench:place: fingerprint sketches against the real KSM on this machine, for several sketch
// sizes. Three paused TCG guests of known memory (test/helpers/fingerprint-guests.ts: two share an
// "OS image" of real libraries, the third another image) are sketched apart, ROUNDS times per size
// with a fresh random key each (each key draws another sample); then each pair and the three
// together run alone under KSM until ksmd converges, and every prediction of pages_sharing and
// general_profit is compared with the kernel's. Needs root; changes KSM settings under the project's
// KSM lock and restores them. A table, then one JSON line last.
//   SAMEPAGE_BENCH_PLACE_ENTRIES  sketch sizes, comma-separated (default 1024,4096,16384,65536)
//   SAMEPAGE_BENCH_ROUNDS         keys per size (default 3)
import { randomBytes } from 'node:crypto';
import { fingerprintVm } from '../../lib/fingerprint/guest.js';
import { keyIdOf } from '../../lib/fingerprint/key.js';
import { estimateGroup } from '../../lib/fingerprint/estimate.js';
import { ENTRY_BYTES } from '../../lib/fingerprint/sketch.js';
import type { Sketch } from '../../lib/fingerprint/sketch.js';
import { readKsm, setKsm } from '../../lib/sysfs.js';
import { findVm } from '../../lib/vms.js';
import { withSavedKsm } from '../../test/helpers/ksm.js';
import { waitForQuietHost } from '../../test/helpers/agent.js';
import { stopAllQemu } from '../../test/helpers/qemu.js';
import { GUEST_RAM, converge, guestContents, startFilledGuest } from '../../test/helpers/fingerprint-guests.js';

const GIB = 2 ** 30;

function envList(name: string, fallback: number[]): number[] {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const out = raw.split(',').map(Number);
  if (out.some((n) => !Number.isSafeInteger(n) || n < 256 || n > 1 << 20)) throw new Error(`${name} must be sizes from 256 to 1048576, comma-separated; got "${raw}"`);
  return out;
}
const SIZES = envList('SAMEPAGE_BENCH_PLACE_ENTRIES', [1024, 4096, 16384, 65536]);
const ROUNDS = Number(process.env['SAMEPAGE_BENCH_ROUNDS'] ?? 3);
const GROUPS = [[0, 1], [0, 2], [1, 2], [0, 1, 2]];

interface Kernel {
  pagesSharing: number;
  generalProfit: number;
}

async function main(): Promise<void> {
  if (process.geteuid?.() !== 0) throw new Error('bench:place needs root (guest memory, page flags and KSM settings)');
  const contents = await guestContents();
  const names = Object.keys(contents);

  // Sketches first, KSM not running (held at run=0 under the lock).
  const sketches = new Map<number, Sketch[][]>(); // size -> rounds -> per guest
  const timing = new Map<number, { ms: number; residentBytes: number; bytes: number; ramBytes: number }>();
  await withSavedKsm(async () => {
    await setKsm({ run: 0 });
    for (const name of names) await startFilledGuest(name, contents[name] as Buffer);
    const vms = await Promise.all(names.map((n) => findVm(n)));
    for (const size of SIZES) {
      const rounds: Sketch[][] = [];
      const t = { ms: 0, residentBytes: 0, bytes: 0, ramBytes: 0 };
      for (let r = 0; r < ROUNDS; r++) {
        const key = randomBytes(32);
        const k = { key, id: keyIdOf(key), path: '(bench)' };
        const round: Sketch[] = [];
        for (const vm of vms) {
          const s = await fingerprintVm(vm, 'bench', { key: k, entries: size });
          round.push(s);
          t.ms += s.elapsedMs;
          t.residentBytes += s.pages * 4096;
          t.bytes += s.hashes.length * ENTRY_BYTES;
          t.ramBytes += GUEST_RAM;
        }
        rounds.push(round);
      }
      sketches.set(size, rounds);
      timing.set(size, t);
    }
    await stopAllQemu();
  });

  // The kernel's figures, each group alone.
  const kernel: Kernel[] = [];
  for (const g of GROUPS) {
    await withSavedKsm(async () => {
      await setKsm({ run: 2 });
      await setKsm({ use_zero_pages: true });
      const pids = [];
      for (const i of g) pids.push(await startFilledGuest(names[i] as string, contents[names[i] as string] as Buffer));
      await waitForQuietHost(pids, 120_000);
      await converge();
      const c = (await readKsm()).counters;
      kernel.push({ pagesSharing: c.pages_sharing ?? 0, generalProfit: c.general_profit ?? 0 });
      await stopAllQemu();
    });
  }
  const maxPageSharing = (await readKsm()).settings.max_page_sharing ?? 256;

  const rows = SIZES.map((size) => {
    const errs: number[] = [];
    const profitErrs: number[] = [];
    const z: number[] = [];
    for (const round of sketches.get(size) ?? []) {
      GROUPS.forEach((g, gi) => {
        const e = estimateGroup(round, g, { useZeroPages: true, maxPageSharing });
        const k = kernel[gi] as Kernel;
        errs.push((e.pagesSharing - k.pagesSharing) / k.pagesSharing);
        profitErrs.push((e.generalProfit - k.generalProfit) / k.generalProfit);
        if (e.stdErrPages > 0) z.push((e.pagesSharing - k.pagesSharing) / e.stdErrPages);
      });
    }
    const t = timing.get(size) as { ms: number; residentBytes: number; bytes: number; ramBytes: number };
    const rms = (a: number[]): number => Math.sqrt(a.reduce((x, y) => x + y * y, 0) / Math.max(1, a.length));
    const maxAbs = (a: number[]): number => Math.max(0, ...a.map(Math.abs));
    return {
      entries: size,
      predicted_vs_kernel_error_pct: +(maxAbs(errs) * 100).toFixed(3),
      rms_error_pct: +(rms(errs) * 100).toFixed(3),
      general_profit_error_pct: +(maxAbs(profitErrs) * 100).toFixed(3),
      rms_z: z.length === 0 ? null : +rms(z).toFixed(2),
      sketch_bytes_per_gib: Math.round(t.bytes / (t.ramBytes / GIB)),
      sketch_bytes_per_resident_gib: Math.round(t.bytes / (t.residentBytes / GIB)),
      sketch_ms_per_gib: Math.round(t.ms / (t.residentBytes / GIB)),
    };
  });

  console.log('entries  max err %  rms err %  profit err %  rms z  bytes/GiB RAM  bytes/GiB resident  ms/GiB resident');
  for (const r of rows) {
    console.log(
      `${String(r.entries).padStart(7)}  ${r.predicted_vs_kernel_error_pct.toFixed(2).padStart(9)}  ${r.rms_error_pct.toFixed(2).padStart(9)}  ${r.general_profit_error_pct.toFixed(2).padStart(12)}  ${String(r.rms_z ?? '-').padStart(5)}  ${String(r.sketch_bytes_per_gib).padStart(13)}  ${String(r.sketch_bytes_per_resident_gib).padStart(18)}  ${String(r.sketch_ms_per_gib).padStart(15)}`,
    );
  }
  console.log(`kernel pages_sharing per group (${GROUPS.map((g) => g.map((i) => names[i]).join('+')).join(', ')}): ${kernel.map((k) => k.pagesSharing).join(', ')}`);
  // The headline: the largest size that still samples (the others are in `sizes`).
  const head = rows.filter((r) => r.rms_z !== null).at(-1) ?? rows[rows.length - 1];
  console.log(
    JSON.stringify({
      bench: 'place',
      entries: head?.entries,
      predicted_vs_kernel_error_pct: head?.predicted_vs_kernel_error_pct,
      sketch_bytes_per_gib: head?.sketch_bytes_per_gib,
      sketch_ms_per_gib: head?.sketch_ms_per_gib,
      rounds: ROUNDS,
      sizes: rows,
    }),
  );
}

main().then(
  () => process.exit(0),
  async (err: unknown) => {
    await stopAllQemu().catch(() => undefined);
    console.error(`bench:place: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
