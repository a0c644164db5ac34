// A one-line live progress on a TTY (stderr): redrawn in place with \r and erase-line; nothing at
// all when the stream is not a TTY, so logs and pipes stay clean.

import type { Progress } from './run.js';

export class ProgressLine {
  private drawn = false;
  constructor(private readonly out: NodeJS.WriteStream = process.stderr) {}

  get enabled(): boolean { return this.out.isTTY === true; }

  update(p: Progress): void {
    if (!this.enabled) return;
    const width = Math.max(20, (this.out.columns || 80) - 1);
    let bar = '';
    if (p.limit !== null && p.limit > 0) {
      const cells = 20, full = Math.min(cells, Math.floor((p.done / p.limit) * cells));
      bar = `[${'#'.repeat(full)}${'.'.repeat(cells - full)}] `;
    }
    const text = `${bar}${p.elapsedS.toFixed(1)}s  done ${p.done}${p.limit !== null ? `/${p.limit}` : ''}  ` +
      `in flight ${p.inFlight}  ${Math.round(p.ratePerS)}/s  mismatches ${p.mismatches}`;
    this.out.write(`\r\x1b[K${text.slice(0, width)}`);
    this.drawn = true;
  }

  clear(): void {
    if (this.drawn) this.out.write('\r\x1b[K');
    this.drawn = false;
  }
}
