// The cBPF generator against a plain range check: golden disassembly, random differential runs of
// the interpreter (v4, v6, both kinds), oversized range sets (exact: false, superset, ≤ 4096 insns,
// every jump inside the program and ≤ 255).
import t from 'tap';
import {
  BPF_MAXINSNS, checkProgram, compileAcceptAll, compileDropAllNew, compileSourceFilter, disassemble,
  encodeProgram, runFilter, type BpfInsn,
} from '../../src/policy/bpf.js';
import { mulberry32 } from '../prng.js';

const ip4 = (s: string): number => s.split('.').reduce((a, x) => a * 256 + Number(x), 0) >>> 0;

const rng = mulberry32;

function pkt4(src: number, flags: number, udp = false): { net: Buffer; transport: Buffer } {
  const net = Buffer.alloc(20);
  net[0] = 0x45; net.writeUInt32BE(src >>> 0, 12); net.writeUInt32BE(ip4('127.0.0.1'), 16);
  const transport = Buffer.alloc(udp ? 8 : 20);
  if (!udp) transport[13] = flags;
  return { net, transport };
}
function pkt6(src: bigint, flags: number, udp = false): { net: Buffer; transport: Buffer } {
  const net = Buffer.alloc(40);
  net[0] = 0x60;
  for (let i = 0; i < 4; i++) net.writeUInt32BE(Number((src >> BigInt(96 - 32 * i)) & 0xffffffffn), 8 + 4 * i);
  const transport = Buffer.alloc(udp ? 8 : 20);
  if (!udp) transport[13] = flags;
  return { net, transport };
}

function inRanges<T extends number | bigint>(r: ArrayLike<T>, x: T): boolean {
  for (let i = 0; i < r.length; i += 2) if (r[i]! <= x && x <= r[i + 1]!) return true;
  return false;
}

function randomV4Ranges(R: () => number, n: number, span = 2 ** 32): Uint32Array {
  const pts = new Set<number>();
  while (pts.size < 2 * n) pts.add(Math.floor(R() * span) >>> 0);
  const s = [...pts].sort((a, b) => a - b);
  // pairs of sorted distinct points: disjoint; make some single addresses
  for (let i = 0; i < s.length; i += 2) if (R() < 0.3) s[i + 1] = s[i]!;
  return Uint32Array.from(s);
}
function rand128(R: () => number): bigint {
  let v = 0n;
  for (let i = 0; i < 4; i++) v = (v << 32n) | BigInt(Math.floor(R() * 2 ** 32));
  return v;
}
function randomV6Ranges(R: () => number, n: number): bigint[] {
  const pts = new Set<bigint>();
  while (pts.size < 2 * n) {
    // cluster some points so word-by-word comparisons hit equal leading words
    pts.add(R() < 0.5 ? rand128(R) : (0x20010db8n << 96n) | BigInt(Math.floor(R() * 1e6)));
  }
  const s = [...pts].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (let i = 0; i < s.length; i += 2) if (R() < 0.3) s[i + 1] = s[i]!;
  return s;
}
function probes4(R: () => number, r: Uint32Array, n: number): number[] {
  const out = [0, 0xffffffff];
  for (let i = 0; i < r.length; i++) out.push(r[i]!, (r[i]! - 1) >>> 0, (r[i]! + 1) >>> 0);
  for (let i = 0; i < n; i++) out.push(Math.floor(R() * 2 ** 32) >>> 0);
  return out;
}
function probes6(R: () => number, r: bigint[], n: number): bigint[] {
  const max = (1n << 128n) - 1n;
  const out = [0n, max, 1n];
  for (const x of r) out.push(x, x === 0n ? 0n : x - 1n, x === max ? max : x + 1n);
  for (let i = 0; i < n; i++) out.push(rand128(R));
  return out;
}

function jumpsOk(insns: BpfInsn[]): boolean {
  return checkProgram(insns) === null && insns.every((i) => i.jt <= 255 && i.jf <= 255);
}

const SYN = 0x02, SYNACK = 0x12, ACK = 0x10;

