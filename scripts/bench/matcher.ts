// Matcher micro benchmark: compiled decide4/decide6 against two linear scans over the same rules,
// at 10, 100 and 1000 rules per instance (AWS's ceiling: rules × groups ≤ 1000).
//
// Run (from the repo root; tap's TypeScript loader is a dev dependency):
//   TS_NODE_TRANSPILE_ONLY=1 node --import @tapjs/typescript/import scripts/bench/matcher.ts
// Options: --quick (fewer, shorter samples).
//
// Baselines, measured in the same run:
//   linear  numeric linear scan: rules pre-parsed to (proto, port range, net, mask), first match wins
//   naive   test/policy/reference.ts, the reference evaluator (strings, ipaddr.js, bigint)
// Flows: 4096 per size, half built to hit a random rule (address inside its CIDR, port in range),
// half random (mostly misses); the same flows for every matcher.
//
// Network ACLs (issue 14): decideIngress4, the listener's whole decision (SG ingress + the NACLs
// of the request and the reply, with a random client port), on the same SG rules without NACLs
// and with 20 NACL entries per direction on the instance's subnet (and on the client's, for
// flows from an instance in another subnet: its egress and the destination's ingress; its replies were checked by its outbound entry). Ratio to the SG-only figure.

import os from 'node:os';
import { compilePolicy } from '../../src/policy/compile.js';
import { cidrToRange4, cidrToRange6, formatIpv4, formatIpv6, bigIntToIpv6, maskOf4 } from '../../src/policy/addr.js';
import type { CompiledPolicy } from '../../src/policy/types.js';
import type { Model, NaclEntry, NetworkAcl, Rule, SecurityGroup } from '../../src/model/types.js';
import { mkGroup, mkInstance, mkModel, refDecide, type RuleSpec } from '../../test/policy/reference.js';
import { refDecideIngress } from '../../test/policy/nacl-reference.js';

const QUICK = process.argv.includes('--quick');
const SAMPLES = QUICK ? 5 : 11;
const SAMPLE_MS = QUICK ? 60 : 150;
const FLOWS = 4096;
/** Flows checked against the slow reference evaluators before timing (--quick: fewer; the policy
 * tests compare them on far more). SG: the first REF_FLOWS; NACLs: the first NACL_FLOWS × 2 sources. */
const REF_FLOWS = QUICK ? 64 : 256;
const NACL_FLOWS = QUICK ? 64 : 513;
const SIZES = [10, 100, 1000];

let seed = 1;
const rnd = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
const int = (n: number): number => Math.floor(rnd() * n);

/** N ingress rules: 70% tcp, 20% udp, 10% icmp; single ports or short ranges; /16../32 peers. */
function ruleSpecs(n: number, six: boolean): RuleSpec[] {
  const out: RuleSpec[] = [];
  for (let i = 0; i < n; i++) {
    const k = int(10);
    const proto = k < 7 ? 6 : k < 9 ? 17 : 1;
    const lo = 1 + int(60000);
    const [from, to] = proto === 1 ? [int(16), -1] : int(4) === 0 ? [lo, lo + int(500)] : [lo, lo];
    const prefix = six ? [48, 56, 64, 128][int(4)]! : [16, 24, 28, 32][int(4)]!;
    const cidr = six
      ? `${formatIpv6(bigIntToIpv6(cidrToRange6(`2001:db8:${(i * 7919 % 65536).toString(16)}::${int(65536).toString(16)}/${prefix}`)[0]))}/${prefix}`
      : `${formatIpv4(cidrToRange4(`10.${int(256)}.${int(256)}.${int(256)}/${prefix}`)[0])}/${prefix}`;
    out.push([proto, from, to, cidr]);
  }
  return out;
}

/** Split into groups of ≤ 100 rules, attach all to one instance. */
function modelWith(specs: RuleSpec[]): Model {
  const groups: SecurityGroup[] = [];
  for (let i = 0; i < specs.length; i += 100) groups.push(mkGroup(`sg-${groups.length}`, specs.slice(i, i + 100), []));
  return mkModel({ groups, instances: [mkInstance('bench', '127.0.0.10', groups.map((g) => g.id), '::10')] });
}

interface Flows { proto: Uint8Array; port: Uint16Array; v4: Uint32Array; v6: Uint32Array; text: string[] }

