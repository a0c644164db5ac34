// The running data plane, one owner: the listeners (keyed by listenerKey), the conntrack table,
// backend liveness, the refuser and the native relay's drain, and the one way a policy reaches
// them, install().
//
// Must not: read config or compile. Control hands over a compiled policy and the listener specs
// derived from its model (src/control/listeners.ts); this object neither parses nor validates.
// Invariants:
//   - installs are serialised (one queue): each runs whole before the next starts, so two
//     changes (a reload and an API call) can never leave a listener under the older policy;
//   - an install opens the listeners it adds first and fails whole (ListenerError) when one cannot
//     open: the running policy and listeners then stay exactly as they were;
//   - flows the native relay accepted but has not reported are booked under the old policy before
//     the switch (settle), then every kept listener re-decides its flows and re-attaches its
//     filter before install() resolves.

import type { Fault, Model } from '../model/types.js';
import { SgemuError } from '../model/errors.js';
import type { CompiledPolicy } from '../policy/types.js';
import { parseIpv4, parseIpv6Words } from '../policy/addr.js';
import { nativeStatus } from '../native/sock-filter.js';
import { RELAY_BUDGET_GROUPS, relayDrain, relayRoom, setRelayBusyPoll, setRelayThreads } from '../native/tcp-relay.js';

let nextRelayGroup = 0;
import { ConnTable, EXPIRE_SHUTDOWN, type FlowEntry } from './conntrack/table.js';
import type { Clock } from './clock.js';
import { Counters } from './counters.js';
import { BackendMonitor } from './liveness.js';
import { Refuser, type RefusalMode, type RefuserHooks } from './refuse.js';
import { TcpListener, tcpFaultFlows } from './tcp.js';
import { UdpListener } from './udp.js';
import { MODE_NAMES, listenerKey, sameFaults, type Listener, type ListenerSpec } from './listener.js';
import type { Privilege } from './privilege.js';

/** start() or a reload could not open every listener: each one, why, and the fix. Exit 2. */
export class ListenerError extends SgemuError {
  constructor(readonly failures: { listener: string; error: string }[], fix: string) {
    super('ListenerUnavailable', [
      `${failures.length} listener${failures.length === 1 ? '' : 's'} could not be opened:`,
      ...failures.map((f) => `  ${f.listener}: ${f.error}`),
      fix,
    ].join('\n'));
  }
}

export interface DataPlaneOptions {
  conntrackMax: number;
  clock: Clock;
  log: (line: string) => void;
  /** `sgemu exec`: instance addresses are added to the namespace's lo before listening on them. */
  namespace: boolean;
  /** The faults in force on a listener (its config faults with control's run-time changes on
   * top); absent: the config's. Asked at every install and by refreshFaults(). */
  faultsFor?: (spec: ListenerSpec) => readonly Fault[];
  /** Native TCP relay threads, taken when the relay starts (setRelayThreads); absent: 1. */
  relayThreads?: number;
  /** µs each relay thread polls before it sleeps (setRelayBusyPoll); absent: 0, never. */
  relayBusyPollUs?: number;
}

/** What the data plane tells control about (the flow log lives there). */
export interface DataPlaneEvents {
  onRejected: NonNullable<RefuserHooks['onRejected']>;
  onRefused: NonNullable<RefuserHooks['onRefused']>;
  /** A flow ended (after its bytes were added to its listener's total). */
  onFlowEnd: (e: FlowEntry) => void;
}

/** One listener as /v1/status shows it. */
export interface ListenerStatus {
  policyVersion: number;
  kind: ListenerSpec['kind'];
  instance: string;
  protocol: 'tcp' | 'udp';
  address: string;
  listenPort: number;
  rulePort: number;
  backend: string;
  /** For a backend given by name: the address flows go to now (the first that listens, else the
   * first resolved; null when the name did not resolve). Absent for an address. */
  backendAddress?: string | null;
  backendUp: boolean;
  filter: string;
  nativeFilter: boolean;
  exactFilter: boolean;
  flows: number;
  accepted: number;
  rejected: number;
  refused: number;
  bytesIn: number;
  bytesOut: number;
}

