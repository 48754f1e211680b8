// The files ksm-agent opens as root, attacked: every test hands it a bad file (a snapshot naming
// another directory or an unknown setting, a symbolic link, a file of another user, a
// group-writable file or directory, /etc/passwd-like content behind --lock-file or --state-file,
// the state file of a live agent) and checks that nothing changed: the file's bytes, the KSM
// settings, plus the exit code and a message that names the file and says what to do. Then the
// records of what is still to restore, and finding a daemon whatever lock file it took. Real
// /sys/kernel/mm/ksm (inside withSavedKsm) and real daemons; a fake sysfs tree only for a host
// short of memory, which the real one cannot be made to show.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, lstatSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setKsm, snapshotSettings } from '../lib/sysfs.js';
import type { KsmSnapshot } from '../lib/sysfs.js';
import { readOwnFile, writeOwnFileAtomic, openOwnLockFile } from '../lib/safe-files.js';
import { isRunningAgent, processStartTicks } from '../lib/running-agent.js';
import { AGENT_RECORD_PATH } from '../lib/paths.js';
import { restoreAsFarAsSafe, notRestored } from '../lib/unmerge.js';
import { settleStateFile, STATE_VERSION } from '../lib/agent/state-file.js';
import type { AgentStateFile } from '../lib/agent/state-file.js';
import { runCli, startAgent } from './helpers/agent.js';
import type { AgentProcess } from './helpers/agent.js';
import { KSM_6_18, makeFakeKsm, removeFakeTrees } from './helpers/fake-sysfs.js';
import { withSavedKsm } from './helpers/ksm.js';
import { deadPid, runNodeAsNobody } from './helpers/processes.js';

const NOBODY_UID = 65534;
let dir = '';
const agents: AgentProcess[] = [];

test.before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'ksm-agent-files-'));
});
test.after.always(async () => {
  for (const a of agents) await a.stop('SIGKILL');
  await rm(dir, { recursive: true, force: true });
  await removeFakeTrees();
});

/** A fresh root-owned 0700 directory for one test. */
async function freshDir(name: string): Promise<string> {
  const d = path.join(dir, name);
  await mkdir(d, { mode: 0o700 });
  return d;
}

function agent(args: string[]): AgentProcess {
  const a = startAgent(args);
  agents.push(a);
  return a;
}

async function calmConfig(d: string): Promise<string> {
  const file = path.join(d, 'calm.json');
  await writeFile(file, JSON.stringify({ thresholdPercent: 0, thresholdMinKiB: 0, ksmtunedConf: null, intervalSeconds: 0.5, listen: null }));
  return file;
}

function snapshotJson(files: Record<string, unknown>, root = '/sys/kernel/mm/ksm'): string {
  return JSON.stringify({ root, kernel: os.release(), takenAt: new Date().toISOString(), files });
}

// --- 1. Snapshots are data -----------------------------------------------------------------

