// What the load test expects of every flow, decided from the daemon's own answers: its status
// (listeners, backend liveness, refusal mode, filter exactness) and `explain` (the policy). Pure:
// no I/O here; the runner fetches the JSON and passes it in. Inputs arrive as `unknown` and are
// checked into the types below (an unexpected shape is a UsageError naming the field).
//
//   proto  table  policy  backend  refusal  filter exact  → expected on the wire
//   any    full   any     any      any      any             timeout   (drop-all filter: every new flow)
//   tcp    room   allow   up       any      any             connected
//   tcp    room   allow   down     raw      any             refused   (RST to the SYN: ECONNREFUSED)
//   tcp    room   allow   down     reset    any             reset     (accept then reset)
//   tcp    room   deny    any      any      yes             timeout   (the kernel filter drops the SYN)
//   tcp    room   deny    any      any      no              reset     (accepted, checked in userland, reset)
//   udp    room   allow   up       any      any             connected (the echoed datagram)
//   udp    room   allow   down     raw      any             refused   (ICMP port unreachable)
//   udp    room   allow   down     reset    any             timeout   (silence)
//   udp    room   deny    any      any      any             timeout   (dropped in the kernel or in userland)

import { isIP } from 'node:net';
import { UsageError } from '../model/errors.js';
import type { ListenerStatus } from '../dataplane/plane.js';

export type Outcome = 'connected' | 'refused' | 'timeout' | 'reset' | 'error';
export const OUTCOMES: readonly Outcome[] = ['connected', 'refused', 'timeout', 'reset', 'error'];

/** The flow classes of `--mix`. */
export type MixClass = 'allowed' | 'denied' | 'refused';
export const MIX_CLASSES: readonly MixClass[] = ['allowed', 'denied', 'refused'];

/** What the load test reads of a listener in /v1/status (the daemon's ListenerStatus, in part). */
export type ListenerInfo = Pick<ListenerStatus, 'kind' | 'instance' | 'protocol' | 'address' | 'listenPort' | 'rulePort' | 'backend' | 'backendUp' | 'nativeFilter' | 'exactFilter'>;

export interface DaemonStatus {
  refusal: 'raw' | 'reset';
  listeners: ListenerInfo[];
  conntrackEntries: number;
  conntrackMax: number;
  /** New flows dropped because the table was full (status.conntrack.overflows; the metric sgemu_conntrack_overflow_total). */
  conntrackOverflows: number;
  rssBytes: number;
  cpuUs: number;           // user + system since the daemon started
}

/** The part of the explain object (SPEC §3) the load test uses. */
export interface ExplainAnswer {
  decision: 'allow' | 'deny';
  reason: string;
  /**
   * Network ACLs checked the replies without the client's port: explain assumed every port of this
   * range (its `sourcePortAssumed`, Linux's ephemeral range) and answered for the worst of them.
   * null: no NACL is involved, or the port was given.
   */
  portsAssumed?: [number, number] | null;
  /** Every security-group check allows: a deny came from a network ACL (perhaps only for some ports). */
  naclOnlyDeny?: boolean;
}

export interface ExplainQuery {
  from: string; to: string; protocol: string; port: number;
  /** The client's own port, when the answer depends on it (network ACLs check the replies to it). */
  sourcePort?: number;
}

/** An outbound entry as GET /v1/instances lists it: `to` is an instance name or host:port. */
export interface OutboundInfo { instance: string; protocol: string; port: number; to: string; as: string }

