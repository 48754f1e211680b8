// ksm-agent's commands as a user runs them: the real CLI in a child process, against the real
// /sys/kernel/mm/ksm and real processes. Commands that change KSM run inside withSavedKsm.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { chmod, chown, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readKsm, snapshotSettings } from '../lib/index.js';
import { withSavedKsm } from './helpers/ksm.js';
import { startFixture } from './helpers/node-child.js';
import { CLI, runCli, runCliJson } from './helpers/agent.js';
import { startQemu, stopAllQemu } from './helpers/qemu.js';

const COMMANDS = ['status', 'vms', 'estimate', 'watch', 'exec', 'set', 'restore', 'run', 'cache'];
let tmp = '';

test.before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'ksm-agent-cli-'));
});
test.after.always(async () => {
  await rm(tmp, { recursive: true, force: true });
});

test('every command has --help, and the command list names them all', async (t) => {
  const top = await runCli(['--help']);
  t.is(top.code, 0);
  for (const c of COMMANDS) t.regex(top.stdout, new RegExp(`^  ${c} `, 'm'));
  for (const c of COMMANDS) {
    const r = await runCli([c, '--help']);
    t.is(r.code, 0, c);
    t.regex(r.stdout, new RegExp(`^Usage: ksm-agent ${c}`), c);
  }
});

test('bad input: one line naming the problem, and a non-zero exit', async (t) => {
  const unknown = await runCli(['frobnicate']);
  t.is(unknown.code, 2);
  t.regex(unknown.stderr, /unknown command "frobnicate"; commands: status, vms/);
  t.is(unknown.stderr.trim().split('\n').length, 1);

  const badOption = await runCli(['status', '--colour']);
  t.is(badOption.code, 2);
  t.regex(badOption.stderr, /--colour.*see ksm-agent status --help/);

  const badNumber = await runCli(['status', '--sample', 'soon']);
  t.is(badNumber.code, 2);
  t.regex(badNumber.stderr, /--sample "soon": must be a number from 0 to 60/);

  const noTarget = await runCli(['estimate']);
  t.is(noTarget.code, 2);
  t.regex(noTarget.stderr, /nothing to estimate: name processes with --pid, VMs with --vm, or use --all/);

  const noVm = await runCli(['estimate', '--vm', 'no-such-vm-here']);
  t.is(noVm.code, 3);
  t.regex(noVm.stderr, /no QEMU VM named "no-such-vm-here"/);

  const badSetting = await runCli(['set', 'pages_to_scann=5']);
  t.is(badSetting.code, 2);
  t.regex(badSetting.stderr, /pages_to_scann.*is not a KSM setting; settings are .*pages_to_scan/);

  const badValue = await runCli(['set', 'use_zero_pages=maybe']);
  t.is(badValue.code, 2);
  t.regex(badValue.stderr, /use_zero_pages="maybe": must be true or false/);
});

test.serial('status --json has every sysfs file by its name, and saved_bytes = general_profit', async (t) => {
  // Under the KSM lock no other test changes a setting between the command and the reads.
  await withSavedKsm(async () => {
    const j = await runCliJson<{ ksm: Record<string, number | string>; saved_bytes: number; ksmd_cpu_ratio: number | null; sample_seconds: number }>(['status', '--json', '--sample', '0.3']);
    const names = (await readdir('/sys/kernel/mm/ksm')).sort();
    t.deepEqual(Object.keys(j.ksm).sort(), names);
    // Settings do not move while no one writes them: each equals the file's text.
    const now = await readKsm();
    for (const name of Object.keys(now.settings)) {
      const raw = (await readFile(`/sys/kernel/mm/ksm/${name}`, 'utf8')).trim();
      const text = name === 'advisor_mode' ? (/\[([^\]]+)\]/.exec(raw)?.[1] ?? raw) : raw;
      t.is(String(j.ksm[name]), text, name);
    }
    t.is(j.saved_bytes, Number(j.ksm['general_profit']));
    t.true(j.sample_seconds >= 0.3);
    t.not(j.ksmd_cpu_ratio, null);
  });
});

test('status for people, also as an unprivileged user', async (t) => {
  const r = await runCli(['status', '--sample', '0.2'], { asNobody: true });
  t.is(r.code, 0, r.stderr);
  for (const label of ['KSM', 'saved', 'sharing', 'scanning', 'ksmd CPU', 'settings', 'agent']) t.regex(r.stdout, new RegExp(`^${label} +\\S`, 'm'));
  t.regex(r.stdout, /settings +run=\d pages_to_scan=\d+ sleep_millisecs=\d+/);
});

