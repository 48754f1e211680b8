// The ksm-agent bin as the kernel runs it: through its first line (`#!/usr/bin/env -S node
// FLAGS`), so tests see the flags an installed ksm-agent runs with; and what /proc says about a
// running process's signal handlers and listening sockets.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile, readdir, readlink } from 'node:fs/promises';
import { AgentProcess, CLI } from './agent.js';

/** The node flags of the bin's shebang (`#!/usr/bin/env -S node --lite-mode ...` → the flags). */
export function shebangFlags(): string[] {
  const first = readFileSync(CLI, 'utf8').split('\n', 1)[0] ?? '';
  const m = /^#!\/usr\/bin\/env -S node((?: \S+)*)$/.exec(first);
  if (m === null) throw new Error(`${CLI}: first line is not "#!/usr/bin/env -S node FLAGS...": ${first}`);
  return (m[1] ?? '').split(' ').filter((f) => f !== '');
}

/** node's argv for `ksm-agent ARGS` as the shebang has it. */
export function binArgv(args: string[]): string[] {
  return [...shebangFlags(), CLI, ...args];
}

/** `ksm-agent run ARGS` through the shebang's flags, optionally under a wrapper (argv prefix). */
export function startBinAgent(args: string[], wrapper: string[] = []): AgentProcess {
  const argv = [...wrapper, process.execPath, ...binArgv(['run', ...args])];
  const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], cwd: '/' });
  return new AgentProcess(child);
}

/** Signal numbers with a handler installed (SigCgt of /proc/PID/status); empty once it is gone. */
export function caughtSignals(pid: number): Set<number> {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return new Set();
  }
  const hex = /^SigCgt:\s*([0-9a-f]+)$/m.exec(status)?.[1] ?? '0';
  const mask = BigInt(`0x${hex}`);
  const out = new Set<number>();
  for (let sig = 1; sig <= 64; sig++) if ((mask >> BigInt(sig - 1)) & 1n) out.add(sig);
  return out;
}

/** Local TCP ports the process `pid` listens on (its socket inodes matched in /proc/net/tcp{,6}). */
export async function listeningPorts(pid: number): Promise<number[]> {
  const inodes = new Set<string>();
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [])) {
    const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m !== null) inodes.add(m[1] as string);
  }
  const ports: number[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(table, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st ... inode (10th field); st 0A = LISTEN
      if (f.length < 10 || f[3] !== '0A' || !inodes.has(f[9] as string)) continue;
      ports.push(parseInt((f[1] as string).split(':')[1] as string, 16));
    }
  }
  return ports;
}