function obj(v: unknown, where: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new UsageError(`daemon answer: ${where} is not an object (got ${JSON.stringify(v)?.slice(0, 80)})`, 'DaemonError');
  return v as Record<string, unknown>;
}
function str(o: Record<string, unknown>, k: string, where: string): string {
  const v = o[k];
  if (typeof v !== 'string') throw new UsageError(`daemon answer: ${where}.${k} is not a string (got ${JSON.stringify(v)})`, 'DaemonError');
  return v;
}
function num(o: Record<string, unknown>, k: string, where: string, dflt?: number): number {
  const v = o[k];
  if (v === undefined && dflt !== undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new UsageError(`daemon answer: ${where}.${k} is not a number (got ${JSON.stringify(v)})`, 'DaemonError');
  return v;
}
function bool(o: Record<string, unknown>, k: string, dflt: boolean): boolean {
  const v = o[k];
  return typeof v === 'boolean' ? v : dflt;
}

/** Checks GET /v1/status into DaemonStatus. */
export function parseStatus(v: unknown): DaemonStatus {
  const o = obj(v, 'status');
  const ls = o.listeners;
  if (!Array.isArray(ls)) throw new UsageError('daemon answer: status.listeners is not an array', 'DaemonError');
  const listeners = ls.map((x, i): ListenerInfo => {
    const w = `status.listeners[${i}]`;
    const l = obj(x, w);
    const kind = str(l, 'kind', w), protocol = str(l, 'protocol', w);
    if (kind !== 'service' && kind !== 'outbound') throw new UsageError(`daemon answer: ${w}.kind "${kind}" is not service or outbound`, 'DaemonError');
    if (protocol !== 'tcp' && protocol !== 'udp') throw new UsageError(`daemon answer: ${w}.protocol "${protocol}" is not tcp or udp`, 'DaemonError');
    return {
      kind, instance: str(l, 'instance', w), protocol, address: str(l, 'address', w),
      listenPort: num(l, 'listenPort', w), rulePort: num(l, 'rulePort', w), backend: typeof l.backend === 'string' ? l.backend : '',
      backendUp: bool(l, 'backendUp', true), nativeFilter: bool(l, 'nativeFilter', false), exactFilter: bool(l, 'exactFilter', false),
    };
  });
  const ct = typeof o.conntrack === 'object' && o.conntrack !== null ? o.conntrack as Record<string, unknown> : {};
  const cpu = typeof o.cpu === 'object' && o.cpu !== null ? o.cpu as Record<string, unknown> : {};
  return {
    refusal: o.refusal === 'raw' ? 'raw' : 'reset',
    listeners,
    conntrackEntries: num(ct, 'entries', 'status.conntrack', 0),
    conntrackMax: num(ct, 'max', 'status.conntrack', 0),
    conntrackOverflows: num(ct, 'overflows', 'status.conntrack', 0),
    rssBytes: num(o, 'rssBytes', 'status', 0),
    cpuUs: num(cpu, 'user', 'status.cpu', 0) + num(cpu, 'system', 'status.cpu', 0),
  };
}

/** Checks a POST /v1/explain answer. */
export function parseExplain(v: unknown): ExplainAnswer {
  const o = obj(v, 'explain');
  const decision = o.decision;
  if (decision !== 'allow' && decision !== 'deny') throw new UsageError(`daemon answer: explain.decision ${JSON.stringify(decision)} is not "allow" or "deny"`, 'DaemonError');
  let portsAssumed: [number, number] | null = null;
  const m = typeof o.sourcePortAssumed === 'string' ? /^(\d+)-(\d+)$/.exec(o.sourcePortAssumed) : null;
  if (m) portsAssumed = [Number(m[1]), Number(m[2])];
  const checks = Array.isArray(o.checks) ? o.checks : [];
  const naclOnlyDeny = checks.every((c) => typeof c !== 'object' || c === null || (c as Record<string, unknown>).layer === 'nacl' || (c as Record<string, unknown>).decision === 'allow');
  return { decision, reason: typeof o.reason === 'string' ? o.reason : '', portsAssumed, naclOnlyDeny };
}

/**
 * Whether a flow from client port `port` needs its own explain answer (issue #14): the cached one
 * assumed every port of a range, and either the flow's port lies outside it, or the answer is a
 * network ACL's deny, which may hold for some ports of the range only (an egress entry allowing
 * 40000-65535 denies 32768-39999 and passes the rest). An allow over the whole range holds for
 * every port in it.
 */
export function needsPortAnswer(a: ExplainAnswer, port: number): boolean {
  if (!a.portsAssumed || port <= 0) return false;
  if (port < a.portsAssumed[0] || port > a.portsAssumed[1]) return true;
  return a.decision === 'deny' && a.naclOnlyDeny === true;
}

/** Checks GET /v1/instances into the outbound entries (missing fields: none known). */
export function parseOutbound(v: unknown): OutboundInfo[] {
  if (!Array.isArray(v)) return [];
  const out: OutboundInfo[] = [];
  for (const x of v) {
    if (typeof x !== 'object' || x === null) continue;
    const i = x as Record<string, unknown>;
    if (typeof i.name !== 'string' || !Array.isArray(i.outbound)) continue;
    for (const y of i.outbound) {
      if (typeof y !== 'object' || y === null) continue;
      const o = y as Record<string, unknown>;
      if (typeof o.port !== 'number' || typeof o.to !== 'string') continue;
      out.push({ instance: i.name, protocol: typeof o.protocol === 'string' ? o.protocol : 'tcp', port: o.port, to: o.to, as: typeof o.as === 'string' ? o.as : '' });
    }
  }
  return out;
}

/** `host:port` / `[v6]:port` → host; anything else unchanged. */
function hostOf(hp: string): string {
  const m = /^\[([^\]]+)\]:\d+$/.exec(hp) ?? /^([^:]+):\d+$/.exec(hp);
  return m ? m[1]! : hp;
}

