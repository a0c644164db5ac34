// The Node API (SPEC §10): `const sg = await start({ config })` in a test, then drive and observe it.
//
// In-process, not a child process. Why:
//   - the test gets real objects: errors are the same AwsError/ConfigErrors classes the EC2 API
//     and the loader throw (instanceof works, `code` is the AWS code), not text parsed from XML;
//     authorize/revoke call Ec2Service.call, the very code behind POST /, so validation is shared
//     by construction, not by keeping two clients in step;
//   - start() costs what a Daemon.start costs (a few ms), not a Node boot and a readiness
//     handshake (~150-300 ms per test); flows() and waitFor() read the flow-event channel
//     directly, with no SSE stream to parse and no event lost between two HTTP calls;
//   - stop() is deterministic: when it resolves, every listener, socket, timer and capture handle
//     is closed in this process, which a test can check (/proc/self/fd), and nothing outlives a
//     killed test runner (no orphaned daemon holding ports).
//   The price: sgemu shares the test's event loop. The native relay threads carry established
//   TCP/UDP flows and the kernel filters drop denied SYNs whatever the loop does, but new-flow
//   bookkeeping, refusals and events wait while test code blocks the loop (a busy-wait, a sync
//   child process). Tests that need isolation run `sgemu run` and use `url` (EC2 API, /v1).
//   Several sgemu instances may run in one process (different addresses); each sees only its
//   own flow events.
// Must not: validate anything itself (the loader and Ec2Service do), or reach into the data
// plane beyond what the daemon exposes (conntrack, listeners, the backend monitor).

import { faultToJson } from '../config/faults.js';
import { Daemon } from '../control/daemon.js';
import { loadConfigFile, loadConfigText } from '../config/load.js';
import { fieldsOf, type ConfigFile, type ConfigRule } from '../config/schema.js';
import { AwsError, SgemuError, UsageError } from '../model/errors.js';
import { INGRESS, type Rule } from '../model/types.js';
import type { ConntrackJson } from '../dataplane/conntrack/view.js';
import { flowEvents, type FlowEvent } from '../observe/events.js';
import { explainFlow, type ExplainResult } from '../policy/explain.js';
import { ruleJson } from '../control/api/server.js';
import { relayStats, relayStop } from '../native/tcp-relay.js';
import { expectFlow, type ExpectFlowOptions, type FlowOutcome } from './expect-flow.js';

export interface StartOptions {
  /** The config: an object of the sgemu.yaml shape, or YAML/JSON text. One of config, configFile. */
  config?: ConfigFile | string;
  /** A config file to load (reload() re-reads it). */
  configFile?: string;
  /**
   * Control API address `host:port` (EC2 Query API, /v1/*, /metrics), loopback only here.
   * Default `127.0.0.1:0` (a free port; see `url`); false: no HTTP listener.
   */
  api?: string | false;
  /** Conntrack table size (default 10000: a test's worth). */
  conntrackMax?: number;
  /**
   * Run degraded when exact behaviour needs privilege this process cannot get (as
   * `sgemu run --fallback`: denied TCP accepted then reset, refusals as resets). Default false:
   * start() rejects (PrivilegeError) and names the fix (`sudo npx sgemu setup`).
   */
  fallback?: boolean;
  /** Daemon log lines (start-up, listeners, reloads). Default: kept in `sg.logs` only. */
  log?: (line: string) => void;
}

export type Direction = 'ingress' | 'egress';

/** A rule as the API returns it (the JSON of GET /v1/security-groups). */
export interface RuleInfo {
  ruleId: string;
  groupId: string;
  direction: Direction;
  protocol: string;
  fromPort: number;
  toPort: number;
  cidr?: string;
  groupIdRef?: string;
  prefixListId?: string;
  description: string;
}

export interface FlowQuery { from: string; to: string; protocol: string; port?: number }

/** A fault as sgemu reports it (Toxiproxy's toxic shape). */
export interface Fault { name: string; type: string; stream: string; toxicity: number; attributes: Record<string, number> }
/** A fault to add: `type` and what differs from the defaults (stream downstream, toxicity 1). */
export interface FaultSpec { type: string; name?: string; stream?: 'upstream' | 'downstream'; toxicity?: number; attributes?: Record<string, number> }

export interface FlowIterator extends AsyncIterableIterator<FlowEvent> {
  /** Stops listening; the iteration ends. */
  return(): Promise<IteratorResult<FlowEvent>>;
}

/** Events kept for a slow reader of flows(); older ones are dropped (counted in `dropped`). */
const MAX_QUEUED_EVENTS = 10_000;
const MAX_LOG_LINES = 1000;

