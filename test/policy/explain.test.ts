// explainFlow on hand-built models: decisions, matched rules, near misses, appearance, tracking.
import t from 'tap';
import { explainFlow } from '../../src/policy/explain.js';
import { PROTO_ALL, PROTO_ICMP, PROTO_TCP, PROTO_UDP } from '../../src/model/types.js';
import { group, instance, model } from './model-fixture.js';

const m = model([
  group('sg-ssh', [[PROTO_TCP, 22, '127.0.0.1/32', 'ssh from me']]),
  group('sg-web', [[PROTO_TCP, 8080, '127.0.0.1/32'], [PROTO_TCP, 8080, 'sg-lb'], [PROTO_UDP, 9000, '127.0.0.2/32'], [PROTO_ICMP, [8, -1], '0.0.0.0/0']]),
  group('sg-lb', [[PROTO_TCP, 80, '0.0.0.0/0'], [PROTO_TCP, 443, 'pl-office']]),
  group('sg-db', [[PROTO_TCP, 5432, 'sg-web']], [[PROTO_TCP, 443, '203.0.113.0/24']]),
], [
  instance('web', '127.0.0.10', ['sg-ssh', 'sg-web'], '::1'),
  instance('lb', '127.0.0.11', ['sg-lb']),
  instance('db', '127.0.0.12', ['sg-db']),
], {
  prefixLists: [{ id: 'pl-office', name: 'office', entries: [{ cidr: '198.51.100.0/24', family: 4, description: '' }], maxEntries: 1 }],
  addresses: [{ local: '127.0.1.0/24', appearsAs: '198.51.100.0/24', family: 4 }],
});

t.test('allow via cidr, SPEC §3 shape', async (t) => {
  const r = explainFlow(m, { from: '127.0.0.1', to: 'web', protocol: 'tcp', port: 22 });
  t.equal(r.decision, 'allow');
  t.equal(r.protocol, 'tcp');
  t.equal(r.port, 22);
  t.equal(r.source, '127.0.0.1');
  t.equal(r.destination, '127.0.0.10');
  t.equal(r.checks.length, 1);
  t.match(r.checks[0], { instance: 'web', direction: 'ingress', decision: 'allow', tracked: true, nearMisses: [] });
  t.match(r.checks[0]?.matched, [{ groupId: 'sg-ssh', via: 'cidr 127.0.0.1/32' }]);
  t.match(r.checks[0]?.matched[0]?.ruleId, /^sgr-/);
  t.equal(r.reason, 'sg-ssh allows tcp/22 from 127.0.0.1/32');
});

t.test('deny lists near misses by respect; addr:port gives the port', async (t) => {
  const r = explainFlow(m, { from: '127.0.0.2', to: '127.0.0.10:8080', protocol: 'tcp' });
  t.equal(r.decision, 'deny');
  t.equal(r.port, 8080);
  const c = r.checks[0];
  t.equal(c?.decision, 'deny');
  t.same(c?.matched, []);
  t.ok(c?.nearMisses.some((n) => n.respect === 'source' && n.groupId === 'sg-web' && n.rule === 'sg-web allows tcp/8080 from 127.0.0.1/32'));
  t.match(r.reason, /^no rule of sg-ssh, sg-web on web allows tcp\/8080 from 127\.0\.0\.2 \(ingress\); nearest: sg-web allows tcp\/8080 from 127\.0\.0\.1\/32/);
  const p = explainFlow(m, { from: '127.0.0.1', to: 'web', protocol: 'tcp', port: 23 });
  t.ok(p.checks[0]?.nearMisses.some((n) => n.respect === 'port' && n.groupId === 'sg-ssh'));
  const u = explainFlow(m, { from: '127.0.0.2', to: 'web', protocol: 'tcp', port: 9000 });
  t.ok(u.checks[0]?.nearMisses.some((n) => n.respect === 'protocol' && n.rule === 'sg-web allows udp/9000 from 127.0.0.2/32'));
});

t.test('instance to instance: egress of source and ingress of destination, group reference', async (t) => {
  const r = explainFlow(m, { from: 'lb', to: 'web', protocol: 'tcp', port: 8080 });
  t.equal(r.decision, 'allow');
  t.same(r.checks.map((c) => [c.instance, c.direction, c.decision]), [['lb', 'egress', 'allow'], ['web', 'ingress', 'allow']]);
  t.match(r.checks[1]?.matched, [{ groupId: 'sg-web', via: 'group sg-lb (instance lb 127.0.0.11)' }]);
  // db egress only allows 443 to 203.0.113.0/24: to web's 8080 is denied by the egress check.
  const d = explainFlow(m, { from: 'db', to: 'web', protocol: 'tcp', port: 8080 });
  t.equal(d.decision, 'deny');
  t.same(d.checks.map((c) => c.decision), ['deny', 'deny']);
  t.ok(d.checks[0]?.nearMisses.length === 0 || d.checks[0]?.nearMisses.every((n) => n.respect !== 'source'));
  // The address of an instance is the instance.
  const a = explainFlow(m, { from: '127.0.0.10', to: 'db', protocol: 'tcp', port: 5432 });
  t.equal(a.decision, 'allow');
  t.equal(a.sourceInstance, 'web');
  t.equal(a.checks.length, 2);
});

