// The EC2 Query API through Ec2Service.handle with a fake host (no sockets): operations,
// responses, every error code, DryRun, and "a rejected request changes nothing".
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { all, errorCode, one, setup } from './ec2-helpers.js';

const perm = (p: Record<string, string | number>): Record<string, string | number> =>
  Object.fromEntries(Object.entries(p).map(([k, v]) => [`IpPermissions.1.${k}`, v]));

t.test('CreateSecurityGroup then authorize v4, v6, group reference and prefix list', async (t) => {
  const { host, call } = setup();
  const c = await call({ Action: 'CreateSecurityGroup', GroupName: 'api', GroupDescription: 'made by api',
    'TagSpecification.1.ResourceType': 'security-group', 'TagSpecification.1.Tag.1.Key': 'env', 'TagSpecification.1.Tag.1.Value': 'dev' });
  t.equal(c.status, 200, c.body);
  t.match(c.body, /^<\?xml[^>]*>\n<CreateSecurityGroupResponse xmlns="http:\/\/ec2.amazonaws.com\/doc\/2016-11-15\/"><requestId>/);
  const id = one(c.body, 'groupId') ?? '';
  t.match(id, /^sg-[0-9a-f]{17}$/);
  const g = host.model.groups.find((x) => x.id === id);
  t.equal(g?.name, 'api');
  t.same(g?.tags, { env: 'dev' });
  t.equal(g?.egress.length, 2, 'a new group gets the default egress');

  const a = await call({ Action: 'AuthorizeSecurityGroupIngress', GroupId: id, ...perm({
    IpProtocol: 'tcp', FromPort: 443, ToPort: 443,
    'IpRanges.1.CidrIp': '10.1.2.3/8', 'IpRanges.1.Description': 'corp',
    'Ipv6Ranges.1.CidrIpv6': '2001:db8::1/64',
    'Groups.1.GroupId': 'sg-web', 'PrefixListIds.1.PrefixListId': 'pl-office' }) });
  t.equal(a.status, 200, a.body);
  t.equal(all(a.body, 'securityGroupRuleId').length, 4, 'each source is its own rule');
  t.same(all(a.body, 'cidrIpv4'), ['10.0.0.0/8'], 'CIDR normalised as AWS');
  t.same(all(a.body, 'cidrIpv6'), ['2001:db8::/64']);
  t.same(all(a.body, 'prefixListId'), ['pl-office']);
  t.match(one(a.body, 'referencedGroupInfo'), /<groupId>sg-web<\/groupId>/);
  const rules = host.model.groups.find((x) => x.id === id)?.ingress ?? [];
  t.same(rules.map((r) => r.peer.kind), ['cidr', 'cidr', 'prefixList', 'group']);
  t.same(all(a.body, 'securityGroupRuleId'), rules.map((r) => r.id), 'response ids are the live ids');
  t.equal(rules[0]?.description, 'corp');

  const old = await call({ Action: 'AuthorizeSecurityGroupEgress', GroupId: id, IpProtocol: 'udp', FromPort: 53, ToPort: 53, CidrIp: '192.0.2.0/24' });
  t.equal(old.status, 200, 'old flat form');
  t.ok(host.model.groups.find((x) => x.id === id)?.egress.some((r) => r.protocol === 17 && r.fromPort === 53));

  const icmp = await call({ Action: 'AuthorizeSecurityGroupIngress', GroupName: 'api', ...perm({ IpProtocol: 'icmp', FromPort: 8, ToPort: -1, 'IpRanges.1.CidrIp': '0.0.0.0/0' }) });
  t.equal(icmp.status, 200, 'icmp type/code, group by name');
  const all1 = await call({ Action: 'AuthorizeSecurityGroupIngress', GroupId: id, ...perm({ IpProtocol: '-1', 'IpRanges.1.CidrIp': '127.0.0.0/8' }) });
  t.equal(all1.status, 200);
  t.equal(one(all1.body, 'fromPort'), '-1', 'SecurityGroupRule shows -1 ports for all protocols');
});

