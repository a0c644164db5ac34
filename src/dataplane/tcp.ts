// TCP data plane: one listener per instance service (ingress) or outbound entry (egress), each a
// real socket carrying a kernel socket filter compiled from the live policy, relaying allowed
// connections to their backend with bytes unchanged, half-close and resets propagated.
//
// Owns: listening sockets, their filter programs, relays (each one a conntrack FlowEntry).
// Must not: read config, throw per connection, log per connection (counters only).
// Invariants:
//   - a denied SYN never completes a handshake while the native filter is loaded and exact: the
//     program is attached before bind+listen (src/native/sock-filter.ts) and replaced atomically;
//   - the userland check after accept is the same decision; it only fires when the filter is
//     missing (no addon) or coarsened to fit BPF_MAXINSNS, and then resets (logged once);
//   - `this.policy` is read once per decision; swaps happen in `applyPolicy`.
//   - two relays, same semantics: the native one (src/native/tcp-relay.ts: a thread of our addon
//     accepts and splices, JS answers each accept and keeps conntrack and accounting) when the
//     addon has it and the backend is a numeric address; otherwise (or SGEMU_RELAY=node) a
//     net.Server and Node streams (TcpRelay).
//   - filter modes (src/dataplane/listener.ts): while the backend is down and raw refusal is
//     available the program drops every SYN and the Refuser answers allowed ones with RST|ACK
//     (linux-techniques.md §3).

import net from 'node:net';
import { constants as osConstants } from 'node:os';
import { INGRESS, EGRESS, PROTO_TCP, type Fault } from '../model/types.js';
import { encodeFaults, FAULT_CODES } from '../native/fault-codes.js';
import type { CompiledPolicy } from '../policy/types.js';
import { VERDICT_ALLOW, VERDICT_NACL_DENY, VERDICT_UNTRACKED } from '../policy/types.js';
import { createTcpListener, nativeStatus } from '../native/sock-filter.js';
import {
  relayAutoConnect, relayBlackhole, relayBytesIn, relayBytesOut, relayClose, relayConnect, relayFaults, relayFaultStats, relayFlowFaults, relayListen, relayReset, relayUnlisten,
  tcpRelayStatus, type RelayFlow, type RelayListener,
} from '../native/tcp-relay.js';
import { FlowEntry, EXPIRE_CUT, EXPIRE_IDLE, EXPIRE_SHUTDOWN, ST_ESTABLISHED, ST_SYN_SENT, ST_FIN_WAIT } from './conntrack/table.js';
import { flowEvents, publishFlow } from '../observe/events.js';
import { ListenerBase, MODE_RULES, type ListenerEnv, type ListenerSpec } from './listener.js';
export { MODE_RULES, MODE_DOWN, MODE_FULL, MODE_CLOSED, MODE_NAMES } from './listener.js';

export type TcpListenerSpec = ListenerSpec;

const ECONNREFUSED = osConstants.errno.ECONNREFUSED;

/*
 * Connections over --conntrack-max that the kernel accepted anyway (issue 17, item 5). The
 * filter turns to drop-all when the flow that fills the table is booked, but with many clients
 * at once the kernel has completed more handshakes by then (the listen backlog, the native
 * relay's batch). A full kernel table drops the SYN and the client times out; resetting these
 * would tell the client something a real table never does. So they are parked: left accepted,
 * unread and unanswered, with no backend connection and no conntrack entry, until the client
 * closes (Node relay) or PARK_MS passes, by when a client whose SYN had been dropped would have
 * given up too (Linux's default tcp_syn_retries = 6: 1+2+4+…+64 = 127 s); then they are reset.
 * At most PARK_MAX per listener (the listen backlog: what the kernel can complete before the
 * filter lands, per fill); beyond that, and for flows the relay was already connecting
 * (auto-connect, only below the near-full mark), the reset stays. The relay thread connects
 * by itself only within its budget (relayRoom: the table's room once JS books what is queued),
 * so when the event loop falls behind a burst the accepts over the limit still reach JS
 * unconnected and are parked here (test/e2e/conntrack-overflow.test.ts).
 */
