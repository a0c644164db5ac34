// The policy compiler: validated Model → CompiledPolicy (src/policy/types.ts), the matcher tables
// the data plane decides on, and the local source ranges socket filters are built from.
//
// Owns: AWS rule semantics (aws-security-groups.md §1.5, CT §3.2) turned into numbers.
// Must not: read config or do I/O; throw from decide*/appear* for any input.
// Invariants: the tables are immutable after compilePolicy returns; decide*/appear* allocate
// nothing; decide is O(log segments-per-bucket + log ranges), sub-linear in the number of rules.
//
// Semantics folded in at compile time:
//   - allow-only; an instance's rules = union of its groups' rules (a rule id counts once);
//   - group reference = address/address6 of every instance carrying the group (self included);
//     an unknown group or prefix list matches nothing (AWS: a stale reference stays and matches nothing);
//   - protocol -1 = every protocol and port; numbers other than tcp/udp/icmp/icmpv6 ignore ports;
//     icmp/icmpv6: port = type << 8 | code, type -1 = any, code -1 = any code of that type;
//   - an IPv4 CIDR never matches an IPv6 peer and the reverse (v4-mapped IPv6 included);
//   - UNTRACKED (CT §3.2, TCP and UDP only — "ICMP is always tracked", §3.1): some allowing rule has
//     peer 0.0.0.0/0 (::/0 for IPv6 flows) and the other direction of the same instance has a rule
//     to 0.0.0.0/0 (::/0) with protocol -1, or the flow's protocol with ports 0-65535. Prefix lists
//     and group references never count.
//
// Table layout, per instance × direction (instances with the same groups share one RuleSet):
//
//   RuleSet.protoClass[proto 0..255] ──► tables[k]          k = 0: rules with protocol -1 only
//                                                          (tcp and udp always get their own k)
//   PortTable                      segment i covers ports [starts[i], starts[i+1]) (last: ..65535)
//     starts  | 0 | 22 | 23 | 80 | 81 |          ← Uint32Array, searched on the port
//     index[b]            segment holding port b·64 (b = 0..1024): bounds that search to a bucket
//     v4Start/v4End[i] ──► lo4[j], hi4[j]         ← merged IPv4 ranges, shared between equal segments
//     v6Start/v6End[i] ──► w6[8j .. 8j+7]         ← merged IPv6 ranges: lo w0..w3, hi w0..w3
//     flags[i]            UNTRACKED bit for IPv4 (2) and for IPv6 (4)
//
// Address map (`addresses:`): local space is cut into segments, each identity (-1) or one mapping
// (the most specific local CIDR containing it; every instance address is its own identity
// segment). Within a segment the map is a translation, which makes the preimage in
// ingressSources exact.

import type { Direction, Instance, Model, Rule, SecurityGroup } from '../model/types.js';
import { EGRESS, INGRESS, PROTO_ALL, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP } from '../model/types.js';
import { VERDICT_ALLOW, VERDICT_UNTRACKED, type CompiledPolicy, type SourceRanges } from './types.js';
import { bigIntToIpv6, cidrPrefix, cidrToRange4, cidrToRange6, IPV6_MAX, ipv6ToBigInt, maskOf4, parseIpv4, parseIpv6Words } from './addr.js';
import { clipShift4, clipShift6, mergeRanges4, mergeRanges6 } from './ranges.js';

const U4 = VERDICT_UNTRACKED;          // segment flag: IPv4 flows allowed here are untracked
const U6 = VERDICT_UNTRACKED << 1;     // same for IPv6 flows
const IPV4_MAX = 0xffffffff;
const PORT_MAX = 65535;
const BUCKET_SHIFT = 6;                 // 1024 buckets of 64 ports
const BUCKETS = (PORT_MAX + 1) >>> BUCKET_SHIFT;

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

export class PortTable {
  constructor(
    readonly starts: Uint32Array,
    readonly index: Uint16Array,        // BUCKETS + 1 entries: segment holding port b << BUCKET_SHIFT
    readonly v4Start: Uint32Array,
    readonly v4End: Uint32Array,
    readonly lo4: Uint32Array,
    readonly hi4: Uint32Array,
    readonly v6Start: Uint32Array,
    readonly v6End: Uint32Array,
    readonly w6: Uint32Array,
    readonly flags: Uint8Array,
  ) {}
}

export class RuleSet {
  constructor(
    readonly protoClass: Uint16Array,   // 256 entries
    readonly tables: PortTable[],
    readonly ruleCount: number,
  ) {}
}

