// Network ACLs and subnets in the config (issue 14, SPEC §7): the model they load into, the
// defaults (each VPC's default NACL allows all; a defined NACL starts with only `*`), AWS error
// codes at line:col, the per-direction quota, and the round trip through modelToConfigObject.
import t from 'tap';
import { loadConfigText, modelToConfigObject } from '../../src/config/load.js';
import { at, errorsOf } from './helpers.js';

const BASE = `networkAcls:
  - id: acl-app
    entries:
      - { ruleNumber: 100, egress: false, protocol: tcp, ports: 443, cidr: 0.0.0.0/0, action: allow }
      - { ruleNumber: 110, egress: true, protocol: tcp, ports: 1024-65535, cidr: 0.0.0.0/0, action: allow }
      - { ruleNumber: 90, egress: false, protocol: all, cidr: 127.0.0.5/32, action: deny }
      - { ruleNumber: 120, egress: false, protocol: icmp, icmpType: 8, icmpCode: -1, cidr: "2001:db8::1/48", action: ALLOW }
subnets:
  - { id: subnet-app, cidr: 10.0.1.0/24, networkAcl: acl-app }
  - { id: subnet-web }
instances:
  - { name: web, address: 127.0.0.10, subnet: subnet-app }
  - { name: lb, address: 127.0.0.11 }
`;

t.test('loads subnets, NACLs (sorted, canonical) and instance subnets', async (t) => {
  const m = loadConfigText(BASE, 'x.yaml');
  t.same(m.subnets?.map((s) => [s.id, s.vpcId, s.cidr, s.networkAclId]), [
    ['subnet-app', 'vpc-local', '10.0.1.0/24', 'acl-app'],
    ['subnet-web', 'vpc-local', null, 'acl-default-vpc-local'],
  ]);
  const acl = m.networkAcls?.find((a) => a.id === 'acl-app');
  t.same(acl?.entries.map((e) => [e.egress, e.ruleNumber, e.protocol, e.fromPort, e.toPort, e.cidr, e.allow]), [
    [false, 90, -1, -1, -1, '127.0.0.5/32', false],
    [false, 100, 6, 443, 443, '0.0.0.0/0', true],
    [false, 120, 1, 8, -1, '2001:db8::/48', true],
    [true, 110, 6, 1024, 65535, '0.0.0.0/0', true],
  ]);
  const def = m.networkAcls?.find((a) => a.id === 'acl-default-vpc-local');
  t.ok(def?.isDefault);
  t.same(def?.entries.map((e) => [e.egress, e.ruleNumber, e.cidr, e.allow]), [
    [false, 100, '0.0.0.0/0', true], [false, 101, '::/0', true], [true, 100, '0.0.0.0/0', true], [true, 101, '::/0', true],
  ]);
  t.equal(m.instances[0]?.subnetId, 'subnet-app');
  t.notOk(m.instances[1]?.subnetId, 'no subnet: the implicit one');
  // Round trip: the config object loads into the same NACLs and subnets.
  const again = loadConfigText(JSON.stringify(modelToConfigObject(m)), 'y.json');
  const strip = (x: unknown): string => JSON.stringify(x, (k, v) => (k === 'pos' ? undefined : v));
  t.equal(strip(again.networkAcls), strip(m.networkAcls));
  t.equal(strip(again.subnets), strip(m.subnets));
  t.equal(again.instances[0]?.subnetId, 'subnet-app');
});

t.test('a config without subnets or NACLs: only the default NACL, nothing else changes', async (t) => {
  const m = loadConfigText('instances:\n  - { name: a, address: 127.0.0.2 }\n', 'x.yaml');
  t.same(m.subnets, []);
  t.same(m.networkAcls?.map((a) => a.id), ['acl-default-vpc-local']);
  const o = modelToConfigObject(m) as Record<string, unknown>;
  t.notOk('networkAcls' in o);
  t.notOk('subnets' in o);
});

t.test('a changed default NACL is kept (default: true), as state files need', async (t) => {
  const text = 'networkAcls:\n  - default: true\n    entries:\n      - { ruleNumber: 5, egress: true, protocol: udp, ports: 53, cidr: 0.0.0.0/0, action: deny }\n';
  const m = loadConfigText(text, 'x.yaml');
  const def = m.networkAcls?.find((a) => a.isDefault);
  t.same(def?.entries.map((e) => [e.egress, e.ruleNumber, e.allow]), [[true, 5, false]]);
  const again = loadConfigText(JSON.stringify(modelToConfigObject(m)), 'y.json');
  t.same(again.networkAcls?.find((a) => a.isDefault)?.entries.map((e) => e.ruleNumber), [5]);
});