t.test('DescribeSecurityGroups: ids, names, filters, wildcards, paging', async (t) => {
  const { call } = setup();
  const d = await call({ Action: 'DescribeSecurityGroups' });
  t.equal(d.status, 200);
  t.same(all(d.body, 'groupName').filter((n) => n !== 'web' || true).length >= 4, true);
  const web = await call({ Action: 'DescribeSecurityGroups', 'GroupId.1': 'sg-web' });
  const info = one(web.body, 'securityGroupInfo') ?? '';
  t.match(info, /<groupDescription>public web tier<\/groupDescription>/);
  t.match(info, /<ipPermissions><item><ipProtocol>tcp<\/ipProtocol><fromPort>8080<\/fromPort><toPort>8080<\/toPort>/);
  t.match(info, /<ipPermissionsEgress><item><ipProtocol>-1<\/ipProtocol><groups><\/groups>/, '-1 rules have no ports in DescribeSecurityGroups');
  t.match(info, /<tagSet><item><key>team<\/key><value>blue<\/value><\/item><\/tagSet>/);

  const byName = await call({ Action: 'DescribeSecurityGroups', 'GroupName.1': 'DB' });
  t.same(all(byName.body, 'groupId'), ['sg-db', 'sg-web'], 'names are case-insensitive; the referenced group appears in groups');
  const ids = async (p: Record<string, string | number>): Promise<string[]> => {
    const r = await call({ Action: 'DescribeSecurityGroups', ...p });
    t.equal(r.status, 200, r.body);
    return [...(r.body.matchAll(/<item><ownerId>\d+<\/ownerId><groupId>([^<]+)<\/groupId>/g))].map((m) => m[1] ?? '');
  };
  t.same(await ids({ 'Filter.1.Name': 'group-name', 'Filter.1.Value.1': 'w*' }), ['sg-web']);
  t.same(await ids({ 'Filter.1.Name': 'ip-permission.group-id', 'Filter.1.Value.1': 'sg-web' }), ['sg-db']);
  t.same(await ids({ 'Filter.1.Name': 'ip-permission.from-port', 'Filter.1.Value.1': '8080', 'Filter.2.Name': 'ip-permission.cidr', 'Filter.2.Value.1': '0.0.0.0/0' }), ['sg-web']);
  t.same(await ids({ 'Filter.1.Name': 'ip-permission.protocol', 'Filter.1.Value.1': '6' }), ['sg-web', 'sg-db']);
  t.same(await ids({ 'Filter.1.Name': 'egress.ip-permission.ipv6-cidr', 'Filter.1.Value.1': '::/0', 'Filter.2.Name': 'description', 'Filter.2.Value.1': '*base' }), ['sg-db']);
  t.same(await ids({ 'Filter.1.Name': 'tag:team', 'Filter.1.Value.1': 'blue' }), ['sg-web']);
  t.same(await ids({ 'Filter.1.Name': 'vpc-id', 'Filter.1.Value.1': 'vpc-nope' }), []);
  const p1 = await call({ Action: 'DescribeSecurityGroups', MaxResults: 5, 'Filter.1.Name': 'vpc-id', 'Filter.1.Value.1': 'vpc-local' });
  t.equal(all(p1.body, 'groupDescription').length, 4, 'default + 3 groups fit one page');
  t.notOk(one(p1.body, 'nextToken'));
  const big = setup();
  for (let i = 0; i < 6; i++) await big.call({ Action: 'CreateSecurityGroup', GroupName: `g${i}`, GroupDescription: 'x' });
  const a = await big.call({ Action: 'DescribeSecurityGroups', MaxResults: 5 });
  const token = one(a.body, 'nextToken');
  t.ok(token);
  const b = await big.call({ Action: 'DescribeSecurityGroups', MaxResults: 5, NextToken: token ?? '' });
  t.equal(all(a.body, 'groupDescription').length + all(b.body, 'groupDescription').length, 10);
  t.notOk(one(b.body, 'nextToken'));
  t.equal(errorCode((await big.call({ Action: 'DescribeSecurityGroups', NextToken: 'garbage' })).body), 'InvalidPaginationToken');
});

