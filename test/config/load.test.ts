// Valid configs: defaults, the rich fixture, IPv6, prefix lists, references, address map, rule ids,
// and the modelToConfigObject round trip.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { defaultGroupId, loadConfigFile, loadConfigText, modelToConfigObject, ruleId } from '../../src/config/load.js';
import { EGRESS, INGRESS, PROTO_ALL, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, type Model, type Rule, type SecurityGroup } from '../../src/model/types.js';
import { FIXTURES } from './helpers.js';

const group = (m: Model, id: string): SecurityGroup => {
  const g = m.groups.find((x) => x.id === id);
  if (!g) throw new Error(`no group ${id}`);
  return g;
};
const peerText = (r: Rule): string => (r.peer.kind === 'cidr' ? r.peer.cidr : r.peer.kind === 'group' ? `group:${r.peer.groupId}` : `pl:${r.peer.prefixListId}`);

t.test('an empty file is the defaults: one VPC, its default group, AWS quotas', async (t) => {
  for (const text of ['', '# only a comment\n', '{}']) {
    const m = loadConfigText(text, 'empty.yaml');
    t.equal(m.region, 'us-east-1');
    t.equal(m.accountId, '000000000000');
    t.same(m.vpcs.map((v) => v.id), ['vpc-local']);
    t.equal(m.groups.length, 1);
    t.same(m.quotas, { rulesPerGroupPerDirection: 60, groupsPerInstance: 5, rulesTimesGroups: 1000, groupsPerRegion: 2500 });
  }
});

t.test('each VPC gets an implicit default group: in from itself, out to 0.0.0.0/0 and ::/0', async (t) => {
  const m = loadConfigText('vpcs: [{ id: vpc-a }, { id: vpc-b }]\n', 'x.yaml');
  t.equal(m.groups.length, 2);
  for (const vpc of ['vpc-a', 'vpc-b']) {
    const g = m.groups.find((x) => x.vpcId === vpc);
    t.ok(g);
    if (!g) continue;
    t.equal(g.id, defaultGroupId(vpc));
    t.match(g.id, /^sg-[0-9a-f]{17}$/);
    t.equal(g.name, 'default');
    t.equal(g.isDefault, true);
    t.equal(g.description, 'default VPC security group');
    t.same(g.ingress.map((r) => [r.protocol, r.fromPort, r.toPort, peerText(r)]), [[PROTO_ALL, -1, -1, `group:${g.id}`]]);
    t.same(g.egress.map((r) => [r.protocol, peerText(r)]), [[PROTO_ALL, '0.0.0.0/0'], [PROTO_ALL, '::/0']]);
  }
  t.not(defaultGroupId('vpc-a'), defaultGroupId('vpc-b'));
});

t.test('default egress when omitted, none with egress: []', async (t) => {
  const m = loadConfigText('securityGroups:\n  - { id: sg-a }\n  - { id: sg-b, egress: [] }\n', 'x.yaml');
  t.same(group(m, 'sg-a').egress.map((r) => [r.direction, r.protocol, r.fromPort, r.toPort, peerText(r)]),
    [[EGRESS, PROTO_ALL, -1, -1, '0.0.0.0/0'], [EGRESS, PROTO_ALL, -1, -1, '::/0']]);
  t.same(group(m, 'sg-b').egress, []);
  t.same(group(m, 'sg-a').ingress, [], 'no inbound rules by default');
  t.equal(group(m, 'sg-a').name, 'sg-a', 'name defaults to the id');
});

t.test('instances without securityGroups get the default group; rules and instances may name it', async (t) => {
  const m = loadConfigText(`securityGroups:
  - id: sg-a
    ingress:
      - { protocol: tcp, ports: 22, groups: [default] }
instances:
  - { name: x, address: 127.0.0.2 }
  - { name: y, address: 127.0.0.3, securityGroups: [default, sg-a] }
`, 'x.yaml');
  const d = defaultGroupId('vpc-local');
  t.same(m.instances.map((i) => i.groupIds), [[d], [d, 'sg-a']]);
  const ref = group(m, 'sg-a').ingress[0];
  t.equal(ref && peerText(ref), `group:${d}`);
  t.match(m.instances[0]?.id, /^i-[0-9a-f]{17}$/);
  t.same(m.instances[0]?.connectionTracking, { tcpEstablishedTimeoutS: 432000, udpTimeoutS: 30, udpStreamTimeoutS: 180 });
});