function flowsFor(specs: RuleSpec[], six: boolean): Flows {
  const f: Flows = { proto: new Uint8Array(FLOWS), port: new Uint16Array(FLOWS), v4: new Uint32Array(FLOWS),
    v6: new Uint32Array(FLOWS * 4), text: [] };
  for (let i = 0; i < FLOWS; i++) {
    const [proto, from, to, cidr] = specs[int(specs.length)]!;
    const hit = i % 2 === 0;
    f.proto[i] = hit ? proto : [6, 17, 1][int(3)]!;
    f.port[i] = hit ? (proto === 1 ? (from << 8) | int(256) : from + int(to - from + 1)) : 1 + int(65535);
    if (six) {
      const [lo, hi] = cidrToRange6(cidr);
      const a = hit ? lo + (BigInt(int(1 << 30)) % (hi - lo + 1n)) : (0x20010db8n << 96n) | (BigInt(int(65536)) << 80n) | BigInt(int(1 << 30));
      f.v6.set(bigIntToIpv6(a), i * 4);
      f.text.push(formatIpv6(bigIntToIpv6(a)));
    } else {
      const [lo, hi] = cidrToRange4(cidr);
      const a = hit ? lo + int(hi - lo + 1) : (0x0a000000 + int(1 << 24)) >>> 0;
      f.v4[i] = a;
      f.text.push(formatIpv4(a));
    }
  }
  return f;
}

/** The obvious numeric matcher: one pass over pre-parsed rules. */
class LinearScan {
  readonly proto: Int32Array; readonly lo: Int32Array; readonly hi: Int32Array;
  readonly net: Uint32Array; readonly mask: Uint32Array;
  constructor(rules: Rule[]) {
    const n = rules.length;
    this.proto = new Int32Array(n); this.lo = new Int32Array(n); this.hi = new Int32Array(n);
    this.net = new Uint32Array(n); this.mask = new Uint32Array(n);
    rules.forEach((r, i) => {
      if (r.peer.kind !== 'cidr') throw new Error('bench rules are CIDR rules');
      this.proto[i] = r.protocol;
      if (r.protocol === 1) {
        this.lo[i] = r.fromPort << 8; this.hi[i] = r.toPort < 0 ? (r.fromPort << 8) | 255 : (r.fromPort << 8) | r.toPort;
      } else { this.lo[i] = r.fromPort; this.hi[i] = r.toPort; }
      const [lo] = cidrToRange4(r.peer.cidr);
      this.net[i] = lo; this.mask[i] = maskOf4(Number(r.peer.cidr.split('/')[1]));
    });
  }
  decide4(proto: number, peer: number, port: number): number {
    const n = this.proto.length;
    for (let i = 0; i < n; i++) {
      const p = this.proto[i]!;
      if (p !== -1 && p !== proto) continue;
      if (port < this.lo[i]! || port > this.hi[i]!) continue;
      if (((peer & this.mask[i]!) >>> 0) === this.net[i]) return 1;
    }
    return 0;
  }
}

interface Stat { opsPerS: number; spreadPct: number }

/** Warm up, then SAMPLES timed samples of ≥ SAMPLE_MS each; median ops/s and ± relative stddev. */
function measure(run: (reps: number) => number, decisionsPerRep: number): Stat {
  let reps = 1;
  for (let t0 = performance.now(); performance.now() - t0 < 300;) {             // warm-up and calibration
    const s = performance.now(); run(reps);
    if (performance.now() - s < SAMPLE_MS / 4) reps *= 2;
  }
  const rates: number[] = [];
  for (let k = 0; k < SAMPLES; k++) {
    const s = performance.now();
    run(reps);
    rates.push((reps * decisionsPerRep) / ((performance.now() - s) / 1000));
  }
  rates.sort((a, b) => a - b);
  const mean = rates.reduce((a, b) => a + b, 0) / rates.length;
  const sd = Math.sqrt(rates.reduce((a, b) => a + (b - mean) ** 2, 0) / (rates.length - 1));
  return { opsPerS: rates[rates.length >> 1]!, spreadPct: (100 * sd) / mean };
}