/** Local → appearance map of one family; `starts` (and lo/hi) sorted, covering the whole space. */
class AddrMap4 {
  constructor(
    readonly starts: Uint32Array,
    readonly idx: Int32Array,         // mapping index per segment, -1 = identity
    readonly host: Uint32Array,       // per mapping: host mask of the local CIDR
    readonly net: Uint32Array,        // per mapping: appearance network
    readonly segLo: number[],
    readonly segHi: number[],
  ) {}
}

class AddrMap6 {
  constructor(
    readonly starts: Uint32Array,     // 4 words per segment
    readonly idx: Int32Array,
    readonly host: Uint32Array,       // 4 words per mapping
    readonly net: Uint32Array,        // 4 words per mapping
    readonly segLo: bigint[],
    readonly segHi: bigint[],
  ) {}
}

// ---------------------------------------------------------------------------------------------
// Hot path helpers (numbers in, numbers out)

/** Index of the segment holding `port`: the last i with starts[i] <= port (starts[0] = 0). */
function segmentOf(starts: Uint32Array, port: number): number {
  let l = 0, h = starts.length - 1;
  while (l < h) {
    const m = (l + h + 1) >>> 1;
    if (starts[m]! <= port) l = m; else h = m - 1;
  }
  return l;
}

/** segmentOf through the bucket index: the answer lies between the segments holding the first
 * port of this bucket and of the next, so the search spans a handful of entries however many
 * rules there are. 1000 rules vs 10: 2.80× slower with the plain search, 1.25× with the index
 * (scripts/bench/matcher.ts, results in scripts/bench/README.md). */
function portSegment(t: PortTable, port: number): number {
  const starts = t.starts;
  const b = port >>> BUCKET_SHIFT;
  let l = t.index[b]!, h = t.index[b + 1]!;
  while (l < h) {
    const m = (l + h + 1) >>> 1;
    if (starts[m]! <= port) l = m; else h = m - 1;
  }
  return l;
}

/** Sign of (a[o..o+3]) − (w0..w3), all uint32. */
function cmp6(a: Uint32Array, o: number, w0: number, w1: number, w2: number, w3: number): number {
  let x = a[o]!, y = w0;
  if (x === y) { x = a[o + 1]!; y = w1; }
  else return x < y ? -1 : 1;
  if (x === y) { x = a[o + 2]!; y = w2; }
  else return x < y ? -1 : 1;
  if (x === y) { x = a[o + 3]!; y = w3; }
  else return x < y ? -1 : 1;
  return x === y ? 0 : x < y ? -1 : 1;
}

// ---------------------------------------------------------------------------------------------

class Policy implements CompiledPolicy {
  constructor(
    readonly version: number,
    readonly model: Model,
    readonly instanceIndex: ReadonlyMap<string, number>,
    private readonly sets: RuleSet[],          // [inst * 2 + dir]
    private readonly map4: AddrMap4,
    private readonly map6: AddrMap6,
  ) {}

  decide4(inst: number, dir: Direction, proto: number, peer: number, port: number): number {
    const set = this.sets[inst * 2 + dir];
    if (set === undefined || (proto >>> 0) > 255 || (port >>> 0) > PORT_MAX) return 0;
    const t = set.tables[set.protoClass[proto]!]!;
    const seg = portSegment(t, port);
    let l = t.v4Start[seg]!;
    let h = t.v4End[seg]! - 1;
    peer >>>= 0;
    const lo4 = t.lo4;
    if (h < l || lo4[l]! > peer) return 0;
    while (l < h) {
      const m = (l + h + 1) >>> 1;
      if (lo4[m]! <= peer) l = m; else h = m - 1;
    }
    if (t.hi4[l]! < peer) return 0;
    return VERDICT_ALLOW | (t.flags[seg]! & U4);
  }

  decide6(inst: number, dir: Direction, proto: number,
          w0: number, w1: number, w2: number, w3: number, port: number): number {
    const set = this.sets[inst * 2 + dir];
    if (set === undefined || (proto >>> 0) > 255 || (port >>> 0) > PORT_MAX) return 0;
    const t = set.tables[set.protoClass[proto]!]!;
    const seg = portSegment(t, port);
    let l = t.v6Start[seg]!;
    let h = t.v6End[seg]! - 1;
    w0 >>>= 0; w1 >>>= 0; w2 >>>= 0; w3 >>>= 0;
    const w6 = t.w6;
    if (h < l || cmp6(w6, l * 8, w0, w1, w2, w3) > 0) return 0;
    while (l < h) {
      const m = (l + h + 1) >>> 1;
      if (cmp6(w6, m * 8, w0, w1, w2, w3) <= 0) l = m; else h = m - 1;
    }
    if (cmp6(w6, l * 8 + 4, w0, w1, w2, w3) < 0) return 0;
    return VERDICT_ALLOW | ((t.flags[seg]! & U6) >>> 1);
  }

