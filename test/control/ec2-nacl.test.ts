// The EC2 Query API for network ACLs (issue 14): CreateNetworkAcl, Create/Replace/DeleteNetworkAclEntry,
// DescribeNetworkAcls (ids, filters, the * entries), ReplaceNetworkAclAssociation, DeleteNetworkAcl;
// AWS error codes; durable through the state file (restart merges it over the config).
import t from 'tap';
import { join } from 'node:path';
import { loadConfigText } from '../../src/config/load.js';
import { loadState } from '../../src/control/state.js';
import { all, errorCode, one, setup } from './ec2-helpers.js';

const YAML = `
networkAcls:
  - id: acl-app
    entries:
      - { ruleNumber: 100, egress: false, protocol: tcp, ports: 443, cidr: 0.0.0.0/0, action: allow }
subnets:
  - { id: subnet-app, networkAcl: acl-app }
  - { id: subnet-db }
instances:
  - { name: web, address: 127.0.0.10, subnet: subnet-app }
`;

t.test('entries: create, duplicate, replace, delete; Describe shows them and the * entries', async (t) => {
  const dir = t.testdir({});
  const statePath = join(dir, 'state.json');
  const { host, call } = setup(statePath, YAML);
  let r = await call({ Action: 'CreateNetworkAclEntry', NetworkAclId: 'acl-app', RuleNumber: 110, Protocol: '6', RuleAction: 'allow', Egress: 'true', CidrBlock: '0.0.0.0/0', 'PortRange.From': 1024, 'PortRange.To': 65535 });
  t.equal(r.status, 200, r.body);
  t.equal(one(r.body, 'return'), 'true');
  const acl = () => host.model.networkAcls!.find((a) => a.id === 'acl-app')!;
  t.same(acl().entries.map((e) => [e.egress, e.ruleNumber, e.fromPort, e.toPort]), [[false, 100, 443, 443], [true, 110, 1024, 65535]]);
  r = await call({ Action: 'CreateNetworkAclEntry', NetworkAclId: 'acl-app', RuleNumber: 110, Protocol: 'udp', RuleAction: 'deny', Egress: 'true', CidrBlock: '10.0.0.0/8', 'PortRange.From': 1, 'PortRange.To': 2 });
  t.equal(r.status, 400);
  t.equal(errorCode(r.body), 'NetworkAclEntryAlreadyExists');
  r = await call({ Action: 'ReplaceNetworkAclEntry', NetworkAclId: 'acl-app', RuleNumber: 110, Protocol: '-1', RuleAction: 'deny', Egress: 'true', Ipv6CidrBlock: '2001:db8::5/32' });
  t.equal(r.status, 200, r.body);
  t.match(acl().entries[1], { ruleNumber: 110, protocol: -1, allow: false, cidr: '2001:db8::/32', family: 6 });
  r = await call({ Action: 'ReplaceNetworkAclEntry', NetworkAclId: 'acl-app', RuleNumber: 111, Protocol: '-1', RuleAction: 'deny', Egress: 'true', CidrBlock: '0.0.0.0/0' });
  t.equal(errorCode(r.body), 'InvalidNetworkAclEntry.NotFound');
  r = await call({ Action: 'CreateNetworkAclEntry', NetworkAclId: 'acl-app', RuleNumber: 40000, Protocol: '-1', RuleAction: 'deny', Egress: 'false', CidrBlock: '0.0.0.0/0' });
  t.equal(errorCode(r.body), 'InvalidParameterValue', 'rule number above 32766');
  r = await call({ Action: 'CreateNetworkAclEntry', NetworkAclId: 'acl-nope', RuleNumber: 1, Protocol: '-1', RuleAction: 'deny', Egress: 'false', CidrBlock: '0.0.0.0/0' });
  t.equal(errorCode(r.body), 'InvalidNetworkAclID.NotFound');
  r = await call({ Action: 'CreateNetworkAclEntry', NetworkAclId: 'acl-app', RuleNumber: 1, Protocol: 'tcp', RuleAction: 'allow', Egress: 'false', CidrBlock: '0.0.0.0/0' });
  t.equal(errorCode(r.body), 'InvalidParameterValue', 'tcp without PortRange');

  const d = await call({ Action: 'DescribeNetworkAcls', 'NetworkAclId.1': 'acl-app' });
  t.equal(d.status, 200, d.body);
  t.same(all(d.body, 'networkAclId').filter((x, i, a) => a.indexOf(x) === i), ['acl-app']);
  t.same(all(d.body, 'ruleNumber'), ['110', '32767', '32767', '100', '32767', '32767'], 'egress first, each direction ending with * (v4, v6)');
  t.match(d.body, /<associationSet><item><networkAclAssociationId>aclassoc-[0-9a-f]{17}<\/networkAclAssociationId><networkAclId>acl-app<\/networkAclId><subnetId>subnet-app<\/subnetId>/);
  t.match(d.body, /<portRange><from>443<\/from><to>443<\/to><\/portRange>/);

  r = await call({ Action: 'DeleteNetworkAclEntry', NetworkAclId: 'acl-app', RuleNumber: 110, Egress: 'true' });
  t.equal(r.status, 200, r.body);
  t.equal(acl().entries.length, 1);
  r = await call({ Action: 'DeleteNetworkAclEntry', NetworkAclId: 'acl-app', RuleNumber: 110, Egress: 'true' });
  t.equal(errorCode(r.body), 'InvalidNetworkAclEntry.NotFound');

  // Durable: the state file over the config file gives the same NACL.
  const base = loadConfigText(YAML, 'x.yaml');
  const restored = loadState(statePath, base)!;
  t.same(restored.networkAcls!.find((a) => a.id === 'acl-app')!.entries.map((e) => e.ruleNumber), [100]);
});

