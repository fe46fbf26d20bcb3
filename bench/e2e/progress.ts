// A one-line progress bar on stderr. On a terminal it redraws in place; otherwise (CI, a pipe)
// it prints a line every NON_TTY_INTERVAL_MS so logs stay short.

const BAR_WIDTH = 24;
const NON_TTY_INTERVAL_MS = 10_000;

export class ProgressBar {
  readonly #label: string;
  readonly #tty = process.stderr.isTTY === true;
  #lastPrintMs = 0;
  #drawn = false;

  constructor(label: string) {
    this.#label = label;
  }

  /** Draws the bar at `fraction` (0..1) followed by `detail`. */
  update(fraction: number, detail: string): void {
    const clamped = Math.min(1, Math.max(0, fraction));
    const filled = Math.round(clamped * BAR_WIDTH);
    const line = `${this.#label.padEnd(22)} [${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] ${String(Math.round(clamped * 100)).padStart(3)}% ${detail}`;
    if (this.#tty) {
      process.stderr.write(`\r\x1b[2K${line}`);
      this.#drawn = true;
      return;
    }
    const nowMs = performance.now();
    if (nowMs - this.#lastPrintMs < NON_TTY_INTERVAL_MS) return;
    this.#lastPrintMs = nowMs;
    process.stderr.write(`${line}\n`);
  }

  /** Replaces the bar with a final line. */
  done(summary: string): void {
    if (this.#tty && this.#drawn) process.stderr.write('\r\x1b[2K');
    process.stderr.write(`${this.#label.padEnd(22)} ${summary}\n`);
  }

  /** Prints a status line (setup steps) without a bar. */
  status(text: string): void {
    if (this.#tty) {
      process.stderr.write(`\r\x1b[2K${this.#label.padEnd(22)} ${text}`);
      this.#drawn = true;
    } else {
      process.stderr.write(`${this.#label.padEnd(22)} ${text}\n`);
    }
  }
}
