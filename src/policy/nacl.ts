// Network ACLs compiled to numbers (SPEC §7): one NaclTable per NACL and direction, consulted by
// the policy's hot path (src/policy/compile.ts: naclFlow*, decideIngress*), by the source ranges
// the socket filters are built from (portsAllowed*), by explain (the deciding entry) and by lint.
//
// Must not: read config or do I/O; allocate or throw in match4/match6.
// Semantics (AWS "Network ACL rules"): entries of one direction in ascending ruleNumber, the first
// whose protocol, ports and CIDR match decides (allow or deny); none = the final `*` (deny).
// Protocol -1 and numbers other than tcp/udp/icmp/icmpv6 cover every port; icmp/icmpv6 ports are
// type << 8 | code as in the security-group tables (type -1 = any, code -1 = any code). Ports are
// the packet's destination port. An IPv4 CIDR never matches an IPv6 address and the reverse.
//
// First match is folded in at compile time, so a lookup is two binary searches whatever the number
// of entries:
//
//   NaclTable.protoClass[proto] ──► tables[k]        k = 0: entries with protocol -1 only
//   NaclPortTable  port segment i covers [starts[i], starts[i+1])   (bucket index as PortTable)
//     a4Start/a4End[i] ──► s4[j]  address segment j covers [s4[j], s4[j+1]) within that list,
//                          e4[j]  the deciding entry (index into the NACL's entries), -1 = `*`
//     a6Start/a6End[i] ──► s6[4j..4j+3], e6[j]   the same for IPv6 (four words per start)
//   Each address list starts at 0 (it covers the whole family); equal lists are shared.

import type { NaclEntry, NetworkAcl } from '../model/types.js';
import { PROTO_ALL, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP } from '../model/types.js';
import { bigIntToIpv6, cidrToRange4, cidrToRange6 } from './addr.js';
import { BUCKET_SHIFT, cmp6, portSegment } from './search.js';

const PORT_MAX = 65535;
const BUCKETS = (PORT_MAX + 1) >>> BUCKET_SHIFT;

export class NaclPortTable {
  constructor(
    readonly starts: Uint32Array,
    readonly index: Uint16Array,
    readonly a4Start: Uint32Array,
    readonly a4End: Uint32Array,
    readonly s4: Uint32Array,
    readonly e4: Int16Array,
    readonly a6Start: Uint32Array,
    readonly a6End: Uint32Array,
    readonly s6: Uint32Array,
    readonly e6: Int16Array,
  ) {}
}

export class NaclTable {
  constructor(
    readonly protoClass: Uint16Array,
    readonly tables: NaclPortTable[],
    /** Every lookup allows (one allow entry decides everything). */
    readonly open: boolean,
  ) {}
}

/** The compiled NACL: one table per direction (0 ingress, 1 egress) and the entries' actions. */
export class CompiledNacl {
  /** Every lookup in both directions allows: the hot path skips this NACL. */
  readonly open: boolean;
  readonly ingress: NaclTable;
  readonly egress: NaclTable;
  constructor(
    readonly acl: NetworkAcl,
    readonly dirs: [NaclTable, NaclTable],
    readonly allow: Uint8Array,         // per entry of acl.entries: 1 allow, 0 deny
  ) {
    this.open = dirs[0].open && dirs[1].open;
    this.ingress = dirs[0];
    this.egress = dirs[1];
  }
}

// ---- hot path ------------------------------------------------------------------------------------

/** The deciding entry for an IPv4 packet: index into acl.entries, -1 for the final `*`. */
export function naclMatch4(t: NaclTable, proto: number, addr: number, port: number): number {
  if ((proto >>> 0) > 255 || (port >>> 0) > PORT_MAX) return -1;
  const pt = t.tables[t.protoClass[proto]!]!;
  const seg = portSegment(pt, port);
  let l = pt.a4Start[seg]!, h = pt.a4End[seg]! - 1;
  const s4 = pt.s4;
  addr >>>= 0;
  while (l < h) {
    const m = (l + h + 1) >>> 1;
    if (s4[m]! <= addr) l = m; else h = m - 1;
  }
  return pt.e4[l]!;
}

export function naclMatch6(t: NaclTable, proto: number, w0: number, w1: number, w2: number, w3: number, port: number): number {
  if ((proto >>> 0) > 255 || (port >>> 0) > PORT_MAX) return -1;
  const pt = t.tables[t.protoClass[proto]!]!;
  const seg = portSegment(pt, port);
  let l = pt.a6Start[seg]!, h = pt.a6End[seg]! - 1;
  const s6 = pt.s6;
  w0 >>>= 0; w1 >>>= 0; w2 >>>= 0; w3 >>>= 0;
  while (l < h) {
    const m = (l + h + 1) >>> 1;
    if (cmp6(s6, m * 4, w0, w1, w2, w3) <= 0) l = m; else h = m - 1;
  }
  return pt.e6[l]!;
}