t.test('filters and the default NACL', async (t) => {
  const { call } = setup(null, YAML);
  let d = await call({ Action: 'DescribeNetworkAcls', 'Filter.1.Name': 'default', 'Filter.1.Value.1': 'true' });
  t.same(all(d.body, 'networkAclId').filter((x, i, a) => a.indexOf(x) === i), ['acl-default-vpc-local']);
  t.match(d.body, /<subnetId>subnet-db<\/subnetId>/, 'subnet-db is associated with the default NACL');
  d = await call({ Action: 'DescribeNetworkAcls', 'Filter.1.Name': 'association.subnet-id', 'Filter.1.Value.1': 'subnet-app' });
  t.same(all(d.body, 'networkAclId').filter((x, i, a) => a.indexOf(x) === i), ['acl-app']);
  d = await call({ Action: 'DescribeNetworkAcls', 'Filter.1.Name': 'entry.port-range.from', 'Filter.1.Value.1': '44*' });
  t.same(all(d.body, 'networkAclId').filter((x, i, a) => a.indexOf(x) === i), ['acl-app']);
  d = await call({ Action: 'DescribeNetworkAcls', 'Filter.1.Name': 'bogus', 'Filter.1.Value.1': 'x' });
  t.equal(errorCode(d.body), 'InvalidParameterValue');
  d = await call({ Action: 'DescribeNetworkAcls', 'NetworkAclId.1': 'acl-nope' });
  t.equal(errorCode(d.body), 'InvalidNetworkAclID.NotFound');
  const r = await call({ Action: 'DeleteNetworkAcl', NetworkAclId: 'acl-default-vpc-local' });
  t.equal(errorCode(r.body), 'InvalidParameterValue', 'the default NACL cannot be deleted');
});

t.test('create, associate, delete a NACL; DependencyViolation while associated', async (t) => {
  const dir = t.testdir({});
  const statePath = join(dir, 'state.json');
  const { host, call } = setup(statePath, YAML);
  const c = await call({ Action: 'CreateNetworkAcl', VpcId: 'vpc-local' });
  t.equal(c.status, 200, c.body);
  const id = one(c.body, 'networkAclId')!;
  t.match(id, /^acl-[0-9a-f]{17}$/);
  t.same(all(c.body, 'ruleNumber'), ['32767', '32767', '32767', '32767'], 'a new NACL has only the * entries');
  t.equal(one(c.body, 'default'), 'false');
  const d = await call({ Action: 'DescribeNetworkAcls', 'Filter.1.Name': 'association.subnet-id', 'Filter.1.Value.1': 'subnet-db' });
  const assoc = one(d.body, 'networkAclAssociationId')!;
  const a = await call({ Action: 'ReplaceNetworkAclAssociation', AssociationId: assoc, NetworkAclId: id });
  t.equal(a.status, 200, a.body);
  t.match(one(a.body, 'newAssociationId'), /^aclassoc-/);
  t.not(one(a.body, 'newAssociationId'), assoc);
  t.equal(host.model.subnets!.find((s) => s.id === 'subnet-db')!.networkAclId, id);
  t.equal(errorCode((await call({ Action: 'ReplaceNetworkAclAssociation', AssociationId: assoc, NetworkAclId: id })).body), 'InvalidAssociationID.NotFound', 'the old association id is gone');
  const busy = await call({ Action: 'DeleteNetworkAcl', NetworkAclId: id });
  t.equal(errorCode(busy.body), 'DependencyViolation');
  // Restart: the association survives.
  t.equal(loadState(statePath, loadConfigText(YAML, 'x.yaml'))!.subnets!.find((s) => s.id === 'subnet-db')!.networkAclId, id);
  // Move back and delete.
  const d2 = await call({ Action: 'DescribeNetworkAcls', 'Filter.1.Name': 'association.subnet-id', 'Filter.1.Value.1': 'subnet-db' });
  await call({ Action: 'ReplaceNetworkAclAssociation', AssociationId: one(d2.body, 'networkAclAssociationId')!, NetworkAclId: 'acl-default-vpc-local' });
  const del = await call({ Action: 'DeleteNetworkAcl', NetworkAclId: id });
  t.equal(del.status, 200, del.body);
  t.notOk(host.model.networkAcls!.some((x) => x.id === id));
  // acl-app is in the config file: deleted through the API, it stays deleted after a restart.
  await call({ Action: 'ReplaceNetworkAclAssociation', AssociationId: one((await call({ Action: 'DescribeNetworkAcls', 'NetworkAclId.1': 'acl-app' })).body, 'networkAclAssociationId')!, NetworkAclId: 'acl-default-vpc-local' });
  t.equal((await call({ Action: 'DeleteNetworkAcl', NetworkAclId: 'acl-app' })).status, 200);
  t.notOk(loadState(statePath, loadConfigText(YAML, 'x.yaml'))!.networkAcls!.some((x) => x.id === 'acl-app'));
});

t.test('unknown parameters are rejected as EC2 does; DryRun changes nothing', async (t) => {
  const { host, call } = setup(null, YAML);
  const r = await call({ Action: 'DeleteNetworkAcl', NetworkAclId: 'acl-app', Bogus: 1 });
  t.equal(errorCode(r.body), 'UnknownParameter');
  const dry = await call({ Action: 'CreateNetworkAclEntry', NetworkAclId: 'acl-app', RuleNumber: 5, Protocol: '-1', RuleAction: 'deny', Egress: 'false', CidrBlock: '0.0.0.0/0', DryRun: 'true' });
  t.equal(errorCode(dry.body), 'DryRunOperation');
  t.equal(host.model.networkAcls!.find((a) => a.id === 'acl-app')!.entries.length, 1);
});