const PARK_MS = 130_000;
const PARK_MAX = 511;
const PARK_SWEEP_MS = 1000;

/** One parked connection: a native relay flow id (client null) or a Node socket (id -1). */
interface Parked { id: number; client: net.Socket | null; atMs: number }

export interface DataplaneEnv extends ListenerEnv {
  /** Called once per flow when it ends (flow log). */
  onFlowEnd?: (e: FlowEntry) => void;
  ctTimeoutMs: (instName: string) => number;
  /** The relay's auto-connect budget group of this listener's conntrack table (relayRoom). */
  relayGroup?: number;
}

/** Per TCP fault type, the flows the native relay gave it since start (metrics). */
export function tcpFaultFlows(): Record<string, number> {
  const st = relayFaultStats();
  const out: Record<string, number> = {};
  if (!st) return out;
  for (const [type, code] of Object.entries(FAULT_CODES)) if (code <= 7) out[type] = st.flowsByCode[code - 1] ?? 0;
  return out;
}

export class TcpListener extends ListenerBase implements RelayListener {
  private server: net.Server | null = null;
  /** The native relay's id for our listening fd, -1 when Node serves it. */
  private lid = -1;
  private closing = false;
  /** NativeRelay.connect failed once (logged once). */
  warnedConnect = false;
  /** What the relay thread was last told to connect to at accept ('' = off). */
  private autoTarget = '';
  readonly relays = new Set<FlowBase>();
  /** Accepted connections over the conntrack limit, oldest first (see PARK_MS). */
  private readonly parked: Parked[] = [];
  private parkTimer: NodeJS.Timeout | null = null;
  /** The last admit() found the table full. */
  private overflowed = false;

  constructor(id: number, spec: TcpListenerSpec, readonly env: DataplaneEnv) {
    super(id, spec, env);
  }

  get key(): string { return `tcp|${this.spec.address}|${this.spec.listenPort}`; }
  get flowCount(): number { return this.relays.size; }