// ---- compile time --------------------------------------------------------------------------------

/** An entry's ports in the lookup's port space (inclusive; lo > hi matches nothing). */
export function naclPortRange(e: Pick<NaclEntry, 'protocol' | 'fromPort' | 'toPort'>): [number, number] {
  switch (e.protocol) {
    case PROTO_TCP:
    case PROTO_UDP:
      return [Math.max(0, e.fromPort), Math.min(PORT_MAX, e.toPort)];
    case PROTO_ICMP:
    case PROTO_ICMPV6: {
      if (e.fromPort < 0) return [0, PORT_MAX];
      if (e.fromPort > 255 || e.toPort > 255) return [1, 0];
      const t = e.fromPort << 8;
      return e.toPort < 0 ? [t, t | 255] : [t | e.toPort, t | e.toPort];
    }
    default:
      return [0, PORT_MAX];
  }
}

interface Flat { idx: number; lo: number; hi: number; family: 4 | 6; a4: [number, number]; a6: [bigint, bigint] }

function flatten(entries: readonly NaclEntry[], egress: boolean): Flat[] {
  const out: Flat[] = [];
  entries.forEach((e, idx) => {
    if (e.egress !== egress) return;
    const [lo, hi] = naclPortRange(e);
    out.push({
      idx, lo, hi, family: e.family,
      a4: e.family === 4 ? cidrToRange4(e.cidr) : [1, 0],
      a6: e.family === 6 ? cidrToRange6(e.cidr) : [1n, 0n],
    });
  });
  // First match in ascending rule number (entries are kept sorted; sort again to be sure).
  out.sort((x, y) => entries[x.idx]!.ruleNumber - entries[y.idx]!.ruleNumber);
  return out;
}

/** Per piece of the address space (starts from 0), the first entry containing it. */
function firstMatch4(list: readonly Flat[]): { s: number[]; e: number[] } {
  const bset = new Set<number>([0]);
  for (const f of list) { bset.add(f.a4[0]); if (f.a4[1] < 0xffffffff) bset.add(f.a4[1] + 1); }
  const bounds = [...bset].sort((a, b) => a - b);
  const s: number[] = [], e: number[] = [];
  for (const b of bounds) {
    let hit = -1;
    for (const f of list) if (f.a4[0] <= b && b <= f.a4[1]) { hit = f.idx; break; }
    if (e.length > 0 && e[e.length - 1] === hit) continue;
    s.push(b); e.push(hit);
  }
  return { s, e };
}

function firstMatch6(list: readonly Flat[]): { s: bigint[]; e: number[] } {
  const max = (1n << 128n) - 1n;
  const bset = new Set<bigint>([0n]);
  for (const f of list) { bset.add(f.a6[0]); if (f.a6[1] < max) bset.add(f.a6[1] + 1n); }
  const bounds = [...bset].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const s: bigint[] = [], e: number[] = [];
  for (const b of bounds) {
    let hit = -1;
    for (const f of list) if (f.a6[0] <= b && b <= f.a6[1]) { hit = f.idx; break; }
    if (e.length > 0 && e[e.length - 1] === hit) continue;
    s.push(b); e.push(hit);
  }
  return { s, e };
}

function buildPortTable(flat: readonly Flat[]): NaclPortTable {
  const live = flat.filter((f) => f.lo <= f.hi);
  const pset = new Set<number>([0]);
  for (const f of live) { pset.add(f.lo); if (f.hi < PORT_MAX) pset.add(f.hi + 1); }
  const bounds = [...pset].sort((a, b) => a - b);
  const starts: number[] = [];
  const a4Start: number[] = [], a4End: number[] = [], s4: number[] = [], e4: number[] = [];
  const a6Start: number[] = [], a6End: number[] = [], s6: number[] = [], e6: number[] = [];
  const seen4 = new Map<string, number>(), seen6 = new Map<string, number>();
  let prev = '';
  for (const p of bounds) {
    const here = live.filter((f) => f.lo <= p && p <= f.hi);
    const m4 = firstMatch4(here.filter((f) => f.family === 4));
    const m6 = firstMatch6(here.filter((f) => f.family === 6));
    const k4 = `${m4.s.join(',')}|${m4.e.join(',')}`;
    const k6 = `${m6.s.join(',')}|${m6.e.join(',')}`;
    const key = `${k4}#${k6}`;
    if (key === prev) continue;
    prev = key;
    starts.push(p);
    let at4 = seen4.get(k4);
    if (at4 === undefined) { seen4.set(k4, at4 = s4.length); s4.push(...m4.s); e4.push(...m4.e); }
    a4Start.push(at4); a4End.push(at4 + m4.s.length);
    let at6 = seen6.get(k6);
    if (at6 === undefined) {
      seen6.set(k6, at6 = e6.length);
      for (const x of m6.s) s6.push(...bigIntToIpv6(x));
      e6.push(...m6.e);
    }
    a6Start.push(at6); a6End.push(at6 + m6.s.length);
  }
  const st = Uint32Array.from(starts);
  const index = new Uint16Array(BUCKETS + 1);
  for (let b = 0; b <= BUCKETS; b++) {
    const port = Math.min(b << BUCKET_SHIFT, PORT_MAX);
    let l = 0, h = st.length - 1;
    while (l < h) { const m = (l + h + 1) >>> 1; if (st[m]! <= port) l = m; else h = m - 1; }
    index[b] = l;
  }
  return new NaclPortTable(st, index, Uint32Array.from(a4Start), Uint32Array.from(a4End), Uint32Array.from(s4), Int16Array.from(e4),
    Uint32Array.from(a6Start), Uint32Array.from(a6End), Uint32Array.from(s6), Int16Array.from(e6));
}

