// SigV4 on the EC2 API: with credentials set, signed requests pass, a wrong secret gets
// SignatureDoesNotMatch (403), an unsigned one AuthFailure (401); beyond loopback, credentials are
// mandatory (exit 2 before anything binds) and cover the JSON routes and /metrics too.

import t from 'tap';
import { spawnSync } from 'node:child_process';
import { CreateSecurityGroupCommand, DescribeSecurityGroupsCommand, EC2Client } from '@aws-sdk/client-ec2';
import { freshAddr, startDaemon } from './helpers.js';
import { createHash, createHmac } from 'node:crypto';
import { signSigV4, verifySigV4 } from '../../src/control/api/sigv4.js';
import { ApiServer } from '../../src/control/api/server.js';

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

// ---- Every route beyond loopback (issue #6): the JSON routes and /metrics take the same SigV4
// credentials as the EC2 API. Tests bind loopback only, so the server is told to act as beyond
// loopback (signAll), which listen() otherwise decides from the address.

t.test('signAll: JSON routes and /metrics answer 401/403 JSON unless SigV4-signed; signed ones are served', async (t) => {
  const creds = { accessKeyId: 'AKIDSGEMUVIEWS', secretAccessKey: 'views-secret' };
  const { daemon } = await startDaemon(t, `instances:\n  - { name: a, address: ${freshAddr()} }\n`, { api: { host: '127.0.0.1', port: 0 }, apiCredentials: creds });
  const open = `http://127.0.0.1:${daemon.api!.port}`;
  t.equal((await fetch(`${open}/v1/status`)).status, 200, 'on loopback the JSON routes stay open');
  t.equal((await fetch(`${open}/metrics`)).status, 200, 'and /metrics');

  const api = new ApiServer(daemon, creds, { signAll: true });
  await api.listen('127.0.0.1', 0);
  t.teardown(() => api.close());
  const host = `127.0.0.1:${api.port}`;
  const signed = (method: string, path: string, body = '', c = creds) =>
    fetch(`http://${host}${path}`, { method, headers: signSigV4({ method, url: path, host, body }, c), ...(body ? { body } : {}) });

  for (const path of ['/v1/status', '/v1/conntrack', '/v1/instances', '/v1/security-groups', '/metrics', '/v1/events']) {
    const res = await fetch(`http://${host}${path}`);
    t.equal(res.status, 401, `unsigned GET ${path}: 401`);
    t.equal(res.headers.get('content-type'), 'application/json');
    t.match(await res.json(), { error: 'AuthFailure', message: /not signed/ });
  }
  const wrong = await signed('GET', '/v1/status', '', { ...creds, secretAccessKey: 'nope' });
  t.equal(wrong.status, 403, 'wrong secret: 403');
  t.match(await wrong.json(), { error: 'SignatureDoesNotMatch' });
  const otherKey = await signed('GET', '/metrics', '', { ...creds, accessKeyId: 'AKIDOTHER' });
  t.equal(otherKey.status, 401, 'unknown key: 401');
  t.match(await otherKey.json(), { error: 'AuthFailure' });
  const explainUnsigned = await fetch(`http://${host}/v1/explain`, { method: 'POST', body: '{}' });
  t.equal(explainUnsigned.status, 401, 'unsigned POST /v1/explain: 401');

  const status = await signed('GET', '/v1/status');
  t.equal(status.status, 200, 'signed GET /v1/status');
  t.match(await status.json(), { policyVersion: 1 });
  const metrics = await signed('GET', '/metrics');
  t.equal(metrics.status, 200, 'signed GET /metrics');
  const text = await metrics.text();
  t.match(text, /sgemu_api_requests_total\{action="GET \/v1\/status",status="401"\} 1\n/, 'refusals are counted');
  t.match(text, /sgemu_api_requests_total\{action="GET \/v1\/status",status="403"\} 1\n/);
  const explain = await signed('POST', '/v1/explain', JSON.stringify({ from: '10.0.0.1', to: 'a', protocol: 'tcp', port: 22 }));
  t.equal(explain.status, 200, 'signed POST /v1/explain');
  // The body is part of the signature: a signed body swapped for another is refused.
  const swapped = await fetch(`http://${host}/v1/explain`, { method: 'POST', body: '{"from":"x"}',
    headers: signSigV4({ method: 'POST', url: '/v1/explain', host, body: '{}' }, creds) });
  t.equal(swapped.status, 403, 'a body that is not the signed one: 403');
  const ac = new AbortController();
  const events = await fetch(`http://${host}/v1/events`, { signal: ac.signal, headers: signSigV4({ method: 'GET', url: '/v1/events', host }, creds) });
  t.equal(events.status, 200, 'signed GET /v1/events streams');
  ac.abort();

  // The EC2 API on the same server: the SDK signs, and is served.
  const ec2 = new EC2Client({ endpoint: `http://${host}`, region: 'us-east-1', credentials: creds, maxAttempts: 1 });
  t.teardown(() => ec2.destroy());
  const d = await ec2.send(new DescribeSecurityGroupsCommand({}));
  t.ok(Array.isArray(d.SecurityGroups), 'EC2 API served with the same credentials');
});

