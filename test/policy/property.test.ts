// Differential property test: on random models (groups, rules, instances, prefix lists, address
// maps, IPv4 and IPv6) the compiled matcher agrees with the reference evaluator on every flow, and
// ingressSources(inst, proto, port) contains a local address L exactly when the reference allows
// appear(L). Seeded; the seed is printed on failure. Re-run one seed: SGEMU_SEED=1234 npx tap …
// Bounded: MODELS models × FLOWS flows, and stops early after BUDGET_MS.

import t from 'tap';
import { compilePolicy } from '../../src/policy/compile.js';
import { bigIntToIpv6, cidrToRange4, cidrToRange6, formatIpv4, formatIpv6, ipv6ToBigInt } from '../../src/policy/addr.js';
import { rangesContain4, rangesContain6 } from '../../src/policy/ranges.js';
import type { CompiledPolicy } from '../../src/policy/types.js';
import type { Direction, Instance, Model, PrefixList, SecurityGroup } from '../../src/model/types.js';
import { mkGroup, mkInstance, mkModel, mkPrefixList, refAppear, refDecide, type RuleSpec } from './reference.js';
import { mulberry32 } from '../prng.js';

const MODELS = 2500;
const FLOWS = 120;
const BUDGET_MS = 7000;

const prng = mulberry32;

class Gen {
  constructor(readonly r: () => number) {}
  int(n: number): number { return Math.floor(this.r() * n); }
  pick<T>(a: readonly T[]): T { return a[this.int(a.length)]!; }
  chance(p: number): boolean { return this.r() < p; }
}

