// The policy compiler: validated Model → CompiledPolicy (src/policy/types.ts), the matcher tables
// the data plane decides on, and the local source ranges socket filters are built from.
//
// Owns: AWS rule semantics (aws-security-groups.md §1.5, CT §3.2) turned into numbers.
// Must not: read config or do I/O. The tables are immutable after compilePolicy returns.
//
// Semantics folded in at compile time:
//   - allow-only; an instance's rules = union of its groups' rules (a rule id counts once);
//   - group reference = address/address6 of every instance carrying the group (self included);
//     an unknown group or prefix list matches nothing (AWS: a stale reference stays and matches nothing);
//   - protocol -1 = every protocol and port; numbers other than tcp/udp/icmp/icmpv6 ignore ports;
//     icmp/icmpv6: port = type << 8 | code, type -1 = any, code -1 = any code of that type;
//   - an IPv4 CIDR never matches an IPv6 peer and the reverse (v4-mapped IPv6 included);
//   - network ACLs (src/policy/nacl.ts, SPEC §7): stateless, ordered; a flow passes only when the
//     source subnet's egress and the destination subnet's ingress allow its request and the
//     destination's egress and the source's ingress allow its replies (to the client's port);
//     instances of one subnet cross none; an instance without a subnet is in its VPC's implicit
//     subnet (the default NACL). decideIngress* joins both layers for the listeners;
//   - UNTRACKED (CT §3.2, TCP and UDP only — "ICMP is always tracked", §3.1): some allowing rule has
//     peer 0.0.0.0/0 (::/0 for IPv6 flows) and the other direction of the same instance has a rule
//     to 0.0.0.0/0 (::/0) with protocol -1, or the flow's protocol with ports 0-65535. Prefix lists
//     and group references never count.
//
// The tables built here, and the matcher that reads them: src/policy/matcher.ts.

import { BUCKET_SHIFT } from './search.js';
import type { Instance, Model, Rule, SecurityGroup } from '../model/types.js';
import { EGRESS, INGRESS, PROTO_ALL, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, defaultNetworkAcl, defaultNetworkAclId, networkAclsOf } from '../model/types.js';
import { type CompiledPolicy } from './types.js';
import { compileNacl } from './nacl.js';
import { bigIntToIpv6, cidrPrefix, cidrToRange4, cidrToRange6, IPV6_MAX, ipv6ToBigInt, maskOf4, parseIpv4, parseIpv6Words } from './addr.js';
import { mergeRanges4, mergeRanges6 } from './ranges.js';
import { AddrMap4, AddrMap6, BUCKETS, IPV4_MAX, NaclIndex, Policy, PORT_MAX, PortTable, RuleSet, U4, U6, segmentOf } from './matcher.js';

export { PortTable, RuleSet } from './matcher.js';

/** A rule reduced to numbers: one port interval in the decide() port space, one address set. */
interface FlatRule {
  protocol: number;
  portLo: number;      // inclusive; portLo > portHi = matches nothing
  portHi: number;
  v4: number[];        // merged pairs
  v6: bigint[];
  open4: boolean;      // peer is the CIDR 0.0.0.0/0
  open6: boolean;      // peer is the CIDR ::/0
}

// ---------------------------------------------------------------------------------------------
// Compile time

interface AddrSet { v4: number[]; v6: bigint[] }

function addressSetOf(cidrs: readonly string[]): AddrSet {
  const v4: number[] = [], v6: bigint[] = [];
  for (const c of cidrs) {
    if (c.includes(':')) v6.push(...cidrToRange6(c));
    else v4.push(...cidrToRange4(c));
  }
  return { v4: mergeRanges4(v4), v6: mergeRanges6(v6) };
}

