/**
 * Host end of the control channel: a unix socket that QEMU binds to the guest's ttyS1, where
 * sp-agent runs commands. Frames are ASCII lines (see guest/agent.c):
 *   host -> guest   SP1 PING <id> | SP1 EXEC <id> <b64 command> | SP1 KILL <id>
 *   guest -> host   SP1 HELLO | SP1 PONG <id> | SP1 OUT|ERR <id> <b64> | SP1 EXIT <id> <code>
 *                   SP1 FAIL <id> <b64 reason>
 * The agent runs one command at a time, so commands are queued here.
 */
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { HarnessError } from './errors.js';

export interface ExecResult {
  /** Exit status; 128+N when the command died of signal N. */
  code: number;
  stdout: string;
  stderr: string;
  /** stdout as bytes, for binary output. */
  stdoutBytes: Buffer;
}

interface Pending {
  id: number;
  out: Buffer[];
  err: Buffer[];
  onPong?: () => void;
  settle: (r: ExecResult | Error) => void;
}

export class ControlChannel {
  private buf = '';
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private queue: Promise<unknown> = Promise.resolve();
  private closedReason: string | undefined;

  private constructor(
    private readonly sock: net.Socket,
    readonly label: string,
  ) {
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => this.onData(d));
    sock.on('error', (e) => this.onClose(`socket error: ${e.message}`));
    sock.on('close', () => this.onClose('the guest closed the control channel (QEMU exited?)'));
  }

  /** Connect and wait until the agent answers a PING (it may still be starting). */
  static async open(socketPath: string, label: string, timeoutMs: number): Promise<ControlChannel> {
    const deadline = Date.now() + timeoutMs;
    let lastError = '';
    while (Date.now() < deadline) {
      try {
        const sock = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect(socketPath);
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        });
        const ch = new ControlChannel(sock, label);
        while (Date.now() < deadline && !ch.closedReason) {
          if (await ch.ping(500)) return ch;
        }
        lastError = ch.closedReason ?? 'no PONG from sp-agent';
        ch.close();
      } catch (e) {
        lastError = (e as Error).message;
        await sleep(200);
      }
    }
    throw new HarnessError('CHANNEL', `${label}: control channel ${socketPath} not answering after ${timeoutMs} ms (${lastError})`);
  }

  private send(line: string): void {
    this.sock.write(`${line}\n`, 'latin1');
  }

  private ping(timeoutMs: number): Promise<boolean> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve(false);
      }, timeoutMs);
      this.pending.set(id, {
        id,
        out: [],
        err: [],
        onPong: () => {
          clearTimeout(timer);
          this.pending.delete(id);
          resolve(true);
        },
        settle: () => {
          clearTimeout(timer);
          resolve(false);
        },
      });
      this.send(`SP1 PING ${id}`);
    });
  }

  private onData(d: string): void {
    this.buf += d;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).replace(/\r$/, '');
      this.buf = this.buf.slice(nl + 1);
      this.onLine(line);
    }
  }

  private onLine(line: string): void {
    const [magic, verb, idText, arg] = line.split(' ');
    // Anything else (HELLO, line noise while the agent starts) carries no request id.
    if (magic !== 'SP1' || idText === undefined) return;
    const p = this.pending.get(Number(idText));
    if (!p) return;
    switch (verb) {
      case 'PONG':
        p.onPong?.();
        break;
      case 'OUT':
        p.out.push(Buffer.from(arg ?? '', 'base64'));
        break;
      case 'ERR':
        p.err.push(Buffer.from(arg ?? '', 'base64'));
        break;
      case 'EXIT': {
        const stdoutBytes = Buffer.concat(p.out);
        p.settle({ code: Number(arg), stdout: stdoutBytes.toString('utf8'), stderr: Buffer.concat(p.err).toString('utf8'), stdoutBytes });
        break;
      }
      case 'FAIL':
        p.settle(new HarnessError('EXEC_FAILED', `${this.label}: the guest agent refused the command: ${Buffer.from(arg ?? '', 'base64').toString()}`));
        break;
    }
  }

  private onClose(reason: string): void {
    if (this.closedReason) return;
    this.closedReason = reason;
    for (const p of [...this.pending.values()]) p.settle(new HarnessError('CHANNEL', `${this.label}: ${reason}`));
    this.pending.clear();
  }

  /** Run `cmd` with /bin/sh in the guest. A non-zero exit is a result, not an error; running
   * past timeoutMs kills the command's process group and rejects with EXEC_TIMEOUT. */
  exec(cmd: string, timeoutMs = 60_000): Promise<ExecResult> {
    const run = this.queue.then(() => this.execNow(cmd, timeoutMs));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private execNow(cmd: string, timeoutMs: number): Promise<ExecResult> {
    if (this.closedReason) return Promise.reject(new HarnessError('CHANNEL', `${this.label}: ${this.closedReason}`));
    const id = this.nextId++;
    return new Promise<ExecResult>((resolve, reject) => {
      let timedOut = false;
      let grace: NodeJS.Timeout | undefined;
      const timer = setTimeout(() => {
        // Kill it in the guest and wait briefly for its EXIT, so the agent is free again before
        // the next queued command goes out.
        timedOut = true;
        this.send(`SP1 KILL ${id}`);
        grace = setTimeout(() => p.settle(new Error('no EXIT after KILL')), 5000);
      }, timeoutMs);
      const p: Pending = {
        id,
        out: [],
        err: [],
        settle: (r) => {
          clearTimeout(timer);
          if (grace) clearTimeout(grace);
          this.pending.delete(id);
          if (timedOut) {
            const partial = Buffer.concat(p.out).toString('utf8').slice(-500);
            reject(new HarnessError('EXEC_TIMEOUT', `${this.label}: command timed out after ${timeoutMs} ms and was killed: ${cmd}${partial ? `\npartial output: ${partial}` : ''}`));
          } else if (r instanceof Error) reject(r);
          else resolve(r);
        },
      };
      this.pending.set(id, p);
      this.send(`SP1 EXEC ${id} ${Buffer.from(cmd, 'utf8').toString('base64')}`);
    });
  }

  close(): void {
    this.onClose('control channel closed by the host');
    this.sock.destroy();
  }
}