test.serial('restore --from: the snapshot\'s "root" is never written; unknown names and bad values write nothing', async (t) => {
  const d = await freshDir('from');
  const elsewhere = await freshDir('elsewhere');
  await writeFile(path.join(elsewhere, 'victim'), 'original\n');
  await writeFile(path.join(elsewhere, 'pages_to_scan'), 'original\n');
  await withSavedKsm(async (snap) => {
    const pts = Number(snap.files['pages_to_scan']);
    const sleep = Number(snap.files['sleep_millisecs']);

    // The reported bug: {"root": DIR, "files": {"victim": "x"}} wrote DIR/victim as root, exit 0.
    const victim = path.join(d, 'victim.json');
    await writeFile(victim, snapshotJson({ victim: 'x' }, elsewhere));
    const r = await runCli(['restore', '--from', victim]);
    t.is(r.code, 2, r.stderr);
    t.regex(r.stderr, /^ksm-agent restore: refusing snapshot file .*victim\.json: "victim" is not a KSM setting \(settings are run, pages_to_scan.*\); nothing was written/);
    t.is(await readFile(path.join(elsewhere, 'victim'), 'utf8'), 'original\n');
    t.deepEqual((await snapshotSettings()).files, snap.files);

    // A known name with "root" elsewhere: the real KSM file is written, never ROOT/NAME.
    const moved = path.join(d, 'moved.json');
    await writeFile(moved, snapshotJson({ pages_to_scan: String(pts + 3) }, elsewhere));
    const m = await runCli(['restore', '--from', moved]);
    t.is(m.code, 0, m.stderr);
    t.is(await readFile(path.join(elsewhere, 'pages_to_scan'), 'utf8'), 'original\n');
    t.is((await snapshotSettings()).files['pages_to_scan'], String(pts + 3));

    // One bad value among good ones: nothing at all is written, and every problem is named.
    const before = (await snapshotSettings()).files;
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ sleep_millisecs: String(sleep + 5), run: '7' }, /run="7": must be an integer from 0 to 2/],
      [{ sleep_millisecs: String(sleep + 5), pages_to_scan: '12abc' }, /pages_to_scan="12abc": unexpected content/],
      [{ sleep_millisecs: String(sleep + 5), use_zero_pages: '5' }, /use_zero_pages="5" is not 0 or 1/],
      [{ sleep_millisecs: String(sleep + 5), pages_to_scan: 5 }, /pages_to_scan must map to a string/],
      [{ sleep_millisecs: String(sleep + 5), advisor_mode: 'always' }, /advisor_mode="always"/],
      [{ sleep_millisecs: String(sleep + 5), pages_shared: '1', '../../../tmp/x': '1' }, /"pages_shared", "..\/..\/..\/tmp\/x" are not KSM settings/],
    ];
    for (const [files, re] of cases) {
      const file = path.join(d, 'bad.json');
      await writeFile(file, snapshotJson(files));
      const b = await runCli(['restore', '--from', file]);
      t.is(b.code, 2, `${JSON.stringify(files)}: ${b.stderr}`);
      t.regex(b.stderr, re);
      t.regex(b.stderr, /nothing was written/);
      t.deepEqual((await snapshotSettings()).files, before, `nothing written for ${JSON.stringify(files)}`);
    }
  });
});

test.serial('the state file and the saved settings are data too: a "root" elsewhere or an unknown name is refused, the file kept', async (t) => {
  const d = await freshDir('data-files');
  const elsewhere = await freshDir('elsewhere-2');
  await writeFile(path.join(elsewhere, 'victim'), 'original\n');
  await withSavedKsm(async (snap) => {
    const state = path.join(d, 'state.json');
    const stateText = JSON.stringify({ version: STATE_VERSION, pid: await deadPid(), startedAt: new Date().toISOString(), snapshot: JSON.parse(snapshotJson({ victim: 'x' }, elsewhere)) as KsmSnapshot });
    await writeFile(state, stateText, { mode: 0o600 });
    const r = await runCli(['restore', '--state-file', state, '--saved', path.join(d, 'none.json')]);
    t.is(r.code, 2, r.stderr);
    t.regex(r.stderr, /state file .*state\.json.*"victim" is not a KSM setting/);
    t.is(await readFile(state, 'utf8'), stateText, 'the record is kept as it was');

    const saved = path.join(d, 'saved.json');
    const savedText = snapshotJson({ victim: 'x', sleep_millisecs: '1' }, elsewhere);
    await writeFile(saved, savedText, { mode: 0o600 });
    const s = await runCli(['restore', '--state-file', path.join(d, 'no-state.json'), '--saved', saved]);
    t.is(s.code, 2, s.stderr);
    t.regex(s.stderr, /saved settings .*saved\.json.*"victim" is not a KSM setting/);
    t.is(await readFile(saved, 'utf8'), savedText);
    t.is(await readFile(path.join(elsewhere, 'victim'), 'utf8'), 'original\n');
    t.deepEqual((await snapshotSettings()).files, snap.files);
  });
});

// --- 2. A partial restore keeps the record of what is left ---------------------------------

