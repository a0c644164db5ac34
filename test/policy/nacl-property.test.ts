// Differential property test for network ACLs (issue 14): on random models (security groups,
// subnets, NACLs with allow and deny entries in random rule order, address maps, IPv4 and IPv6)
// the compiled matcher agrees with the plain reference evaluator (nacl-reference.ts) on every
// flow, both paths, with random client (ephemeral) ports; and ingressSources with its per-range
// source ports contains (L, P) exactly when the reference allows a flow from L:P.
// Seeded; re-run one seed: SGEMU_SEED=1234 npx tap test/policy/nacl-property.test.ts

import t from 'tap';
import { compilePolicy } from '../../src/policy/compile.js';
import { bigIntToIpv6, cidrToRange4, cidrToRange6, formatIpv4, formatIpv6, ipv6ToBigInt, parseIpv4, parseIpv6Words } from '../../src/policy/addr.js';
import type { Model, NaclEntry, NetworkAcl, Subnet } from '../../src/model/types.js';
import type { SourceRanges } from '../../src/policy/types.js';
import { mkGroup, mkInstance, mkModel, refAppear, type RuleSpec } from './reference.js';
import { refDecideIngress, refNaclFlow } from './nacl-reference.js';
import { mulberry32 } from '../prng.js';

const MODELS = 3000;
const FLOWS = 60;
const BUDGET_MS = 8000;

class Gen {
  constructor(readonly r: () => number) {}
  int(n: number): number { return Math.floor(this.r() * n); }
  pick<T>(a: readonly T[]): T { return a[this.int(a.length)]!; }
  chance(p: number): boolean { return this.r() < p; }
}

const BASES4 = ['127.0.0.0', '127.0.1.0', '10.0.0.0', '203.0.113.0', '0.0.0.0'];
const PREFIX4 = [0, 8, 16, 24, 24, 25, 28, 30, 32];
const BASES6 = ['::', '2001:db8::', 'fd00::'];
const PREFIX6 = [0, 64, 120, 126, 128];
const PORTS = [0, 22, 80, 443, 1023, 1024, 8080, 32767, 32768, 49151, 49152, 60999, 61000, 65535];
const PROTOS = [-1, 6, 6, 6, 17, 17, 1, 58, 47];

function addr4(g: Gen): number { return (cidrToRange4(g.pick(BASES4) + '/24')[0] + g.int(256)) >>> 0; }
function addr6(g: Gen): bigint { return cidrToRange6(g.pick(BASES6) + '/120')[0] + BigInt(g.int(256)); }
function cidr4(g: Gen): string {
  const p = g.pick(PREFIX4);
  return `${formatIpv4(cidrToRange4(`${formatIpv4(addr4(g))}/${p}`)[0])}/${p}`;
}
function cidr6(g: Gen): string {
  const p = g.pick(PREFIX6);
  return `${formatIpv6(bigIntToIpv6(cidrToRange6(`${formatIpv6(bigIntToIpv6(addr6(g)))}/${p}`)[0]))}/${p}`;
}
function ports(g: Gen): [number, number] {
  if (g.chance(0.25)) return [1024, 65535];
  if (g.chance(0.1)) return [0, 65535];
  let a = g.pick(PORTS), b = g.chance(0.5) ? a : g.pick(PORTS);
  if (b < a) [a, b] = [b, a];
  return [a, b];
}

function randomAcl(g: Gen, id: string): NetworkAcl {
  const entries: NaclEntry[] = [];
  for (const egress of [false, true]) {
    const used = new Set<number>();
    for (let k = 0, n = g.int(8); k < n; k++) {
      let rn = 1 + g.int(300);
      while (used.has(rn)) rn = 1 + g.int(300);
      used.add(rn);
      const protocol = g.pick(PROTOS);
      let fromPort = -1, toPort = -1;
      if (protocol === 6 || protocol === 17) [fromPort, toPort] = ports(g);
      else if ((protocol === 1 || protocol === 58) && g.chance(0.7)) { fromPort = g.pick([0, 3, 8, 128]); toPort = g.chance(0.5) ? -1 : g.pick([0, 1]); }
      const six = g.chance(0.25);
      const cidr = six ? (g.chance(0.3) ? '::/0' : cidr6(g)) : (g.chance(0.3) ? '0.0.0.0/0' : cidr4(g));
      entries.push({ ruleNumber: rn, egress, protocol, fromPort, toPort, cidr, family: six ? 6 : 4, allow: g.chance(0.65) });
    }
  }
  // Model order is (direction, ruleNumber); shuffle sometimes to check the matcher sorts anyway.
  entries.sort((a, b) => (a.egress === b.egress ? a.ruleNumber - b.ruleNumber : a.egress ? 1 : -1));
  return { id, vpcId: 'vpc-local', isDefault: false, entries, tags: {} };
}

