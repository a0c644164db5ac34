// TCP data plane: one listener per instance service (ingress) or outbound entry (egress), each a
// real socket carrying a kernel socket filter compiled from the live policy, relaying allowed
// connections to their backend with bytes unchanged, half-close and resets propagated.
//
// Owns: listening sockets, their filter programs, relays (FlowOwner of conntrack entries).
// Must not: read config, throw per connection, log per connection (counters only).
// Invariants:
//   - a denied SYN never completes a handshake while the native filter is loaded and exact: the
//     program is attached before bind+listen (src/native/sock-filter.ts) and replaced atomically;
//   - the userland check after accept is the same decision; it only fires when the filter is
//     missing (no addon) or coarsened to fit BPF_MAXINSNS, and then resets (logged once);
//   - `this.policy` is read once per decision; swaps happen in `applyPolicy`.
//   - filter modes (src/dataplane/listener.ts): while the backend is down and raw refusal is
//     available the program drops every SYN and the Refuser answers allowed ones with RST|ACK
//     (linux-techniques.md §3).

import net from 'node:net';
import { INGRESS, EGRESS, PROTO_TCP } from '../model/types.js';
import type { CompiledPolicy } from '../policy/types.js';
import { VERDICT_ALLOW, VERDICT_UNTRACKED } from '../policy/types.js';
import { createTcpListener, nativeStatus } from '../native/sock-filter.js';
import { FlowEntry, EXPIRE_CUT, EXPIRE_IDLE, EXPIRE_SHUTDOWN, ST_ESTABLISHED, ST_SYN_SENT, ST_FIN_WAIT, type FlowOwner } from './conntrack/table.js';
import { flowEvents, publishFlow } from '../observe/events.js';
import { ListenerBase, type ListenerEnv, type ListenerSpec } from './listener.js';
export { MODE_RULES, MODE_DOWN, MODE_FULL, MODE_CLOSED, MODE_NAMES } from './listener.js';

export type TcpListenerSpec = ListenerSpec;

export interface DataplaneEnv extends ListenerEnv {
  /** Called once per flow when it ends (flow log). */
  onFlowEnd?: (e: FlowEntry) => void;
  ctTimeoutMs: (instName: string) => number;
}

export class TcpListener extends ListenerBase {
  private server: net.Server | null = null;
  readonly relays = new Set<TcpRelay>();

  constructor(id: number, spec: TcpListenerSpec, readonly env: DataplaneEnv) {
    super(id, spec, env);
  }

  get key(): string { return `tcp|${this.spec.address}|${this.spec.listenPort}`; }
  get flowCount(): number { return this.relays.size; }

