// What the TCP and UDP listeners share: their spec (derived from the model by control), the
// filter modes, and the interface the daemon drives them through.
//
// Filter modes per listener:
//   RULES      the policy's source ranges (normal)
//   DOWN       backend down and raw refusal available: drop every new flow; the Refuser sees it
//              through pcap and answers allowed ones (RST|ACK, ICMP port unreachable)
//   FULL       conntrack full: drop every new flow, as a full kernel table does (silent timeout)
//   CLOSED     outbound entry denied by egress or by the target's ingress: drop every new flow

import { INGRESS, EGRESS } from '../model/types.js';
import type { CompiledPolicy, SourceRanges } from '../policy/types.js';
import { VERDICT_ALLOW } from '../policy/types.js';
import { parseIpv4, parseIpv6Words } from '../policy/addr.js';
import { compileSourceFilter, compileDropAllNew, compileAcceptAll, encodeProgram } from '../policy/bpf.js';
import { attachFilter, releaseSocket } from '../native/sock-filter.js';
import type { ConnTable } from './conntrack/table.js';
import type { Counters } from './counters.js';
import type { BackendMonitor } from './liveness.js';

export const MODE_RULES = 0;
export const MODE_DOWN = 1;
export const MODE_FULL = 2;
export const MODE_CLOSED = 3;
export const MODE_NAMES = ['rules', 'backend-down', 'conntrack-full', 'denied'] as const;

export interface ListenerSpec {
  kind: 'service' | 'outbound';
  protocol: 6 | 17;
  instName: string;
  family: 4 | 6;
  address: string;          // listen address (the instance's)
  listenPort: number;
  rulePort: number;         // the port the rules see
  backendHost: string;      // where relayed flows go
  backendPort: number;
  /** Whose liveness decides refusal: the backend itself, or for an outbound entry to another
   * instance, that instance's service backend (its sgemu listener is always up). */
  probeHost: string;
  probePort: number;
  /** outbound: bind relayed flows to the instance's address so the target's rules see it. */
  localAddress: string | null;
  /** outbound: the destination the rules see, and the target instance (null for an outside host). */
  asAddress: string | null;
  targetInstName: string | null;
}

export interface Listener {
  readonly id: number;
  readonly stats: { accepted: number; rejected: number; refused: number };
  spec: ListenerSpec;
  mode: number;
  filterExact: boolean;
  backendKey: string;
  readonly nativeFilter: boolean;
  /** Live flows of this listener. */
  readonly flowCount: number;
  start(policy: CompiledPolicy): Promise<void>;
  applyPolicy(policy: CompiledPolicy, spec?: ListenerSpec): void;
  refreshFilter(force?: boolean): void;
  /** The conntrack table crossed its near-full mark (ConnTable.onNearFullChange). */
  tableNearFullChanged?(): void;
  decide(remote: string): number;
  describe(): string;
  close(drainMs?: number): Promise<void>;
}

export function listenerKey(s: ListenerSpec): string {
  return `${s.protocol === 6 ? 'tcp' : 'udp'}|${s.address}|${s.listenPort}`;
}

/** What every listener is handed by the daemon. */
export interface ListenerEnv {
  table: ConnTable;
  counters: Counters;
  monitor: BackendMonitor;
  /** true when the Refuser can answer new flows (CAP_NET_RAW + libpcap + raw socket). */
  rawRefusal: () => boolean;
  /** Whether TCP listeners get a kernel filter (false only in --fallback without CAP_NET_ADMIN:
   * denied connections are then accepted and reset in userland). UDP filters need no privilege. */
  kernelTcpFilter: boolean;
  log: (line: string) => void;
}

const scratch6 = new Uint32Array(4);

/**
 * The policy side of a listener, shared by TCP and UDP: which instance it speaks for, the verdict
 * for a source, the filter mode and program, and swapping both on a policy change. Subclasses own
 * the sockets and the flows.
 */
