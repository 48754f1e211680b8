// ksm-agent run's signals, for real, through the bin's shebang flags: SIGUSR1 (retune) never opens
// Node's inspector, from the first moment the process catches it; SIGHUP applies every key it can
// and names those that need a restart; SIGTERM right after SIGUSR1 leaves no tick behind it (KSM
// equals what it was before the daemon started). Everything that changes KSM runs in withSavedKsm.
import test from 'ava';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readKsm, snapshotSettings } from '../lib/index.js';
import { AgentSandbox } from './helpers/agent.js';
import type { AgentProcess } from './helpers/agent.js';
import { caughtSignals, listeningPorts, startBinAgent } from './helpers/bin.js';
import { parseSamples } from './helpers/promql.js';
import { startMergeChild } from './helpers/processes.js';
import type { MergeChild } from './helpers/processes.js';

const SIGHUP = 1;
const SIGUSR1 = 10;
const INSPECTOR_PORT = 9229;

const children: MergeChild[] = [];
const sandbox = new AgentSandbox('ksm-agent-signals-', startBinAgent);
const files = (name: string): string[] => sandbox.files(name);
const writeConfig = (name: string, config: Record<string, unknown>): Promise<string> => sandbox.writeConfig(name, config);
const agent = (args: string[]): AgentProcess => sandbox.agent(args);

test.before(() => sandbox.open());
test.after.always(async () => {
  await sandbox.close();
  for (const c of children) await c.stop();
});

/** Spins until the process catches `sig` (a handler is installed), checking /proc every ~0.2 ms. */
async function waitUntilCaught(pid: number, sig: number, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!caughtSignals(pid).has(sig)) {
    if (Date.now() > end) throw new Error(`pid ${pid} did not catch signal ${sig} within ${timeoutMs} ms`);
    await new Promise((r) => setImmediate(r));
  }
}

