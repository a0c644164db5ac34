// Native TCP relay (src/native/addon/tcp_relay.c, native-notes/splice-relay.md): a thread of our
// addon accepts on the listening sockets it is handed and moves the bytes of established flows
// with splice(2) through pipes, so Node creates no stream object and no Buffer per flow or chunk.
//
// Owns: the addon's relay calls, the shared byte counters, routing of event batches to their flow.
// Must not: decide anything. The listener (src/dataplane/tcp.ts) answers every accept with
// connect or reset, and keeps conntrack, counters, flow events and the flow log.
// Invariants: ids are slot | generation << 17, so a call with the id of a flow that already ended
// does nothing (returns false); events of one flow arrive in order; a flow's handler is dropped
// after its last event (failed, closed) or when JS resets or closes it.

import { addonHandle } from './sock-filter.js';
import { check, nativeUnavailable, type Failure } from './failure.js';

interface RelayAddon {
  relayInit(onEvents: (count: number, addrs: string[]) => void, counters: Float64Array, events: Float64Array, threads?: number): number | Failure;
  relayListen(fd: number, group?: number): number | Failure;
  relayBudget(group: number, n: number): number;
  relayUnlisten(lid: number): number | Failure;
  relayConnect(id: number, host: string, port: number, localHost: string): number | Failure;
  relayAutoConnect(lid: number, on: boolean, host: string, port: number, localHost: string): number | Failure;
  relayOp(id: number, op: number): number | Failure;
  relayStats(): number[];
  relayDrain(onEvents: (count: number, addrs: string[]) => void): boolean;
  relayStop(): number;
  relayFaults(lid: number, faults: Float64Array): number | Failure;
  relayFlowFaults(id: number): number | Failure;
  relayFaultStats(): number[];
  relayBusyPoll?(us: number): number;
}

const EV_ACCEPT = 1, EV_CONNECTED = 2, EV_FAILED = 3, EV_FIN = 4, EV_CLOSED = 5;
const REC = 6;
const OP_RESET = 0, OP_CLOSE = 1, OP_BLACKHOLE = 2;
const SLOT_BITS = 17;
const SLOT_MASK = (1 << SLOT_BITS) - 1;
const MAX_FLOWS = 1 << SLOT_BITS;

/** One relayed flow's events, after its listener answered the accept. */
export interface RelayFlow {
  /** Backend connected; bytes flow both ways from now on. */
  onConnected(): void;
  /** Backend connect failed with errno (ECONNREFUSED…); the client was reset. Last event. */
  onFailed(errno: number): void;
  /** First FIN of the flow; side 0 = the client's, 1 = the backend's. */
  onFin(side: number): void;
  /** Both sockets closed (reset: an RST was propagated). Last event; final byte totals. */
  onClosed(reset: boolean, errno: number, bytesIn: number, bytesOut: number): void;
}

/** A listening socket handed to the relay. */
export interface RelayListener {
  /** A connection was accepted from addr:port. Answer with relayConnect (and return the flow's
   * handler) or relayReset (and return null). connecting: relayAutoConnect was on and the
   * backend connect is already in flight (do not call relayConnect; reset still works). */
  onAccept(id: number, addr: string, port: number, connecting: boolean): RelayFlow | null;
}

let addon: RelayAddon | null = null;
let counters: Float64Array | null = null;
/** Event records [type, id, a, b, x, y] the addon fills before each onEvents call. */
const events = new Float64Array(REC * 4096);
const listeners: (RelayListener | null)[] = [];
const flows: (RelayFlow | null)[] = [];
const flowIds = new Float64Array(MAX_FLOWS);
let errorsWarned = false;
/** SGEMU_RELAY_THREADS=N: the count for relays started without setRelayThreads (tests run their
 * suites with several threads this way). */
const envThreads = Number(process.env['SGEMU_RELAY_THREADS']);
let threadsWanted = Number.isInteger(envThreads) && envThreads >= 1 ? Math.min(envThreads, 16) : 1;

function relayAddon(): RelayAddon | null {
  const a = addonHandle();
  return a && typeof a['relayInit'] === 'function' ? (a as unknown as RelayAddon) : null;
}

/**
 * Whether listeners should use the native relay: the addon is loaded and has it, and the
 * environment does not ask for the Node streams path (SGEMU_RELAY=node, for comparison).
 */
export function tcpRelayStatus(): { available: boolean; reason: string | null } {
  if (process.env['SGEMU_RELAY'] === 'node') return { available: false, reason: 'SGEMU_RELAY=node' };
  if (!relayAddon()) return { available: false, reason: 'native addon not loaded or built without the TCP relay' };
  return { available: true, reason: null };
}


/** The most relay threads `--threads` takes (the addon's limit too). */
export const RELAY_THREADS_MAX = 16;