t.test('rules: protocols, ports, ICMP, one Rule per peer, canonical CIDRs', async (t) => {
  const m = loadConfigText(`securityGroups:
  - id: sg-a
    ingress:
      - { protocol: TCP, ports: 8080, cidr: [100.68.0.18/18, "2001:DB8:0:0:0:0:0:1/64"], groups: [self], description: "web (v4+v6)" }
      - { protocol: "17", ports: all, cidr: 10.0.0.0/8 }
      - { protocol: 6, ports: " 8000 - 8100 ", cidr: 10.0.0.0/8 }
      - { protocol: icmp, icmpType: 3, icmpCode: 4, cidr: 0.0.0.0/0 }
      - { protocol: icmp, icmpType: -1, cidr: 10.0.0.0/8 }
      - { protocol: icmpv6, cidr: "::/0" }
      - { protocol: 58, icmpType: 128, cidr: "fe80::/10" }
      - { protocol: -1, cidr: 127.0.0.1/32 }
      - { protocol: "all", cidr: 127.0.0.2/32 }
      - { protocol: 50, cidr: 127.0.0.3/32 }
`, 'x.yaml');
  const rows = group(m, 'sg-a').ingress.map((r) => [r.protocol, r.fromPort, r.toPort, peerText(r)]);
  t.same(rows, [
    [PROTO_TCP, 8080, 8080, '100.68.0.0/18'],
    [PROTO_TCP, 8080, 8080, '2001:db8::/64'],
    [PROTO_TCP, 8080, 8080, 'group:sg-a'],
    [PROTO_UDP, 0, 65535, '10.0.0.0/8'],
    [PROTO_TCP, 8000, 8100, '10.0.0.0/8'],
    [PROTO_ICMP, 3, 4, '0.0.0.0/0'],
    [PROTO_ICMP, -1, -1, '10.0.0.0/8'],
    [PROTO_ICMPV6, -1, -1, '::/0'],
    [PROTO_ICMPV6, 128, -1, 'fe80::/10'],
    [PROTO_ALL, -1, -1, '127.0.0.1/32'],
    [PROTO_ALL, -1, -1, '127.0.0.2/32'],
    [50, -1, -1, '127.0.0.3/32'],
  ]);
  const first3 = group(m, 'sg-a').ingress.slice(0, 3);
  t.equal(new Set(first3.map((r) => r.id)).size, 3, 'each peer has its own id');
  t.same(first3.map((r) => r.description), ['web (v4+v6)', 'web (v4+v6)', 'web (v4+v6)']);
  t.same(first3.map((r) => r.peer.kind === 'cidr' && r.peer.family), [4, 6, false]);
  t.same(first3[0]?.pos, { path: 'securityGroups[0].ingress[0]', line: 4, column: 9 });
  for (const r of group(m, 'sg-a').ingress) t.match(r.id, /^sgr-[0-9a-f]{17}$/);
});

