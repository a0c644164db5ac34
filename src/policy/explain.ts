// `explain`: the decision for one flow and why (SPEC §3), computed straight from the Model.
// Owns: resolving `--from`/`--to` text (address, addr:port, [v6]:port, instance name) to endpoints,
// the appearance of local addresses (`addresses:`), the per-instance egress/ingress checks with
// every allowing rule, near misses (rules that fail in exactly one respect) and tracking (CT §3.2).
// Must not: do I/O or depend on the compiled policy; it is the slow path and may allocate freely.
// It must agree with src/policy/compile.ts on semantics (see the list at the top of that file):
//   - allow-only, union of the instance's groups; protocol -1 covers every protocol and port;
//   - group reference = address/address6 of instances carrying the group (self included);
//   - an IPv4 CIDR never matches an IPv6 peer and the reverse;
//   - untracked (TCP/UDP only): an allowing rule's peer is 0.0.0.0/0 (::/0) and the other direction
//     of the same instance has a rule to 0.0.0.0/0 (::/0) with protocol -1 or this protocol, 0-65535.

import ipaddr from 'ipaddr.js';
import { UsageError } from '../model/errors.js';
import {
  protocolNumber,
  DIRECTION_NAMES, EGRESS, INGRESS, PROTO_ALL, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, protocolName,
  type Direction, type Instance, type Model, type Rule,
} from '../model/types.js';

export interface ExplainQuery {
  from: string;
  to: string;
  protocol: string;
  port?: number;
  icmpType?: number;
  icmpCode?: number;
}

export interface ExplainMatch { groupId: string; ruleId: string; via: string }
export type NearMissRespect = 'port' | 'protocol' | 'source' | 'destination';
export interface ExplainNearMiss { groupId: string; ruleId: string; respect: NearMissRespect; rule: string }

export interface ExplainCheck {
  instance: string;
  direction: 'ingress' | 'egress';
  decision: 'allow' | 'deny';
  /** Whether an allowed flow gets a tracking entry (false for untracked flows and for denials). */
  tracked: boolean;
  matched: ExplainMatch[];
  nearMisses: ExplainNearMiss[];
}

export interface ExplainResult {
  decision: 'allow' | 'deny';
  protocol: string;
  port: number | null;          // tcp/udp port; null for other protocols
  icmpType?: number;
  icmpCode?: number;
  source: string;
  destination: string;
  sourceAppearsAs?: string;
  destinationAppearsAs?: string;
  sourceInstance?: string;
  destinationInstance?: string;
  checks: ExplainCheck[];
  reason: string;
}

type Addr = ipaddr.IPv4 | ipaddr.IPv6;

interface Endpoint {
  text: string;                 // canonical address text
  addr: Addr;
  family: 4 | 6;
  instance: Instance | null;
  port?: number;
}

const ICMP_ECHO_REQUEST = 8;
const ICMPV6_ECHO_REQUEST = 128;