const BASES4 = ['10.0.0.0', '10.0.1.0', '127.0.0.0', '127.0.1.0', '203.0.113.0', '198.51.100.0', '0.0.0.0', '255.255.255.0'];
const PREFIX4 = [0, 1, 8, 16, 23, 24, 25, 28, 30, 31, 32, 32];
const BASES6 = ['2001:db8::', '2001:db8:0:1::', '::', 'fd00::', '::ffff:127.0.0.0', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00'];
const PREFIX6 = [0, 1, 16, 32, 64, 96, 120, 126, 127, 128, 128];
const PORTS = [0, 1, 21, 22, 23, 53, 79, 80, 81, 443, 1023, 1024, 8080, 65534, 65535];
const ICMP_TYPES = [0, 3, 8, 11, 128, 255];
const ICMP_CODES = [0, 1, 4, 255];
const PROTOS = [-1, 6, 6, 6, 17, 17, 1, 58, 47];
const FLOW_PROTOS = [6, 6, 6, 17, 17, 1, 58, 47, 50, 0, 255];

function addr4(g: Gen): number {
  return ((cidrToRange4(g.pick(BASES4) + '/24')[0] + g.int(256)) >>> 0);
}
function addr6(g: Gen): bigint {
  return cidrToRange6(g.pick(BASES6) + '/120')[0] + BigInt(g.int(256));
}
function cidr4(g: Gen, prefixes = PREFIX4): string {
  const p = g.pick(prefixes);
  return `${formatIpv4(cidrToRange4(`${formatIpv4(addr4(g))}/${p}`)[0])}/${p}`;
}
function cidr6(g: Gen, prefixes = PREFIX6): string {
  const p = g.pick(prefixes);
  return `${formatIpv6(bigIntToIpv6(cidrToRange6(`${formatIpv6(bigIntToIpv6(addr6(g)))}/${p}`)[0]))}/${p}`;
}

function randomModel(g: Gen): Model {
  const nGroups = 1 + g.int(5);
  const gids = Array.from({ length: nGroups }, (_, i) => `sg-${i}`);
  const plids = Array.from({ length: g.int(3) }, (_, i) => `pl-${i}`);
  const prefixLists: PrefixList[] = plids.map((id) =>
    mkPrefixList(id, Array.from({ length: 1 + g.int(3) }, () => (g.chance(0.6) ? cidr4(g) : cidr6(g)))));
  const spec = (): RuleSpec => {
    const proto = g.pick(PROTOS);
    let from = -1, to = -1;
    if (proto === 6 || proto === 17) {
      from = g.pick(PORTS); to = g.chance(0.5) ? from : g.pick(PORTS);
      if (to < from) [from, to] = [to, from];
      if (g.chance(0.08)) [from, to] = [0, 65535];
    } else if (proto === 1 || proto === 58) {
      if (g.chance(0.75)) { from = g.pick(ICMP_TYPES); to = g.chance(0.4) ? -1 : g.pick(ICMP_CODES); }
    }
    const k = g.int(20);
    const peer = k < 2 ? '0.0.0.0/0' : k < 3 ? '::/0' : k < 9 ? cidr4(g) : k < 12 ? cidr6(g)
      : k < 17 ? g.pick(gids) : plids.length > 0 ? g.pick(plids) : g.pick(gids);
    return [proto, from, to, peer];
  };
  const rules = (): RuleSpec[] => Array.from({ length: g.int(7) }, spec);
  const groups: SecurityGroup[] = gids.map((id) => mkGroup(id, rules(), g.chance(0.2) ? undefined : rules()));
  const used4 = new Set<number>(), used6 = new Set<bigint>();
  const instances: Instance[] = [];
  for (let i = 0, n = 1 + g.int(5); i < n; i++) {
    let a = addr4(g);
    while (used4.has(a)) a = addr4(g);
    used4.add(a);
    let a6: string | null = null;
    if (g.chance(0.6)) {
      let b = addr6(g);
      while (used6.has(b)) b = addr6(g);
      used6.add(b);
      a6 = formatIpv6(bigIntToIpv6(b));
    }
    const mine = Array.from({ length: g.int(4) }, () => g.pick(gids));
    instances.push(mkInstance(`i${i}`, formatIpv4(a), mine, a6));
  }
  const addresses: [string, string][] = [];
  for (let i = 0, n = g.int(4); i < n; i++) {
    if (g.chance(0.6)) {
      const p = g.pick([16, 24, 24, 28, 30, 31, 32]);
      const local = cidr4(g, [p]), app = cidr4(g, [p]);
      addresses.push([local, app]);
    } else {
      const p = g.pick([96, 120, 120, 126, 128]);
      addresses.push([cidr6(g, [p]), cidr6(g, [p])]);
    }
  }
  return mkModel({ groups, instances, prefixLists, addresses });
}

/** Addresses worth probing: every CIDR edge ±1, instance addresses, random ones. */
function probes(m: Model, g: Gen): { v4: number[]; v6: bigint[] } {
  const v4 = new Set<number>(), v6 = new Set<bigint>();
  const edge = (c: string): void => {
    if (c.includes(':')) {
      const [lo, hi] = cidrToRange6(c);
      for (const x of [lo - 1n, lo, hi, hi + 1n]) if (x >= 0n && x < (1n << 128n)) v6.add(x);
    } else {
      const [lo, hi] = cidrToRange4(c);
      for (const x of [lo - 1, lo, hi, hi + 1]) if (x >= 0 && x <= 0xffffffff) v4.add(x);
    }
  };
  for (const gr of m.groups) for (const r of [...gr.ingress, ...gr.egress]) if (r.peer.kind === 'cidr') edge(r.peer.cidr);
  for (const pl of m.prefixLists) for (const e of pl.entries) edge(e.cidr);
  for (const a of m.addresses) { edge(a.local); edge(a.appearsAs); }
  for (const i of m.instances) { edge(i.address); if (i.address6) edge(i.address6); }
  for (let k = 0; k < 8; k++) { v4.add(addr4(g)); v6.add(addr6(g)); }
  return { v4: [...v4], v6: [...v6] };
}

function flowPort(g: Gen, proto: number): number {
  if (proto === 1 || proto === 58) return (g.pick(ICMP_TYPES) << 8) | g.pick(ICMP_CODES);
  return g.chance(0.8) ? g.pick(PORTS) : g.int(65536);
}

function decideText(p: CompiledPolicy, inst: number, dir: Direction, proto: number, peer: number | bigint, port: number): number {
  if (typeof peer === 'number') return p.decide4(inst, dir, proto, peer, port);
  const w = bigIntToIpv6(peer);
  return p.decide6(inst, dir, proto, w[0]!, w[1]!, w[2]!, w[3]!, port);
}

t.test('compiled decide == reference; ingressSources == decide ∘ appear', async (t) => {
  const seed = process.env.SGEMU_SEED ? Number(process.env.SGEMU_SEED) : (Date.now() % 1e9);
  const g = new Gen(prng(seed));
  const started = Date.now();
  let models = 0, flows = 0, locals = 0;
  const failures: string[] = [];
  for (; models < MODELS && Date.now() - started < BUDGET_MS && failures.length === 0; models++) {
    const m = randomModel(g);
    const p = compilePolicy(m, models);
    const pr = probes(m, g);
    for (let k = 0; k < FLOWS && failures.length < 3; k++, flows++) {
      const ii = g.int(m.instances.length);
      const inst = m.instances[ii]!.name;
      const dir = g.pick([0, 1] as const);
      const proto = g.pick(FLOW_PROTOS);
      const port = flowPort(g, proto);
      const six = g.chance(0.4);
      const peer = six ? g.pick(pr.v6) : g.pick(pr.v4);
      const text = typeof peer === 'number' ? formatIpv4(peer) : formatIpv6(bigIntToIpv6(peer));
      const got = decideText(p, ii, dir, proto, peer, port);
      const want = refDecide(m, inst, dir, proto, text, port);
      if (got !== want) failures.push(`decide ${inst} dir=${dir} proto=${proto} peer=${text} port=${port}: got ${got}, reference ${want}`);
    }
    // ingressSources against the reference on edges of the ranges and on probe addresses.
    for (let k = 0; k < 3 && failures.length < 3; k++) {
      const ii = g.int(m.instances.length);
      const proto = g.pick([6, 17, 6, 1, 47]);
      const port = flowPort(g, proto);
      const src = p.ingressSources(ii, proto, port);
      for (let j = 2; j < src.v4.length; j += 2) {
        if (src.v4[j]! <= src.v4[j - 1]! + 1) failures.push(`ingressSources v4 not merged at ${j}`);
      }
      for (let j = 2; j < src.v6.length; j += 2) {
        if (src.v6[j]! <= src.v6[j - 1]! + 1n) failures.push(`ingressSources v6 not merged at ${j}`);
      }
      const l4 = new Set(pr.v4), l6 = new Set(pr.v6);
      for (let j = 0; j < src.v4.length; j++) for (const d of [-1, 0, 1]) { const x = src.v4[j]! + d; if (x >= 0 && x <= 0xffffffff) l4.add(x); }
      for (const x of src.v6) for (const d of [-1n, 0n, 1n]) if (x + d >= 0n && x + d < 1n << 128n) l6.add(x + d);
      const name = m.instances[ii]!.name;
      const out = new Uint32Array(4);
      for (const L of l4) {
        locals++;
        const text = formatIpv4(L);
        const app = refAppear(m, text);
        if (BigInt(p.appear4(L)) !== app) failures.push(`appear4 ${text}: got ${formatIpv4(p.appear4(L))}, reference ${formatIpv4(Number(app))}`);
        const allowed = (refDecide(m, name, 0, proto, formatIpv4(Number(app)), port) & 1) === 1;
        if (rangesContain4(src.v4, L) !== allowed) failures.push(`ingressSources ${name} proto=${proto} port=${port}: local ${text} (appears as ${formatIpv4(Number(app))}) in ranges=${!allowed}, reference allows=${allowed}`);
      }
      for (const L of l6) {
        locals++;
        const w = bigIntToIpv6(L);
        const text = formatIpv6(w);
        const app = refAppear(m, text);
        p.appear6(w[0]!, w[1]!, w[2]!, w[3]!, out);
        if (ipv6ToBigInt(out) !== app) failures.push(`appear6 ${text}: got ${formatIpv6(out)}, reference ${formatIpv6(bigIntToIpv6(app))}`);
        const allowed = (refDecide(m, name, 0, proto, formatIpv6(bigIntToIpv6(app)), port) & 1) === 1;
        if (rangesContain6(src.v6, L) !== allowed) failures.push(`ingressSources ${name} proto=${proto} port=${port}: local ${text} in ranges=${!allowed}, reference allows=${allowed}`);
      }
    }
    if (failures.length > 0) {
      t.comment(`model:\n${JSON.stringify(m, null, 1)}`);
    }
  }
  t.same(failures, [], `seed ${seed}: ${models} models, ${flows} flows, ${locals} local addresses (re-run: SGEMU_SEED=${seed})`);
  t.ok(models >= 200, `enough models in the time budget (${models})`);
});
