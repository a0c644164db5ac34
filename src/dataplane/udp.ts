// UDP data plane: one bound socket per instance UDP service (ingress) or outbound entry (egress),
// relaying datagrams to the backend through one connected socket per flow, so the backend sees
// distinct clients and each reply goes back to the client that asked.
//
// Owns: the bound sockets and their filters, per-flow backend sockets (each flow its own conntrack
// FlowEntry), the flow index.
// Must not: read config; allocate per datagram beyond what dgram itself does (native path: one
// buffer per batch of new clients' datagrams, nothing for established flows); throw per datagram.
// Invariants:
//   - a datagram from a denied source never reaches this process while the native filter is
//     loaded and exact (same generator as TCP, kind 'udp': every datagram is judged);
//   - flows are keyed numerically for IPv4 (addr * 65536 + port, exact below 2^53); IPv6 keys
//     are the address text plus port (IPv6 sources here are ::1 only);
//   - the number of per-flow sockets is bounded by the conntrack table: a full table drops new
//     flows (and the filter goes drop-all, as for TCP), never opens another socket.
//
// AWS states (reference §3.3): UNREPLIED → REPLIED (one request, one response) → STREAM (more
// than one exchange). UNREPLIED/REPLIED idle out after udpTimeout, STREAM after udpStreamTimeout.
//
// Two data paths, one policy path:
//   native (default when the addon has the relay): a relay thread (src/native/udp-relay.ts) reads
//     the listening socket with recvmmsg, forwards datagrams of known flows to their backend
//     sockets and batches replies with sendmmsg; datagrams of unknown clients come here in
//     batches, are decided, and the flow is added to the relay. Counters and the state inputs
//     (turns) are read when conntrack samples the flow (native-notes/udp-batching.md);
//   node (no addon, a backend host that is not an IP literal, or SGEMU_RELAY=node): node:dgram
//     on the same filtered fd, one connected dgram socket per flow, counted per datagram.

import dgram from 'node:dgram';
import { isIP } from 'node:net';
import { INGRESS, EGRESS, PROTO_UDP, type Fault } from '../model/types.js';
import type { CompiledPolicy, SourceRanges } from '../policy/types.js';
import { VERDICT_ALLOW, VERDICT_NACL_DENY, VERDICT_UNTRACKED } from '../policy/types.js';
import { parseIpv4, parseIpv6Words, ipv6ToBigInt } from '../policy/addr.js';
import { mergeRanges4, mergeRanges6 } from '../policy/ranges.js';
import { compileSourceFilter, encodeProgram, unionPorts } from '../policy/bpf.js';
import { closeFd, createUdpSocket, errnoName, nativeStatus } from '../native/sock-filter.js';
import {
  UdpRelay, udpRelayAvailable, forEachDatagram, STAT_COUNT, STAT_PACKETS_IN, STAT_BYTES_IN, STAT_PACKETS_OUT,
  STAT_BYTES_OUT, STAT_EXCHANGES, STAT_REPLIES,
} from '../native/udp-relay.js';
import { FlowEntry, EXPIRE_CUT, EXPIRE_IDLE, EXPIRE_SHUTDOWN, ST_UDP_UNREPLIED, ST_UDP_REPLIED, ST_UDP_STREAM } from './conntrack/table.js';
import { flowEvents, publishFlow } from '../observe/events.js';
import { ListenerBase, MODE_DOWN, MODE_FULL, MODE_RULES, type ListenerEnv, type ListenerSpec } from './listener.js';

export type UdpListenerSpec = ListenerSpec;

export interface UdpEnv extends ListenerEnv {
  onFlowEnd?: (e: FlowEntry) => void;
  /** udpTimeoutS and udpStreamTimeoutS of an instance, in ms. */
  udpTimeoutsMs: (instName: string) => [number, number];
}