/** Explains one flow; throws UsageError on bad input (bad address, unknown instance, protocol, port). */
export function explainFlow(model: Model, q: ExplainQuery): ExplainResult {
  const proto = parseProtocolText(q.protocol);
  const srcSpec = parseEndpointText(q.from, '--from');
  const dstSpec = parseEndpointText(q.to, '--to');
  // The family: an address given on either side decides; two instance names use IPv4.
  const family: 4 | 6 = srcSpec.addr?.kind() === 'ipv6' || dstSpec.addr?.kind() === 'ipv6' ? 6 : 4;
  const src = resolveEndpoint(model, srcSpec, family, '--from');
  const dst = resolveEndpoint(model, dstSpec, family, '--to');
  if (src.family !== dst.family) {
    throw new UsageError(`--from ${src.text} is IPv${src.family} but --to ${dst.text} is IPv${dst.family}; give both ends in one address family`);
  }
  if (!src.instance && !dst.instance) {
    throw new UsageError(`neither --from ${q.from} nor --to ${q.to} is an instance (names: ${model.instances.map((i) => i.name).join(', ') || 'none'}); explain needs at least one instance whose rules apply`);
  }

  let port: number | null = null;
  let icmpType: number | undefined;
  let icmpCode: number | undefined;
  if (proto === PROTO_TCP || proto === PROTO_UDP) {
    const p = q.port ?? dst.port;
    if (p === undefined) throw new UsageError(`--protocol ${protocolName(proto)} needs a destination port: --port N or --to ADDR:PORT`);
    if (!Number.isInteger(p) || p < 0 || p > 65535) throw new UsageError(`--port ${p} is out of range (0..65535)`);
    port = p;
  } else if (proto === PROTO_ICMP || proto === PROTO_ICMPV6) {
    icmpType = q.icmpType ?? (proto === PROTO_ICMP ? ICMP_ECHO_REQUEST : ICMPV6_ECHO_REQUEST);
    icmpCode = q.icmpCode ?? 0;
    for (const [k, v] of [['icmp-type', icmpType], ['icmp-code', icmpCode]] as const) {
      if (!Number.isInteger(v) || v < 0 || v > 255) throw new UsageError(`--${k} ${v} is out of range (0..255)`);
    }
  }
  const flow: Flow = { proto, port: port ?? -1, icmpType: icmpType ?? -1, icmpCode: icmpCode ?? -1 };

  const srcSeen = appearance(model, src);
  const dstSeen = appearance(model, dst);
  const checks: ExplainCheck[] = [];
  if (src.instance) checks.push(checkInstance(model, src.instance, EGRESS, flow, dstSeen, family));
  if (dst.instance) checks.push(checkInstance(model, dst.instance, INGRESS, flow, srcSeen, family));
  const decision = checks.every((c) => c.decision === 'allow') ? 'allow' : 'deny';

  // Key order as SPEC §3 prints it; the optional keys sit beside the addresses they qualify.
  const result: ExplainResult = {
    decision,
    protocol: protocolName(proto),
    port,
    ...(icmpType !== undefined ? { icmpType, icmpCode: icmpCode ?? 0 } : {}),
    source: src.text,
    ...(srcSeen.text !== src.text ? { sourceAppearsAs: srcSeen.text } : {}),
    ...(src.instance ? { sourceInstance: src.instance.name } : {}),
    destination: dst.text,
    ...(dstSeen.text !== dst.text ? { destinationAppearsAs: dstSeen.text } : {}),
    ...(dst.instance ? { destinationInstance: dst.instance.name } : {}),
    checks,
    reason: '',
  };
  result.reason = reasonOf(model, result, flow, srcSeen.text, dstSeen.text);
  return result;
}

interface Flow { proto: number; port: number; icmpType: number; icmpCode: number }

// ---- input -------------------------------------------------------------------------------------

/** tcp | udp | icmp | icmpv6 | all | -1 | 0..255 → protocol number. */
export function parseProtocolText(text: string): number {
  const p = protocolNumber(text);
  if (p !== undefined) return p;
  throw new UsageError(`--protocol "${text}" is not valid; use tcp, udp, icmp, icmpv6, all or a protocol number 0..255`);
}

interface EndpointSpec { addr?: Addr; name?: string; port?: number }

function parseAddr(text: string): Addr | undefined {
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return ipaddr.IPv4.parse(text);
  if (text.includes(':') && ipaddr.IPv6.isValid(text)) return ipaddr.IPv6.parse(text);
  return undefined;
}

function parsePort(flag: string, whole: string, text: string): number {
  const n = Number(text);
  if (!/^\d{1,5}$/.test(text) || n > 65535) throw new UsageError(`${flag} "${whole}": port "${text}" is not a port (0..65535)`);
  return n;
}

