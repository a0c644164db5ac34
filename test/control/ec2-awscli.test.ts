// The AWS CLI against the service (skipped with the reason when `aws` is not installed; CI
// installs the Debian awscli package). Credentials and config are dummies in a test dir.
import t from 'tap';
import { execFile, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { setup, serve } from './ec2-helpers.js';

const probe = spawnSync('aws', ['--version'], { encoding: 'utf8', timeout: 20_000 });
const missing = probe.error ? `the aws CLI is not installed (${String((probe.error as NodeJS.ErrnoException).code)})` : false;

t.test('aws ec2 describe-security-groups / authorize-security-group-ingress', { skip: missing }, async (t) => {
  const dir = t.testdir({});
  const { host, svc } = setup();
  const port = await serve(t, svc);
  const env = {
    PATH: process.env.PATH ?? '', HOME: dir,
    AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'y', AWS_DEFAULT_REGION: 'us-east-1',
    AWS_CONFIG_FILE: join(dir, 'config'), AWS_SHARED_CREDENTIALS_FILE: join(dir, 'credentials'),
    AWS_EC2_METADATA_DISABLED: 'true', AWS_PAGER: '',
  };
  const aws = (...args: string[]): Promise<{ code: number; out: string; err: string }> => new Promise((resolve) => {
    execFile('aws', ['--endpoint-url', `http://127.0.0.1:${port}`, '--output', 'json', 'ec2', ...args], { env, timeout: 30_000 },
      (e, out, err) => resolve({ code: e ? Number((e as { code?: unknown }).code ?? 1) : 0, out, err }));
  });

  const auth = await aws('authorize-security-group-ingress', '--group-id', 'sg-spare', '--protocol', 'tcp', '--port', '22', '--cidr', '10.1.2.3/8');
  t.equal(auth.code, 0, auth.err);
  const rules = JSON.parse(auth.out) as { Return: boolean; SecurityGroupRules: { CidrIpv4: string; FromPort: number }[] };
  t.equal(rules.Return, true);
  t.same(rules.SecurityGroupRules.map((r) => [r.CidrIpv4, r.FromPort]), [['10.0.0.0/8', 22]]);
  t.ok(host.model.groups.find((g) => g.id === 'sg-spare')?.ingress.some((r) => r.fromPort === 22));

  const d = await aws('describe-security-groups', '--group-ids', 'sg-spare');
  t.equal(d.code, 0, d.err);
  const sg = (JSON.parse(d.out) as { SecurityGroups: { GroupName: string; IpPermissions: unknown[] }[] }).SecurityGroups[0];
  t.equal(sg?.GroupName, 'spare');
  t.same(sg?.IpPermissions, [{ IpProtocol: 'tcp', FromPort: 22, ToPort: 22, UserIdGroupPairs: [], IpRanges: [{ CidrIp: '10.0.0.0/8' }], Ipv6Ranges: [], PrefixListIds: [] }]);

  const dup = await aws('authorize-security-group-ingress', '--group-id', 'sg-spare', '--protocol', 'tcp', '--port', '22', '--cidr', '10.0.0.0/8');
  t.not(dup.code, 0);
  t.match(dup.err, /InvalidPermission\.Duplicate/);
});