/** A stable key for a listener: protocol, address, port. */
export function listenerKey(l: Pick<ListenerInfo, 'protocol' | 'address' | 'listenPort'>): string {
  return `${l.protocol} ${l.address.includes(':') ? `[${l.address}]` : l.address}:${l.listenPort}`;
}

/**
 * The explain question for a flow from `source` through listener `l`. A service listener:
 * from the source to the instance (its address for IPv6, so the families agree) on the rule
 * port. An outbound listener: the source does not matter, from the instance to its target (an
 * instance name, or the `as` address standing for an outside host) on the rule port.
 */
export function explainQuery(l: ListenerInfo, source: string, outbound: readonly OutboundInfo[]): ExplainQuery {
  if (l.kind === 'service') {
    return { from: source, to: l.address.includes(':') ? l.address : l.instance, protocol: l.protocol, port: l.rulePort };
  }
  const o = outbound.find((x) => x.instance === l.instance && x.port === l.listenPort && x.protocol === l.protocol);
  let to = hostOf(l.backend);
  if (o) {
    // `to` is `instance:port` (another instance: explain by name) or `host:port` (an outside
    // host, which the rules see as the `as` address).
    const host = hostOf(o.to);
    to = isIP(host) ? hostOf(o.as || o.to) : host;
  }
  return { from: l.instance, to, protocol: l.protocol, port: l.rulePort };
}

/** The cache key of a question: outbound flows share one answer whatever the source. */
export function explainKey(q: ExplainQuery): string {
  return `${q.from}|${q.to}|${q.protocol}|${q.port}${q.sourcePort !== undefined ? `|${q.sourcePort}` : ''}`;
}

/**
 * The outcome the client must see, by the table at the top of this file.
 * @param full  the daemon's conntrack table is full (entries ≥ max): new flows are dropped
 */
export function expectedOutcome(l: ListenerInfo, refusal: DaemonStatus['refusal'], decision: ExplainAnswer['decision'], full = false): Outcome {
  if (full) return 'timeout';
  if (l.protocol === 'udp') {
    if (decision === 'deny') return 'timeout';
    return l.backendUp ? 'connected' : refusal === 'raw' ? 'refused' : 'timeout';
  }
  if (decision === 'allow') return l.backendUp ? 'connected' : refusal === 'raw' ? 'refused' : 'reset';
  return l.nativeFilter && l.exactFilter ? 'timeout' : 'reset';
}

/** Whether a status says the conntrack table is full (a max of 0: not reported, never full). */
export function tableFull(s: Pick<DaemonStatus, 'conntrackEntries' | 'conntrackMax'>): boolean {
  return s.conntrackMax > 0 && s.conntrackEntries >= s.conntrackMax;
}

/** The `--mix` class of a flow: allowed (to a live backend), refused (allowed, backend down), denied. */
export function mixClass(l: ListenerInfo, decision: ExplainAnswer['decision']): MixClass {
  if (decision === 'deny') return 'denied';
  return l.backendUp ? 'allowed' : 'refused';
}

