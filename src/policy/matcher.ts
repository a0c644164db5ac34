// The hot matcher: the CompiledPolicy the data plane decides on (decide*, appear*, naclFlow*,
// instanceAt*) and the tables it reads, plus the slow ingressSources over the same tables.
// compile.ts builds these tables from a Model; this file never sees a Model's rules.
//
// Must not: throw from decide*/appear* for any input, or allocate in them.
// Invariants: the tables are immutable once built; decide is O(log segments-per-bucket + log
// ranges), sub-linear in the number of rules.
//
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

import { BUCKET_SHIFT, cmp6, portSegment } from './search.js';
import type { Direction, Model } from '../model/types.js';
import { EGRESS, INGRESS, PROTO_TCP, PROTO_UDP } from '../model/types.js';
import { VERDICT_ALLOW, VERDICT_NACL_DENY, VERDICT_UNTRACKED, type CompiledPolicy, type SourceRanges } from './types.js';
import {
  addressCuts4, addressCuts6, naclMatch4, naclMatch6, portsAllowed4, portsAllowed6,
  type CompiledNacl,
} from './nacl.js';
import { bigIntToIpv6, IPV6_MAX, ipv6ToBigInt } from './addr.js';
import { clipShift4, clipShift6, mergeRanges4, mergeRanges6 } from './ranges.js';

export const U4 = VERDICT_UNTRACKED;          // segment flag: IPv4 flows allowed here are untracked
export const U6 = VERDICT_UNTRACKED << 1;     // same for IPv6 flows
export const IPV4_MAX = 0xffffffff;
export const PORT_MAX = 65535;
export const BUCKETS = (PORT_MAX + 1) >>> BUCKET_SHIFT;

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
export class AddrMap4 {
  constructor(
    readonly starts: Uint32Array,
    readonly idx: Int32Array,         // mapping index per segment, -1 = identity
    readonly host: Uint32Array,       // per mapping: host mask of the local CIDR
    readonly net: Uint32Array,        // per mapping: appearance network
    readonly segLo: number[],
    readonly segHi: number[],
    /** Per segment: the instance whose address it is (instance addresses are one-address
     * segments of their own), else -1. decideIngress4 gets appearance and source instance from
     * one search: without it the NACL path searched the instance addresses a second time. */
    readonly inst: Int32Array,
  ) {}
}

export class AddrMap6 {
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
export function segmentOf(starts: Uint32Array, port: number): number {
  let l = 0, h = starts.length - 1;
  while (l < h) {
    const m = (l + h + 1) >>> 1;
    if (starts[m]! <= port) l = m; else h = m - 1;
  }
  return l;
}

// portSegment and cmp6: src/policy/search.ts (shared with the NACL tables).

// ---------------------------------------------------------------------------------------------

/** Network ACL side of the policy: subnets, their NACLs, instance addresses by value. */
export class NaclIndex {
  constructor(
    readonly nacls: CompiledNacl[],
    readonly subnetIds: string[],
    readonly subnetAcl: Int32Array,
    readonly instSubnet: Int32Array,
    readonly active: boolean,
    readonly instAddr4: Uint32Array,       // per instance
    readonly instAddr6: Uint32Array,       // 4 words per instance (zero when it has none)
    readonly has6: Uint8Array,
    readonly at4: Uint32Array,             // sorted instance IPv4 addresses
    readonly at4Inst: Int32Array,
    readonly at6: Uint32Array,             // sorted instance IPv6 addresses, 4 words each
    readonly at6Inst: Int32Array,
  ) {}
}

const FULL_PORTS: readonly number[] = [0, PORT_MAX];

export class Policy implements CompiledPolicy {
  readonly nacls: readonly CompiledNacl[];
  readonly subnetIds: readonly string[];
  readonly subnetAcl: Int32Array;
  readonly instSubnet: Int32Array;
  readonly naclsActive: boolean;
  private readonly instAddr4: Uint32Array;
  private readonly instAddr6: Uint32Array;
  private readonly scratchA = new Uint32Array(4);

  constructor(
    readonly version: number,
    readonly model: Model,
    readonly instanceIndex: ReadonlyMap<string, number>,
    private readonly sets: RuleSet[],          // [inst * 2 + dir]
    private readonly map4: AddrMap4,
    private readonly map6: AddrMap6,
    private readonly nx: NaclIndex,
  ) {
    this.nacls = nx.nacls;
    this.subnetIds = nx.subnetIds;
    this.subnetAcl = nx.subnetAcl;
    this.instSubnet = nx.instSubnet;
    this.naclsActive = nx.active;
    this.instAddr4 = nx.instAddr4;
    this.instAddr6 = nx.instAddr6;
  }

