// What the TCP and UDP listeners share: their spec (derived from the model by control), the
// filter modes, and the interface the daemon drives them through.
//
// Filter modes per listener:
//   RULES      the policy's source ranges (normal)
//   DOWN       backend down and raw refusal available: drop every new flow; the Refuser sees it
//              through pcap and answers allowed ones (RST|ACK, ICMP port unreachable)
//   FULL       conntrack full: drop every new flow, as a full kernel table does (silent timeout)
//   CLOSED     outbound entry denied by egress or by the target's ingress: drop every new flow

import { INGRESS, EGRESS, type Fault } from '../model/types.js';
import type { CompiledPolicy, SourceRanges } from '../policy/types.js';
import { VERDICT_ALLOW, VERDICT_NACL_DENY } from '../policy/types.js';
import { parseIpv4, parseIpv6Words } from '../policy/addr.js';
import { compileSourceFilter, compileDropAllNew, compileAcceptAll, encodeProgram } from '../policy/bpf.js';
import { attachFilter, releaseSocket } from '../native/sock-filter.js';
import type { ConnTable } from './conntrack/table.js';
import type { Counters } from './counters.js';
import { BackendMonitor, type Backend } from './liveness.js';

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
  /** When backendHost / probeHost is a name: its addresses, resolved at load (empty: it did not
   * resolve). Flows go to the first that listens (backendAddress). Undefined for an address. */
  backendAddrs?: readonly string[];
  probeAddrs?: readonly string[];
  /** outbound: bind relayed flows to the instance's address so the target's rules see it. */
  localAddress: string | null;
  /** outbound: the destination the rules see, and the target instance (null for an outside host). */
  asAddress: string | null;
  targetInstName: string | null;
  /** Faults from the config (SPEC.md §9); the daemon may add or remove some at run time (setFaults). */
  faults: readonly Fault[];
}

export interface Listener {
  readonly id: number;
  readonly stats: { accepted: number; rejected: number; refused: number };
  spec: ListenerSpec;
  mode: number;
  filterExact: boolean;
  backendKey: string;
  /** The address relayed flows connect to (a name's live address). */
  backendAddress(): string;
  readonly nativeFilter: boolean;
  /** Live flows of this listener. */
  readonly flowCount: number;
  start(policy: CompiledPolicy): Promise<void>;
  applyPolicy(policy: CompiledPolicy, spec?: ListenerSpec): void;
  refreshFilter(force?: boolean): void;
  /** The conntrack table crossed its near-full mark (ConnTable.onNearFullChange). */
  tableNearFullChanged?(): void;
  /** The verdict for a new flow from `remote`:`remotePort` (-1: port unknown, NACL reply check skipped). */
  decide(remote: string, remotePort?: number): number;
  /** The version of the policy this listener decides by (its filter and its live flows). */
  readonly policyVersion: number;
  describe(): string;
  close(drainMs?: number): Promise<void>;
  /** The faults in force on this listener's allowed flows, as last set. */
  readonly faults: readonly Fault[];
  /** Applies faults to new flows and to the live ones (SPEC.md §9). */
  setFaults(faults: readonly Fault[]): void;
  /** UDP: set by the Refuser (setListeners): sends the client an ICMP port unreachable from the
   * listening address, as the backend's own answer; false when exact refusal is unavailable. */
  refuseClient?: ((src: string, srcPort: number) => boolean) | null;
}

/** Two fault lists that behave alike (same chain, same attributes; source positions aside). */
export function sameFaults(a: readonly Fault[], b: readonly Fault[]): boolean {
  const key = (f: Fault): string => `${f.name}|${f.type}|${f.stream}|${f.toxicity}|${JSON.stringify(f.attributes)}`;
  return a.length === b.length && a.every((f, i) => key(f) === key(b[i]!));
}

/** The fault target a listener serves: `web:tcp/8080` (a service, by rule port) or `app:out:tcp/5432`
 * (an outbound entry, by its port). Both address families of one service share it. */
