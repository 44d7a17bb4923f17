// A one-line progress bar on stderr (only when stderr is a terminal, so logs and pipes stay
// clean), with elapsed time and ETA.

export class Progress {
  private readonly start = performance.now();
  private readonly tty = Boolean(process.stderr.isTTY);
  private last = 0;

  constructor(private readonly label: string) {}

  update(done: number, total: number, detail = ''): void {
    if (!this.tty) return;
    const now = performance.now();
    if (done < total && now - this.last < 100) return;
    this.last = now;
    const width = 24;
    const filled = Math.round((width * done) / Math.max(total, 1));
    const elapsed = (now - this.start) / 1000;
    const eta = done > 0 ? (elapsed * (total - done)) / done : NaN;
    const etaText = done > 0 && done < total ? ` ETA ${eta.toFixed(1)}s` : '';
    process.stderr.write(
      `\r${this.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ` +
        `${elapsed.toFixed(1)}s${etaText}${detail ? ' ' + detail : ''}\x1b[K`,
    );
  }

  done(): void {
    if (this.tty) process.stderr.write('\r\x1b[K');
  }
}