/** Starts sgemu in this process. Rejects with ConfigErrors on a bad config, SgemuError otherwise. */
export async function start(opts: StartOptions): Promise<Sgemu> {
  if (typeof opts !== 'object' || opts === null) throw new UsageError('start: give { config } or { configFile }');
  const { config, configFile } = opts;
  if ((config === undefined) === (configFile === undefined)) throw new UsageError('start: give exactly one of config (an object or YAML text) and configFile');
  let configText: string | undefined;
  if (config !== undefined) configText = typeof config === 'string' ? config : JSON.stringify(config);
  const api = parseApi(opts.api);
  const logs: string[] = [];
  const log = (line: string): void => {
    if (logs.length >= MAX_LOG_LINES) logs.shift();
    logs.push(line);
    opts.log?.(line);
  };
  const daemon = new Daemon({
    configPath: configFile ?? '<config>',
    ...(configText !== undefined ? { configText } : {}),
    api, flowLog: null, flowLogIntervalS: 60, statePath: null, resetState: false, watch: false,
    conntrackMax: opts.conntrackMax ?? 10_000, log, fallback: opts.fallback ?? false,
  });
  // Daemon.start opens every listener or fails whole (ListenerError, code ListenerUnavailable:
  // a port taken, no privilege), closing what it opened.
  try {
    await daemon.start();
  } catch (e) {
    stopRelayIfIdle();
    throw e;
  }
  return new Sgemu(daemon, logs, configFile ?? null);
}

/**
 * The TCP relay thread (an epoll fd and an eventfd) is shared by every daemon of the process and
 * started on first use; the last one out stops it, so that a test gets back the descriptors it
 * had before start(). The next start() starts a new thread.
 */
function stopRelayIfIdle(): void {
  const st = relayStats();
  if (st && st.listeners === 0 && st.flows === 0) relayStop();
}

function parseApi(api: string | false | undefined): { host: string; port: number } | null {
  if (api === false) return null;
  const text = api ?? '127.0.0.1:0';
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  if (!m || Number(m[2]) > 65535) throw new UsageError(`start: api ${JSON.stringify(text)} is not host:port (e.g. 127.0.0.1:0)`);
  return { host: m[1]!, port: Number(m[2]) };
}

export class Sgemu {
  /** The control API, e.g. http://127.0.0.1:41234 (null with api: false): `aws --endpoint-url`, SDKs, /v1/*. */
  readonly url: string | null;
  /** Flow events dropped because a flows() reader fell more than 10000 behind. */
  dropped = 0;
  private stopped: Promise<void> | null = null;
  private readonly subscribers = new Set<() => void>();

  /** @internal use start() */
  constructor(private readonly daemon: Daemon, readonly logs: string[], private readonly configFile: string | null) {
    const a = daemon.opts.api;
    this.url = a && daemon.api ? `http://${a.host.includes(':') ? `[${a.host}]` : a.host}:${daemon.api.port}` : null;
  }

