// Hand-written AWS cases for the policy compiler (aws-security-groups.md §1.5, §1.6, CT §3.2).
// Every deny has an allowing twin. Each case is also checked against the reference evaluator.

import t, { type Test } from 'tap';
import { compilePolicy } from '../../src/policy/compile.js';
import { formatIpv4, formatIpv6, ipv6ToBigInt, parseIpv4, parseIpv6Words } from '../../src/policy/addr.js';
import { rangesContain4, rangesContain6 } from '../../src/policy/ranges.js';
import type { CompiledPolicy } from '../../src/policy/types.js';
import type { Direction, Model } from '../../src/model/types.js';
import { EGRESS, INGRESS } from '../../src/model/types.js';
import { mkGroup, mkInstance, mkModel, mkPrefixList, refDecide } from './reference.js';

const TCP = 6, UDP = 17, ICMP = 1, ICMPV6 = 58, GRE = 47;

/** decide() by instance name and address text, checked against the reference on the way. */
function check(t: Pick<Test, 'equal'>, p: CompiledPolicy, inst: string, dir: Direction, proto: number, peer: string, port: number): number {
  const i = p.instanceIndex.get(inst)!;
  let v: number;
  if (peer.includes(':')) {
    const w = parseIpv6Words(peer);
    v = p.decide6(i, dir, proto, w[0]!, w[1]!, w[2]!, w[3]!, port);
  } else {
    v = p.decide4(i, dir, proto, parseIpv4(peer), port);
  }
  t.equal(v, refDecide(p.model, inst, dir, proto, peer, port), `reference agrees: ${inst} ${dir} ${proto} ${peer} ${port}`);
  return v;
}

function policy(m: Model): CompiledPolicy { return compilePolicy(m, 7); }

t.test('union of groups; default deny inbound', async (t) => {
  const p = policy(mkModel({
    groups: [mkGroup('sg-web', [[TCP, 80, 80, '0.0.0.0/0']]), mkGroup('sg-ssh', [[TCP, 22, 22, '198.51.100.7/32']])],
    instances: [mkInstance('web', '127.0.0.10', ['sg-web', 'sg-ssh']), mkInstance('bare', '127.0.0.11', ['sg-web'])],
  }));
  t.equal(p.version, 7);
  t.equal(check(t, p, 'web', INGRESS, TCP, '192.0.2.1', 80) & 1, 1);
  t.equal(check(t, p, 'web', INGRESS, TCP, '198.51.100.7', 22) & 1, 1);
  t.equal(check(t, p, 'web', INGRESS, TCP, '198.51.100.8', 22), 0);
  t.equal(check(t, p, 'web', INGRESS, TCP, '192.0.2.1', 81), 0);
  t.equal(check(t, p, 'web', INGRESS, UDP, '192.0.2.1', 80), 0);
  t.equal(check(t, p, 'bare', INGRESS, TCP, '198.51.100.7', 22), 0, 'group not attached → no rule');
  t.equal(p.ruleCount(p.instanceIndex.get('web')!, INGRESS), 2);
  t.equal(p.ruleCount(p.instanceIndex.get('bare')!, INGRESS), 1);
  t.equal(p.ruleCount(p.instanceIndex.get('web')!, EGRESS), 2, 'both default egress rules (distinct ids)');
});

t.test('the same rule id in two groups counts once', async (t) => {
  const a = mkGroup('sg-a', [[TCP, 80, 80, '0.0.0.0/0']]);
  const b = mkGroup('sg-b', [], []);
  b.ingress.push(a.ingress[0]!);
  const p = policy(mkModel({ groups: [a, b], instances: [mkInstance('x', '127.0.0.10', ['sg-a', 'sg-b', 'sg-a'])] }));
  t.equal(p.ruleCount(0, INGRESS), 1);
  t.equal(p.ruleCount(0, EGRESS), 1);
  t.equal(p.ruleCount(5, EGRESS), 0, 'unknown instance');
});

