/**
 * Manual and benchmark use of the QEMU harness.
 *
 *   node dist/scripts/qemu/cli.js setup
 *   node dist/scripts/qemu/cli.js start --count 2 --mem 1024 --thp off --fill zero=64M,shared=64M/seed=1 \
 *        [--name vm] [--disk PATH[:CACHE]]... [--json]
 *   node dist/scripts/qemu/cli.js stop
 *
 * `start` boots the guests, prints their pids, and stays in the foreground until Ctrl-C (or
 * `stop` from another shell), then stops them.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { ensureLab, HarnessError, parseFillSpec, startGuests, stopAll, type DiskCache, type GuestSpec } from './harness.js';

const STATE_DIR = path.join(os.tmpdir(), 'samepage-qemu-cli');
const USAGE = `usage:
  cli.js setup                          prepare the lab (apt packages, kernel, initramfs)
  cli.js start [--count N] [--mem MiB] [--thp on|off] [--fill SPEC] [--name PREFIX]
               [--disk PATH[:CACHE]]... [--json]
                                        boot guests and keep them until Ctrl-C
  cli.js stop                           stop the guests of every running 'start'
SPEC: zero=64M,shared=64M/block=256/seed=1,runs=32x16/seed=1,hot=300p/seed=1,
      unique=16M/src=urandom|name,volatile=4M/ms=100   (amounts: N pages, Np, NM, NG)`;

class UsageError extends Error {}

function wholeNumber(v: string | undefined, flag: string, def: number): number {
  if (v === undefined) return def;
  if (!/^\d+$/.test(v)) throw new UsageError(`${flag} takes a whole number, got "${v}"`);
  return Number(v);
}

function disks(values: string[] | undefined): GuestSpec['disks'] {
  return (values ?? []).map((d) => {
    const m = /^(.*?)(?::(writeback|none|writethrough|directsync|unsafe))?$/.exec(d);
    return { path: path.resolve(m?.[1] ?? d), format: 'raw' as const, cache: (m?.[2] ?? 'writeback') as DiskCache };
  });
}

async function start(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      count: { type: 'string' },
      mem: { type: 'string' },
      thp: { type: 'string' },
      fill: { type: 'string' },
      name: { type: 'string' },
      disk: { type: 'string', multiple: true },
      json: { type: 'boolean' },
    },
  });
  const count = wholeNumber(values.count, '--count', 1);
  if (count < 1) throw new UsageError('--count must be at least 1');
  const thp = values.thp ?? 'off';
  if (thp !== 'on' && thp !== 'off') throw new UsageError(`--thp takes on or off, got "${thp}"`);
  const fill = values.fill ? parseFillSpec(values.fill) : undefined;
  // Every guest gets the same disks. QEMU locks an image it may write, so with several guests
  // the disks are attached read-only (shared lock) and all of them can open the image.
  const specs: GuestSpec[] = Array.from({ length: count }, (_, i) => ({
    name: `${values.name ?? 'vm'}${i + 1}`,
    memMiB: wholeNumber(values.mem, '--mem', 1024),
    thp: thp === 'on',
    fill,
    disks: disks(values.disk)?.map((d) => ({ ...d, readOnly: count > 1 })),
  }));
  const t0 = Date.now();
  const guests = await startGuests(specs);
  const stateFile = path.join(STATE_DIR, `${process.pid}.json`);
  mkdirSync(STATE_DIR, { recursive: true });
  writeFileSync(stateFile, JSON.stringify({ cliPid: process.pid, guests: guests.map((g) => ({ name: g.name, pid: g.pid })) }));
  const rows = guests.map((g) => ({ name: g.name, pid: g.pid, readyMs: g.readyMs, serialLog: g.serialLogPath, controlSocket: g.controlSocketPath, fill: g.bootFill }));
  if (values.json) console.log(JSON.stringify({ guests: rows }));
  else {
    console.log(`${guests.length} guest(s) ready after ${Date.now() - t0} ms; Ctrl-C (or 'cli.js stop') stops them`);
    for (const r of rows) console.log(`${r.name}\tpid ${r.pid}\tready ${r.readyMs} ms\t${r.serialLog}`);
  }
  let stopping = false;
  const finish = (): void => {
    if (stopping) return;
    stopping = true;
    void stopAll().finally(() => {
      rmSync(stateFile, { force: true });
      process.exit(0);
    });
  };
  process.on('SIGINT', finish);
  process.on('SIGTERM', finish);
  // If a guest dies on its own, say so and end, rather than sit on a dead lab.
  for (;;) {
    await sleep(1000);
    const dead = guests.filter((g) => !existsSync(`/proc/${g.pid}`));
    if (dead.length > 0 && !stopping) {
      console.error(`guest(s) ${dead.map((g) => g.name).join(', ')} exited; stopping the rest`);
      stopping = true;
      await stopAll();
      rmSync(stateFile, { force: true });
      process.exit(1);
    }
  }
}

async function stop(): Promise<void> {
  const files = existsSync(STATE_DIR) ? readdirSync(STATE_DIR).filter((f) => f.endsWith('.json')) : [];
  let stopped = 0;
  for (const f of files) {
    const file = path.join(STATE_DIR, f);
    const state = JSON.parse(readFileSync(file, 'utf8')) as { cliPid: number; guests: { name: string; pid: number }[] };
    const cmdline = existsSync(`/proc/${state.cliPid}/cmdline`) ? readFileSync(`/proc/${state.cliPid}/cmdline`, 'latin1') : '';
    if (!cmdline.includes('cli.js')) {
      rmSync(file, { force: true }); // stale: that start is gone
      continue;
    }
    process.kill(state.cliPid, 'SIGTERM');
    for (let i = 0; i < 150 && existsSync(`/proc/${state.cliPid}`); i++) await sleep(100);
    console.log(`stopped start pid ${state.cliPid}: ${state.guests.map((g) => `${g.name} (pid ${g.pid})`).join(', ')}`);
    stopped++;
  }
  if (stopped === 0) console.log('no running start found');
}

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  if (cmd === 'setup') {
    const lab = await ensureLab();
    console.log(JSON.stringify(lab, null, 2));
  } else if (cmd === 'start') await start(rest);
  else if (cmd === 'stop') await stop();
  else throw new UsageError(cmd ? `unknown command "${cmd}"` : 'no command given');
}

main().catch((e: unknown) => {
  if (e instanceof UsageError || (e instanceof TypeError && 'code' in e && String(e.code).startsWith('ERR_PARSE_ARGS'))) {
    console.error(`cli.js: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  if (e instanceof HarnessError) console.error(`cli.js: ${e.code}: ${e.message}`);
  else console.error(e);
  process.exit(1);
});