export abstract class ListenerBase implements Listener {
  spec: ListenerSpec;
  readonly id: number;
  protected fd = -1;
  protected policy: CompiledPolicy | null = null;
  protected inst = -1;
  protected outboundVerdict = 0;   // outbound: the same for every client
  /** The policy before the last swap (decidePrevious). */
  private prev: { policy: CompiledPolicy; inst: number; outboundVerdict: number } | null = null;
  mode = MODE_RULES;
  filterExact = true;
  backendKey = '';
  /** Per-listener outcomes for metrics (labelled by instance, protocol and rule port). */
  readonly stats = { accepted: 0, rejected: 0, refused: 0 };
  private warnedInexact = false;

  constructor(id: number, spec: ListenerSpec, protected readonly base: ListenerEnv) {
    this.id = id;
    this.spec = spec;
  }

  /** A kernel filter is attached to this listener's socket (it decides new flows). */
  get nativeFilter(): boolean { return this.fd >= 0 && (this.spec.protocol === 17 || this.base.kernelTcpFilter); }
  abstract get flowCount(): number;
  abstract start(policy: CompiledPolicy): Promise<void>;
  abstract close(drainMs?: number): Promise<void>;
  /** Re-decides live flows after a policy swap (untracked flows whose rule went are cut). */
  protected abstract recheckFlows(): void;

  private get kindName(): 'tcp-syn' | 'udp' { return this.spec.protocol === 6 ? 'tcp-syn' : 'udp'; }

  protected watchBackend(): void {
    this.backendKey = this.base.monitor.watch({ proto: this.spec.protocol, host: this.spec.probeHost, port: this.spec.probePort });
  }

  describe(): string {
    const s = this.spec;
    const proto = s.protocol === 6 ? 'tcp' : 'udp';
    const addr = s.family === 6 ? `[${s.address}]` : s.address;
    return s.kind === 'service'
      ? `${s.instName} ${proto} ${addr}:${s.listenPort} (rules see :${s.rulePort}) -> ${s.backendHost}:${s.backendPort}`
      : `${s.instName} outbound ${proto} ${addr}:${s.listenPort} -> ${s.targetInstName ?? s.asAddress}:${s.rulePort} via ${s.backendHost}:${s.backendPort}`;
  }

  /** Takes a new policy (and spec, on reload): re-decides live flows, then swaps the filter. */
  applyPolicy(policy: CompiledPolicy, spec?: ListenerSpec): void {
    if (spec) {
      if (spec.probeHost !== this.spec.probeHost || spec.probePort !== this.spec.probePort) {
        const old = this.backendKey;
        this.spec = spec;
        this.watchBackend();
        this.base.monitor.unwatch(old);
      }
      this.spec = spec;
    }
    this.bindPolicy(policy);
    this.recheckFlows();
    this.refreshFilter(true);
  }

  protected bindPolicy(policy: CompiledPolicy): void {
    if (this.policy !== null) this.prev = { policy: this.policy, inst: this.inst, outboundVerdict: this.outboundVerdict };
    this.policy = policy;
    this.inst = policy.instanceIndex.get(this.spec.instName) ?? -1;
    if (this.spec.kind === 'outbound') this.outboundVerdict = this.decideOutbound(policy);
  }

