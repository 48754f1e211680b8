// Helpers for the ksm-agent tests: run the real CLI (dist/lib/cli/main.js) as a child process,
// as root or as nobody; run the daemon and follow its log; hold memory to create real pressure;
// freeze guests (SIGSTOP) so KSM counters stand still while they are compared; and make sure no
// other process on the host is mergeable before a test's exact KSM figures are trusted.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { readComm, readKsmStat, readSmaps } from '../../lib/procfs.js';
import { NOBODY, nobodyPath } from './nobody.js';
import { withSavedKsm } from './ksm.js';
import type { KsmSnapshot } from '../../lib/sysfs.js';

export const CLI = path.resolve(__dirname, '../../lib/cli/main.js');

/** The CLI's path as the child's user reaches it. */
function cliFor(opts: { asNobody?: boolean }): string {
  return opts.asNobody ? nobodyPath(CLI) : CLI;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `ksm-agent ARGS` to completion; uid 65534 (nobody) when asNobody. */
export function runCli(args: string[], opts: { asNobody?: boolean; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliFor(opts), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: '/',
      env: { ...process.env, ...opts.env },
      ...(opts.asNobody ? NOBODY : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export async function runCliJson<T>(args: string[]): Promise<T> {
  const r = await runCli(args);
  if (r.code !== 0) throw new Error(`ksm-agent ${args.join(' ')} exited ${String(r.code)}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** A running `ksm-agent run`, its stderr log collected line by line. */
export class AgentProcess {
  readonly lines: string[] = [];
  private readonly waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  readonly exited: Promise<number | null>;

  /** The last lines of the log, for assertion messages. */
  tail(n = 12): string {
    return this.lines.slice(-n).join('\n');
  }

  constructor(readonly child: ChildProcess) {
    let buf = '';
    child.stderr?.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        this.lines.push(line);
        for (const w of [...this.waiters]) {
          const m = line.match(w.re);
          if (m !== null) {
            this.waiters.splice(this.waiters.indexOf(w), 1);
            w.resolve(m);
          }
        }
      }
    });
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    process.once('exit', () => child.kill('SIGKILL'));
  }

  get pid(): number {
    return this.child.pid as number;
  }

  /** Resolves with the first log line (past or future) matching `re`. */
  waitForLine(re: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
    for (const line of this.lines) {
      const m = line.match(re);
      if (m !== null) return Promise.resolve(m);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no agent log line matching ${re} within ${timeoutMs} ms; log:\n${this.lines.join('\n')}`)), timeoutMs);
      this.waiters.push({
        re,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`the agent exited (${String(code)}) before logging ${re}; log:\n${this.lines.join('\n')}`));
      });
    });
  }

  /** The metrics URL the agent logged. */
  async metricsUrl(): Promise<string> {
    const m = await this.waitForLine(/serving metrics on (\S+)\/metrics/);
    return `${m[1] as string}/metrics`;
  }

  /** Sends `signal` and waits for the exit (SIGKILL after 20 s). */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 20_000);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

export function startAgent(args: string[], opts: { asNobody?: boolean } = {}): AgentProcess {
  const child = spawn(process.execPath, [cliFor(opts), 'run', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    cwd: '/',
    ...(opts.asNobody ? NOBODY : {}),
  });
  return new AgentProcess(child);
}

/** A child process holding `bytes` of written (so resident) memory until stopped. */
export async function memoryHog(bytes: number): Promise<{ pid: number; stop(): Promise<void> }> {
  const script = `
    const chunks = [];
    let page = 0;
    for (let left = ${bytes}; left > 0; left -= 1 << 30) {
      const b = Buffer.alloc(Math.min(left, 1 << 30), 0x5a);
      // Every page different, so nothing (KSM under PR_SET_MEMORY_MERGE, zswap) can shrink the hold.
      for (let off = 0; off < b.length; off += 4096) b.writeUInt32LE(page++, off);
      chunks.push(b);
    }
    process.stdout.write('held\\n');
    setInterval(() => chunks.length, 1 << 30);`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`the memory hog exited with ${String(code)}`)));
  });
  process.once('exit', () => child.kill('SIGKILL'));
  return {
    pid: child.pid as number,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGKILL');
      await gone;
    },
  };
}

