// `explain`: the decision for one flow and why (SPEC §3), computed straight from the Model.
// Owns: resolving `--from`/`--to` text (address, addr:port, [v6]:port, instance name) to endpoints,
// the appearance of local addresses (`addresses:`), the per-instance egress/ingress checks with
// every allowing rule, near misses (rules that fail in exactly one respect) and tracking (CT §3.2).
// Must not: do I/O; it is the slow path and may allocate freely. Security-group checks are computed
// straight from the Model; network ACL verdicts (SPEC §7) come from the compiled policy's NACL
// tables (src/policy/nacl.ts, the matcher the data plane and the socket filters use), and only
// their near misses from the Model's entries.
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
  DIRECTION_NAMES, EGRESS, INGRESS, PROTO_ALL, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, protocolName, usesNetworkAcls,
  type Direction, type Instance, type Model, type NaclEntry, type Rule,
} from '../model/types.js';
import { compilePolicy } from './compile.js';
import { naclMatch4, naclMatch6, naclPortRange } from './nacl.js';
import { parseIpv4, parseIpv6Words } from './addr.js';
import type { CompiledPolicy } from './types.js';

export interface ExplainQuery {
  from: string;
  to: string;
  protocol: string;
  port?: number;
  icmpType?: number;
  icmpCode?: number;
  /** The client's (source) port, where the replies go: network ACLs check it. Absent: every port
   * of Linux's ephemeral range (32768-60999) is checked and the first denied one reported. */
  sourcePort?: number;
}

/** Linux's default net.ipv4.ip_local_port_range: the client ports explain assumes. */
export const EPHEMERAL_LO = 32768;
export const EPHEMERAL_HI = 60999;

export interface ExplainMatch { groupId: string; ruleId: string; via: string }
export type NearMissRespect = 'port' | 'protocol' | 'source' | 'destination' | 'order';
/** For a NACL near miss groupId is the networkAclId and ruleId the rule number as text. */
export interface ExplainNearMiss { groupId: string; ruleId: string; respect: NearMissRespect; rule: string }

/**
 * One check of the flow. layer 'sg': an instance's security groups in one direction (SPEC §3).
 * layer 'nacl': one network ACL a packet of the request or reply path crosses (SPEC §7), with the
 * deciding rule number ('*' = none matched) and its action; `instance` is the instance whose
 * subnet it is, `matched` stays empty.
 */
export interface ExplainCheck {
  layer: 'sg' | 'nacl';
  path?: 'request' | 'reply';
  subnet?: string;
  networkAclId?: string;
  ruleNumber?: number | '*';
  action?: 'allow' | 'deny';
  /** nacl: the packet's destination port checked (a reply's is the client's port); icmp: type << 8 | code. */
  packetPort?: number;
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
  /** With NACL checks: the client port the reply path was checked with, and whether it was assumed. */
  sourcePort?: number;
  sourcePortAssumed?: string;
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
export function explainFlow(model: Model, q: ExplainQuery, policy?: CompiledPolicy): ExplainResult {
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
  let sourcePort: number | undefined;
  let sourcePortAssumed: string | undefined;
  if (usesNetworkAcls(model)) {
    const sp = q.sourcePort ?? src.port;
    if (sp !== undefined && (!Number.isInteger(sp) || sp < 0 || sp > 65535)) throw new UsageError(`--source-port ${sp} is out of range (0..65535)`);
    const p = policy ?? compilePolicy(model);
    const nacl = naclChecks(model, p, src, dst, srcSeen.text, dstSeen.text, flow, sp);
    checks.push(...nacl.checks);
    if (nacl.checked) {
      sourcePort = nacl.port;
      if (sp === undefined && (proto === PROTO_TCP || proto === PROTO_UDP)) sourcePortAssumed = `${EPHEMERAL_LO}-${EPHEMERAL_HI}`;
    }
  }
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
    ...(sourcePort !== undefined ? { sourcePort } : {}),
    ...(sourcePortAssumed !== undefined ? { sourcePortAssumed } : {}),
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
    layer: 'sg',
    instance: inst.name,
    direction: DIRECTION_NAMES[dir],
    decision: allow ? 'allow' : 'deny',
    tracked,
    matched,
    nearMisses: allow ? [] : nearMisses,
  };
}

// ---- network ACLs ------------------------------------------------------------------------------