function randomModel(g: Gen): Model {
  const spec = (): RuleSpec => {
    const proto = g.pick([-1, 6, 6, 17]);
    let [from, to] = proto === -1 ? [-1, -1] : ports(g);
    if (g.chance(0.3) && proto !== -1) { from = 0; to = 65535; }
    const peer = g.chance(0.3) ? '0.0.0.0/0' : g.chance(0.1) ? '::/0' : g.chance(0.7) ? cidr4(g) : cidr6(g);
    return [proto, from, to, peer];
  };
  const groups = [mkGroup('sg-0', Array.from({ length: 1 + g.int(4) }, spec)), mkGroup('sg-1', Array.from({ length: g.int(4) }, spec))];
  const acls: NetworkAcl[] = Array.from({ length: 1 + g.int(3) }, (_, i) => randomAcl(g, `acl-${i}`));
  if (g.chance(0.3)) {
    const d = randomAcl(g, 'acl-default-vpc-local');
    acls.push({ ...d, isDefault: true });
  }
  const subnets: Subnet[] = Array.from({ length: 1 + g.int(3) }, (_, i) => ({
    id: `subnet-${i}`, vpcId: 'vpc-local', cidr: null,
    networkAclId: g.chance(0.8) ? g.pick(acls).id : 'acl-default-vpc-local',
  }));
  const used4 = new Set<number>(), used6 = new Set<bigint>();
  const instances = [];
  for (let i = 0, n = 1 + g.int(5); i < n; i++) {
    let a = addr4(g);
    while (used4.has(a)) a = addr4(g);
    used4.add(a);
    let a6: string | null = null;
    if (g.chance(0.5)) {
      let b = addr6(g);
      while (used6.has(b)) b = addr6(g);
      used6.add(b);
      a6 = formatIpv6(bigIntToIpv6(b));
    }
    const inst = mkInstance(`i${i}`, formatIpv4(a), [g.pick(['sg-0', 'sg-1'])], a6);
    if (g.chance(0.75)) inst.subnetId = g.pick(subnets).id;
    instances.push(inst);
  }
  const addresses: [string, string][] = g.chance(0.3) ? [[cidr4(g).replace(/\/\d+$/, '/30'), '198.51.100.4/30']] : [];
  const m = mkModel({ groups, instances, addresses: addresses.filter(([l]) => { try { cidrToRange4(l); return true; } catch { return false; } }) });
  m.subnets = subnets;
  m.networkAcls = acls;
  return m;
}

function inRanges(s: SourceRanges, six: boolean, L: bigint, P: number): boolean {
  const v = six ? s.v6 : s.v4;
  const pp = six ? s.ports6 : s.ports4;
  for (let i = 0; i < v.length; i += 2) {
    const lo = BigInt(v[i]!), hi = BigInt(v[i + 1]!);
    if (L < lo || L > hi) continue;
    const p = pp?.[i / 2];
    if (!p) return true;
    for (let j = 0; j < p.length; j += 2) if (p[j]! <= P && P <= p[j + 1]!) return true;
    return false;
  }
  return false;
}

