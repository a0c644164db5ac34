// The daemon's lifecycle: load → compile → listen → serve; reload as a swap; drain on stop.
//
// Owns: the live CompiledPolicy reference, the listeners (keyed by protocol + address + port),
// the conntrack table and its sweeper, backend liveness, the refuser, flow log, API server.
// Invariants:
//   - a policy change is a swap: a new CompiledPolicy is built beside the live one, and only a
//     valid one replaces it; a rejected reload changes nothing (STYLE.md);
//   - after a swap every listener re-decides its live flows (untracked ones whose rule is gone
//     are cut, tracked ones live on) and re-attaches its socket filter before the swap returns,
//     so new flows see the change as soon as reload() resolves.

import { watch as fsWatch, readFileSync, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import type { Model } from '../model/types.js';
import { ConfigErrors, SgemuError } from '../model/errors.js';
import { acquireNamespace, acquirePrivilege, outcomes, unavailableMessage, PrivilegeError, type Privilege } from '../dataplane/privilege.js';
import { compileAcceptAll, encodeProgram } from '../policy/bpf.js';
import { loadConfigFile, loadConfigText, setAddressScope } from '../config/load.js';
import { compilePolicy } from '../policy/compile.js';
import type { CompiledPolicy } from '../policy/types.js';
import { ConnTable, EXPIRE_SHUTDOWN, type FlowEntry } from '../dataplane/conntrack/table.js';
import { entryToJson, pageEntries, type ConntrackJson, type PageQuery } from '../dataplane/conntrack/view.js';
import { flowEvents } from '../observe/events.js';
import { TickClock, type Clock } from '../dataplane/clock.js';
import { Counters } from '../dataplane/counters.js';
import { BackendMonitor } from '../dataplane/liveness.js';
import { Refuser } from '../dataplane/refuse.js';
import { parseIpv4, parseIpv6Words } from '../policy/addr.js';
import { TcpListener, tcpFaultFlows } from '../dataplane/tcp.js';
import { UdpListener } from '../dataplane/udp.js';
import { MODE_NAMES, faultTarget, listenerKey, type Listener, type ListenerSpec } from '../dataplane/listener.js';
import { FaultStore, parseFaultTarget, sameFaults, type FaultRow } from './faults.js';
import { FaultError, parseFault } from '../config/faults.js';
import { FAULT_MAX } from '../native/fault-codes.js';
import { nativeStatus } from '../native/sock-filter.js';
import { relayDrain } from '../native/tcp-relay.js';
import { FlowLog, ACCEPT, REJECT, estimateTcpPackets, interfaceId } from '../observe/flow-log.js';
import { listenerSpecs } from './listeners.js';
import { ApiServer } from './api/server.js';
import { Ec2Service } from './api/ec2/service.js';
import { loadState } from './state.js';
import { existsSync, renameSync } from 'node:fs';

export interface DaemonOptions {
  configPath: string;
  /** Embedded config text (demo); configPath is then only used in messages. */
  configText?: string;
  api: { host: string; port: number } | null;
  /** SigV4 credentials the EC2 API requires (mandatory when `api` is not a loopback address). */
  apiCredentials?: import('./api/sigv4.js').Credentials | null;
  flowLog: string | null;
  flowLogIntervalS: number;
  statePath: string | null;
  resetState: boolean;
  watch: boolean;
  conntrackMax: number;
  /** Serve the web dashboard at GET /ui on the API listener (`sgemu run --ui`, always in the demo). */
  ui?: boolean;
  log: (line: string) => void;
  clock?: Clock & { start?: () => unknown; stop?: () => void };
  /** Sweeper period; the table is scanned fully about once per second. */
  sweepMs?: number;
  /** Run degraded when exact behaviour needs privilege this process cannot get (SPEC.md §1, §8);
   * without it start() throws PrivilegeError (exit 2). */
  fallback?: boolean;
  /** Serve the Toxiproxy-compatible API here (`sgemu run --toxiproxy`; toxiproxy/server.ts). */
  toxiproxy?: { host: string; port: number } | null;
  /** `sgemu exec`: everything inside a private user + network namespace (SPEC.md §8): instances
   * may have any address, the API also answers inside at 127.0.0.1:4510. */
  namespace?: boolean;
}

/** Where the API answers inside `sgemu exec`'s namespace. */
export const NAMESPACE_API = { host: '127.0.0.1', port: 4510 } as const;

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

export class Daemon {
  policy!: CompiledPolicy;
  readonly counters = new Counters();
  readonly table: ConnTable;
  readonly monitor = new BackendMonitor(20);
  readonly refuser: Refuser;
  readonly listeners = new Map<string, Listener>();
  readonly clock: Clock & { start?: () => unknown; stop?: () => void };
  api: ApiServer | null = null;
  toxiproxy: import('./toxiproxy/server.js').ToxiproxyServer | null = null;
  ec2: Ec2Service | null = null;
  flowLog: FlowLog | null = null;
  reloads = 0;
  /** Where privileged calls go (set by start()). */
  privilege: Privilege | null = null;
  /** Told the duration of every policy swap, config reload or API change (the reload histogram). */
  onPolicySwap: ((seconds: number) => void) | null = null;
  reloadFailures = 0;
  lastReloadS = 0;
  private nextListenerId = 0;
  private kernelTcpFilter = true;
  private sweeper: NodeJS.Timeout | null = null;
  private watcher: FSWatcher | null = null;
  private watchTimer: NodeJS.Timeout | null = null;
  private reloading: Promise<boolean> | null = null;
  private reloadAgain = false;
  private ctTimeoutMs = new Map<string, number>();
  private udpTimeoutsMs = new Map<string, [number, number]>();
  /** Bytes [in, out] of the flows that ended, per listener id (status(): per-listener totals). */
  private endedBytes = new Map<number, [number, number]>();
  /** Subscribers of flow events through watchFlows (the API's /v1/events streams). */
  private flowWatchers = 0;

  constructor(readonly opts: DaemonOptions) {
    this.clock = opts.clock ?? new TickClock(10);
    this.table = new ConnTable(opts.conntrackMax, this.clock);
    this.refuser = new Refuser(this.counters, {
      onRejected: (l, src, sp, dst, dp) => this.flowLog?.add(REJECT, this.iface(l.spec.instName), src, dst, sp, dp, l.spec.protocol, 1, 60),
      onRefused: (l, src, sp, dst, dp) => {
        this.flowLog?.add(ACCEPT, this.iface(l.spec.instName), src, dst, sp, dp, l.spec.protocol, 1, 60);
        this.flowLog?.add(ACCEPT, this.iface(l.spec.instName), dst, src, dp, sp, l.spec.protocol, 1, 40);
      },
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

  get model(): Model { return this.policy.model; }
  /** The model without the overlay: config (+ state) and the EC2 API's changes; what the EC2 API
   * reads and the state file keeps. The live model (`model`) is `overlay(baseModel)`. */
  baseModel!: Model;
  /** Laid over the base model at every swap: the Toxiproxy API's proxies (toxiproxy/overlay.ts). Total. */
  overlay: ((base: Model) => Model) | null = null;

  /** The config, with the API's changes from the state file on top (unless --reset-state). */
  private loadModel(): Model {
    if (this.opts.namespace) setAddressScope('any');
    const base = this.opts.configText !== undefined
      ? loadConfigText(this.opts.configText, this.opts.configPath)
      : loadConfigFile(this.opts.configPath);
    const path = this.opts.statePath;
    if (!path || this.opts.resetState) return base;
    return loadState(path, base) ?? base;
  }

  /** Starts everything, or nothing: a failure (a config error, the API address taken…) closes
   * what was already opened (listeners, relay threads, pcap, timers) before it propagates, so the
   * process does not go on serving without the API it was asked for. */
  async start(): Promise<void> {
    try {
      await this.startAll();
    } catch (e) {
      await this.stop(0).catch(() => {});
      throw e;
    }
  }

  private async startAll(): Promise<void> {
    const log = this.opts.log;
    if (this.opts.resetState && this.opts.statePath && existsSync(this.opts.statePath)) {
      // Start from the config alone; keep the old state beside it rather than destroy it.
      renameSync(this.opts.statePath, this.opts.statePath + '.reset');
      this.opts.log(`--reset-state: moved ${this.opts.statePath} to ${this.opts.statePath}.reset`);
    }
    const model = this.loadModel();           // ConfigErrors propagate: the CLI prints them, exit 2
    const priv = this.privilege = this.opts.namespace ? acquireNamespace() : acquirePrivilege({ fallback: this.opts.fallback ?? false });
    if (priv.mode === 'unavailable') throw new PrivilegeError(this.opts.namespace ? priv.missing.join('\n') : unavailableMessage(priv));
    this.clock.start?.();
    this.kernelTcpFilter = priv.tcpFilter !== null;
    const mode = this.refuser.start(priv);
    if (mode !== 'raw' && priv.refusal !== null && priv.mode !== 'fallback') {
      // The cheap probe said yes, opening the handles said no (libpcap cannot open lo, …).
      throw new PrivilegeError(`exact refusals are not available: ${this.refuser.reason}\nfix: see 'sgemu doctor', or add --fallback to run with refusals as resets`);
    }
    log(`sgemu ${process.env.npm_package_version ?? ''}`.trimEnd() + ` starting with ${this.opts.configPath}`);
    log(`privilege: ${priv.mode}${priv.netd ? ` (capability helper ${priv.netd.path}, pid ${priv.netd.pid})` : priv.mode === 'root' ? ' (this process holds CAP_NET_ADMIN and CAP_NET_RAW)' : ''}`);
    if (priv.mode === 'fallback') {
      log('FALLBACK (--fallback): running without the privilege exact behaviour needs; what clients see instead:');
      for (const o of outcomes(priv)) if (!o.exact) log(`  ${o.behaviour}: ${o.seen}`);
      log(`  fix: ${unavailableMessage(priv).split('\n').find((l) => l.trim().startsWith('sudo '))?.trim() ?? "see 'sgemu doctor'"}`);
    }
    log(priv.tcpFilter !== null
      ? `kernel socket filters: on${priv.tcpFilter === 'helper' ? ' (attached by sgemu-netd)' : ''} (denied SYNs are dropped in the kernel: clients time out)`
      : 'kernel socket filters on TCP: OFF; denied connections are accepted then reset (UDP filters stay on)');
    log(mode === 'raw'
      ? `refusal: exact (${this.refuser.reason})`
      : `refusal: accept-then-reset (${this.refuser.reason}); clients see ECONNRESET instead of ECONNREFUSED, UDP gets no ICMP`);

    this.refuser.captureAll = this.opts.flowLog !== null;
    this.refuser.needsAnswers = (l) => !this.monitor.isUp(l.backendKey);
    this.monitor.onChange((key, up) => {
      this.refuser.refresh();     // capture first, then drop: no SYN falls between the two
      for (const l of this.listeners.values()) if (l.backendKey === key) l.refreshFilter();
      log(`backend ${key.replace(/^6\//, 'tcp ').replace(/\//g, ':')} is ${up ? 'up' : 'down'}`);
    });

    if (this.opts.flowLog) {
      this.flowLog = new FlowLog(this.opts.flowLog, model.accountId, this.opts.flowLogIntervalS).start();
      this.flowLog.beforeFlush = () => { for (const e of this.table.live()) this.reportFlow(e); };
    }

    await this.swap(compilePolicy(model, 1));
    this.baseModel = model;
    this.ec2 = new Ec2Service({ getModel: () => this.baseModel, applyModel: (m) => this.applyModel(m) }, { statePath: this.opts.statePath });
    const sweepMs = this.opts.sweepMs ?? 100;
    this.sweeper = setInterval(() => this.sweep(), sweepMs);
    this.sweeper.unref();

    if (this.opts.api || this.opts.namespace) this.api = new ApiServer(this, this.opts.apiCredentials ?? null, { ui: this.opts.ui ?? false });
    if (this.opts.api && this.api) {
      await this.api.listen(this.opts.api.host, this.opts.api.port);
      log(`api: http://${this.opts.api.host.includes(':') ? `[${this.opts.api.host}]` : this.opts.api.host}:${this.api.port}/ (EC2 Query API at POST /; GET /v1/conntrack, /v1/instances, /v1/security-groups, /metrics; POST /v1/explain)` +
        (this.opts.statePath ? `; API changes kept in ${this.opts.statePath}` : '; API changes are not kept across restarts (no --state)'));
      if (this.opts.ui) log(`ui: ${this.uiUrl()} (the web dashboard; same access rules as the API)`);
    }
    if (this.opts.namespace && this.api && priv.netd) {
      const fd = priv.netd.open({ protocol: 6, family: 4, address: NAMESPACE_API.host, port: NAMESPACE_API.port, program: encodeProgram(compileAcceptAll()) });
      await this.api.listenFd(fd);
      log(`api inside the namespace: http://${NAMESPACE_API.host}:${NAMESPACE_API.port}/`);
    }
    if (this.opts.toxiproxy) this.toxiproxy = await (await import('./toxiproxy/attach.js')).startToxiproxy(this, this.opts.toxiproxy);
    if (this.opts.watch && this.opts.configText === undefined) this.startWatch();
    log(`ready: ${this.listeners.size} listeners, policy v${this.policy.version}, conntrack max ${this.table.max}`);
    const nofile = openFilesLimit();
    if ([...this.listeners.values()].some((l) => l.spec.protocol === 17)) {
      log(`udp: each UDP flow holds one backend socket; at most ${this.table.max} flows (--conntrack-max), beyond which new flows are dropped silently and counted (sgemu_conntrack_overflow_total)`);
    }
    if (nofile !== null && nofile < this.table.max * 2 + FD_RESERVE) {
      log(`note: the open-files limit (${nofile}) is below 2 x --conntrack-max (${this.table.max * 2} fds for a full table of TCP flows); raise it with 'ulimit -n' or lower --conntrack-max`);
    }
  }

  /** The dashboard's address (for the log and the demo tour); null without the API or --ui. */
  uiUrl(): string | null {
    if (!this.api || !this.opts.api || !this.opts.ui) return null;
    const h = this.opts.api.host;
    return `http://${h.includes(':') ? `[${h}]` : h}:${this.api.port}/ui`;
  }

  sweep(): void {
    const budget = Math.max(1024, Math.ceil(this.table.capacity / 10));
    this.table.sweep(budget);
  }

  private iface(instName: string): string {
    const inst = this.policy.model.instances.find((i) => i.name === instName);
    return inst ? interfaceId(inst.id) : '-';
  }

  /**
   * Installs `policy`: opens the listeners it adds, then (only when every one opened) switches
   * to it, updates the kept listeners and closes the ones it drops. A listener that cannot open
   * fails the whole swap with ListenerError and the running policy and listeners stay as they were.
   */
  private async swap(policy: CompiledPolicy): Promise<void> {
    const log = this.opts.log;
    const wanted = new Map<string, ListenerSpec>();
    for (const s of listenerSpecs(policy.model, { namespace: this.opts.namespace })) wanted.set(listenerKey(s), s);
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
      log(`listening ${nl.describe()} [${policy.ruleCount(inst, spec.kind === 'service' ? 0 : 1)} ${spec.kind === 'service' ? 'ingress' : 'egress'} rules, filter ${MODE_NAMES[nl.mode]}${nl.nativeFilter ? '' : ', userland only: denied connections are reset'}]`);
    }
    this.refuser.setListeners(this.listeners.values());
    this.applyFaults();
    this.counters.policySwaps++;
  }

  /** Run-time fault changes (sgemu fault, /v1/faults) over the config's (SPEC.md §9). */
  readonly faults = new FaultStore();

  /** Hands every listener the faults in force on its target, where they changed. */
  private applyFaults(): void {
    for (const l of this.listeners.values()) {
      const want = this.faults.effective(faultTarget(l.spec), l.spec.faults);
      if (sameFaults(want, l.faults)) continue;
      try {
        l.setFaults(want);
      } catch (e) {
        this.opts.log(`listener ${l.describe()}: faults not applied: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  }

  /** The listeners serving a fault target; FaultTargetNotFound when none does. */
  private faultListeners(target: string): Listener[] {
    const t = parseFaultTarget(target);
    if (!t) throw new FaultError(`fault target ${JSON.stringify(target)} is not valid; valid: INSTANCE:tcp/PORT or INSTANCE:udp/PORT (a service, by the port the rules see), INSTANCE:out:tcp/PORT (an outbound entry)`, 'InvalidFaultTarget');
    const ls = [...this.listeners.values()].filter((l) => faultTarget(l.spec) === target);
    if (ls.length === 0) {
      const known = [...new Set([...this.listeners.values()].map((l) => faultTarget(l.spec)))].sort();
      throw new FaultError(`no service or outbound entry ${target}; known: ${known.join(', ') || 'none'}`, 'FaultTargetNotFound');
    }
    return ls;
  }

  /** Per fault type, the flows that got it since start (metrics). */
  faultFlows(): Record<string, number> { return tcpFaultFlows(); }

  /** Every fault in force, per target, with its origin (config or api). */
  listFaults(): FaultRow[] {
    const seen = new Set<string>();
    const out: FaultRow[] = [];
    for (const l of this.listeners.values()) {
      const target = faultTarget(l.spec);
      if (seen.has(target)) continue;
      seen.add(target);
      out.push(...this.faults.rows(target, l.spec.faults));
    }
    return out.sort((a, b) => a.target < b.target ? -1 : a.target > b.target ? 1 : 0);
  }

  /** Adds a fault (validated as `parseFault` for the target's protocol) → it, as in force. */
  addFault(target: string, raw: unknown): FaultRow {
    const ls = this.faultListeners(target);
    const fault = parseFault(raw, ls[0]!.spec.protocol);
    this.faults.add(target, fault, ls[0]!.spec.faults, FAULT_MAX);
    this.applyFaults();
    this.opts.log(`fault ${fault.name} (${fault.type} ${fault.stream}) added on ${target}`);
    return { target, origin: 'api', fault };
  }

  /** Removes one fault (or, name null, all) from a target → how many went. */
  removeFault(target: string, name: string | null): number {
    const ls = this.faultListeners(target);
    const n = this.faults.remove(target, name, ls[0]!.spec.faults);
    this.applyFaults();
    this.opts.log(`${name === null ? `${n} fault${n === 1 ? '' : 's'}` : `fault ${name}`} removed from ${target}`);
    return n;
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
  private readonly nsAddresses = new Set<string>();

  private newListener(spec: ListenerSpec): Listener {
    const common = {
      table: this.table, counters: this.counters, monitor: this.monitor,
      rawRefusal: () => this.refuser.mode === 'raw', kernelTcpFilter: this.kernelTcpFilter, log: this.opts.log,
      onFlowEnd: (e: FlowEntry) => { this.bookEnded(e); this.reportFlow(e); },
    };
    return spec.protocol === 6
      ? new TcpListener(this.nextListenerId++, spec, { ...common, ctTimeoutMs: (name) => this.ctTimeoutMs.get(name) ?? 432000_000 })
      : new UdpListener(this.nextListenerId++, spec, { ...common, udpTimeoutsMs: (name) => this.udpTimeoutsMs.get(name) ?? [30_000, 180_000] });
  }

  /** Adds an ended flow's bytes to its listener's total (status() adds the live flows'). */
  private bookEnded(e: FlowEntry): void {
    const b = this.endedBytes.get(e.listener);
    if (b) { b[0] += e.bytesIn; b[1] += e.bytesOut; } else this.endedBytes.set(e.listener, [e.bytesIn, e.bytesOut]);
  }

  /**
   * Subscribes `on` to flow events. While anyone watches, the refuser captures every listener's
   * new flows, so that the SYNs the kernel filter drops show up as 'reject' events; otherwise
   * they are invisible to userland (refuse.ts). Costs one pcap event per new flow while watched.
   */
  watchFlows(on: (msg: unknown) => void): () => void {
    flowEvents.subscribe(on);
    this.flowWatchers++;
    this.updateCapture();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      flowEvents.unsubscribe(on);
      this.flowWatchers--;
      this.updateCapture();
    };
  }

  private updateCapture(): void {
    const all = this.opts.flowLog !== null || this.flowWatchers > 0;
    if (this.refuser.captureAll === all) return;
    this.refuser.captureAll = all;
    this.refuser.refresh();
  }

  /** Adds what a flow moved since its last report to the flow log (both directions). */
  private reportFlow(e: FlowEntry): void {
    if (!this.flowLog) return;
    e.owner?.sample(e);
    const dIn = e.bytesIn - e.reportedBytesIn, dOut = e.bytesOut - e.reportedBytesOut;
    // UDP counts real datagrams; TCP packets are estimated from bytes (see flow-log.ts).
    const pIn = e.proto === 6 ? estimateTcpPackets(dIn) : e.packetsIn - e.reportedPacketsIn;
    const pOut = e.proto === 6 ? estimateTcpPackets(dOut) : e.packetsOut - e.reportedPacketsOut;
    e.reportedBytesIn = e.bytesIn; e.reportedBytesOut = e.bytesOut;
    e.reportedPacketsIn = e.packetsIn; e.reportedPacketsOut = e.packetsOut;
    if (dIn === 0 && dOut === 0 && pIn === 0 && pOut === 0) return;
    const inst = this.policy.model.instances[e.inst];
    const iface = inst ? interfaceId(inst.id) : '-';
    this.flowLog.add(ACCEPT, iface, e.src, e.dst, e.srcPort, e.dstPort, e.proto, pIn, dIn);
    this.flowLog.add(ACCEPT, iface, e.dst, e.src, e.dstPort, e.srcPort, e.proto, pOut, dOut);
  }

  /**
   * Re-reads the config; on success swaps the policy, on failure logs every error and keeps the
   * running rules. Concurrent calls coalesce (the last file state wins).
   */
  reload(): Promise<boolean> {
    if (this.reloading) { this.reloadAgain = true; return this.reloading; }
    this.reloading = (async () => {
      let ok = false;
      do {
        this.reloadAgain = false;
        ok = await this.reloadOnce();
      } while (this.reloadAgain);
      this.reloading = null;
      return ok;
    })();
    return this.reloading;
  }

  private async reloadOnce(): Promise<boolean> {
    const t0 = performance.now();
    let model: Model;
    try {
      model = this.loadModel();
    } catch (e) {
      this.reloadFailures++;
      const lines = e instanceof ConfigErrors ? e.errors.map((x) => x.format()) : [e instanceof Error ? e.message : String(e)];
      this.opts.log(`reload rejected, the running rules stay (policy v${this.policy.version}):`);
      for (const l of lines) this.opts.log('  ' + l);
      return false;
    }
    try {
      await this.applyModel(model);
    } catch (e) {
      if (!(e instanceof ListenerError)) throw e;
      this.reloadFailures++;
      this.opts.log(`reload rejected, the running rules stay (policy v${this.policy.version}):`);
      for (const l of e.message.split('\n')) this.opts.log('  ' + l);
      return false;
    }
    this.lastReloadS = (performance.now() - t0) / 1000;
    this.opts.log(`reloaded: policy v${this.policy.version}, ${this.listeners.size} listeners (${(this.lastReloadS * 1000).toFixed(1)} ms)`);
    return true;
  }

  /** Swaps to a validated model (used by reload and by the control API). */
  /**
   * The one way a policy changes after start (reload and the EC2 API both come here), serialised:
   * a swap awaits listener opens and closes, and two interleaved swaps could leave a listener
   * under the older policy. Each waits for the previous one, compiles against the version then
   * in force, and installs whole.
   */
  applyModel(model: Model): Promise<void> { return this.queueSwap(() => model); }

  /** Lays `overlay` again over the base model of that moment (queued like applyModel): the
   * Toxiproxy API after it changed its proxies. */
  reapplyOverlay(): Promise<void> { return this.queueSwap(() => this.baseModel); }

  private queueSwap(next: () => Model): Promise<void> {
    const run = this.swapQueue.then(async () => {
      const t0 = performance.now();
      const base = next();
      const policy = compilePolicy(this.overlay ? this.overlay(base) : base, this.policy.version + 1);
      await this.swap(policy);
      this.baseModel = base;
      this.reloads++;
      this.onPolicySwap?.((performance.now() - t0) / 1000);
    });
    this.swapQueue = run.catch(() => {});
    return run;
  }
  private swapQueue: Promise<void> = Promise.resolve();

  private startWatch(): void {
    const file = resolve(this.opts.configPath);
    // Editors replace files by rename: watch the directory and filter on the name.
    this.watcher = fsWatch(dirname(file), (_ev, name) => {
      if (name !== null && name !== basename(file)) return;
      if (this.watchTimer) clearTimeout(this.watchTimer);
      this.watchTimer = setTimeout(() => { void this.reload(); }, 15);
    });
    this.opts.log(`watching ${file} for changes`);
  }

  /** Books the flows the native relay has not reported yet (its events travel in batches of up
   * to a few ms), so that what the API shows next is exact. */
  settle(): void { relayDrain(); }

  conntrack(): ConntrackJson[] {
    this.settle();
    const now = (this.clock as TickClock).refresh?.() ?? this.clock.nowMs();
    const out: ConntrackJson[] = [];
    for (const e of this.table.live()) {
      this.table.refresh(e, now);
      out.push(entryToJson(e, this.policy.model.instances[e.inst]?.name ?? '?', now));
    }
    return out;
  }

  /** One sorted, filtered page of the table (GET /v1/conntrack?limit=…; view.ts pageEntries). */
  conntrackPage(q: PageQuery): { total: number; entries: ConntrackJson[] } {
    this.settle();
    const now = (this.clock as TickClock).refresh?.() ?? this.clock.nowMs();
    // Sampling every entry (a relay call each) would cost more than the sort at 100k flows:
    // sort on the values as last sampled, sample the page's entries only.
    const all: FlowEntry[] = [];
    for (const e of this.table.live()) all.push(e);
    const insts = this.policy.model.instances;
    return pageEntries(all, (i) => insts[i]?.name ?? '?', now, q, (e) => this.table.refresh(e, now));
  }

  status(): Record<string, unknown> {
    this.settle();
    // Bytes per listener: the flows that ended plus the live ones as last sampled (the sweeper
    // samples every flow about once a second), without sampling here: one pass, no relay calls.
    const liveBytes = new Map<number, [number, number]>();
    for (const e of this.table.live()) {
      const b = liveBytes.get(e.listener);
      if (b) { b[0] += e.bytesIn; b[1] += e.bytesOut; } else liveBytes.set(e.listener, [e.bytesIn, e.bytesOut]);
    }
    const bytes = (id: number, i: 0 | 1) => (this.endedBytes.get(id)?.[i] ?? 0) + (liveBytes.get(id)?.[i] ?? 0);
    return {
      policyVersion: this.policy.version,
      nativeFilter: nativeStatus().loaded,
      privilege: this.privilege?.mode ?? null,
      refusal: this.refuser.mode,
      refusalReason: this.refuser.reason,
      conntrack: { entries: this.table.count, max: this.table.max, overflows: this.table.overflows },
      listeners: [...this.listeners.values()].map((l) => ({
        policyVersion: l.policyVersion,
        kind: l.spec.kind, instance: l.spec.instName, protocol: l.spec.protocol === 6 ? 'tcp' : 'udp', address: l.spec.address,
        listenPort: l.spec.listenPort, rulePort: l.spec.rulePort, backend: `${l.spec.backendHost}:${l.spec.backendPort}`,
        backendUp: this.monitor.isUp(l.backendKey), filter: MODE_NAMES[l.mode], nativeFilter: l.nativeFilter,
        exactFilter: l.filterExact, flows: l.flowCount,
        accepted: l.stats.accepted, rejected: l.stats.rejected, refused: l.stats.refused,
        bytesIn: bytes(l.id, 0), bytesOut: bytes(l.id, 1),
      })),
      counters: { ...this.counters },
      pid: process.pid,
      rssBytes: process.memoryUsage().rss,
      cpu: process.cpuUsage(),
    };
  }

  /** Stops accepting, lets open flows finish for up to drainMs, then closes everything. */
  async stop(drainMs = 2000): Promise<void> {
    this.table.onFullChange = null;
    this.table.onNearFullChange = null;
    this.watcher?.close();
    if (this.watchTimer) clearTimeout(this.watchTimer);
    if (this.sweeper) clearInterval(this.sweeper);
    await this.api?.close();
    await this.toxiproxy?.close();
    await Promise.all([...this.listeners.values()].map((l) => l.close(drainMs)));
    this.listeners.clear();
    for (const e of [...this.table.live()]) this.table.drop(e, EXPIRE_SHUTDOWN);
    this.refuser.close();
    this.privilege?.netd?.close();
    this.monitor.close();
    await this.flowLog?.close();
    this.clock.stop?.();
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

/** Descriptors kept aside for listeners, the API, pcap and the rest. */
const FD_RESERVE = 256;
export const DEFAULT_CONNTRACK_MAX = 262_144;

/** The default --conntrack-max: AWS-like 262144, but never more than the fd limit can hold
 * (a TCP flow holds two descriptors, a UDP flow one). */
export function defaultConntrackMax(): number {
  const nofile = openFilesLimit();
  if (nofile === null) return DEFAULT_CONNTRACK_MAX;
  return Math.max(64, Math.min(DEFAULT_CONNTRACK_MAX, Math.floor((nofile - FD_RESERVE) / 2)));
}

/** The soft RLIMIT_NOFILE, from /proc/self/limits (null when unreadable or unlimited). */
export function openFilesLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch { return null; }
}

/** Reads a config file's text (for `demo`, which writes its embedded config next to the tour). */
export function readText(path: string): string { return readFileSync(path, 'utf8'); }