t.test('listen beyond loopback without credentials is refused before binding', async (t) => {
  const { daemon } = await startDaemon(t, `instances:\n  - { name: a, address: ${freshAddr()} }\n`);
  const api = new ApiServer(daemon, null);
  await t.rejects(api.listen('0.0.0.0', 0), { code: 'Usage', message: /api-credentials/ });
  t.throws(() => new ApiServer(daemon, null, { signAll: true }), { code: 'Usage' });
});

// The SDK's own signer, to check ours against (a dependency of @aws-sdk/client-ec2).
let sdk: typeof import('@smithy/signature-v4') | null = null;
try { sdk = await import('@smithy/signature-v4'); } catch { /* the test says it skipped */ }
const bytes = (d: string | ArrayBuffer | ArrayBufferView): string | Uint8Array =>
  typeof d === 'string' ? d : d instanceof ArrayBuffer ? new Uint8Array(d) : new Uint8Array(d.buffer, d.byteOffset, d.byteLength);

t.test('signSigV4 agrees with the AWS SDK signer and with verifySigV4', { skip: sdk ? false : '@smithy/signature-v4 (a dependency of @aws-sdk/client-ec2) is not installed' }, async (t) => {
  const creds = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };
  const nowMs = Date.UTC(2026, 10, 25, 12, 0, 0);
  const body = 'Action=DescribeSecurityGroups&Version=2016-11-15';
  const h = signSigV4({ method: 'POST', url: '/?a=1&b=x%20y', host: '127.0.0.1:4510', body }, creds, { nowMs });
  t.doesNotThrow(() => verifySigV4({ method: 'POST', url: '/?a=1&b=x%20y', headers: h, body: Buffer.from(body) }, creds, nowMs));
  t.throws(() => verifySigV4({ method: 'POST', url: '/?a=1', headers: h, body: Buffer.from(body) }, creds, nowMs), { code: 'SignatureDoesNotMatch' });
  t.throws(() => verifySigV4({ method: 'POST', url: '/%zz', headers: h, body: Buffer.from(body) }, creds, nowMs), { code: 'SignatureDoesNotMatch' }, 'bad escapes: an AWS code, not a crash');
  if (!sdk) return;
  class Sha256 {
    private readonly h: ReturnType<typeof createHash> | ReturnType<typeof createHmac>;
    constructor(secret?: string | ArrayBuffer | ArrayBufferView) { this.h = secret ? createHmac('sha256', bytes(secret)) : createHash('sha256'); }
    update(d: string | ArrayBuffer | ArrayBufferView): void { this.h.update(bytes(d)); }
    async digest(): Promise<Uint8Array> { return new Uint8Array(this.h.digest()); }
  }
  const signer = new sdk.SignatureV4({ credentials: creds, region: 'us-east-1', service: 'ec2', sha256: Sha256 });
  const out = await signer.sign({
    method: 'POST', protocol: 'http:', hostname: '127.0.0.1', port: 4510, path: '/', query: { a: '1', b: 'x y' },
    headers: { host: '127.0.0.1:4510', 'x-amz-content-sha256': h['x-amz-content-sha256']! }, body,
  }, { signingDate: new Date(nowMs) });
  const sig = (a: string | undefined) => /Signature=([0-9a-f]{64})/.exec(a ?? '')?.[1];
  t.equal(sig(h.authorization), sig(out.headers.authorization), 'the same signature as the SDK signer');
});