t.test('DescribeSecurityGroupRules, DescribeInstances, tags', async (t) => {
  const { host, call } = setup();
  const r = await call({ Action: 'DescribeSecurityGroupRules', 'Filter.1.Name': 'group-id', 'Filter.1.Value.1': 'sg-db' });
  const db = host.model.groups.find((g) => g.id === 'sg-db');
  t.same(all(r.body, 'securityGroupRuleId'), [...(db?.ingress ?? []), ...(db?.egress ?? [])].map((x) => x.id));
  const ruleId = db?.ingress[0]?.id ?? '';
  const tag = await call({ Action: 'CreateTags', 'ResourceId.1': ruleId, 'ResourceId.2': 'sg-db', 'Tag.1.Key': 'owner', 'Tag.1.Value': 'ops' });
  t.equal(tag.status, 200, tag.body);
  t.same(host.model.groups.find((g) => g.id === 'sg-db')?.tags, { owner: 'ops' });
  const byTag = await call({ Action: 'DescribeSecurityGroupRules', 'Filter.1.Name': 'tag:owner', 'Filter.1.Value.1': 'ops' });
  t.same(all(byTag.body, 'securityGroupRuleId'), [ruleId]);
  const byId = await call({ Action: 'DescribeSecurityGroupRules', 'SecurityGroupRuleId.1': ruleId });
  t.match(byId.body, /<referencedGroupInfo><groupId>sg-web<\/groupId>/);
  const tags = await call({ Action: 'DescribeTags', 'Filter.1.Name': 'key', 'Filter.1.Value.1': 'owner' });
  t.same(all(tags.body, 'resourceType').sort(), ['security-group', 'security-group-rule']);
  const del = await call({ Action: 'DeleteTags', 'ResourceId.1': ruleId, 'Tag.1.Key': 'owner' });
  t.equal(del.status, 200);
  t.same(all((await call({ Action: 'DescribeTags' })).body, 'resourceId').sort(), ['sg-db', 'sg-web']);

  const inst = await call({ Action: 'DescribeInstances' });
  t.same(all(inst.body, 'privateIpAddress'), ['127.0.0.10', '127.0.0.11']);
  t.match(inst.body, /<instanceState><code>16<\/code><name>running<\/name><\/instanceState>/);
  const mod = await call({ Action: 'ModifyInstanceAttribute', InstanceId: host.model.instances[0]?.id ?? '', 'GroupId.1': 'sg-web', 'GroupId.2': 'sg-spare' });
  t.equal(mod.status, 200, mod.body);
  t.same(host.model.instances[0]?.groupIds, ['sg-web', 'sg-spare']);
  const one1 = await call({ Action: 'DescribeInstances', 'Filter.1.Name': 'instance.group-id', 'Filter.1.Value.1': 'sg-spare' });
  t.same(all(one1.body, 'privateIpAddress'), ['127.0.0.10']);
});

