// HTTP-layer fuzz of the control API (issue 17): request targets, methods, headers and bodies,
// seeded, at least 20k requests within a time budget (a loaded machine runs fewer: the count is
// printed and must reach 20k unless the budget ran out). Every answered request is < 500: the
// server's request handler never throws, whatever the request line says. Two servers share the
// load: the daemon's own (loopback, POST / checked against SigV4 credentials) and one that must
// verify a signature on every route (as beyond loopback), so odd targets also reach verifySigV4.
//
// Requests Node's client accepts go through a keep-alive agent; the rest (bad tokens, raw bytes in
// the target, broken framing, CONNECT) go over a raw socket, one per request, and need an answer
// too, except CONNECT, which Node's server drops without one when nothing handles it.
// A regression subtest pins the cases the adversarial run found: `GET //`, `POST //` answered 500
// and `POST //x` reached the EC2 API.
import t, { type Test } from 'tap';
import http from 'node:http';
import net from 'node:net';
import { ApiServer, routePath } from '../../src/control/api/server.js';
import { signSigV4, type Credentials } from '../../src/control/api/sigv4.js';
import type { Daemon } from '../../src/control/daemon.js';
import { mulberry32 } from '../prng.js';
import { freshAddr, startDaemon } from '../e2e/helpers.js';

const N = 20_000;
const BUDGET_MS = 120_000;
/** Raw-socket requests wait this long for a status line (Node's server answers a parse error at once). */
const RAW_ANSWER_MS = 5_000;
const CREDS: Credentials = { accessKeyId: 'AKIDFUZZ', secretAccessKey: 'fuzz-secret' };

const WORLD = (addr: string) => `
securityGroups:
  - id: sg-web
    name: web
    description: public web tier
    ingress:
      - { protocol: tcp, ports: 8080, cidr: 0.0.0.0/0 }
  - id: sg-spare
    description: unused
instances:
  - { name: web, address: ${addr}, securityGroups: [sg-web] }
`;

const PATHS = ['/', '//', '//x', '///', '//v1/status', '/v1/status', '/v1/status/', '/v1//status', '/v1/status//', '/v1/conntrack',
  '/v1/conntrack?x=1', '/v1/instances', '/v1/security-groups', '/v1/explain', '/v1/events', '/metrics', '/metrics?name[]=x', '/ui',
  '/?Action=DescribeSecurityGroups', '/?', '/#frag', '/%', '/%zz', '/%00', '/%2F%2F', '/..', '/../../etc/passwd', '/./', '/v1/../metrics',
  '*', 'http://127.0.0.1/', 'http://127.0.0.1//', 'HTTP://x/v1/status', 'http://[::1/', 'https://user:pw@h:99999/', 'http:/x', 'x', '?a=b',
  '/' + 'a'.repeat(8000), '/v1/status?' + 'q=1&'.repeat(500)];
const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'TRACE', 'PROPFIND', 'M-SEARCH', 'FOO', 'get', 'post'];
const RAW_METHODS = ['G T', 'GET\u0000', 'PO\tST', '', 'CONNECT', 'ÄÖ', '\r\nGET'];
const BODIES = ['', 'Action=DescribeSecurityGroups&Version=2016-11-15', 'Action=CreateSecurityGroup&GroupName=fz&GroupDescription=d',
  'Action=AuthorizeSecurityGroupIngress&GroupId=sg-spare&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=1&IpPermissions.1.ToPort=1&IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0/8',
  'Action=DeleteSecurityGroup&GroupId=sg-spare', '{"from":"127.0.0.1","to":"web","protocol":"tcp","port":8080}', '{"from":1}', '[]', 'null', '{',
  '%', '\u0000\u0001', 'Action=' + '%41'.repeat(3000), '{"port":"1' + '0'.repeat(400) + '"}'];
const HEADERS: [string, string][] = [
  ['content-type', 'application/x-www-form-urlencoded; charset=utf-8'], ['content-type', 'application/json'], ['content-type', 'text/plain;;;'],
  ['content-type', ''], ['authorization', 'AWS4-HMAC-SHA256 Credential=AKIDFUZZ/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=' + '0'.repeat(64)],
  ['authorization', 'Basic Zm9vOmJhcg=='], ['authorization', 'AWS4-HMAC-SHA256'], ['x-amz-date', '20260101T000000Z'], ['x-amz-date', 'yesterday'],
  ['x-amz-content-sha256', 'UNSIGNED-PAYLOAD'], ['x-amz-content-sha256', 'zz'], ['accept', '*/*'], ['accept-encoding', 'gzip, br'],
  ['connection', 'close'], ['connection', 'upgrade'], ['upgrade', 'websocket'], ['expect', '100-continue'], ['expect', 'nothing-known'],
  ['cookie', 'a=b'], ['x-forwarded-for', '10.0.0.1'], ['host', ''], ['host', 'evil.example'], ['range', 'bytes=0-1'], ['te', 'trailers'],
  ['x-long', 'v'.repeat(4000)],
];

