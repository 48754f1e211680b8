// lib/procfs.ts on real processes: this one, a child with mergeable memory, a pid that is gone and
// a process running as nobody. None of these tests changes KSM settings.
import test from 'ava';
import { open, readFile, realpath, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { InvalidArgumentError, ProcessGoneError } from '../lib/errors.js';
import { parseKsmStat } from '../lib/proc-parse.js';
import {
  findKsmd,
  readCmdline,
  readComm,
  readExe,
  readKsmMergingPages,
  readKsmStat,
  readMaps,
  readMeminfo,
  readOpenFiles,
  readProcStat,
  readSmaps,
  readSmapsRollup,
  readStatus,
  readVmstat,
} from '../lib/procfs.js';
import { deadPid, runNodeAsNobody, startMergeChild } from './helpers/processes.js';
import type { MergeChild } from './helpers/processes.js';

let child: MergeChild | undefined;
test.after.always(async () => {
  await child?.stop();
});

/** The "key value" / "key: value" lines of a ksm_stat file, by key. */
async function rawKsmStat(pid: number): Promise<Map<string, string>> {
  const text = await readFile(`/proc/${pid}/ksm_stat`, 'utf8');
  return new Map(text.split('\n').filter((l) => l !== '').map((l) => {
    const m = /^(\S+?):?\s+(.*)$/.exec(l) as RegExpExecArray;
    return [m[1] as string, m[2] as string];
  }));
}

test('ksm_stat of this process: every line the kernel prints, typed by key', async (t) => {
  const stat = await readKsmStat(process.pid);
  const rawLines = await rawKsmStat(process.pid);
  t.true(rawLines.size >= 1);
  for (const [key, value] of rawLines) {
    const parsed = (stat as unknown as Record<string, unknown>)[key] ?? stat.extra[key];
    if (value === 'yes' || value === 'no') t.is(parsed, value === 'yes', key);
    else t.is(parsed, Number(value), key);
  }
  for (const key of ['ksm_rmap_items', 'ksm_zero_pages', 'ksm_merging_pages', 'ksm_process_profit', 'ksm_merge_any', 'ksm_mergeable']) {
    t.is(key in stat, rawLines.has(key), `${key} present exactly when the kernel prints it`);
  }
  t.is(await readKsmMergingPages(process.pid), Number((await readFile(`/proc/${process.pid}/ksm_merging_pages`, 'utf8')).trim()));
});

test('ksm_stat formats of 6.1, 6.12 and 6.18 parse by key, not by position', (t) => {
  t.deepEqual(parseKsmStat('ksm_rmap_items 12\n'), { ksm_rmap_items: 12, extra: {} });
  t.deepEqual(parseKsmStat('ksm_rmap_items 3\nksm_zero_pages 0\nksm_merging_pages 9\nksm_process_profit -4096\n'), {
    ksm_rmap_items: 3, ksm_zero_pages: 0, ksm_merging_pages: 9, ksm_process_profit: -4096, extra: {},
  });
  t.deepEqual(
    parseKsmStat('ksm_merge_any: no\nksm_rmap_items 1\nksm_zero_pages 0\nksm_merging_pages 2\nksm_process_profit 7\nksm_mergeable: yes\nksm_pages_sharing: 5\n'),
    { ksm_rmap_items: 1, ksm_zero_pages: 0, ksm_merging_pages: 2, ksm_process_profit: 7, ksm_merge_any: false, ksm_mergeable: true, extra: { ksm_pages_sharing: 5 } },
  );
});

test('a child with MADV_MERGEABLE memory: its range is an "mg" VMA in smaps, and ksm_stat says mergeable', async (t) => {
  child = await startMergeChild(32);
  const smaps = await readSmaps(child.pid);
  const vma = smaps.find((v) => v.start <= (child as MergeChild).start && (child as MergeChild).start < v.end);
  t.truthy(vma, 'the child range is in smaps');
  t.true(vma?.mergeable);
  t.true(vma?.vmFlags.includes('mg'));
  t.true(vma?.anonymous);
  t.false(vma?.shared);
  t.is(vma?.bytes, child.bytes);
  t.is(vma?.fields['Rss'], child.bytes, 'all pages touched, so resident');
  const maps = await readMaps(child.pid);
  t.is(maps.length, smaps.length);
  t.deepEqual(maps.map((m) => m.start), smaps.map((m) => m.start));
  const stat = await readKsmStat(child.pid);
  if ('ksm_mergeable' in stat) t.true(stat.ksm_mergeable);
  if ('ksm_merge_any' in stat) t.false(stat.ksm_merge_any, 'madvise, not prctl');
  const rollup = await readSmapsRollup(child.pid);
  t.true((rollup['Anonymous'] ?? 0) >= child.bytes);
  t.is(rollup['Rss'], smaps.reduce((sum, v) => sum + (v.fields['Rss'] ?? 0), 0));
  const status = await readStatus(child.pid);
  t.is(status.pid, child.pid);
  t.is(status.ppid, process.pid);
  t.is(status.name, 'merge-child');
  t.deepEqual(status.uid, { real: 0, effective: 0, saved: 0, fs: 0 });
  t.true((status.vmRssBytes ?? 0) >= child.bytes);
  t.is(path.basename((await readCmdline(child.pid))[0] ?? ''), 'merge-child');
  t.is(path.basename((await readExe(child.pid)) ?? ''), 'merge-child');
  const files = await readOpenFiles(child.pid);
  const stdin = files.find((f) => f.fd === 0);
  t.regex(stdin?.target ?? '', /^(pipe|socket):\[\d+\]$/);
  t.false(stdin?.regularFile);
});

test('this process: maps, smaps_rollup, status, stat, cmdline', async (t) => {
  const maps = await readMaps(process.pid);
  const node = await realpath(process.execPath);
  t.true(maps.some((m) => m.path === node && m.exec), 'the node binary is mapped executable');
  t.true(maps.some((m) => m.path === '[stack]' && m.anonymous));
  const rollup = await readSmapsRollup(process.pid);
  const rawRss = /^Rss:\s+(\d+) kB/m.exec(await readFile(`/proc/${process.pid}/smaps_rollup`, 'utf8'));
  t.truthy(rawRss);
  // Rss moves between the two reads of a live node process; kB → bytes is what is checked.
  t.true(Math.abs((rollup['Rss'] ?? 0) - Number(rawRss?.[1]) * 1024) < 64 * 1024 * 1024);
  t.is((rollup['Rss'] ?? 0) % 1024, 0);
  const stat = await readProcStat(process.pid);
  t.is(stat.pid, process.pid);
  t.is(stat.comm, await readComm(process.pid));
  t.is(stat.ppid, process.ppid);
  t.true(stat.utime + stat.stime > 0);
  t.true(stat.numThreads >= 1);
  const argv = await readCmdline(process.pid);
  t.deepEqual(argv, (await readFile(`/proc/${process.pid}/cmdline`, 'utf8')).split('\0').slice(0, -1));
  t.is(path.basename(await realpath(argv[0] as string).catch(() => argv[0] as string)), path.basename(node));
  const status = await readStatus(process.pid);
  t.is(status.uid.real, process.getuid?.() ?? -1);
  const ro = await open('/proc/version', 'r');
  const wo = await open(path.join(os.tmpdir(), `samepage-procfs-${process.pid}`), 'w');
  try {
    const files = await readOpenFiles(process.pid);
    t.like(files.find((f) => f.fd === ro.fd), { target: '/proc/version', access: 'r', regularFile: true, deleted: false });
    t.like(files.find((f) => f.fd === wo.fd), { access: 'w', regularFile: true });
  } finally {
    await ro.close();
    await wo.close();
    await rm(path.join(os.tmpdir(), `samepage-procfs-${process.pid}`));
  }
  t.true((status.vmRssBytes ?? 0) > 0);
});

test('findKsmd finds the ksmd kernel thread', async (t) => {
  const pid = await findKsmd();
  t.is(await readComm(pid), 'ksmd');
  const stat = await readProcStat(pid);
  t.is(stat.ppid, 2);
  t.deepEqual(await readCmdline(pid), [], 'kernel threads have no command line');
  t.is(await readExe(pid), undefined);
  const ks = await readKsmStat(pid);
  t.deepEqual(ks, { extra: {} }, 'no mm, so no KSM counters');
});

test('meminfo and vmstat', async (t) => {
  const mem = await readMeminfo();
  t.is(mem['MemTotal'], os.totalmem());
  t.is(typeof mem['HugePages_Total'], 'number');
  const vm = await readVmstat();
  t.is(typeof vm.cow_ksm, 'number');
  t.is(typeof vm.ksm_swpin_copy, 'number');
});

test('a pid that is gone gives ProcessGoneError from every reader', async (t) => {
  const pid = await deadPid();
  for (const read of [readKsmStat, readKsmMergingPages, readSmapsRollup, readMaps, readSmaps, readCmdline, readStatus, readProcStat, readOpenFiles, readExe]) {
    const err = await t.throwsAsync((read as (p: number) => Promise<unknown>)(pid), { instanceOf: ProcessGoneError }, read.name);
    t.is(err?.code, 'PROCESS_GONE');
    t.is(err?.pid, pid);
    t.regex(err?.message ?? '', new RegExp(`process ${pid} does not exist`));
  }
});

test('a pid that is not a positive integer is refused before /proc is touched', async (t) => {
  for (const pid of [0, -1, 1.5, Number.NaN]) {
    const err = await t.throwsAsync(readKsmStat(pid), { instanceOf: InvalidArgumentError });
    t.regex(err?.message ?? '', /positive integer/);
  }
});

test('a non-root process reading root\'s ksm_stat gets NotPermittedError (and may read its own)', async (t) => {
  const script = (lib: string): string => `
    const p = require(${JSON.stringify(path.join(lib, 'procfs.js'))});
    (async () => {
      const own = await p.readKsmStat(process.pid);
      const out = { own };
      for (const [name, fn] of [['ksm_stat', p.readKsmStat], ['smaps', p.readSmaps], ['fds', p.readOpenFiles]]) {
        try { await fn(${process.pid}); out[name] = { ok: true }; }
        catch (e) { out[name] = { code: e.code, message: e.message, capability: e.capability, errno: e.errno, path: e.path }; }
      }
      console.log(JSON.stringify(out));
    })();`;
  const res = await runNodeAsNobody(script);
  t.is(res.code, 0, res.stderr);
  const out = JSON.parse(res.stdout) as Record<string, { code?: string; message?: string; capability?: string; errno?: string; path?: string }>;
  t.truthy(out['own']);
  for (const name of ['ksm_stat', 'smaps', 'fds']) {
    const e = out[name];
    t.is(e?.code, 'NOT_PERMITTED', name);
    t.is(e?.capability, 'CAP_SYS_PTRACE', name);
    t.regex(e?.message ?? '', new RegExp(`run as root or as the owner of process ${process.pid}`), name);
  }
  t.is(out['ksm_stat']?.errno, 'EACCES');
  // The error names what was refused, so a user knows which file and process it was about.
  for (const [name, file] of [['ksm_stat', 'ksm_stat'], ['smaps', 'smaps']] as const) {
    t.true(out[name]?.message?.includes(`/proc/${process.pid}/${file}`), `${name}: ${out[name]?.message ?? ''}`);
    t.is(out[name]?.path, `/proc/${process.pid}/${file}`, name);
  }
});
