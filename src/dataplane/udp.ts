// UDP data plane: one bound socket per instance UDP service (ingress) or outbound entry (egress),
// relaying datagrams to the backend through one connected socket per flow, so the backend sees
// distinct clients and each reply goes back to the client that asked.
//
// Owns: the bound sockets and their filters, per-flow backend sockets (FlowOwner of conntrack
// entries), the flow index.
// Must not: read config; allocate per datagram beyond what dgram itself does; throw per datagram.
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

import dgram from 'node:dgram';
import { INGRESS, EGRESS, PROTO_UDP } from '../model/types.js';
import type { CompiledPolicy, SourceRanges } from '../policy/types.js';
import { VERDICT_ALLOW, VERDICT_UNTRACKED } from '../policy/types.js';
import { parseIpv4, parseIpv6Words, ipv6ToBigInt } from '../policy/addr.js';
import { mergeRanges4, mergeRanges6 } from '../policy/ranges.js';
import { compileSourceFilter, encodeProgram } from '../policy/bpf.js';
import { createUdpSocket, nativeStatus } from '../native/sock-filter.js';
import { FlowEntry, EXPIRE_CUT, EXPIRE_IDLE, EXPIRE_SHUTDOWN, ST_UDP_UNREPLIED, ST_UDP_REPLIED, ST_UDP_STREAM, type FlowOwner } from './conntrack/table.js';
import { flowEvents, publishFlow } from '../observe/events.js';
import { ListenerBase, MODE_FULL, type ListenerEnv, type ListenerSpec } from './listener.js';

export type UdpListenerSpec = ListenerSpec;

export interface UdpEnv extends ListenerEnv {
  onFlowEnd?: (e: FlowEntry) => void;
  /** udpTimeoutS and udpStreamTimeoutS of an instance, in ms. */
  udpTimeoutsMs: (instName: string) => [number, number];
}

export class UdpListener extends ListenerBase {
  private socket: dgram.Socket | null = null;
  readonly flows = new Map<number | string, UdpFlow>();

  constructor(id: number, spec: UdpListenerSpec, readonly env: UdpEnv) {
    super(id, spec, env);
  }

  get key(): string { return `udp|${this.spec.address}|${this.spec.listenPort}`; }
  get flowCount(): number { return this.flows.size; }

  async start(policy: CompiledPolicy): Promise<void> {
    this.watchBackend();
    this.bindPolicy(policy);
    const type = this.spec.family === 6 ? 'udp6' : 'udp4';
    const sock = dgram.createSocket({ type, ipv6Only: this.spec.family === 6 });
    this.socket = sock;
    sock.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
    sock.on('error', (e) => this.env.log(`listener ${this.describe()}: ${e.message}`));
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      const done = () => { sock.off('error', reject); resolve(); };
      if (nativeStatus().loaded) {
        this.fd = createUdpSocket({ family: this.spec.family, address: this.spec.address, port: this.spec.listenPort, program: this.program() });
        sock.bind({ fd: this.fd }, done);
      } else {
        this.mode = this.computeMode();
        sock.bind({ address: this.spec.address, port: this.spec.listenPort, exclusive: true }, done);
      }
    });
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
    const v4: number[] = Array.from(r.v4);
    const v6 = [...r.v6];
    for (const f of this.flows.values()) {
      if (!f.entry.live || (trackedOnly && !f.entry.tracked)) continue;
      if (this.spec.family === 4) { const a = parseIpv4(f.entry.src); v4.push(a, a); }
      else {
        const b = ipv6ToBigInt(parseIpv6Words(f.entry.src));
        v6.push(b, b);
      }
    }
    return { v4: Uint32Array.from(mergeRanges4(v4)), v6: mergeRanges6(v6) };
  }

  private onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const env = this.env;
    env.counters.udpDatagramsIn++;
    const key: number | string = this.spec.family === 4 ? parseIpv4(rinfo.address) * 65536 + rinfo.port : `${rinfo.address}|${rinfo.port}`;
    let f = this.flows.get(key);
    if (f === undefined) {
      const v = this.decide(rinfo.address);
      if (!(v & VERDICT_ALLOW)) { env.counters.rejectedUser++; this.stats.rejected++; return; }
      const [udpMs] = env.udpTimeoutsMs(this.spec.instName);
      const entry = env.table.open({
        proto: PROTO_UDP, family: this.spec.family, inst: this.inst, dir: this.spec.kind === 'service' ? INGRESS : EGRESS,
        listener: this.id, tracked: !(v & VERDICT_UNTRACKED), state: ST_UDP_UNREPLIED,
        src: rinfo.address, srcPort: rinfo.port, dst: this.spec.address, dstPort: this.spec.listenPort,
        rulePort: this.spec.rulePort, timeoutMs: udpMs, owner: NO_OWNER,
      });
      if (entry === null) { env.counters.overflowDropped++; return; }
      env.counters.accepted++;
      this.stats.accepted++;
      if (flowEvents.hasSubscribers) {
        publishFlow({ type: 'open', protocol: 'udp', instance: this.spec.instName, direction: this.spec.kind === 'service' ? 'ingress' : 'egress',
          src: rinfo.address, srcPort: rinfo.port, dst: this.spec.address, dstPort: this.spec.listenPort, tracked: entry.tracked });
      }
      f = new UdpFlow(this, key, entry, rinfo.address, rinfo.port);
      entry.owner = f;
      this.flows.set(key, f);
    }
    f.fromClient(msg);
  }

  /** Sends a backend reply to the flow's client from the listening socket. */
  reply(msg: Buffer, f: UdpFlow): void {
    this.socket?.send(msg, f.clientPort, f.clientAddr);
    this.env.counters.udpDatagramsOut++;
  }

  async close(): Promise<void> {
    for (const f of [...this.flows.values()]) this.env.table.drop(f.entry, EXPIRE_SHUTDOWN);
    const s = this.socket;
    this.socket = null;
    this.fd = -1;
    if (s) await new Promise<void>((r) => { try { s.close(() => r()); } catch { r(); } });
    this.env.monitor.unwatch(this.backendKey);
  }
}

