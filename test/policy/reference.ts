// A plain reference evaluator of AWS security-group semantics (aws-security-groups.md §1.5, CT §3.2),
// written to be obviously right, not fast: loop over the instance's groups and their rules,
// parse every address with ipaddr.js (not src/policy/addr.ts) and compare bigints.
// Tests hold the compiled matcher to this; the benchmark uses it as the linear-scan baseline.

import ipaddr from 'ipaddr.js';
import type { AddressMapping, Direction, Instance, Model, Peer, PrefixList, Rule, SecurityGroup } from '../../src/model/types.js';
import { DEFAULT_CONNECTION_TRACKING, DEFAULT_QUOTAS } from '../../src/model/types.js';

interface Addr { family: 4 | 6; value: bigint }

function toBig(bytes: number[]): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

const addrCache = new Map<string, Addr>();
export function refAddr(text: string): Addr {
  let a = addrCache.get(text);
  if (a === undefined) {
    const six = text.includes(':');
    const p = six ? ipaddr.IPv6.parse(text) : ipaddr.IPv4.parse(text);
    a = { family: six ? 6 : 4, value: toBig(p.toByteArray()) };
    addrCache.set(text, a);
  }
  return a;
}

/** Is `a` inside the CIDR text (same family only)? */
const cidrCache = new Map<string, { family: 4 | 6; net: bigint; len: number }>();
export function refInCidr(a: Addr, cidr: string): boolean {
  let c = cidrCache.get(cidr);
  if (c === undefined) {
    const [net, len] = ipaddr.parseCIDR(cidr);
    c = { family: net.kind() === 'ipv6' ? 6 : 4, net: toBig(net.toByteArray()), len };
    cidrCache.set(cidr, c);
  }
  if (c.family !== a.family) return false;
  const shift = BigInt((c.family === 4 ? 32 : 128) - c.len);
  return a.value >> shift === c.net >> shift;
}

function sameAddr(a: Addr, text: string | null): boolean {
  if (!text) return false;
  const b = refAddr(text);
  return a.family === b.family && a.value === b.value;
}

function peerMatches(model: Model, r: Rule, a: Addr): boolean {
  const p = r.peer;
  if (p.kind === 'cidr') return refInCidr(a, p.cidr);
  if (p.kind === 'group') {
    return model.instances.some((i) => i.groupIds.includes(p.groupId) && (sameAddr(a, i.address) || sameAddr(a, i.address6)));
  }
  const pl = model.prefixLists.find((x) => x.id === p.prefixListId);
  return pl !== undefined && pl.entries.some((e) => refInCidr(a, e.cidr));
}

function portMatches(r: Rule, proto: number, port: number): boolean {
  if (r.protocol === -1) return true;
  if (r.protocol !== proto) return false;
  if (proto === 6 || proto === 17) return r.fromPort <= port && port <= r.toPort;
  if (proto === 1 || proto === 58) {
    const type = port >> 8, code = port & 255;
    return r.fromPort === -1 || (r.fromPort === type && (r.toPort === -1 || r.toPort === code));
  }
  return true;
}

/** Rules of the instance's groups in one direction (a rule listed twice is still one rule). */
export function refRules(model: Model, instName: string, dir: Direction): Rule[] {
  const inst = model.instances.find((i) => i.name === instName)!;
  const out: Rule[] = [];
  for (const g of model.groups) {
    if (!inst.groupIds.includes(g.id)) continue;
    for (const r of dir === 0 ? g.ingress : g.egress) if (!out.some((x) => x.id === r.id)) out.push(r);
  }
  return out;
}

/** decide(): 0 deny, 1 allow, 3 allow + untracked. `peer` is the appearance address as text. */
export function refDecide(model: Model, instName: string, dir: Direction, proto: number, peer: string, port: number): number {
  const a = refAddr(peer);
  const matching = refRules(model, instName, dir).filter((r) => portMatches(r, proto, port) && peerMatches(model, r, a));
  if (matching.length === 0) return 0;
  if (proto !== 6 && proto !== 17) return 1;           // ICMP and the rest are always tracked
  const world = a.family === 4 ? '0.0.0.0/0' : '::/0';
  const openRule = matching.some((r) => r.peer.kind === 'cidr' && r.peer.cidr === world);
  const openBack = refRules(model, instName, dir === 0 ? 1 : 0).some((r) => r.peer.kind === 'cidr' && r.peer.cidr === world &&
    (r.protocol === -1 || (r.protocol === proto && r.fromPort === 0 && r.toPort === 65535)));
  return openRule && openBack ? 3 : 1;
}

