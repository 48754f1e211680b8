// lib/sysfs.ts against the real /sys/kernel/mm/ksm of this host. Every test that writes runs
// serially inside withSavedKsm, which holds the project's KSM lock (shared with the C tests and the
// other ava files) for the whole write and restore, and restores all settings (and unmerges) even
// when an assertion fails; each checks that it holds the lock before it writes. The test that
// compares the files with readKsm() holds the lock too, so no writer moves a setting in between.
// Fake trees, which need no lock, appear only for kernels this host is not (no KSM, 6.1, newer).
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  InvalidSettingError,
  KsmUnavailableError,
  SamepageError,
  SettingBusyError,
  UnsupportedFeatureError,
  fromSystemError,
} from '../lib/errors.js';
import { COUNTER_NAMES, SETTING_NAMES, SETTING_SPECS, isCounterName, isSettingName, parseSettingInput } from '../lib/ksm-files.js';
import type { KsmSettings } from '../lib/ksm-files.js';
import { readKsmStat } from '../lib/procfs.js';
import {
  DEFAULT_KSM_ROOT as ROOT,
  readKsm,
  readKsmCounters,
  readKsmSettings,
  restoreSettings,
  setKsm,
  snapshotSettings,
} from '../lib/sysfs.js';
import type { KsmSnapshot } from '../lib/sysfs.js';
import { KSM_6_1, KSM_6_18, makeFakeKsm, missingKsmRoot, removeFakeTrees } from './helpers/fake-sysfs.js';
import { KSM_LOCK_PATH, lockKsm } from '../lib/ksm-lock.js';
import { unmergeAndRestore, withSavedKsm } from './helpers/ksm.js';
import { runNodeAsNobody, startMergeChild } from './helpers/processes.js';
import { startFixture } from './helpers/node-child.js';
import { waitFor } from './helpers/wait.js';

test.after.always(removeFakeTrees);

async function raw(name: string, root = ROOT): Promise<string> {
  return (await readFile(path.join(root, name), 'utf8')).trim();
}

/** This process holds the KSM lock: /proc/locks lists an exclusive flock by our pid on its inode. */
async function holdsKsmLock(): Promise<boolean> {
  const { ino } = await stat(KSM_LOCK_PATH);
  const held = new RegExp(`^\\d+: FLOCK +ADVISORY +WRITE +${process.pid} [0-9a-f]+:[0-9a-f]+:${ino} `, 'm');
  return held.test(await readFile('/proc/locks', 'utf8'));
}

test.serial('reads every file of the real KSM directory, typed; files are present exactly when the kernel has them', async (t) => {
  const release = await lockKsm();
  try {
    await readsEveryFile(t);
  } finally {
    release();
  }
});

async function readsEveryFile(t: ExecutionContext): Promise<void> {
  t.true(await holdsKsmLock(), 'the KSM lock is held while the files are compared');
  const names = await readdir(ROOT);
  const state = await readKsm();
  t.true(names.length >= 8, `expected the KSM files, found ${names.join(', ')}`);
  for (const name of names) {
    const text = await raw(name);
    if (isSettingName(name)) {
      const value = state.settings[name];
      const spec = SETTING_SPECS[name];
      if (spec.kind === 'boolean') t.is(value, text === '1', name);
      else if (spec.kind === 'advisor') t.true(text.includes(`[${String(value)}]`), `${name}: ${text} vs ${String(value)}`);
      else t.is(String(value), text, name);
    } else if (isCounterName(name)) {
      // Counters move while ksmd runs; check type and sign, not the exact value.
      const value = state.counters[name];
      t.true(Number.isSafeInteger(value), `${name}=${String(value)}`);
      if (name !== 'general_profit' && name !== 'pages_volatile') t.true((value as number) >= 0, name);
    } else {
      t.is(state.extra[name], text, `unknown file ${name} kept raw`);
    }
  }
  for (const name of SETTING_NAMES) t.is(name in state.settings, names.includes(name), `setting ${name}`);
  for (const name of COUNTER_NAMES) t.is(name in state.counters, names.includes(name), `counter ${name}`);
  const writable = [];
  for (const name of names) if (((await stat(path.join(ROOT, name))).mode & 0o200) !== 0) writable.push(name);
  t.deepEqual(state.writable, writable.sort());
  t.true(state.writable.includes('run'));
  t.false(state.writable.includes('pages_shared'));
}

