// npm run bench:core: the C benchmark (scripts/bench/core_bench.c) over 4 GiB of in-process memory,
// then over two live TCG guests booted by the QEMU harness, side by side in one run. Prints both
// tables and one JSON line last (in-process figures, plus the live-guest ones prefixed "live_").
import { spawnSync } from 'node:child_process';
import path from 'node:path';

import { ensureLab, startGuests, stopAll } from '../qemu/harness.js';

const root = path.resolve(__dirname, '../../..');
const bench = path.join(root, 'build-release', 'core_bench');

function runBench(args: string[]): Record<string, number | string> {
  const r = spawnSync(bench, args, { encoding: 'utf8', maxBuffer: 1 << 24 });
  process.stdout.write(r.stdout);
  if (r.status !== 0) throw new Error(`core_bench ${args.join(' ')} failed (${String(r.status)}): ${r.stderr}`);
  const last = r.stdout.trim().split('\n').pop() ?? '{}';
  return JSON.parse(last) as Record<string, number | string>;
}

async function main(): Promise<void> {
  const gib = process.env.SAMEPAGE_BENCH_GIB ?? '4';
  const build = spawnSync('bash', [path.join(root, 'scripts/build-core.sh'), 'release'], { stdio: 'inherit' });
  if (build.status !== 0) throw new Error('building the core failed');
  const memory = runBench(['--gib', gib]);

  // Two guests booted from the same kernel and initramfs, with a VM-like mix.
  await ensureLab();
  const fill = {
    zero: { MiB: 128 },
    shared: { amount: { MiB: 192 }, blockPages: 256, seed: 7 },
    runs: { count: 64, length: 256, seed: 9 },
    hot: { copies: 600, seed: 3 },
    unique: { amount: { MiB: 128 }, source: 'urandom' as const },
  };
  const guests = await startGuests([
    { name: 'bench-a', memMiB: 1024, thp: false, fill },
    { name: 'bench-b', memMiB: 1024, thp: false, fill },
  ]);
  let live: Record<string, number | string>;
  try {
    live = runBench(guests.flatMap((g) => ['--pid', String(g.pid)]));
  } finally {
    await stopAll();
  }
  const out: Record<string, number | string> = { ...memory };
  for (const [k, v] of Object.entries(live)) out[`live_${k}`] = v;
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