  instanceAt4(local: number): number {
    const a = this.nx.at4;
    local >>>= 0;
    let l = 0, h = a.length - 1;
    while (l <= h) {
      const m = (l + h) >>> 1;
      const x = a[m]!;
      if (x === local) return this.nx.at4Inst[m]!;
      if (x < local) l = m + 1; else h = m - 1;
    }
    return -1;
  }

  instanceAt6(w0: number, w1: number, w2: number, w3: number): number {
    const a = this.nx.at6;
    let l = 0, h = (a.length >>> 2) - 1;
    while (l <= h) {
      const m = (l + h) >>> 1;
      const c = cmp6(a, m * 4, w0 >>> 0, w1 >>> 0, w2 >>> 0, w3 >>> 0);
      if (c === 0) return this.nx.at6Inst[m]!;
      if (c < 0) l = m + 1; else h = m - 1;
    }
    return -1;
  }

  naclFlow4(srcInst: number, dstInst: number, proto: number, src: number, dst: number, srcPort: number, dstPort: number): number {
    if (!this.naclsActive) return VERDICT_ALLOW;
    const sub = this.instSubnet;
    const ss = srcInst < 0 ? -1 : sub[srcInst]!;
    const ds = dstInst < 0 ? -1 : sub[dstInst]!;
    if (ss === ds) return VERDICT_ALLOW;   // one subnet (or no instance on either side): no NACL
    const nacls = this.nacls;
    if (ss >= 0) {
      const n = nacls[this.subnetAcl[ss]!]!;
      if (!n.open) {
        let e = naclMatch4(n.egress, proto, dst, dstPort);
        if (e < 0 || !n.allow[e]) return VERDICT_NACL_DENY;
        if (srcPort >= 0) { e = naclMatch4(n.ingress, proto, dst, srcPort); if (e < 0 || !n.allow[e]) return VERDICT_NACL_DENY; }
      }
    }
    if (ds >= 0) {
      const n = nacls[this.subnetAcl[ds]!]!;
      if (!n.open) {
        let e = naclMatch4(n.ingress, proto, src, dstPort);
        if (e < 0 || !n.allow[e]) return VERDICT_NACL_DENY;
        if (srcPort >= 0) { e = naclMatch4(n.egress, proto, src, srcPort); if (e < 0 || !n.allow[e]) return VERDICT_NACL_DENY; }
      }
    }
    return VERDICT_ALLOW;
  }

  naclFlow6(srcInst: number, dstInst: number, proto: number, src: Uint32Array, dst: Uint32Array, srcPort: number, dstPort: number): number {
    if (!this.naclsActive) return VERDICT_ALLOW;
    const sub = this.instSubnet;
    const ss = srcInst < 0 ? -1 : sub[srcInst]!;
    const ds = dstInst < 0 ? -1 : sub[dstInst]!;
    if (ss === ds) return VERDICT_ALLOW;
    const nacls = this.nacls;
    if (ss >= 0) {
      const n = nacls[this.subnetAcl[ss]!]!;
      if (!n.open) {
        let e = naclMatch6(n.dirs[EGRESS], proto, dst[0]!, dst[1]!, dst[2]!, dst[3]!, dstPort);
        if (e < 0 || !n.allow[e]) return VERDICT_NACL_DENY;
        if (srcPort >= 0) {
          e = naclMatch6(n.dirs[INGRESS], proto, dst[0]!, dst[1]!, dst[2]!, dst[3]!, srcPort);
          if (e < 0 || !n.allow[e]) return VERDICT_NACL_DENY;
        }
      }
    }
    if (ds >= 0) {
      const n = nacls[this.subnetAcl[ds]!]!;
      if (!n.open) {
        let e = naclMatch6(n.dirs[INGRESS], proto, src[0]!, src[1]!, src[2]!, src[3]!, dstPort);
        if (e < 0 || !n.allow[e]) return VERDICT_NACL_DENY;
        if (srcPort >= 0) {
          e = naclMatch6(n.dirs[EGRESS], proto, src[0]!, src[1]!, src[2]!, src[3]!, srcPort);
          if (e < 0 || !n.allow[e]) return VERDICT_NACL_DENY;
        }
      }
    }
    return VERDICT_ALLOW;
  }