test.serial('setKsm writes every kind of setting and restoreSettings puts each one back', async (t) => {
  // withSavedKsm restores too, should an assertion throw; the restore under test is the explicit one.
  await withSavedKsm(async (before) => {
    t.true(await holdsKsmLock(), 'the KSM lock is held while writing');
    const cur = await readKsmSettings();
    const other = (n: number | undefined, a: number): number => (n === a ? a + 1 : a);
    const changes: KsmSettings = {
      pages_to_scan: other(cur.pages_to_scan, 1234),
      sleep_millisecs: other(cur.sleep_millisecs, 7),
      stable_node_chains_prune_millisecs: other(cur.stable_node_chains_prune_millisecs, 3001),
    };
    if (cur.use_zero_pages !== undefined) changes.use_zero_pages = !cur.use_zero_pages;
    if (cur.smart_scan !== undefined) changes.smart_scan = !cur.smart_scan;
    if (cur.advisor_mode !== undefined) {
      changes.advisor_max_cpu = other(cur.advisor_max_cpu, 41);
      changes.advisor_min_pages_to_scan = other(cur.advisor_min_pages_to_scan, 501);
      changes.advisor_max_pages_to_scan = other(cur.advisor_max_pages_to_scan, 30001);
      changes.advisor_target_scan_time = other(cur.advisor_target_scan_time, 201);
    }
    try {
      await setKsm(changes);
      for (const [name, value] of Object.entries(changes)) {
        t.is(await raw(name), typeof value === 'boolean' ? (value ? '1' : '0') : String(value), `${name} in the kernel`);
      }
      t.like(await readKsmSettings(), changes);
    } finally {
      await restoreSettings(before);
    }
    t.deepEqual((await snapshotSettings()).files, before.files);
  });
});

test.serial('a benchmark stopped by Ctrl-C or kill while KSM runs at its settings: withSavedKsm restores them, then the signal ends it', async (t) => {
  // The child takes the KSM lock itself, as a benchmark does; the check after it is gone takes
  // the lock too, so a test file that ran meanwhile has put its own changes back.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    const { child, hello: saved } = await startFixture<KsmSnapshot>('saved-ksm-child', ['4321']);
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, sig) => resolve(sig)));
    t.is(await raw('pages_to_scan'), '4321', `${signal}: the child runs ksmd at its pages_to_scan`);
    t.is(await raw('run'), '1');
    child.kill(signal);
    t.is(await exited, signal, `the child ends by ${signal}, not by an exit code`);
    const release = await lockKsm();
    try {
      t.deepEqual((await snapshotSettings()).files, saved.files, `every setting as before the child, after ${signal}`);
    } finally {
      // Should the child have left them changed, the host gets them back all the same.
      await unmergeAndRestore(saved).finally(release);
    }
  }
});

test.serial('advisor_mode=scan-time owns pages_to_scan: refused before the kernel, and restore brings both back', async (t) => {
  await withSavedKsm(async (saved) => {
    const cur = await readKsmSettings();
    if (cur.advisor_mode === undefined) return t.fail(`this kernel has no advisor_mode; the host is expected to run 6.8+ (it runs ${saved.kernel})`);
    t.true(await holdsKsmLock(), 'the KSM lock is held while writing');
    await setKsm({ advisor_mode: 'none', pages_to_scan: 777 });
    const mid = await snapshotSettings();
    await setKsm({ advisor_min_pages_to_scan: 600, advisor_mode: 'scan-time' });
    let s = await readKsmSettings();
    t.is(s.advisor_mode, 'scan-time');
    // The kernel copies advisor_min_pages_to_scan into pages_to_scan when the advisor starts; it
    // only does so with the new minimum because setKsm wrote the limit before the mode.
    t.is(s.pages_to_scan, 600);
    const err = await t.throwsAsync(setKsm({ pages_to_scan: 5 }), { instanceOf: InvalidSettingError });
    t.is(err?.setting, 'pages_to_scan');
    t.regex(err?.message ?? '', /advisor_mode/);
    t.is(await raw('pages_to_scan'), '600', 'nothing reached the kernel');
    // The kernel refuses it as well (EINVAL); the mapping names the setting.
    const kernelErr: unknown = await writeFile(path.join(ROOT, 'pages_to_scan'), '5').catch((e: unknown) => e);
    t.is((kernelErr as { code?: string }).code, 'EINVAL');
    // Leaving the advisor and setting pages_to_scan in one call works: the mode goes first.
    await setKsm({ advisor_mode: 'none', pages_to_scan: 888 });
    s = await readKsmSettings();
    t.is(s.advisor_mode, 'none');
    t.is(s.pages_to_scan, 888);
    await setKsm({ advisor_mode: 'scan-time' });
    await restoreSettings(mid);
    s = await readKsmSettings();
    t.is(s.advisor_mode, 'none');
    t.is(s.pages_to_scan, 777, 'pages_to_scan restored after advisor_mode, which resets it');
    t.is(s.advisor_min_pages_to_scan, cur.advisor_min_pages_to_scan);
    // Back to where the test started, still under the lock (withSavedKsm would do it regardless).
    await restoreSettings(saved);
    t.deepEqual(await readKsmSettings(), cur);
  });
});