t.test('egress near miss names the destination', async (t) => {
  const d = explainFlow(m, { from: 'db', to: '203.0.114.1', protocol: 'tcp', port: 443 });
  t.equal(d.decision, 'deny');
  t.match(d.checks[0]?.nearMisses, [{ respect: 'destination', groupId: 'sg-db' }]);
  t.match(d.reason, /to 203\.0\.114\.1 \(egress\)/);
});

t.test('addresses: map: local appears as the mapped address; prefix list via', async (t) => {
  const r = explainFlow(m, { from: '127.0.1.7', to: 'lb', protocol: 'tcp', port: 443 });
  t.equal(r.decision, 'allow');
  t.equal(r.source, '127.0.1.7');
  t.equal(r.sourceAppearsAs, '198.51.100.7');
  t.match(r.checks[0]?.matched, [{ via: 'prefix-list pl-office entry 198.51.100.0/24' }]);
  t.match(r.reason, /from 198\.51\.100\.7|pl-office/);
});

t.test('untracked: world-open rule with egress all open', async (t) => {
  const r = explainFlow(m, { from: '127.0.0.5', to: 'lb', protocol: 'tcp', port: 80 });
  t.equal(r.decision, 'allow');
  t.equal(r.checks[0]?.tracked, false);
  t.match(r.reason, /untracked/);
  const tr = explainFlow(m, { from: '127.0.0.1', to: 'web', protocol: 'tcp', port: 8080 });
  t.equal(tr.checks[0]?.tracked, true);
});

t.test('icmp defaults to echo request; IPv6 via instance address6', async (t) => {
  const r = explainFlow(m, { from: '127.0.0.5', to: 'web', protocol: 'icmp' });
  t.equal(r.decision, 'allow');
  t.equal(r.icmpType, 8);
  t.equal(r.port, null);
  t.equal(r.checks[0]?.tracked, true);
  const r6 = explainFlow(m, { from: '[::1]:5000', to: 'web', protocol: 'tcp', port: 22 });
  t.equal(r6.destination, '::1');
  t.equal(r6.decision, 'deny'); // sg-ssh's rule is IPv4 only
  const all = explainFlow(m, { from: 'web', to: '8.8.8.8', protocol: 'all' });
  t.equal(all.decision, 'allow');
  t.equal(PROTO_ALL, -1);
});

t.test('bad input is a UsageError', async (t) => {
  const bad = [
    { from: 'not-an-address!', to: 'web', protocol: 'tcp', port: 1 },
    { from: '127.0.0.1', to: 'nosuch', protocol: 'tcp', port: 1 },
    { from: '127.0.0.1', to: 'web', protocol: 'tcpx', port: 1 },
    { from: '127.0.0.1', to: 'web', protocol: 'tcp' },
    { from: '127.0.0.1', to: '127.0.0.2', protocol: 'tcp', port: 1 },
    { from: '300.1.1.1', to: 'web', protocol: 'tcp', port: 1 },
    { from: '127.0.0.1:99999', to: 'web', protocol: 'tcp', port: 1 },
  ];
  for (const q of bad) t.throws(() => explainFlow(m, q), { code: 'Usage' }, JSON.stringify(q));
});

t.test('IPv6 appearance mapping and instance address6', async (t) => {
  const m6 = model([group('sg-v6', [[PROTO_TCP, 443, '2001:db8::/32']])], [instance('v6', '127.0.0.20', ['sg-v6'], '::1')], {
    addresses: [{ local: 'fd00::/64', appearsAs: '2001:db8:1::/64', family: 6 }],
  });
  const r = explainFlow(m6, { from: '[fd00::5]:40000', to: '[::1]:443', protocol: 'tcp' });
  t.equal(r.decision, 'allow');
  t.equal(r.sourceAppearsAs, '2001:db8:1::5');
  t.equal(r.destinationInstance, 'v6');
  t.throws(() => explainFlow(m6, { from: '127.0.0.1', to: '[::1]:443', protocol: 'tcp' }), { code: 'Usage' });
});
