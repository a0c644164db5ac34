// Address helpers: strict parsing, RFC 5952 formatting identical to ipaddr.js (which src/config
// canonicalises with), CIDR ranges, and errors that carry a code and name the bad value.

import t from 'tap';
import ipaddr from 'ipaddr.js';
import {
  bigIntToIpv6, cidrPrefix, cidrToRange4, cidrToRange6, formatIpv4, formatIpv6, ipv6ToBigInt, parseAddress,
  parseIpv4, parseIpv6Words,
} from '../../src/policy/addr.js';
import { mergeRanges4, mergeRanges6, rangesContain4, rangesContain6 } from '../../src/policy/ranges.js';

t.test('IPv4 parse/format', async (t) => {
  t.equal(parseIpv4('0.0.0.0'), 0);
  t.equal(parseIpv4('255.255.255.255'), 0xffffffff);
  t.equal(parseIpv4('127.0.0.1'), 0x7f000001);
  t.equal(parseIpv4('203.0.113.200'), 0xcb0071c8, 'above 2^31 stays unsigned');
  t.equal(formatIpv4(0xcb0071c8), '203.0.113.200');
  t.equal(formatIpv4(-1), '255.255.255.255', 'a signed int is read as uint32');
  for (const bad of ['', '1.2.3', '1.2.3.4.5', '1.2.3.256', '01.2.3.4', '1.2.3.4 ', '1..3.4', 'a.b.c.d', '1.2.3.-4', '::1', '1.2.3.4/32']) {
    t.throws(() => parseIpv4(bad), { code: 'InvalidParameterValue' }, JSON.stringify(bad));
  }
  t.throws(() => parseIpv4('1.2.3.256'), { message: /"1\.2\.3\.256".*e\.g\. 192\.0\.2\.1/ }, 'message names the value and a valid form');
});

t.test('IPv6 parse/format', async (t) => {
  const w = (s: string): number[] => [...parseIpv6Words(s)];
  t.same(w('::'), [0, 0, 0, 0]);
  t.same(w('::1'), [0, 0, 0, 1]);
  t.same(w('2001:db8::1'), [0x20010db8, 0, 0, 1]);
  t.same(w('::ffff:192.0.2.1'), [0, 0, 0xffff, 0xc0000201], 'v4-mapped');
  t.same(w('::ffff:c000:201'), [0, 0, 0xffff, 0xc0000201]);
  t.same(w('::192.0.2.1'), [0, 0, 0, 0xc0000201]);
  t.same(w('1:2:3:4:5:6:7:8'), [0x10002, 0x30004, 0x50006, 0x70008]);
  t.same(w('1:2:3:4:5:6:1.2.3.4'), [0x10002, 0x30004, 0x50006, 0x01020304]);
  t.same(w('FFFF::'), [0xffff0000, 0, 0, 0]);
  for (const bad of ['', '1', ':', ':::', '1:::2', '1::2::3', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '12345::',
    'g::', '::1%lo', ':1::', '1::2:', '1:2:3:4:5:6:7::8:9', '::1.2.3', '::1.2.3.4.5', '1:2:3:4:5:6:7:1.2.3.4']) {
    t.throws(() => parseIpv6Words(bad), { code: 'InvalidParameterValue' }, JSON.stringify(bad));
  }
  t.equal(formatIpv6(parseIpv6Words('2001:0db8:0000:0000:0001:0000:0000:0001')), '2001:db8::1:0:0:1', 'first longest run');
  t.equal(formatIpv6(parseIpv6Words('2001:db8:0:1:1:1:1:1')), '2001:db8:0:1:1:1:1:1', 'a single zero group is not compressed');
  t.equal(formatIpv6(parseIpv6Words('::ffff:192.0.2.1')), '::ffff:c000:201', 'as ipaddr.js prints it');
});

t.test('formatIpv6 and parseIpv6Words agree with ipaddr.js on random addresses', async (t) => {
  let s = 12345;
  const rnd = (): number => (s = (Math.imul(s, 1103515245) + 12345) >>> 0);
  let bad = 0;
  for (let k = 0; k < 3000; k++) {
    const words = new Uint32Array(4);
    for (let i = 0; i < 4; i++) {
      const r = rnd();
      // Many zero groups, so "::" placement is exercised.
      words[i] = ((r & 3) === 0 ? 0 : (r & 3) === 1 ? (rnd() & 0xffff) : (r & 3) === 2 ? (rnd() & 0xffff0000) : rnd()) >>> 0;
    }
    const text = formatIpv6(words);
    const theirs = ipaddr.IPv6.parse(text).toRFC5952String();
    const back = parseIpv6Words(theirs);
    if (text !== theirs || ipv6ToBigInt(back) !== ipv6ToBigInt(words)) bad++;
  }
  t.equal(bad, 0);
});

t.test('bigint round trip and CIDR ranges', async (t) => {
  const max = (1n << 128n) - 1n;
  for (const b of [0n, 1n, max, 1n << 127n, 0x20010db8000000000000000000000001n]) t.equal(ipv6ToBigInt(bigIntToIpv6(b)), b);
  t.same(cidrToRange4('0.0.0.0/0'), [0, 0xffffffff]);
  t.same(cidrToRange4('10.0.0.0/8'), [0x0a000000, 0x0affffff]);
  t.same(cidrToRange4('192.0.2.7/32'), [0xc0000207, 0xc0000207]);
  t.same(cidrToRange4('192.0.2.7'), [0xc0000207, 0xc0000207], 'a bare address is a /32');
  t.same(cidrToRange4('100.68.0.18/18'), [0x64440000, 0x64443fff], 'host bits cleared, as AWS does');
  t.same(cidrToRange6('::/0'), [0n, max]);
  t.same(cidrToRange6('2001:db8::/32'), [0x20010db8n << 96n, ((0x20010db8n + 1n) << 96n) - 1n]);
  t.same(cidrToRange6('::1'), [1n, 1n]);
  t.equal(cidrPrefix('10.0.0.0/8'), 8);
  t.equal(cidrPrefix('::1'), 128);
  for (const bad of ['10.0.0.0/33', '10.0.0.0/', '10.0.0.0/08', '10.0.0.0/-1', '10.0.0/8']) {
    t.throws(() => cidrToRange4(bad), { code: 'InvalidParameterValue' }, bad);
  }
  t.throws(() => cidrToRange6('::/129'), { code: 'InvalidParameterValue' });
  t.same(parseAddress('127.0.0.1'), { family: 4, v4: 0x7f000001 });
  t.same(parseAddress('::1'), { family: 6, v6: new Uint32Array([0, 0, 0, 1]) });
});

t.test('range sets: merge and contain', async (t) => {
  t.same(mergeRanges4([10, 20, 0, 5, 6, 8, 21, 21, 30, 40, 35, 36]), [0, 8, 10, 21, 30, 40]);
  t.same(mergeRanges4([]), []);
  t.same(mergeRanges6([10n, 20n, 0n, 5n, 6n, 8n, 22n, 23n]), [0n, 8n, 10n, 20n, 22n, 23n]);
  const r = new Uint32Array([0, 8, 10, 21, 0xfffffff0, 0xffffffff]);
  for (const [x, want] of [[0, true], [8, true], [9, false], [21, true], [22, false], [0xffffffff, true], [0xffffffef, false]] as const) {
    t.equal(rangesContain4(r, x), want, String(x));
  }
  t.equal(rangesContain6([0n, 8n, 10n, 20n], 9n), false);
  t.equal(rangesContain6([0n, 8n, 10n, 20n], 10n), true);
  t.equal(rangesContain6([], 1n), false);
});