/** `allowed=70,denied=20,refused=10` → weights; classes left out weigh 0. UsageError otherwise. */
export function parseMix(text: string): Record<MixClass, number> {
  const out: Record<MixClass, number> = { allowed: 0, denied: 0, refused: 0 };
  for (const part of text.split(',')) {
    const m = /^\s*([a-z]+)\s*=\s*(\d+(?:\.\d+)?)\s*$/.exec(part);
    if (!m || !(MIX_CLASSES as readonly string[]).includes(m[1]!)) {
      throw new UsageError(`--mix "${text}": "${part}" is not class=weight with class allowed, denied or refused (e.g. allowed=70,denied=20,refused=10)`);
    }
    out[m[1] as MixClass] = Number(m[2]);
  }
  if (MIX_CLASSES.every((c) => out[c] === 0)) throw new UsageError(`--mix "${text}": every weight is 0; give at least one class a positive weight`);
  return out;
}

export const MAX_SOURCES = 65000;

/**
 * `--sources`: a count N (the first N of 127.77.0.1, 127.77.0.2, …) or a comma list of IPv4
 * loopback addresses and CIDR blocks (/16 or longer; a block of more than 2 addresses leaves out
 * its first and last), e.g. `127.0.0.1,127.0.0.5,127.77.1.0/28`. UsageError otherwise.
 */
export function parseSources(text: string): string[] {
  const t = text.trim();
  if (/^\d+$/.test(t)) {
    const n = Number(t);
    if (n < 1 || n > MAX_SOURCES) throw new UsageError(`--sources ${t}: a count must be 1..${MAX_SOURCES}; or give a list such as 127.0.0.1,127.77.1.0/28`);
    return Array.from({ length: n }, (_, i) => sourceAddress(i));
  }
  const out = new Set<string>();
  for (const part of t.split(',')) {
    const m = /^\s*(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:\/(\d{1,2}))?\s*$/.exec(part);
    const octets = m ? m.slice(1, 5).map(Number) : [];
    const bits = m?.[5] === undefined ? 32 : Number(m[5]);
    if (!m || octets.some((o) => o > 255) || octets[0] !== 127 || bits < 16 || bits > 32) {
      throw new UsageError(`--sources "${text}": "${part}" is not an IPv4 loopback address or block (127.x.y.z or 127.x.y.z/16../32), nor a count; ` +
        'e.g. 64 or 127.0.0.1,127.77.1.0/28');
    }
    const base = ((octets[0]! << 24) | (octets[1]! << 16) | (octets[2]! << 8) | octets[3]!) >>> 0;
    const size = 2 ** (32 - bits);
    const net = base - (base % size);
    const [first, last] = size > 2 ? [net + 1, net + size - 2] : [net, net + size - 1];
    for (let a = first; a <= last; a++) {
      out.add(`${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`);
      if (out.size > MAX_SOURCES) throw new UsageError(`--sources "${text}": more than ${MAX_SOURCES} addresses; give smaller blocks`);
    }
  }
  return [...out];
}

/** The i-th of `count` source addresses: 127.77.0.1, 127.77.0.2, … (i < 65534). */
export function sourceAddress(i: number): string {
  const n = i + 1;
  return `127.77.${(n >> 8) & 255}.${n & 255}`;
}

/**
 * Picks classes in proportion to their weights, deterministically (smooth weighted round robin:
 * every class gets its share within one round of the total weight).
 */
export class WeightedPicker<T> {
  private readonly current: number[];
  private readonly total: number;
  constructor(private readonly items: readonly T[], private readonly weights: readonly number[]) {
    this.current = weights.map(() => 0);
    this.total = weights.reduce((a, b) => a + b, 0);
  }
  next(): T {
    let best = 0;
    for (let i = 0; i < this.items.length; i++) {
      this.current[i]! += this.weights[i]!;
      if (this.current[i]! > this.current[best]!) best = i;
    }
    this.current[best]! -= this.total;
    return this.items[best]!;
  }
}