  /** Binds and listens with the filter for `policy` already attached. */
  async start(policy: CompiledPolicy): Promise<void> {
    this.watchBackend();
    this.bindPolicy(policy);
    const program = this.program();
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

  protected recheckFlows(): void {
    for (const r of [...this.relays]) r.recheck();
  }

  private onConnection(client: net.Socket): void {
    const env = this.env;
    const remote = client.remoteAddress;
    if (remote === undefined || this.policy === null) { client.destroy(); return; }
    const verdict = this.decide(remote);
    if (!(verdict & VERDICT_ALLOW)) {
      // Only reachable without an exact kernel filter: the closest honest answer is a reset.
      env.counters.rejectedUser++;
      this.stats.rejected++;
      if (flowEvents.hasSubscribers) this.publish('reject', remote, client.remotePort ?? 0, 'userland-reset');
      client.resetAndDestroy();
      return;
    }
    const spec = this.spec;
    const entry = env.table.open({
      proto: PROTO_TCP, family: spec.family, inst: this.inst, dir: spec.kind === 'service' ? INGRESS : EGRESS,
      listener: this.id, tracked: !(verdict & VERDICT_UNTRACKED), state: ST_SYN_SENT,
      src: remote, srcPort: client.remotePort ?? 0, dst: spec.address, dstPort: spec.listenPort,
      rulePort: spec.rulePort, timeoutMs: env.ctTimeoutMs(spec.instName), owner: NO_OWNER,
    });
    if (entry === null) {
      // The table filled between the last filter swap and this SYN (the daemon swaps every
      // listener to drop-all when it fills); the handshake is done, so all that is left is a reset.
      env.counters.overflowDropped++;
      client.resetAndDestroy();
      return;
    }
    env.counters.accepted++;
    this.stats.accepted++;
    if (flowEvents.hasSubscribers) this.publish('open', remote, entry.srcPort, undefined, entry.tracked);
    const relay = new TcpRelay(this, client, entry);
    entry.owner = relay;
    this.relays.add(relay);
    relay.connect();
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
    this.fd = -1;             // Node owns the fd and closes it with the server
    // server.close() waits for every accepted connection to end: start it, drain, then destroy.
    const closed = server ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    if (drainMs > 0 && this.relays.size > 0) {
      const deadline = Date.now() + drainMs;
      while (this.relays.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    }
    for (const r of [...this.relays]) {
      if (r.entry.live) this.env.table.drop(r.entry, EXPIRE_SHUTDOWN);
      r.destroy();
    }
    await closed;
    this.env.monitor.unwatch(this.backendKey);
  }

}

const NO_OWNER: FlowOwner = { sample() {}, expire() {} };

/**
 * One relayed connection: client ↔ backend with Node's pipe (honours backpressure: a false
 * write() pauses the reader), allowHalfOpen so a FIN in one direction is forwarded as a FIN and
 * the other direction goes on, and an RST on one side turned into an RST on the other.
 */
export class TcpRelay implements FlowOwner {
  backend: net.Socket | null = null;
  private connected = false;
  private closedSides = 0;
  private blackholed = false;

  constructor(readonly listener: TcpListener, readonly client: net.Socket, public entry: FlowEntry) {}

  connect(): void {
    const spec = this.listener.spec;
    const client = this.client;
    client.setNoDelay(true);
    const opts: net.NetConnectOpts = { host: spec.backendHost, port: spec.backendPort, allowHalfOpen: true, noDelay: true };
    if (spec.localAddress) (opts as net.TcpNetConnectOpts).localAddress = spec.localAddress;
    const backend = net.connect(opts);
    this.backend = backend;
    backend.once('connect', () => {
      this.connected = true;
      this.entry.state = ST_ESTABLISHED;
    });
    client.on('error', (e: NodeJS.ErrnoException) => this.onError(client, backend, e));
    backend.on('error', (e: NodeJS.ErrnoException) => this.onError(backend, client, e));
    client.on('end', () => { if (this.entry.state === ST_ESTABLISHED) this.entry.state = ST_FIN_WAIT; });
    backend.on('end', () => { if (this.entry.state === ST_ESTABLISHED) this.entry.state = ST_FIN_WAIT; });
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

  private finish(): void {
    const env = this.listener.env;
    const e = this.entry;
    if (e.live) {
      this.sample(e);
      env.counters.bytesIn += e.bytesIn;
      env.counters.bytesOut += e.bytesOut;
      env.onFlowEnd?.(e);
      if (flowEvents.hasSubscribers) this.listener.publish('close', e.src, e.srcPort, undefined, e.tracked, e);
      env.table.close(e);
    }
    this.listener.relays.delete(this);
  }

  /** Closes both sockets at once (shutdown). */
  destroy(): void {
    this.client.destroy();
    this.backend?.destroy();
    this.listener.relays.delete(this);
  }

  sample(e: FlowEntry): void {
    e.bytesIn = this.client.bytesRead;
    e.bytesOut = this.client.bytesWritten;
  }

  /** After a policy swap: AWS cuts untracked flows whose rule is gone; tracked ones live on. */
  recheck(): void {
    const e = this.entry;
    if (!e.live || this.blackholed) return;
    const v = this.listener.decide(e.src);
    if (v & VERDICT_ALLOW) {
      e.tracked = !(v & VERDICT_UNTRACKED);
      return;
    }
    if (!e.tracked) {
      this.listener.env.counters.untrackedCut++;
      if (flowEvents.hasSubscribers) this.listener.publish('cut', e.src, e.srcPort, 'untracked-revoked', false, e);
      this.listener.env.table.drop(e, EXPIRE_CUT);
    }
  }

  expire(e: FlowEntry, reason: number): void {
    const env = this.listener.env;
    if (reason === EXPIRE_SHUTDOWN) { this.destroy(); return; }
    if (reason === EXPIRE_IDLE) {
      env.counters.idleExpired++;
      // AWS: once the entry is gone, the next packet is judged as new traffic. If the rules still
      // allow it, it is tracked again; otherwise it is dropped from now on.
      const v = this.listener.decide(e.src);
      if (v & VERDICT_ALLOW) {
        const again = env.table.open({
          proto: e.proto, family: e.family as 4 | 6, inst: e.inst, dir: e.dir, listener: e.listener,
          tracked: !(v & VERDICT_UNTRACKED), state: e.state, src: e.src, srcPort: e.srcPort, dst: e.dst,
          dstPort: e.dstPort, rulePort: e.rulePort, timeoutMs: e.timeoutMs, owner: this,
        });
        if (again) {
          this.entry = again;
          return;
        }
      }
    }
    this.blackhole();
  }

  /**
   * Packets of this flow are dropped from now on (AWS drops, it does not reset): stop relaying in
   * both directions and keep both sockets open and unread, so each peer sees its data go
   * unanswered until its own timeout. When either peer gives up, the other socket is closed.
   */
  private blackhole(): void {
    this.blackholed = true;
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