  decideIngress4(inst: number, proto: number, peerLocal: number, peerPort: number, port: number): number {
    peerLocal >>>= 0;
    const m = this.map4;
    const seg = segmentOf(m.starts, peerLocal);          // appear4 and instanceAt4 in one search
    const i = m.idx[seg]!;
    const peer = i < 0 ? peerLocal : ((peerLocal & m.host[i]!) | m.net[i]!) >>> 0;
    const v = this.decide4(inst, INGRESS, proto, peer, port);
    if (!this.naclsActive || inst < 0 || inst >= this.instSubnet.length) return v;
    const src = m.inst[seg]!;
    // From an instance the flow came through its outbound entry, whose listener checked the replies
    // with the app's real port; this connection's port is the relay's own: the request only here.
    if (src >= 0) peerPort = -1;
    if (this.naclFlow4(src, inst, proto, peer, this.instAddr4[inst]!, peerPort, port) !== VERDICT_ALLOW) return VERDICT_NACL_DENY;
    return v;
  }

  decideIngress6(inst: number, proto: number, peerLocal: Uint32Array, peerPort: number, port: number): number {
    const a = this.scratchA;
    this.appear6(peerLocal[0]!, peerLocal[1]!, peerLocal[2]!, peerLocal[3]!, a);
    const v = this.decide6(inst, INGRESS, proto, a[0]!, a[1]!, a[2]!, a[3]!, port);
    if (!this.naclsActive || inst < 0 || inst >= this.instSubnet.length) return v;
    const src = this.instanceAt6(peerLocal[0]!, peerLocal[1]!, peerLocal[2]!, peerLocal[3]!);
    if (src >= 0) peerPort = -1;          // as decideIngress4: the outbound entry checked the replies
    if (this.naclFlow6(src, inst, proto, a, this.instAddr6.subarray(inst * 4, inst * 4 + 4), peerPort, port) !== VERDICT_ALLOW) return VERDICT_NACL_DENY;
    return v;
  }

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
    const v4 = mergeRanges4(out4), v6 = mergeRanges6(out6);
    if (!this.naclsActive || (proto !== PROTO_TCP && proto !== PROTO_UDP)) return { v4: Uint32Array.from(v4), v6 };
    return this.naclSources(inst, proto, port, v4, v6);
  }