t.test('the CLI client signs with SGEMU_API_CREDENTIALS; unsigned it gets a clear 401', async (t) => {
  const { apiRequest, apiFetch } = await import('../../src/cli/command.js');
  const creds = { accessKeyId: 'AKIDSGEMUCLI', secretAccessKey: 'cli-secret' };
  const { daemon } = await startDaemon(t, `instances:\n  - { name: a, address: ${freshAddr()} }\n`, { api: { host: '127.0.0.1', port: 0 }, apiCredentials: creds });
  const api = new ApiServer(daemon, creds, { signAll: true });
  await api.listen('127.0.0.1', 0);
  t.teardown(() => api.close());
  const addr = `127.0.0.1:${api.port}`;
  const saved = process.env.SGEMU_API_CREDENTIALS;
  t.teardown(() => { if (saved === undefined) delete process.env.SGEMU_API_CREDENTIALS; else process.env.SGEMU_API_CREDENTIALS = saved; });

  delete process.env.SGEMU_API_CREDENTIALS;
  await t.rejects(apiRequest(addr, '/v1/status'), { code: 'DaemonError', message: /401.*SGEMU_API_CREDENTIALS/ }, 'unsigned: 401 with the hint');
  process.env.SGEMU_API_CREDENTIALS = `${creds.accessKeyId}:${creds.secretAccessKey}`;
  t.match(await apiRequest(addr, '/v1/status'), { policyVersion: Number }, 'signed GET');
  t.match(await apiRequest(addr, '/v1/explain', { from: '127.0.0.1', to: 'a', port: 22, protocol: 'tcp' }), {}, 'signed POST with a JSON body');
  const ac = new AbortController();
  const ev = await apiFetch(addr, '/v1/events', undefined, ac.signal);
  t.equal(ev.status, 200, 'the event stream (conntrack --events) is signed too');
  ac.abort();
  process.env.SGEMU_API_CREDENTIALS = 'AKIDSGEMUCLI:wrong';
  await t.rejects(apiRequest(addr, '/v1/status'), { message: /403/ }, 'wrong secret: 403');
  process.env.SGEMU_API_CREDENTIALS = 'no-colon';
  await t.rejects(apiRequest(addr, '/v1/status'), { code: 'BadCredentials' }, 'malformed credentials: a usage error');
});

// A web page of another origin must not change the rules through a loopback API without
// credentials (a cross-site form POST needs no preflight); the dashboard's own origin may.
t.test('POST from a foreign browser origin is refused (403), same origin and no origin are served', async (t) => {
  const { daemon } = await startDaemon(t, 'securityGroups:\n  - id: sg-o\ninstances: []\n', { api: { host: '127.0.0.1', port: 0 } });
  const base = `http://127.0.0.1:${daemon.api!.port}`;
  const body = new URLSearchParams({ Action: 'DescribeSecurityGroups', Version: '2016-11-15' }).toString();
  const post = (origin?: string) => fetch(base + '/', { method: 'POST', body,
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(origin ? { origin } : {}) } });
  const evil = await post('https://evil.example');
  t.equal(evil.status, 403, 'foreign origin refused');
  t.match(await evil.json(), { error: 'CrossOriginRequest' });
  t.equal((await post(base)).status, 200, "the API's own origin (the dashboard) is served");
  t.equal((await post()).status, 200, 'no Origin (CLI, SDK, curl) is served');
  const explain = await fetch(base + '/v1/explain', { method: 'POST', headers: { origin: 'http://localhost:1234', 'content-type': 'application/json' }, body: '{}' });
  t.equal(explain.status, 403, 'also for the JSON routes');
});