  /** Stops listening, closes every socket and timer; flows() iterators end. Idempotent. */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      for (const end of [...this.subscribers]) end();
      const netd = this.daemon.privilege?.netd ?? null;
      await this.daemon.stop(0);
      stopRelayIfIdle();
      // The capability helper (a child process when sgemu runs through it) exits when its
      // channel closes: wait until it is reaped, bounded, so that no child outlives stop().
      if (netd) await Promise.race([netd.exited(), new Promise((r) => setTimeout(r, 2000).unref())]);
    })();
    return this.stopped;
  }

  /** The decision for one flow and why (as `sgemu explain --json`). Throws UsageError on bad input. */
  explain(flow: FlowQuery): ExplainResult {
    return explainFlow(this.daemon.model, flow);
  }

  /**
   * Adds rules to a group, as AuthorizeSecurityGroupIngress/Egress: the same validation, quotas
   * and AWS error codes (AwsError: InvalidGroup.NotFound, InvalidPermission.Duplicate,
   * RulesPerSecurityGroupLimitExceeded…). `rule` has the shape of a config rule (SPEC §2).
   * Live for new flows when the promise resolves. Returns the rules added, with their ids.
   */
  async authorize(groupId: string, direction: Direction, rule: ConfigRule): Promise<RuleInfo[]> {
    const xml = await this.ec2({ Action: direction === 'egress' ? 'AuthorizeSecurityGroupEgress' : 'AuthorizeSecurityGroupIngress', GroupId: groupId, ...permission(rule) });
    const ids = ruleIdsIn(xml);
    return this.rulesOf(groupId, direction).filter((r) => ids.has(r.ruleId));
  }

  /**
   * Removes a rule, as RevokeSecurityGroupIngress/Egress: by content (a config rule: each of its
   * sources must exist, else InvalidPermission.NotFound) or by rule id (sgr-…). Returns the rules
   * removed. Tracked flows live on; untracked ones stop (SPEC §1).
   */
  async revoke(groupId: string, direction: Direction, rule: ConfigRule | string): Promise<RuleInfo[]> {
    const before = this.rulesOf(groupId, direction);
    const params = typeof rule === 'string' ? { 'SecurityGroupRuleId.1': rule } : permission(rule);
    const xml = await this.ec2({ Action: direction === 'egress' ? 'RevokeSecurityGroupEgress' : 'RevokeSecurityGroupIngress', GroupId: groupId, ...params });
    const ids = ruleIdsIn(xml);
    return before.filter((r) => ids.has(r.ruleId));
  }

  /**
   * Replaces the config (an object or YAML text), or re-reads the config file when called without
   * one. Throws ConfigErrors and keeps the running rules when the new config is invalid. Changes
   * made through authorize/revoke or the EC2 API are replaced, as by a SIGHUP.
   */
  async reload(config?: ConfigFile | string): Promise<void> {
    const d = this.daemon;
    if (config !== undefined) {
      const text = typeof config === 'string' ? config : JSON.stringify(config);
      loadConfigText(text, '<config>');          // throws ConfigErrors; nothing changed
      d.opts.configText = text;
    } else if (this.configFile !== null) {
      loadConfigFile(this.configFile);
    } else {
      loadConfigText(d.opts.configText ?? '', '<config>');
    }
    if (!(await d.reload())) throw new SgemuError('ReloadFailed', `reload failed; the running rules stay: ${this.logs.slice(-3).join(' | ')}`);
  }

  /**
   * Marks a service's backend down (new connections are refused, as when nothing listens,
   * while the backend process keeps running) or back up ('up': its real state applies again).
   * `port` is the service's port as the rules see it. Existing connections are not touched.
   */
  setBackend(instance: string, protocol: 'tcp' | 'udp', port: number, state: 'up' | 'down'): void {
    const proto = protocol === 'udp' ? 17 : protocol === 'tcp' ? 6 : -1;
    if (proto < 0) throw new UsageError(`setBackend: protocol ${JSON.stringify(protocol)}; use tcp or udp`, 'InvalidParameterValue');
    if (state !== 'up' && state !== 'down') throw new UsageError(`setBackend: state ${JSON.stringify(state)}; use 'up' or 'down'`, 'InvalidParameterValue');
    if (!this.daemon.model.instances.some((i) => i.name === instance)) {
      throw new AwsError('InvalidInstanceID.NotFound', `The instance '${instance}' does not exist; instances: ${this.daemon.model.instances.map((i) => i.name).join(', ')}`);
    }
    const l = [...this.daemon.listeners.values()].find((x) => x.spec.kind === 'service' && x.spec.instName === instance && x.spec.protocol === proto && x.spec.rulePort === port);
    if (!l) throw new UsageError(`setBackend: instance ${instance} has no ${protocol} service on port ${port}`, 'InvalidParameterValue');
    this.daemon.monitor.force(l.backendKey, state === 'down' ? false : null);
  }

  /**
   * Adds a fault (SPEC.md §9: Toxiproxy's toxics on TCP, latency/loss/duplicate/reorder on UDP)
   * to the allowed flows of a service (`web:tcp/8080`, by the port the rules see) or an outbound
   * entry (`app:out:tcp/5432`); live flows get it too. Returns the fault as in force (defaults
   * filled in, named `<type>_<stream>` unless named). Throws FaultError (code InvalidFault…,
   * FaultExists, FaultTargetNotFound).
   * `sg.addFault('web:tcp/8080', { type: 'latency', attributes: { latency: 200 } })`
   */
  addFault(target: string, fault: FaultSpec): Fault {
    return faultToJson(this.daemon.addFault(target, fault).fault);
  }

  /** Removes the fault `name` from `target`, or every fault there when `name` is omitted → how many. */
  removeFault(target: string, name?: string): number {
    return this.daemon.removeFault(target, name ?? null);
  }

  /** Every fault in force, with its target and origin ('config' or 'api'). */
  faults(): (Fault & { target: string; origin: 'config' | 'api' })[] {
    return this.daemon.listFaults().map((r) => ({ target: r.target, origin: r.origin, ...faultToJson(r.fault) }));
  }

  /** The conntrack table now (SPEC §5 entries). */
  conntrack(): ConntrackJson[] {
    return this.daemon.conntrack();
  }

  /**
   * Flow events of this sgemu from now on (open, close, reject, refuse, cut, expire), until
   * `break`/return() or stop(). `for await (const e of sg.flows()) { … break; }`.
   */
  flows(): FlowIterator {
    const queue: FlowEvent[] = [];
    let wake: ((r: IteratorResult<FlowEvent>) => void) | null = null;
    let done = false;
    const on = (msg: unknown): void => {
      const e = msg as FlowEvent;
      if (!this.mine(e)) return;
      if (wake) { const w = wake; wake = null; w({ value: e, done: false }); return; }
      if (queue.length >= MAX_QUEUED_EVENTS) { queue.shift(); this.dropped++; }
      queue.push(e);
    };
    const end = (): void => {
      if (done) return;
      done = true;
      flowEvents.unsubscribe(on);
      this.subscribers.delete(end);
      if (wake) { const w = wake; wake = null; w({ value: undefined, done: true }); }
    };
    flowEvents.subscribe(on);
    this.subscribers.add(end);
    const it: FlowIterator = {
      next: () => {
        const e = queue.shift();
        if (e) return Promise.resolve({ value: e, done: false });
        if (done) return Promise.resolve({ value: undefined, done: true });
        return new Promise((r) => { wake = r; });
      },
      return: () => { end(); return Promise.resolve({ value: undefined, done: true }); },
      [Symbol.asyncIterator]() { return it; },
    };
    return it;
  }

  /**
   * The first flow event from now on that `predicate` accepts; rejects with SgemuError code
   * 'Timeout' after timeoutMs (default 2000). Start waiting before making the connection:
   * `const opened = sg.waitFor((e) => e.type === 'open'); await expectFlow(…); await opened`.
   */
  waitFor(predicate: (e: FlowEvent) => boolean, timeoutMs = 2000): Promise<FlowEvent> {
    return new Promise((resolve, reject) => {
      const it = this.flows();
      const timer = setTimeout(() => {
        void it.return();
        reject(new SgemuError('Timeout', `waitFor: no matching flow event within ${timeoutMs} ms`));
      }, timeoutMs);
      void (async () => {
        try {
          for await (const e of it) {
            if (predicate(e)) { clearTimeout(timer); resolve(e); return; }
          }
          clearTimeout(timer);
          reject(new SgemuError('Stopped', 'waitFor: sgemu stopped before a matching flow event'));
        } catch (err) {
          clearTimeout(timer);
          void it.return();
          reject(err);
        }
      })();
    });
  }

  /**
   * expectFlow with instance names: `from` an instance name or address, `to` an instance name
   * (port = the service's port as the rules see it; its listenPort is used) or an address.
   */
  expectFlow(o: Omit<ExpectFlowOptions, 'to'> & { to: string }): Promise<FlowOutcome> {
    const insts = this.daemon.model.instances;
    const from = o.from !== undefined ? insts.find((i) => i.name === o.from)?.address ?? o.from : undefined;
    const dst = insts.find((i) => i.name === o.to);
    if (!dst) return expectFlow({ ...o, ...(from !== undefined ? { from } : {}) });
    const proto = o.protocol === 'udp' ? 17 : 6;
    const svc = dst.services.find((s) => s.protocol === proto && s.port === o.port);
    const port = svc ? svc.listenPort : o.port;
    return expectFlow({ ...o, to: dst.address, ...(port !== undefined ? { port } : {}), ...(from !== undefined ? { from } : {}) });
  }

  /** Whether an event came from one of this sgemu's listeners (several may share a process). */
  private mine(e: FlowEvent): boolean {
    for (const l of this.daemon.listeners.values()) {
      if (l.spec.instName === e.instance && l.spec.address === e.dst && l.spec.listenPort === e.dstPort) return true;
    }
    return false;
  }

  /** One EC2 request through the service behind POST / → its result XML; throws AwsError. */
  private async ec2(params: Record<string, string>): Promise<string> {
    const svc = this.daemon.ec2;
    if (!svc || this.stopped) throw new SgemuError('Stopped', 'sgemu is stopped');
    return svc.call(params);
  }

  private rulesOf(groupId: string, direction: Direction): RuleInfo[] {
    const g = this.daemon.model.groups.find((x) => x.id === groupId);
    if (!g) return [];
    const list: Rule[] = direction === 'egress' ? g.egress : g.ingress;
    return list.map((r) => info(r));
  }

}

