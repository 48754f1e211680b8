// A job the daemon runs every N seconds (ticks, tenant checks, cache scrubs). The next run is armed
// only when the last one has finished, so runs never overlap; the period can change (SIGHUP) and
// takes effect from now; stop() disarms it for good and waits for a run in progress, so nothing
// the job does can happen after the daemon began restoring the settings it found.
export class Periodic {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    readonly name: string,
    private seconds: number,
    private readonly job: () => Promise<unknown>,
    private readonly onError: (name: string, err: unknown) => void,
  ) {
    this.arm();
  }

  get periodSeconds(): number {
    return this.seconds;
  }

  private arm(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => this.fire(), this.seconds * 1000);
  }

  private fire(): void {
    this.timer = undefined;
    if (this.stopped) return;
    this.running = this.job()
      .then(
        () => undefined,
        (err: unknown) => this.onError(this.name, err),
      )
      .finally(() => {
        this.running = undefined;
        this.arm();
      });
  }

  /** A new period: the next run comes `seconds` from now (or after the run in progress). */
  setPeriod(seconds: number): void {
    if (seconds === this.seconds) return;
    this.seconds = seconds;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.arm();
    }
  }

  /** Never runs again; resolves when a run in progress has finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