/** Rule ports → one inclusive interval of the decide() port argument. */
function portRange(r: Rule): [number, number] {
  switch (r.protocol) {
    case PROTO_TCP:
    case PROTO_UDP:
      return [Math.max(0, r.fromPort), Math.min(PORT_MAX, r.toPort)];
    case PROTO_ICMP:
    case PROTO_ICMPV6: {
      if (r.fromPort < 0) return [0, PORT_MAX];
      if (r.fromPort > 255 || r.toPort > 255) return [1, 0];
      const t = r.fromPort << 8;
      return r.toPort < 0 ? [t, t | 255] : [t | r.toPort, t | r.toPort];
    }
    default:
      return [0, PORT_MAX];
  }
}

class Compiler {
  private readonly groups = new Map<string, SecurityGroup>();
  private readonly members = new Map<string, AddrSet>();
  private readonly prefixLists = new Map<string, AddrSet>();
  private readonly flat = new Map<Rule, FlatRule>();
  private readonly setCache = new Map<string, [RuleSet, RuleSet]>();

  constructor(private readonly model: Model) {
    for (const g of model.groups) this.groups.set(g.id, g);
    const cidrsOf = new Map<string, string[]>();
    for (const inst of model.instances) {
      for (const gid of new Set(inst.groupIds)) {
        let a = cidrsOf.get(gid);
        if (a === undefined) cidrsOf.set(gid, a = []);
        a.push(inst.address);
        if (inst.address6) a.push(inst.address6);
      }
    }
    for (const [gid, cidrs] of cidrsOf) this.members.set(gid, addressSetOf(cidrs));
    for (const pl of model.prefixLists) this.prefixLists.set(pl.id, addressSetOf(pl.entries.map((e) => e.cidr)));
  }

  private flatten(r: Rule): FlatRule {
    let f = this.flat.get(r);
    if (f !== undefined) return f;
    const [portLo, portHi] = portRange(r);
    let addrs: AddrSet = { v4: [], v6: [] };
    let open4 = false, open6 = false;
    const p = r.peer;
    if (p.kind === 'cidr') {
      addrs = addressSetOf([p.cidr]);
      const six = p.cidr.includes(':');
      open4 = !six && cidrPrefix(p.cidr) === 0;
      open6 = six && cidrPrefix(p.cidr) === 0;
    } else if (p.kind === 'group') {
      addrs = this.members.get(p.groupId) ?? addrs;
    } else {
      addrs = this.prefixLists.get(p.prefixListId) ?? addrs;
    }
    f = { protocol: r.protocol, portLo, portHi, v4: addrs.v4, v6: addrs.v6, open4, open6 };
    this.flat.set(r, f);
    return f;
  }

  ruleSetsFor(inst: Instance): [RuleSet, RuleSet] {
    const gids = [...new Set(inst.groupIds)].filter((g) => this.groups.has(g)).sort();
    const key = gids.join(',');
    let sets = this.setCache.get(key);
    if (sets !== undefined) return sets;
    const byDir: FlatRule[][] = [[], []];
    const counts = [0, 0];
    for (const dir of [INGRESS, EGRESS] as const) {
      const seen = new Map<string, Rule>();
      for (const gid of gids) {
        const g = this.groups.get(gid)!;
        for (const r of dir === INGRESS ? g.ingress : g.egress) if (!seen.has(r.id)) seen.set(r.id, r);
      }
      counts[dir] = seen.size;
      for (const r of seen.values()) byDir[dir]!.push(this.flatten(r));
    }
    sets = [buildRuleSet(byDir[INGRESS]!, byDir[EGRESS]!, counts[INGRESS]!),
      buildRuleSet(byDir[EGRESS]!, byDir[INGRESS]!, counts[EGRESS]!)];
    this.setCache.set(key, sets);
    return sets;
  }
}

/** UNTRACKED bits the other direction's rules make possible for a flow of protocol `proto`. */
function untrackable(other: readonly FlatRule[], proto: number): number {
  if (proto !== PROTO_TCP && proto !== PROTO_UDP) return 0;
  let bits = 0;
  for (const r of other) {
    const fits = r.protocol === PROTO_ALL || (r.protocol === proto && r.portLo === 0 && r.portHi === PORT_MAX);
    if (!fits) continue;
    if (r.open4) bits |= U4;
    if (r.open6) bits |= U6;
  }
  return bits;
}