export class UdpListener extends ListenerBase {
  private socket: dgram.Socket | null = null;
  /** The native relay thread, or null on the node:dgram path. */
  relay: UdpRelay | null = null;
  readonly flows = new Map<number | string, UdpFlow>();
  /** Native path: flow by relay slot; freed slots are reused first (a stack), so slots stay below the peak flow count. */
  private readonly bySlot: (UdpFlow | undefined)[] = [];
  private readonly freeSlots: number[] = [];
  private warnedAdd = false;
  /** Faults on this listener's flows (issue #18), applied by the relay thread. */
  /** Set by the Refuser: an ICMP port unreachable to a client whose datagram the backend refused. */
  refuseClient: ((src: string, srcPort: number) => boolean) | null = null;

  constructor(id: number, spec: UdpListenerSpec, readonly env: UdpEnv) {
    super(id, spec, env);
  }

  get key(): string { return `udp|${this.spec.address}|${this.spec.listenPort}`; }
  get flowCount(): number { return this.flows.size; }
  /** Which data path carries established flows (for doctor and logs). */
  get relayMode(): 'native' | 'node' { return this.relay !== null ? 'native' : 'node'; }

  async start(policy: CompiledPolicy): Promise<void> {
    this.watchBackend();
    this.bindPolicy(policy);
    if (nativeStatus().loaded && udpRelayAvailable() && this.relayable()) {
      this.fd = createUdpSocket({ family: this.spec.family, address: this.spec.address, port: this.spec.listenPort, program: this.program() });
      try {
        this.relay = UdpRelay.open(this.fd, this.spec.family, {
          datagrams: (batch, count) => forEachDatagram(batch, count, this.onDatagram),
          flowError: (slot, errno, gen) => { const f = this.bySlot[slot]; if (f !== undefined && f.gen === gen) f.failed(errnoName(errno)); },
        });
        if (this.faults.length > 0) this.installFaults(this.faults);
        return;
      } catch (e) {
        this.env.log(`listener ${this.describe()}: native UDP relay unavailable (${e instanceof Error ? e.message : String(e)}); using node:dgram`);
      }
    }
    const type = this.spec.family === 6 ? 'udp6' : 'udp4';
    const sock = dgram.createSocket({ type, ipv6Only: this.spec.family === 6 });
    this.socket = sock;
    sock.on('message', (msg, rinfo) => this.onDatagram(rinfo.address, rinfo.port, msg));
    sock.on('error', (e) => this.env.log(`listener ${this.describe()}: ${e.message}`));
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      const done = () => { sock.off('error', reject); resolve(); };
      if (nativeStatus().loaded) {
        if (this.fd < 0) this.fd = createUdpSocket({ family: this.spec.family, address: this.spec.address, port: this.spec.listenPort, program: this.program() });
        sock.bind({ fd: this.fd }, done);
      } else {
        this.mode = this.computeMode();
        sock.bind({ address: this.spec.address, port: this.spec.listenPort, exclusive: true }, done);
      }
    });
  }

  /**
   * The relay applies the faults (UDP types from config/faults.ts, already validated) to this
   * listener's flows, live ones included: it rolls each fault's toxicity again per flow. Native
   * relay only: on the node:dgram path the base class logs once that they are not applied, since a
   * per-datagram timer in JS is what the relay exists to avoid.
   */
  /** What the relay's faults did to datagrams so far (metrics); zeros without the relay. */
  faultDatagrams(): { lost: number; duplicated: number; reordered: number; delayed: number; overCap: number } {
    const i = this.relay?.info();
    return i ? { lost: i.faultLost, duplicated: i.faultDuplicated, reordered: i.faultReordered, delayed: i.faultDelayed, overCap: i.faultOverCap }
      : { lost: 0, duplicated: 0, reordered: 0, delayed: 0, overCap: 0 };
  }

  protected override installFaults(faults: readonly Fault[]): boolean {
    if (this.relay === null) return false;
    this.relay.setFaults(faults);
    return true;
  }

  /** The relay connects to IP literals only (no resolver in C: a backend name comes resolved,
   * backendAddress); a name that did not resolve stays on node:dgram. */
  private relayable(): boolean {
    const s = this.spec;
    return isIP(this.backendAddress()) !== 0 && (s.localAddress === null || isIP(s.localAddress) !== 0);
  }

  /**
   * A UDP listener never closes to new flows because the backend seemed down at the last poll
   * (#17 item 9): a backend that binds just before the first datagram (iperf3 binds per test and
   * its client's first datagram follows within ms, inside the 20 ms poll) must get it. The
   * datagram is forwarded and the backend's own kernel decides: a port unreachable comes back as
   * ECONNREFUSED on the flow's socket, and then the client gets the same ICMP (UdpFlow.failed).
   * Only a backend held down on purpose (setBackend 'down') keeps the drop-and-refuse mode.
   */
  protected override computeMode(): number {
    const m = super.computeMode();
    return m === MODE_DOWN && !this.env.monitor.isForcedDown(this.backendKey) ? MODE_RULES : m;
  }

  protected recheckFlows(): void {
    for (const f of [...this.flows.values()]) f.recheck();
  }

  /**
   * The program judges every datagram, not only a flow's first, so live flows' sources are added
   * to it: tracked flows keep passing after a revoke (stateful), and while the table is full
   * (drop new flows only) every live flow keeps passing. DOWN drops all: the backend is gone.
   */
  protected override program(): Buffer {
    if (this.computeMode() === MODE_FULL) {
      this.mode = MODE_FULL;
      return encodeProgram(compileSourceFilter('udp', this.spec.family, this.withFlowSources({ v4: new Uint32Array(0), v6: [] }, false)).insns);
    }
    return super.program();
  }

  protected override allowedSources(p: CompiledPolicy): SourceRanges {
    return this.withFlowSources(super.allowedSources(p), true);
  }

  /** Adds the sources of live flows (tracked ones only, or all) to `r`. */
  private withFlowSources(r: SourceRanges, trackedOnly: boolean): SourceRanges {
    if (this.flows.size === 0) return r;
    if (r.ports4 || r.ports6) return this.withFlowPorts(r, trackedOnly);
    const v4: number[] = Array.from(r.v4);
    const v6 = [...r.v6];
    for (const f of this.flows.values()) {
      if (!f.live || (trackedOnly && !f.tracked)) continue;
      if (this.spec.family === 4) { const a = parseIpv4(f.src); v4.push(a, a); }
      else {
        const b = ipv6ToBigInt(parseIpv6Words(f.src));
        v6.push(b, b);
      }
    }
    return { v4: Uint32Array.from(mergeRanges4(v4)), v6: mergeRanges6(v6) };
  }

  /**
   * The same when NACLs limit source ports: each live flow's exact source address and port become
   * their own range, so its datagrams keep passing (a flow a NACL now drops was cut by recheck).
   */
  private withFlowPorts(r: SourceRanges, trackedOnly: boolean): SourceRanges {
    const six = this.spec.family === 6;
    const pieces: [bigint, bigint, number[] | null][] = [];
    const base: ArrayLike<number | bigint> = six ? r.v6 : r.v4;
    const ports = (six ? r.ports6 : r.ports4) ?? [];
    for (let i = 0; i < base.length; i += 2) pieces.push([BigInt(base[i]!), BigInt(base[i + 1]!), ports[i / 2] ?? null]);
    for (const f of this.flows.values()) {
      if (!f.live || (trackedOnly && !f.tracked)) continue;
      const a = six ? ipv6ToBigInt(parseIpv6Words(f.src)) : BigInt(parseIpv4(f.src));
      const k = pieces.findIndex(([lo, hi]) => lo <= a && a <= hi);
      if (k < 0) { pieces.push([a, a, [f.srcPort, f.srcPort]]); continue; }
      const [lo, hi, p] = pieces[k]!;
      if (p === null) continue;
      const add = [...p, f.srcPort, f.srcPort];
      const split: [bigint, bigint, number[] | null][] = [];
      if (lo < a) split.push([lo, a - 1n, p]);
      split.push([a, a, unionPorts(add, [])]);
      if (a < hi) split.push([a + 1n, hi, p]);
      pieces.splice(k, 1, ...split);
    }
    pieces.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
    const pairs = pieces.flatMap(([lo, hi]) => [lo, hi]);
    const pp = pieces.map((x) => x[2]);
    return six ? { v4: new Uint32Array(0), v6: pairs, ports6: pp } : { v4: Uint32Array.from(pairs.map(Number)), v6: [], ports4: pp };
  }

  /** A datagram from a client (every one on the node path; only unknown clients' on the native path). */
  private readonly onDatagram = (address: string, port: number, msg: Buffer): void => {
    const env = this.env;
    const key: number | string = this.spec.family === 4 ? parseIpv4(address) * 65536 + port : `${address}|${port}`;
    let f = this.flows.get(key);
    if (f === undefined) {
      const v = this.decide(address, port);
      if (!(v & VERDICT_ALLOW)) { env.counters.udpDatagramsIn++; env.counters.rejectedUser++; this.stats.rejected++; return; }
      // Held down (Node API setBackend) while it still listens; only reached without raw refusal
      // (else the filter's backend-down mode): silence, as a dead backend gives in that mode.
      if (env.monitor.isForcedDown(this.backendKey)) { env.counters.udpDatagramsIn++; this.stats.refused++; return; }
      const [udpMs] = env.udpTimeoutsMs(this.spec.instName);
      const flow = env.table.open({
        proto: PROTO_UDP, family: this.spec.family, inst: this.inst, dir: this.spec.kind === 'service' ? INGRESS : EGRESS,
        listener: this.id, tracked: !(v & VERDICT_UNTRACKED), state: ST_UDP_UNREPLIED,
        src: address, srcPort: port, dst: this.spec.address, dstPort: this.spec.listenPort,
        rulePort: this.spec.rulePort, timeoutMs: udpMs,
      }, new UdpFlow(this, key, address, port));
      if (flow === null) { env.counters.udpDatagramsIn++; env.counters.overflowDropped++; return; }
      const slot = this.relay ? this.takeSlot() : -1;
      let gen = 0;
      if (this.relay) {
        const s = this.spec;
        try {
          gen = this.relay.add(slot, address, port, this.backendAddress(), s.backendPort, s.localAddress);
        } catch (e) {
          // EMFILE/ENFILE (fd limit) or EADDRNOTAVAIL: the flow is not opened, the datagram dropped.
          this.freeSlots.push(slot);
          env.table.close(flow);
          env.counters.udpDatagramsIn++;
          if (!this.warnedAdd) {
            this.warnedAdd = true;
            env.log(`listener ${this.describe()}: cannot open a backend socket, new flows are dropped until one can: ${e instanceof Error ? e.message : String(e)}`);
          }
          return;
        }
        this.warnedAdd = false;
      }
      env.counters.accepted++;
      this.stats.accepted++;
      if (flowEvents.hasSubscribers) {
        publishFlow({ type: 'open', protocol: 'udp', instance: this.spec.instName, direction: this.spec.kind === 'service' ? 'ingress' : 'egress',
          src: address, srcPort: port, dst: this.spec.address, dstPort: this.spec.listenPort, tracked: flow.tracked });
      }
      flow.start(slot, gen);
      f = flow;
      this.flows.set(key, f);
      if (slot >= 0) this.bySlot[slot] = f;
    }
    f.fromClient(msg);
  };

  private takeSlot(): number {
    if (this.freeSlots.length > 0) return this.freeSlots.pop()!;
    return this.bySlot.length;
  }

  /** Native path: the flow is gone; its relay slot may be reused. */
  releaseSlot(slot: number): void {
    this.bySlot[slot] = undefined;
    this.freeSlots.push(slot);
  }

  /** Sends a backend reply to the flow's client from the listening socket (node path). */
  reply(msg: Buffer, f: UdpFlow): void {
    this.socket?.send(msg, f.clientPort, f.clientAddr);
    this.env.counters.udpDatagramsOut++;
  }

  async close(): Promise<void> {
    for (const f of [...this.flows.values()]) this.env.table.drop(f, EXPIRE_SHUTDOWN);
    if (this.relay) {
      this.relay.close();          // joins the thread: nothing reads the fd after this
      this.relay = null;
      try { closeFd(this.fd); } catch { /* already closed */ }
    }
    const s = this.socket;
    this.socket = null;
    if (this.fd >= 0) this.releaseSocket();
    this.fd = -1;
    if (s) await new Promise<void>((r) => { try { s.close(() => r()); } catch { r(); } });
    this.env.monitor.unwatch(this.backendKey);
  }
}