t.test('group references match private addresses of members, self-reference included', async (t) => {
  const p = policy(mkModel({
    groups: [
      mkGroup('sg-db', [[TCP, 5432, 5432, 'sg-app'], [-1, -1, -1, 'sg-db']]),
      mkGroup('sg-app', []),
    ],
    instances: [
      mkInstance('db1', '127.0.0.20', ['sg-db'], '::1'),
      mkInstance('db2', '127.0.0.21', ['sg-db']),
      mkInstance('app', '127.0.0.30', ['sg-app'], 'fd00::30'),
      mkInstance('other', '127.0.0.40', []),
    ],
  }));
  t.equal(check(t, p, 'db1', INGRESS, TCP, '127.0.0.30', 5432), 1);
  t.equal(check(t, p, 'db1', INGRESS, TCP, 'fd00::30', 5432), 1, 'address6 of a member');
  t.equal(check(t, p, 'db1', INGRESS, TCP, '127.0.0.40', 5432), 0, 'not a member');
  t.equal(check(t, p, 'db1', INGRESS, TCP, '127.0.0.30', 5433), 0);
  t.equal(check(t, p, 'db1', INGRESS, UDP, '127.0.0.21', 9999), 1, 'self-reference: every protocol and port');
  t.equal(check(t, p, 'db2', INGRESS, GRE, '127.0.0.20', 0), 1);
  t.equal(check(t, p, 'db2', INGRESS, TCP, '::1', 1), 1, 'self-reference includes address6');
  t.equal(check(t, p, 'db2', INGRESS, TCP, '::2', 1), 0);
  t.equal(check(t, p, 'other', INGRESS, TCP, '127.0.0.20', 1), 0, 'an instance with no groups allows nothing');
  t.equal(check(t, p, 'other', EGRESS, TCP, '127.0.0.20', 1), 0);
});

t.test('prefix lists: entries of both families; a stale reference matches nothing', async (t) => {
  const p = policy(mkModel({
    groups: [mkGroup('sg-x', [[TCP, 443, 443, 'pl-office'], [TCP, 444, 444, 'pl-gone'], [TCP, 445, 445, 'sg-gone']])],
    prefixLists: [mkPrefixList('pl-office', ['198.51.100.0/24', '2001:db8::/32'])],
    instances: [mkInstance('x', '127.0.0.10', ['sg-x'])],
  }));
  t.equal(check(t, p, 'x', INGRESS, TCP, '198.51.100.255', 443), 1);
  t.equal(check(t, p, 'x', INGRESS, TCP, '198.51.101.0', 443), 0);
  t.equal(check(t, p, 'x', INGRESS, TCP, '2001:db8:ffff::1', 443), 1);
  t.equal(check(t, p, 'x', INGRESS, TCP, '2001:db9::', 443), 0);
  t.equal(check(t, p, 'x', INGRESS, TCP, '198.51.100.1', 444), 0);
  t.equal(check(t, p, 'x', INGRESS, TCP, '198.51.100.1', 445), 0);
});

t.test('address families are separate; v4-mapped IPv6 is IPv6', async (t) => {
  const p = policy(mkModel({
    groups: [mkGroup('sg-x', [[TCP, 80, 80, '0.0.0.0/0'], [TCP, 81, 81, '::/0'], [TCP, 82, 82, '::ffff:0:0/96']])],
    instances: [mkInstance('x', '127.0.0.10', ['sg-x'])],
  }));
  t.equal(check(t, p, 'x', INGRESS, TCP, '::ffff:192.0.2.1', 80), 0, 'v4 CIDR never matches a v6 peer');
  t.equal(check(t, p, 'x', INGRESS, TCP, '192.0.2.1', 80) & 1, 1);
  t.equal(check(t, p, 'x', INGRESS, TCP, '192.0.2.1', 81), 0, 'v6 CIDR never matches a v4 peer');
  t.equal(check(t, p, 'x', INGRESS, TCP, '2001:db8::1', 81) & 1, 1);
  t.equal(check(t, p, 'x', INGRESS, TCP, '192.0.2.1', 82), 0);
  t.equal(check(t, p, 'x', INGRESS, TCP, '::ffff:192.0.2.1', 82), 1);
});