function parseEndpointText(raw: string, flag: string): EndpointSpec {
  const text = raw.trim();
  const bad = (): never => {
    throw new UsageError(`${flag} "${raw}" is not an address, address:port, [IPv6]:port or instance name (e.g. 127.0.0.1, 127.0.0.10:8080, [::1]:443, web)`);
  };
  if (text === '') bad();
  const bracket = /^\[([^\]]+)\](?::(.*))?$/.exec(text);
  if (bracket) {
    const a = parseAddr(bracket[1] ?? '');
    if (!a || a.kind() !== 'ipv6') return bad();
    return bracket[2] === undefined ? { addr: a } : { addr: a, port: parsePort(flag, raw, bracket[2]) };
  }
  const whole = parseAddr(text);
  if (whole) return { addr: whole };
  const colon = text.lastIndexOf(':');
  if (colon > 0 && text.indexOf(':') === colon) {
    const host = text.slice(0, colon);
    const port = parsePort(flag, raw, text.slice(colon + 1));
    const a = parseAddr(host);
    if (a) return { addr: a, port };
    if (/^[\d.]+$/.test(host)) return bad();
    if (/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(host)) return { name: host, port };
    return bad();
  }
  if (/^[\d.]+$/.test(text)) return bad();
  if (/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(text)) return { name: text };
  return bad();
}

function canon(a: Addr): string {
  return a.kind() === 'ipv6' ? (a as ipaddr.IPv6).toRFC5952String() : a.toString();
}

function sameAddr(a: Addr, text: string | null): boolean {
  if (text === null) return false;
  const b = parseAddr(text);
  return b !== undefined && b.kind() === a.kind() && canon(a) === canon(b);
}

function resolveEndpoint(model: Model, spec: EndpointSpec, family: 4 | 6, flag: string): Endpoint {
  if (spec.name !== undefined) {
    const inst = model.instances.find((i) => i.name === spec.name);
    if (!inst) {
      throw new UsageError(`${flag} "${spec.name}" is not an address nor an instance; instances: ${model.instances.map((i) => i.name).join(', ') || 'none'}`);
    }
    const text = family === 6 ? inst.address6 : inst.address;
    if (text === null) throw new UsageError(`${flag} ${inst.name} has no IPv6 address (address6) but the other end is IPv6`);
    const addr = parseAddr(text);
    if (!addr) throw new UsageError(`${flag} ${inst.name}: its address "${text}" is not an address`);
    return { text: canon(addr), addr, family, instance: inst, ...(spec.port !== undefined ? { port: spec.port } : {}) };
  }
  const addr = spec.addr as Addr;
  const fam: 4 | 6 = addr.kind() === 'ipv6' ? 6 : 4;
  // A local address that is an instance's address is that instance.
  const inst = model.instances.find((i) => sameAddr(addr, fam === 4 ? i.address : i.address6)) ?? null;
  return { text: canon(addr), addr, family: fam, instance: inst, ...(spec.port !== undefined ? { port: spec.port } : {}) };
}

// ---- addresses ---------------------------------------------------------------------------------

function inCidr(a: Addr, cidr: string): boolean {
  let parsed: [Addr, number];
  try { parsed = ipaddr.parseCIDR(cidr); } catch { return false; }
  if (parsed[0].kind() !== a.kind()) return false;
  return a.match(parsed);
}

/** How a local address appears to the rules: an instance is itself; else the most specific mapping. */
function appearance(model: Model, e: Endpoint): { text: string; addr: Addr } {
  if (e.instance) return { text: e.text, addr: e.addr };
  let best: { local: [Addr, number]; as: [Addr, number] } | null = null;
  for (const m of model.addresses) {
    let local: [Addr, number], as: [Addr, number];
    try { local = ipaddr.parseCIDR(m.local); as = ipaddr.parseCIDR(m.appearsAs); } catch { continue; }
    if (local[0].kind() !== e.addr.kind() || !e.addr.match(local)) continue;
    if (!best || local[1] > best.local[1]) best = { local, as };
  }
  if (!best) return { text: e.text, addr: e.addr };
  const bytes = e.addr.toByteArray();
  const asBytes = best.as[0].toByteArray();
  const prefix = best.local[1];
  const out = bytes.map((b, i) => {
    const bitsHere = Math.max(0, Math.min(8, prefix - i * 8));  // network bits in this byte
    const mask = bitsHere === 0 ? 0 : (0xff << (8 - bitsHere)) & 0xff;
    return ((asBytes[i] ?? 0) & mask) | (b & ~mask & 0xff);
  });
  const addr = ipaddr.fromByteArray(out);
  return { text: canon(addr), addr };
}