function buildRuleSet(rules: readonly FlatRule[], other: readonly FlatRule[], ruleCount: number): RuleSet {
  const all = rules.filter((r) => r.protocol === PROTO_ALL);
  const protos = new Set<number>([PROTO_TCP, PROTO_UDP]);
  for (const r of rules) if (r.protocol >= 0 && r.protocol <= 255) protos.add(r.protocol);
  const protoClass = new Uint16Array(256);
  const tables = [buildTable(all, 0)];
  for (const p of [...protos].sort((a, b) => a - b)) {
    protoClass[p] = tables.length;
    tables.push(buildTable(rules.filter((r) => r.protocol === p).concat(all), untrackable(other, p)));
  }
  return new RuleSet(protoClass, tables, ruleCount);
}

function buildTable(rules: readonly FlatRule[], untrack: number): PortTable {
  const live = rules.filter((r) => r.portLo <= r.portHi);
  const bset = new Set<number>([0]);
  for (const r of live) {
    bset.add(r.portLo);
    if (r.portHi < PORT_MAX) bset.add(r.portHi + 1);
  }
  const bounds = [...bset].sort((a, b) => a - b);
  const starts: number[] = [], flags: number[] = [];
  const v4Start: number[] = [], v4End: number[] = [], v6Start: number[] = [], v6End: number[] = [];
  const lo4: number[] = [], hi4: number[] = [], w6: number[] = [];
  const seen4 = new Map<string, number>(), seen6 = new Map<string, number>();
  let prevKey = '';
  for (const s of bounds) {
    const v4: number[] = [], v6: bigint[] = [];
    let open = 0;
    for (const r of live) {
      if (r.portLo > s || r.portHi < s) continue;
      for (const x of r.v4) v4.push(x);
      for (const x of r.v6) v6.push(x);
      if (r.open4) open |= U4;
      if (r.open6) open |= U6;
    }
    const m4 = mergeRanges4(v4), m6 = mergeRanges6(v6);
    const f = open & untrack;
    const k4 = m4.join(','), k6 = m6.join(',');
    const key = `${f}|${k4}|${k6}`;
    if (key === prevKey) continue;       // same as the segment before: extend it
    prevKey = key;
    starts.push(s);
    flags.push(f);
    let at4 = seen4.get(k4);
    if (at4 === undefined) {
      seen4.set(k4, at4 = lo4.length);
      for (let i = 0; i < m4.length; i += 2) lo4.push(m4[i]!), hi4.push(m4[i + 1]!);
    }
    v4Start.push(at4);
    v4End.push(at4 + m4.length / 2);
    let at6 = seen6.get(k6);
    if (at6 === undefined) {
      seen6.set(k6, at6 = w6.length / 8);
      for (const x of m6) w6.push(...bigIntToIpv6(x));
    }
    v6Start.push(at6);
    v6End.push(at6 + m6.length / 2);
  }
  const st = Uint32Array.from(starts);
  const index = new Uint16Array(BUCKETS + 1);
  for (let b = 0; b <= BUCKETS; b++) index[b] = segmentOf(st, Math.min(b << BUCKET_SHIFT, PORT_MAX));
  return new PortTable(st, index, Uint32Array.from(v4Start), Uint32Array.from(v4End),
    Uint32Array.from(lo4), Uint32Array.from(hi4), Uint32Array.from(v6Start), Uint32Array.from(v6End),
    Uint32Array.from(w6), Uint8Array.from(flags));
}

interface Mapping<T> { lo: T; hi: T; prefix: number; appLo: T }

/** Cut [0, max] at every mapping edge and every instance address; pick, per piece, the most
 * specific mapping (first on a tie) or identity; join equal neighbours. */