test.serial('a partial restore keeps exactly what it could not put back, for the next restore', async (t) => {
  // Real kernel, real refusal: while advisor_mode is scan-time the kernel refuses pages_to_scan
  // (EINVAL), so a record holding pages_to_scan and sleep_millisecs is restored only in part.
  const d = await freshDir('partial');
  await withSavedKsm(async (snap) => {
    const sleep = String(Number(snap.files['sleep_millisecs']) + 7);
    const pts = String(Number(snap.files['pages_to_scan']) + 11);
    const records: [string, string[], (file: string) => string][] = [
      ['saved', ['--state-file', path.join(d, 'no-state.json'), '--saved'], () => snapshotJson({ pages_to_scan: pts, sleep_millisecs: sleep })],
      [
        'state',
        ['--saved', path.join(d, 'no-saved.json'), '--state-file'],
        () => JSON.stringify({ version: STATE_VERSION, pid: 1 << 22, startedAt: new Date().toISOString(), snapshot: JSON.parse(snapshotJson({ pages_to_scan: pts, sleep_millisecs: sleep })) as KsmSnapshot }),
      ],
    ];
    for (const [kind, args, make] of records) {
      const file = path.join(d, `${kind}.json`);
      await writeFile(file, make(file), { mode: 0o600 });
      await setKsm({ advisor_mode: 'scan-time' });
      const r = await runCli(['restore', ...args, file]);
      t.is(r.code, 1, `${kind}: ${r.stdout}${r.stderr}`);
      t.regex(r.stdout, /restored 1 KSM settings from/);
      t.regex(r.stderr, /could not restore pages_to_scan: .*advisor/);
      t.regex(r.stderr, new RegExp(`kept ${file} with only pages_to_scan; run ksm-agent restore again`));
      t.is((await snapshotSettings()).files['sleep_millisecs'], sleep, `${kind}: what could be restored was`);
      const kept = JSON.parse(await readFile(file, 'utf8')) as { files?: Record<string, string>; snapshot?: { files: Record<string, string> } };
      t.deepEqual(kind === 'state' ? kept.snapshot?.files : kept.files, { pages_to_scan: pts }, `${kind}: only what is left`);
      t.is((await stat(file)).mode & 0o777, 0o600);

      // Once the kernel takes it, the next restore finishes and removes the record.
      await setKsm({ advisor_mode: 'none' });
      const again = await runCli(['restore', ...args, file]);
      t.is(again.code, 0, again.stderr);
      t.is((await snapshotSettings()).files['pages_to_scan'], pts);
      t.false(existsSync(file), `${kind}: a complete restore deletes the record`);
      await setKsm({ sleep_millisecs: Number(snap.files['sleep_millisecs']) });
    }
  });
});

test('settings left out for want of memory stay in the state file; nothing left deletes it', async (t) => {
  // A host whose merged pages could not be unmerged into MemAvailable: only a fake tree can
  // claim that many (2^40 pages sharing).
  const root = await makeFakeKsm({ ...KSM_6_18, pages_shared: ['1\n', 0o444], pages_sharing: [`${2 ** 40}\n`, 0o444] });
  const d = await freshDir('left-out');
  const file = path.join(d, 'state.json');
  const snapshot: KsmSnapshot = { root: '/elsewhere', kernel: '6.18.0', takenAt: '', files: { max_page_sharing: '512', sleep_millisecs: '33' } };
  const state: AgentStateFile = { version: STATE_VERSION, pid: 1 << 22, startedAt: '', snapshot };
  await writeFile(file, JSON.stringify(state), { mode: 0o600 });
  const outcome = await restoreAsFarAsSafe(snapshot, 5, { root });
  t.deepEqual(outcome.leftOut, ['max_page_sharing']);
  t.deepEqual(outcome.failures, []);
  t.is((await readFile(path.join(root, 'sleep_millisecs'), 'utf8')).trim(), '33');
  t.is((await readFile(path.join(root, 'max_page_sharing'), 'utf8')).trim(), '256');
  await settleStateFile(file, state, notRestored(outcome));
  const kept = JSON.parse(await readFile(file, 'utf8')) as AgentStateFile;
  t.deepEqual(kept.snapshot.files, { max_page_sharing: '512' });
  t.is(kept.pid, state.pid);
  await settleStateFile(file, kept, []);
  t.false(existsSync(file));
});

// --- 3. The files a root process opens ------------------------------------------------------