interface Req { method: string; path: string; headers: [string, string][]; body: Buffer; raw: Buffer | null; signed: boolean }

function generate(r: () => number): Req {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
  let path = pick(PATHS);
  const m = r();
  if (m < 0.25) {
    // Mutate: insert slashes, dots, escapes or a random byte somewhere in the target.
    const at = Math.floor(r() * (path.length + 1));
    path = path.slice(0, at) + pick(['/', '//', '.', '%2e', '?', '#', '%', ';', '~', String.fromCharCode(33 + Math.floor(r() * 94))]) + path.slice(at);
  }
  const method = r() < 0.02 ? pick(RAW_METHODS) : r() < 0.5 ? 'POST' : pick(METHODS);
  const headers: [string, string][] = [];
  for (let i = Math.floor(r() * 4); i > 0; i--) headers.push(pick(HEADERS));
  let body = Buffer.from(pick(BODIES));
  if (r() < 0.05) body = Buffer.from(Array.from({ length: Math.floor(r() * 300) }, () => Math.floor(r() * 256)));
  const signed = r() < 0.3;
  let raw: Buffer | null = null;
  const x = r();
  // ~6 % raw: broken framing or bytes no client library would send.
  if (x < 0.06 || RAW_METHODS.includes(method)) {
    const kind = Math.floor(r() * 9);
    const hs = headers.map(([k, v]) => `${k}: ${v}\r\n`).join('');
    const line = `${method} ${path} HTTP/1.1\r\n`;
    raw = Buffer.concat([Buffer.from(
      kind === 0 ? `${line}host: a\r\n${hs}content-length: ${body.length}\r\n\r\n`                         // plain
        : kind === 1 ? `${line}host: a\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n`                  // duplicate length
          : kind === 2 ? `${line}host: a\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n`                         // bad chunk
            : kind === 3 ? `${line}\r\n`                                                                     // no Host
              : kind === 4 ? `${method} ${path}\u0000\u00ff HTTP/1.1\r\nhost: a\r\n\r\n`                    // bytes in the target
                : kind === 5 ? `${line}host: a\r\nbad header\r\n\r\n`
                  : kind === 6 ? `${line}host: a\r\nx-big: ${'b'.repeat(20_000)}\r\n\r\n`                    // 431
                    : kind === 7 ? `${method} ${path} HTTP/9.9\r\nhost: a\r\n\r\n`
                      : `${line}host: a\r\ntransfer-encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n`), body,
    Buffer.from(kind === 8 ? '\r\n0\r\n\r\n' : '')]);
  }
  return { method, path, headers, body, raw, signed };
}

type Answer = { status: number } | { status: 0; why: string };

function viaAgent(agent: http.Agent, port: number, q: Req): Promise<Answer> | null {
  const headers: Record<string, string> = {};
  for (const [k, v] of q.headers) headers[k] = v;
  if (q.signed && !('host' in headers)) {
    try { Object.assign(headers, signSigV4({ method: q.method, url: q.path, host: `127.0.0.1:${port}`, body: q.body }, CREDS)); }
    catch { /* a target that is not valid percent-encoding cannot be signed: sent unsigned */ }
  }
  let req: http.ClientRequest;
  try {
    req = http.request({ host: '127.0.0.1', port, method: q.method, path: q.path, agent, headers: { ...headers, 'content-length': String(q.body.length) } });
  } catch {
    return null;                                        // a target or header Node refuses to send: raw instead
  }
  return new Promise((resolve) => {
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      if (String(res.headers['content-type']).startsWith('text/event-stream')) { req.destroy(); resolve({ status }); return; }
      res.resume();
      res.on('end', () => resolve({ status }));
      res.on('error', () => resolve({ status }));
    });
    req.on('error', (e) => resolve({ status: 0, why: e.message }));
    req.end(q.body);
  });
}

function viaRaw(port: number, src: string, bytes: Buffer): Promise<Answer> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: src });
    let got = '';
    const done = (a: Answer) => { clearTimeout(timer); s.destroy(); resolve(a); };
    const timer = setTimeout(() => done({ status: 0, why: 'no answer' }), RAW_ANSWER_MS);
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3}) /.exec(got);
      if (m) done({ status: Number(m[1]) });
      else if (got.length > 12) done({ status: 0, why: `not HTTP: ${JSON.stringify(got.slice(0, 40))}` });
    });
    s.on('error', (e) => done({ status: 0, why: e.message }));
    s.on('close', () => done({ status: 0, why: 'closed without an answer' }));
    // Written, not ended: Node's server drops the requests of a client that half-closes before
    // the answer (httpAllowHalfOpen is off), and real clients wait.
    s.write(bytes);
  });
}

async function serve(t: Test): Promise<{ daemon: Daemon; open: number; signed: number }> {
  const { daemon } = await startDaemon(t, WORLD(freshAddr()), { api: { host: '127.0.0.1', port: 0 }, apiCredentials: CREDS });
  const strict = new ApiServer(daemon, CREDS, { signAll: true });
  await strict.listen('127.0.0.1', 0);
  t.teardown(() => strict.close());
  return { daemon, open: daemon.api!.port, signed: strict.port };
}