let sink = 0;
function benchCompiled4(p: CompiledPolicy, f: Flows): Stat {
  return measure((reps) => {
    let acc = 0;
    for (let r = 0; r < reps; r++) for (let i = 0; i < FLOWS; i++) acc += p.decide4(0, 0, f.proto[i]!, f.v4[i]!, f.port[i]!);
    sink += acc; return acc;
  }, FLOWS);
}
function benchCompiled6(p: CompiledPolicy, f: Flows): Stat {
  const w = f.v6;
  return measure((reps) => {
    let acc = 0;
    for (let r = 0; r < reps; r++) {
      for (let i = 0; i < FLOWS; i++) acc += p.decide6(0, 0, f.proto[i]!, w[4 * i]!, w[4 * i + 1]!, w[4 * i + 2]!, w[4 * i + 3]!, f.port[i]!);
    }
    sink += acc; return acc;
  }, FLOWS);
}
function benchLinear(l: LinearScan, f: Flows): Stat {
  return measure((reps) => {
    let acc = 0;
    for (let r = 0; r < reps; r++) for (let i = 0; i < FLOWS; i++) acc += l.decide4(f.proto[i]!, f.v4[i]!, f.port[i]!);
    sink += acc; return acc;
  }, FLOWS);
}
function benchNaive(m: Model, f: Flows, rules: number): Stat {
  const n = rules <= 10 ? 256 : 32;
  return measure((reps) => {
    let acc = 0;
    for (let r = 0; r < reps; r++) for (let i = 0; i < n; i++) acc += refDecide(m, 'bench', 0, f.proto[i]!, f.text[i]!, f.port[i]!);
    sink += acc; return acc;
  }, n);
}

const fmt = (s: Stat): string => (s.opsPerS >= 1e5 ? `${(s.opsPerS / 1e6).toFixed(2).padStart(7)} M/s` : `${(s.opsPerS / 1e3).toFixed(2).padStart(7)} k/s`) +
  ` ±${s.spreadPct.toFixed(1)}%`.padEnd(7);

console.log(`# matcher benchmark — ${new Date().toISOString()}`);
console.log(`# node ${process.version}, ${os.cpus()[0]?.model ?? 'unknown CPU'} ×${os.cpus().length}, ${os.platform()} ${os.release()}`);
console.log(`# command: TS_NODE_TRANSPILE_ONLY=1 node --import @tapjs/typescript/import scripts/bench/matcher.ts${QUICK ? ' --quick' : ''}`);
console.log(`# ${SAMPLES} samples × ≥${SAMPLE_MS} ms after warm-up; median decisions/s, ± = sample stddev / mean`);
console.log('rules  compiled decide4     compiled decide6     linear scan (numeric)  naive reference      compiled/linear  compiled/naive  compile');
const results: { n: number; c4: Stat }[] = [];
for (const n of SIZES) {
  const specs4 = ruleSpecs(n, false), specs6 = ruleSpecs(n, true);
  const m4 = modelWith(specs4), m6 = modelWith(specs6);
  const tc = performance.now();
  const p4 = compilePolicy(m4);
  const compileMs = performance.now() - tc;
  const p6 = compilePolicy(m6);
  const f4 = flowsFor(specs4, false), f6 = flowsFor(specs6, true);
  const rules = m4.groups.flatMap((g) => g.ingress);
  const lin = new LinearScan(rules);
  for (let i = 0; i < FLOWS; i++) {                      // the three matchers must agree before we time them
    const a = p4.decide4(0, 0, f4.proto[i]!, f4.v4[i]!, f4.port[i]!) & 1, b = lin.decide4(f4.proto[i]!, f4.v4[i]!, f4.port[i]!);
    if (a !== b || (i < REF_FLOWS && a !== (refDecide(m4, 'bench', 0, f4.proto[i]!, f4.text[i]!, f4.port[i]!) & 1))) {
      throw new Error(`matchers disagree on flow ${i} at ${n} rules`);
    }
  }
  const c4 = benchCompiled4(p4, f4), c6 = benchCompiled6(p6, f6), li = benchLinear(lin, f4), nv = benchNaive(m4, f4, n);
  results.push({ n, c4 });
  console.log(`${String(n).padStart(5)}  ${fmt(c4)}  ${fmt(c6)}  ${fmt(li)}   ${fmt(nv)}  ${(c4.opsPerS / li.opsPerS).toFixed(1).padStart(10)}×  ${(c4.opsPerS / nv.opsPerS).toFixed(0).padStart(10)}×  ${compileMs.toFixed(1).padStart(6)} ms`);
}
const r10 = results[0]!.c4.opsPerS, r1000 = results[results.length - 1]!.c4.opsPerS;
console.log(`# decide4 at 1000 rules is ${(r10 / r1000).toFixed(2)}× slower than at 10 rules (target ≤ 1.5×); sink=${sink % 10}`);

// ---- network ACLs --------------------------------------------------------------------------------

/** 20 entries per direction: tcp/udp ranges and all-protocol denies over 10/8 pieces, rule numbers
 * 10, 20, ...; the last egress and ingress entries allow tcp/udp 1024-65535 from/to 10.0.0.0/8 so
 * both outcomes are common. */