test.serial('out-of-range and mistyped values are rejected before anything is written', async (t) => {
  const cur = await readKsmSettings();
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ pages_to_scan: 2 ** 32 }, /0 to 4294967295/],
    [{ pages_to_scan: -1 }, /0 to 4294967295/],
    [{ pages_to_scan: 1.5 }, /integer/],
    [{ sleep_millisecs: Number.NaN }, /integer/],
    [{ sleep_millisecs: '20' }, /integer/],
    [{ run: 3 }, /0 to 2/],
    [{ max_page_sharing: 1 }, /2 to 2147483647/],
    [{ max_page_sharing: 2 ** 31 }, /2 to 2147483647/],
    [{ advisor_target_scan_time: 0 }, /1 to/],
    [{ advisor_max_cpu: 101 }, /1 to 100/],
    [{ use_zero_pages: 1 }, /true or false/],
    [{ advisor_mode: 'fast' }, /"none" or "scan-time"/],
    [{ pages_shared: 0 }, /read-only counter/],
    [{ no_such_knob: 1 }, /not a KSM setting/],
    // A valid change next to an invalid one: the valid one must not be written either.
    [{ pages_to_scan: (cur.pages_to_scan ?? 100) + 1, sleep_millisecs: -5 }, /sleep_millisecs=-5/],
  ];
  await withSavedKsm(async (saved) => {
    t.true(await holdsKsmLock(), 'the KSM lock is held while writing');
    for (const [changes, message] of cases) {
      const err = await t.throwsAsync(setKsm(changes as KsmSettings), { instanceOf: InvalidSettingError }, JSON.stringify(changes));
      t.is(err?.code, 'INVALID_SETTING');
      t.regex(err?.message ?? '', message);
      t.deepEqual((await snapshotSettings()).files, saved.files, `nothing written for ${JSON.stringify(changes)}`);
    }
  });
});

test.serial('the kernel rejecting a write (EINVAL) maps to InvalidSettingError naming the setting', async (t) => {
  await withSavedKsm(async () => {
    t.true(await holdsKsmLock(), 'the KSM lock is held while writing');
    // Bypass our validation to reach the kernel's own check: run accepts only 0, 1 and 2.
    const err: unknown = await writeFile(path.join(ROOT, 'run'), '3').catch((e: unknown) => e);
    t.is((err as { code?: string }).code, 'EINVAL');
    const mapped = fromSystemError(err, { op: 'write 3 to', path: `${ROOT}/run`, setting: 'run', value: '3' });
    t.true(mapped instanceof InvalidSettingError);
    t.regex(mapped.message, /run="3"/);
    t.is((mapped as SamepageError).errno, 'EINVAL');
  });
});