  /** Binds and listens with the filter for `policy` already attached. */
  async start(policy: CompiledPolicy): Promise<void> {
    this.watchBackend();
    this.bindPolicy(policy);
    const program = this.initialProgram();
    if (this.nativeRelayFits()) {
      this.fd = createTcpListener({ family: this.spec.family, address: this.spec.address, port: this.spec.listenPort, backlog: 511, program });
      try {
        this.lid = relayListen(this.fd, this, this.env.relayGroup ?? 0);
      } catch (e) {
        this.env.log(`listener ${this.describe()}: native relay unavailable (${e instanceof Error ? e.message : String(e)}); relaying with Node streams`);
        this.lid = -1;
      }
      if (this.lid >= 0) {
        this.updateAutoConnect();
        if (this.faults.length > 0) this.installFaults(this.faults);
        return;
      }
      const fd = this.fd;
      this.fd = -1;
      await new Promise<void>((resolve, reject) => {
        const s = net.createServer({ allowHalfOpen: true }, (c) => this.onConnection(c));
        s.maxConnections = Infinity;
        this.server = s;
        s.once('error', reject);
        s.listen({ fd }, () => { s.off('error', reject); resolve(); });
      });
      this.fd = fd;
      this.server!.on('error', (e) => this.env.log(`listener ${this.describe()}: ${e.message}`));
      return;
    }
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false }, (c) => this.onConnection(c));
    server.maxConnections = Infinity;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if (nativeStatus().loaded) {
        this.fd = createTcpListener({ family: this.spec.family, address: this.spec.address, port: this.spec.listenPort, backlog: 511, program });
        server.listen({ fd: this.fd }, () => { server.off('error', reject); resolve(); });
      } else {
        server.listen({ host: this.spec.address, port: this.spec.listenPort, backlog: 511, ipv6Only: this.spec.family === 6 }, () => {
          server.off('error', reject);
          resolve();
        });
      }
    });
    server.on('error', (e) => this.env.log(`listener ${this.describe()}: ${e.message}`));
  }

  /** The native relay needs the addon and numeric addresses (it does no name lookups: a backend
   * name comes resolved, backendAddress). */
  private nativeRelayFits(): boolean {
    const s = this.spec;
    return nativeStatus().loaded && tcpRelayStatus().available && net.isIP(this.backendAddress()) !== 0 &&
      (s.localAddress === null || net.isIP(s.localAddress) !== 0);
  }

  /** Faults live in the native relay (tcp_relay.c + fault_chain.c): per chunk, no JS. */
  protected override installFaults(faults: readonly Fault[]): boolean {
    if (this.lid < 0) return false;
    if (this.closing) return true;
    relayFaults(this.lid, encodeFaults(faults, 6));
    return true;
  }

  /** Whether flows go through the native relay (for doctor and tests). */
  get nativeRelay(): boolean { return this.lid >= 0; }

  /** After the base class swapped the filter: the native relay connects at accept only while
   * the kernel filter alone is the whole decision (exact program, RULES mode, table not near full). */
  override refreshFilter(force = false): void {
    super.refreshFilter(force);
    this.updateAutoConnect();
  }

  tableNearFullChanged(): void { this.updateAutoConnect(); }

  private updateAutoConnect(): void {
    if (this.lid < 0 || this.closing) return;
    const s = this.spec;
    const host = this.backendAddress();
    // (a reload may have changed the backend to a name that does not resolve: the thread does no
    // lookups, JS connects and fails each flow then, see NativeRelay.connect). A backend name's
    // live address may change (the monitor fires, refreshFilter comes here): the target follows.
    // Off near a full table: auto-connected accepts reach JS in batches (up to a few ms later),
    // and the flow that fills the table must be seen at once so that the ones after it are
    // dropped by the filter rather than reset.
    const on = this.nativeFilter && this.filterExact && this.mode === MODE_RULES && !this.env.table.nearFull &&
      !this.env.monitor.isForcedDown(this.backendKey) &&
      net.isIP(host) !== 0 && (s.localAddress === null || net.isIP(s.localAddress) !== 0);
    const target = on ? `${host}|${s.backendPort}|${s.localAddress ?? ''}` : '';
    if (target === this.autoTarget) return;
    try {
      relayAutoConnect(this.lid, on, host, s.backendPort, s.localAddress);
      this.autoTarget = target;
    } catch (e) {
      // Never throw into a timer or reload: without auto-connect JS connects each flow itself.
      this.env.log(`listener ${this.describe()}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  protected recheckFlows(): void {
    for (const r of [...this.relays]) r.recheck();
  }

  /**
   * The userland half of the decision for an accepted connection, and its conntrack entry: opens
   * `relay` (made, not started) in the table. false: denied (only without an exact kernel filter)
   * or the table is full; the caller resets or parks, and drops the relay object.
   */
  private admit(remote: string, remotePort: number, relay: FlowBase): boolean {
    const env = this.env;
    let verdict = this.decide(remote, remotePort);
    this.admittedExisting = false;
    this.overflowed = false;
    if (!(verdict & VERDICT_ALLOW) && this.filterExact && this.mode === MODE_RULES) {
      // The exact filter in force would have dropped this SYN, yet the kernel completed the
      // handshake: the filter before the last swap let it through (during the swap, after the
      // relay was drained). AWS keeps such a connection as one that existed when the rules
      // changed: book it under the old verdict, then judge it as every live flow was at the swap.
      const old = this.decidePrevious(remote, remotePort);
      if (old & VERDICT_ALLOW) { verdict = old; this.admittedExisting = true; }
    }
    if (!(verdict & VERDICT_ALLOW)) {
      // Only reachable without an exact kernel filter: the closest honest answer is a reset.
      env.counters.rejectedUser++;
      this.stats.rejected++;
      if (flowEvents.hasSubscribers) this.publish('reject', remote, remotePort, 'userland-reset');
      return false;
    }
    if (env.monitor.isForcedDown(this.backendKey)) {
      // A backend held down (Node API setBackend) that still listens: with raw refusal the
      // filter's backend-down mode never lets its SYNs reach accept(); without it (fallback) this
      // is what a dead backend gives here, a reset after accept.
      env.counters.refusedReset++;
      this.stats.refused++;
      if (flowEvents.hasSubscribers) this.publish('refuse', remote, remotePort, 'backend-down');
      return false;
    }
    const spec = this.spec;
    const opened = env.table.open({
      proto: PROTO_TCP, family: spec.family, inst: this.inst, dir: spec.kind === 'service' ? INGRESS : EGRESS,
      listener: this.id, tracked: !(verdict & VERDICT_UNTRACKED), state: ST_SYN_SENT,
      src: remote, srcPort: remotePort, dst: spec.address, dstPort: spec.listenPort,
      rulePort: spec.rulePort, timeoutMs: env.ctTimeoutMs(spec.instName),
    }, relay);
    if (opened === null) {
      // The table filled between the last filter swap and this SYN (the daemon swaps every
      // listener to drop-all when it fills); the handshake is done: the caller parks it.
      env.counters.overflowDropped++;
      this.overflowed = true;
      return false;
    }
    env.counters.accepted++;
    this.stats.accepted++;
    if (flowEvents.hasSubscribers) this.publish('open', remote, remotePort, undefined, relay.tracked);
    return true;
  }

  /** The last admit booked a connection under the previous policy: its relay, once made,
   * rechecks it against the current one (tracked lives on, untracked is cut). */
  private admittedExisting = false;

  private recheckIfExisting(relay: FlowBase): void {
    if (!this.admittedExisting) return;
    this.admittedExisting = false;
    relay.recheck();
  }

  private onConnection(client: net.Socket): void {
    const remote = client.remoteAddress;
    if (remote === undefined || this.policy === null) { client.destroy(); return; }
    const relay = new TcpRelay(this, client);
    if (!this.admit(remote, client.remotePort ?? 0, relay)) {
      if (!(this.overflowed && this.park(-1, client))) client.resetAndDestroy();
      return;
    }
    this.relays.add(relay);
    relay.connect();
    this.recheckIfExisting(relay);
  }

  /** The native relay accepted a connection (RelayListener): connect it or reset it. */
  onAccept(id: number, addr: string, port: number, connecting: boolean): RelayFlow | null {
    const relay = new NativeRelay(this, id);
    if (this.closing || this.policy === null || !this.admit(addr, port, relay)) {
      // Parked only while the relay waits for our answer (F_ACCEPTED: not connecting, unread).
      if (!(this.overflowed && !connecting && this.park(id, null))) relayReset(id);
      return null;
    }
    this.relays.add(relay);
    if (!connecting) relay.connect();
    this.recheckIfExisting(relay);
    return relay;
  }

  /** Holds an over-limit connection accepted and unanswered (see PARK_MS); false when full. */
  private park(id: number, client: net.Socket | null): boolean {
    if (this.parked.length >= PARK_MAX) return false;
    const p: Parked = { id, client, atMs: performance.now() };
    if (client) {
      client.pause();
      client.on('error', () => {});
      client.once('close', () => { const i = this.parked.indexOf(p); if (i >= 0) this.parked.splice(i, 1); });
    }
    this.parked.push(p);
    if (this.parkTimer === null) {
      this.parkTimer = setInterval(() => this.releaseParked(false), PARK_SWEEP_MS);
      this.parkTimer.unref();
    }
    return true;
  }

  /** Resets the parked connections older than PARK_MS; `all`: closes every one (shutdown). */
  private releaseParked(all: boolean): void {
    const now = performance.now();
    while (this.parked.length > 0 && (all || now - this.parked[0]!.atMs >= PARK_MS)) {
      const p = this.parked.shift()!;
      if (p.client) { if (all) p.client.destroy(); else p.client.resetAndDestroy(); }
      else if (all) relayClose(p.id);
      else relayReset(p.id);
    }
    if (this.parked.length === 0 && this.parkTimer !== null) { clearInterval(this.parkTimer); this.parkTimer = null; }
  }

  publish(type: 'open' | 'close' | 'reject' | 'refuse' | 'cut' | 'expire', src: string, srcPort: number, reason?: string, tracked?: boolean, e?: FlowEntry): void {
    const s = this.spec;
    publishFlow({ type, protocol: 'tcp', instance: s.instName, direction: s.kind === 'service' ? 'ingress' : 'egress',
      src, srcPort, dst: s.address, dstPort: s.listenPort, tracked, reason, bytesIn: e?.bytesIn, bytesOut: e?.bytesOut });
  }

  /** Stops accepting; lets open flows finish for up to drainMs; then closes whatever is left. */
  async close(drainMs = 0): Promise<void> {
    const server = this.server;
    this.server = null;
    this.closing = true;
    if (this.lid >= 0) {
      try { relayUnlisten(this.lid); } catch (e) { this.env.log(`listener ${this.describe()}: ${e instanceof Error ? e.message : String(e)}`); }
      this.lid = -1;
    }
    if (this.fd >= 0) this.releaseSocket();
    this.fd = -1;             // Node (or the native relay) owns the fd and has closed it or will
    this.releaseParked(true);
    // server.close() waits for every accepted connection to end: start it, drain, then destroy.
    const closed = server ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    if (drainMs > 0 && this.relays.size > 0) {
      const deadline = Date.now() + drainMs;
      while (this.relays.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    }
    for (const r of [...this.relays]) {
      if (r.live) this.env.table.drop(r, EXPIRE_SHUTDOWN);
      r.destroy();
    }
    await closed;
    this.env.monitor.unwatch(this.backendKey);
  }

}

/**
 * What both relays share: the AWS rules for a live flow after a policy swap (recheck) and when
 * the table drops it (expire). A relay is its own conntrack entry (FlowEntry): made before the
 * listener admits it, opened in the table by admit(), opened again in another slot when the table
 * forgot it and the rules still allow it (expire). Subclasses move the bytes.
 */
abstract class FlowBase extends FlowEntry {
  protected blackholed = false;
  constructor(readonly listener: TcpListener) { super(); }

  abstract override sample(): void;
  /** Closes both sockets at once (shutdown). */
  abstract destroy(): void;
  /** Stop relaying both ways; keep both sockets open and unread until a peer gives up. */
  protected abstract blackhole(): void;

  /** After a policy swap: AWS cuts untracked flows whose rule is gone; tracked ones live on.
   * Network ACLs keep no state: a flow whose packets a NACL now drops stops, tracked or not. */
  recheck(): void {
    if (!this.live || this.blackholed) return;
    const v = this.listener.decide(this.src, this.srcPort);
    if (v & VERDICT_ALLOW) {
      this.tracked = !(v & VERDICT_UNTRACKED);
      return;
    }
    if (v & VERDICT_NACL_DENY) {
      this.listener.env.counters.naclCut++;
      if (flowEvents.hasSubscribers) this.listener.publish('cut', this.src, this.srcPort, 'nacl-denied', this.tracked, this);
      this.listener.env.table.drop(this, EXPIRE_CUT);
    } else if (!this.tracked) {
      this.listener.env.counters.untrackedCut++;
      if (flowEvents.hasSubscribers) this.listener.publish('cut', this.src, this.srcPort, 'untracked-revoked', false, this);
      this.listener.env.table.drop(this, EXPIRE_CUT);
    }
  }

  override expire(reason: number): void {
    const env = this.listener.env;
    if (reason === EXPIRE_SHUTDOWN) { this.destroy(); return; }
    if (reason === EXPIRE_IDLE) {
      env.counters.idleExpired++;
      if (this.state === ST_FIN_WAIT) {
        // Half-closed and silent for TCP_HALF_CLOSED_TIMEOUT_MS: a real conntrack forgets the
        // flow, and so do we, with both sockets (issue 17: a client gone after its FIN and a
        // backend that never reads held them for 5 days). Re-tracking it as the AWS rule below
        // does for an established flow would keep them forever.
        // Its end as finish() books it (counters, flow log); the table has let go of it already.
        this.sample();
        env.counters.bytesIn += this.bytesIn;
        env.counters.bytesOut += this.bytesOut;
        env.onFlowEnd?.(this);
        if (flowEvents.hasSubscribers) this.listener.publish('expire', this.src, this.srcPort, 'half-closed-idle', this.tracked, this);
        this.destroy();
        return;
      }
      // AWS: once the entry is gone, the next packet is judged as new traffic. If the rules still
      // allow it, it is tracked again; otherwise it is dropped from now on.
      const v = this.listener.decide(this.src, this.srcPort);
      if (v & VERDICT_ALLOW) {
        // Tracked again: this same relay object in a free slot (usually the one it just left:
        // the fields are all read from it before open writes the new flow).
        const again = env.table.open({
          proto: this.proto, family: this.family as 4 | 6, inst: this.inst, dir: this.dir, listener: this.listenerId,
          tracked: !(v & VERDICT_UNTRACKED), state: this.state, src: this.src, srcPort: this.srcPort, dst: this.dst,
          dstPort: this.dstPort, rulePort: this.rulePort, timeoutMs: this.timeoutMs,
        }, this);
        if (again) return;
      }
    }
    this.blackholed = true;
    this.blackhole();
  }

  /** The flow is over: final counters, flow log, conntrack close. */
  protected finish(): void {
    const env = this.listener.env;
    if (this.live) {
      this.sample();
      env.counters.bytesIn += this.bytesIn;
      env.counters.bytesOut += this.bytesOut;
      env.onFlowEnd?.(this);
      if (flowEvents.hasSubscribers) this.listener.publish('close', this.src, this.srcPort, undefined, this.tracked, this);
      env.table.close(this);
    }
    this.listener.relays.delete(this);
  }
}

/**
 * One flow relayed by the native thread (src/native/tcp-relay.ts): the bytes never enter JS; the
 * counters are read from the relay's shared array when conntrack samples.
 */
export class NativeRelay extends FlowBase implements RelayFlow {
  private done = false;

  /** Which of the listener's faults the relay gave this flow (their toxicity is rolled there). */
  override faultNames(): string[] {
    const faults = this.listener.faults;
    if (faults.length === 0) return [];
    const mask = relayFlowFaults(this.id);
    return faults.filter((_, i) => (mask >>> i) & 1).map((f) => f.name);
  }
  /** The relay's final byte counts (onClosed), once its shared counters are gone. */
  private finalBytesIn = 0;
  private finalBytesOut = 0;

  constructor(listener: TcpListener, readonly id: number) { super(listener); }

  connect(): void {
    const spec = this.listener.spec;
    try {
      relayConnect(this.id, this.listener.backendAddress(), spec.backendPort, spec.localAddress);
    } catch (e) {
      // Only a backend that is not a numeric address after a reload (start() picks the Node
      // relay for those): the flow cannot go anywhere, so the client gets the reset it would
      // get from a refused backend.
      relayReset(this.id);
      if (!this.listener.warnedConnect) {
        this.listener.warnedConnect = true;     // logged once, counted always (STYLE: no log per flow)
        this.listener.env.log(`listener ${this.listener.describe()}: ${e instanceof Error ? e.message : String(e)}`);
      }
      this.done = true;
      this.listener.env.counters.refusedReset++;
      this.listener.stats.refused++;
      this.finish();
    }
  }

  onConnected(): void { if (this.live && this.state === ST_SYN_SENT) this.state = ST_ESTABLISHED; }

  onFin(): void { this.listener.env.table.halfClose(this); }

  onFailed(errno: number): void {
    const l = this.listener, env = l.env;
    this.done = true;
    // The backend refused (or is unreachable): it is down now. The client was already accepted,
    // so the relay reset it (raw refusal handles the next SYNs).
    if (errno === ECONNREFUSED) {
      env.monitor.markDown(l.backendKey);
      l.refreshFilter();
    }
    env.counters.refusedReset++;
    l.stats.refused++;
    this.finish();
  }

  onClosed(reset: boolean, _errno: number, bytesIn: number, bytesOut: number): void {
    this.done = true;
    this.finalBytesIn = bytesIn;
    this.finalBytesOut = bytesOut;
    if (reset && !this.blackholed) this.listener.env.counters.resets++;
    this.finish();
  }

  sample(): void {
    if (this.done) { this.bytesIn = this.finalBytesIn; this.bytesOut = this.finalBytesOut; return; }
    this.bytesIn = relayBytesIn(this.id);
    this.bytesOut = relayBytesOut(this.id);
    // Bytes only move once the backend is connected; the relay books "connected" up to 1 ms
    // late (batched, tcp_relay.c signal_js), a listing in between must not say SYN_SENT.
    if (this.state === ST_SYN_SENT && this.bytesIn + this.bytesOut > 0) this.state = ST_ESTABLISHED;
  }

  destroy(): void {
    if (!this.done) {
      this.sample();
      this.done = true;
      relayClose(this.id);
    }
    this.listener.relays.delete(this);
  }

  protected blackhole(): void {
    if (!relayBlackhole(this.id)) this.listener.relays.delete(this);
  }
}

/**
 * One relayed connection: client ↔ backend with Node's pipe (honours backpressure: a false
 * write() pauses the reader), allowHalfOpen so a FIN in one direction is forwarded as a FIN and
 * the other direction goes on, and an RST on one side turned into an RST on the other.
 */
export class TcpRelay extends FlowBase {
  backend: net.Socket | null = null;
  private connected = false;
  private closedSides = 0;

  constructor(listener: TcpListener, readonly client: net.Socket) { super(listener); }
  connect(): void {
    const spec = this.listener.spec;
    const client = this.client;
    client.setNoDelay(true);
    const opts: net.NetConnectOpts = { host: this.listener.backendAddress(), port: spec.backendPort, allowHalfOpen: true, noDelay: true };
    if (spec.localAddress) (opts as net.TcpNetConnectOpts).localAddress = spec.localAddress;
    const backend = net.connect(opts);
    this.backend = backend;
    backend.once('connect', () => {
      this.connected = true;
      if (this.live) this.state = ST_ESTABLISHED;
    });
    client.on('error', (e: NodeJS.ErrnoException) => this.onError(client, backend, e));
    backend.on('error', (e: NodeJS.ErrnoException) => this.onError(backend, client, e));
    const halfClose = () => this.listener.env.table.halfClose(this);
    client.on('end', halfClose);
    backend.on('end', halfClose);
    client.on('close', () => this.onClose());
    backend.on('close', () => this.onClose());
    client.pipe(backend);
    backend.pipe(client);
  }

  private onError(from: net.Socket, other: net.Socket, e: NodeJS.ErrnoException): void {
    const env = this.listener.env;
    if (!this.connected && from === this.backend) {
      // The backend refused (or is unreachable): it is down now. The client was already accepted,
      // so the closest answer left is a reset (raw refusal handles the next SYNs).
      if (e.code === 'ECONNREFUSED') {
        env.monitor.markDown(this.listener.backendKey);
        this.listener.refreshFilter();
      }
      env.counters.refusedReset++;
      this.listener.stats.refused++;
      if (!other.destroyed) other.resetAndDestroy();
      return;
    }
    env.counters.resets++;
    if (!other.destroyed) other.resetAndDestroy();
  }

  private onClose(): void {
    if (++this.closedSides < 2) {
      // One side fully closed. If the other is half-open it ends by itself (FIN forwarded by pipe);
      // a side destroyed by error already reset the other. Nothing to do here.
      return;
    }
    this.finish();
  }

  /** Closes both sockets at once (shutdown). */
  destroy(): void {
    this.client.destroy();
    this.backend?.destroy();
    this.listener.relays.delete(this);
  }

  sample(): void {
    this.bytesIn = this.client.bytesRead;
    this.bytesOut = this.client.bytesWritten;
  }

  /**
   * Packets of this flow are dropped from now on (AWS drops, it does not reset): stop relaying in
   * both directions and keep both sockets open and unread, so each peer sees its data go
   * unanswered until its own timeout. When either peer gives up, the other socket is closed.
   */
  protected blackhole(): void {
    const b = this.backend;
    this.client.unpipe();
    b?.unpipe();
    this.client.pause();
    b?.pause();
    const end = () => { this.client.destroy(); b?.destroy(); this.listener.relays.delete(this); };
    this.client.once('close', end);
    b?.once('close', end);
  }
}