const MAX_PENDING = 64;
/** One scratch array for every native flow's sample (JS is single-threaded). */
const stat = new Float64Array(STAT_COUNT);

/**
 * One client's flow: a socket connected to the backend, its counters and AWS state, and its own
 * conntrack entry (FlowEntry: made, opened in the table, then started). On the native path the
 * socket and the per-datagram counting live in the relay (`relaySlot` ≥ 0) and are read in
 * sample(); on the node path (`relaySlot` = -1) this object owns a dgram socket and counts.
 */
export class UdpFlow extends FlowEntry {
  private sock: dgram.Socket | null = null;
  private lastDir = 0;            // node path: 1 = last datagram came from the client, 2 = from the backend
  private closed = false;
  /** Datagrams that arrived before connect() completed (dgram does not queue them); bounded. */
  private pending: Buffer[] | null = null;
  /** The relay's slot for this flow (native path), -1 on the node path; set by start(). */
  relaySlot = -1;
  /** The relay slot's generation (flowError events carry it). */
  gen = 0;

  constructor(readonly listener: UdpListener, readonly key: number | string, readonly clientAddr: string, readonly clientPort: number) {
    super();
  }

  /** Once the table has it: binds the relay's slot (native path), or opens the backend socket. */
  start(relaySlot: number, gen: number): void {
    this.relaySlot = relaySlot;
    this.gen = gen;
    if (relaySlot >= 0) return;
    const spec = this.listener.spec;
    this.pending = [];
    const host = this.listener.backendAddress();
    const v6 = host.includes(':');
    const sock = dgram.createSocket(v6 ? 'udp6' : 'udp4');
    this.sock = sock;
    sock.on('message', (m) => this.fromBackend(m));
    sock.on('error', (e: NodeJS.ErrnoException) => this.failed(e.code ?? 'EIO'));
    if (spec.localAddress) sock.bind(0, spec.localAddress);
    sock.connect(spec.backendPort, host, () => {
      const queued = this.pending;
      this.pending = null;
      if (!this.closed && queued) for (const m of queued) sock.send(m);
    });
  }