/**
 * How many relay threads by default: one per core up to 4, but one on machines with ≤ 2 cores,
 * where the clients, the backends and the Node thread need the other core: measured on 2 cores,
 * a second relay thread made no connection cheaper (bench-results/2026-12-02.md, "Several relay
 * threads").
 */
export function defaultRelayThreads(cores: number): number {
  return cores <= 2 ? 1 : Math.min(cores, 4);
}

/**
 * How many relay threads the relay starts with (1..RELAY_THREADS_MAX); takes effect when the relay
 * starts (the first listener), not for a relay already running. Flows are spread over the threads
 * by the one that accepts them (the listening sockets are shared: each thread waits on them with
 * EPOLLEXCLUSIVE); every call of this module works the same with any number.
 */
export function setRelayThreads(n: number): void {
  threadsWanted = Math.max(1, Math.min(RELAY_THREADS_MAX, Math.floor(n)));
}

/** The most `--busy-poll` takes, µs (the addon's limit too). */
export const RELAY_BUSY_POLL_MAX_US = 1000;
let busyPollWanted = 0;

/**
 * How long each relay thread keeps polling after a turn before it sleeps, µs (0, the default:
 * never). Fewer wake-ups on request/response traffic (lower added latency) for more CPU per
 * connection: see native-notes/splice-relay.md, "Busy polling". Applies now to a running relay,
 * else when it starts.
 */
export function setRelayBusyPoll(us: number): void {
  busyPollWanted = Math.max(0, Math.min(RELAY_BUSY_POLL_MAX_US, Math.floor(us)));
  if (addon?.relayBusyPoll) addon.relayBusyPoll(busyPollWanted);
}

function need(): RelayAddon {
  if (addon) return addon;
  const a = relayAddon();
  if (!a) throw nativeUnavailable('sgemu native TCP relay not available: ' + (tcpRelayStatus().reason ?? '') + '; use the Node relay');
  const c = counters ?? new Float64Array(2 * MAX_FLOWS);
  check(a.relayInit(onEvents, c, events, threadsWanted), 'start the TCP relay thread');
  if (busyPollWanted > 0 && a.relayBusyPoll) a.relayBusyPoll(busyPollWanted);
  counters = c;
  addon = a;
  return a;
}

