// npm run bench:agent: ksm-agent side by side with Debian's ksmtuned on the same workload. For
// each tool: two fresh TCG guests with a VM-like fill, KSM reset (every page unmerged, boot
// settings), the tool started, KSM sampled every second for a fixed window, the tool stopped,
// the guests stopped, KSM settings restored (withSavedKsm, under the project's KSM lock).
//
// The same condition for both: one ksmtuned.conf with KSM_THRES_COEF=100, i.e. the threshold is
// all of RAM, so both see memory pressure from the start (ksmtuned then boosts every minute).
// ksmtuned reads it at /etc/ksmtuned.conf inside a private mount namespace (bind mount, the
// host's file untouched); the agent reads the same file (--ksmtuned-conf), with its defaults
// for everything else. The agent is scraped every 15 s as Prometheus would.
//
// Measured: time to 90% of the final saving (general_profit at the end of the window), the final
// saving, ksmd CPU seconds (/proc/<ksmd>/stat), and the tool's own CPU and peak RSS. A table,
// then one JSON line last.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { USER_HZ, findKsmd, readKsm, readProcStat, setKsm } from '../../lib/index.js';
import { ensureLab, startGuests, stopAll } from '../qemu/harness.js';
import type { FillSpec } from '../qemu/harness.js';
import { foreignMergeable, waitForQuietHost } from '../../test/helpers/agent.js';
import { withSavedKsm } from '../../test/helpers/ksm.js';

const root = path.resolve(__dirname, '../../..');
const CLI = path.join(root, 'dist/lib/cli/main.js');
const KSMTUNED = '/usr/sbin/ksmtuned';
const WINDOW_S = Number(process.env['BENCH_AGENT_SECONDS'] ?? 180);
const MEM_MIB = Number(process.env['BENCH_AGENT_MEM_MIB'] ?? 768);
const SCRAPE_S = 15;
const FILL: FillSpec = {
  zero: { MiB: 64 },
  shared: { amount: { MiB: 128 }, blockPages: 256, seed: 11 },
  runs: { count: 64, length: 64, seed: 12 },
  hot: { copies: 600, seed: 13 },
  unique: { amount: { MiB: 64 } },
  volatile: { amount: { MiB: 4 }, intervalMs: 100 },
};

type Tool = 'ksmtuned' | 'agent';

interface Point {
  t: number;
  profit: number;
  ksmdTicks: number;
  run: number;
}

interface RunResult {
  tool: Tool;
  points: Point[];
  t90: number;
  finalSaved: number;
  ksmdCpuSeconds: number;
  toolCpuSeconds: number;
  toolCpuPct: number;
  toolRssMb: number;
  startedAt: number | undefined;
  tainted: string[];
}

/** utime+stime (+ waited-for children, for ksmtuned's awk/ps/pgrep) in ticks, and VmRSS in kB. */
function procUsage(pid: number, children: boolean): { ticks: number; rssKb: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(f[11]) + Number(f[12]) + (children ? Number(f[13]) + Number(f[14]) : 0);
    const rss = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return { ticks, rssKb: rss === null ? 0 : Number(rss[1]) };
  } catch {
    return undefined;
  }
}

/** Every descendant of pid (by ppid), deepest last. */
function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      parent.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone
    }
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    for (const [child, pp] of parent) if (pp === p) {
      out.push(child);
      walk(child);
    }
  };
  walk(pid);
  return out;
}