function naclOf(id: string, perDir: number): NetworkAcl {
  const entries: NaclEntry[] = [];
  for (const egress of [false, true]) {
    for (let i = 0; i < perDir; i++) {
      const last = i === perDir - 1;
      const k = int(10);
      const protocol = last ? 6 : k < 6 ? 6 : k < 8 ? 17 : -1;
      const lo = 1 + int(60000);
      const [fromPort, toPort] = last ? [1024, 65535] : protocol === -1 ? [-1, -1] : int(3) === 0 ? [lo, Math.min(65535, lo + int(5000))] : [lo, lo];
      const prefix = last ? 8 : [16, 24, 28, 32][int(4)]!;
      const cidr = `${formatIpv4(cidrToRange4(`10.${int(256)}.${int(256)}.${int(256)}/${prefix}`)[0])}/${prefix}`;
      entries.push({ ruleNumber: (i + 1) * 10, egress, protocol, fromPort, toPort, cidr, family: 4, allow: last || int(3) !== 0 });
    }
  }
  return { id, vpcId: 'vpc-local', isDefault: false, entries, tags: {} };
}

function benchIngress(p: CompiledPolicy, f: Flows, ports: Uint16Array, from: number): Stat {
  return measure((reps) => {
    let acc = 0;
    for (let r = 0; r < reps; r++) {
      for (let i = 0; i < FLOWS; i++) acc += p.decideIngress4(0, f.proto[i]!, from === 0 ? f.v4[i]! : from, ports[i]!, f.port[i]!);
    }
    sink += acc; return acc;
  }, FLOWS);
}

console.log('');
console.log('# network ACLs: decideIngress4 (SG + NACL request and reply paths, random client ports), 20 entries per direction');
console.log('rules  SG only              + NACL (outside client)  ratio   + NACL (instance in another subnet)  ratio');
for (const n of SIZES) {
  const specs = ruleSpecs(n, false);
  const sgOnly = modelWith(specs);
  sgOnly.instances.push(mkInstance('peer', '10.200.0.1', [], null));
  const withNacl: Model = { ...sgOnly, networkAcls: [naclOf('acl-bench', 20), naclOf('acl-peer', 20)],
    subnets: [{ id: 'subnet-bench', vpcId: 'vpc-local', cidr: null, networkAclId: 'acl-bench' }, { id: 'subnet-peer', vpcId: 'vpc-local', cidr: null, networkAclId: 'acl-peer' }] };
  withNacl.instances = sgOnly.instances.map((i) => ({ ...i, subnetId: i.name === 'bench' ? 'subnet-bench' : 'subnet-peer' }));
  const p0 = compilePolicy(sgOnly), p1 = compilePolicy(withNacl);
  const f = flowsFor(specs, false);
  const ports = new Uint16Array(FLOWS);
  for (let i = 0; i < FLOWS; i++) ports[i] = 32768 + int(28232);        // Linux's ephemeral range
  const peer = cidrToRange4('10.200.0.1/32')[0];
  let denied = 0;
  for (let i = 0; i < FLOWS; i++) {
    for (const src of [f.v4[i]!, peer]) {
      const want = refDecideIngress(withNacl, 'bench', f.proto[i]!, formatIpv4(src), ports[i]!, f.port[i]!);
      const got = p1.decideIngress4(0, f.proto[i]!, src, ports[i]!, f.port[i]!);
      if ((got & 1) !== (want & 1) || (i < 64 && got !== want)) throw new Error(`NACL matcher disagrees with the reference on flow ${i} at ${n} rules`);
      if (got === 4) denied++;
    }
    if (i >= NACL_FLOWS - 1) break;                                      // the reference is slow: check the first NACL_FLOWS × 2
    if ((p0.decideIngress4(0, f.proto[i]!, f.v4[i]!, ports[i]!, f.port[i]!) & 1) !== (p0.decide4(0, 0, f.proto[i]!, f.v4[i]!, f.port[i]!) & 1)) {
      throw new Error('decideIngress4 without NACLs differs from decide4');
    }
  }
  const s0 = benchIngress(p0, f, ports, 0), s1 = benchIngress(p1, f, ports, 0), s2 = benchIngress(p1, f, ports, peer);
  console.log(`${String(n).padStart(5)}  ${fmt(s0)}  ${fmt(s1)}     ${(s1.opsPerS / s0.opsPerS).toFixed(2)}×   ${fmt(s2)}                 ${(s2.opsPerS / s0.opsPerS).toFixed(2)}×`
    + `   (${denied} of ${2 * NACL_FLOWS} checked flows NACL-denied)`);
}
console.log(`# target: ≥ 10 M decisions/s with the NACLs; sink=${sink % 10}`);