test.serial('max_page_sharing and merge_across_nodes are busy while pages are merged; run=2 in the same call clears it', async (t) => {
  await withSavedKsm(async (saved) => {
    t.true(await holdsKsmLock(), 'the KSM lock is held while writing');
    const child = await startMergeChild(64);
    try {
      await setKsm({ pages_to_scan: 1000, sleep_millisecs: 10, run: 1 });
      await waitFor('ksmd to merge the 64 identical pages of the child', 60_000, async () =>
        ((await readKsmStat(child.pid)).ksm_merging_pages ?? 0) >= 64 ? true : undefined,
      );
      t.true(((await readKsmCounters()).pages_shared ?? 0) > 0);
      const cur = await readKsmSettings();
      const mps = cur.max_page_sharing === 300 ? 301 : 300;

      const busy = await t.throwsAsync(setKsm({ max_page_sharing: mps }), { instanceOf: SettingBusyError });
      t.is(busy?.code, 'SETTING_BUSY');
      t.is(busy?.setting, 'max_page_sharing');
      t.regex(busy?.message ?? '', /merged KSM pages exist \(pages_shared=\d+\).*writing 2 to run/);
      t.is(await raw('max_page_sharing'), String(cur.max_page_sharing));
      if (cur.merge_across_nodes !== undefined) {
        const busy2 = await t.throwsAsync(setKsm({ merge_across_nodes: !cur.merge_across_nodes }), { instanceOf: SettingBusyError });
        t.is(busy2?.setting, 'merge_across_nodes');
      }

      await setKsm({ run: 2, max_page_sharing: mps });
      t.is((await readKsmCounters()).pages_shared, 0);
      t.is((await readKsmSettings()).max_page_sharing, mps);

      // Merge again, then restore: restoreSettings has to unmerge to put max_page_sharing back.
      await setKsm({ run: 1 });
      await waitFor('ksmd to merge the child pages again', 60_000, async () =>
        ((await readKsmStat(child.pid)).ksm_merging_pages ?? 0) >= 64 ? true : undefined,
      );
      await restoreSettings(saved);
      t.deepEqual((await snapshotSettings()).files, saved.files);
      if (saved.files['run'] !== '1') t.is((await readKsmCounters()).pages_shared, 0, 'no merged pages left');
    } finally {
      await child.stop();
    }
  });
});

test.serial('a process that is not root gets NotPermittedError when it writes a setting', async (t) => {
  await withSavedKsm(async (saved) => {
    t.true(await holdsKsmLock(), 'the KSM lock is held while the child tries to write');
    const target = Number(saved.files['pages_to_scan']) + 1;
    const script = (lib: string): string => `
      const s = require(${JSON.stringify(path.join(lib, 'sysfs.js'))});
      (async () => {
        const read = await s.readKsmSettings();
        try { await s.setKsm({ pages_to_scan: ${target} }); console.log(JSON.stringify({ read, ok: true })); }
        catch (e) { console.log(JSON.stringify({ read, code: e.code, message: e.message, errno: e.errno })); }
      })();`;
    const res = await runNodeAsNobody(script);
    t.is(res.code, 0, res.stderr);
    const out = JSON.parse(res.stdout) as { read: KsmSettings; code?: string; message?: string; errno?: string };
    t.is(out.read.pages_to_scan, Number(saved.files['pages_to_scan']), 'reading is allowed to everyone');
    t.is(out.code, 'NOT_PERMITTED');
    t.is(out.errno, 'EACCES');
    t.regex(out.message ?? '', /pages_to_scan.*run as root/);
    t.is(await raw('pages_to_scan'), saved.files['pages_to_scan']);
  });
});

test('no KSM directory (kernel without CONFIG_KSM): KsmUnavailableError', async (t) => {
  const root = await missingKsmRoot();
  const opts = { root, kernel: '6.1.0-nokSM' };
  for (const call of [() => readKsm(opts), () => setKsm({ run: 1 }, opts), () => snapshotSettings(opts)]) {
    const err = await t.throwsAsync(call(), { instanceOf: KsmUnavailableError });
    t.is(err?.code, 'KSM_UNAVAILABLE');
    t.regex(err?.message ?? '', /CONFIG_KSM/);
    t.true(err?.message.includes(root));
  }
});

test('an older kernel (6.1) lacks files: they are absent, not zero, and setting one names the release that added it', async (t) => {
  const root = await makeFakeKsm(KSM_6_1);
  const opts = { root, kernel: '6.1.0-57-amd64' };
  const state = await readKsm(opts);
  t.false('smart_scan' in state.settings);
  t.false('advisor_mode' in state.settings);
  t.false('general_profit' in state.counters);
  t.false('pages_skipped' in state.counters);
  t.is(state.settings.max_page_sharing, 256);
  t.is(state.counters.pages_shared, 0);
  t.deepEqual(state.extra, {});
  const err = await t.throwsAsync(setKsm({ sleep_millisecs: 30, smart_scan: false }, opts), { instanceOf: UnsupportedFeatureError });
  t.is(err?.code, 'UNSUPPORTED_FEATURE');
  t.is(err?.since, '6.7');
  t.regex(err?.message ?? '', /smart_scan .*kernel 6\.1\.0-57-amd64.*Linux 6\.7 or later/);
  t.is(await raw('sleep_millisecs', root), '20', 'nothing written');
  const adv = await t.throwsAsync(setKsm({ advisor_mode: 'scan-time' }, opts), { instanceOf: UnsupportedFeatureError });
  t.regex(adv?.message ?? '', /Linux 6\.8/);
  // Restoring a 6.18 snapshot on 6.1 writes what exists and reports the rest.
  const newer = await snapshotSettings({ root: await makeFakeKsm(KSM_6_18), kernel: '6.18.44' });
  newer.files['sleep_millisecs'] = '33';
  const restoreErr = await t.throwsAsync(restoreSettings(newer, opts));
  t.is((restoreErr as SamepageError).code, 'RESTORE_INCOMPLETE');
  t.regex(restoreErr?.message ?? '', /smart_scan/);
  t.is(await raw('sleep_millisecs', root), '33');
});