t.test('icmp type/code, icmpv6, protocol -1, numeric protocol', async (t) => {
  const p = policy(mkModel({
    groups: [mkGroup('sg-x', [
      [ICMP, 8, -1, '10.0.0.0/8'],          // echo request, any code
      [ICMP, 3, 4, '10.0.0.0/8'],           // fragmentation needed only
      [ICMPV6, -1, -1, '::/0'],             // all icmpv6
      [GRE, -1, -1, '192.0.2.0/24'],        // GRE: ports do not apply
      [-1, -1, -1, '203.0.113.5/32'],       // everything
    ], [])],
    instances: [mkInstance('x', '127.0.0.10', ['sg-x'])],
  }));
  const icmp = (type: number, code: number): number => (type << 8) | code;
  t.equal(check(t, p, 'x', INGRESS, ICMP, '10.1.2.3', icmp(8, 0)), 1);
  t.equal(check(t, p, 'x', INGRESS, ICMP, '10.1.2.3', icmp(8, 255)), 1);
  t.equal(check(t, p, 'x', INGRESS, ICMP, '10.1.2.3', icmp(0, 0)), 0, 'echo reply is another type');
  t.equal(check(t, p, 'x', INGRESS, ICMP, '10.1.2.3', icmp(3, 4)), 1);
  t.equal(check(t, p, 'x', INGRESS, ICMP, '10.1.2.3', icmp(3, 3)), 0);
  t.equal(check(t, p, 'x', INGRESS, ICMP, '11.0.0.1', icmp(8, 0)), 0);
  t.equal(check(t, p, 'x', INGRESS, ICMPV6, '2001:db8::1', icmp(128, 0)), 1);
  t.equal(check(t, p, 'x', INGRESS, ICMP, '2001:db8::1', icmp(8, 0)), 0, 'icmp (IPv4) rules do not match IPv6');
  t.equal(check(t, p, 'x', INGRESS, ICMPV6, '10.1.2.3', icmp(8, 0)), 0, 'icmpv6 rule with ::/0 does not match IPv4');
  t.equal(check(t, p, 'x', INGRESS, GRE, '192.0.2.9', 0), 1);
  t.equal(check(t, p, 'x', INGRESS, GRE, '192.0.2.9', 65535), 1);
  t.equal(check(t, p, 'x', INGRESS, 50, '192.0.2.9', 0), 0, 'ESP is not GRE');
  t.equal(check(t, p, 'x', INGRESS, TCP, '192.0.2.9', 80), 0);
  for (const proto of [0, TCP, UDP, ICMP, GRE, 50, 255]) {
    t.equal(check(t, p, 'x', INGRESS, proto, '203.0.113.5', 1234), 1, `protocol -1 matches ${proto}`);
  }
  t.equal(check(t, p, 'x', INGRESS, TCP, '203.0.113.6', 1234), 0);
  t.equal(check(t, p, 'x', INGRESS, ICMP, '203.0.113.5', icmp(255, 255)), 1);
});