  /** Recomputes the mode from backend liveness, table fill and policy; attaches if it changed. */
  refreshFilter(force = false): void {
    const prev = this.mode;
    const next = this.computeMode();
    if (!force && prev === next && next !== MODE_RULES) return;
    if (!this.nativeFilter) { this.mode = next; return; }
    try {
      attachFilter(this.fd, this.program());
      this.base.counters.filterAttaches++;
    } catch (e) {
      // Never throw into a connection or timer callback; the old program stays in force.
      this.base.log(`listener ${this.describe()}: cannot attach the socket filter: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  protected computeMode(): number {
    if (this.base.table.full) return MODE_FULL;
    if (this.spec.kind === 'outbound' && !(this.outboundVerdict & VERDICT_ALLOW)) return MODE_CLOSED;
    if (!this.base.monitor.isUp(this.backendKey) && this.base.rawRefusal()) return MODE_DOWN;
    return MODE_RULES;
  }

  /** The sources a RULES-mode program lets through (UDP adds its live flows' sources). */
  protected allowedSources(p: CompiledPolicy): SourceRanges {
    return p.ingressSources(this.inst, this.spec.protocol, this.spec.rulePort);
  }

  /** The program to open the socket with: null when no kernel filter can be attached here,
   * and then every new flow is judged in userland (filterExact false: denied ones are reset). */
  protected initialProgram(): Buffer | null {
    if (this.spec.protocol === 17 || this.base.kernelTcpFilter) return this.program();
    this.mode = this.computeMode();
    this.filterExact = false;
    return null;
  }

  /** The helper (if sockets come from it) forgets this listener's socket. */
  protected releaseSocket(): void {
    try { releaseSocket(this.spec.protocol, this.spec.family, this.spec.address, this.spec.listenPort); } catch { /* helper gone */ }
  }

  /** The program for the current mode (and sets `mode`). */
  protected program(): Buffer {
    this.mode = this.computeMode();
    if (this.mode !== MODE_RULES) return encodeProgram(compileDropAllNew(this.kindName));
    if (this.spec.kind === 'outbound') return encodeProgram(compileAcceptAll());
    const { insns, exact } = compileSourceFilter(this.kindName, this.spec.family, this.allowedSources(this.policy!));
    this.filterExact = exact;
    if (!exact && !this.warnedInexact) {
      this.warnedInexact = true;
      this.base.log(`listener ${this.describe()}: rule set too large for one socket filter (BPF_MAXINSNS); ` +
        'using a coarser kernel filter plus a userland check (TCP: reset; UDP: drop) for the sources it lets through');
    }
    return encodeProgram(insns);
  }

  /** The verdict for a new flow from a local source address (the real socket peer). */
  decide(remote: string): number {
    return this.verdictUnder(this.policy!, this.inst, this.outboundVerdict, remote);
  }

  /**
   * The verdict of the policy before the last swap (0 before any). A connection that the
   * current, exact filter would have dropped and that the kernel still let through had its SYN
   * judged by the filter before the swap: it is a connection that existed when the rules changed.
   */
  decidePrevious(remote: string): number {
    const p = this.prev;
    return p === null ? 0 : this.verdictUnder(p.policy, p.inst, p.outboundVerdict, remote);
  }

  private verdictUnder(p: CompiledPolicy, inst: number, outboundVerdict: number, remote: string): number {
    if (inst < 0) return 0;
    if (this.spec.kind === 'outbound') return outboundVerdict;
    const proto = this.spec.protocol;
    if (this.spec.family === 4) return p.decide4(inst, INGRESS, proto, p.appear4(parseIpv4(remote)), this.spec.rulePort);
    const w = parseIpv6Words(remote);
    const a = p.appear6(w[0]!, w[1]!, w[2]!, w[3]!, scratch6) ? scratch6 : w;
    return p.decide6(inst, INGRESS, proto, a[0]!, a[1]!, a[2]!, a[3]!, this.spec.rulePort);
  }

  /** Egress of the instance to the destination the rules see, and the target instance's ingress. */
  private decideOutbound(p: CompiledPolicy): number {
    if (this.inst < 0 || !this.spec.asAddress) return 0;
    const src = p.model.instances[this.inst]!;
    const proto = this.spec.protocol;
    let v: number;
    if (!this.spec.asAddress.includes(':')) v = p.decide4(this.inst, EGRESS, proto, parseIpv4(this.spec.asAddress), this.spec.rulePort);
    else {
      const w = parseIpv6Words(this.spec.asAddress);
      v = p.decide6(this.inst, EGRESS, proto, w[0]!, w[1]!, w[2]!, w[3]!, this.spec.rulePort);
    }
    if (!(v & VERDICT_ALLOW) || this.spec.targetInstName === null) return v;
    const t = p.instanceIndex.get(this.spec.targetInstName);
    if (t === undefined) return 0;
    return p.decide4(t, INGRESS, proto, parseIpv4(src.address), this.spec.rulePort) & VERDICT_ALLOW ? v : 0;
  }
}