/** The packet port of the reply path: tcp/udp the client's port; icmp echo → echo reply; else 0. */
function replyPort(f: Flow, clientPort: number): number | null {
  if (f.proto === PROTO_TCP || f.proto === PROTO_UDP) return clientPort;
  if (f.proto === PROTO_ICMP) return f.icmpType === 8 ? 0 : null;              // echo reply type 0 code 0
  if (f.proto === PROTO_ICMPV6) return f.icmpType === 128 ? 129 << 8 : null;   // echo reply 129
  return 0;
}

function requestPort(f: Flow): number {
  if (f.proto === PROTO_TCP || f.proto === PROTO_UDP) return f.port;
  if (f.proto === PROTO_ICMP || f.proto === PROTO_ICMPV6) return (f.icmpType << 8) | f.icmpCode;
  return 0;
}

function portWords(p: number, f: Flow): string {
  if (f.proto === PROTO_ICMP || f.proto === PROTO_ICMPV6) return `type ${p >> 8} code ${p & 255}`;
  return `port ${p}`;
}

/** `tcp/80`, `tcp/1024-65535`, `all traffic`, `icmp type 8 code any`. */
function entryTraffic(e: NaclEntry): string {
  return ruleTraffic({ protocol: e.protocol, fromPort: e.fromPort, toPort: e.toPort });
}

interface NaclHop { path: 'request' | 'reply'; inst: Instance; dir: Direction; peer: string; port: number }

/**
 * The NACL checks of both paths, in the order a packet meets them: request (source egress,
 * destination ingress), then reply (destination egress, source ingress). One subnet: none.
 * With the client port unknown (tcp/udp), each port of the ephemeral range is checked and the
 * first denied one is reported (all allowed: the first of the range).
 */
function naclChecks(model: Model, p: CompiledPolicy, src: Endpoint, dst: Endpoint, srcSeen: string, dstSeen: string,
  f: Flow, givenPort: number | undefined): { checks: ExplainCheck[]; checked: boolean; port: number } {
  const subOf = (i: Instance | null): number => {
    if (!i) return -1;
    const k = p.instanceIndex.get(i.name);
    return k === undefined ? -1 : p.instSubnet[k]!;
  };
  const ss = subOf(src.instance), ds = subOf(dst.instance);
  if (ss === ds) return { checks: [], checked: false, port: givenPort ?? EPHEMERAL_LO };
  const hops = (cp: number): NaclHop[] => {
    const out: NaclHop[] = [];
    const rp = replyPort(f, cp);
    if (src.instance && ss >= 0) out.push({ path: 'request', inst: src.instance, dir: EGRESS, peer: dstSeen, port: requestPort(f) });
    if (dst.instance && ds >= 0) out.push({ path: 'request', inst: dst.instance, dir: INGRESS, peer: srcSeen, port: requestPort(f) });
    if (rp !== null && dst.instance && ds >= 0) out.push({ path: 'reply', inst: dst.instance, dir: EGRESS, peer: srcSeen, port: rp });
    if (rp !== null && src.instance && ss >= 0) out.push({ path: 'reply', inst: src.instance, dir: INGRESS, peer: dstSeen, port: rp });
    return out;
  };
  const match = (h: NaclHop): { acl: number; entry: number } => {
    const acl = p.subnetAcl[p.instSubnet[p.instanceIndex.get(h.inst.name)!]!]!;
    const t = p.nacls[acl]!.dirs[h.dir];
    if (h.peer.includes(':')) {
      const w = parseIpv6Words(h.peer);
      return { acl, entry: naclMatch6(t, f.proto < 0 ? 0 : f.proto, w[0]!, w[1]!, w[2]!, w[3]!, h.port) };
    }
    return { acl, entry: naclMatch4(t, f.proto < 0 ? 0 : f.proto, parseIpv4(h.peer), h.port) };
  };
  const allows = (h: NaclHop): boolean => {
    const m = match(h);
    return m.entry >= 0 && p.nacls[m.acl]!.allow[m.entry] === 1;
  };
  let port = givenPort ?? EPHEMERAL_LO;
  if (givenPort === undefined && (f.proto === PROTO_TCP || f.proto === PROTO_UDP)) {
    for (let cp = EPHEMERAL_LO; cp <= EPHEMERAL_HI; cp++) {
      if (!hops(cp).every(allows)) { port = cp; break; }
    }
  }
  const checks = hops(port).map((h): ExplainCheck => {
    const m = match(h);
    const n = p.nacls[m.acl]!;
    const e = m.entry >= 0 ? n.acl.entries[m.entry]! : null;
    const allow = e !== null && e.allow;
    const k = p.instanceIndex.get(h.inst.name)!;
    return {
      layer: 'nacl', path: h.path,
      subnet: h.inst.subnetId ?? p.subnetIds[p.instSubnet[k]!]!,
      networkAclId: n.acl.id,
      ruleNumber: e ? e.ruleNumber : '*',
      action: allow ? 'allow' : 'deny',
      packetPort: h.port,
      instance: h.inst.name,
      direction: DIRECTION_NAMES[h.dir],
      decision: allow ? 'allow' : 'deny',
      tracked: false,
      matched: [],
      nearMisses: allow ? [] : naclNearMisses(n.acl.id, n.acl.entries, h, f, e),
    };
  });
  return { checks, checked: true, port };
}

