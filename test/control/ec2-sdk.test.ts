// The EC2 API as @aws-sdk/client-ec2 sees it: a tiny HTTP server on 127.0.0.1:0 feeds POST bodies
// to Ec2Service.handle; the SDK must parse our XML (responses and errors) as it parses EC2's.
import t from 'tap';
import {
  AuthorizeSecurityGroupIngressCommand, CreateSecurityGroupCommand, DeleteSecurityGroupCommand, DescribeInstancesCommand,
  DescribeSecurityGroupRulesCommand, DescribeSecurityGroupsCommand, EC2Client, ModifyInstanceAttributeCommand,
  RevokeSecurityGroupIngressCommand, CreateTagsCommand, DescribeTagsCommand,
} from '@aws-sdk/client-ec2';
import { serve, setup } from './ec2-helpers.js';

t.test('the AWS SDK drives the service', async (t) => {
  const { host, svc } = setup();
  const port = await serve(t, svc);
  const ec2 = new EC2Client({ endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' }, maxAttempts: 1 });
  t.teardown(() => ec2.destroy());

  const created = await ec2.send(new CreateSecurityGroupCommand({ GroupName: 'sdk', Description: 'made by the sdk',
    TagSpecifications: [{ ResourceType: 'security-group', Tags: [{ Key: 'via', Value: 'sdk' }] }] }));
  t.match(created.GroupId, /^sg-[0-9a-f]{17}$/);
  t.same(created.Tags, [{ Key: 'via', Value: 'sdk' }]);
  const GroupId = created.GroupId ?? '';

  const auth = await ec2.send(new AuthorizeSecurityGroupIngressCommand({ GroupId, IpPermissions: [{
    IpProtocol: 'tcp', FromPort: 22, ToPort: 22,
    IpRanges: [{ CidrIp: '203.0.113.9/24', Description: 'office' }], Ipv6Ranges: [{ CidrIpv6: '2001:db8::/48' }],
    UserIdGroupPairs: [{ GroupId: 'sg-web' }], PrefixListIds: [{ PrefixListId: 'pl-office' }],
  }] }));
  t.equal(auth.Return, true);
  t.equal(auth.SecurityGroupRules?.length, 4);
  t.same(auth.SecurityGroupRules?.[0], {
    SecurityGroupRuleId: auth.SecurityGroupRules?.[0]?.SecurityGroupRuleId, GroupId, GroupOwnerId: '000000000000', IsEgress: false,
    IpProtocol: 'tcp', FromPort: 22, ToPort: 22, CidrIpv4: '203.0.113.0/24', Description: 'office', Tags: [],
    SecurityGroupRuleArn: `arn:aws:ec2:us-east-1:000000000000:security-group-rule/${auth.SecurityGroupRules?.[0]?.SecurityGroupRuleId}`,
  });
  t.equal(auth.SecurityGroupRules?.[3]?.ReferencedGroupInfo?.GroupId, 'sg-web');

  const d = await ec2.send(new DescribeSecurityGroupsCommand({ GroupIds: [GroupId] }));
  const g = d.SecurityGroups?.[0];
  t.equal(g?.GroupName, 'sdk');
  t.equal(g?.Description, 'made by the sdk');
  t.equal(g?.VpcId, 'vpc-local');
  t.same(g?.Tags, [{ Key: 'via', Value: 'sdk' }]);
  t.same(g?.IpPermissions, [{
    IpProtocol: 'tcp', FromPort: 22, ToPort: 22,
    UserIdGroupPairs: [{ UserId: '000000000000', GroupId: 'sg-web', GroupName: 'web', VpcId: 'vpc-local' }],
    IpRanges: [{ CidrIp: '203.0.113.0/24', Description: 'office' }],
    Ipv6Ranges: [{ CidrIpv6: '2001:db8::/48' }],
    PrefixListIds: [{ PrefixListId: 'pl-office' }],
  }]);
  t.same(g?.IpPermissionsEgress?.map((p) => [p.IpProtocol, p.FromPort, p.IpRanges?.[0]?.CidrIp]), [['-1', undefined, '0.0.0.0/0']]);

  const filtered = await ec2.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: 'ip-permission.cidr', Values: ['203.0.113.*'] }] }));
  t.same(filtered.SecurityGroups?.map((x) => x.GroupId), [GroupId]);

  const rules = await ec2.send(new DescribeSecurityGroupRulesCommand({ Filters: [{ Name: 'group-id', Values: [GroupId] }] }));
  t.equal(rules.SecurityGroupRules?.length, 6, '4 ingress + 2 default egress');
  const ruleId = auth.SecurityGroupRules?.[1]?.SecurityGroupRuleId ?? '';
  await ec2.send(new CreateTagsCommand({ Resources: [ruleId], Tags: [{ Key: 'a', Value: 'b' }] }));
  const tags = await ec2.send(new DescribeTagsCommand({ Filters: [{ Name: 'resource-id', Values: [ruleId] }] }));
  t.same(tags.Tags, [{ ResourceId: ruleId, ResourceType: 'security-group-rule', Key: 'a', Value: 'b' }]);
  const rev = await ec2.send(new RevokeSecurityGroupIngressCommand({ GroupId, SecurityGroupRuleIds: [ruleId] }));
  t.equal(rev.Return, true);
  t.equal(rev.RevokedSecurityGroupRules?.[0]?.CidrIpv6, '2001:db8::/48');

  await ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: host.model.instances[0]?.id, Groups: ['sg-web', GroupId] }));
  const inst = await ec2.send(new DescribeInstancesCommand({}));
  const i0 = inst.Reservations?.[0]?.Instances?.[0];
  t.equal(i0?.PrivateIpAddress, '127.0.0.10');
  t.equal(i0?.State?.Name, 'running');
  t.same(i0?.SecurityGroups?.map((x) => x.GroupId), ['sg-web', GroupId]);

  const err = await ec2.send(new DeleteSecurityGroupCommand({ GroupId })).catch((e: unknown) => e);
  t.match(err, { name: 'DependencyViolation', Code: 'DependencyViolation', $metadata: { httpStatusCode: 400 } });
  const nf = await ec2.send(new DescribeSecurityGroupsCommand({ GroupIds: ['sg-nothere'] })).catch((e: unknown) => e);
  t.match(nf, { name: 'InvalidGroup.NotFound', message: /sg-nothere/ });
  const dup = await ec2.send(new AuthorizeSecurityGroupIngressCommand({ GroupId, IpPermissions: [{ IpProtocol: 'tcp', FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: '203.0.113.1/24' }] }] })).catch((e: unknown) => e);
  t.match(dup, { name: 'InvalidPermission.Duplicate' });
  const dry = await ec2.send(new CreateSecurityGroupCommand({ GroupName: 'dry', Description: 'x', DryRun: true })).catch((e: unknown) => e);
  t.match(dry, { name: 'DryRunOperation', $metadata: { httpStatusCode: 412 } });
  t.notOk(host.model.groups.some((x) => x.name === 'dry'));
});