t.test('revoke by permission (CIDR normalised) and by rule id; modify; descriptions', async (t) => {
  const { host, call } = setup();
  const web = (): NonNullable<ReturnType<typeof host.model.groups.find>> => host.model.groups.find((g) => g.id === 'sg-web') ?? t.fail('no sg-web') as never;
  await call({ Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-web', ...perm({ IpProtocol: 'tcp', FromPort: 22, ToPort: 22, 'IpRanges.1.CidrIp': '10.0.0.0/8', 'IpRanges.2.CidrIp': '192.168.0.0/16' }) });
  t.equal(web().ingress.length, 3);
  const r1 = await call({ Action: 'RevokeSecurityGroupIngress', GroupId: 'sg-web', ...perm({ IpProtocol: 'tcp', FromPort: 22, ToPort: 22, 'IpRanges.1.CidrIp': '10.20.30.40/8' }) });
  t.equal(r1.status, 200, r1.body);
  t.same(all(r1.body, 'cidrIpv4'), ['10.0.0.0/8']);
  t.equal(web().ingress.length, 2);
  const id = web().ingress[1]?.id ?? '';
  const r2 = await call({ Action: 'RevokeSecurityGroupIngress', GroupId: 'sg-web', 'SecurityGroupRuleId.1': id });
  t.equal(r2.status, 200);
  t.same(all(r2.body, 'securityGroupRuleId'), [id]);
  t.equal(web().ingress.length, 1);

  const keep = web().ingress[0]?.id ?? '';
  const m = await call({ Action: 'ModifySecurityGroupRules', GroupId: 'sg-web', 'SecurityGroupRule.1.SecurityGroupRuleId': keep,
    'SecurityGroupRule.1.SecurityGroupRule.IpProtocol': 'tcp', 'SecurityGroupRule.1.SecurityGroupRule.FromPort': 8000,
    'SecurityGroupRule.1.SecurityGroupRule.ToPort': 8100, 'SecurityGroupRule.1.SecurityGroupRule.CidrIpv4': '203.0.113.0/24' });
  t.equal(m.status, 200, m.body);
  t.same([web().ingress[0]?.id, web().ingress[0]?.fromPort, web().ingress[0]?.toPort], [keep, 8000, 8100], 'modify keeps the rule id');
  const bad = await call({ Action: 'ModifySecurityGroupRules', GroupId: 'sg-web', 'SecurityGroupRule.1.SecurityGroupRuleId': keep,
    'SecurityGroupRule.1.SecurityGroupRule.ReferencedGroupId': 'sg-db' });
  t.equal(errorCode(bad.body), 'InvalidParameterValue', 'cannot change the source type');

  const u = await call({ Action: 'UpdateSecurityGroupRuleDescriptionsIngress', GroupId: 'sg-web', ...perm({ IpProtocol: 'tcp', FromPort: 8000, ToPort: 8100, 'IpRanges.1.CidrIp': '203.0.113.0/24', 'IpRanges.1.Description': 'partners' }) });
  t.equal(u.status, 200, u.body);
  t.equal(web().ingress[0]?.description, 'partners');
  const u2 = await call({ Action: 'UpdateSecurityGroupRuleDescriptionsIngress', GroupId: 'sg-web', 'SecurityGroupRuleDescription.1.SecurityGroupRuleId': keep, 'SecurityGroupRuleDescription.1.Description': 'p2' });
  t.equal(u2.status, 200);
  t.equal(web().ingress[0]?.description, 'p2');

  const eg = web().egress.find((r) => r.peer.kind === 'cidr' && r.peer.family === 6);
  const r3 = await call({ Action: 'RevokeSecurityGroupEgress', GroupId: 'sg-web', ...perm({ IpProtocol: '-1', 'Ipv6Ranges.1.CidrIpv6': '::/0' }) });
  t.equal(r3.status, 200, r3.body);
  t.notOk(web().egress.some((r) => r.id === eg?.id));

  const c = await call({ Action: 'CreateSecurityGroup', GroupName: 'gone', GroupDescription: 'x' });
  const d = await call({ Action: 'DeleteSecurityGroup', GroupId: one(c.body, 'groupId') ?? '' });
  t.equal(d.status, 200);
  t.match(d.body, /<return>true<\/return>/);
  const dn = await call({ Action: 'DeleteSecurityGroup', GroupName: 'spare' });
  t.equal(dn.status, 200, 'delete by name');
});

t.test('every error code, and rejected requests change nothing', async (t) => {
  const { host, call } = setup();
  const dflt = host.model.groups.find((g) => g.isDefault)?.id ?? '';
  const webRule = host.model.groups.find((g) => g.id === 'sg-web')?.ingress[0]?.id ?? '';
  const tcp22 = perm({ IpProtocol: 'tcp', FromPort: 22, ToPort: 22, 'IpRanges.1.CidrIp': '10.0.0.0/8' });
  const cases: [string, Record<string, string | number>, number?][] = [
    ['InvalidGroup.NotFound', { Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-nope', ...tcp22 }],
    ['InvalidGroup.NotFound', { Action: 'DescribeSecurityGroups', 'GroupName.1': 'nope' }],
    ['InvalidGroup.NotFound', { Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-web', ...perm({ IpProtocol: 'tcp', FromPort: 1, ToPort: 1, 'Groups.1.GroupId': 'sg-zzz' }) }],
    ['InvalidGroup.Duplicate', { Action: 'CreateSecurityGroup', GroupName: 'WEB', GroupDescription: 'x' }],
    ['InvalidGroup.Reserved', { Action: 'CreateSecurityGroup', GroupName: 'default', GroupDescription: 'x' }],
    ['InvalidPermission.Duplicate', { Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-web', ...perm({ IpProtocol: 'tcp', FromPort: 8080, ToPort: 8080, 'IpRanges.1.CidrIp': '0.0.0.0/0' }) }],
    ['InvalidParameterValue', { Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-web', ...tcp22, 'IpPermissions.2.IpProtocol': 'tcp', 'IpPermissions.2.FromPort': 22, 'IpPermissions.2.ToPort': 22, 'IpPermissions.2.IpRanges.1.CidrIp': '10.0.0.1/8' }],
    ['InvalidPermission.NotFound', { Action: 'RevokeSecurityGroupIngress', GroupId: 'sg-web', ...tcp22 }],
    ['InvalidSecurityGroupRuleId.NotFound', { Action: 'RevokeSecurityGroupIngress', GroupId: 'sg-db', 'SecurityGroupRuleId.1': webRule }],
    ['InvalidSecurityGroupRuleId.Malformed', { Action: 'RevokeSecurityGroupIngress', GroupId: 'sg-web', 'SecurityGroupRuleId.1': 'sgr-xyz' }],
    ['DependencyViolation', { Action: 'DeleteSecurityGroup', GroupId: 'sg-web' }],
    ['DependencyViolation', { Action: 'DeleteSecurityGroup', GroupId: 'sg-db' }],
    ['CannotDelete', { Action: 'DeleteSecurityGroup', GroupId: dflt }],
    ['InvalidParameterValue', { Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-web', ...perm({ IpProtocol: 'tcp', FromPort: 22, ToPort: 22, 'IpRanges.1.CidrIp': '10.0.0.0/99' }) }],
    ['InvalidParameterValue', { Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-web', ...perm({ IpProtocol: 'tcp', 'IpRanges.1.CidrIp': '10.0.0.0/8' }) }],
    ['InvalidParameterValue', { Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-web', ...perm({ IpProtocol: 'tcp', FromPort: 22, ToPort: 22, 'IpRanges.1.CidrIp': '::/0' }) }],
    ['InvalidParameterValue', { Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-web', ...perm({ IpProtocol: 'bogus', 'IpRanges.1.CidrIp': '0.0.0.0/0' }) }],
    ['InvalidParameterValue', { Action: 'DescribeSecurityGroups', 'Filter.1.Name': 'color', 'Filter.1.Value.1': 'x' }],
    ['InvalidParameterValue', { Action: 'DescribeSecurityGroups', MaxResults: 2 }],
    ['InvalidPermission.Malformed', { Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-web', ...perm({ IpProtocol: 'tcp', FromPort: 22, ToPort: 70000, 'IpRanges.1.CidrIp': '0.0.0.0/0' }) }],
    ['MissingParameter', { Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-web', ...perm({ IpProtocol: 'tcp', FromPort: 22, ToPort: 22 }) }],
    ['MissingParameter', { Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-web' }],
    ['MissingParameter', { Action: 'AuthorizeSecurityGroupEgress', ...tcp22 }],
    ['MissingParameter', { Action: 'CreateSecurityGroup', GroupName: 'x' }],
    ['MissingParameter', { Version: '2016-11-15' }],
    ['InvalidAction', { Action: 'RunInstances' }],
    ['InvalidGroupId.Malformed', { Action: 'DescribeSecurityGroups', 'GroupId.1': 'web' }],
    ['InvalidGroupId.Malformed', { Action: 'DeleteSecurityGroup', GroupId: 'nonsense' }],
    ['UnsupportedOperation', { Action: 'ModifyInstanceAttribute', InstanceId: 'web', 'SourceDestCheck.Value': 'false' }],
    ['UnsupportedOperation', { Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-web', ...perm({ IpProtocol: 'tcp', FromPort: 1, ToPort: 1, 'Groups.1.GroupId': 'sg-db', 'Groups.1.VpcPeeringConnectionId': 'pcx-1' }) }],
    ['InvalidInstanceID.NotFound', { Action: 'ModifyInstanceAttribute', InstanceId: 'i-0123', 'GroupId.1': 'sg-web' }],
    ['InvalidID', { Action: 'CreateTags', 'ResourceId.1': 'vpc-local', 'Tag.1.Key': 'a', 'Tag.1.Value': 'b' }],
    ['InvalidPrefixListID.NotFound', { Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-web', ...perm({ IpProtocol: 'tcp', FromPort: 1, ToPort: 1, 'PrefixListIds.1.PrefixListId': 'pl-nope' }) }],
    ['DryRunOperation', { Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-web', DryRun: 'true', ...tcp22 }, 412],
    ['DryRunOperation', { Action: 'DescribeSecurityGroups', DryRun: 'true' }, 412],
    ['InvalidPermission.Duplicate', { Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-web', DryRun: 'true', ...perm({ IpProtocol: 'tcp', FromPort: 8080, ToPort: 8080, 'IpRanges.1.CidrIp': '0.0.0.0/0' }) }],
  ];
  const before = JSON.stringify(host.model);
  for (const [code, params, status] of cases) {
    const r = await call(params);
    t.equal(errorCode(r.body), code, `${code}: ${JSON.stringify(params).slice(0, 160)}`);
    t.equal(r.status, status ?? 400);
    t.match(r.body, /^<\?xml[^>]*>\n<Response><Errors><Error><Code>[^<]+<\/Code><Message>[^<]+<\/Message><\/Error><\/Errors><RequestID>[0-9a-f-]{36}<\/RequestID><\/Response>$/);
  }
  t.equal(JSON.stringify(host.model), before, 'no rejected request changed the model');
  t.equal(host.applied, 0);

  // quota: 60 IPv4 ingress rules per group
  const many: Record<string, string | number> = { Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-spare', 'IpPermissions.1.IpProtocol': 'tcp', 'IpPermissions.1.FromPort': 1, 'IpPermissions.1.ToPort': 1 };
  for (let i = 1; i <= 61; i++) many[`IpPermissions.1.IpRanges.${i}.CidrIp`] = `10.0.${i}.0/24`;
  t.equal(errorCode((await call(many)).body), 'RulesPerSecurityGroupLimitExceeded');
  const groups = { Action: 'ModifyInstanceAttribute', InstanceId: 'web' } as Record<string, string>;
  for (let i = 1; i <= 6; i++) {
    const c = await call({ Action: 'CreateSecurityGroup', GroupName: `q${i}`, GroupDescription: 'x' });
    groups[`GroupId.${i}`] = one(c.body, 'groupId') ?? '';
  }
  t.equal(errorCode((await call(groups)).body), 'SecurityGroupsPerInstanceLimitExceeded');
});

t.test('malformed bodies are 400 with a clear code, never a throw', async (t) => {
  const { svc } = setup();
  for (const body of ['%zz', 'Action=DescribeSecurityGroups&Action=DescribeSecurityGroups', '&&&=x', 'Action=DescribeSecurityGroups&GroupId.0=sg-web',
    'Action=DescribeSecurityGroups&a.b.c.d.e.f.g.h.i=1', 'x'.repeat(1024 * 1024 + 1), 'Action=DescribeSecurityGroups&DryRun=maybe']) {
    const r = await svc.handle(body);
    t.equal(r.status, 400, body.slice(0, 60));
    t.ok(errorCode(r.body), r.body.slice(0, 200));
  }
});

t.test('durable: saved before apply; a failed apply rolls back; the state file round-trips', async (t) => {
  const dir = t.testdir({});
  const statePath = join(dir, 'sub', 'state.json');
  const { host, call } = setup(statePath);
  const a = await call({ Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-web', ...perm({ IpProtocol: 'tcp', FromPort: 22, ToPort: 22, 'IpRanges.1.CidrIp': '10.0.0.0/8' }) });
  t.equal(a.status, 200);
  t.ok(existsSync(statePath));
  const saved = readFileSync(statePath, 'utf8');
  t.match(saved, /10\.0\.0\.0\/8/);
  host.failNext = true;
  const b = await call({ Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-web', ...perm({ IpProtocol: 'tcp', FromPort: 23, ToPort: 23, 'IpRanges.1.CidrIp': '10.0.0.0/8' }) });
  t.equal(b.status, 500);
  t.equal(errorCode(b.body), 'InternalError');
  t.notMatch(readFileSync(statePath, 'utf8'), /"ports": 23/, 'state rolled back after a failed apply');
  const rej = await call({ Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-web', ...perm({ IpProtocol: 'tcp', FromPort: 22, ToPort: 22, 'IpRanges.1.CidrIp': '10.0.0.0/8' }) });
  t.equal(rej.status, 400);
  t.equal(JSON.parse(readFileSync(statePath, 'utf8')).config.securityGroups.length, JSON.parse(saved).config.securityGroups.length);
});

t.test('concurrent mutations are serialised (no lost update)', async (t) => {
  const { host, call } = setup();
  const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => call({ Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-spare',
    ...perm({ IpProtocol: 'tcp', FromPort: 1000 + i, ToPort: 1000 + i, 'IpRanges.1.CidrIp': '10.0.0.0/8' }) })));
  t.same(rs.map((r) => r.status), Array(20).fill(200));
  t.equal(host.model.groups.find((g) => g.id === 'sg-spare')?.ingress.length, 20);
});
