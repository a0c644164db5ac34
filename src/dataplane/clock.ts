// A coarse shared clock for the data plane: one counter read everywhere, advanced by one timer,
// never a setTimeout per flow. Tests inject a ManualClock and advance it past AWS's long timeouts
// while the network stays real.

export interface Clock {
  /** Milliseconds, monotonic; only differences are meaningful. */
  nowMs(): number;
}

/** Reads performance.now() once per tick (default 10 ms): `nowMs()` is a field read. */
export class TickClock implements Clock {
  private now = performance.now();
  private timer: NodeJS.Timeout | null = null;
  constructor(private readonly tickMs = 10) {}
  start(): this {
    if (!this.timer) {
      this.timer = setInterval(() => { this.now = performance.now(); }, this.tickMs);
      this.timer.unref();
    }
    return this;
  }
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
  nowMs(): number { return this.now; }
  /** Refresh now (e.g. before a listing) without waiting for the next tick. */
  refresh(): number { this.now = performance.now(); return this.now; }
}

/** For tests: time moves only when told. */
export class ManualClock implements Clock {
  constructor(private now = 0) {}
  nowMs(): number { return this.now; }
  advance(ms: number): void { this.now += ms; }
}