t.test('the rich fixture (YAML) loads with everything resolved', async (t) => {
  const m = loadConfigFile(FIXTURES + 'rich.yaml');
  t.equal(m.region, 'eu-west-1');
  t.equal(m.accountId, '123456789012');
  t.same(m.vpcs.map((v) => v.id), ['vpc-prod', 'vpc-lab']);
  t.same(m.vpcs[1]?.pos, { path: 'vpcs[1]', line: 8, column: 5 });
  t.equal(m.groups.length, 2 + 5);
  t.same(m.prefixLists.map((p) => [p.id, p.name, p.maxEntries, p.entries.map((e) => `${e.cidr}/${e.family}/${e.description}`)]), [
    ['pl-office', 'office', 4, ['198.51.100.0/24/4/', '2001:db8::/32/6/office v6']],
    ['pl-partners', 'pl-partners', 1, ['203.0.113.0/24/4/']],
  ]);
  const lb = group(m, 'sg-lb');
  t.same(lb.tags, { team: 'edge', env: 'prod' });
  t.same(lb.egress.map(peerText), ['group:sg-web'], 'name "web" resolved to its id');
  t.same(lb.ingress.map(peerText), ['0.0.0.0/0', '::/0', 'pl:pl-office']);
  const web = group(m, 'sg-web');
  t.same(web.ingress.map(peerText), ['group:sg-lb', 'group:sg-web', '10.0.0.0/8', '2001:db8::/64']);
  t.same(group(m, 'sg-db').ingress.map(peerText), ['group:sg-web', `group:${defaultGroupId('vpc-prod')}`]);
  t.same(group(m, 'sg-db').egress, []);
  t.same(group(m, 'sg-lab').ingress.map(peerText), ['group:sg-lab', '127.0.0.0/8', '127.0.0.0/16']);
  const byName = Object.fromEntries(m.instances.map((i) => [i.name, i]));
  t.same(byName.lb?.address6, '::1');
  t.same(byName.web?.vpcId, 'vpc-prod', 'VPC taken from the first group');
  t.same(byName.web?.id, 'i-0123456789abcdef0');
  t.same(byName.web?.groupIds, ['sg-web', 'sg-ssh']);
  t.same(byName.web?.connectionTracking, { tcpEstablishedTimeoutS: 3600, udpTimeoutS: 60, udpStreamTimeoutS: 120 });
  t.same(byName.lab2?.groupIds, [defaultGroupId('vpc-lab')]);
  t.same(byName.lb?.services.map((s) => [s.protocol, s.port, s.listenPort, s.backend]), [
    [PROTO_TCP, 443, 443, { host: '127.0.0.1', port: 8443 }],
    [PROTO_TCP, 80, 80, { host: '127.0.0.1', port: 3080 }],
  ]);
  t.same(byName.web?.services[1], { protocol: PROTO_TCP, port: 22, listenPort: 2222, backend: { host: '127.0.0.1', port: 22 },
    pos: { path: 'instances[1].services[1]', line: 79, column: 9 } });
  const ob = byName.web?.outbound.map(({ pos: _pos, ...o }) => o);
  t.same(ob, [
    { protocol: PROTO_TCP, port: 15432, toInstance: 'db', toHost: '127.0.0.12', toPort: 5432, asAddress: '127.0.0.12', asPort: 5432 },
    { protocol: PROTO_UDP, port: 53, toInstance: null, toHost: '127.0.0.1', toPort: 5353, asAddress: '127.0.0.53', asPort: 53 },
    { protocol: PROTO_TCP, port: 18443, toInstance: null, toHost: '::1', toPort: 9443, asAddress: '52.94.0.10', asPort: 443 },
  ]);
  t.same(byName.lb?.outbound[0]?.toInstance, 'web');
  t.same(m.addresses.map(({ pos: _p, ...a }) => a), [
    { local: '127.0.0.1/32', appearsAs: '198.51.100.7/32', family: 4 },
    { local: '127.0.2.0/24', appearsAs: '203.0.113.0/24', family: 4 },
    { local: '::1/128', appearsAs: '2001:db8::7/128', family: 6 },
  ]);
  t.same(m.addresses[1]?.pos, { path: 'addresses["127.0.2.0/24"]', line: 99, column: 3 });
});

t.test('the JSON fixture loads through the same parser, with positions', async (t) => {
  const m = loadConfigFile(FIXTURES + 'rich.json');
  const g = group(m, 'sg-api');
  t.same(g.ingress.map(peerText), ['127.0.0.0/8', '::1/128']);
  t.same(g.ingress[0]?.pos, { path: 'securityGroups[0].ingress[0]', line: 5, column: 20 });
  t.same(m.instances[0]?.services[0]?.backend, { host: '127.0.0.1', port: 3000 });
});

t.test('every node from the file carries its position', async (t) => {
  const m = loadConfigFile(FIXTURES + 'rich.yaml');
  for (const g of m.groups) {
    if (!g.isDefault) t.ok(g.pos, `group ${g.id}`);
    for (const r of [...g.ingress, ...g.egress]) if (['sg-lb', 'sg-web', 'sg-db'].includes(g.id)) t.ok(r.pos, `rule ${r.id}`);
  }
  for (const p of m.prefixLists) t.ok(p.pos);
  for (const i of m.instances) {
    t.ok(i.pos);
    for (const s of i.services) t.ok(s.pos);
    for (const o of i.outbound) t.ok(o.pos);
  }
});

t.test('rule ids: deterministic, independent of order, description and position', async (t) => {
  const a = `securityGroups:
  - id: sg-a
    ingress:
      - { protocol: tcp, ports: 22, cidr: 10.0.0.0/8, description: one }
      - { protocol: udp, ports: 53, cidr: ["::/0", 127.0.0.1/32] }
  - id: sg-b
    ingress:
      - { protocol: tcp, ports: 22, cidr: 10.0.0.0/8 }
`;
  const b = `# reordered, re-described, host bits set
securityGroups:
  - id: sg-b
    ingress:
      - { protocol: 6, ports: "22-22", cidr: 10.1.2.3/8 }
  - id: sg-a
    ingress:
      - { protocol: udp, ports: 53, cidr: [127.0.0.1/32, "0::0/0"] }
      - { protocol: tcp, ports: 22, cidr: 10.0.0.0/8, description: other words }
`;
  const ids = (m: Model): Record<string, string> => Object.fromEntries(m.groups.flatMap((g) => g.ingress.map((r) => [`${g.id} ${r.protocol} ${r.fromPort} ${peerText(r)}`, r.id])));
  const m1 = loadConfigText(a, 'a.yaml');
  t.same(ids(loadConfigText(a, 'a.yaml')), ids(m1), 'same file → same ids');
  t.same(ids(loadConfigText(b, 'b.yaml')), ids(m1), 'reordered file → same ids for the same rules');
  const r0 = group(m1, 'sg-a').ingress[0];
  t.ok(r0);
  if (r0) t.equal(r0.id, ruleId('sg-a', { direction: INGRESS, protocol: PROTO_TCP, fromPort: 22, toPort: 22, peer: { kind: 'cidr', cidr: '10.0.0.0/8', family: 4 } }));
  t.not(group(m1, 'sg-a').ingress[0]?.id, group(m1, 'sg-b').ingress[0]?.id, 'same rule in another group → another id');
  t.not(ruleId('sg-a', { direction: INGRESS, protocol: PROTO_TCP, fromPort: 22, toPort: 22, peer: { kind: 'cidr', cidr: '10.0.0.0/8', family: 4 } }),
    ruleId('sg-a', { direction: EGRESS, protocol: PROTO_TCP, fromPort: 22, toPort: 22, peer: { kind: 'cidr', cidr: '10.0.0.0/8', family: 4 } }), 'direction counts');
});