export class DataPlane {
  /** The policy in force (null before the first install). */
  policy: CompiledPolicy | null = null;
  readonly counters = new Counters();
  readonly table: ConnTable;
  readonly monitor = new BackendMonitor(20);
  readonly refuser: Refuser;
  readonly listeners = new Map<string, Listener>();
  private privilege: Privilege | null = null;
  private nextListenerId = 0;
  private kernelTcpFilter = true;
  private ctTimeoutMs = new Map<string, number>();
  private udpTimeoutsMs = new Map<string, [number, number]>();
  /** Bytes [in, out] of the flows that ended, per listener id (status(): per-listener totals). */
  private endedBytes = new Map<number, [number, number]>();
  private readonly nsAddresses = new Set<string>();
  private installQueue: Promise<unknown> = Promise.resolve();

  /** This table's group for the relay's auto-connect budget (several daemons may share a process). */
  private readonly relayGroup = nextRelayGroup++ % RELAY_BUDGET_GROUPS;

  constructor(private readonly opts: DataPlaneOptions, private readonly events: DataPlaneEvents) {
    this.table = new ConnTable(opts.conntrackMax, opts.clock);
    if (opts.relayThreads !== undefined) setRelayThreads(opts.relayThreads);
    if (opts.relayBusyPollUs !== undefined) setRelayBusyPoll(opts.relayBusyPollUs);
    // The relay thread connects accepts without asking JS only while this table has room for them
    // once JS books what is queued: the rest come unconnected and are parked (item 5, issue 17).
    relayRoom(this.relayGroup, () => this.table.max - this.table.count);
    this.refuser = new Refuser(this.counters, {
      onRejected: events.onRejected,
      onRefused: events.onRefused,
      onOverflow: () => { this.table.overflows++; },
      backendUpNow: (l) => this.monitor.upNow(l.backendKey),
      isTracked: (l, src, srcPort) => {
        const s = l.spec;
        if (s.family === 4) return this.table.find4(s.protocol, parseIpv4(src), srcPort, parseIpv4(s.address), s.listenPort) !== null;
        const w = new Uint32Array(8);
        w.set(parseIpv6Words(src), 0);
        w.set(parseIpv6Words(s.address), 4);
        return this.table.find6(s.protocol, w, srcPort, w, s.listenPort, 0, 4) !== null;
      },
    });
    // A full table closes every listener to new flows (drop, as a full kernel table does), and
    // room again reopens them.
    this.table.onFullChange = () => { for (const l of this.listeners.values()) l.refreshFilter(); this.refuser.refresh(); };
    this.table.onNearFullChange = () => { for (const l of this.listeners.values()) l.tableNearFullChanged?.(); };
  }

  /**
   * Takes the privilege the daemon acquired: kernel TCP filters or not, and the refuser's route
   * (raw answers or accept-then-reset, returned). `captureAll`: capture every listener's new
   * flows (flow-log REJECT records), not only those of listeners whose backend is down.
   */
  start(priv: Privilege, captureAll: boolean): RefusalMode {
    this.privilege = priv;
    this.kernelTcpFilter = priv.tcpFilter !== null;
    const mode = this.refuser.start(priv);
    this.refuser.captureAll = captureAll;
    this.refuser.needsAnswers = (l) => !this.monitor.isUp(l.backendKey);
    this.monitor.onChange((key, up) => {
      this.refuser.refresh();     // capture first, then drop: no SYN falls between the two
      for (const l of this.listeners.values()) if (l.backendKey === key) l.refreshFilter();
      const other = up ? null : this.monitor.otherLoopbackListener(key);
      this.opts.log(`backend ${this.monitor.label(key)} is ${up ? 'up' : 'down'}${other === null ? '' : otherLoopbackHint(other)}`);
    });
    return mode;
  }

