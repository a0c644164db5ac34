// The daemon's lifecycle: load → compile → listen → serve; reload as a swap; drain on stop.
//
// Owns: loading and compiling the config, the privilege, the sweeper timer, the flow log, the API
// server and the EC2 service. The running data plane (listeners, conntrack, liveness, refuser,
// the relay's drain) is one DataPlane (src/dataplane/plane.ts): this file compiles and hands over.
// Invariants:
//   - a policy change is a swap: a new CompiledPolicy is built beside the live one, and only a
//     valid one replaces it; a rejected reload changes nothing (STYLE.md);
//   - every change goes through DataPlane.install (serialised), which returns only after every
//     listener re-decided its live flows (untracked ones whose rule is gone are cut, tracked ones
//     live on) and re-attached its socket filter, so new flows see the change as soon as reload()
//     resolves.

import { watch as fsWatch, readFileSync, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import type { Model } from '../model/types.js';
import { ConfigErrors } from '../model/errors.js';
import { acquireNamespace, acquirePrivilege, releasePrivilege, outcomes, unavailableMessage, PrivilegeError, type Privilege } from '../dataplane/privilege.js';
import { compileAcceptAll, encodeProgram } from '../policy/bpf.js';
import { loadConfigFile, loadConfigText, setAddressScope } from '../config/load.js';
import { compilePolicy } from '../policy/compile.js';
import type { CompiledPolicy } from '../policy/types.js';
import type { ConnTable, FlowEntry } from '../dataplane/conntrack/table.js';
import { entryToJson, pageEntries, type ConntrackJson, type PageQuery } from '../dataplane/conntrack/view.js';
import { flowEvents } from '../observe/events.js';
import { TickClock, type Clock } from '../dataplane/clock.js';
import type { Counters } from '../dataplane/counters.js';
import type { BackendMonitor } from '../dataplane/liveness.js';
import type { Refuser } from '../dataplane/refuse.js';
import { faultTarget, type Listener, type ListenerSpec } from '../dataplane/listener.js';
import { FaultStore, parseFaultTarget, type FaultRow } from './faults.js';
import { FaultError, FAULT_LIST_MAX, parseFault } from '../config/faults.js';
import { DataPlane, ListenerError } from '../dataplane/plane.js';
import { FlowLog, ACCEPT, REJECT, estimateTcpPackets, interfaceId } from '../observe/flow-log.js';
import type { MetricsSource } from '../observe/metrics.js';
import { listenerSpecs } from './listeners.js';
import { BackendNames, REFRESH_MS } from './backend-names.js';
import { ApiServer, type ApiHost } from './api/server.js';
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
  /** How often backend names are resolved again (default REFRESH_MS, 30 s). */
  namesRefreshMs?: number;
  /** The resolver of backend names (default: the system's, dns.lookup); a test's stands in. */
  lookup?: (name: string) => Promise<string[]>;
  /** Run degraded when exact behaviour needs privilege this process cannot get (SPEC.md §1, §8);
   * without it start() throws PrivilegeError (exit 2). */
  fallback?: boolean;
  /** Serve the Toxiproxy-compatible API here (`sgemu run --toxiproxy`; toxiproxy/server.ts). */
  toxiproxy?: { host: string; port: number } | null;
  /** `sgemu exec`: everything inside a private user + network namespace (SPEC.md §8): instances
   * may have any address, the API also answers inside at 127.0.0.1:4510. */
  namespace?: boolean;
  /** Native TCP relay threads (`sgemu run --threads`; default 1). */
  relayThreads?: number;
  /** µs each native TCP relay thread polls before it sleeps (`sgemu run --busy-poll`; default 0). */
  relayBusyPollUs?: number;
}

/** Where the API answers inside `sgemu exec`'s namespace. */
export const NAMESPACE_API = { host: '127.0.0.1', port: 4510 } as const;

export { ListenerError };

export class Daemon implements ApiHost {
  /** The running data plane: listeners, conntrack, liveness, refuser. */
  readonly plane: DataPlane;
  readonly clock: Clock & { start?: () => unknown; stop?: () => void };
  api: ApiServer | null = null;
  toxiproxy: import('./toxiproxy/server.js').ToxiproxyServer | null = null;
  ec2: Ec2Service | null = null;
  /** Run-time fault changes (sgemu fault, /v1/faults) over the config's (SPEC.md §9). */
  readonly faults = new FaultStore();
  flowLog: FlowLog | null = null;
  reloads = 0;
  /** Where privileged calls go (set by start()). */
  privilege: Privilege | null = null;
  /** Told the duration of every policy swap, config reload or API change (the reload histogram). */
  onPolicySwap: ((seconds: number) => void) | null = null;
  reloadFailures = 0;
  lastReloadS = 0;
  private sweeper: NodeJS.Timeout | null = null;
  private watcher: FSWatcher | null = null;
  private watchTimer: NodeJS.Timeout | null = null;
  private reloading: Promise<boolean> | null = null;
  private reloadAgain = false;
  /** Subscribers of flow events through watchFlows (the API's /v1/events streams). */
  private flowWatchers = 0;
  /** Backend host names of the config in force, resolved at start and on each reload. */
  private names: BackendNames | null = null;
  private namesTimer: NodeJS.Timeout | null = null;

