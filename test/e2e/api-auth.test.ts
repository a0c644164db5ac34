// SigV4 on the EC2 API: with credentials set, signed requests pass, a wrong secret gets
// SignatureDoesNotMatch (403), an unsigned one AuthFailure (401); beyond loopback, credentials are
// mandatory (exit 2 before anything binds).

import t from 'tap';
import { spawnSync } from 'node:child_process';
import { CreateSecurityGroupCommand, DescribeSecurityGroupsCommand, EC2Client } from '@aws-sdk/client-ec2';
import { freshAddr, startDaemon } from './helpers.js';
import { verifySigV4 } from '../../src/control/api/sigv4.js';

const CLI = new URL('../../dist/cli/main.js', import.meta.url).pathname;

t.test('signed with the right key passes; wrong secret and unsigned are refused with AWS codes', async (t) => {
  const creds = { accessKeyId: 'AKIDSGEMUTEST', secretAccessKey: 'right-secret' };
  const { daemon } = await startDaemon(t, `instances:\n  - { name: a, address: ${freshAddr()} }\n`, { api: { host: '127.0.0.1', port: 0 }, apiCredentials: creds });
  const endpoint = `http://127.0.0.1:${daemon.api!.port}`;
  const good = new EC2Client({ endpoint, region: 'us-east-1', credentials: creds, maxAttempts: 1 });
  const bad = new EC2Client({ endpoint, region: 'us-east-1', credentials: { ...creds, secretAccessKey: 'wrong' }, maxAttempts: 1 });
  t.teardown(() => { good.destroy(); bad.destroy(); });
  const made = await good.send(new CreateSecurityGroupCommand({ GroupName: 'signed', Description: 'signed request' }));
  t.match(made.GroupId, /^sg-/, 'a signed request is served');
  await t.rejects(bad.send(new DescribeSecurityGroupsCommand({})), { name: 'SignatureDoesNotMatch' }, 'wrong secret');
  const unsigned = await fetch(endpoint + '/', { method: 'POST', body: 'Action=DescribeSecurityGroups&Version=2016-11-15',
    headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  t.equal(unsigned.status, 401);
  t.match(await unsigned.text(), /<Code>AuthFailure<\/Code>/);
});

t.test('a stale X-Amz-Date is refused', async (t) => {
  const req = { method: 'POST', url: '/', body: Buffer.from('x'), headers: {
    host: '127.0.0.1', 'x-amz-date': '20200101T000000Z',
    authorization: `AWS4-HMAC-SHA256 Credential=AK/20200101/us-east-1/ec2/aws4_request, SignedHeaders=host;x-amz-date, Signature=${'0'.repeat(64)}` } };
  t.throws(() => verifySigV4(req, { accessKeyId: 'AK', secretAccessKey: 's' }), { code: 'AuthFailure' });
});

t.test('--api beyond loopback without credentials: exit 2 with the reason', async (t) => {
  const r = spawnSync(process.execPath, [CLI, 'run', '-c', '/dev/null', '--api', '0.0.0.0:4599', '--state', 'off'], { encoding: 'utf8' });
  t.equal(r.status, 2);
  t.match(r.stderr, /api-credentials/);
});