  /** Whether the native addon (socket filters, relays) loaded. */
  get nativeLoaded(): boolean { return nativeStatus().loaded; }

  /** Capture every listener's new flows (while the flow log or an event watcher needs them). */
  setCaptureAll(all: boolean): void {
    if (this.refuser.captureAll === all) return;
    this.refuser.captureAll = all;
    this.refuser.refresh();
  }

  /**
   * Installs a policy and the listeners of its model, serialised: each install waits for the
   * previous one. `compile` is called when this install's turn comes, with the version after the
   * one then in force (a rejected install uses no version number); `specsOf` gives the listeners
   * that policy's model wants (also at that turn: the model may be derived from state that earlier
   * installs changed). Resolves with the installed policy; rejects with ListenerError (nothing
   * changed) when a listener cannot open.
   */
  install(compile: (version: number) => CompiledPolicy, specsOf: (policy: CompiledPolicy) => readonly ListenerSpec[]): Promise<CompiledPolicy> {
    const run = this.installQueue.then(async () => {
      const policy = compile((this.policy?.version ?? 0) + 1);
      await this.swap(policy, specsOf(policy));
      return policy;
    });
    this.installQueue = run.catch(() => {});
    return run;
  }

  /**
   * Opens the listeners `policy` adds, then (only when every one opened) switches to it, updates
   * the kept listeners and closes the ones it drops. A listener that cannot open fails the whole
   * swap with ListenerError and the running policy and listeners stay as they were.
   */
  private async swap(policy: CompiledPolicy, specs: readonly ListenerSpec[]): Promise<void> {
    const log = this.opts.log;
    const wanted = new Map<string, ListenerSpec>();
    for (const s of specs) wanted.set(listenerKey(s), s);
    const opened = new Map<string, Listener>();
    const failures: { listener: string; error: string; code: string }[] = this.addNamespaceAddresses(policy.model);
    for (const [key, spec] of wanted) {
      if (this.listeners.has(key)) continue;
      const nl = this.newListener(spec);
      try {
        await nl.start(policy);
        opened.set(key, nl);
      } catch (e) {
        await nl.close().catch(() => {});
        failures.push({ listener: nl.describe(), error: e instanceof Error ? e.message : String(e), code: e instanceof SgemuError ? e.code : '' });
      }
    }
    if (failures.length > 0) {
      await Promise.all([...opened.values()].map((l) => l.close().catch(() => {})));
      throw new ListenerError(failures, listenFix(failures.map((f) => f.code)));
    }
    // Flows the native relay accepted under the old rules but has not reported yet are booked
    // now, under the old policy, so that the new one treats them as existing connections
    // (tracked ones live on, untracked ones are cut) rather than as new ones.
    this.settle();
    this.policy = policy;
    this.ctTimeoutMs = new Map(policy.model.instances.map((i) => [i.name, i.connectionTracking.tcpEstablishedTimeoutS * 1000]));
    this.udpTimeoutsMs = new Map(policy.model.instances.map((i) => [i.name,
      [i.connectionTracking.udpTimeoutS * 1000, i.connectionTracking.udpStreamTimeoutS * 1000]]));
    for (const [key, l] of this.listeners) {
      if (!wanted.has(key)) {
        this.listeners.delete(key);
        await l.close();
        this.endedBytes.delete(l.id);
        log(`closed ${l.describe()}`);
      }
    }
    for (const [key, spec] of wanted) {
      const l = this.listeners.get(key);
      if (l) { l.applyPolicy(policy, spec); continue; }
      const nl = opened.get(key)!;
      // Opened under this very policy before the switch: a no-op rebind that also arms the
      // "previous policy" check of connections accepted during the swap.
      this.listeners.set(key, nl);
      const inst = policy.instanceIndex.get(spec.instName) ?? 0;
      const other = this.monitor.otherLoopbackListener(nl.backendKey);
      log(`listening ${nl.describe()} [${policy.ruleCount(inst, spec.kind === 'service' ? 0 : 1)} ${spec.kind === 'service' ? 'ingress' : 'egress'} rules, filter ${MODE_NAMES[nl.mode]}${nl.nativeFilter ? '' : ', userland only: denied connections are reset'}]` +
        (other === null ? '' : otherLoopbackHint(other)));
    }
    this.refuser.setListeners(this.listeners.values());
    this.refreshFaults();
    this.counters.policySwaps++;
  }