t.test('golden: tcp-syn v4, one address and one range', async (t) => {
  const { insns, exact } = compileSourceFilter('tcp-syn', 4, { v4: Uint32Array.from([ip4('127.0.0.2'), ip4('127.0.0.2'), ip4('127.0.0.16'), ip4('127.0.0.31')]), v6: [] });
  t.equal(exact, true);
  t.equal(disassemble(insns), [
    ' 0: ldb [13]',
    ' 1: and #0x12',
    ' 2: jeq #0x2 jt 4 jf 3',
    ' 3: ret #-1',
    ' 4: ld [net+12]',
    ' 5: jge #0x7f000010 jt 10 jf 6',
    ' 6: jge #0x7f000002 jt 7 jf 9',
    ' 7: jge #0x7f000003 jt 9 jf 8',
    ' 8: ret #-1',
    ' 9: ret #0x0',
    '10: jge #0x7f000020 jt 12 jf 11',
    '11: ret #-1',
    '12: ret #0x0',
  ].join('\n') + '\n');
  const enc = encodeProgram(insns);
  t.equal(enc.length, insns.length * 8);
  t.same([...enc.subarray(16, 24)], [0x15, 0, 1, 0, 2, 0, 0, 0], 'jeq #2 jt 1 jf 0, little-endian host layout');
});

t.test('golden: udp v6 allowing ::1 only', async (t) => {
  const { insns } = compileSourceFilter('udp', 6, { v4: new Uint32Array(0), v6: [1n, 1n] });
  t.equal(disassemble(insns), [
    ' 0: ld [net+8]',
    ' 1: jgt #0x0 jt 8 jf 2',
    ' 2: ld [net+12]',
    ' 3: jgt #0x0 jt 8 jf 4',
    ' 4: ld [net+16]',
    ' 5: jgt #0x0 jt 8 jf 6',
    ' 6: ld [net+20]',
    ' 7: jge #0x1 jt 8 jf 17',
    ' 8: ld [net+8]',
    ' 9: jgt #0x0 jt 17 jf 10',
    '10: ld [net+12]',
    '11: jgt #0x0 jt 17 jf 12',
    '12: ld [net+16]',
    '13: jgt #0x0 jt 17 jf 14',
    '14: ld [net+20]',
    '15: jge #0x2 jt 17 jf 16',
    '16: ret #-1',
    '17: ret #0x0',
  ].join('\n') + '\n');
  t.equal(runFilter(insns, pkt6(1n, 0, true)), 0xffffffff);
  t.equal(runFilter(insns, pkt6(2n, 0, true)), 0);
  t.equal(runFilter(insns, pkt6(1n << 64n | 1n, 0, true)), 0);
});

t.test('special programs', async (t) => {
  const all = compileSourceFilter('tcp-syn', 4, { v4: Uint32Array.from([0, 0xffffffff]), v6: [] });
  t.same(all.insns, compileAcceptAll(), 'ranges covering everything → accept-all');
  const all6 = compileSourceFilter('udp', 6, { v4: new Uint32Array(0), v6: [0n, (1n << 128n) - 1n] });
  t.same(all6.insns, compileAcceptAll());
  const none = compileSourceFilter('tcp-syn', 4, { v4: new Uint32Array(0), v6: [] });
  t.same(none.insns, compileDropAllNew('tcp-syn'), 'no ranges → drop every new flow');
  const drop = compileDropAllNew('tcp-syn');
  t.equal(runFilter(drop, pkt4(1, SYN)), 0);
  t.equal(runFilter(drop, pkt4(1, SYNACK)), 0xffffffff);
  t.equal(runFilter(drop, pkt4(1, ACK)), 0xffffffff);
  t.equal(runFilter(compileDropAllNew('udp'), pkt4(1, 0, true)), 0);
  t.equal(runFilter(compileAcceptAll(), pkt4(1, 0, true)), 0xffffffff);
  t.throws(() => encodeProgram([]), RangeError);
  t.throws(() => encodeProgram([{ code: 0x15, jt: 3, jf: 0, k: 0 }, { code: 6, jt: 0, jf: 0, k: 0 }]), RangeError, 'jump past the end');
  t.throws(() => compileSourceFilter('udp', 4, { v4: new Uint32Array(0), v6: [] }, 5000), RangeError);
});

