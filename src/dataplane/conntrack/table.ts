// The connection-tracking table: every flow the daemon let through, its AWS state and idle timeout.
//
// Owns: slots, the bound (`--conntrack-max`), idle expiry and the overflow counter.
// Must not: know about sockets. A flow's owner (the TCP or UDP relay) reports activity through
// `sample()` and is told to go through `expire()`.
// Invariants: one FlowEntry object per slot for the table's life (one shape, reused), `count` =
// live slots, a free slot has `live === false`. Expiry is swept in bounded slices per tick so a
// large table never blocks the loop (STYLE: "a sweeper scans a bounded slice per tick").
//
//   slots: [ e0 | e1 | e2 | ... | eN ]   free: stack of slot numbers   cursor → next slice to sweep
//
// Idle time is measured, not pushed: TCP relays report byte totals (socket.bytesRead/bytesWritten)
// when sampled, so the per-chunk hot path does no conntrack work at all. A change in the totals
// since the last sample means the flow was active in between.

import type { Clock } from '../clock.js';

export const ST_SYN_SENT = 0;
export const ST_ESTABLISHED = 1;
export const ST_FIN_WAIT = 2;
export const ST_CLOSE = 3;
export const ST_UDP_UNREPLIED = 4;   // one direction only so far        (udpTimeout)
export const ST_UDP_REPLIED = 5;     // a single request-response        (udpTimeout)
export const ST_UDP_STREAM = 6;      // more than one exchange           (udpStreamTimeout)
export const STATE_NAMES = ['SYN_SENT', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE', 'UNREPLIED', 'REPLIED', 'STREAM'] as const;

export const EXPIRE_IDLE = 0;
export const EXPIRE_CUT = 1;        // untracked flow whose rule went away
export const EXPIRE_SHUTDOWN = 2;

export interface FlowOwner {
  /** Refresh entry.bytesIn/bytesOut/packets from the relay's own counters. Cheap. */
  sample(e: FlowEntry): void;
  /** The table is dropping this flow (idle expiry, untracked cut, shutdown). */
  expire(e: FlowEntry, reason: number): void;
}

export class FlowEntry {
  slot: number;
  live = false;
  proto = 0;
  family = 4;
  inst = -1;
  dir = 0;
  listener = -1;            // index of the listener that owns it
  tracked = true;
  state = ST_SYN_SENT;
  src = '';                 // built once per flow
  srcPort = 0;
  dst = '';
  dstPort = 0;
  rulePort = 0;             // the port the rules see
  bytesIn = 0;              // client → instance
  bytesOut = 0;             // instance → client
  packetsIn = 0;
  packetsOut = 0;
  exchanges = 0;            // UDP request-response turns
  reportedBytesIn = 0;      // what the flow log has already counted (per interval records)
  reportedBytesOut = 0;
  reportedPacketsIn = 0;
  reportedPacketsOut = 0;
  createdMs = 0;
  lastSeenMs = 0;
  lastActivity = 0;         // bytesIn + bytesOut at the last sample
  timeoutMs = 0;
  owner: FlowOwner | null = null;
  constructor(slot: number) { this.slot = slot; }
}

export interface OpenFlow {
  proto: number; family: 4 | 6; inst: number; dir: number; listener: number; tracked: boolean; state: number;
  src: string; srcPort: number; dst: string; dstPort: number; rulePort: number; timeoutMs: number;
  owner: FlowOwner;
}

export class ConnTable {
  readonly max: number;
  count = 0;
  overflows = 0;            // flows refused because the table was full (metric)
  expiredIdle = 0;
  private readonly slots: FlowEntry[] = [];
  private readonly free: number[] = [];
  private cursor = 0;
  /** Called when the table becomes full and when it has room again (listeners swap filters). */
  onFullChange: ((full: boolean) => void) | null = null;

  constructor(max: number, private readonly clock: Clock) {
    if (!(max >= 1)) throw new RangeError(`conntrack max must be ≥ 1, got ${max}`);
    this.max = max;
  }

  get full(): boolean { return this.count >= this.max; }

  /** Returns the entry, or null when the table is full (the caller drops the flow, as the kernel does). */
  open(f: OpenFlow): FlowEntry | null {
    if (this.count >= this.max) { this.overflows++; return null; }
    let e: FlowEntry;
    const s = this.free.pop();
    if (s !== undefined) e = this.slots[s]!;
    else { e = new FlowEntry(this.slots.length); this.slots.push(e); }
    const now = this.clock.nowMs();
    e.live = true; e.proto = f.proto; e.family = f.family; e.inst = f.inst; e.dir = f.dir;
    e.listener = f.listener; e.tracked = f.tracked; e.state = f.state;
    e.src = f.src; e.srcPort = f.srcPort; e.dst = f.dst; e.dstPort = f.dstPort; e.rulePort = f.rulePort;
    e.bytesIn = 0; e.bytesOut = 0; e.packetsIn = 0; e.packetsOut = 0; e.exchanges = 0;
    e.reportedBytesIn = 0; e.reportedBytesOut = 0; e.reportedPacketsIn = 0; e.reportedPacketsOut = 0;
    e.createdMs = now; e.lastSeenMs = now; e.lastActivity = 0; e.timeoutMs = f.timeoutMs;
    e.owner = f.owner;
    this.count++;
    if (this.count === this.max) this.onFullChange?.(true);
    return e;
  }

  /** The flow ended by itself (FIN/RST, socket closed). Idempotent. */
  close(e: FlowEntry): void {
    if (!e.live) return;
    e.live = false;
    e.owner = null;
    this.count--;
    this.free.push(e.slot);
    if (this.count === this.max - 1) this.onFullChange?.(false);
  }

  /** Records activity now (UDP relays call this per datagram; TCP relies on sampling). */
  touch(e: FlowEntry): void { e.lastSeenMs = this.clock.nowMs(); }

  /** Samples one entry's counters and updates its idle clock. */
  refresh(e: FlowEntry, now = this.clock.nowMs()): void {
    const o = e.owner;
    if (!o) return;
    o.sample(e);
    const activity = e.bytesIn + e.bytesOut + e.packetsIn + e.packetsOut;
    if (activity !== e.lastActivity) { e.lastActivity = activity; e.lastSeenMs = now; }
  }

  /**
   * Scans up to `budget` slots from the cursor, expiring idle flows. Returns how many expired.
   * Called every tick; a full pass over N slots takes N / budget ticks.
   */
  sweep(budget: number): number {
    const n = this.slots.length;
    if (n === 0) return 0;
    const now = this.clock.nowMs();
    let expired = 0;
    for (let i = 0; i < budget && i < n; i++) {
      if (this.cursor >= n) this.cursor = 0;
      const e = this.slots[this.cursor++]!;
      if (!e.live) continue;
      this.refresh(e, now);
      if (now - e.lastSeenMs >= e.timeoutMs) {
        const o = e.owner;
        this.close(e);
        this.expiredIdle++;
        expired++;
        o?.expire(e, EXPIRE_IDLE);
      }
    }
    return expired;
  }

  /** Drops one flow on behalf of the daemon (untracked cut, shutdown) and tells its owner. */
  drop(e: FlowEntry, reason: number): void {
    if (!e.live) return;
    const o = e.owner;
    this.close(e);
    o?.expire(e, reason);
  }

  /** Live entries (slow path: listings, policy swaps). */
  *live(): IterableIterator<FlowEntry> {
    for (const e of this.slots) if (e.live) yield e;
  }

  /** Bytes of JS heap one slot costs is measured in scripts/bench/conntrack.ts. */
  get capacity(): number { return this.slots.length; }
}