t.test('tcp/udp port ranges, edges 0 and 65535', async (t) => {
  const p = policy(mkModel({
    groups: [mkGroup('sg-x', [[TCP, 8000, 8100, '10.0.0.0/24'], [TCP, 8050, 9000, '10.0.1.0/24'],
      [UDP, 0, 65535, '10.0.2.0/24'], [TCP, 65535, 65535, '10.0.3.3/32'], [TCP, 0, 0, '10.0.3.4/32']], [])],
    instances: [mkInstance('x', '127.0.0.10', ['sg-x'])],
  }));
  for (const [peer, port, want] of [
    ['10.0.0.1', 7999, 0], ['10.0.0.1', 8000, 1], ['10.0.0.1', 8100, 1], ['10.0.0.1', 8101, 0],
    ['10.0.1.1', 8049, 0], ['10.0.1.1', 8050, 1], ['10.0.1.1', 9000, 1], ['10.0.1.1', 9001, 0],
    ['10.0.2.9', 0, 0], ['10.0.3.3', 65535, 1], ['10.0.3.3', 65534, 0], ['10.0.3.4', 0, 1], ['10.0.3.4', 1, 0],
  ] as const) t.equal(check(t, p, 'x', INGRESS, TCP, peer, port), want, `${peer}:${port}`);
  t.equal(check(t, p, 'x', INGRESS, UDP, '10.0.2.9', 0), 1);
  t.equal(check(t, p, 'x', INGRESS, UDP, '10.0.2.9', 65535), 1);
  t.equal(p.decide4(0, INGRESS, TCP, parseIpv4('10.0.0.1'), 65536), 0, 'out-of-range port → deny');
  t.equal(p.decide4(0, INGRESS, 256, parseIpv4('10.0.0.1'), 8000), 0, 'out-of-range protocol → deny');
  t.equal(p.decide4(9, INGRESS, TCP, parseIpv4('10.0.0.1'), 8000), 0, 'unknown instance → deny');
  t.equal(p.decide6(-1, INGRESS, TCP, 0, 0, 0, 1, 8000), 0);
});

t.test('default egress (all to 0.0.0.0/0) vs egress: []', async (t) => {
  const p = policy(mkModel({
    groups: [mkGroup('sg-def', []), mkGroup('sg-none', [], [])],
    instances: [mkInstance('a', '127.0.0.10', ['sg-def']), mkInstance('b', '127.0.0.11', ['sg-none'])],
  }));
  t.equal(check(t, p, 'a', EGRESS, TCP, '52.94.0.10', 443) & 1, 1);
  t.equal(check(t, p, 'a', EGRESS, UDP, '8.8.8.8', 53) & 1, 1);
  t.equal(check(t, p, 'a', EGRESS, TCP, '2001:db8::1', 443), 0, 'the default egress rule is IPv4 only');
  t.equal(check(t, p, 'b', EGRESS, TCP, '52.94.0.10', 443), 0, 'egress: [] denies all');
  t.equal(check(t, p, 'a', INGRESS, TCP, '127.0.0.11', 443), 0, 'a new group has no inbound rules');
});

