// The native UDP relay (src/native/addon/udp_relay.c) from TypeScript: one thread per UDP
// listener that moves the datagrams of established flows with recvmmsg/sendmmsg, so no JavaScript
// runs per datagram (native-notes/udp-batching.md).
//
// Owns: the addon calls and the translation of { errno, syscall } failures into NativeError.
// Must not: decide anything. The listener (src/dataplane/udp.ts) decides every new client with the
// policy, opens the conntrack entry and then adds the flow here; it also removes it (expiry, cut,
// shutdown) and reads its counters when conntrack samples it.
// Invariants: a relay reads the listening fd only between open() and close(); close() joins the
// thread and closes every backend socket but never the listening fd (the caller owns it). After
// close() every call is a no-op or a failure; late events are never delivered to a closed relay.

import { NativeError } from '../model/errors.js';
import type { Fault } from '../model/types.js';
import { addonHandle } from './sock-filter.js';
import { nativeError, type Failure } from './failure.js';
import { encodeFaults } from './fault-codes.js';

type Handle = object;
interface UdpRelayAddon {
  udpRelayOpen(fd: number, family: number, cb: (kind: number, a: Buffer | number, b: number, gen: number) => void): Handle | Failure;
  udpRelayAdd(h: Handle, slot: number, clientAddr: string, clientPort: number, backendAddr: string, backendPort: number, localAddr: string | null): number | Failure;
  udpRelaySend(h: Handle, slot: number, msg: Buffer): number | Failure;
  udpRelayRemove(h: Handle, slot: number): number | Failure;
  udpRelayStats(h: Handle, slot: number, out: Float64Array): number | Failure;
  udpRelayInfo(h: Handle, out: Float64Array): number | Failure;
  udpRelayFaults?(h: Handle, faults: Float64Array): number | Failure;
  udpRelayClose(h: Handle): number | Failure;
}

/** Per-flow counters as udpRelayStats fills them (indices into a Float64Array(STAT_COUNT)). */
export const STAT_PACKETS_IN = 0;
export const STAT_BYTES_IN = 1;
export const STAT_PACKETS_OUT = 2;
export const STAT_BYTES_OUT = 3;
/** backend→client then client→backend turns (FlowEntry.exchanges) */
export const STAT_EXCHANGES = 4;
/** client→backend then backend→client turns: 1 = REPLIED, ≥ 2 = STREAM (reference §3.3) */
export const STAT_REPLIES = 5;
export const STAT_LAST_DIR = 6;
export const STAT_DROPPED = 7;
export const STAT_COUNT = 8;

export interface UdpRelayInfo {
  forwarded: number; replies: number; upcalls: number; upcallDrops: number; replyDrops: number; forwardDrops: number;
  /** Faults: datagrams dropped (loss), sent twice (duplicate), held back (reorder), delayed
   * (latency), and dropped because the relay's held/delayed memory (4 MiB) was full. */
  faultLost: number; faultDuplicated: number; faultReordered: number; faultDelayed: number; faultOverCap: number;
}

const INFO_COUNT = 11;

export interface UdpRelayEvents {
  /**
   * Datagrams from clients with no flow in the relay, `count` records in `batch`; walk them with
   * forEachDatagram. Called on the JS thread.
   */
  datagrams(batch: Buffer, count: number): void;
  /**
   * The flow's backend socket failed (ECONNREFUSED: ICMP port unreachable); it is no longer
   * polled. `gen` is what add() returned for it: ignore the event if the slot now holds another flow.
   */
  flowError(slot: number, errno: number, gen: number): void;
}

function addon(): UdpRelayAddon | null {
  const a = addonHandle();
  return a && typeof a.udpRelayOpen === 'function' ? (a as unknown as UdpRelayAddon) : null;
}

/** True when the addon is loaded and has the UDP relay (and SGEMU_RELAY is not "node"). */
export function udpRelayAvailable(): boolean {
  return process.env.SGEMU_RELAY !== 'node' && addon() !== null;
}

// Record layout of a datagrams batch (udp_relay.c put_record), little-endian:
//   +0 u16 port | +2 u8 family | +3 0 | +4 u32 length | +8 address text, NUL-padded, 48 B | +56 payload
const REC_HDR = 56;
const REC_ADDR = 8;

/**
 * Calls fn(address, port, payload) for each record; payload is a view into `batch`. A
 * malformed batch (never produced by the addon) ends the walk rather than throwing.
 */