/** The rule ids an Authorize/Revoke response names (its securityGroupRuleSet or
 * revokedSecurityGroupRuleSet): exact even when other changes run concurrently. */
function ruleIdsIn(xml: string): Set<string> {
  return new Set([...xml.matchAll(/<securityGroupRuleId>(sgr-[0-9a-f]{17})<\/securityGroupRuleId>/g)].map((m) => m[1]!));
}

function info(r: Rule): RuleInfo {
  const j = ruleJson(r) as Record<string, unknown>;
  const out: RuleInfo = {
    ruleId: r.id, groupId: r.groupId, direction: r.direction === INGRESS ? 'ingress' : 'egress',
    protocol: String(j.protocol), fromPort: r.fromPort, toPort: r.toPort, description: r.description,
  };
  if (r.peer.kind === 'cidr') out.cidr = r.peer.cidr;
  else if (r.peer.kind === 'group') out.groupIdRef = r.peer.groupId;
  else out.prefixListId = r.peer.prefixListId;
  return out;
}

const RULE_FIELDS: readonly string[] = fieldsOf('rule');

/**
 * A config rule (SPEC §2) → `IpPermissions.1.*` query parameters. Only translation: every value
 * goes through as text, and Ec2Service validates it as it validates the same request over HTTP
 * (a bad port is its InvalidParameterValue, a missing source its MissingParameter).
 */