/** SIGSTOP / SIGCONT: a stopped QEMU changes no guest memory, so KSM's counters stand still. */
export function freeze(pids: number[]): void {
  for (const pid of pids) process.kill(pid, 'SIGSTOP');
}

export function thaw(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      // already gone
    }
  }
}

/** Processes other than `ours` that KSM may merge (ksm_stat's ksm_mergeable, or "mg" in smaps). */
export async function foreignMergeable(ours: number[]): Promise<string[]> {
  const out: string[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (ours.includes(pid) || pid === process.pid) continue;
    try {
      const stat = await readKsmStat(pid);
      const mergeable = stat.ksm_mergeable ?? (stat.ksm_rmap_items === undefined ? false : (await readSmaps(pid)).some((v) => v.mergeable));
      if (mergeable || (stat.ksm_merge_any ?? false)) out.push(`${await readComm(pid).catch(() => '?')} (pid ${pid})`);
    } catch {
      // exited, or a kernel thread without an mm
    }
  }
  return out;
}

/**
 * Waits until no process but `ours` is mergeable: KSM merges every mergeable process on the
 * host, so another one (a guest or benchmark of someone else's) would change the counters a test
 * compares. Throws, naming them, after `timeoutMs`.
 */
export async function waitForQuietHost(ours: number[], timeoutMs = 600_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const others = await foreignMergeable(ours);
    if (others.length === 0) return;
    if (Date.now() > end) {
      throw new Error(`other mergeable processes are running (${others.join(', ')}): KSM would merge them too and change the figures this test compares; run it on a host where nothing else is mergeable`);
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

/**
 * A test file's own directory for daemons' state, lock and config files, and the daemons started
 * in it: close() kills any still running (SIGKILL, as a crash would) and removes the directory.
 */
export class AgentSandbox {
  dir = '';
  private readonly agents: AgentProcess[] = [];

  constructor(
    private readonly prefix: string,
    private readonly start: (args: string[]) => AgentProcess = (args) => startAgent(args),
  ) {}

  async open(): Promise<void> {
    this.dir = await mkdtemp(path.join(os.tmpdir(), this.prefix));
  }

  async close(): Promise<void> {
    await this.killAgents();
    if (this.dir !== '') await rm(this.dir, { recursive: true, force: true });
  }

  /** SIGKILLs (as a crash would) the sandbox's daemons still running, from the `first` started on. */
  async killAgents(first = 0): Promise<void> {
    for (const a of this.agents.splice(first)) await a.stop('SIGKILL');
  }

  /**
   * withSavedKsm for a test that runs daemons: the daemons `fn` started and left running (a failed assertion
   * ends a test early) are killed before the settings are restored, so none writes KSM after the
   * restore and none holds a lock file or the KSM lock into the next test.
   */
  withSavedKsm<T>(fn: (snapshot: KsmSnapshot) => Promise<T>): Promise<T> {
    return withSavedKsm(async (snapshot) => {
      const first = this.agents.length;
      try {
        return await fn(snapshot);
      } finally {
        await this.killAgents(first);
      }
    });
  }

  /** --state-file and --lock-file of a daemon called `name`, inside the sandbox. */
  files(name: string): string[] {
    return ['--state-file', path.join(this.dir, `${name}.state.json`), '--lock-file', path.join(this.dir, `${name}.lock`)];
  }

  async writeConfig(name: string, config: Record<string, unknown>): Promise<string> {
    const file = path.join(this.dir, `${name}.json`);
    await writeFile(file, JSON.stringify(config));
    return file;
  }

  /** Starts `ksm-agent run ARGS` (as the constructor says) and keeps it for close(). */
  agent(args: string[]): AgentProcess {
    const a = this.start(args);
    this.agents.push(a);
    return a;
  }
}