  appear4(local: number): number {
    local >>>= 0;
    const m = this.map4;
    const i = m.idx[segmentOf(m.starts, local)]!;
    if (i < 0) return local;
    return ((local & m.host[i]!) | m.net[i]!) >>> 0;
  }

  /** Returns true when a mapping applies. `out` always receives the appearance words (identity
   * when none applies), so callers may read `out` either way. */
  appear6(w0: number, w1: number, w2: number, w3: number, out: Uint32Array): boolean {
    w0 >>>= 0; w1 >>>= 0; w2 >>>= 0; w3 >>>= 0;
    const m = this.map6;
    const s = m.starts;
    let l = 0, h = (s.length >>> 2) - 1;
    while (l < h) {
      const k = (l + h + 1) >>> 1;
      if (cmp6(s, k * 4, w0, w1, w2, w3) <= 0) l = k; else h = k - 1;
    }
    const i = m.idx[l]!;
    if (i < 0) {
      out[0] = w0; out[1] = w1; out[2] = w2; out[3] = w3;
      return false;
    }
    const o = i * 4;
    out[0] = (w0 & m.host[o]!) | m.net[o]!;
    out[1] = (w1 & m.host[o + 1]!) | m.net[o + 1]!;
    out[2] = (w2 & m.host[o + 2]!) | m.net[o + 2]!;
    out[3] = (w3 & m.host[o + 3]!) | m.net[o + 3]!;
    return true;
  }

  ingressSources(inst: number, proto: number, port: number): SourceRanges {
    const set = this.sets[inst * 2 + INGRESS];
    if (set === undefined || (proto >>> 0) > 255 || (port >>> 0) > PORT_MAX) return { v4: new Uint32Array(0), v6: [] };
    const t = set.tables[set.protoClass[proto]!]!;
    const seg = portSegment(t, port);
    const allowed4: number[] = [];
    for (let j = t.v4Start[seg]!; j < t.v4End[seg]!; j++) allowed4.push(t.lo4[j]!, t.hi4[j]!);
    const allowed6: bigint[] = [];
    for (let j = t.v6Start[seg]!; j < t.v6End[seg]!; j++) {
      allowed6.push(ipv6ToBigInt(t.w6.subarray(j * 8, j * 8 + 4)), ipv6ToBigInt(t.w6.subarray(j * 8 + 4, j * 8 + 8)));
    }
    // Preimage: per local segment, the allowed appearance ranges inside its image, moved back.
    const out4: number[] = [];
    const m4 = this.map4;
    for (let k = 0; k < m4.segLo.length; k++) {
      const lo = m4.segLo[k]!, hi = m4.segHi[k]!;
      const alo = this.appear4(lo);
      clipShift4(allowed4, alo, alo + (hi - lo), lo - alo, out4);
    }
    const out6: bigint[] = [];
    const m6 = this.map6;
    const scratch = new Uint32Array(4);
    for (let k = 0; k < m6.segLo.length; k++) {
      const lo = m6.segLo[k]!, hi = m6.segHi[k]!;
      const w = bigIntToIpv6(lo);
      this.appear6(w[0]!, w[1]!, w[2]!, w[3]!, scratch);
      const alo = ipv6ToBigInt(scratch);
      clipShift6(allowed6, alo, alo + (hi - lo), lo - alo, out6);
    }
    return { v4: Uint32Array.from(mergeRanges4(out4)), v6: mergeRanges6(out6) };
  }

  ruleCount(inst: number, dir: Direction): number {
    return this.sets[inst * 2 + dir]?.ruleCount ?? 0;
  }
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
    if (idx.length > 0 && idx[idx.length - 1] === best) { hi[hi.length - 1] = e; continue; }
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
  return new AddrMap4(Uint32Array.from(p.lo), Int32Array.from(p.idx), Uint32Array.from(host),
    Uint32Array.from(net), p.lo, p.hi);
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
  return new Policy(version, model, instanceIndex, sets, buildMap4(model), buildMap6(model));
}