  /**
   * The security groups' allowed local sources (merged) cut further by the NACLs of both paths:
   * pieces where the instance behind the source, its appearance and the deciding NACL entries are
   * the same; per piece the request check is yes/no and the replies give the allowed source ports.
   */
  private naclSources(inst: number, proto: number, port: number, v4: number[], v6: bigint[]): SourceRanges {
    const nx = this.nx;
    const dstSub = nx.instSubnet[inst]!;
    const dstAcl = nx.nacls[nx.subnetAcl[dstSub]!]!;
    const out4: number[] = [], ports4: (number[] | null)[] = [];
    {
      const cuts = new Set<number>();
      for (let i = 0; i < v4.length; i++) cuts.add(i % 2 === 0 ? v4[i]! : v4[i]! + 1);
      const m4 = this.map4;
      const dstCuts = [...addressCuts4(dstAcl, INGRESS, proto), ...addressCuts4(dstAcl, EGRESS, proto)];
      for (let k = 0; k < m4.segLo.length; k++) {
        const lo = m4.segLo[k]!, hi = m4.segHi[k]!;
        cuts.add(lo);
        const alo = this.appear4(lo);
        for (const c of dstCuts) if (c >= alo && c <= alo + (hi - lo)) cuts.add(lo + (c - alo));
      }
      for (let i = 0; i < nx.at4.length; i++) { cuts.add(nx.at4[i]!); cuts.add(nx.at4[i]! + 1); }
      const sorted = [...cuts].filter((c) => c <= IPV4_MAX).sort((a, b) => a - b);
      const dst = nx.instAddr4[inst]!;
      for (let r = 0; r < v4.length; r += 2) {
        const rlo = v4[r]!, rhi = v4[r + 1]!;
        let j = segmentIndexOf(sorted, rlo);
        for (let lo = rlo; lo <= rhi;) {
          while (j + 1 < sorted.length && sorted[j + 1]! <= lo) j++;
          const hi = Math.min(rhi, j + 1 < sorted.length ? sorted[j + 1]! - 1 : IPV4_MAX);
          const srcInst = this.instanceAt4(lo);
          const srcSub = srcInst < 0 ? -1 : nx.instSubnet[srcInst]!;
          let ports: readonly number[] | null = FULL_PORTS;
          if (srcSub !== dstSub) {
            const peer = this.appear4(lo);
            if (this.naclFlow4(srcInst, inst, proto, peer, dst, -1, port) !== VERDICT_ALLOW) ports = null;
            else if (srcInst < 0) {
              // An outside client: its replies go to its port. (An instance's replies were checked
              // by its outbound entry with the app's port: decideIngress4.)
              ports = portsAllowed4(dstAcl, EGRESS, proto, peer);
              if (ports.length === 0) ports = null;
            }
          }
          if (ports !== null) pushPiece4(out4, ports4, lo, hi, ports);
          lo = hi + 1;
          if (hi === IPV4_MAX) break;
        }
      }
    }
    const out6: bigint[] = [], ports6: (number[] | null)[] = [];
    if (v6.length > 0) {
      const cuts = new Set<bigint>();
      for (let i = 0; i < v6.length; i++) cuts.add(i % 2 === 0 ? v6[i]! : v6[i]! + 1n);
      const m6 = this.map6;
      const dstCuts = [...addressCuts6(dstAcl, INGRESS, proto), ...addressCuts6(dstAcl, EGRESS, proto)];
      const scratch = new Uint32Array(4);
      for (let k = 0; k < m6.segLo.length; k++) {
        const lo = m6.segLo[k]!, hi = m6.segHi[k]!;
        cuts.add(lo);
        const w = bigIntToIpv6(lo);
        this.appear6(w[0]!, w[1]!, w[2]!, w[3]!, scratch);
        const alo = ipv6ToBigInt(scratch);
        for (const c of dstCuts) if (c >= alo && c <= alo + (hi - lo)) cuts.add(lo + (c - alo));
      }
      for (let i = 0; i < nx.at6.length; i += 4) { const b = ipv6ToBigInt(nx.at6.subarray(i, i + 4)); cuts.add(b); cuts.add(b + 1n); }
      const sorted = [...cuts].filter((c) => c <= IPV6_MAX).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      const has6 = nx.has6[inst] === 1;
      const dst = nx.instAddr6.subarray(inst * 4, inst * 4 + 4);
      for (let r = 0; r < v6.length; r += 2) {
        const rlo = v6[r]!, rhi = v6[r + 1]!;
        let j = 0;
        while (j + 1 < sorted.length && sorted[j + 1]! <= rlo) j++;
        for (let lo = rlo; lo <= rhi;) {
          while (j + 1 < sorted.length && sorted[j + 1]! <= lo) j++;
          const next = j + 1 < sorted.length ? sorted[j + 1]! - 1n : IPV6_MAX;
          const hi = next < rhi ? next : rhi;
          const w = bigIntToIpv6(lo);
          const srcInst = this.instanceAt6(w[0]!, w[1]!, w[2]!, w[3]!);
          const srcSub = srcInst < 0 ? -1 : nx.instSubnet[srcInst]!;
          let ports: readonly number[] | null = FULL_PORTS;
          if (srcSub !== dstSub && has6) {
            const peer = new Uint32Array(4);
            this.appear6(w[0]!, w[1]!, w[2]!, w[3]!, peer);
            if (this.naclFlow6(srcInst, inst, proto, peer, dst, -1, port) !== VERDICT_ALLOW) ports = null;
            else if (srcInst < 0) {
              ports = portsAllowed6(dstAcl, EGRESS, proto, peer);
              if (ports.length === 0) ports = null;
            }
          }
          if (ports !== null) {
            const full = ports.length === 2 && ports[0] === 0 && ports[1] === PORT_MAX;
            const key = full ? null : [...ports];
            const n = out6.length;
            const prev = ports6[ports6.length - 1];
            if (n > 0 && out6[n - 1]! + 1n === lo && samePorts(prev ?? null, key)) out6[n - 1] = hi;
            else { out6.push(lo, hi); ports6.push(key); }
          }
          if (hi === IPV6_MAX) break;
          lo = hi + 1n;
        }
      }
    }
    const res: SourceRanges = { v4: Uint32Array.from(out4), v6: out6 };
    if (ports4.some((p) => p !== null)) res.ports4 = ports4;
    if (ports6.some((p) => p !== null)) res.ports6 = ports6;
    return res;
  }

  ruleCount(inst: number, dir: Direction): number {
    return this.sets[inst * 2 + dir]?.ruleCount ?? 0;
  }
}

function segmentIndexOf(sorted: readonly number[], x: number): number {
  let l = 0, h = sorted.length - 1;
  while (l < h) {
    const m = (l + h + 1) >>> 1;
    if (sorted[m]! <= x) l = m; else h = m - 1;
  }
  return l;
}

function samePorts(a: readonly number[] | null, b: readonly number[] | null): boolean {
  if (a === null || b === null) return a === b;
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Appends [lo, hi] with its source ports, joined to the previous piece when adjacent and equal. */
function pushPiece4(out: number[], ports: (number[] | null)[], lo: number, hi: number, p: readonly number[]): void {
  const full = p.length === 2 && p[0] === 0 && p[1] === PORT_MAX;
  const key = full ? null : [...p];
  const n = out.length;
  if (n > 0 && out[n - 1]! + 1 === lo && samePorts(ports[ports.length - 1] ?? null, key)) { out[n - 1] = hi; return; }
  out.push(lo, hi);
  ports.push(key);
}