function partition<T extends number | bigint>(maps: Mapping<T>[], pinned: Set<T>, max: T, zero: T,
  inc: (x: T) => T, dec: (x: T) => T): { lo: T[]; hi: T[]; idx: number[] } {
  const pts = new Set<T>([zero]);
  for (const m of maps) { pts.add(m.lo); if (m.hi < max) pts.add(inc(m.hi)); }
  for (const a of pinned) { pts.add(a); if (a < max) pts.add(inc(a)); }
  const sorted = [...pts].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const lo: T[] = [], hi: T[] = [], idx: number[] = [];
  for (let k = 0; k < sorted.length; k++) {
    const s = sorted[k]!;
    const e = k + 1 < sorted.length ? dec(sorted[k + 1]!) : max;
    let best = -1;
    if (!pinned.has(s)) {
      for (let j = 0; j < maps.length; j++) {
        const m = maps[j]!;
        if (m.lo <= s && s <= m.hi && (best < 0 || m.prefix > maps[best]!.prefix)) best = j;
      }
    }
    // Instance addresses stay segments of their own (AddrMap4.inst), never joined to a neighbour.
    const joinable = idx.length > 0 && !pinned.has(s) && !pinned.has(lo[lo.length - 1]!);
    if (joinable && idx[idx.length - 1] === best) { hi[hi.length - 1] = e; continue; }
    lo.push(s); hi.push(e); idx.push(best);
  }
  return { lo, hi, idx };
}

function buildMap4(model: Model): AddrMap4 {
  const maps: Mapping<number>[] = [];
  for (const a of model.addresses) {
    if (a.local.includes(':')) continue;
    const [lo, hi] = cidrToRange4(a.local);
    maps.push({ lo, hi, prefix: cidrPrefix(a.local), appLo: cidrToRange4(a.appearsAs)[0] });
  }
  const pinned = new Set<number>(model.instances.map((i) => parseIpv4(i.address)));
  const p = partition(maps, pinned, IPV4_MAX, 0, (x) => x + 1, (x) => x - 1);
  const host = maps.map((m) => ~maskOf4(m.prefix) >>> 0);
  const net = maps.map((m, j) => (m.appLo & ~host[j]!) >>> 0);
  const byAddr = new Map<number, number>();
  model.instances.forEach((i, k) => { const a = parseIpv4(i.address); if (!byAddr.has(a)) byAddr.set(a, k); });
  const inst = Int32Array.from(p.lo.map((lo, k) => (lo === p.hi[k] ? byAddr.get(lo) ?? -1 : -1)));
  return new AddrMap4(Uint32Array.from(p.lo), Int32Array.from(p.idx), Uint32Array.from(host),
    Uint32Array.from(net), p.lo, p.hi, inst);
}

function buildMap6(model: Model): AddrMap6 {
  const maps: Mapping<bigint>[] = [];
  for (const a of model.addresses) {
    if (!a.local.includes(':')) continue;
    const [lo, hi] = cidrToRange6(a.local);
    maps.push({ lo, hi, prefix: cidrPrefix(a.local), appLo: cidrToRange6(a.appearsAs)[0] });
  }
  const pinned = new Set<bigint>();
  for (const i of model.instances) if (i.address6) pinned.add(ipv6ToBigInt(parseIpv6Words(i.address6)));
  const p = partition(maps, pinned, IPV6_MAX, 0n, (x) => x + 1n, (x) => x - 1n);
  const starts: number[] = [], host: number[] = [], net: number[] = [];
  for (const s of p.lo) starts.push(...bigIntToIpv6(s));
  for (const m of maps) {
    const h = (1n << BigInt(128 - m.prefix)) - 1n;
    host.push(...bigIntToIpv6(h));
    net.push(...bigIntToIpv6(m.appLo & ~h & IPV6_MAX));
  }
  return new AddrMap6(Uint32Array.from(starts), Int32Array.from(p.idx), Uint32Array.from(host),
    Uint32Array.from(net), p.lo, p.hi);
}

/**
 * Compile a validated model (may be slow; pure). Throws SgemuError(InvalidParameterValue) only if
 * the model breaks its own invariants (an unparsable address or CIDR).
 */