t.test('compiled NACL matcher == reference (both paths, random ephemeral ports); ingressSources ports', async (t) => {
  const seed = process.env.SGEMU_SEED ? Number(process.env.SGEMU_SEED) : (Date.now() % 1e9);
  const g = new Gen(mulberry32(seed));
  const started = Date.now();
  let models = 0, flows = 0, filterCases = 0, denied = 0;
  const failures: string[] = [];
  for (; models < MODELS && Date.now() - started < BUDGET_MS && failures.length === 0; models++) {
    const m = randomModel(g);
    const p = compilePolicy(m, models);
    const names = m.instances.map((i) => i.name);
    for (let k = 0; k < FLOWS && failures.length < 3; k++, flows++) {
      const six = g.chance(0.3);
      const proto = g.pick([6, 6, 17, 1, 58, 47]);
      const srcI = g.chance(0.6) ? g.int(names.length) : -1;
      const dstI = g.chance(0.9) ? g.int(names.length) : -1;
      const addrOf = (i: number): string | null => i < 0 ? (six ? formatIpv6(bigIntToIpv6(addr6(g))) : formatIpv4(addr4(g))) : six ? m.instances[i]!.address6 : m.instances[i]!.address;
      const src = addrOf(srcI), dst = addrOf(dstI);
      if (src === null || dst === null) continue;
      const srcPort = proto === 6 || proto === 17 ? (g.chance(0.5) ? g.pick(PORTS) : g.int(65536)) : g.chance(0.5) ? -1 : 0;
      const dstPort = proto === 6 || proto === 17 ? g.pick(PORTS) : proto === 1 || proto === 58 ? (g.pick([0, 3, 8, 128]) << 8) | g.pick([0, 1]) : 0;
      const want = refNaclFlow(m, srcI < 0 ? null : names[srcI]!, dstI < 0 ? null : names[dstI]!, proto, src, dst, srcPort, dstPort);
      const got = six
        ? p.naclFlow6(srcI, dstI, proto, parseIpv6Words(src), parseIpv6Words(dst), srcPort, dstPort)
        : p.naclFlow4(srcI, dstI, proto, parseIpv4(src), parseIpv4(dst), srcPort, dstPort);
      if ((got === 1) !== want) failures.push(`naclFlow${six ? 6 : 4} ${src}(${srcI}):${srcPort} -> ${dst}(${dstI}):${dstPort} proto ${proto}: got ${got}, reference ${want}`);
      if (!want) denied++;
      // The listener's whole decision (SG + NACL) from a local peer.
      if (dstI >= 0 && (proto === 6 || proto === 17) && srcPort >= 0) {
        const peer = srcI >= 0 || g.chance(0.5) ? src : (six ? '::1' : '127.0.0.1');
        const w = six ? refDecideIngress(m, names[dstI]!, proto, peer, srcPort, dstPort) : refDecideIngress(m, names[dstI]!, proto, peer, srcPort, dstPort);
        const gv = six ? p.decideIngress6(dstI, proto, parseIpv6Words(peer), srcPort, dstPort) : p.decideIngress4(dstI, proto, parseIpv4(peer), srcPort, dstPort);
        if (gv !== w) failures.push(`decideIngress${six ? 6 : 4} ${names[dstI]} from ${peer}:${srcPort} to :${dstPort} proto ${proto}: got ${gv}, reference ${w}`);
      }
    }
    // Socket-filter ranges: (local L, source port P) inside iff the reference allows L:P.
    for (let k = 0; k < 2 && failures.length < 3; k++) {
      const ii = g.int(names.length);
      const proto = g.pick([6, 17]);
      const port = g.pick(PORTS);
      const s = p.ingressSources(ii, proto, port);
      const probes4 = new Set<number>([addr4(g), addr4(g), parseIpv4('127.0.0.1')]);
      for (const i of m.instances) probes4.add(parseIpv4(i.address));
      for (let j = 0; j < s.v4.length; j++) for (const d of [-1, 0, 1]) { const x = s.v4[j]! + d; if (x >= 0 && x <= 0xffffffff) probes4.add(x); }
      for (const L of probes4) {
        for (const P of [g.pick(PORTS), g.int(65536), 1023, 1024]) {
          filterCases++;
          const text = formatIpv4(L);
          const want = (refDecideIngress(m, names[ii]!, proto, text, P, port) & 1) === 1;
          if (inRanges(s, false, BigInt(L), P) !== want) failures.push(`ingressSources ${names[ii]} ${proto}/${port}: ${text}:${P} (appears ${refAppear(m, text)}) inside=${!want}, reference allows=${want}`);
        }
      }
      if (m.instances[ii]!.address6) {
        const probes6 = new Set<bigint>([addr6(g), 1n]);
        for (const i of m.instances) if (i.address6) probes6.add(ipv6ToBigInt(parseIpv6Words(i.address6)));
        for (const x of s.v6) for (const d of [-1n, 0n, 1n]) if (x + d >= 0n && x + d < 1n << 128n) probes6.add(x + d);
        for (const L of probes6) {
          for (const P of [g.pick(PORTS), g.int(65536)]) {
            filterCases++;
            const text = formatIpv6(bigIntToIpv6(L));
            const want = (refDecideIngress(m, names[ii]!, proto, text, P, port) & 1) === 1;
            if (inRanges(s, true, L, P) !== want) failures.push(`ingressSources6 ${names[ii]} ${proto}/${port}: ${text}:${P} inside=${!want}, reference allows=${want}`);
          }
        }
      }
    }
    if (failures.length > 0) t.comment(`model:\n${JSON.stringify(m, null, 1)}`);
  }
  t.same(failures, [], `seed ${seed}: ${models} models, ${flows} flows (${denied} denied by a NACL), ${filterCases} filter cases (re-run: SGEMU_SEED=${seed})`);
  t.ok(models >= 200, `enough models in the time budget (${models})`);
  t.ok(denied > flows / 20 && denied < flows * 0.95, `both outcomes are common (${denied} of ${flows} denied)`);
});