test.serial('root-only commands tell a non-root user what to do: set reaches the KSM write and gets 77 from sysfs', async (t) => {
  // The saved settings go to a directory nobody owns, so nothing before the KSM write can refuse
  // (with the default /var/lib/samepage the saved-settings write refused first): the 77 and the
  // message must come from /sys/kernel/mm/ksm itself.
  const home = await mkdtemp(path.join(os.tmpdir(), 'ksm-agent-cli-nobody-'));
  try {
    await chmod(home, 0o755);
    await chown(home, 65534, 65534);
    const saved = path.join(home, 'saved.json');
    await withSavedKsm(async (snap) => {
      const target = Number(snap.files['pages_to_scan']) + 1;
      const set = await runCli(['set', `pages_to_scan=${target}`, '--saved', saved], { asNobody: true });
      t.is(set.code, 77, set.stderr);
      t.regex(set.stderr, new RegExp(`^ksm-agent set: permission denied: cannot write ${target} to /sys/kernel/mm/ksm/pages_to_scan; run as root`));
      t.is(set.stderr.trim().split('\n').length, 1, set.stderr);
      t.true(existsSync(saved), 'the saved-settings write before it went through');
      t.deepEqual((await snapshotSettings()).files, snap.files);
    });
  } finally {
    await rm(home, { recursive: true, force: true });
  }
});

test.serial('vms as an unprivileged user: a clear "run as root", not a stack trace', async (t) => {
  // A paused QEMU (no guest kernel needed) is a VM to list; its pagemap PFNs need CAP_SYS_ADMIN.
  const q = await startQemu(['-m', '64', '-name', 'guest=cli-nobody'], 64 << 20);
  try {
    const asRoot = await runCli(['vms', '--json']);
    t.is(asRoot.code, 0, asRoot.stderr);
    t.true((JSON.parse(asRoot.stdout) as { name: string; pid: number }[]).some((v) => v.name === 'cli-nobody' && v.pid === q.pid));
    const r = await runCli(['vms'], { asNobody: true });
    t.is(r.code, 77, r.stdout + r.stderr);
    t.regex(r.stderr, /^ksm-agent vms: permission denied: .*run as root/);
    t.is(r.stderr.trim().split('\n').length, 1);
  } finally {
    await stopAllQemu();
  }
});

test.serial('vms shows opted-out VMs: by the agent config, or by -machine mem-merge=off', async (t) => {
  const config = path.join(tmp, 'optout.json');
  await writeFile(config, JSON.stringify({ vms: { 'cli-opt-config': { optOut: true, tenant: 'acme' } } }));
  const byConfig = await startQemu(['-m', '64', '-name', 'guest=cli-opt-config'], 64 << 20);
  const byQemu = await startQemu(['-m', '64', '-name', 'guest=cli-opt-qemu', '-machine', 'pc,mem-merge=off'], 64 << 20);
  const plain = await startQemu(['-m', '64', '-name', 'guest=cli-opt-none'], 64 << 20);
  try {
    const rows = await runCliJson<{ name: string; pid: number; opted_out: boolean; tenant: string | null }[]>(['vms', '--json', '--config', config]);
    const row = (pid: number) => rows.find((r) => r.pid === pid);
    t.like(row(byConfig.pid), { name: 'cli-opt-config', opted_out: true, tenant: 'acme' });
    t.like(row(byQemu.pid), { name: 'cli-opt-qemu', opted_out: true, tenant: null });
    t.like(row(plain.pid), { name: 'cli-opt-none', opted_out: false });
    const table = await runCli(['vms', '--config', config]);
    t.regex(table.stdout, /^cli-opt-config .*tenant acme, opted out$/m);
  } finally {
    await stopAllQemu();
  }
});