export function compilePolicy(model: Model, version = 0): CompiledPolicy {
  const c = new Compiler(model);
  const instanceIndex = new Map<string, number>();
  const sets: RuleSet[] = [];
  model.instances.forEach((inst, i) => {
    instanceIndex.set(inst.name, i);
    const [ing, eg] = c.ruleSetsFor(inst);
    sets.push(ing, eg);
  });
  return new Policy(version, model, instanceIndex, sets, buildMap4(model), buildMap6(model), buildNaclIndex(model));
}

/** Subnets (explicit, then each VPC's implicit one), their compiled NACLs, instance addresses. */
function buildNaclIndex(model: Model): NaclIndex {
  const acls = networkAclsOf(model);
  const nacls = acls.map(compileNacl);
  const aclIndex = new Map<string, number>(acls.map((a, i) => [a.id, i]));
  const subnetIds: string[] = [];
  const subnetAcl: number[] = [];
  const subIndex = new Map<string, number>();
  for (const sn of model.subnets ?? []) {
    subIndex.set(sn.id, subnetIds.length);
    subnetIds.push(sn.id);
    subnetAcl.push(aclIndex.get(sn.networkAclId) ?? aclIndex.get(defaultNetworkAclId(sn.vpcId)) ?? 0);
  }
  const implicit = new Map<string, number>();
  for (const v of model.vpcs) {
    implicit.set(v.id, subnetIds.length);
    subnetIds.push(`${v.id} (implicit subnet)`);
    subnetAcl.push(aclIndex.get(defaultNetworkAclId(v.id)) ?? 0);
  }
  const n = model.instances.length;
  const instSubnet = new Int32Array(n);
  const instAddr4 = new Uint32Array(n), instAddr6 = new Uint32Array(n * 4), has6 = new Uint8Array(n);
  const at4: [number, number][] = [], at6: [bigint, number][] = [];
  model.instances.forEach((inst, i) => {
    let s = inst.subnetId ? subIndex.get(inst.subnetId) : undefined;
    if (s === undefined) {
      s = implicit.get(inst.vpcId);
      if (s === undefined) {                         // an instance of a VPC not listed: its own implicit subnet
        implicit.set(inst.vpcId, s = subnetIds.length);
        subnetIds.push(`${inst.vpcId} (implicit subnet)`);
        subnetAcl.push(aclIndex.get(defaultNetworkAclId(inst.vpcId)) ?? -1);
      }
    }
    instSubnet[i] = s;
    instAddr4[i] = parseIpv4(inst.address);
    at4.push([instAddr4[i]!, i]);
    if (inst.address6) {
      const w = parseIpv6Words(inst.address6);
      instAddr6.set(w, i * 4);
      has6[i] = 1;
      at6.push([ipv6ToBigInt(w), i]);
    }
  });
  // A subnet of an unknown VPC without a NACL: an allow-all default of its own.
  for (let s = 0; s < subnetAcl.length; s++) {
    if (subnetAcl[s]! >= 0 && subnetAcl[s]! < nacls.length) continue;
    subnetAcl[s] = nacls.length;
    nacls.push(compileNacl(defaultNetworkAcl(subnetIds[s]!)));
  }
  const used = new Set<number>();
  for (let i = 0; i < n; i++) used.add(subnetAcl[instSubnet[i]!]!);
  const active = [...used].some((a) => !nacls[a]!.open);
  at4.sort((a, b) => a[0] - b[0]);
  at6.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const w6: number[] = [];
  for (const [b] of at6) w6.push(...bigIntToIpv6(b));
  return new NaclIndex(nacls, subnetIds, Int32Array.from(subnetAcl), instSubnet, active, instAddr4, instAddr6, has6,
    Uint32Array.from(at4.map((x) => x[0])), Int32Array.from(at4.map((x) => x[1])), Uint32Array.from(w6), Int32Array.from(at6.map((x) => x[1])));
}