  fromClient(msg: Buffer): void {
    if (this.closed) return;
    const relay = this.listener.relay;
    if (this.relaySlot >= 0 && relay !== null) {
      // Counted by the relay. EAGAIN/ENOBUFS: dropped (and counted there), as a full socket would.
      const errno = relay.send(this.relaySlot, msg);
      if (errno !== 0 && errnoName(errno) === 'ECONNREFUSED') this.failed('ECONNREFUSED');
      return;
    }
    this.listener.env.counters.udpDatagramsIn++;
    this.packetsIn++;
    this.bytesIn += msg.length;
    this.listener.env.table.touch(this);
    if (this.lastDir === 2) this.exchanges++;
    this.lastDir = 1;
    if (this.pending === null) this.sock!.send(msg);
    else if (this.pending.length < MAX_PENDING) this.pending.push(msg);   // beyond: dropped, as a full socket buffer would
  }

  private fromBackend(msg: Buffer): void {
    if (this.closed) return;
    this.packetsOut++;
    this.bytesOut += msg.length;
    const env = this.listener.env;
    env.table.touch(this);
    if (this.lastDir === 1) {
      if (this.state === ST_UDP_UNREPLIED) this.state = ST_UDP_REPLIED;
      else if (this.state === ST_UDP_REPLIED && this.exchanges >= 1) this.toStream();
    }
    this.lastDir = 2;
    this.listener.reply(msg, this);
  }

