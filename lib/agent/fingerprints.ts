// The daemon's VM sketches (issue 15): what GET /api/fingerprint serves and the per-VM
// samepage_vm_fingerprint_* metrics read. Sketching reads all of guest RAM (about 2 s of CPU per
// GiB, lib/fingerprint/guest.ts), so it is never done per request: one run sketches every VM and
// the result is kept, bytes and all, until the next run replaces it.
//
// Schedule. The first run starts once the daemon has started; each next one starts
// max(intervalSeconds, 19 × the last run's duration) after the last one ended, so runs never
// overlap (one timer, armed only when a run has finished) and take at most 5% of one core however
// much guest RAM the host has. A sketch served is therefore at most that period plus two runs'
// duration old (a VM is sketched at some moment of its run); the reply says how old it is and when
// the next run starts.
//
// The key file is the opt-in: without it nothing is read and the endpoint answers 503 naming
// `ksm-agent fingerprint --init-key`; it is looked for again every minute (or every interval, if
// shorter), so creating it takes effect without a restart. A run that fails keeps the sketches of
// the last run that worked (each says when it was taken).
import os from 'node:os';
import { SamepageError } from '../errors.js';
import { encodeSketches } from '../fingerprint/file.js';
import { fingerprintVms } from '../fingerprint/guest.js';
import type { FingerprintFailure, VmSketch } from '../fingerprint/guest.js';
import { readFingerprintKey } from '../fingerprint/key.js';
import { vmLabel } from '../attribution.js';
import { listVms } from '../vms.js';
import type { FingerprintConfig } from './config.js';
import type { Logger } from './log.js';

/** A run takes at most 1/(1+19) = 5% of one core, averaged over a run and the wait after it. */
export const IDLE_PER_BUSY = 19;
/** Without a key, how often it is looked for again (at most). */
const KEY_RECHECK_SECONDS = 60;

export interface FingerprintSnapshot {
  keyId: string;
  host: string;
  /** When the run started and ended (ms since the epoch); each sketch has its own takenAt too. */
  startedAt: number;
  finishedAt: number;
  sketches: VmSketch[];
  failures: FingerprintFailure[];
  /** The sketch file's bytes (lib/fingerprint/file.ts), as `ksm-agent fingerprint --out` writes them. */
  bytes: Buffer;
}

/** Why there is no sketch to serve. */
export type FingerprintProblem =
  | { kind: 'off' }
  | { kind: 'pending'; since: number }
  /** No key file, or one that cannot be used (its message names the file and the fix). */
  | { kind: 'key'; message: string }
  | { kind: 'failed'; at: number };

export interface FingerprintView {
  latest?: FingerprintSnapshot;
  problem?: FingerprintProblem;
  /** When the next run starts (ms since the epoch), if one is armed. */
  nextAt?: number;
  /** The period now between a run's end and the next start, in seconds. */
  periodSeconds: number;
}

export class FingerprintService {
  private latest: FingerprintSnapshot | undefined;
  /** Why nothing is served while there is no sketch (ignored once there is one, except 'off'). */
  private problem: FingerprintProblem = { kind: 'pending', since: Date.now() };
  private timer: NodeJS.Timeout | undefined;
  private nextAt: number | undefined;
  private running: Promise<void> | undefined;
  private abort: AbortController | undefined;
  private lastElapsedMs = 0;
  /** A reconfigure asked for a run now while one was in flight: it starts as soon as that one ends. */
  private runAgain = false;
  private started = false;
  private stopped = false;

  constructor(
    private cfg: FingerprintConfig,
    private readonly log: Logger,
  ) {
    if (!cfg.enabled) this.problem = { kind: 'off' };
  }

  /** The period between a run's end and the next start, in seconds. */
  periodSeconds(): number {
    return Math.max(this.cfg.intervalSeconds, (IDLE_PER_BUSY * this.lastElapsedMs) / 1000);
  }

  view(): FingerprintView {
    const v: FingerprintView = { periodSeconds: this.periodSeconds() };
    if (this.latest !== undefined) v.latest = this.latest;
    if (this.latest === undefined || this.problem.kind === 'off') v.problem = this.problem;
    if (this.nextAt !== undefined) v.nextAt = this.nextAt;
    return v;
  }

  /** The latest sketches, for the metrics. */
  current(): FingerprintSnapshot | undefined {
    return this.cfg.enabled ? this.latest : undefined;
  }