/** Allow entries of the hop's direction that match in all but one respect (protocol, port, the
 * peer's CIDR), or match fully but come after the deciding deny ('order'). */
function naclNearMisses(aclId: string, entries: readonly NaclEntry[], h: NaclHop, f: Flow, decided: NaclEntry | null): ExplainNearMiss[] {
  const egress = h.dir === EGRESS;
  const out: ExplainNearMiss[] = [];
  const peerAddr = parseAddr(h.peer);
  const dirWord = egress ? 'egress' : 'ingress';
  const toward = egress ? 'to' : 'from';
  for (const e of entries) {
    if (e.egress !== egress || !e.allow) continue;
    const protoOk = e.protocol === PROTO_ALL || e.protocol === f.proto;
    const [lo, hi] = naclPortRange(e);
    const portOk = e.protocol === PROTO_ALL || (lo <= h.port && h.port <= hi);
    const cidrOk = peerAddr !== undefined && inCidr(peerAddr, e.cidr);
    const misses: NearMissRespect[] = [];
    if (!protoOk) misses.push('protocol');
    else if (!portOk) misses.push('port');
    if (!cidrOk) misses.push(egress ? 'destination' : 'source');
    const what = `${dirWord} rule ${e.ruleNumber} allows ${entryTraffic(e)} ${toward} ${e.cidr}`;
    if (misses.length === 0 && decided && decided.ruleNumber < e.ruleNumber) {
      out.push({ groupId: aclId, ruleId: String(e.ruleNumber), respect: 'order', rule: `${what}, but ${dirWord} rule ${decided.ruleNumber} denies first (lower numbers decide)` });
    } else if (misses.length === 1) {
      let rule = what;
      if (misses[0] === 'port') {
        const where = h.path === 'reply' ? `the reply goes to ${portWords(h.port, f)}` : `the request goes to ${portWords(h.port, f)}`;
        const hint = h.path === 'reply' && (f.proto === PROTO_TCP || f.proto === PROTO_UDP) ? `: allow 1024-65535 (the clients' ephemeral ports)` : '';
        rule = `${what}, but ${where}${hint}`;
      } else if (misses[0] === 'protocol') rule = `${what}, but the ${h.path} is ${protocolName(f.proto)}`;
      else rule = `${what}, but the ${h.path} ${egress ? 'goes to' : 'comes from'} ${h.peer}`;
      out.push({ groupId: aclId, ruleId: String(e.ruleNumber), respect: misses[0]!, rule });
    }
  }
  return out;
}

function reasonOf(model: Model, res: ExplainResult, f: Flow, srcSeen: string, dstSeen: string): string {
  const traffic = flowTraffic(f);
  const parts: string[] = [];
  for (const c of res.checks) {
    if (c.layer === 'nacl') {
      if (c.decision === 'allow') continue;
      const rn = c.ruleNumber === '*' ? 'rule * (no entry matched)' : `rule ${c.ruleNumber}`;
      const pkt = c.path === 'reply' ? `the reply to ${c.packetPort !== undefined ? portWords(c.packetPort, f) : 'the client'}` : 'the request';
      let s = `network ACL ${c.networkAclId} (${c.subnet}) ${c.direction} ${rn} denies ${pkt}: the client times out`;
      const near = c.nearMisses[0];
      if (near) s += `; nearest: ${near.rule}`;
      parts.push(s);
      continue;
    }
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
  const nacl = res.checks.filter((c) => c.layer === 'nacl');
  if (res.decision === 'allow' && nacl.length > 0) {
    const rules = nacl.map((c) => `${c.networkAclId} ${c.direction} rule ${c.ruleNumber}`).join(', ');
    parts.push(`the network ACLs pass the request and the replies${res.sourcePort !== undefined && (f.proto === PROTO_TCP || f.proto === PROTO_UDP) ? ` to port ${res.sourcePort}${res.sourcePortAssumed ? ` (every port of ${res.sourcePortAssumed})` : ''}` : ''} (${rules})`);
  }
  return parts.join('; ');
}