export function faultTarget(s: Pick<ListenerSpec, 'kind' | 'instName' | 'protocol' | 'rulePort' | 'listenPort'>): string {
  const proto = s.protocol === 6 ? 'tcp' : 'udp';
  return s.kind === 'service' ? `${s.instName}:${proto}/${s.rulePort}` : `${s.instName}:out:${proto}/${s.listenPort}`;
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
  faults: readonly Fault[] = [];

  constructor(id: number, spec: ListenerSpec, protected readonly base: ListenerEnv) {
    this.id = id;
    this.spec = spec;
  }

  /** A kernel filter is attached to this listener's socket (it decides new flows). */
  get nativeFilter(): boolean { return this.fd >= 0 && (this.spec.protocol === 17 || this.base.kernelTcpFilter); }
  get policyVersion(): number { return this.policy?.version ?? 0; }
  abstract get flowCount(): number;
  abstract start(policy: CompiledPolicy): Promise<void>;
  abstract close(drainMs?: number): Promise<void>;
  /** Re-decides live flows after a policy swap (untracked flows whose rule went are cut). */
  protected abstract recheckFlows(): void;

  setFaults(faults: readonly Fault[]): void {
    const was = this.faults;
    this.faults = faults;
    if (!this.installFaults(faults) && faults.length > 0 && was.length === 0) {
      this.base.log(`listener ${this.describe()}: faults need the native relay, which this listener does not use; they are not applied`);
    }
  }

  /** Hands the faults to the relay; false when this listener cannot apply them. */
  protected installFaults(_faults: readonly Fault[]): boolean { return false; }

  private get kindName(): 'tcp-syn' | 'udp' { return this.spec.protocol === 6 ? 'tcp-syn' : 'udp'; }

  protected watchBackend(): void {
    const s = this.spec;
    this.backendKey = this.base.monitor.watch(probeOf(s));
    if (this.base.monitor.isRemote(this.backendKey)) {
      this.base.log(`listener ${this.describe()}: the backend is not on this machine, so whether it listens is learnt from connects: ` +
        `the client whose flow finds it stopped is reset, the ones after are refused until ${s.protocol === 6 ? 'a probe connect finds it back (one a second)' : 'a second has passed'}`);
    }
  }

  /**
   * The address relayed flows connect to. A backend given by name (backendHost === probeHost then,
   * see listenerSpecs) goes to the first of its addresses that listens, or to the first address
   * while none does; a name that did not resolve stays a name (its connects fail: refused).
   */
  backendAddress(): string {
    const addrs = this.spec.backendAddrs;
    if (addrs === undefined) return this.spec.backendHost;
    return this.base.monitor.liveAddress(this.backendKey) ?? addrs[0] ?? this.spec.backendHost;
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
      if (BackendMonitor.key(probeOf(spec)) !== this.backendKey) {
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
    if (this.spec.kind === 'outbound') {
      // NACLs: the replies go to the app's port, so only the ports their entries let back in pass.
      const ports = this.outboundClientPorts(this.policy!);
      if (ports === null) return encodeProgram(compileAcceptAll());
      const all = this.spec.family === 4
        ? { v4: Uint32Array.from([0, 0xffffffff]), v6: [], ports4: [ports] }
        : { v4: new Uint32Array(0), v6: [0n, (1n << 128n) - 1n], ports6: [ports] };
      return encodeProgram(compileSourceFilter(this.kindName, this.spec.family, all).insns);
    }
    const { insns, exact } = compileSourceFilter(this.kindName, this.spec.family, this.allowedSources(this.policy!));
    this.filterExact = exact;
    if (!exact && !this.warnedInexact) {
      this.warnedInexact = true;
      this.base.log(`listener ${this.describe()}: rule set too large for one socket filter (BPF_MAXINSNS); ` +
        'using a coarser kernel filter plus a userland check (TCP: reset; UDP: drop) for the sources it lets through');
    }
    return encodeProgram(insns);
  }

  /** The verdict for a new flow from a local source address and port (the real socket peer). */
  decide(remote: string, remotePort = -1): number {
    return this.verdictUnder(this.policy!, this.inst, this.outboundVerdict, remote, remotePort);
  }

  /**
   * The verdict of the policy before the last swap (0 before any). A connection that the
   * current, exact filter would have dropped and that the kernel still let through had its SYN
   * judged by the filter before the swap: it is a connection that existed when the rules changed.
   */
  decidePrevious(remote: string, remotePort = -1): number {
    const p = this.prev;
    return p === null ? 0 : this.verdictUnder(p.policy, p.inst, p.outboundVerdict, remote, remotePort);
  }

  private verdictUnder(p: CompiledPolicy, inst: number, outboundVerdict: number, remote: string, remotePort: number): number {
    if (inst < 0) return 0;
    if (this.spec.kind === 'outbound') {
      if (!(outboundVerdict & VERDICT_ALLOW) || !p.naclsActive) return outboundVerdict;
      return this.outboundNacl(p, inst, remotePort) === VERDICT_ALLOW ? outboundVerdict : VERDICT_NACL_DENY;
    }
    const proto = this.spec.protocol;
    if (this.spec.family === 4) return p.decideIngress4(inst, proto, parseIpv4(remote), remotePort, this.spec.rulePort);
    return p.decideIngress6(inst, proto, parseIpv6Words(remote), remotePort, this.spec.rulePort);
  }

  /** NACLs of an outbound entry's flow: the instance → the destination the rules see (the target
   * instance's subnet when it is one), replies to the app's port. */
  private outboundNacl(p: CompiledPolicy, inst: number, clientPort: number): number {
    const s = this.spec;
    if (!s.asAddress) return 0;
    const src = p.model.instances[inst]!;
    const t = s.targetInstName === null ? -1 : p.instanceIndex.get(s.targetInstName) ?? -1;
    if (!s.asAddress.includes(':')) return p.naclFlow4(inst, t, s.protocol, parseIpv4(src.address), parseIpv4(s.asAddress), clientPort, s.rulePort);
    if (!src.address6) return VERDICT_ALLOW;
    return p.naclFlow6(inst, t, s.protocol, parseIpv6Words(src.address6), parseIpv6Words(s.asAddress), clientPort, s.rulePort);
  }

  /** The app ports whose flows the NACLs pass (merged pairs), null = every port; [] = none. */
  private outboundClientPorts(p: CompiledPolicy): number[] | null {
    if (!p.naclsActive || this.inst < 0) return null;
    if (this.outboundNacl(p, this.inst, -1) !== VERDICT_ALLOW) return [];
    // The reply check for every port: 65536 lookups (a few ms), on a policy swap or mode change only.
    const out: number[] = [];
    let lo = -1;
    let prev = false;
    for (let port = 0; port <= 65535; port++) {
      const ok = this.outboundNacl(p, this.inst, port) === VERDICT_ALLOW;
      if (ok && !prev) lo = port;
      if (!ok && prev) out.push(lo, port - 1);
      prev = ok;
    }
    if (prev) out.push(lo, 65535);
    return out.length === 2 && out[0] === 0 && out[1] === 65535 ? null : out;
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

/** The backend whose liveness decides this listener's refusals (its key names the watch). */
function probeOf(s: ListenerSpec): Backend {
  return { proto: s.protocol, host: s.probeHost, port: s.probePort, ...(s.probeAddrs ? { addrs: s.probeAddrs } : {}) };
}