t.test('an explicit rule id is kept', async (t) => {
  const m = loadConfigText('securityGroups:\n  - id: sg-a\n    ingress:\n      - { id: sgr-0123456789abcdef0, protocol: tcp, ports: 22, cidr: 10.0.0.0/8 }\n', 'x.yaml');
  t.equal(group(m, 'sg-a').ingress[0]?.id, 'sgr-0123456789abcdef0');
});

t.test('quotas: configurable, per family, group refs count in both', async (t) => {
  const rules = (n: number, peer: (i: number) => string): string => Array.from({ length: n }, (_, i) => `      - { protocol: tcp, ports: ${i + 1}, ${peer(i)} }\n`).join('');
  // 60 IPv4 + 60 IPv6 rules in one direction is within AWS's quota (counted per family).
  const ok = loadConfigText(`securityGroups:\n  - id: sg-a\n    ingress:\n${rules(60, () => 'cidr: 10.0.0.0/8')}${rules(60, () => 'cidr: "::/0"')}`, 'x.yaml');
  t.equal(group(ok, 'sg-a').ingress.length, 120);
  t.throws(() => loadConfigText(`securityGroups:\n  - id: sg-a\n    ingress:\n${rules(59, () => 'cidr: "::/0"')}${rules(2, () => 'groups: [self]').replace(/ports: (\d+)/g, 'ports: 1$1')}`, 'x.yaml'),
    { code: 'RulesPerSecurityGroupLimitExceeded' }, 'group references count toward IPv6 too');
  const q = loadConfigText(`quotas: { rulesPerGroup: 100, groupsPerInstance: 10 }\nsecurityGroups:\n  - id: sg-a\n    ingress:\n${rules(100, () => 'cidr: 10.0.0.0/8')}`, 'x.yaml');
  t.same([q.quotas.rulesPerGroupPerDirection, q.quotas.groupsPerInstance], [100, 10]);
});

t.test('default: true gives the rules of a VPC default group', async (t) => {
  const m = loadConfigText('securityGroups:\n  - default: true\n    ingress: []\n    egress:\n      - { protocol: tcp, ports: 443, cidr: 0.0.0.0/0 }\n', 'x.yaml');
  const d = m.groups[0];
  t.equal(d?.isDefault, true);
  t.same(d?.ingress, []);
  t.same(d?.egress.map((r) => [r.protocol, r.fromPort, peerText(r)]), [[PROTO_TCP, 443, '0.0.0.0/0']]);
});

t.test('modelToConfigObject round trip: load → object → YAML → load is the same model apart from pos', async (t) => {
  const strip = (v: unknown): unknown => JSON.parse(JSON.stringify(v, (k, x: unknown) => (k === 'pos' ? undefined : x)));
  const sources = [
    readFileSync(FIXTURES + 'rich.yaml', 'utf8'),
    readFileSync(FIXTURES + 'rich.json', 'utf8'),
    '',
    'quotas: { groupsPerInstance: 8 }\nsecurityGroups:\n  - default: true\n    tags: { a: b }\n    ingress: [{ id: sgr-0123456789abcdef0, protocol: icmpv6, cidr: "::/0", description: pings }]\n  - { id: sg-x, name: X y, egress: [] }\n',
  ];
  for (const src of sources) {
    const m1 = loadConfigText(src, 'one.yaml');
    const obj = modelToConfigObject(m1);
    const yaml = stringify(obj);
    const m2 = loadConfigText(yaml, 'two.yaml');
    t.same(strip(m2), strip(m1), yaml.slice(0, 80));
    t.same(strip(loadConfigText(JSON.stringify(obj), 'two.json')), strip(m1), 'as JSON too');
  }
});