/** The appearance of a local address: identity for instance addresses, else the most specific
 * `addresses:` entry covering it (first on a tie), else identity. Returns a bigint. */
export function refAppear(model: Model, local: string): bigint {
  const a = refAddr(local);
  if (model.instances.some((i) => sameAddr(a, i.address) || sameAddr(a, i.address6))) return a.value;
  let best: { local: string; appearsAs: string } | undefined;
  let bestLen = -1;
  for (const m of model.addresses) {
    const len = Number(m.local.split('/')[1]);
    if (refInCidr(a, m.local) && len > bestLen) { best = m; bestLen = len; }
  }
  if (best === undefined) return a.value;
  const bits = BigInt(a.family === 4 ? 32 : 128);
  const host = (1n << (bits - BigInt(bestLen))) - 1n;
  const appNet = toBig(ipaddr.parseCIDR(best.appearsAs)[0].toByteArray()) & ~host;
  return appNet | (a.value & host);
}

// ---------------------------------------------------------------------------------------------
// Model builders for the policy tests (plain Model objects, no src/config).


/** [protocol, fromPort, toPort, peer]; peer "sg-…" = group, "pl-…" = prefix list, else a CIDR. */
export type RuleSpec = [number, number, number, string];

let ruleSeq = 0;
export function mkPeer(p: string): Peer {
  if (p.startsWith('sg-')) return { kind: 'group', groupId: p };
  if (p.startsWith('pl-')) return { kind: 'prefixList', prefixListId: p };
  return { kind: 'cidr', cidr: p, family: p.includes(':') ? 6 : 4 };
}

export function mkRule(groupId: string, direction: Direction, [protocol, fromPort, toPort, peer]: RuleSpec): Rule {
  const id = 'sgr-' + (++ruleSeq).toString(16).padStart(17, '0');
  return { id, groupId, direction, protocol, fromPort, toPort, peer: mkPeer(peer), description: '' };
}

/** egress left out = the AWS default of a new group: all protocols to 0.0.0.0/0 (§1.6). */
export function mkGroup(id: string, ingress: RuleSpec[], egress: RuleSpec[] = [[-1, -1, -1, '0.0.0.0/0']]): SecurityGroup {
  return {
    id, name: id.slice(3), vpcId: 'vpc-local', description: '', isDefault: false, tags: {},
    ingress: ingress.map((s) => mkRule(id, 0, s)), egress: egress.map((s) => mkRule(id, 1, s)),
  };
}

export function mkInstance(name: string, address: string, groupIds: string[], address6: string | null = null): Instance {
  return {
    name, id: 'i-' + name, vpcId: 'vpc-local', address, address6, groupIds,
    connectionTracking: { ...DEFAULT_CONNECTION_TRACKING }, services: [], outbound: [],
  };
}

export function mkModel(parts: { groups: SecurityGroup[]; instances: Instance[]; prefixLists?: PrefixList[];
  addresses?: [string, string][] }): Model {
  const addresses: AddressMapping[] = (parts.addresses ?? []).map(([local, appearsAs]) =>
    ({ local, appearsAs, family: local.includes(':') ? 6 : 4 }));
  return {
    region: 'us-east-1', accountId: '123456789012', vpcs: [{ id: 'vpc-local' }],
    prefixLists: parts.prefixLists ?? [], groups: parts.groups, instances: parts.instances, addresses,
    quotas: { ...DEFAULT_QUOTAS },
  };
}

export function mkPrefixList(id: string, cidrs: string[]): PrefixList {
  return { id, name: id, maxEntries: Math.max(1, cidrs.length),
    entries: cidrs.map((cidr) => ({ cidr, family: cidr.includes(':') ? 6 : 4, description: '' })) };
}