t.test('untracked: the AWS example (CT §3.2), per address family', async (t) => {
  const web = mkGroup('sg-web', [[TCP, 80, 80, '0.0.0.0/0'], [TCP, 22, 22, '203.0.113.9/32'], [TCP, 443, 443, '::/0'],
    [UDP, 53, 53, '0.0.0.0/0'], [ICMP, -1, -1, '0.0.0.0/0']], [[-1, -1, -1, '0.0.0.0/0']]);
  const p = policy(mkModel({ groups: [web], instances: [mkInstance('web', '127.0.0.10', ['sg-web'])] }));
  t.equal(check(t, p, 'web', INGRESS, TCP, '192.0.2.1', 80), 3, 'open inbound 80 + outbound all/all → untracked');
  t.equal(check(t, p, 'web', INGRESS, UDP, '192.0.2.1', 53), 3);
  t.equal(check(t, p, 'web', INGRESS, TCP, '203.0.113.9', 22), 1, 'ssh from a /32 → tracked');
  t.equal(check(t, p, 'web', INGRESS, TCP, '2001:db8::1', 443), 1, 'no ::/0 outbound → IPv6 tracked');
  t.equal(check(t, p, 'web', INGRESS, ICMP, '192.0.2.1', 0x0800), 1, 'ICMP is always tracked');
  t.equal(check(t, p, 'web', EGRESS, TCP, '192.0.2.1', 443), 1, 'egress all/all but inbound 443 is not open on v4 → tracked');
  t.equal(check(t, p, 'web', EGRESS, TCP, '192.0.2.1', 80), 1, 'reverse needs all ports, inbound is tcp 80 only');

  const web6 = mkGroup('sg-web', [[TCP, 443, 443, '::/0']], [[-1, -1, -1, '0.0.0.0/0'], [TCP, 0, 65535, '::/0']]);
  const p6 = policy(mkModel({ groups: [web6], instances: [mkInstance('web', '127.0.0.10', ['sg-web'])] }));
  t.equal(check(t, p6, 'web', INGRESS, TCP, '2001:db8::1', 443), 3, 'tcp 0-65535 to ::/0 outbound is enough');
  t.equal(check(t, p6, 'web', EGRESS, TCP, '2001:db8::1', 443), 1, 'the reverse of that is only tcp 443');

  web.egress = [];
  const q = policy(mkModel({ groups: [web], instances: [mkInstance('web', '127.0.0.10', ['sg-web'])] }));
  t.equal(check(t, q, 'web', INGRESS, TCP, '192.0.2.1', 80), 1, 'outbound rule removed → tracked');

  const viaList = policy(mkModel({
    groups: [mkGroup('sg-x', [[TCP, 80, 80, 'pl-all']], [[-1, -1, -1, 'pl-all']])],
    prefixLists: [mkPrefixList('pl-all', ['0.0.0.0/0'])],
    instances: [mkInstance('x', '127.0.0.10', ['sg-x'])],
  }));
  t.equal(check(t, viaList, 'x', INGRESS, TCP, '192.0.2.1', 80), 1, 'a prefix list never makes a flow untracked');

  const twoGroups = policy(mkModel({
    groups: [mkGroup('sg-in', [[TCP, 80, 80, '0.0.0.0/0'], [TCP, 80, 80, '192.0.2.0/24']], []),
      mkGroup('sg-out', [], [[UDP, 0, 65535, '0.0.0.0/0'], [TCP, 0, 65535, '0.0.0.0/0']])],
    instances: [mkInstance('x', '127.0.0.10', ['sg-in', 'sg-out'])],
  }));
  t.equal(check(t, twoGroups, 'x', INGRESS, TCP, '192.0.2.1', 80), 3, 'the most permissive rule wins; groups combine');
});

t.test('addresses map: appear4/appear6, instance addresses never mapped, preimage in ingressSources', async (t) => {
  const p = policy(mkModel({
    groups: [mkGroup('sg-web', [[TCP, 80, 80, '203.0.113.0/25'], [TCP, 80, 80, '198.51.100.7/32'],
      [TCP, 80, 80, '127.0.1.10/32'], [TCP, 22, 22, '2001:db8:1::/48']])],
    instances: [mkInstance('web', '127.0.1.5', ['sg-web']), mkInstance('peer', '127.0.1.10', ['sg-web'], 'fd00::5')],
    addresses: [['127.0.0.1/32', '198.51.100.7/32'], ['127.0.1.0/24', '203.0.113.0/24'],
      ['fd00::/120', '2001:db8:1::/120']],
  }));
  const a4 = (s: string): string => formatIpv4(p.appear4(parseIpv4(s)));
  t.equal(a4('127.0.0.1'), '198.51.100.7');
  t.equal(a4('127.0.0.2'), '127.0.0.2', 'identity outside every mapping');
  t.equal(a4('127.0.1.77'), '203.0.113.77', 'offset preserved');
  t.equal(a4('127.0.1.5'), '127.0.1.5', 'instance address is never mapped');
  t.equal(a4('127.0.1.10'), '127.0.1.10');
  const out = new Uint32Array(4);
  const w = parseIpv6Words('fd00::42');
  t.equal(p.appear6(w[0]!, w[1]!, w[2]!, w[3]!, out), true);
  t.equal(formatIpv6(out), '2001:db8:1::42');
  const i6 = parseIpv6Words('fd00::5');
  t.equal(p.appear6(i6[0]!, i6[1]!, i6[2]!, i6[3]!, out), false, "an instance's address6 is never mapped");
  t.equal(formatIpv6(out), 'fd00::5', 'out holds the identity when unmapped');
  const o6 = parseIpv6Words('fd00::1:0');
  t.equal(p.appear6(o6[0]!, o6[1]!, o6[2]!, o6[3]!, out), false);

  const web = p.instanceIndex.get('web')!;
  const src = p.ingressSources(web, 6, 80);
  // Allowed appearance: 203.0.113.0/25 (← 127.0.1.0-127 minus the two instance addresses),
  // 198.51.100.7 (← 127.0.0.1, and 198.51.100.7 itself is not a mapped local address),
  // 127.0.1.10 (an instance: identity), and 203.0.113.0/25 itself: no mapping covers those local
  // addresses, so they appear as themselves (a client could bind them if routed to loopback).
  const want = [['127.0.0.1', '127.0.0.1'], ['127.0.1.0', '127.0.1.4'], ['127.0.1.6', '127.0.1.127'],
    ['198.51.100.7', '198.51.100.7'], ['203.0.113.0', '203.0.113.127']];
  t.same([...src.v4].map(formatIpv4), want.flat());
  t.notOk(rangesContain4(src.v4, parseIpv4('127.0.1.5')), '127.0.1.5 is itself and 127.0.1.5/32 is not allowed');
  t.ok(rangesContain4(src.v4, parseIpv4('127.0.1.10')));
  t.notOk(rangesContain4(src.v4, parseIpv4('127.0.1.128')), '127.0.1.128 appears as 203.0.113.128: not allowed');
  t.same(src.v6, [], 'port 80 has no IPv6 rule');
  const ssh = p.ingressSources(web, 6, 22);
  t.same(ssh.v4.length, 0);
  t.same(ssh.v6, ['2001:db8:1::', '2001:db8:1:ffff:ffff:ffff:ffff:ffff', 'fd00::', 'fd00::4', 'fd00::6', 'fd00::ff']
    .map((a) => ipv6ToBigInt(parseIpv6Words(a))), 'identity part, then the preimage of the /120 without fd00::5');
  t.ok(rangesContain6(ssh.v6, ipv6ToBigInt(parseIpv6Words('fd00::7'))));
  t.same(p.ingressSources(99, 6, 80), { v4: new Uint32Array(0), v6: [] });
});