  constructor(readonly opts: DaemonOptions) {
    this.clock = opts.clock ?? new TickClock(10);
    this.plane = new DataPlane({
      conntrackMax: opts.conntrackMax, clock: this.clock, log: opts.log, namespace: opts.namespace ?? false, relayThreads: opts.relayThreads, relayBusyPollUs: opts.relayBusyPollUs,
      faultsFor: (spec) => this.faults.effective(faultTarget(spec), spec.faults),
    }, {
      onRejected: (l, src, sp, dst, dp) => this.flowLog?.add(REJECT, this.iface(l.spec.instName), src, dst, sp, dp, l.spec.protocol, 1, 60),
      onRefused: (l, src, sp, dst, dp) => {
        this.flowLog?.add(ACCEPT, this.iface(l.spec.instName), src, dst, sp, dp, l.spec.protocol, 1, 60);
        this.flowLog?.add(ACCEPT, this.iface(l.spec.instName), dst, src, dp, sp, l.spec.protocol, 1, 40);
      },
      onFlowEnd: (e) => this.reportFlow(e),
    });
  }

  /** The policy in force (set by start()). */
  get policy(): CompiledPolicy { return this.plane.policy!; }
  get model(): Model { return this.policy.model; }
  // The data plane's parts, for the API, metrics and tests.
  get counters(): Counters { return this.plane.counters; }
  get table(): ConnTable { return this.plane.table; }
  get monitor(): BackendMonitor { return this.plane.monitor; }
  get refuser(): Refuser { return this.plane.refuser; }
  get listeners(): ReadonlyMap<string, Listener> { return this.plane.listeners; }
  /** The model without the overlay: config (+ state) and the EC2 API's changes; what the EC2 API
   * reads and the state file keeps. The live model (`model`) is `overlay(baseModel)`. */
  baseModel!: Model;
  /** Laid over the base model at every install: the Toxiproxy API's proxies (toxiproxy/overlay.ts). Total. */
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
    const mode = this.plane.start(priv, this.opts.flowLog !== null);
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


    if (this.opts.flowLog) {
      this.flowLog = new FlowLog(this.opts.flowLog, model.accountId, this.opts.flowLogIntervalS).start();
      this.flowLog.beforeFlush = () => { for (const e of this.table.live()) this.reportFlow(e); };
    }

    this.names = new BackendNames(log, this.opts.lookup);
    await this.names.resolve(model);
    await this.plane.install((version) => compilePolicy(model, version), (p) => this.specsOf(p.model));
    this.baseModel = model;
    this.ec2 = new Ec2Service({ getModel: () => this.baseModel, applyModel: (m) => this.applyModel(m) }, { statePath: this.opts.statePath });
    const sweepMs = this.opts.sweepMs ?? 100;
    this.sweeper = setInterval(() => this.sweep(), sweepMs);
    this.sweeper.unref();
    this.namesTimer = setInterval(() => { void this.refreshNames(); }, this.opts.namesRefreshMs ?? REFRESH_MS);
    this.namesTimer.unref();

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

  /** The daemon's numbers as the metrics read them at scrape time. */
  metricsSource(apiRequests: () => number): MetricsSource {
    return {
      counters: this.counters,
      gauges: () => ({
        conntrackEntries: this.table.count, conntrackMax: this.table.max, listeners: this.listeners.size,
        policyVersion: this.policy.version, reloads: this.reloads, reloadFailures: this.reloadFailures,
        lastReloadSeconds: this.lastReloadS, apiRequests: apiRequests(), refusalRaw: this.refuser.mode === 'raw',
      }),
      listeners: () => [...this.listeners.values()].map((l) => ({
        instance: l.spec.instName, protocol: l.spec.protocol === 6 ? 'tcp' as const : 'udp' as const, port: l.spec.rulePort,
        direction: l.spec.kind === 'service' ? 'ingress' as const : 'egress' as const,
        accepted: l.stats.accepted, rejected: l.stats.rejected, refused: l.stats.refused, flows: l.flowCount,
        faults: l.faults.length,
      })),
      faultFlows: () => this.plane.faultFlows(),
      faultDatagrams: () => this.plane.faultDatagrams(),
    };
  }

