// Unknown query parameters (issue #6): EC2 answers a parameter an action does not take with
// HTTP 400 UnknownParameter "The parameter X is not recognized", before anything else, and
// changes nothing. Every parameter EC2 documents for the action (reference §4.2), indexed forms
// included, plus Action, Version, DryRun and query-string auth, is accepted.
import t from 'tap';
import { setup, errorCode, one } from './ec2-helpers.js';
import { knownActions } from '../../src/control/api/ec2/params.js';

t.test('parameters an action does not take: 400 UnknownParameter naming the parameter', async (t) => {
  const { host, call } = setup();
  const cases: [Record<string, string>, string][] = [
    [{ Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-web', Foo: '1' }, 'Foo'],
    [{ Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-web', 'IpPermissions.1.IpProtocol': 'tcp', 'IpPermissions.1.FromPort': '1',
      'IpPermissions.1.ToPort': '1', 'IpPermissions.1.IpRanges.1.Cidr': '10.0.0.0/8' }, 'IpPermissions.1.IpRanges.1.Cidr'],
    [{ Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-web', 'IpPermissions.1.Ranges.2.CidrIp': '10.0.0.0/8' }, 'IpPermissions.1.Ranges.2.CidrIp'],
    // The SDK member name is Description, the wire name GroupDescription (aws/aws-sdk-cpp#327).
    [{ Action: 'CreateSecurityGroup', GroupName: 'x', Description: 'y' }, 'Description'],
    [{ Action: 'DescribeSecurityGroups', GroupId: 'sg-web' }, 'GroupId'],                       // a list: GroupId.N
    [{ Action: 'DescribeSecurityGroups', 'Filter.1.Name': 'group-id', 'Filter.1.Values.1': 'x' }, 'Filter.1.Values.1'],
    [{ Action: 'DeleteSecurityGroup', GroupId: 'sg-spare', 'GroupId.1': 'sg-spare' }, 'GroupId.1'],
    [{ Action: 'RevokeSecurityGroupEgress', GroupId: 'sg-db', 'TagSpecification.1.ResourceType': 'security-group-rule' }, 'TagSpecification.1.ResourceType'],
    [{ Action: 'ModifySecurityGroupRules', GroupId: 'sg-web', 'SecurityGroupRule.1.SecurityGroupRule.CidrIp': '10.0.0.0/8' }, 'SecurityGroupRule.1.SecurityGroupRule.CidrIp'],
    [{ Action: 'CreateTags', 'ResourceId.1': 'sg-web', 'Tags.1.Key': 'k' }, 'Tags.1.Key'],
    [{ Action: 'DescribeTags', 'ResourceId.1': 'sg-web' }, 'ResourceId.1'],
    [{ Action: 'DescribeInstances', 'InstanceId.1.x': 'i-1' }, 'InstanceId.1.x'],
    [{ Action: 'CreateSecurityGroup', GroupName: 'x', GroupDescription: 'y', 'x-amz-date': '1' }, 'x-amz-date'],  // names are case-sensitive
  ];
  for (const [params, name] of cases) {
    const applied = host.applied;
    const before = JSON.stringify(host.model.groups);
    const r = await call(params);
    t.equal(r.status, 400, `${name}: 400`);
    t.equal(errorCode(r.body), 'UnknownParameter', `${name}: UnknownParameter`);
    t.match(one(r.body, 'Message'), new RegExp(`^The parameter ${name.replace(/\./g, '\\.')} is not recognized \\(${params.Action} takes `), `${name}: named`);
    t.equal(host.applied, applied, `${name}: nothing applied`);
    t.equal(JSON.stringify(host.model.groups), before, `${name}: model unchanged`);
  }
  // Checked before values and DryRun, as EC2 does.
  const r = await call({ Action: 'DeleteSecurityGroup', GroupId: 'not-an-id', DryRun: 'maybe', Bogus: '' });
  t.equal(errorCode(r.body), 'UnknownParameter', 'unknown parameter before malformed values');
  const bad = await call({ Action: 'NoSuchAction', Bogus: '1' });
  t.equal(errorCode(bad.body), 'InvalidAction', 'an unknown action is InvalidAction, whatever its parameters');
});

t.test('every documented parameter is accepted, with the protocol and auth ones on every action', async (t) => {
  const auth = {
    'X-Amz-Algorithm': 'AWS4-HMAC-SHA256', 'X-Amz-Date': '20261125T000000Z', 'X-Amz-Credential': 'AK/20261125/us-east-1/ec2/aws4_request',
    'X-Amz-SignedHeaders': 'host', 'X-Amz-Signature': '0'.repeat(64), 'X-Amz-Security-Token': 'tok', AWSAccessKeyId: 'AK',
    SignatureMethod: 'HmacSHA256', SignatureVersion: '2', Timestamp: '2026-11-25T00:00:00Z', DryRun: 'true',
  };
  const wide: Record<string, Record<string, string>> = {
    CreateSecurityGroup: { GroupName: 'n', GroupDescription: 'd', VpcId: 'vpc-1', 'TagSpecification.1.ResourceType': 'security-group', 'TagSpecification.1.Tag.2.Key': 'k', 'TagSpecification.1.Tag.2.Value': 'v' },
    DeleteSecurityGroup: { GroupId: 'sg-spare', GroupName: 'spare' },
    DescribeSecurityGroups: { 'GroupId.1': 'sg-web', 'GroupName.3': 'web', 'Filter.2.Name': 'vpc-id', 'Filter.2.Value.4': '*', MaxResults: '5', NextToken: '' },
    DescribeSecurityGroupRules: { 'SecurityGroupRuleId.1': 'sgr-0123456789abcdef0', 'Filter.1.Name': 'group-id', 'Filter.1.Value.1': 'x', MaxResults: '5' },
    AuthorizeSecurityGroupIngress: {
      GroupId: 'sg-web', GroupName: 'web', IpProtocol: 'tcp', FromPort: '1', ToPort: '2', CidrIp: '10.0.0.0/8', SourceSecurityGroupName: 'db', SourceSecurityGroupOwnerId: '1',
      'IpPermissions.1.IpProtocol': 'tcp', 'IpPermissions.1.FromPort': '1', 'IpPermissions.1.ToPort': '2',
      'IpPermissions.1.IpRanges.1.CidrIp': '10.0.0.0/8', 'IpPermissions.1.IpRanges.1.Description': 'd',
      'IpPermissions.1.Ipv6Ranges.1.CidrIpv6': '::/0', 'IpPermissions.1.Ipv6Ranges.1.Description': 'd',
      'IpPermissions.1.PrefixListIds.1.PrefixListId': 'pl-office', 'IpPermissions.1.PrefixListIds.1.Description': 'd',
      'IpPermissions.2.Groups.1.GroupId': 'sg-db', 'IpPermissions.2.Groups.1.GroupName': 'db', 'IpPermissions.2.Groups.1.UserId': '1',
      'IpPermissions.2.Groups.1.VpcId': 'vpc-1', 'IpPermissions.2.Groups.1.Description': 'd', 'IpPermissions.2.Groups.1.PeeringStatus': 'active',
      'IpPermissions.2.Groups.1.VpcPeeringConnectionId': 'pcx-1', 'TagSpecification.1.ResourceType': 'security-group-rule', 'TagSpecification.1.Tag.1.Key': 'k',
    },
    AuthorizeSecurityGroupEgress: { GroupId: 'sg-db', 'IpPermissions.1.IpProtocol': '-1', 'IpPermissions.1.IpRanges.1.CidrIp': '10.0.0.0/8', 'TagSpecification.1.Tag.1.Value': 'v' },
    RevokeSecurityGroupIngress: { GroupId: 'sg-web', 'SecurityGroupRuleId.1': 'sgr-0123456789abcdef0', 'IpPermissions.1.IpProtocol': 'tcp', CidrIp: '10.0.0.0/8' },
    RevokeSecurityGroupEgress: { GroupId: 'sg-db', 'SecurityGroupRuleId.2': 'sgr-0123456789abcdef0', IpProtocol: 'udp', SourceSecurityGroupOwnerId: '1' },
    ModifySecurityGroupRules: {
      GroupId: 'sg-web', 'SecurityGroupRule.1.SecurityGroupRuleId': 'sgr-0123456789abcdef0',
      ...Object.fromEntries(['IpProtocol', 'FromPort', 'ToPort', 'CidrIpv4', 'CidrIpv6', 'PrefixListId', 'ReferencedGroupId', 'Description']
        .map((k) => [`SecurityGroupRule.1.SecurityGroupRule.${k}`, '1'])),
    },
    UpdateSecurityGroupRuleDescriptionsIngress: { GroupId: 'sg-web', GroupName: 'web', 'IpPermissions.1.IpProtocol': 'tcp', 'SecurityGroupRuleDescription.1.SecurityGroupRuleId': 'sgr-0123456789abcdef0', 'SecurityGroupRuleDescription.1.Description': 'd' },
    UpdateSecurityGroupRuleDescriptionsEgress: { GroupId: 'sg-db', 'SecurityGroupRuleDescription.2.Description': 'd' },
    ModifyInstanceAttribute: { InstanceId: 'web', 'GroupId.1': 'sg-web', Attribute: 'groupSet', Value: 'x', 'SourceDestCheck.Value': 'false', 'BlockDeviceMapping.1.Ebs.DeleteOnTermination': 'true', 'UserData.Value': 'x' },
    DescribeInstances: { 'InstanceId.1': 'web', 'Filter.1.Name': 'vpc-id', 'Filter.1.Value.1': '*', MaxResults: '5', NextToken: '' },
    CreateTags: { 'ResourceId.1': 'sg-web', 'Tag.1.Key': 'k', 'Tag.1.Value': 'v' },
    DeleteTags: { 'ResourceId.1': 'sg-web', 'Tag.1.Key': 'k', 'Tag.1.Value': 'v' },
    DescribeTags: { 'Filter.1.Name': 'key', 'Filter.1.Value.1': 'k', MaxResults: '5', NextToken: '' },
    // Network ACLs (issue 14).
    CreateNetworkAcl: { VpcId: 'vpc-local', ClientToken: 'x', 'TagSpecification.1.ResourceType': 'network-acl', 'TagSpecification.1.Tag.1.Key': 'k', 'TagSpecification.1.Tag.1.Value': 'v' },
    DeleteNetworkAcl: { NetworkAclId: 'acl-x' },
    CreateNetworkAclEntry: { NetworkAclId: 'acl-x', RuleNumber: '1', Protocol: '6', RuleAction: 'allow', Egress: 'true', CidrBlock: '0.0.0.0/0', Ipv6CidrBlock: '::/0', 'IcmpTypeCode.Code': '0', 'IcmpTypeCode.Type': '8', 'PortRange.From': '1', 'PortRange.To': '2' },
    ReplaceNetworkAclEntry: { NetworkAclId: 'acl-x', RuleNumber: '1', Protocol: '-1', RuleAction: 'deny', Egress: 'false', CidrBlock: '0.0.0.0/0' },
    DeleteNetworkAclEntry: { NetworkAclId: 'acl-x', RuleNumber: '1', Egress: 'true' },
    DescribeNetworkAcls: { 'NetworkAclId.1': 'acl-x', 'Filter.1.Name': 'vpc-id', 'Filter.1.Value.1': '*', MaxResults: '5', NextToken: '' },
    ReplaceNetworkAclAssociation: { AssociationId: 'aclassoc-0', NetworkAclId: 'acl-x' },
  };
  t.same(Object.keys(wide).sort(), knownActions().sort(), 'one wide request per action the service knows');
  const { call } = setup();
  const served = (await call({ Action: 'Nope' })).body;
  for (const a of knownActions()) t.match(served, a, `the service serves ${a}`);
  for (const [action, params] of Object.entries(wide)) {
    const r = await call({ Action: action, ...auth, ...params });
    t.not(errorCode(r.body), 'UnknownParameter', `${action}: ${one(r.body, 'Message') ?? 'ok'}`);
  }
  const mia = await call({ Action: 'ModifyInstanceAttribute', InstanceId: 'web', 'SourceDestCheck.Value': 'false' });
  t.equal(errorCode(mia.body), 'UnsupportedOperation', 'an EC2 parameter sgemu does not act on: UnsupportedOperation, not UnknownParameter');
  const signed = await call({ Action: 'ModifyInstanceAttribute', InstanceId: 'web', 'X-Amz-Date': '20261125T000000Z' });
  t.equal(errorCode(signed.body), 'MissingParameter', 'query-string auth parameters are not "other attributes"');
});
