// Compiled TypeScript fixtures run as child processes (dist/test/fixtures/*.js).
import { spawn } from 'node:child_process';
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import path from 'node:path';

export interface NodeChild<T> {
  child: ChildProcess;
  pid: number;
  /** The first JSON line the child printed. */
  hello: T;
  /** Closes stdin, waits for the exit, kills it after 5 s. */
  stop(): Promise<void>;
}

export async function startFixture<T>(name: string, args: string[] = [], opts: SpawnOptions = {}): Promise<NodeChild<T>> {
  const script = path.resolve(__dirname, '..', 'fixtures', `${name}.js`);
  const child = spawn(process.execPath, [script, ...args], { stdio: ['pipe', 'pipe', 'pipe'], ...opts });
  const hello = await new Promise<T>((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve(JSON.parse(out.slice(0, nl)) as T);
    });
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`fixture ${name} exited with ${String(code)} before it was ready: ${err}`)));
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.stdin?.end();
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  process.once('exit', () => child.kill('SIGKILL'));
  return { child, pid: child.pid as number, hello, stop };
}