  /** Hands every listener the faults in force on it, where they changed (SPEC.md §9). */
  refreshFaults(): void {
    for (const l of this.listeners.values()) {
      const want = this.opts.faultsFor?.(l.spec) ?? l.spec.faults;
      if (sameFaults(want, l.faults)) continue;
      try {
        l.setFaults(want);
      } catch (e) {
        this.opts.log(`listener ${l.describe()}: faults not applied: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  }

  /** Per TCP fault type, the flows that got it since start (metrics). */
  faultFlows(): Record<string, number> { return tcpFaultFlows(); }

  /** What UDP faults did to datagrams, summed over the UDP listeners (metrics). */
  faultDatagrams(): Record<string, number> {
    const out: Record<string, number> = { lost: 0, duplicated: 0, reordered: 0, delayed: 0, over_cap: 0 };
    for (const l of this.listeners.values()) {
      if (!(l instanceof UdpListener)) continue;
      const d = l.faultDatagrams();
      out.lost! += d.lost; out.duplicated! += d.duplicated; out.reordered! += d.reordered; out.delayed! += d.delayed; out.over_cap! += d.overCap;
    }
    return out;
  }

  /** `sgemu exec`: the namespace's lo gets every instance's addresses (once each), so listeners
   * can bind them and the command can connect from them. */
  private addNamespaceAddresses(model: Model): { listener: string; error: string; code: string }[] {
    const netd = this.privilege?.netd;
    const failures: { listener: string; error: string; code: string }[] = [];
    if (!this.opts.namespace || !netd) return failures;
    for (const inst of model.instances) {
      for (const [family, address] of [[4, inst.address], [6, inst.address6]] as const) {
        if (!address || this.nsAddresses.has(address)) continue;
        try {
          netd.addAddress(family, address);
          this.nsAddresses.add(address);
        } catch (e) {
          failures.push({ listener: `address ${address} of instance ${inst.name}`, error: e instanceof Error ? e.message : String(e), code: e instanceof SgemuError ? e.code : '' });
        }
      }
    }
    return failures;
  }

  private newListener(spec: ListenerSpec): Listener {
    const common = {
      table: this.table, counters: this.counters, monitor: this.monitor,
      rawRefusal: () => this.refuser.mode === 'raw', kernelTcpFilter: this.kernelTcpFilter, log: this.opts.log,
      onFlowEnd: (e: FlowEntry) => { this.bookEnded(e); this.events.onFlowEnd(e); },
    };
    return spec.protocol === 6
      ? new TcpListener(this.nextListenerId++, spec, { ...common, ctTimeoutMs: (name) => this.ctTimeoutMs.get(name) ?? 432000_000, relayGroup: this.relayGroup })
      : new UdpListener(this.nextListenerId++, spec, { ...common, udpTimeoutsMs: (name) => this.udpTimeoutsMs.get(name) ?? [30_000, 180_000] });
  }

  /** Adds an ended flow's bytes to its listener's total (listenerStatus() adds the live flows'). */
  private bookEnded(e: FlowEntry): void {
    const b = this.endedBytes.get(e.listenerId);
    if (b) { b[0] += e.bytesIn; b[1] += e.bytesOut; } else this.endedBytes.set(e.listenerId, [e.bytesIn, e.bytesOut]);
  }

  /** Books the flows the native relay has not reported yet (its events travel in batches of up
   * to a few ms), so that what is read next is exact. */
  settle(): void { relayDrain(); }

  /** One sweeper step: a bounded slice of the table (all of it about once a second at 100 ms). */
  sweep(): void {
    const budget = Math.max(1024, Math.ceil(this.table.capacity / 10));
    this.table.sweep(budget);
  }

  /** Every listener as /v1/status shows it. Call settle() first for exact numbers. */
  listenerStatus(): ListenerStatus[] {
    // Bytes per listener: the flows that ended plus the live ones as last sampled (the sweeper
    // samples every flow about once a second), without sampling here: one pass, no relay calls.
    const liveBytes = new Map<number, [number, number]>();
    for (const e of this.table.live()) {
      const b = liveBytes.get(e.listenerId);
      if (b) { b[0] += e.bytesIn; b[1] += e.bytesOut; } else liveBytes.set(e.listenerId, [e.bytesIn, e.bytesOut]);
    }
    const bytes = (id: number, i: 0 | 1) => (this.endedBytes.get(id)?.[i] ?? 0) + (liveBytes.get(id)?.[i] ?? 0);
    return [...this.listeners.values()].map((l) => ({
      policyVersion: l.policyVersion,
      kind: l.spec.kind, instance: l.spec.instName, protocol: l.spec.protocol === 6 ? 'tcp' : 'udp', address: l.spec.address,
      listenPort: l.spec.listenPort, rulePort: l.spec.rulePort, backend: `${l.spec.backendHost}:${l.spec.backendPort}`,
      ...(l.spec.backendAddrs ? { backendAddress: l.spec.backendAddrs.length > 0 ? l.backendAddress() : null } : {}),
      backendUp: this.monitor.isUp(l.backendKey), filter: MODE_NAMES[l.mode]!, nativeFilter: l.nativeFilter,
      exactFilter: l.filterExact, flows: l.flowCount,
      accepted: l.stats.accepted, rejected: l.stats.rejected, refused: l.stats.refused,
      bytesIn: bytes(l.id, 0), bytesOut: bytes(l.id, 1),
    }));
  }

  /** Stops accepting, lets open flows finish for up to drainMs, then closes every listener,
   * drops what is left in the table and stops the refuser and liveness. */
  async close(drainMs = 2000): Promise<void> {
    relayRoom(this.relayGroup, null);
    this.table.onFullChange = null;
    this.table.onNearFullChange = null;
    await Promise.all([...this.listeners.values()].map((l) => l.close(drainMs)));
    this.listeners.clear();
    for (const e of [...this.table.live()]) this.table.drop(e, EXPIRE_SHUTDOWN);
    this.refuser.close();
    this.monitor.close();
  }
}

/** The one thing to do about listeners that failed, by their error codes. */
function listenFix(codes: string[]): string {
  if (codes.includes('EADDRINUSE')) return 'fix: another process (or another sgemu on the same config) holds the address; stop it, or change listenPort in the config';
  if (codes.includes('EACCES')) return 'fix: ports below 1024 need privilege; give the service a listenPort of 1024 or more (rules still see its port)';
  if (codes.includes('EADDRNOTAVAIL')) return 'fix: the address is not local; instances live on 127.0.0.0/8 and ::1 (other addresses inside `sgemu exec`)';
  if (codes.includes('EPERM')) return "fix: see 'sgemu doctor' for the privilege this needs";
  return "fix: see the errors above, and 'sgemu doctor'";
}

/** The log's hint for a loopback backend that is down while its port listens on the other loopback address. */
function otherLoopbackHint(other: string): string {
  return ` (something listens on ${other} instead: a server bound to "localhost" may have taken that address alone; ` +
    `use backend: ${other}, or localhost:PORT where localhost is both addresses)`;
}