interface Case { name: string; text: string; code: string; path: string; where: string | [string, string] }
const ACL = (entries: string, extra = ''): string => `${extra}networkAcls:\n  - id: acl-x\n    entries:\n${entries}`;
const cases: Case[] = [
  { name: 'duplicate rule number in one direction', code: 'NetworkAclEntryAlreadyExists', path: 'networkAcls[0].entries[1].ruleNumber',
    text: ACL('      - { ruleNumber: 100, egress: true, protocol: all, cidr: 0.0.0.0/0, action: allow }\n      - { ruleNumber: 100, egress: true, protocol: tcp, ports: 22, cidr: 0.0.0.0/0, action: deny }\n'),
    where: ['100', '- { ruleNumber: 100, egress: true, protocol: tcp'] },
  { name: 'rule number out of range', code: 'InvalidParameterValue', path: 'networkAcls[0].entries[0].ruleNumber',
    text: ACL('      - { ruleNumber: 32767, egress: true, protocol: all, cidr: 0.0.0.0/0, action: allow }\n'), where: '32767' },
  { name: 'bad action', code: 'InvalidParameterValue', path: 'networkAcls[0].entries[0].action',
    text: ACL('      - { ruleNumber: 1, egress: true, protocol: all, cidr: 0.0.0.0/0, action: permit }\n'), where: 'permit' },
  { name: 'missing egress', code: 'MissingParameter', path: 'networkAcls[0].entries[0].egress',
    text: ACL('      - { ruleNumber: 1, protocol: all, cidr: 0.0.0.0/0, action: allow }\n'), where: '{ ruleNumber: 1' },
  { name: 'bad CIDR', code: 'InvalidParameterValue', path: 'networkAcls[0].entries[0].cidr',
    text: ACL('      - { ruleNumber: 1, egress: false, protocol: all, cidr: 10.0.0.300/8, action: allow }\n'), where: '10.0.0.300/8' },
  { name: 'tcp without ports', code: 'MissingParameter', path: 'networkAcls[0].entries[0].ports',
    text: ACL('      - { ruleNumber: 1, egress: false, protocol: tcp, cidr: 0.0.0.0/0, action: allow }\n'), where: '{ ruleNumber: 1' },
  { name: 'bad NACL id', code: 'InvalidParameterValue', path: 'networkAcls[0].id', text: 'networkAcls:\n  - id: nacl-x\n', where: 'nacl-x' },
  { name: 'unknown subnet NACL', code: 'InvalidNetworkAclID.NotFound', path: 'subnets[0].networkAcl',
    text: 'subnets:\n  - { id: subnet-a, networkAcl: acl-nope }\n', where: 'acl-nope' },
  { name: 'unknown instance subnet', code: 'InvalidSubnetID.NotFound', path: 'instances[0].subnet',
    text: 'instances:\n  - { name: a, address: 127.0.0.2, subnet: subnet-nope }\n', where: 'subnet-nope' },
  { name: 'subnet CIDR overlap', code: 'InvalidSubnet.Conflict', path: 'subnets[1].cidr',
    text: 'subnets:\n  - { id: subnet-a, cidr: 10.0.0.0/16 }\n  - { id: subnet-b, cidr: 10.0.1.0/24 }\n', where: '10.0.1.0/24' },
  { name: 'subnet CIDR size', code: 'InvalidSubnet.Range', path: 'subnets[0].cidr', text: 'subnets:\n  - { id: subnet-a, cidr: 10.0.0.0/8 }\n', where: '10.0.0.0/8' },
  { name: 'unknown entry key', code: 'UnknownField', path: 'networkAcls[0].entries[0].rule',
    text: ACL('      - { rule: 1, ruleNumber: 1, egress: false, protocol: all, cidr: 0.0.0.0/0, action: allow }\n'), where: 'rule:' },
];

for (const c of cases) {
  t.test(`${c.name} → ${c.code} at line:col`, async (t) => {
    const errs = errorsOf(c.text);
    const e = errs.find((x) => x.code === c.code);
    t.ok(e, `${c.code} among ${errs.map((x) => `${x.code} ${x.path}`).join('; ') || 'no errors'}`);
    t.equal(e?.path, c.path);
    const want = typeof c.where === 'string' ? at(c.text, c.where) : at(c.text, c.where[0], c.where[1]);
    t.same({ line: e?.line, column: e?.column }, want);
  });
}

t.test('quota: 20 entries per direction and family, configurable to 40', async (t) => {
  const entries = (n: number, egress: boolean): string => Array.from({ length: n }, (_, i) =>
    `      - { ruleNumber: ${i + 1}, egress: ${egress}, protocol: tcp, ports: ${i + 1}, cidr: 10.0.0.0/8, action: allow }\n`).join('');
  const over = errorsOf(ACL(entries(21, true) + entries(20, false)));
  t.same(over.map((e) => [e.code, e.path]), [['NetworkAclEntryLimitExceeded', 'networkAcls[0].entries']]);
  t.match(over[0]?.message, /21 IPv4 egress entries, over the quota of 20/);
  t.same(errorsOf(ACL(entries(21, true), 'quotas: { networkAclEntries: 40 }\n')), []);
  t.same(errorsOf('quotas: { networkAclEntries: 41 }\n').map((e) => e.code), ['InvalidParameterValue']);
});