test('own files: a symlink, a FIFO, another user\'s file, a go-writable file or directory are refused by name, untouched', async (t) => {
  const d = await freshDir('own');
  const target = path.join(d, 'target');
  await writeFile(target, '4242\n', { mode: 0o644 });
  const link = path.join(d, 'link');
  await symlink(target, link);
  const foreign = path.join(d, 'foreign');
  await writeFile(foreign, '4242\n', { mode: 0o644 });
  await chown(foreign, NOBODY_UID, NOBODY_UID);
  const loose = path.join(d, 'loose');
  await writeFile(loose, '4242\n');
  await chmod(loose, 0o664);
  const fifo = path.join(d, 'fifo');
  t.is(spawnSync('mkfifo', [fifo]).status, 0);
  const openDir = path.join(d, 'open');
  await mkdir(openDir);
  await chmod(openDir, 0o777);
  await writeFile(path.join(openDir, 'f'), '4242\n');
  const nobodysDir = path.join(d, 'nobodys');
  await mkdir(nobodysDir);
  await writeFile(path.join(nobodysDir, 'f'), '4242\n');
  await chown(nobodysDir, NOBODY_UID, NOBODY_UID);

  const cases: [string, RegExp][] = [
    [link, /is a symbolic link; pass the real path, or remove the link/],
    [fifo, /is not a regular file/],
    [foreign, /is owned by uid 65534, not root; if it really is ksm-agent's, chown root .*foreign/],
    [loose, /is writable by group or others \(mode 0664\); chmod go-w .*loose/],
    [path.join(openDir, 'f'), /sits in .*open, which group or others may write \(mode 0777\); chmod go-w/],
    [path.join(nobodysDir, 'f'), /sits in .*nobodys, owned by uid 65534, not root; chown root/],
  ];
  const what = { what: 'the state file' };
  const kind = { mode: 0o600, mayReplace: () => true, kind: 'a test file' };
  for (const [file, re] of cases) {
    const before = lstatSync(file);
    const contentBefore = before.isFile() ? await readFile(file, 'utf8') : undefined;
    for (const [op, call] of [
      ['read', () => readOwnFile({ path: file, ...what })],
      ['write', () => writeOwnFileAtomic({ path: file, ...what }, 'REPLACED\n', kind)],
      ['lock', () => openOwnLockFile({ path: file, ...what }, () => true, 'a lock file')],
    ] as const) {
      const err = await t.throwsAsync(call(), undefined, `${op} ${file}`);
      t.is((err as { code?: string }).code, 'INVALID_ARGUMENT', `${op} ${file}`);
      t.regex(err?.message ?? '', new RegExp(`^refusing to use ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} as the state file: it `), `${op} ${file}`);
      t.regex(err?.message ?? '', re, `${op} ${file}`);
    }
    const after = lstatSync(file);
    t.is(after.ino, before.ino, `${file} not replaced`);
    if (contentBefore !== undefined) t.is(await readFile(file, 'utf8'), contentBefore, `${file} unchanged`);
  }
  t.is(await readFile(target, 'utf8'), '4242\n', 'the link\'s target unchanged');
  t.deepEqual((await readdir(d)).filter((n) => n.endsWith('.tmp')), [], 'no temp file left behind');
});

test('own files: written atomically (0600, no temp left), replaced only when of their kind; a sticky directory is fine', async (t) => {
  const d = await freshDir('atomic');
  const file = { path: path.join(d, 'saved.json'), what: 'the saved settings' };
  const opts = { mode: 0o600, mayReplace: (text: string) => text.startsWith('{"ours"'), kind: 'a saved KSM snapshot' };
  await writeOwnFileAtomic(file, '{"ours":1}\n', opts);
  t.is(await readFile(file.path, 'utf8'), '{"ours":1}\n');
  t.is((await stat(file.path)).mode & 0o777, 0o600);
  await writeOwnFileAtomic(file, '{"ours":2}\n', opts);
  t.is(await readOwnFile(file), '{"ours":2}\n');
  t.deepEqual(await readdir(d), ['saved.json']);

  const other = { path: path.join(d, 'passwd'), what: 'the saved settings' };
  await writeFile(other.path, 'root:x:0:0:root:/root:/bin/bash\n');
  const err = await t.throwsAsync(writeOwnFileAtomic(other, '{"ours":3}\n', opts));
  t.regex(err?.message ?? '', /refusing to use .*passwd as the saved settings: it exists and is not a saved KSM snapshot; it is left as it is/);
  t.is(await readFile(other.path, 'utf8'), 'root:x:0:0:root:/root:/bin/bash\n');
  t.deepEqual((await readdir(d)).sort(), ['passwd', 'saved.json']);

  const sticky = path.join(d, 'sticky');
  await mkdir(sticky);
  await chmod(sticky, 0o1777);
  await writeOwnFileAtomic({ path: path.join(sticky, 'x'), what: 'x' }, '{"ours":4}\n', opts);
  t.is(await readOwnFile({ path: path.join(sticky, 'x'), what: 'x' }), '{"ours":4}\n');
  t.is(await readOwnFile({ path: path.join(d, 'absent'), what: 'x' }), undefined, 'absent is an answer');
  t.is(await readOwnFile({ path: path.join(d, 'no-dir', 'absent'), what: 'x' }), undefined);
});

test('own files as a user that is not root: its own files and root\'s pass, another user\'s do not', async (t) => {
  const d = await mkdtemp(path.join(os.tmpdir(), 'ksm-agent-files-nobody-'));
  try {
    await chmod(d, 0o755);
    await chown(d, NOBODY_UID, NOBODY_UID);
    const own = path.join(d, 'own');
    await writeFile(own, 'mine\n', { mode: 0o644 });
    await chown(own, NOBODY_UID, NOBODY_UID);
    const roots = path.join(d, 'roots');
    await writeFile(roots, 'root\'s\n', { mode: 0o644 });
    const daemons = path.join(d, 'daemons');
    await writeFile(daemons, 'uid 1\n', { mode: 0o644 });
    await chown(daemons, 1, 1);
    const res = await runNodeAsNobody(
      (lib) => `
      const f = require(${JSON.stringify(path.join(lib, 'safe-files.js'))});
      (async () => {
        const out = {};
        for (const name of ['own', 'roots', 'daemons']) {
          try { out[name] = await f.readOwnFile({ path: ${JSON.stringify(d)} + '/' + name, what: 'the config file' }); }
          catch (e) { out[name] = { code: e.code, message: e.message }; }
        }
        console.log(JSON.stringify(out));
      })();`,
    );
    t.is(res.code, 0, res.stderr);
    const out = JSON.parse(res.stdout) as Record<string, string | { code: string; message: string }>;
    t.is(out['own'], 'mine\n');
    t.is(out['roots'], 'root\'s\n');
    t.like(out['daemons'] as object, { code: 'INVALID_ARGUMENT' });
    t.regex((out['daemons'] as { message: string }).message, /daemons as the config file: it is owned by uid 1, not root or uid 65534/);
  } finally {
    await rm(d, { recursive: true, force: true });
  }
});

test('ksm-agent run: a config or ksmtuned.conf that is a symlink, another user\'s or world-writable is refused before anything starts', async (t) => {
  const d = await freshDir('run-config');
  const real = await calmConfig(d);
  const link = path.join(d, 'link.json');
  await symlink(real, link);
  const foreign = path.join(d, 'foreign.json');
  await writeFile(foreign, await readFile(real, 'utf8'));
  await chown(foreign, NOBODY_UID, NOBODY_UID);
  const conf = path.join(d, 'ksmtuned.conf');
  await writeFile(conf, 'KSM_THRES_COEF=20\n');
  await chmod(conf, 0o666);
  const files = ['--state-file', path.join(d, 'state.json'), '--lock-file', path.join(d, 'lock'), '--no-listen'];
  const cases: [string[], RegExp][] = [
    [['--config', link], /refusing to use .*link\.json as the config file: it is a symbolic link/],
    [['--config', foreign], /refusing to use .*foreign\.json as the config file: it is owned by uid 65534, not root; .*chown root/],
    [['--config', real, '--ksmtuned-conf', conf], /refusing to use .*ksmtuned\.conf as the ksmtuned configuration: it is writable by group or others \(mode 0666\); chmod go-w/],
  ];
  for (const [args, re] of cases) {
    const r = await runCli(['run', ...args, ...files]);
    t.is(r.code, 2, r.stderr);
    t.regex(r.stderr, re);
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
    t.false(existsSync(path.join(d, 'state.json')), 'nothing started');
  }
});

// --- 4. --lock-file and --state-file aimed at someone else's file ---------------------------

test.serial('run --lock-file / --state-file aimed at a foreign file, a symlink or a file of other content: refused, never truncated', async (t) => {
  const d = await freshDir('foreign-targets');
  const config = await calmConfig(d);
  const passwd = 'root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n';
  const nobodys = path.join(d, 'nobodys-passwd');
  await writeFile(nobodys, passwd, { mode: 0o644 });
  await chown(nobodys, NOBODY_UID, NOBODY_UID);
  const roots = path.join(d, 'roots-passwd');
  await writeFile(roots, passwd, { mode: 0o644 });
  const link = path.join(d, 'link-to-passwd');
  await symlink(roots, link);
  await withSavedKsm(async (snap) => {
    for (const flag of ['--lock-file', '--state-file'] as const) {
      const cases: [string, RegExp][] = [
        [nobodys, /is owned by uid 65534, not root; if it really is ksm-agent's, chown root/],
        [roots, flag === '--lock-file' ? /exists and is not a ksm-agent lock file \(empty, or a pid\); it is left as it is/ : /state file .*roots-passwd is not valid JSON .*it is left as it is/],
        [link, /is a symbolic link/],
      ];
      for (const [file, re] of cases) {
        const other = flag === '--lock-file' ? ['--state-file', path.join(d, 'state.json')] : ['--lock-file', path.join(d, 'agent.lock')];
        const r = await runCli(['run', '--config', config, '--no-listen', flag, file, ...other]);
        t.not(r.code, 0, `${flag} ${file}`);
        t.is(r.code, 2, `${flag} ${file}: ${r.stderr}`);
        t.true(r.stderr.includes(file), `${flag} ${file}: the message names the file: ${r.stderr}`);
        t.regex(r.stderr, re, `${flag} ${file}`);
        t.is(await readFile(nobodys, 'utf8'), passwd);
        t.is(await readFile(roots, 'utf8'), passwd);
        t.true(lstatSync(link).isSymbolicLink());
        t.deepEqual((await snapshotSettings()).files, snap.files, 'no KSM setting changed');
      }
    }
    t.false(existsSync(path.join(d, 'state.json')));
  });
});

// --- 5 and 6. A live agent, whatever its lock file -----------------------------------------

test.serial('a second daemon with another lock file does not recover a live agent\'s state file; a recycled pid counts as dead', async (t) => {
  const d = await freshDir('live-state');
  const config = await calmConfig(d);
  const state = path.join(d, 'state.json');
  await withSavedKsm(async () => {
    const first = agent(['--config', config, '--no-listen', '--state-file', state, '--lock-file', path.join(d, 'first.lock')]);
    await first.waitForLine(/started pid=\d+ state=off/);
    const stateText = await readFile(state, 'utf8');
    const recorded = JSON.parse(stateText) as AgentStateFile;
    t.is(recorded.pid, first.pid);
    t.is(recorded.startTicks, await processStartTicks(first.pid));
    t.true(await isRunningAgent(first.pid, recorded.startTicks));
    t.false(await isRunningAgent(first.pid, (recorded.startTicks as number) + 1), 'same pid, another start: not the same process');
    t.false(await isRunningAgent(process.pid), 'a live process that is not ksm-agent run');
    t.false(await isRunningAgent(await deadPid()));

    // Without the running-agent record (as an agent of an older version leaves none), the state
    // file's own pid still keeps a second daemon from restoring it under the first one.
    await unlink(AGENT_RECORD_PATH);
    const settings = (await snapshotSettings()).files;
    const second = await runCli(['run', '--config', config, '--no-listen', '--state-file', state, '--lock-file', path.join(d, 'second.lock')]);
    t.is(second.code, 5, second.stderr);
    t.regex(second.stderr, new RegExp(`another ksm-agent is already running \\(pid ${first.pid}\\): its state file is ${state}; stop it first`));
    t.is(await readFile(state, 'utf8'), stateText, 'the live agent\'s state file is untouched');
    t.deepEqual((await snapshotSettings()).files, settings, 'nothing restored under it');
    t.is(await first.stop('SIGTERM'), 0);
    t.false(existsSync(state));

    // A state file whose pid is alive but is not a ksm-agent (a recycled pid): recovered.
    const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      const snap = await snapshotSettings();
      const stale = { version: STATE_VERSION, pid: sleeper.pid, startedAt: new Date().toISOString(), snapshot: snap };
      await writeFile(state, JSON.stringify(stale), { mode: 0o600 });
      const next = agent(['--config', config, '--no-listen', '--state-file', state, '--lock-file', path.join(d, 'first.lock')]);
      await next.waitForLine(new RegExp(`the last ksm-agent \\(pid ${sleeper.pid}, .*did not exit cleanly: restoring`));
      await next.waitForLine(/started pid=\d+ state=off/);
      t.is(await next.stop('SIGTERM'), 0);
    } finally {
      sleeper.kill('SIGKILL');
    }
  });
});

test.serial('status, set, restore and a second run find a daemon started with --lock-file elsewhere', async (t) => {
  const d = await freshDir('find-agent');
  const config = await calmConfig(d);
  await withSavedKsm(async (snap) => {
    const a = agent(['--config', config, '--no-listen', '--state-file', path.join(d, 'state.json'), '--lock-file', path.join(d, 'x.lock')]);
    await a.waitForLine(/started pid=\d+ state=off/);
    const record = JSON.parse(await readFile(AGENT_RECORD_PATH, 'utf8')) as { pid: number; lockFile: string };
    t.is(record.pid, a.pid);
    t.is(record.lockFile, path.join(d, 'x.lock'));
    t.is((await stat(AGENT_RECORD_PATH)).mode & 0o777, 0o644);

    const saved = path.join(d, 'saved.json');
    await writeFile(saved, snapshotJson({ sleep_millisecs: '1' }), { mode: 0o600 });
    const settings = (await snapshotSettings()).files;
    const r = await runCli(['restore', '--saved', saved, '--state-file', path.join(d, 'no-state.json')]);
    t.is(r.code, 5, r.stderr);
    t.regex(r.stderr, new RegExp(`^ksm-agent restore: ksm-agent run \\(pid ${a.pid}\\) manages KSM: stop it instead`));
    t.deepEqual((await snapshotSettings()).files, settings);
    t.true(existsSync(saved));

    for (const asNobody of [false, true]) {
      const s = await runCli(['status', '--json', '--sample', '0'], { asNobody });
      t.is(s.code, 0, s.stderr);
      t.is((JSON.parse(s.stdout) as { agent_pid: number | null }).agent_pid, a.pid, asNobody ? 'as nobody' : 'as root');
    }
    const set = await runCli(['set', `sleep_millisecs=${settings['sleep_millisecs'] as string}`, '--no-save']);
    t.is(set.code, 0, set.stderr);
    t.regex(set.stderr, new RegExp(`note: ksm-agent run \\(pid ${a.pid}\\) manages KSM`));

    const second = await runCli(['run', '--config', config, '--no-listen', '--state-file', path.join(d, 'other-state.json'), '--lock-file', path.join(d, 'other.lock')]);
    t.is(second.code, 5, second.stderr);
    t.regex(second.stderr, new RegExp(`another ksm-agent is already running \\(pid ${a.pid}, lock file .*x\\.lock\\)`));
    t.false(existsSync(path.join(d, 'other-state.json')));

    t.is(await a.stop('SIGTERM'), 0);
    t.false(existsSync(AGENT_RECORD_PATH), 'a clean exit removes its record');
    const after = await runCli(['status', '--json', '--sample', '0']);
    t.is((JSON.parse(after.stdout) as { agent_pid: number | null }).agent_pid, null);
    t.deepEqual((await snapshotSettings()).files, snap.files);
  });
});

test.serial('a daemon recovering a crashed run in part keeps what is left in its own state file', async (t) => {
  // As above, the kernel refuses pages_to_scan while advisor_mode is scan-time: the crashed run's
  // pages_to_scan cannot go back now, and the new run's state file must still carry that value.
  const d = await freshDir('recover-partial');
  const config = await calmConfig(d);
  const state = path.join(d, 'state.json');
  await withSavedKsm(async (snap) => {
    const sleep = String(Number(snap.files['sleep_millisecs']) + 9);
    const pts = String(Number(snap.files['pages_to_scan']) + 13);
    const crashed = { version: STATE_VERSION, pid: await deadPid(), startedAt: new Date().toISOString(), snapshot: JSON.parse(snapshotJson({ pages_to_scan: pts, sleep_millisecs: sleep })) as KsmSnapshot };
    await writeFile(state, JSON.stringify(crashed), { mode: 0o600 });
    await setKsm({ advisor_mode: 'scan-time' });
    const a = agent(['--config', config, '--no-listen', '--state-file', state, '--lock-file', path.join(d, 'lock')]);
    await a.waitForLine(/could not restore pages_to_scan: .*advisor/);
    await a.waitForLine(/still to restore from the crashed run: pages_to_scan; kept in the state file/);
    await a.waitForLine(/started pid=\d+ state=off/);
    t.is((await snapshotSettings()).files['sleep_millisecs'], sleep, 'what could be restored was');
    const mine = JSON.parse(await readFile(state, 'utf8')) as AgentStateFile;
    t.is(mine.pid, a.pid);
    t.is(mine.snapshot.files['pages_to_scan'], pts, 'the crashed run\'s value, not the one found now');
    t.is(mine.snapshot.files['sleep_millisecs'], sleep);
    t.is(await a.stop('SIGTERM'), 0, a.tail());
  });
});
