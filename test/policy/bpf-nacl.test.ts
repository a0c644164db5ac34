// cBPF programs with network ACL port checks (issue 14): per source range, the allowed source
// ports (the client's port, where the replies go). Interpreted with runFilter against the plain
// set on random ranges and ports, both families, TCP (SYN only) and UDP; the program without port
// lists is the one sgemu emitted before (no NACL: same bytes).
import t from 'tap';
import { compileSourceFilter, checkProgram, runFilter, disassemble } from '../../src/policy/bpf.js';
import { mulberry32 } from '../prng.js';

function pkt(family: 4 | 6, src: bigint, sport: number, flags: number, udp: boolean): { net: Buffer; transport: Buffer } {
  const net = Buffer.alloc(family === 4 ? 20 : 40);
  if (family === 4) net.writeUInt32BE(Number(src), 12);
  else for (let i = 0; i < 4; i++) net.writeUInt32BE(Number((src >> BigInt(96 - 32 * i)) & 0xffffffffn), 8 + 4 * i);
  const transport = Buffer.alloc(udp ? 8 : 20);
  transport.writeUInt16BE(sport, 0);
  if (!udp) transport[13] = flags;
  return { net, transport };
}

function portsOf(R: () => number): number[] | null {
  const k = Math.floor(R() * 4);
  if (k === 0) return null;
  if (k === 1) return [1024, 65535];
  const out: number[] = [];
  let at = Math.floor(R() * 2000);
  for (let i = 0; i < k && at < 65535; i++) {
    const hi = Math.min(65535, at + Math.floor(R() * 20000));
    out.push(at, hi);
    at = hi + 2 + Math.floor(R() * 5000);
  }
  return out;
}

t.test('port checks at the leaves == the (range, ports) set', async (t) => {
  const R = mulberry32(14);
  let cases = 0;
  const bad: string[] = [];
  for (let round = 0; round < 300 && bad.length === 0; round++) {
    const family: 4 | 6 = R() < 0.7 ? 4 : 6;
    const udp = R() < 0.4;
    const n = 1 + Math.floor(R() * 12);
    const span = family === 4 ? 2n ** 32n : 2n ** 128n;
    let at = BigInt(Math.floor(R() * 1000));
    const pairs: bigint[] = [], ports: (number[] | null)[] = [];
    for (let i = 0; i < n && at < span - 1n; i++) {
      const hi = at + BigInt(Math.floor(R() * 5000));
      if (hi >= span) break;
      pairs.push(at, hi);
      ports.push(portsOf(R));
      at = hi + 1n + BigInt(Math.floor(R() * 3));          // sometimes adjacent
    }
    const ranges = family === 4
      ? { v4: Uint32Array.from(pairs.map(Number)), v6: [], ports4: ports }
      : { v4: new Uint32Array(0), v6: pairs, ports6: ports };
    const { insns, exact } = compileSourceFilter(udp ? 'udp' : 'tcp-syn', family, ranges);
    t.equal(checkProgram(insns), null);
    if (!exact) bad.push('inexact for a small set');
    for (let k = 0; k < 200; k++) {
      cases++;
      const i = Math.floor(R() * (pairs.length / 2 + 1));
      const base = i < pairs.length / 2 ? pairs[2 * i]! + BigInt(Math.floor(R() * 6000)) - 3n : BigInt(Math.floor(R() * 100000));
      const src = base < 0n ? 0n : base >= span ? span - 1n : base;
      const sport = R() < 0.3 ? [0, 1023, 1024, 65535][Math.floor(R() * 4)]! : Math.floor(R() * 65536);
      let want = false;
      for (let j = 0; j < pairs.length; j += 2) {
        if (src < pairs[j]! || src > pairs[j + 1]!) continue;
        const p = ports[j / 2];
        want = !p || p.some((_, q) => q % 2 === 0 && p[q]! <= sport && sport <= p[q + 1]!);
      }
      const got = runFilter(insns, pkt(family, src, sport, 0x02, udp)) !== 0;
      if (got !== want) { bad.push(`${family} ${udp ? 'udp' : 'tcp'} src ${src} port ${sport}: got ${got}, want ${want}\n${disassemble(insns)}`); break; }
      if (!udp && runFilter(insns, pkt(family, src, sport, 0x10, udp)) === 0) { bad.push('non-SYN dropped'); break; }
    }
  }
  t.same(bad, [], `${cases} cases`);
});

t.test('no port lists: the same program as before NACLs', async (t) => {
  const v4 = Uint32Array.from([0x7f000001, 0x7f000001, 0x7f000010, 0x7f0000ff]);
  const a = compileSourceFilter('tcp-syn', 4, { v4, v6: [] });
  const b = compileSourceFilter('tcp-syn', 4, { v4, v6: [], ports4: [null, null] });
  t.same(b.insns, a.insns);
  t.notMatch(disassemble(a.insns), /ldh \[0\]/);
  const c = compileSourceFilter('tcp-syn', 4, { v4, v6: [], ports4: [null, [1024, 65535]] });
  t.match(disassemble(c.insns), /ldh \[0\]/);
  // An empty port list is no range at all.
  const d = compileSourceFilter('udp', 4, { v4: Uint32Array.from([5, 5]), v6: [], ports4: [[]] });
  t.equal(runFilter(d.insns, pkt(4, 5n, 2000, 0, true)), 0);
});