export function permission(rule: unknown): Record<string, string> {
  if (typeof rule !== 'object' || rule === null || Array.isArray(rule)) {
    throw new AwsError('InvalidParameterValue', `the rule must be an object like { protocol: 'tcp', ports: 443, cidr: '0.0.0.0/0' }, got ${Array.isArray(rule) ? 'a list' : typeof rule}`);
  }
  const r = rule as Record<string, unknown>;
  for (const k of Object.keys(r)) {
    if (!RULE_FIELDS.includes(k) || k === 'id') {
      throw new AwsError('UnknownParameter', `The parameter ${k} is not recognized in a rule; valid: ${RULE_FIELDS.filter((f) => f !== 'id').join(', ')}`);
    }
  }
  const p: Record<string, string> = {};
  const pre = 'IpPermissions.1.';
  const text = (v: unknown): string => (typeof v === 'string' || typeof v === 'number' ? String(v) : JSON.stringify(v) ?? '');
  const proto = r.protocol === undefined ? '' : text(r.protocol);
  p[pre + 'IpProtocol'] = /^all$/i.test(proto.trim()) ? '-1' : proto;
  if (r.ports !== undefined) {
    const t = text(r.ports).trim();
    const m = /^(-?\d+)\s*-\s*(-?\d+)$/.exec(t);
    const [from, to] = /^all$/i.test(t) ? ['-1', '-1'] : m ? [m[1]!, m[2]!] : [t, t];
    p[pre + 'FromPort'] = from;
    p[pre + 'ToPort'] = to;
  }
  if (r.icmpType !== undefined) p[pre + 'FromPort'] = text(r.icmpType);
  if (r.icmpCode !== undefined) p[pre + 'ToPort'] = text(r.icmpCode);
  else if (r.icmpType !== undefined) p[pre + 'ToPort'] = '-1';
  const desc = r.description === undefined ? undefined : text(r.description);
  const list = (v: unknown): string[] => (v === undefined ? [] : Array.isArray(v) ? v.map(text) : [text(v)]);
  let n4 = 0, n6 = 0, ng = 0, npl = 0;
  for (const c of list(r.cidr)) {
    if (c.includes(':')) { p[`${pre}Ipv6Ranges.${++n6}.CidrIpv6`] = c; if (desc !== undefined) p[`${pre}Ipv6Ranges.${n6}.Description`] = desc; }
    else { p[`${pre}IpRanges.${++n4}.CidrIp`] = c; if (desc !== undefined) p[`${pre}IpRanges.${n4}.Description`] = desc; }
  }
  for (const g of list(r.groups)) {
    p[`${pre}Groups.${++ng}.${/^sg-/.test(g) ? 'GroupId' : 'GroupName'}`] = g;
    if (desc !== undefined) p[`${pre}Groups.${ng}.Description`] = desc;
  }
  for (const pl of list(r.prefixLists)) {
    p[`${pre}PrefixListIds.${++npl}.PrefixListId`] = pl;
    if (desc !== undefined) p[`${pre}PrefixListIds.${npl}.Description`] = desc;
  }
  return p;
}