  private toStream(): void {
    this.state = ST_UDP_STREAM;
    this.timeoutMs = this.listener.env.udpTimeoutsMs(this.listener.spec.instName)[1];
  }

  /** The backend socket failed: ECONNREFUSED is the kernel's own ICMP from the backend (it is down). */
  failed(code: string): void {
    if (this.closed) return;
    const env = this.listener.env;
    if (code === 'ECONNREFUSED') {
      // Every later datagram opens a flow again and is forwarded: refused the same way while
      // the backend stays closed, answered as soon as it binds.
      env.monitor.markDown(this.listener.backendKey);
      this.listener.refreshFilter();
      // The backend's kernel answered "port unreachable": the client hears it, from the listener.
      this.listener.refuseClient?.(this.clientAddr, this.clientPort);
    }
    env.table.drop(this, EXPIRE_CUT);
  }

  /**
   * Native path: copies the relay's counters into the entry and derives the AWS state from the
   * direction turns (1 reply turn = REPLIED, ≥ 2 = STREAM, as the node path does per datagram).
   * Node path: counters are kept per datagram.
   */
  override sample(): void {
    const relay = this.listener.relay;
    if (this.relaySlot < 0 || relay === null || this.closed || !relay.stats(this.relaySlot, stat)) return;
    const c = this.listener.env.counters;
    c.udpDatagramsIn += stat[STAT_PACKETS_IN]! - this.packetsIn;
    c.udpDatagramsOut += stat[STAT_PACKETS_OUT]! - this.packetsOut;
    this.packetsIn = stat[STAT_PACKETS_IN]!;
    this.bytesIn = stat[STAT_BYTES_IN]!;
    this.packetsOut = stat[STAT_PACKETS_OUT]!;
    this.bytesOut = stat[STAT_BYTES_OUT]!;
    this.exchanges = stat[STAT_EXCHANGES]!;
    if (!this.live) return;        // the last sample, from expire(): counters only, the state is final
    const replies = stat[STAT_REPLIES]!;
    if (replies >= 2) { if (this.state !== ST_UDP_STREAM) this.toStream(); }
    else if (replies >= 1 && this.state === ST_UDP_UNREPLIED) this.state = ST_UDP_REPLIED;
  }

  recheck(): void {
    if (!this.live) return;
    const v = this.listener.decide(this.src, this.srcPort);
    if (v & VERDICT_ALLOW) { this.tracked = !(v & VERDICT_UNTRACKED); return; }
    if (v & VERDICT_NACL_DENY) {
      // NACLs keep no state: the flow's datagrams are dropped from now on, tracked or not.
      this.listener.env.counters.naclCut++;
      this.listener.env.table.drop(this, EXPIRE_CUT);
    } else if (!this.tracked) {
      this.listener.env.counters.untrackedCut++;
      this.listener.env.table.drop(this, EXPIRE_CUT);
    }
  }

  override expire(reason: number): void {
    if (this.closed) return;
    this.sample();                 // the last datagrams since the previous sample, for the flow log
    this.closed = true;
    if (reason === EXPIRE_IDLE) this.listener.env.counters.idleExpired++;
    this.listener.env.onFlowEnd?.(this);
    this.listener.flows.delete(this.key);
    if (this.relaySlot >= 0) {
      this.listener.relay?.remove(this.relaySlot);
      this.listener.releaseSlot(this.relaySlot);
    } else {
      try { this.sock!.close(); } catch { /* already closed */ }
    }
  }
}

