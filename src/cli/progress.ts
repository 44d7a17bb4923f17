// Progress of long work on stderr. On a terminal: a one-line bar redrawn in place, with elapsed
// time and ETA. Otherwise (piped, under nohup, in a log file): a plain line every few seconds
// (VITFOLD_PROGRESS_SECONDS, default 10), so a log shows life without filling up.

const DEFAULT_INTERVAL_S = 10;

function intervalMs(): number {
  const s = Number(process.env.VITFOLD_PROGRESS_SECONDS);
  return (Number.isFinite(s) && s > 0 ? s : DEFAULT_INTERVAL_S) * 1000;
}

export class Progress {
  private readonly start = performance.now();
  private readonly tty = Boolean(process.stderr.isTTY);
  private readonly every = this.tty ? 100 : intervalMs();
  private last = performance.now();

  constructor(private readonly label: string) {}

  update(done: number, total: number, detail = ''): void {
    const now = performance.now();
    if (now - this.last < this.every || (!this.tty && done >= total)) return;
    this.last = now;
    const elapsed = (now - this.start) / 1000;
    const eta = done > 0 && done < total ? ` ETA ${((elapsed * (total - done)) / done).toFixed(1)}s` : '';
    const tail = `${done}/${total} ${elapsed.toFixed(1)}s${eta}${detail ? ' ' + detail : ''}`;
    if (!this.tty) {
      process.stderr.write(`${this.label} ${tail}\n`);
      return;
    }
    const width = 24;
    const filled = Math.round((width * done) / Math.max(total, 1));
    process.stderr.write(`\r${this.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${tail}\x1b[K`);
  }

  done(): void {
    if (this.tty) process.stderr.write('\r\x1b[K');
  }
}
