// Rate control for the load generator: a token bucket refilled from elapsed time, read on a coarse
// timer (no timer per flow). `ratePerS` = Infinity means "as fast as the concurrency cap allows".
// Time is injected (milliseconds, monotonic) so tests run it on a fake clock.

export class TokenBucket {
  private tokens: number;
  private lastMs: number;

  /**
   * @param ratePerS tokens added per second (> 0, or Infinity)
   * @param burst    most tokens held at once (≥ 1): bounds the catch-up after a stall
   * @param nowMs    the clock's current reading
   */
  constructor(readonly ratePerS: number, readonly burst: number, nowMs: number) {
    this.tokens = Math.min(burst, 1);
    this.lastMs = nowMs;
  }

  private refill(nowMs: number): void {
    if (nowMs > this.lastMs) {
      this.tokens = Math.min(this.burst, this.tokens + ((nowMs - this.lastMs) * this.ratePerS) / 1000);
      this.lastMs = nowMs;
    }
  }

  /** Takes one token if there is one. */
  take(nowMs: number): boolean {
    if (this.ratePerS === Infinity) return true;
    this.refill(nowMs);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Whole tokens available now (Infinity when unlimited). */
  available(nowMs: number): number {
    if (this.ratePerS === Infinity) return Infinity;
    this.refill(nowMs);
    return Math.floor(this.tokens);
  }
}

/** A burst that lets a coarse timer of `tickMs` keep up with `ratePerS` without exceeding it by much. */
export function burstFor(ratePerS: number, tickMs: number): number {
  return Math.max(1, Math.ceil((ratePerS * tickMs * 2) / 1000));
}