/** Whether anything accepts a TCP connection on 127.0.0.1:port. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function count(a: AgentProcess, re: RegExp): number {
  return a.lines.filter((l) => re.test(l)).length;
}

// KSM stays off (no threshold can be crossed), so the daemon changes nothing but what it restores.
const CALM = { thresholdPercent: 0, thresholdMinKiB: 0, ksmtunedConf: null, intervalSeconds: 0.5, listen: null };

test.serial('SIGUSR1 never leaves Node\'s inspector open: at the first moment it is caught, while starting, and running', async (t) => {
  await sandbox.withSavedKsm(async (snap) => {
    const config = await writeConfig('usr1', CALM);
    for (let round = 0; round < 4; round++) {
      // Odd rounds: the first SIGUSR1 at the first moment one no longer kills the process (some
      // handler is installed: Node's own, which would start the inspector, until the bin's first
      // module replaces it milliseconds later). Even rounds: once the bin's hold is in (it holds
      // SIGHUP for `run` at the same moment). In neither may anything listen for a debugger.
      const early = round % 2 === 1;
      const a = agent(['--config', config, ...files('usr1')]);
      await waitUntilCaught(a.pid, early ? SIGUSR1 : SIGHUP);
      process.kill(a.pid, 'SIGUSR1');
      await a.waitForLine(/started pid=\d+ state=off/);
      process.kill(a.pid, 'SIGUSR1');
      await sleep(300);
      for (let i = 0; i < 5; i++) process.kill(a.pid, 'SIGUSR1');
      await sleep(1200);

      t.is(a.child.exitCode, null, `alive; log:\n${a.tail()}`);
      t.deepEqual(await listeningPorts(a.pid), [], `the agent listens on nothing (listen: null); log:\n${a.tail()}`);
      t.false(await accepts(INSPECTOR_PORT), `nothing accepts on 127.0.0.1:${INSPECTOR_PORT}`);
      const opened = a.lines.map((l) => /Debugger listening on (ws:\S+)/.exec(l)?.[1]).filter((u): u is string => u !== undefined);
      // Not even in Node's first milliseconds, before the hold: the bin's --inspect-port points
      // the inspector at 0.0.0.1, which no socket can bind, so Node's attempt fails.
      t.deepEqual(opened, [], `no inspector at any moment; log:\n${a.tail(30)}`);
      t.deepEqual(a.lines.filter((l) => /Starting inspector on/.test(l) && !/Starting inspector on 0\.0\.0\.1:9229 failed/.test(l)), [], a.tail(30));
      if (!early) {
        // Held while starting, retuned once started; then each one retunes.
        t.true(count(a, /SIGUSR1: re-listing the VMs and retuning now/) >= 3, a.tail(30));
      }
      t.true(count(a, /SIGUSR1: re-listing the VMs and retuning now/) >= 2, a.tail(30));
      t.is(await a.stop('SIGTERM'), 0);
      t.deepEqual((await snapshotSettings()).files, snap.files);
    }
  });
});

test.serial('SIGTERM right after SIGUSR1 while merging: no tick runs after the restore, KSM is as before the start', async (t) => {
  // Something for ksmd to scan, at a 1% budget: one pass takes seconds, so the agent keeps merging
  // (run=1, its own pages_to_scan and sleep) for the whole test instead of settling.
  const child = await startMergeChild(64 * 1024);
  children.push(child);
  await sandbox.withSavedKsm(async (snap) => {
    const config = await writeConfig('stop', { thresholdPercent: 100, ksmtunedConf: null, intervalSeconds: 0.2, listen: null, cpuBudgetPercent: 1, settlePasses: 100 });
    for (let round = 0; round < 4; round++) {
      const a = agent(['--config', config, '--verbose', ...files('stop')]);
      await a.waitForLine(/started pid=\d+ state=merging/);
      await sleep(300 + 200 * round);
      t.is((await readKsm()).settings.run, 1, `merging; log:\n${a.tail()}`);
      // Both orders, then a burst: every retune asked for after SIGTERM must be dropped.
      if (round % 2 === 0) {
        process.kill(a.pid, 'SIGUSR1');
        process.kill(a.pid, 'SIGTERM');
      } else {
        process.kill(a.pid, 'SIGTERM');
        process.kill(a.pid, 'SIGUSR1');
      }
      for (let i = 0; i < 20 && a.child.exitCode === null; i++) {
        try {
          process.kill(a.pid, 'SIGUSR1');
        } catch {
          break; // gone
        }
        await sleep(2);
      }
      t.is(await a.exited, 0, a.tail());
      // Once stopping began: no retune taken on, no settings written, at most the one tick that
      // was already reading when SIGTERM came, and nothing after the restore.
      const stopAt = a.lines.findIndex((l) => /stopping: received SIGTERM/.test(l));
      const restoredAt = a.lines.findIndex((l) => /restored the KSM settings found at start/.test(l));
      t.true(stopAt >= 0 && restoredAt > stopAt, a.tail());
      const afterStop = a.lines.slice(stopAt);
      const where = `round ${round}; log:\n${a.tail(20)}`;
      t.deepEqual(afterStop.filter((l) => /ksm-agent debug: set KSM|SIGUSR1: re-listing/.test(l)), [], where);
      t.true(afterStop.filter((l) => /ksm-agent debug: tick /.test(l)).length <= 1, where);
      t.deepEqual(a.lines.slice(restoredAt).filter((l) => /ksm-agent debug: tick |state \w+:/.test(l)), [], where);
      t.deepEqual((await snapshotSettings()).files, snap.files, `round ${round}: KSM after exit; log:\n${a.tail(20)}`);
    }
  });
});

test.serial('SIGHUP applies what it can at once (tick period, jobs, KSM settings, history) and names what needs a restart', async (t) => {
  await sandbox.withSavedKsm(async (snap) => {
    const prune = Number(snap.files['stable_node_chains_prune_millisecs']);
    const zero = snap.files['use_zero_pages'] === '1';
    const [pruneA, pruneB] = [prune === 2345 ? 2346 : 2345, prune === 3456 ? 3457 : 3456];
    const file = path.join(sandbox.dir, 'hup.json');
    const write = (c: Record<string, unknown>) => writeFile(file, JSON.stringify({ ...CALM, listen: '127.0.0.1:0', ...c }));
    await write({ intervalSeconds: 0.2, settings: { stable_node_chains_prune_millisecs: pruneA } });
    const a = agent(['--config', file, ...files('hup')]);
    const url = await a.metricsUrl();
    await a.waitForLine(/started pid=\d+ state=off/);
    const ticks = async (): Promise<number> => parseSamples(await (await fetch(url)).text()).get('samepage_agent_ticks_total') ?? NaN;
    const rate = async (seconds: number): Promise<number> => {
      const before = await ticks();
      await sleep(seconds * 1000);
      return ((await ticks()) - before) / seconds;
    };
    t.is((await readKsm()).settings.stable_node_chains_prune_millisecs, pruneA);
    t.true((await rate(2)) >= 3, `about 5 ticks a second at intervalSeconds 0.2; log:\n${a.tail()}`);

    // Everything changes at once.
    let mark = a.lines.length;
    await write({
      intervalSeconds: 2,
      listen: '127.0.0.1:1',
      historySamples: 10,
      settings: { stable_node_chains_prune_millisecs: pruneB, use_zero_pages: !zero },
      vms: { 'some-vm': { tenant: 'acme' } },
      cache: { enabled: true, intervalSeconds: 3600, dryRun: true },
    });
    process.kill(a.pid, 'SIGHUP');
    const reloaded = await a.waitForLine(/configuration reloaded changed=(\S+)/);
    t.deepEqual((reloaded[1] as string).split(',').sort(), ['cache', 'historySamples', 'intervalSeconds', 'settings', 'vms']);
    const since = () => a.lines.slice(mark).join('\n');
    t.regex(since(), /tick: every 2 s now/);
    t.regex(since(), /tenant check: every 60 s/);
    t.regex(since(), /cache scrub: every 3600 s/);
    t.regex(since(), /take effect only at the next start .*: listen \("127\.0\.0\.1:0" now, "127\.0\.0\.1:1" configured\); restart ksm-agent/);
    t.notRegex(since(), /stateFile|lockFile/);
    t.like((await readKsm()).settings, { stable_node_chains_prune_millisecs: pruneB, use_zero_pages: !zero });
    t.true((await rate(4.5)) <= 0.7, `one tick every 2 s now; log:\n${a.tail()}`);

    // Keys taken out: the settings go back to what the daemon found, the jobs stop.
    mark = a.lines.length;
    await write({ intervalSeconds: 0.2 });
    process.kill(a.pid, 'SIGHUP');
    await a.waitForLine(/configuration reloaded changed=/);
    await sleep(200);
    t.regex(since(), /tenant check: stopped/);
    t.regex(since(), /cache scrub: stopped/);
    t.regex(since(), /tick: every 0.2 s now/);
    t.notRegex(since(), /take effect only at the next start/, 'listen is the running one again');
    t.deepEqual((await snapshotSettings()).files, snap.files, 'every setting is back to what the daemon found');
    t.true((await rate(2)) >= 3);

    // A bad file changes nothing.
    mark = a.lines.length;
    await writeFile(file, JSON.stringify({ ...CALM, intervalSeconds: 5, cpuBudgetPercent: 500 }));
    process.kill(a.pid, 'SIGHUP');
    await a.waitForLine(/configuration not reloaded, keeping the old one: .*key "cpuBudgetPercent": must be a number from 1 to 100, got 500/);
    t.true((await rate(2)) >= 3, 'still the old tick period');
    t.is(await a.stop('SIGTERM'), 0);
    t.deepEqual((await snapshotSettings()).files, snap.files);
  });
});
