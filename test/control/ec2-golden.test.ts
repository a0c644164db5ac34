// Golden EC2 XML: whole response documents byte for byte (request ids masked), so an accidental
// change of element names, order or namespaces shows up in review. Regenerate with
// SGEMU_UPDATE_GOLDEN=1 and read the diff.
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { setup } from './ec2-helpers.js';

const GOLDEN = new URL('./golden/', import.meta.url).pathname;

t.test('golden responses', async (t) => {
  const { call } = setup();
  const cases: [string, Record<string, string>][] = [
    ['describe-security-groups-db.xml', { Action: 'DescribeSecurityGroups', 'GroupId.1': 'sg-db' }],
    ['describe-security-group-rules-web.xml', { Action: 'DescribeSecurityGroupRules', 'Filter.1.Name': 'group-id', 'Filter.1.Value.1': 'sg-web' }],
    ['revoke-ingress-web.xml', { Action: 'RevokeSecurityGroupIngress', GroupId: 'sg-web', 'IpPermissions.1.IpProtocol': 'tcp', 'IpPermissions.1.FromPort': '8080', 'IpPermissions.1.ToPort': '8080', 'IpPermissions.1.IpRanges.1.CidrIp': '0.0.0.0/0' }],
    ['error-group-not-found.xml', { Action: 'DeleteSecurityGroup', GroupId: 'sg-nope' }],
  ];
  for (const [file, params] of cases) {
    const r = await call(params);
    const got = r.body.replace(/<(requestId|RequestID)>[^<]*</g, '<$1>REQUEST-ID<') + '\n';
    if (process.env.SGEMU_UPDATE_GOLDEN === '1') writeFileSync(GOLDEN + file, got);
    t.equal(got, readFileSync(GOLDEN + file, 'utf8'), file);
  }
});