test('a kernel without CONFIG_NUMA lacks merge_across_nodes: the error names the config, not an upgrade', async (t) => {
  const files = { ...KSM_6_18 };
  delete files['merge_across_nodes'];
  const root = await makeFakeKsm(files);
  const err = await t.throwsAsync(setKsm({ merge_across_nodes: false }, { root, kernel: '6.18.44' }), { instanceOf: UnsupportedFeatureError });
  t.regex(err?.message ?? '', /merge_across_nodes is missing on kernel 6\.18\.44: it needs CONFIG_NUMA/);
  t.notRegex(err?.message ?? '', /upgrade/);
});

test('a newer kernel adds files: kept raw, never snapshotted or written', async (t) => {
  const root = await makeFakeKsm({
    ...KSM_6_18,
    frobnicate_millisecs: ['5\n', 0o644],
    pages_frobbed: ['17\n', 0o444],
    frob_mode: ['always [never]\n', 0o644],
  });
  const opts = { root, kernel: '7.2.0' };
  const state = await readKsm(opts);
  t.deepEqual(state.extra, { frobnicate_millisecs: '5', pages_frobbed: '17', frob_mode: 'always [never]' });
  t.is(state.counters.general_profit, -4096);
  const snap = await snapshotSettings(opts);
  t.false('frobnicate_millisecs' in snap.files, 'only known settings are snapshotted (only they are ever written)');
  t.false('pages_frobbed' in snap.files, 'read-only files are not settings');
  await writeFile(path.join(root, 'frobnicate_millisecs'), '9');
  await setKsm({ pages_to_scan: 4000, run: 1 }, opts);
  await restoreSettings(snap, opts);
  t.is(await raw('frobnicate_millisecs', root), '9');
  t.is(await raw('pages_to_scan', root), '100');
  t.is(await raw('run', root), '0');
  // A snapshot naming an unknown file is refused whole: nothing written, the name in the error.
  await setKsm({ pages_to_scan: 4000 }, opts);
  const bad = { ...snap, files: { ...snap.files, frobnicate_millisecs: '5' } };
  const err = await t.throwsAsync(restoreSettings(bad, opts));
  t.is((err as SamepageError).code, 'INVALID_SETTING');
  t.regex(err?.message ?? '', /"frobnicate_millisecs" is not a KSM setting/);
  t.is(await raw('frobnicate_millisecs', root), '9');
  t.is(await raw('pages_to_scan', root), '4000');
});

test('a failing later write rolls back the earlier ones', async (t) => {
  const root = await makeFakeKsm(KSM_6_18);
  // A write the kernel fails (EIO): smart_scan points at a kernel file that has no write method.
  await rm(path.join(root, 'smart_scan'));
  await symlink('/proc/version', path.join(root, 'smart_scan'));
  const err = await t.throwsAsync(setKsm({ sleep_millisecs: 9, use_zero_pages: true, smart_scan: false }, { root }));
  t.is((err as SamepageError).code, 'IO');
  t.regex(err?.message ?? '', /smart_scan/);
  t.is(await raw('sleep_millisecs', root), '20');
  t.is(await raw('use_zero_pages', root), '0');
});

test('parseSettingInput reads what a person types', (t) => {
  t.is(parseSettingInput('run', '1'), 1);
  t.is(parseSettingInput('use_zero_pages', 'yes'), true);
  t.is(parseSettingInput('smart_scan', 'off'), false);
  t.is(parseSettingInput('advisor_mode', 'scan-time'), 'scan-time');
  t.throws(() => parseSettingInput('pages_to_scan', 'lots'), { instanceOf: InvalidSettingError, message: /pages_to_scan="lots"/ });
  t.throws(() => parseSettingInput('pages_shared', '1'), { instanceOf: InvalidSettingError, message: /read-only/ });
});