const NO_OWNER: FlowOwner = { sample() {}, expire() {} };
const MAX_PENDING = 64;

/** One client's flow: a socket connected to the backend, its counters and AWS state. */
export class UdpFlow implements FlowOwner {
  private readonly sock: dgram.Socket;
  private lastDir = 0;            // 1 = last datagram came from the client, 2 = from the backend
  private closed = false;
  /** Datagrams that arrived before connect() completed (dgram does not queue them); bounded. */
  private pending: Buffer[] | null = [];

  constructor(readonly listener: UdpListener, readonly key: number | string, public entry: FlowEntry,
              readonly clientAddr: string, readonly clientPort: number) {
    const spec = listener.spec;
    const v6 = spec.backendHost.includes(':');
    this.sock = dgram.createSocket(v6 ? 'udp6' : 'udp4');
    this.sock.on('message', (m) => this.fromBackend(m));
    this.sock.on('error', (e: NodeJS.ErrnoException) => this.onError(e));
    if (spec.localAddress) this.sock.bind(0, spec.localAddress);
    this.sock.connect(spec.backendPort, spec.backendHost, () => {
      const queued = this.pending;
      this.pending = null;
      if (!this.closed && queued) for (const m of queued) this.sock.send(m);
    });
  }

  fromClient(msg: Buffer): void {
    if (this.closed) return;
    const e = this.entry;
    e.packetsIn++;
    e.bytesIn += msg.length;
    this.listener.env.table.touch(e);
    if (this.lastDir === 2) e.exchanges++;
    this.lastDir = 1;
    if (this.pending === null) this.sock.send(msg);
    else if (this.pending.length < MAX_PENDING) this.pending.push(msg);   // beyond: dropped, as a full socket buffer would
  }

  private fromBackend(msg: Buffer): void {
    if (this.closed) return;
    const e = this.entry;
    e.packetsOut++;
    e.bytesOut += msg.length;
    const env = this.listener.env;
    env.table.touch(e);
    if (this.lastDir === 1) {
      if (e.state === ST_UDP_UNREPLIED) e.state = ST_UDP_REPLIED;
      else if (e.state === ST_UDP_REPLIED && e.exchanges >= 1) {
        e.state = ST_UDP_STREAM;
        e.timeoutMs = env.udpTimeoutsMs(this.listener.spec.instName)[1];
      }
    }
    this.lastDir = 2;
    this.listener.reply(msg, this);
  }

  private onError(e: NodeJS.ErrnoException): void {
    const env = this.listener.env;
    if (e.code === 'ECONNREFUSED') {
      // The kernel's own ICMP from the backend: it is down. Future datagrams are refused by the
      // Refuser (drop-all filter + pcap + ICMP) when raw refusal is available.
      env.monitor.markDown(this.listener.backendKey);
      this.listener.refreshFilter();
    }
    env.table.drop(this.entry, EXPIRE_CUT);
  }

  sample(): void { /* counters are kept per datagram */ }

  recheck(): void {
    const e = this.entry;
    if (!e.live) return;
    const v = this.listener.decide(e.src);
    if (v & VERDICT_ALLOW) { e.tracked = !(v & VERDICT_UNTRACKED); return; }
    if (!e.tracked) {
      this.listener.env.counters.untrackedCut++;
      this.listener.env.table.drop(e, EXPIRE_CUT);
    }
  }

  expire(e: FlowEntry, reason: number): void {
    if (this.closed) return;
    this.closed = true;
    if (reason === EXPIRE_IDLE) this.listener.env.counters.idleExpired++;
    this.listener.env.onFlowEnd?.(e);
    this.listener.flows.delete(this.key);
    try { this.sock.close(); } catch { /* already closed */ }
  }
}
