// A one-line progress bar on stderr, redrawn in place; only on a terminal (piped output and logs
// get nothing, not a stream of carriage returns).
export interface Progress {
  update(fraction: number, label: string): void;
  done(): void;
}

export function progressBar(enabled: boolean, write: (text: string) => void = (t) => void process.stderr.write(t), width = 30): Progress {
  if (!enabled) return { update: () => undefined, done: () => undefined };
  let last = '';
  let shown = false;
  return {
    update(fraction, label) {
      const f = Math.min(1, Math.max(0, fraction));
      const filled = Math.round(f * width);
      const line = `[${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${(f * 100).toFixed(0).padStart(3)}% ${label}`;
      if (line === last) return;
      last = line;
      shown = true;
      write(`\r\x1b[2K${line}`);
    },
    done() {
      if (shown) write('\r\x1b[2K');
      shown = false;
    },
  };
}