function buildTable(entries: readonly NaclEntry[], egress: boolean, allow: Uint8Array): NaclTable {
  const flat = flatten(entries, egress);
  const protos = new Set<number>([PROTO_TCP, PROTO_UDP]);
  for (const f of flat) { const p = entries[f.idx]!.protocol; if (p >= 0 && p <= 255) protos.add(p); }
  const protoClass = new Uint16Array(256);
  const tables = [buildPortTable(flat.filter((f) => entries[f.idx]!.protocol === PROTO_ALL))];
  for (const p of [...protos].sort((a, b) => a - b)) {
    protoClass[p] = tables.length;
    tables.push(buildPortTable(flat.filter((f) => { const q = entries[f.idx]!.protocol; return q === p || q === PROTO_ALL; })));
  }
  let open = true;
  for (const t of tables) {
    for (const x of t.e4) if (x < 0 || !allow[x]) open = false;
    for (const x of t.e6) if (x < 0 || !allow[x]) open = false;
  }
  return new NaclTable(protoClass, tables, open);
}

export function compileNacl(acl: NetworkAcl): CompiledNacl {
  const allow = Uint8Array.from(acl.entries.map((e) => (e.allow ? 1 : 0)));
  return new CompiledNacl(acl, [buildTable(acl.entries, false, allow), buildTable(acl.entries, true, allow)], allow);
}

// ---- slow path: port sets for socket filters --------------------------------------------------

/** Destination ports (merged inclusive pairs) for which the table allows `proto` with peer `addr`. */
export function portsAllowed4(n: CompiledNacl, dir: 0 | 1, proto: number, addr: number): number[] {
  const t = n.dirs[dir];
  const pt = t.tables[t.protoClass[proto]!]!;
  const out: number[] = [];
  for (let i = 0; i < pt.starts.length; i++) {
    const lo = pt.starts[i]!, hi = i + 1 < pt.starts.length ? pt.starts[i + 1]! - 1 : PORT_MAX;
    const e = naclMatch4(t, proto, addr, lo);
    if (e < 0 || !n.allow[e]) continue;
    if (out.length > 0 && out[out.length - 1] === lo - 1) out[out.length - 1] = hi;
    else out.push(lo, hi);
  }
  return out;
}

export function portsAllowed6(n: CompiledNacl, dir: 0 | 1, proto: number, w: ArrayLike<number>): number[] {
  const t = n.dirs[dir];
  const pt = t.tables[t.protoClass[proto]!]!;
  const out: number[] = [];
  for (let i = 0; i < pt.starts.length; i++) {
    const lo = pt.starts[i]!, hi = i + 1 < pt.starts.length ? pt.starts[i + 1]! - 1 : PORT_MAX;
    const e = naclMatch6(t, proto, w[0]!, w[1]!, w[2]!, w[3]!, lo);
    if (e < 0 || !n.allow[e]) continue;
    if (out.length > 0 && out[out.length - 1] === lo - 1) out[out.length - 1] = hi;
    else out.push(lo, hi);
  }
  return out;
}

/** Address boundaries (starts of pieces) where the table's decision for `proto` may change. */
export function addressCuts4(n: CompiledNacl, dir: 0 | 1, proto: number): number[] {
  const t = n.dirs[dir];
  const pt = t.tables[t.protoClass[proto]!]!;
  return [...new Set(pt.s4)];
}

export function addressCuts6(n: CompiledNacl, dir: 0 | 1, proto: number): bigint[] {
  const t = n.dirs[dir];
  const pt = t.tables[t.protoClass[proto]!]!;
  const out = new Set<bigint>();
  for (let j = 0; j < pt.s6.length; j += 4) {
    out.add((BigInt(pt.s6[j]!) << 96n) | (BigInt(pt.s6[j + 1]!) << 64n) | (BigInt(pt.s6[j + 2]!) << 32n) | BigInt(pt.s6[j + 3]!));
  }
  return [...out];
}
