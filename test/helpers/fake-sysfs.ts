// Fake /sys/kernel/mm/ksm trees, only for what the real one on this host cannot show: a kernel
// without KSM, an older kernel lacking files, a newer one adding files, a write the kernel fails.
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** name → [content, mode]; read-only counters are 0444 as in the kernel, knobs 0644. */
export type FakeFiles = Record<string, [string, number]>;

const RW = 0o644;
const RO = 0o444;

/** The 6.1 set (Debian 6.1.0-57, shared/research/lab.md §4), with the kernel's boot values. */
export const KSM_6_1: FakeFiles = {
  full_scans: ['0\n', RO],
  max_page_sharing: ['256\n', RW],
  merge_across_nodes: ['1\n', RW],
  pages_shared: ['0\n', RO],
  pages_sharing: ['0\n', RO],
  pages_to_scan: ['100\n', RW],
  pages_unshared: ['0\n', RO],
  pages_volatile: ['0\n', RO],
  run: ['0\n', RW],
  sleep_millisecs: ['20\n', RW],
  stable_node_chains: ['0\n', RO],
  stable_node_chains_prune_millisecs: ['2000\n', RW],
  stable_node_dups: ['0\n', RO],
  use_zero_pages: ['0\n', RW],
};

/** The 6.8+ set (6.12 and 6.18 have the same 24 files). */
export const KSM_6_18: FakeFiles = {
  ...KSM_6_1,
  advisor_max_cpu: ['70\n', RW],
  advisor_max_pages_to_scan: ['30000\n', RW],
  advisor_min_pages_to_scan: ['500\n', RW],
  advisor_mode: ['[none] scan-time\n', RW],
  advisor_target_scan_time: ['200\n', RW],
  general_profit: ['-4096\n', RO],
  ksm_zero_pages: ['0\n', RO],
  pages_scanned: ['123\n', RO],
  pages_skipped: ['7\n', RO],
  smart_scan: ['1\n', RW],
};

const made: string[] = [];

export async function makeFakeKsm(files: FakeFiles): Promise<string> {
  const base = await mkdtemp(path.join(os.tmpdir(), 'samepage-fake-ksm-'));
  made.push(base);
  const root = path.join(base, 'ksm');
  await mkdir(root);
  for (const [name, [content, mode]] of Object.entries(files)) {
    await writeFile(path.join(root, name), content);
    await chmod(path.join(root, name), mode);
  }
  return root;
}

/** A directory path under a fresh temp dir that does not exist (a kernel without CONFIG_KSM). */
export async function missingKsmRoot(): Promise<string> {
  const base = await mkdtemp(path.join(os.tmpdir(), 'samepage-no-ksm-'));
  made.push(base);
  return path.join(base, 'ksm');
}

export async function removeFakeTrees(): Promise<void> {
  await Promise.all(made.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
}