// ---- checks ------------------------------------------------------------------------------------

function rulesOf(model: Model, inst: Instance, dir: Direction): Rule[] {
  const seen = new Set<string>();
  const out: Rule[] = [];
  for (const gid of inst.groupIds) {
    const g = model.groups.find((x) => x.id === gid);
    if (!g) continue;
    for (const r of dir === INGRESS ? g.ingress : g.egress) {
      if (seen.has(r.id)) continue;
      seen.add(r.id);
      out.push(r);
    }
  }
  return out;
}

const portKind = (p: number): 'port' | 'icmp' | 'none' =>
  p === PROTO_TCP || p === PROTO_UDP ? 'port' : p === PROTO_ICMP || p === PROTO_ICMPV6 ? 'icmp' : 'none';

function protoMatches(r: Rule, f: Flow): boolean {
  return r.protocol === PROTO_ALL || r.protocol === f.proto;
}

/** Whether the rule's ports cover the flow, reading the rule's ports as if the protocols agreed. */
function portsMatch(r: Rule, f: Flow): boolean {
  if (r.protocol === PROTO_ALL) return true;
  const rk = portKind(r.protocol);
  const fk = portKind(f.proto);
  if (fk === 'none') return rk === 'none' || f.proto === PROTO_ALL;
  if (rk !== fk) return false;
  if (rk === 'port') return r.fromPort <= f.port && f.port <= r.toPort;
  return (r.fromPort === -1 || r.fromPort === f.icmpType) && (r.toPort === -1 || r.toPort === f.icmpCode);
}

/** The peer match, with the `via` text when it matches. */
function peerVia(model: Model, r: Rule, peer: Addr): string | null {
  const p = r.peer;
  switch (p.kind) {
    case 'cidr': return inCidr(peer, p.cidr) ? `cidr ${p.cidr}` : null;
    case 'prefixList': {
      const pl = model.prefixLists.find((x) => x.id === p.prefixListId);
      const e = pl?.entries.find((en) => inCidr(peer, en.cidr));
      return e ? `prefix-list ${p.prefixListId} entry ${e.cidr}` : null;
    }
    case 'group': {
      for (const i of model.instances) {
        if (!i.groupIds.includes(p.groupId)) continue;
        const a = peer.kind() === 'ipv6' ? i.address6 : i.address;
        if (sameAddr(peer, a)) return `group ${p.groupId} (instance ${i.name} ${a})`;
      }
      return null;
    }
  }
}

function isWorld(r: Rule, family: 4 | 6): boolean {
  return r.peer.kind === 'cidr' && r.peer.cidr === (family === 4 ? '0.0.0.0/0' : '::/0');
}

/** `tcp/22`, `udp/1000-2000`, `icmp type 8 code any`, `all`, `proto 47`. */
export function ruleTraffic(r: Pick<Rule, 'protocol' | 'fromPort' | 'toPort'>): string {
  const name = protocolName(r.protocol);
  if (r.protocol === PROTO_ALL) return 'all traffic';
  const k = portKind(r.protocol);
  if (k === 'port') {
    if (r.fromPort === 0 && r.toPort === 65535) return `${name}/all ports`;
    return r.fromPort === r.toPort ? `${name}/${r.fromPort}` : `${name}/${r.fromPort}-${r.toPort}`;
  }
  if (k === 'icmp') {
    if (r.fromPort === -1) return `${name} (all types)`;
    return `${name} type ${r.fromPort} code ${r.toPort === -1 ? 'any' : r.toPort}`;
  }
  return `protocol ${name}`;
}

export function peerText(r: Rule): string {
  const p = r.peer;
  return p.kind === 'cidr' ? p.cidr : p.kind === 'group' ? `group ${p.groupId}` : `prefix list ${p.prefixListId}`;
}