t.test('issue 17: `//` is no route, `//x` does not reach the EC2 API', async (t) => {
  const { daemon } = await startDaemon(t, WORLD(freshAddr()), { api: { host: '127.0.0.1', port: 0 } });
  const open = daemon.api!.port;
  const agent = new http.Agent({ keepAlive: true, localAddress: freshAddr() });
  t.teardown(() => agent.destroy());
  const ask = async (method: string, path: string, body = 'Action=DescribeSecurityGroups&Version=2016-11-15') => {
    const q: Req = { method, path, headers: [], body: Buffer.from(body), raw: null, signed: false };
    return viaAgent(agent, open, q)!;
  };
  t.same(await ask('GET', '//'), { status: 404 }, 'GET // is not a 500');
  t.same(await ask('POST', '//'), { status: 404 }, 'POST // is not a 500 and not the EC2 API');
  t.same(await ask('POST', '//x'), { status: 404 }, 'POST //x is not the EC2 API');
  t.same(await ask('POST', '///v1/explain'), { status: 404 });
  t.same(await ask('POST', '/'), { status: 200 }, 'POST / is the EC2 API');
  t.same(await ask('POST', '/?x=1'), { status: 200 }, 'a query does not change the route');
  t.same(await ask('GET', '/v1/status/'), { status: 200 }, 'a trailing slash is tolerated');
  const form = 'Action=DescribeSecurityGroups&Version=2016-11-15';
  t.same(await viaRaw(open, freshAddr(), Buffer.from(`POST http://127.0.0.1:${open}/ HTTP/1.1\r\nhost: a\r\ncontent-length: ${form.length}\r\n\r\n${form}`)),
    { status: 200 }, 'the absolute form reaches its route');
  t.equal(routePath('//'), '//');
  t.equal(routePath('/v1/status///?a'), '/v1/status');
  t.equal(routePath('*'), '(unparsable)');
  t.equal(routePath('http://[::1/'), '(unparsable)');
});

t.test(`HTTP fuzz: ${N} requests (paths, methods, headers, bodies), no 5xx`, async (t) => {
  const { daemon, open, signed } = await serve(t);
  const src = freshAddr();
  const agents = [0, 1].map(() => new http.Agent({ keepAlive: true, maxSockets: 4, localAddress: src }));
  t.teardown(() => agents.forEach((a) => a.destroy()));
  const r = mulberry32(20261202);
  const statuses = new Map<number, number>();
  const unanswered = new Map<string, number>();
  const bad: string[] = [];
  let raw = 0, toOpenViaAgent = 0;
  const started = Date.now();
  let i = 0;
  // 4 requests in flight: enough to overlap the client's and the server's work on one loop.
  const worker = async () => {
    while (i < N && Date.now() - started < BUDGET_MS) {
      i++;
      const q = generate(r);
      const toSigned = q.signed;
      const port = toSigned ? signed : open;
      let answer = q.raw ? null : viaAgent(agents[toSigned ? 1 : 0]!, port, q);
      if (answer && !toSigned) toOpenViaAgent++;
      if (!answer) {
        raw++;
        answer = viaRaw(port, src, q.raw ?? Buffer.from(`${q.method} ${q.path} HTTP/1.1\r\nhost: a\r\ncontent-length: ${q.body.length}\r\n\r\n${q.body.toString('latin1')}`, 'latin1'));
      }
      const a = await answer;
      statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
      if (a.status >= 500 && bad.length < 10) bad.push(`${a.status} for ${q.method} ${JSON.stringify(q.path).slice(0, 80)} ${JSON.stringify(q.headers).slice(0, 120)}`);
      if (a.status === 0) {
        const key = `${q.method.startsWith('CONNECT') ? 'CONNECT' : 'other'}: ${'why' in a ? a.why : ''}`;
        unanswered.set(key, (unanswered.get(key) ?? 0) + 1);
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  const ms = Date.now() - started;
  t.comment(`${i} requests (${raw} raw) in ${ms} ms: ${JSON.stringify([...statuses].sort((a, b) => a[0] - b[0]))}`);
  t.ok(i >= N || ms >= BUDGET_MS, `ran ${i} requests in ${ms} ms`);
  t.same(bad, [], 'no 5xx');
  t.ok([...statuses.keys()].every((s) => s < 500), 'every status below 500');
  const silent = [...unanswered].filter(([k]) => !k.startsWith('CONNECT'));
  t.same(silent, [], 'every request but CONNECT gets an answer');
  for (const s of [200, 400, 403, 404]) t.ok((statuses.get(s) ?? 0) > 0, `some ${s}`);
  // Not all: Node answers `expect: <unknown>` (417) itself, before the handler.
  t.ok(daemon.api!.requests > toOpenViaAgent / 2, `the daemon's handler saw ${daemon.api!.requests} of the ${toOpenViaAgent} well-formed requests sent to it`);
});