test.serial('estimate predicts a process with a known mix exactly, and changes no setting', async (t) => {
  // 1024 pages: 256 copies of one page, 8 contents × 32 copies, 256 zero pages, 256 unique.
  const child = await startFixture<{ ready: boolean }>('mix-child', ['1024']);
  try {
    // Under the KSM lock nobody else changes KSM meanwhile, so any change would be estimate's.
    const human = await withSavedKsm(async (before) => {
      const e0 = await runCliJson<{ pages_shared: number; pages_sharing: number; ksm_zero_pages: number; general_profit: number; sources: { pid: number; merging_pages: number; pages: number }[]; matrix: number[][] }>([
        'estimate', '--pid', String(child.pid), '--use-zero-pages', '0', '--max-page-sharing', '256', '--json',
      ]);
      t.like(e0, { pages_shared: 10, pages_sharing: 758, ksm_zero_pages: 0 });
      t.is(e0.sources[0]?.pid, child.pid);
      t.is(e0.sources[0]?.merging_pages, 768);
      t.deepEqual(e0.matrix, [[768]]);
      const e1 = await runCliJson<{ pages_shared: number; pages_sharing: number; ksm_zero_pages: number }>(['estimate', '--pid', String(child.pid), '--use-zero-pages', '1', '--json']);
      t.like(e1, { pages_shared: 9, pages_sharing: 255 + 8 * 31, ksm_zero_pages: 256 });
      const human = await runCli(['estimate', '--pid', String(child.pid), '--use-zero-pages', '0', '--passes', '3']);
      t.is(human.code, 0, human.stderr);
      t.regex(human.stdout, /KSM would save [\d.]+ [KM]iB \(general_profit\): 758 pages sharing 10 KSM pages/);
      t.deepEqual((await snapshotSettings()).files, before.files);
      return human;
    });

    // On a terminal (script(1) gives it one) a progress bar is drawn in place on stderr; piped
    // (above) there is none.
    t.false(human.stderr.includes('['), human.stderr);
    const tty = spawnSync('script', ['-qec', `${process.execPath} ${CLI} estimate --pid ${child.pid} --passes 6 --interval 0.2`, '/dev/null'], { encoding: 'utf8' });
    t.is(tty.status, 0, tty.stdout + tty.stderr);
    t.regex(tty.stdout, /\r\x1b\[2K\[#* *\] +\d+% pass \d\/6/);
    t.regex(tty.stdout, /KSM would save/);
  } finally {
    await child.stop();
  }
});

test.serial('set changes settings and saves the old ones; restore puts them back', async (t) => {
  const saved = path.join(tmp, 'saved.json');
  await withSavedKsm(async (snap) => {
    const r = await runCli(['set', 'pages_to_scan=1234', 'sleep_millisecs=33', '--saved', saved]);
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout.trim(), 'pages_to_scan=1234 sleep_millisecs=33');
    const k = await readKsm();
    t.is(k.settings.pages_to_scan, 1234);
    t.is(k.settings.sleep_millisecs, 33);
    t.true(existsSync(saved));
    // A second set keeps the first snapshot: restore goes back to before the first change.
    t.is((await runCli(['set', 'pages_to_scan=77', '--saved', saved])).code, 0);
    const back = await runCli(['restore', '--saved', saved, '--state-file', path.join(tmp, 'no-state.json')]);
    t.is(back.code, 0, back.stderr);
    t.regex(back.stdout, new RegExp(`restored \\d+ KSM settings from ${saved}`));
    t.deepEqual((await snapshotSettings()).files, snap.files);
    t.false(existsSync(saved));
    const nothing = await runCli(['restore', '--saved', saved, '--state-file', path.join(tmp, 'no-state.json')]);
    t.is(nothing.code, 3);
    t.regex(nothing.stderr, /nothing to restore: .*use --defaults/);
  });
});

test.serial('restore --defaults writes the kernel boot values; --from reads a snapshot file', async (t) => {
  await withSavedKsm(async (snap) => {
    t.is((await runCli(['set', 'pages_to_scan=999', 'use_zero_pages=1', '--no-save'])).code, 0);
    const d = await runCli(['restore', '--defaults', '--json']);
    t.is(d.code, 0, d.stderr);
    const k = await readKsm();
    t.like(k.settings, { run: 0, pages_to_scan: 100, sleep_millisecs: 20, use_zero_pages: false, max_page_sharing: 256 });
    const file = path.join(tmp, 'snap.json');
    await writeFile(file, JSON.stringify({ ...snap, files: { ...snap.files, pages_to_scan: '4321' } }));
    const f = await runCli(['restore', '--from', file]);
    t.is(f.code, 0, f.stderr);
    t.is((await readKsm()).settings.pages_to_scan, 4321);
  });
});

test('exec runs a program with PR_SET_MEMORY_MERGE and passes its exit status on', async (t) => {
  const r = await runCli(['exec', '--', 'sh', '-c', 'cat /proc/self/ksm_stat; exit 7']);
  t.is(r.code, 7, r.stderr);
  t.regex(r.stdout, /ksm_merge_any: yes/);
  t.regex(r.stdout, /ksm_mergeable: yes/);
  const missing = await runCli(['exec', '--', '/no/such/program']);
  t.is(missing.code, 127);
  t.regex(missing.stderr, /cannot run \/no\/such\/program/);
  const none = await runCli(['exec']);
  t.is(none.code, 2);
});

test('watch refreshes every interval: a line each when piped, NDJSON with --json', async (t) => {
  const r = await runCli(['watch', '--interval', '0.3', '--count', '3', '--no-vms']);
  t.is(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  t.is(lines.length, 3);
  for (const l of lines) t.regex(l, /^\d\d:\d\d:\d\d run=\d saved=.* ksmd=/);
  const j = await runCli(['watch', '--interval', '0.2', '--count', '2', '--no-vms', '--json']);
  t.is(j.code, 0, j.stderr);
  const objs = j.stdout.trim().split('\n').map((l) => JSON.parse(l) as { ksm: Record<string, unknown>; vms: unknown });
  t.is(objs.length, 2);
  t.true('pages_sharing' in (objs[0]?.ksm ?? {}));
});