/** A human description of a rule: "sg-a allows tcp/8080 from 127.0.0.1/32". */
export function describeRule(r: Rule): string {
  const dir = r.direction === INGRESS ? 'from' : 'to';
  return `${r.groupId} allows ${ruleTraffic(r)} ${dir} ${peerText(r)}`;
}

function flowTraffic(f: Flow): string {
  const name = protocolName(f.proto);
  if (portKind(f.proto) === 'port') return `${name}/${f.port}`;
  if (portKind(f.proto) === 'icmp') return `${name} type ${f.icmpType} code ${f.icmpCode}`;
  return f.proto === PROTO_ALL ? 'all traffic' : `protocol ${name}`;
}

function checkInstance(model: Model, inst: Instance, dir: Direction, f: Flow, peer: { addr: Addr }, family: 4 | 6): ExplainCheck {
  const rules = rulesOf(model, inst, dir);
  const matched: ExplainMatch[] = [];
  const nearMisses: ExplainNearMiss[] = [];
  let world = false;
  for (const r of rules) {
    const protoOk = protoMatches(r, f);
    const portOk = portsMatch(r, f);
    const via = peerVia(model, r, peer.addr);
    if (protoOk && portOk && via !== null) {
      matched.push({ groupId: r.groupId, ruleId: r.id, via });
      if (isWorld(r, family)) world = true;
      continue;
    }
    const misses: NearMissRespect[] = [];
    if (!protoOk) misses.push('protocol');
    if (!portOk) misses.push('port');
    if (via === null) misses.push(dir === INGRESS ? 'source' : 'destination');
    if (misses.length === 1 && misses[0] !== undefined) {
      nearMisses.push({ groupId: r.groupId, ruleId: r.id, respect: misses[0], rule: describeRule(r) });
    }
  }
  const allow = matched.length > 0;
  let tracked = allow;
  if (allow && world && (f.proto === PROTO_TCP || f.proto === PROTO_UDP)) {
    const other = rulesOf(model, inst, dir === INGRESS ? EGRESS : INGRESS);
    const openBack = other.some((r) => isWorld(r, family)
      && (r.protocol === PROTO_ALL || (r.protocol === f.proto && r.fromPort === 0 && r.toPort === 65535)));
    if (openBack) tracked = false;
  }
  return {
    instance: inst.name,
    direction: DIRECTION_NAMES[dir],
    decision: allow ? 'allow' : 'deny',
    tracked,
    matched,
    nearMisses: allow ? [] : nearMisses,
  };
}

function reasonOf(model: Model, res: ExplainResult, f: Flow, srcSeen: string, dstSeen: string): string {
  const traffic = flowTraffic(f);
  const parts: string[] = [];
  for (const c of res.checks) {
    const toward = c.direction === 'ingress' ? `from ${srcSeen}` : `to ${dstSeen}`;
    const inst = model.instances.find((i) => i.name === c.instance);
    const groups = inst ? inst.groupIds.join(', ') : '';
    if (res.decision === 'allow') {
      const m = c.matched[0];
      if (!m) continue;
      const via = m.via.startsWith('cidr ') ? m.via.slice(5) : m.via;
      const what = `${m.groupId} allows ${traffic} ${c.direction === 'ingress' ? 'from' : 'to'} ${via}`;
      parts.push(res.checks.length > 1 ? `${what} (${c.instance} ${c.direction})` : what);
      if (!c.tracked && (f.proto === PROTO_TCP || f.proto === PROTO_UDP)) {
        parts.push(`the flow is untracked on ${c.instance} (allowed from the whole internet with ${c.direction === 'ingress' ? 'egress' : 'ingress'} all open, CT §3.2): revoking the rule cuts it at once`);
      }
    } else if (c.decision === 'deny') {
      let s = `no rule of ${groups || 'its groups'} on ${c.instance} allows ${traffic} ${toward} (${c.direction})`;
      const near = c.nearMisses[0];
      if (near) s += `; nearest: ${near.rule} (differs in ${near.respect})`;
      parts.push(s);
    }
  }
  return parts.join('; ');
}