  /** Starts the schedule: the first run now. */
  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    if (this.cfg.enabled) this.arm(0);
  }

  /** A new config (SIGHUP): a changed interval re-times the wait in progress; disabled drops the sketches. */
  reconfigure(cfg: FingerprintConfig): void {
    const before = this.cfg;
    this.cfg = cfg;
    if (!this.started || this.stopped) return;
    if (!cfg.enabled) {
      this.disarm();
      this.abort?.abort(new Error('fingerprints turned off'));
      this.latest = undefined;
      this.problem = { kind: 'off' };
      return;
    }
    // On again, or another key (sketches of the old one are no longer what this host's peers
    // compare with): a run now, or right after the one in flight (which was started under the old
    // config: turned off meanwhile it was aborted, and its end would otherwise arm a whole period).
    if (!before.enabled || before.keyFile !== cfg.keyFile) {
      if (!before.enabled) this.problem = { kind: 'pending', since: Date.now() };
      if (this.running === undefined) this.arm(0);
      else this.runAgain = true;
    } else if (before.intervalSeconds !== cfg.intervalSeconds && this.timer !== undefined) {
      this.arm(this.periodSeconds());
    }
  }

  private disarm(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.nextAt = undefined;
  }

  private arm(seconds: number): void {
    this.disarm();
    if (this.stopped || !this.cfg.enabled) return;
    this.nextAt = Date.now() + seconds * 1000;
    this.timer = setTimeout(() => this.fire(), seconds * 1000);
    // The sketch schedule alone never keeps the daemon alive.
    this.timer.unref();
  }

  private fire(): void {
    this.timer = undefined;
    this.nextAt = undefined;
    if (this.stopped || !this.cfg.enabled) return;
    this.running = this.run().finally(() => {
      this.running = undefined;
    });
  }

  /** One run: read the key, sketch every VM, keep the result; then arm the next. */
  private async run(): Promise<void> {
    const cfg = this.cfg;
    const abort = new AbortController();
    this.abort = abort;
    const started = Date.now();
    const t0 = performance.now();
    let next = this.periodSeconds();
    try {
      let key;
      try {
        key = await readFingerprintKey(cfg.keyFile);
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        // No key is the normal state of a host that does not use fingerprints: said once, not warned.
        const noKey = err instanceof SamepageError && err.code === 'NOT_FOUND';
        if (this.problem.kind !== 'key' || this.problem.message !== message) this.log[noKey ? 'info' : 'warning'](`fingerprint: not sketching: ${message}`);
        this.problem = { kind: 'key', message };
        next = Math.min(this.cfg.intervalSeconds, KEY_RECHECK_SECONDS);
        return;
      }
      // Configured VMs that are not running are no error: the others are sketched.
      const chosen = cfg.vms.length === 0 ? undefined : (await listVms({ memory: false })).filter((vm) => cfg.vms.includes(vmLabel(vm)) || cfg.vms.includes(String(vm.pid))).map((vm) => vm.pid);
      const r =
        chosen?.length === 0
          ? { sketches: [], failures: [] }
          : await fingerprintVms({ key, ...(chosen === undefined ? {} : { vms: chosen }), ...(cfg.entries === null ? {} : { entries: cfg.entries }), signal: abort.signal });
      const host = os.hostname();
      const finishedAt = Date.now();
      this.lastElapsedMs = performance.now() - t0;
      next = this.periodSeconds();
      if (this.stopped || !this.cfg.enabled) return;
      this.latest = { keyId: key.id, host, startedAt: started, finishedAt, sketches: r.sketches, failures: r.failures, bytes: encodeSketches(r.sketches, host, finishedAt, key.id) };
      this.problem = { kind: 'pending', since: finishedAt };
      for (const f of r.failures) this.log.info(`fingerprint: VM ${f.name} (pid ${f.pid}) not sketched: ${f.error.message}`);
      this.log.info(`fingerprint: sketched ${r.sketches.length} VM${r.sketches.length === 1 ? '' : 's'}`, {
        key_id: key.id,
        pages: r.sketches.reduce((a, s) => a + s.pages, 0),
        bytes: this.latest.bytes.length,
        ms: Math.round(this.lastElapsedMs),
        next_s: Math.round(next),
      });
    } catch (err) {
      this.lastElapsedMs = performance.now() - t0;
      next = this.periodSeconds();
      if (this.stopped || abort.signal.aborted) return;
      // A VM that vanished mid-read is a failure of that VM only (fingerprintVms); this is more.
      this.log.warning(`fingerprint: sketching failed: ${err instanceof Error ? err.message : String(err)}`);
      this.problem = err instanceof SamepageError && err.code === 'INVALID_ARGUMENT' && /fingerprint key/.test(err.message) ? { kind: 'key', message: err.message } : { kind: 'failed', at: Date.now() };
    } finally {
      this.abort = undefined;
      const again = this.runAgain;
      this.runAgain = false;
      if (!this.stopped) this.arm(again ? 0 : next);
    }
  }

  /** No more runs; a run in progress is cancelled between chunks and waited for. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.disarm();
    this.abort?.abort(new Error('stopping'));
    await this.running;
  }
}