t.test('nested mappings: the most specific local block wins', async (t) => {
  const p = policy(mkModel({
    groups: [mkGroup('sg-x', [[TCP, 80, 80, '192.0.2.16/28']])],
    instances: [mkInstance('x', '127.0.0.10', ['sg-x'])],
    addresses: [['127.0.1.0/24', '203.0.113.0/24'], ['127.0.1.16/28', '192.0.2.16/28']],
  }));
  t.equal(formatIpv4(p.appear4(parseIpv4('127.0.1.17'))), '192.0.2.17');
  t.equal(formatIpv4(p.appear4(parseIpv4('127.0.1.32'))), '203.0.113.32');
  t.same([...p.ingressSources(0, 6, 80).v4].map(formatIpv4), ['127.0.1.16', '127.0.1.31', '192.0.2.16', '192.0.2.31']);
});

t.test('instances sharing groups share tables; large rule sets stay exact', async (t) => {
  const ingress: [number, number, number, string][] = [];
  for (let i = 0; i < 300; i++) ingress.push([TCP, 1000 + i * 3, 1000 + i * 3 + 1, `10.${i >> 8}.${i & 255}.0/24`]);
  const m = mkModel({
    groups: [mkGroup('sg-big', ingress)],
    instances: [mkInstance('a', '127.0.0.10', ['sg-big']), mkInstance('b', '127.0.0.11', ['sg-big'])],
  });
  const p = policy(m);
  for (let i = 0; i < 300; i += 7) {
    t.equal(check(t, p, 'b', INGRESS, TCP, `10.${i >> 8}.${i & 255}.9`, 1000 + i * 3 + 1), 1);
    t.equal(check(t, p, 'b', INGRESS, TCP, `10.${i >> 8}.${i & 255}.9`, 1000 + i * 3 + 2), 0);
    t.equal(check(t, p, 'b', INGRESS, TCP, `10.${(i + 1) >> 8}.${(i + 1) & 255}.9`, 1000 + i * 3), 0);
  }
  t.equal(p.ruleCount(1, INGRESS), 300);
});
