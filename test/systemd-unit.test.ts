// scripts/systemd/ksm-agent.service: systemd accepts every line (systemd-analyze verify, with the
// real bin in ExecStart's place); no restart loop on failures a restart cannot fix (the CLI's exit
// codes); MemoryMax follows the formula in its comment; and MemoryDenyWriteExecute=yes holds for
// the bin's flags: the agent runs (status, and the daemon with ticks, a scrape and its signals)
// under the same constraint, applied with systemd-run where systemd is PID 1 and otherwise by the
// kernel's PR_SET_MDWE (which systemd 253+ uses for it), while plain node dies under it.
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { copyFile, chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { snapshotSettings } from '../lib/index.js';
import { EXIT } from '../lib/cli/exit-codes.js';
import { CLI } from './helpers/agent.js';
import type { AgentProcess } from './helpers/agent.js';
import { binArgv, startBinAgent } from './helpers/bin.js';
import { withSavedKsm } from './helpers/ksm.js';
import { parseSamples } from './helpers/promql.js';

const run = promisify(execFile);
const UNIT = path.resolve(__dirname, '../../scripts/systemd/ksm-agent.service');

let dir = '';
const agents: AgentProcess[] = [];

test.before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'ksm-agent-unit-'));
});
test.after.always(async () => {
  for (const a of agents) await a.stop('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

/** The [Service] section's keys (the last value of each; comments and blank lines dropped). */
async function serviceKeys(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let section = '';
  for (const raw of (await readFile(UNIT, 'utf8')).split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const s = /^\[(\w+)\]$/.exec(line);
    if (s !== null) section = s[1] as string;
    else if (section === 'Service') {
      const eq = line.indexOf('=');
      out.set(line.slice(0, eq), line.slice(eq + 1));
    }
  }
  return out;
}

/** Bytes from a systemd size (K, M, G, T are powers of 1024). */
function bytes(size: string): number {
  const m = /^(\d+)([KMGT]?)$/.exec(size);
  if (m === null) throw new Error(`not a systemd size: ${size}`);
  return Number(m[1]) * 1024 ** ' KMGT'.indexOf(m[2] === '' ? ' ' : (m[2] as string));
}

async function systemdIsInit(): Promise<boolean> {
  return (await readFile('/proc/1/comm', 'utf8')).trim() === 'systemd';
}

let mdweWrapper: Promise<string> | undefined;
/** A 10-line C wrapper: prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN), then exec its arguments. */
function mdwe(): Promise<string> {
  mdweWrapper ??= (async () => {
    const src = path.join(dir, 'mdwe.c');
    const bin = path.join(dir, 'mdwe');
    await writeFile(
      src,
      [
        '#include <stdio.h>',
        '#include <sys/prctl.h>',
        '#include <unistd.h>',
        '/* PR_SET_MDWE (Linux 6.3), PR_MDWE_REFUSE_EXEC_GAIN: no W+X mapping, no later PROT_EXEC. */',
        'int main(int argc, char **argv) {',
        '  if (argc < 2 || prctl(65, 1, 0, 0, 0) != 0) { perror("prctl(PR_SET_MDWE)"); return 126; }',
        '  execv(argv[1], argv + 1);',
        '  perror("execv");',
        '  return 127;',
        '}',
        '',
      ].join('\n'),
    );
    await run('cc', ['-O2', '-Wall', '-Werror', '-o', bin, src]);
    return bin;
  })();
  return mdweWrapper;
}

/** argv prefix that runs a command with MemoryDenyWriteExecute in force. */
async function underMdwe(): Promise<string[]> {
  if (await systemdIsInit()) return ['systemd-run', '--quiet', '--wait', '--pipe', '--collect', '-p', 'MemoryDenyWriteExecute=yes', '--'];
  return [await mdwe()];
}

function runUnder(prefix: string[], argv: string[]): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const all = [...prefix, ...argv];
    const child = spawn(all[0] as string, all.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], cwd: '/' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** Mappings of `pid` that are writable and executable, or anonymous and executable (JIT code). */
async function jitMappings(pid: number): Promise<string[]> {
  return (await readFile(`/proc/${pid}/maps`, 'utf8'))
    .split('\n')
    .filter((l) => {
      const [, perms, , , , file] = l.split(/\s+/);
      if (perms === undefined || perms[2] !== 'x') return false;
      return perms[1] === 'w' || file === undefined || file === '' || file.startsWith('[anon');
    })
    .filter((l) => !/\[(vdso|vsyscall)\]/.test(l));
}

test('systemd-analyze verify accepts the unit without a warning (and warns on a broken one)', async (t) => {
  // ExecStart names the installed bin; put the real one (mode 755, as npm installs it) there.
  const bin = path.join(dir, 'ksm-agent');
  await copyFile(CLI, bin);
  await chmod(bin, 0o755);
  const unit = path.join(dir, 'ksm-agent.service');
  const text = await readFile(UNIT, 'utf8');
  t.true(text.includes('ExecStart=/usr/local/bin/ksm-agent run'));
  await writeFile(unit, text.replace('/usr/local/bin/ksm-agent', bin));
  const ok = await run('systemd-analyze', ['verify', unit]).then(
    (r) => ({ code: 0, stderr: r.stderr }),
    (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
  );
  t.deepEqual(ok, { code: 0, stderr: '' });
  // The same check catches a misspelt key and a bad value.
  const bad = path.join(dir, 'bad.service');
  await writeFile(bad, text.replace('/usr/local/bin/ksm-agent', bin).replace('MemoryMax=', 'MemoryMaxx=').replace('RestartPreventExitStatus=2', 'RestartPreventExitStatus=banana'));
  const warned = await run('systemd-analyze', ['verify', bad]).then(
    (r) => r.stderr,
    (e: { stderr: string }) => e.stderr,
  );
  t.regex(warned, /Unknown key 'MemoryMaxx'/);
  t.regex(warned, /Failed to parse value.*banana/);
});

test('no restart loop on bad input, an unsupported host or missing privileges; MemoryMax by the formula', async (t) => {
  const keys = await serviceKeys();
  t.is(keys.get('Restart'), 'on-failure');
  const prevent = (keys.get('RestartPreventExitStatus') ?? '').split(/\s+/).map(Number);
  t.deepEqual(prevent.sort((a, b) => a - b), [EXIT.USAGE, EXIT.UNSUPPORTED, EXIT.NOT_PERMITTED]);
  // A failure (1: I/O, a restore not completed) and busy (5: another agent, which may go away)
  // are restarted.
  t.false(prevent.includes(EXIT.FAILURE));
  t.false(prevent.includes(EXIT.BUSY));
  // 256M + 32 bytes per guest page over 64 GiB of guest RAM, as the comment says.
  const text = await readFile(UNIT, 'utf8');
  t.regex(text, /MemoryMax = 256M \+ 32 bytes × guest pages the cache scrub covers/);
  t.is(bytes(keys.get('MemoryMax') ?? ''), bytes('256M') + 32 * (bytes('64G') / 4096));
  t.is(keys.get('MemoryDenyWriteExecute'), 'yes');
});

test('MemoryDenyWriteExecute: plain node dies under it, the bin with its shebang flags runs (status and the daemon)', async (t) => {
  const prefix = await underMdwe();
  // The constraint is real: node with its JIT is killed as soon as it compiles.
  const plain = await runUnder(prefix, [process.execPath, '-e', 'let s = 0; for (let i = 0; i < 1e6; i++) s += i; console.log(s)']);
  t.not(plain.code, 0, `plain node ran under MemoryDenyWriteExecute: ${plain.stdout}`);

  const status = await runUnder(prefix, [process.execPath, ...binArgv(['status', '--json', '--sample', '1'])]);
  t.is(status.code, 0, status.stderr);
  const json = JSON.parse(status.stdout) as { ksm: Record<string, unknown> };
  t.not(json.ksm['run'], undefined);

  await withSavedKsm(async (snap) => {
    const config = path.join(dir, 'mdwe.json');
    await writeFile(config, JSON.stringify({ thresholdPercent: 0, thresholdMinKiB: 0, ksmtunedConf: null, intervalSeconds: 0.2, listen: '127.0.0.1:0' }));
    const a = startBinAgent(['--config', config, '--state-file', path.join(dir, 'mdwe.state.json'), '--lock-file', path.join(dir, 'mdwe.lock')], prefix);
    agents.push(a);
    const url = await a.metricsUrl();
    await a.waitForLine(/started pid=\d+ state=off/);
    // The daemon under the wrapper: the wrapper exec'd node, so the pid is the agent's.
    const agentPid = (await systemdIsInit()) ? Number(/started pid=(\d+)/.exec(a.lines.join('\n'))?.[1]) : a.pid;
    for (let i = 0; i < 3; i++) {
      const metrics = parseSamples(await (await fetch(url)).text());
      t.true((metrics.get('samepage_agent_ticks_total') ?? 0) > 0);
      process.kill(agentPid, 'SIGUSR1');
      process.kill(agentPid, 'SIGHUP');
      await sleep(1000);
    }
    t.deepEqual(await jitMappings(agentPid), [], 'no writable+executable or anonymous executable memory');
    t.is(a.child.exitCode, null, a.tail());
    t.is(await a.stop('SIGTERM'), 0, a.tail());
    t.deepEqual((await snapshotSettings()).files, snap.files);
  });
});