function killTree(pid: number): void {
  const all = [pid, ...descendants(pid)];
  for (const p of all) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

interface Started {
  pid: number;
  stop(): Promise<void>;
  scrape?: () => Promise<void>;
  log: string[];
}

async function startKsmtuned(conf: string, dir: string): Promise<Started> {
  const pidfile = path.join(dir, 'ksmtune.pid');
  // ksmtuned reads /etc/ksmtuned.conf: give it ours in a private mount namespace. It forks its
  // loop into the background, writes the loop's pid and exits.
  const r = spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$1" /etc/ksmtuned.conf && exec "$2"', 'sh', conf, KSMTUNED], {
    env: { ...process.env, PIDFILE: pidfile },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (r.status !== 0) throw new Error(`starting ${KSMTUNED} failed (${String(r.status)}): it needs util-linux unshare and root`);
  const pid = Number(readFileSync(pidfile, 'utf8').trim());
  return {
    pid,
    log: [],
    stop: async () => killTree(pid),
  };
}

/** The node flags on the bin's "#!/usr/bin/env -S node FLAGS" line: run the agent as installed. */
function shebangFlags(file: string): string[] {
  const first = readFileSync(file, 'utf8').split('\n', 1)[0] ?? '';
  const m = /^#!\S*env -S node(.*)$/.exec(first);
  return m === null ? [] : (m[1] as string).trim().split(/\s+/).filter((f) => f !== '');
}

async function startAgentProcess(conf: string, dir: string): Promise<Started> {
  const config = path.join(dir, 'agent.json');
  writeFileSync(config, JSON.stringify({ listen: '127.0.0.1:0' }));
  const verbose = process.env['BENCH_AGENT_LOG'] === '1' ? ['--verbose'] : [];
  // BENCH_AGENT_NODE_FLAGS: extra node flags for the agent, e.g. "--cpu-prof --cpu-prof-dir=/tmp/p".
  const nodeFlags = (process.env['BENCH_AGENT_NODE_FLAGS'] ?? '').split(' ').filter((f) => f !== '');
  const child = spawn(process.execPath, [...shebangFlags(CLI), ...nodeFlags, CLI, 'run', ...verbose, '--config', config, '--ksmtuned-conf', conf, '--state-file', path.join(dir, 'state.json'), '--lock-file', path.join(dir, 'agent.lock')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const log: string[] = [];
  let url: string | undefined;
  child.stderr.on('data', (d: Buffer) => {
    for (const line of d.toString().split('\n').filter((l) => l !== '')) {
      log.push(line);
      const m = /serving metrics on (\S+)/.exec(line);
      if (m !== null) url = m[1];
    }
  });
  for (let i = 0; i < 100 && url === undefined; i++) await sleep(50);
  if (url === undefined) throw new Error(`ksm-agent did not start:\n${log.join('\n')}`);
  const metrics = `${url}/metrics`;
  return {
    pid: child.pid as number,
    log,
    scrape: async () => {
      await (await fetch(metrics)).text();
    },
    stop: async () => {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(t);
    },
  };
}

async function ksmdTicks(ksmd: number): Promise<number> {
  const st = await readProcStat(ksmd);
  return st.utime + st.stime;
}

async function runOne(tool: Tool, conf: string): Promise<RunResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `bench-agent-${tool}-`));
  try {
    const guests = await startGuests([
      { name: `bench-${tool}-a`, memMiB: MEM_MIB, thp: false, fill: FILL },
      { name: `bench-${tool}-b`, memMiB: MEM_MIB, thp: false, fill: FILL },
    ]);
    const pids = guests.map((g) => g.pid);
    try {
      await waitForQuietHost(pids);
      return await withSavedKsm(async () => {
        // Start from nothing merged and the kernel's boot rate, whatever ran before.
        await setKsm({ run: 2 });
        await setKsm({ run: 0, pages_to_scan: 100, sleep_millisecs: 20 });
        const ksmd = await findKsmd();
        const t0Ticks = await ksmdTicks(ksmd);
        const started = tool === 'agent' ? await startAgentProcess(conf, dir) : await startKsmtuned(conf, dir);
        const t0 = performance.now();
        const u0 = procUsage(started.pid, tool === 'ksmtuned');
        const points: Point[] = [];
        let rssMax = 0;
        let lastUsage = u0;
        let nextScrape = 0;
        process.stdout.write(`${tool}: `);
        for (let s = 1; s <= WINDOW_S; s++) {
          await sleep(Math.max(0, t0 + s * 1000 - performance.now()));
          const k = await readKsm();
          points.push({ t: (performance.now() - t0) / 1000, profit: k.counters.general_profit ?? 0, ksmdTicks: (await ksmdTicks(ksmd)) - t0Ticks, run: k.settings.run ?? 0 });
          const u = procUsage(started.pid, tool === 'ksmtuned');
          if (u !== undefined) {
            rssMax = Math.max(rssMax, u.rssKb);
            lastUsage = u;
          }
          if (started.scrape !== undefined && s >= nextScrape) {
            await started.scrape();
            nextScrape = s + SCRAPE_S;
          }
          if (s % 10 === 0) process.stdout.write(`${s}s ${((k.counters.general_profit ?? 0) / 2 ** 20).toFixed(0)}MiB `);
        }
        process.stdout.write('\n');
        const tainted = await foreignMergeable(pids);
        const elapsed = (performance.now() - t0) / 1000;
        await started.stop();
        if (process.env['BENCH_AGENT_LOG'] === '1') console.log(started.log.join('\n'));
        if (tool === 'agent' && existsSync(path.join(dir, 'state.json'))) throw new Error(`ksm-agent left its state file: it did not restore on SIGTERM:\n${started.log.join('\n')}`);
        const last = points.slice(-3);
        const finalSaved = last.reduce((a, p) => a + p.profit, 0) / last.length;
        const hit = points.find((p) => p.profit >= 0.9 * finalSaved);
        const toolTicks = (lastUsage?.ticks ?? 0) - (u0?.ticks ?? 0);
        return {
          tool,
          points,
          t90: finalSaved > 0 && hit !== undefined ? hit.t : Number.NaN,
          finalSaved,
          ksmdCpuSeconds: (points[points.length - 1]?.ksmdTicks ?? 0) / USER_HZ,
          toolCpuSeconds: toolTicks / USER_HZ,
          toolCpuPct: (toolTicks / USER_HZ / elapsed) * 100,
          toolRssMb: rssMax / 1024,
          startedAt: points.find((p) => p.run === 1)?.t,
          tainted,
        };
      });
    } finally {
      await stopAll();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function fmt(v: number, digits = 1): string {
  return Number.isFinite(v) ? v.toFixed(digits) : '-';
}

async function main(): Promise<void> {
  if (!existsSync(KSMTUNED)) throw new Error(`${KSMTUNED} is missing: apt-get install ksmtuned (scripts/bench/agent.sh does it)`);
  await ensureLab();
  const confDir = mkdtempSync(path.join(os.tmpdir(), 'bench-agent-conf-'));
  const conf = path.join(confDir, 'ksmtuned.conf');
  writeFileSync(conf, '# bench:agent: the same condition for ksmtuned and ksm-agent: the threshold is all of RAM,\n# so memory is "short" from the start. Everything else is each tool\'s default.\nKSM_THRES_COEF=100\n');
  let results: RunResult[];
  try {
    // BENCH_AGENT_ONLY=agent|ksmtuned runs one side (for tuning; no comparison then).
    const only = process.env['BENCH_AGENT_ONLY'];
    if (only === 'agent' || only === 'ksmtuned') {
      const r = await runOne(only, conf);
      console.log(JSON.stringify({ tool: only, t90_s: r.t90, saved_bytes: Math.round(r.finalSaved), ksmd_cpu_s: r.ksmdCpuSeconds, cpu_pct: r.toolCpuPct, rss_mb: r.toolRssMb }));
      return;
    }
    results = [await runOne('ksmtuned', conf), await runOne('agent', conf)];
  } finally {
    rmSync(confDir, { recursive: true, force: true });
  }
  const [k, a] = results as [RunResult, RunResult];
  const rows: [string, string, string][] = [
    ['KSM started (s after the tool)', fmt(k.startedAt ?? Number.NaN), fmt(a.startedAt ?? Number.NaN)],
    ['time to 90% of final saving (s)', fmt(k.t90), fmt(a.t90)],
    ['final saving, general_profit (MiB)', fmt(k.finalSaved / 2 ** 20), fmt(a.finalSaved / 2 ** 20)],
    [`ksmd CPU over ${WINDOW_S} s (s)`, fmt(k.ksmdCpuSeconds, 2), fmt(a.ksmdCpuSeconds, 2)],
    ['tool CPU (% of a core)', fmt(k.toolCpuPct, 2), fmt(a.toolCpuPct, 2)],
    ['tool peak RSS (MB)', fmt(k.toolRssMb), fmt(a.toolRssMb)],
  ];
  const w = Math.max(...rows.map((r) => r[0].length));
  console.log(`\nbench:agent: 2 TCG guests × ${MEM_MIB} MiB (THP off), fresh per tool; condition: KSM_THRES_COEF=100 for both; ${WINDOW_S} s window`);
  console.log(`${''.padEnd(w)}  ${'ksmtuned'.padStart(10)}  ${'ksm-agent'.padStart(10)}`);
  for (const [name, kv, av] of rows) console.log(`${name.padEnd(w)}  ${kv.padStart(10)}  ${av.padStart(10)}`);
  for (const r of results) if (r.tainted.length > 0) console.log(`warning: during the ${r.tool} run other mergeable processes appeared (${r.tainted.join(', ')}); its figures include them`);
  const speedup = k.t90 / a.t90;
  const out = {
    agent_t90_s: a.t90,
    ksmtuned_t90_s: k.t90,
    agent_saved_bytes: Math.round(a.finalSaved),
    ksmtuned_saved_bytes: Math.round(k.finalSaved),
    agent_ksmd_cpu_s: a.ksmdCpuSeconds,
    ksmtuned_ksmd_cpu_s: k.ksmdCpuSeconds,
    agent_cpu_pct: a.toolCpuPct,
    agent_rss_mb: a.toolRssMb,
    ksmtuned_cpu_pct: k.toolCpuPct,
    ksmtuned_rss_mb: k.toolRssMb,
    t90_speedup: speedup,
    window_s: WINDOW_S,
    guest_mib: MEM_MIB,
    condition: 'KSM_THRES_COEF=100 (both)',
    target_t90_2x: speedup >= 2,
    target_ksmd_cpu: a.ksmdCpuSeconds <= k.ksmdCpuSeconds,
    target_agent_cpu: a.toolCpuPct < 1,
    target_agent_rss: a.toolRssMb < 60,
  };
  console.log(JSON.stringify(out));
}

main().catch((err: unknown) => {
  console.error(`bench:agent: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