  /** The dashboard's address (for the log and the demo tour); null without the API or --ui. */
  uiUrl(): string | null {
    if (!this.api || !this.opts.api || !this.opts.ui) return null;
    const h = this.opts.api.host;
    return `http://${h.includes(':') ? `[${h}]` : h}:${this.api.port}/ui`;
  }

  sweep(): void { this.plane.sweep(); }

  private iface(instName: string): string {
    const inst = this.policy.model.instances.find((i) => i.name === instName);
    return inst ? interfaceId(inst.id) : '-';
  }

  /**
   * Asks the resolver again for the backend names of the config in force (every REFRESH_MS); when
   * an address changed, the listeners get it as a reload would give it (installModel: queued
   * with the other changes). Skipped while a reload runs (it resolves for itself).
   */
  async refreshNames(): Promise<void> {
    const names = this.names;
    if (!names || names.size === 0 || this.reloading) return;
    try {
      if (await names.resolve(this.baseModel, { refresh: true }) && !this.reloading) await this.installModel(() => this.baseModel);
    } catch (e) {
      this.opts.log(`backend names: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /** The listeners `model` wants (one per service and outbound entry, per address family). */
  private specsOf(model: Model): ListenerSpec[] {
    return listenerSpecs(model, { namespace: this.opts.namespace, ...(this.names ? { names: this.names } : {}) });
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
    this.plane.setCaptureAll(this.opts.flowLog !== null || this.flowWatchers > 0);
  }

  /** Adds what a flow moved since its last report to the flow log (both directions). */
  private reportFlow(e: FlowEntry): void {
    if (!this.flowLog) return;
    if (e.live) e.sample();
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
      await this.names?.resolve(model);
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

  /**
   * The one way a policy changes after start (reload and the EC2 API both come here): compiles
   * `model` when its turn in the data plane's install queue comes (against the version then in
   * force) and installs it whole, or rejects with ListenerError and changes nothing.
   */
  applyModel(model: Model): Promise<void> { return this.installModel(() => model); }

  /** Lays `overlay` again over the base model of that moment (queued like applyModel): the
   * Toxiproxy API after it changed its proxies. */
  reapplyOverlay(): Promise<void> { return this.installModel(() => this.baseModel); }

  /** `next` gives the base model when the install's turn comes; the overlay goes on top. */
  private async installModel(next: () => Model): Promise<void> {
    let t0 = 0;
    let base: Model | null = null;
    await this.plane.install((version) => {
      t0 = performance.now();
      base = next();
      return compilePolicy(this.overlay ? this.overlay(base) : base, version);
    }, (p) => this.specsOf(p.model));
    this.baseModel = base!;
    this.reloads++;
    this.onPolicySwap?.((performance.now() - t0) / 1000);
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
    this.faults.add(target, fault, ls[0]!.spec.faults, FAULT_LIST_MAX);
    this.plane.refreshFaults();
    this.opts.log(`fault ${fault.name} (${fault.type} ${fault.stream}) added on ${target}`);
    return { target, origin: 'api', fault, applied: true };
  }

  /** Removes one fault (or, name null, all) from a target → how many went. */
  removeFault(target: string, name: string | null): number {
    const ls = this.faultListeners(target);
    const n = this.faults.remove(target, name, ls[0]!.spec.faults);
    this.plane.refreshFaults();
    this.opts.log(`${name === null ? `${n} fault${n === 1 ? '' : 's'}` : `fault ${name}`} removed from ${target}`);
    return n;
  }

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
  settle(): void { this.plane.settle(); }

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
    return {
      policyVersion: this.policy.version,
      nativeFilter: this.plane.nativeLoaded,
      privilege: this.privilege?.mode ?? null,
      refusal: this.refuser.mode,
      refusalReason: this.refuser.reason,
      conntrack: { entries: this.table.count, max: this.table.max, overflows: this.table.overflows },
      listeners: this.plane.listenerStatus(),
      counters: { ...this.counters },
      pid: process.pid,
      rssBytes: process.memoryUsage().rss,
      cpu: process.cpuUsage(),
    };
  }

  /** Stops accepting, lets open flows finish for up to drainMs, then closes everything. */
  async stop(drainMs = 2000): Promise<void> {
    this.watcher?.close();
    if (this.watchTimer) clearTimeout(this.watchTimer);
    if (this.sweeper) clearInterval(this.sweeper);
    if (this.namesTimer) clearInterval(this.namesTimer);
    await this.api?.close();
    await this.toxiproxy?.close();
    await this.plane.close(drainMs);
    releasePrivilege(this.privilege);
    await this.flowLog?.close();
    this.clock.stop?.();
  }
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