/** Event batches from the relay thread, in order. Never throws into the addon. */
function onEvents(count: number, addrs: string[]): void {
  const ev = events;
  let s = 0;
  for (let i = 0; i < count * REC; i += REC) {
    const type = ev[i]!, id = ev[i + 1]!, slot = id & SLOT_MASK;
    try {
      if (type === EV_ACCEPT) {
        const addr = addrs[s++]!;
        const l = listeners[ev[i + 2]!];
        const f = l ? l.onAccept(id, addr, ev[i + 3]!, ev[i + 5] === 1) : null;
        if (!l) addon?.relayOp(id, OP_RESET);
        if (f) { flows[slot] = f; flowIds[slot] = id; }
        continue;
      }
      if (flowIds[slot] !== id) continue;        // a flow JS already finished
      const f = flows[slot]!;
      if (type === EV_CONNECTED) f.onConnected();
      else if (type === EV_FIN) f.onFin(ev[i + 2]!);
      else if (type === EV_FAILED) { forget(id); f.onFailed(ev[i + 2]!); }
      else if (type === EV_CLOSED) { forget(id); f.onClosed(ev[i + 2] === 1, ev[i + 3]!, ev[i + 4]!, ev[i + 5]!); }
    } catch (e) {
      if (!errorsWarned) {
        errorsWarned = true;
        process.emitWarning(`sgemu TCP relay: event handler failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
      }
    }
  }
  // The batch is booked: each group's auto-connect budget is its table's room now.
  for (const [group, room] of rooms) addon?.relayBudget(group, Math.max(0, Math.floor(room())));
}

/** Per budget group (a conntrack table): the room left in it. */
const rooms = new Map<number, () => number>();
export const RELAY_BUDGET_GROUPS = 64;

/**
 * The relay thread auto-connects the accepts of `group`'s listeners only while `room()` (the
 * room left in their conntrack table, read after each event batch) lasts; past it, accepts come
 * to JS unconnected (and are parked when the table is full: the client times out). null: no
 * limit again (the table is gone).
 */
export function relayRoom(group: number, room: (() => number) | null): void {
  if (room) rooms.set(group, room); else rooms.delete(group);
  if (addon && typeof addon.relayBudget === 'function') addon.relayBudget(group, room ? Math.max(0, Math.floor(room())) : -1);
}

function forget(id: number): void {
  const slot = id & SLOT_MASK;
  if (flowIds[slot] === id) { flowIds[slot] = 0; flows[slot] = null; }
}

/** Hands a listening fd (from createTcpListener) to the relay thread → listener id. The relay
 * owns the fd from now on and closes it in relayUnlisten. Throws NativeError. */
export function relayListen(fd: number, l: RelayListener, group = 0): number {
  const a = need();
  const lid = check(a.relayListen(fd, group), `relay accepts on fd ${fd}`);
  const room = rooms.get(group);
  if (room) a.relayBudget(group, Math.max(0, Math.floor(room())));   // rooms registered before the relay started
  listeners[lid] = l;
  return lid;
}

/** Stops accepting and closes the listening fd. Accepts still queued are reset. */
export function relayUnlisten(lid: number): void {
  listeners[lid] = null;
  if (addon) check(addon.relayUnlisten(lid), `relay stops accepting on listener ${lid}`);
}

/** Connects flow `id` to host:port (numeric), from localHost when not null; the outcome comes
 * as onConnected or onFailed. false when the flow is gone. */
export function relayConnect(id: number, host: string, port: number, localHost: string | null): boolean {
  const r = addon!.relayConnect(id, host, port, localHost ?? '');
  if (typeof r === 'number') return true;
  if (r.errno === 2) return false;   // ENOENT: already ended
  return check(r, `relay connect to ${host}:${port}`) === 0;
}

/**
 * While on, the relay thread connects every flow accepted on `lid` to host:port at once (one
 * thread hand-off less per connection). Only for a listener whose kernel filter is exact and in
 * RULES mode: every SYN it lets through is one the policy admits, so JS would connect anyway.
 */
export function relayAutoConnect(lid: number, on: boolean, host: string, port: number, localHost: string | null): void {
  check(need().relayAutoConnect(lid, on, host, port, localHost ?? ''), `relay auto-connect on listener ${lid} to ${host}:${port}`);
}

function op(id: number, o: number): boolean {
  forget(id);
  return typeof addon?.relayOp(id, o) === 'number';
}

/** RST to both peers (SO_LINGER 0) and forget the flow; no further event. */
export function relayReset(id: number): boolean { return op(id, OP_RESET); }
/** Close both sockets (FIN) and forget the flow; no further event. */
export function relayClose(id: number): boolean { return op(id, OP_CLOSE); }
/** Stop relaying both ways, keep both sockets open and unread; onClosed when a peer goes.
 * false when the flow was not relaying yet (it was reset; no further event) or is gone. */
export function relayBlackhole(id: number): boolean {
  const r = addon?.relayOp(id, OP_BLACKHOLE);
  if (r === 0) return true;
  forget(id);                 // reset instead (not relaying yet) or already gone: no more events
  return false;
}

/** Bytes client → backend so far (read from the client). Valid while the flow lives. */
export function relayBytesIn(id: number): number { return counters![(id & SLOT_MASK) * 2]!; }
/** Bytes backend → client so far (written to the client). */
export function relayBytesOut(id: number): number { return counters![(id & SLOT_MASK) * 2 + 1]!; }

/**
 * Hands the relay's queued events (accepts on auto-connect listeners, connected, FIN, closed wait
 * up to a few ms to travel in batches) to their flows now. Before a policy swap, so that every
 * flow accepted under the old filter is in conntrack when the new rules are applied to the live
 * flows; before listing conntrack, so that the view is exact. No-op inside an event handler.
 */
export function relayDrain(): void {
  if (addon && typeof addon.relayDrain === 'function') addon.relayDrain(onEvents);
}

/** For tests and `doctor`: what the relay holds now (null when never started). */
export function relayStats(): { flows: number; pipesInUse: number; pipesPooled: number; overflowResets: number; listeners: number; threads: number } | null {
  if (!addon) return null;
  const [flows, pipesInUse, pipesPooled, overflowResets, listeners, threads] = addon.relayStats() as [number, number, number, number, number, number?];
  return { flows, pipesInUse, pipesPooled, overflowResets, listeners, threads: threads ?? 1 };
}

/**
 * The listener's faults from now on (encodeFaults: FAULT_REC numbers each, in chain order; empty:
 * none): new flows roll their toxicity at accept, live flows of the listener get the new set at
 * once. Throws NativeError.
 */
export function relayFaults(lid: number, faults: Float64Array): void {
  check(need().relayFaults(lid, faults), `relay faults on listener ${lid}`);
}

/** Which of its listener's faults a live flow got (bit i: fault i); 0 when none or gone. */
export function relayFlowFaults(id: number): number {
  const r = addon?.relayFlowFaults(id);
  return typeof r === 'number' ? r : 0;
}

/** Flows holding fault state now, and per fault code (src/native/fault-codes.ts) the flows given it. */
export function relayFaultStats(): { faultedFlows: number; flowsByCode: number[] } | null {
  if (!addon || typeof addon.relayFaultStats !== 'function') return null;
  const v = addon.relayFaultStats();
  return { faultedFlows: v[0] ?? 0, flowsByCode: v.slice(1) };
}

/** Joins the relay thread and closes every socket and pipe it holds (tests; exit does it too). */
export function relayStop(): void {
  if (!addon) return;
  addon.relayStop();
  addon = null;
  listeners.length = 0;
  flows.length = 0;
  flowIds.fill(0);
}