export function forEachDatagram(batch: Buffer, count: number, fn: (address: string, port: number, msg: Buffer) => void): void {
  let off = 0;
  for (let i = 0; i < count && off + REC_HDR <= batch.length; i++) {
    const port = batch.readUInt16LE(off);
    const len = batch.readUInt32LE(off + 4);
    let end = off + REC_ADDR;
    while (end < off + REC_HDR && batch[end] !== 0) end++;
    const address = batch.toString('latin1', off + REC_ADDR, end);
    if (off + REC_HDR + len > batch.length) return;
    fn(address, port, batch.subarray(off + REC_HDR, off + REC_HDR + len));
    off += REC_HDR + len;
  }
}

export class UdpRelay {
  private closed = false;
  private readonly infoScratch = new Float64Array(INFO_COUNT);

  private constructor(private readonly a: UdpRelayAddon, private readonly h: Handle, readonly fd: number) {}

  /**
   * Starts a relay thread on the bound UDP socket `fd` (from createUdpSocket; its filter stays in
   * force). Throws NativeError when the addon has no relay or a syscall fails.
   */
  static open(fd: number, family: 4 | 6, events: UdpRelayEvents): UdpRelay {
    const a = addon();
    const what = `UDP relay on fd ${fd}`;
    if (!a) throw new NativeError('dlopen', 0, 'NativeUnavailable', `${what}: the native addon with udpRelayOpen is not loaded; the listener uses node:dgram`);
    let relay: UdpRelay | null = null;
    const h = a.udpRelayOpen(fd, family, (kind, x, y, gen) => {
      if (relay === null || relay.closed) return;
      if (kind === 1) events.datagrams(x as Buffer, y);
      else events.flowError(x as number, y, gen);
    });
    if ('errno' in h) throw nativeError(h as Failure, what);
    relay = new UdpRelay(a, h, fd);
    return relay;
  }

  /**
   * A connected backend socket for the client (bound to localAddr:0 when given), polled from now
   * on. `slot` is the caller's (small, reused) flow number. Returns the flow's generation (≥ 1),
   * which flowError events carry. Throws NativeError (EMFILE, EEXIST…).
   */
  add(slot: number, clientAddr: string, clientPort: number, backendAddr: string, backendPort: number, localAddr: string | null): number {
    const r = this.a.udpRelayAdd(this.h, slot, clientAddr, clientPort, backendAddr, backendPort, localAddr);
    if (typeof r !== 'number') {
      throw nativeError(r, `UDP relay flow ${clientAddr.includes(':') ? `[${clientAddr}]` : clientAddr}:${clientPort} -> ${backendAddr}:${backendPort} (slot ${slot})`);
    }
    return r;
  }

  /** Sends one datagram of the flow to its backend (counted in its stats). Returns 0 or the errno. */
  send(slot: number, msg: Buffer): number {
    const r = this.a.udpRelaySend(this.h, slot, msg);
    return typeof r === 'number' ? 0 : r.errno;
  }

  /** Stops polling the flow and closes its backend socket; the slot may be reused at once. */
  remove(slot: number): void {
    if (!this.closed) this.a.udpRelayRemove(this.h, slot);
  }

  /** Copies the flow's counters (STAT_*) into `out` (Float64Array(STAT_COUNT)); false if no such flow. */
  stats(slot: number, out: Float64Array): boolean {
    return !this.closed && typeof this.a.udpRelayStats(this.h, slot, out) === 'number';
  }

  info(): UdpRelayInfo {
    const s = this.infoScratch;
    if (!this.closed) this.a.udpRelayInfo(this.h, s);
    return {
      forwarded: s[0]!, replies: s[1]!, upcalls: s[2]!, upcallDrops: s[3]!, replyDrops: s[4]!, forwardDrops: s[5]!,
      faultLost: s[6]!, faultDuplicated: s[7]!, faultReordered: s[8]!, faultDelayed: s[9]!, faultOverCap: s[10]!,
    };
  }

  /**
   * Replaces the relay's faults (UDP types: latency, loss, duplicate, reorder; validated by
   * config/faults.ts's parseFault) for every flow, live ones included: each fault's toxicity is
   * rolled again per flow. [] removes them. Applied in the relay thread, never per datagram in JS.
   * Throws NativeError when the addon predates faults or refuses the set (EINVAL).
   */
  setFaults(faults: readonly Fault[]): void {
    if (this.closed) return;
    const what = `UDP relay on fd ${this.fd}: faults`;
    if (typeof this.a.udpRelayFaults !== 'function') throw new NativeError('udpRelayFaults', 0, 'NativeUnavailable', `${what}: the loaded addon has no udpRelayFaults; rebuild it (node scripts/build-addon.mjs)`);
    const r = this.a.udpRelayFaults(this.h, encodeFaults(faults, 17));
    if (typeof r !== 'number') throw nativeError(r, what);
  }

  /** Joins the thread and closes every backend socket. Idempotent. The listening fd stays open. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.a.udpRelayClose(this.h);
  }
}