t.test('differential v4: interpreter = range check (random sets, both kinds)', async (t) => {
  const R = rng(4);
  let checked = 0;
  for (let round = 0; round < 150; round++) {
    const n = 1 + Math.floor(R() * (round < 100 ? 12 : 300));
    const span = R() < 0.5 ? 2 ** 32 : 4096; // dense sets make adjacent/abutting ranges
    const r = randomV4Ranges(R, Math.min(n, span / 4), span);
    for (const kind of ['tcp-syn', 'udp'] as const) {
      const { insns, exact } = compileSourceFilter(kind, 4, { v4: r, v6: [] });
      if (!exact || !jumpsOk(insns)) { t.fail(`round ${round}: exact ${exact}, ${checkProgram(insns)}`); return; }
      for (const src of probes4(R, r, 40)) {
        const want = inRanges(r, src);
        const udp = kind === 'udp';
        const got = runFilter(insns, pkt4(src, SYN, udp)) !== 0;
        checked++;
        if (got !== want) { t.fail(`${kind} round ${round} src ${src}: filter ${got}, ranges ${want}`); return; }
        if (!udp && runFilter(insns, pkt4(src, SYNACK)) === 0) { t.fail('SYN|ACK must pass'); return; }
      }
    }
  }
  t.ok(checked > 20000, `${checked} sources checked`);
});

t.test('differential v6: interpreter = range check', async (t) => {
  const R = rng(6);
  let checked = 0;
  for (let round = 0; round < 80; round++) {
    const r = randomV6Ranges(R, 1 + Math.floor(R() * (round < 60 ? 6 : 60)));
    for (const kind of ['tcp-syn', 'udp'] as const) {
      const { insns, exact } = compileSourceFilter(kind, 6, { v4: new Uint32Array(0), v6: r });
      if (!exact || !jumpsOk(insns)) { t.fail(`round ${round}: exact ${exact}`); return; }
      for (const src of probes6(R, r, 30)) {
        const udp = kind === 'udp';
        const got = runFilter(insns, pkt6(src, SYN, udp)) !== 0;
        checked++;
        if (got !== inRanges(r, src)) { t.fail(`${kind} round ${round} src ${src.toString(16)}`); return; }
      }
    }
  }
  t.ok(checked > 5000, `${checked} sources checked`);
});

t.test('too large for BPF_MAXINSNS: superset, fits, short jumps', async (t) => {
  const R = rng(9);
  for (const n of [1200, 3000]) {
    const r = randomV4Ranges(R, n);
    const { insns, exact } = compileSourceFilter('tcp-syn', 4, { v4: r, v6: [] });
    t.equal(exact, false, `${n} v4 ranges do not fit`);
    t.ok(insns.length <= BPF_MAXINSNS && insns.length > BPF_MAXINSNS / 2, `${insns.length} insns`);
    t.ok(jumpsOk(insns), 'every jump inside the program and ≤ 255');
    t.ok(insns.some((i) => i.code === 0x05 && i.k > 255), 'uses ja trampolines for long jumps');
    let superset = true, denied = 0;
    for (const src of probes4(R, r, 3000)) {
      const got = runFilter(insns, pkt4(src, SYN)) !== 0;
      if (inRanges(r, src) && !got) superset = false;
      if (!got) denied++;
    }
    t.ok(superset, 'every allowed source still passes');
    t.ok(denied > 0, `still selective: ${denied} probes denied`);
  }
  const r6 = randomV6Ranges(R, 400);
  const big6 = compileSourceFilter('udp', 6, { v4: new Uint32Array(0), v6: r6 });
  t.equal(big6.exact, false);
  t.ok(big6.insns.length <= BPF_MAXINSNS && jumpsOk(big6.insns));
  let ok6 = true;
  for (const src of probes6(R, r6, 500)) if (inRanges(r6, src) && runFilter(big6.insns, pkt6(src, 0, true)) === 0) ok6 = false;
  t.ok(ok6, 'v6 superset holds');
  // A small maxInsns forces the same path on a small set.
  const small = randomV4Ranges(R, 40);
  const s = compileSourceFilter('udp', 4, { v4: small, v6: [] }, 64);
  t.equal(s.exact, false);
  t.ok(s.insns.length <= 64 && jumpsOk(s.insns));
});

t.test('long exact programs keep jumps short (relaxation)', async (t) => {
  const R = rng(11);
  const r = randomV4Ranges(R, 600);
  const { insns, exact } = compileSourceFilter('tcp-syn', 4, { v4: r, v6: [] });
  t.equal(exact, true, `${insns.length} insns`);
  t.ok(insns.length > 1024 && jumpsOk(insns));
  let bad = 0;
  for (const src of probes4(R, r, 2000)) if ((runFilter(insns, pkt4(src, SYN)) !== 0) !== inRanges(r, src)) bad++;
  t.equal(bad, 0);
});
