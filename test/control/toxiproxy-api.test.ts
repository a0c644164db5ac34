// The Toxiproxy-compatible API (issue 18, SPEC §9) against a real in-process daemon, with real
// sockets on loopback: Toxiproxy 2.x's routes, shapes, status codes, error messages and content
// types (Shopify/toxiproxy api.go); proxies as sgemu services (bytes pass, listen port 0 picks a
// real port); enabled false refuses (and closes open connections), the "timeout" extension makes
// connects time out; a proxy on a config instance obeys that instance's groups; populate, reset;
// browsers refused; proxies never reach the state file or the EC2 API's describe output.

import t, { type Test } from 'tap';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { echoServer, freePort, freshAddr, probe, startDaemon, until } from '../e2e/helpers.js';
import { DEFAULT_TOXIPROXY, RUN_OPTIONS, daemonOptions, optionalValue } from '../../src/cli/run.js';
import { parseCommandArgs } from '../../src/cli/command.js';

const BASE_YAML = (addr: string) => `instances:\n  - { name: base, address: ${addr} }\n`;

async function toxiDaemon(t: Test, yaml = BASE_YAML(freshAddr()), extra = {}) {
  const d = await startDaemon(t, yaml, { toxiproxy: { host: '127.0.0.1', port: 0 }, ...extra });
  const url = `http://127.0.0.1:${d.daemon.toxiproxy!.port}`;
  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const r = await fetch(url + path, {
      method, headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await r.text();
    let json: unknown;
    try { json = text === '' ? undefined : JSON.parse(text); } catch { json = undefined; }
    return { status: r.status, type: r.headers.get('content-type'), text, json: json as any };
  };
  return { ...d, url, call };
}

t.test('routes, shapes, codes and errors as Toxiproxy answers them', async (t) => {
  const echo = await echoServer(t);
  const { call, logs } = await toxiDaemon(t);
  t.ok(logs.some((l) => /^toxiproxy: http:\/\/127\.0\.0\.1:\d+\//.test(l)), 'the log says where the API listens');

  const v = await call('GET', '/version');
  t.equal(v.status, 200);
  t.equal(v.type, 'application/json;charset=utf-8');
  t.match(v.text, /^\{"version": "2\.\d+\.\d+"\}\n$/);

  t.same((await call('GET', '/proxies')).json, {}, 'no proxies: an empty object');

  const listen = `${freshAddr()}:0`;
  const created = await call('POST', '/proxies', { name: 'redis', listen, upstream: `127.0.0.1:${echo.port}` });
  t.equal(created.status, 201, 'create: 201');
  t.equal(created.type, 'application/json');
  t.same(Object.keys(created.json), ['name', 'listen', 'upstream', 'enabled', 'toxics'], 'the proxy shape, no extension fields unless asked');
  t.equal(created.json.enabled, true, 'enabled by default');
  t.same(created.json.toxics, []);
  t.match(created.json.listen, /^127\.\d+\.\d+\.\d+:[1-9]\d*$/, 'listen port 0: the real port is shown');
  t.not(created.json.listen.endsWith(':0'), true);

  const dup = await call('POST', '/proxies', { name: 'redis', listen, upstream: `127.0.0.1:${echo.port}` });
  t.equal(dup.status, 409);
  t.equal(dup.type, 'text/plain; charset=utf-8', 'errors go out as Go\'s http.Error sends them');
  t.equal(dup.text, '{"error":"proxy already exists","status":409}\n');

  t.same((await call('POST', '/proxies', { listen, upstream: '127.0.0.1:1' })).json, { error: 'missing required field: name', status: 400 });
  t.same((await call('POST', '/proxies', { name: 'x', listen })).json, { error: 'missing required field: upstream', status: 400 });
  const bad = await call('POST', '/proxies', 'not json');
  t.equal(bad.status, 400);
  t.match(bad.json.error, /^bad request body: /);
  t.equal((await call('POST', '/proxies', { name: 7, upstream: '127.0.0.1:1' })).status, 400, 'a field of the wrong type: 400');

  const all = await call('GET', '/proxies');
  t.same(Object.keys(all.json), ['redis']);
  t.same(all.json.redis, created.json, 'GET /proxies: keyed by name, each with its toxics');
  t.same((await call('GET', '/proxies/redis')).json, created.json);
  const nf = await call('GET', '/proxies/nope');
  t.equal(nf.status, 404);
  t.same(nf.json, { error: 'proxy not found', status: 404 });

  // Toxics.
  t.same((await call('GET', '/proxies/redis/toxics')).json, [], 'no toxics: []');
  const tx = await call('POST', '/proxies/redis/toxics', { type: 'latency', attributes: { latency: 100 } });
  t.equal(tx.status, 200, 'toxic create: 200 (not 201)');
  t.same(tx.json, { attributes: { latency: 100, jitter: 0 }, name: 'latency_downstream', type: 'latency', stream: 'downstream', toxicity: 1 },
    'defaults: downstream, toxicity 1, name <type>_<stream>, every attribute');
  t.same(Object.keys(tx.json), ['attributes', 'name', 'type', 'stream', 'toxicity']);
  t.same((await call('POST', '/proxies/redis/toxics', { type: 'latency' })).json, { error: 'toxic already exists', status: 409 });
  t.same((await call('POST', '/proxies/redis/toxics', { type: 'nope' })).json, { error: 'invalid toxic type', status: 400 });
  t.same((await call('POST', '/proxies/redis/toxics', { type: 'latency', stream: 'sideways' })).json,
    { error: 'stream was invalid, can be either upstream or downstream', status: 400 });
  const range = await call('POST', '/proxies/redis/toxics', { type: 'bandwidth', attributes: { rate: -1 } });
  t.equal(range.status, 400);
  t.match(range.json.error, /^bad request body: bandwidth\.rate -1/, 'the fault validation (config/faults.ts) speaks through Toxiproxy\'s 400');
  const up = await call('POST', '/proxies/redis/toxics', { name: 'slow', type: 'bandwidth', stream: 'upstream', toxicity: 0.5, attributes: { rate: 64, bogus: 1 } });
  t.same(up.json, { attributes: { rate: 64 }, name: 'slow', type: 'bandwidth', stream: 'upstream', toxicity: 0.5 }, 'unknown attributes are ignored, as Go decoding does');
  t.same((await call('GET', '/proxies/redis/toxics')).json.map((x: { name: string }) => x.name), ['slow', 'latency_downstream'], 'listed upstream chain first');
  t.same((await call('GET', '/proxies/redis/toxics/slow')).json, up.json);
  t.same((await call('GET', '/proxies/redis/toxics/nope')).json, { error: 'toxic not found', status: 404 });
  t.same((await call('GET', '/proxies/nope/toxics/slow')).json, { error: 'proxy not found', status: 404 });

  const patched = await call('PATCH', '/proxies/redis/toxics/latency_downstream', { attributes: { jitter: 10 } });
  t.equal(patched.status, 200);
  t.same(patched.json.attributes, { latency: 100, jitter: 10 }, 'update: attributes merged over the current ones');
  t.equal(patched.json.toxicity, 1, 'toxicity defaults to the current one');
  const posted = await call('POST', '/proxies/redis/toxics/latency_downstream', { toxicity: 0.25 });
  t.equal(posted.json.toxicity, 0.25, 'POST updates too (deprecated upstream, still served)');
  t.same((await call('PATCH', '/proxies/redis/toxics/nope', {})).json, { error: 'toxic not found', status: 404 });
  t.same((await call('GET', '/proxies/redis')).json.toxics.length, 2, 'the proxy shows its toxics');

  const del = await call('DELETE', '/proxies/redis/toxics/slow');
  t.equal(del.status, 204);
  t.equal(del.text, '');
  t.same((await call('DELETE', '/proxies/redis/toxics/slow')).json, { error: 'toxic not found', status: 404 });

  // Unknown routes and methods, as gorilla/mux answers.
  const r404 = await call('GET', '/nope');
  t.equal(r404.status, 404);
  t.equal(r404.text, '404 page not found\n');
  t.equal((await call('DELETE', '/proxies')).status, 405);
  t.equal((await call('GET', '/reset')).status, 405);

  t.equal((await call('DELETE', '/proxies/redis')).status, 204);
  t.same((await call('DELETE', '/proxies/redis')).json, { error: 'proxy not found', status: 404 });
  t.same((await call('GET', '/proxies')).json, {});
});

t.test('a proxy is an sgemu service: bytes pass; enabled false refuses and closes open connections; enabled again passes', async (t) => {
  const echo = await echoServer(t);
  const { call, daemon } = await toxiDaemon(t);
  const host = freshAddr(), src = freshAddr();
  const p = (await call('POST', '/proxies', { name: 'web', listen: `${host}:0`, upstream: `127.0.0.1:${echo.port}` })).json;
  const port = Number(p.listen.split(':')[1]);
  t.equal(await probe(src, host, port), 'allowed', 'through the proxy to the upstream');
  t.ok(daemon.model.instances.some((i) => i.name === `toxiproxy-${host.replace(/\./g, '-')}`), 'on the synthetic instance of its listen address');

  const open = net.connect({ host, port, localAddress: src });
  await new Promise<void>((r) => open.once('connect', () => r()));
  const closed = new Promise<string>((r) => { open.on('error', (e: NodeJS.ErrnoException) => r(e.code ?? 'error')); open.on('close', () => r('closed')); });

  const off = await call('POST', '/proxies/web', { enabled: false });
  t.equal(off.status, 200);
  t.equal(off.json.enabled, false);
  t.equal(off.json.listen, p.listen, 'listen and upstream default to the current ones');
  t.equal(await probe(src, host, port, 1500), 'refused', 'disabled: new connects are refused (the listener is closed: the kernel answers RST)');
  t.match(await closed, /closed|ECONNRESET/, 'disabled: the open connection is closed');

  const on = await call('PATCH', '/proxies/web', { enabled: true });
  t.equal(on.json.enabled, true);
  t.equal(on.json.listen, p.listen, 'the same address and port again');
  t.equal(await probe(src, host, port), 'allowed', 'enabled again: passes');

  // A new upstream restarts the proxy (proxy.go Update): open connections closed, new ones go there.
  const echo2 = await echoServer(t);
  const held = net.connect({ host, port, localAddress: src });
  await new Promise<void>((r) => held.once('connect', () => r()));
  const heldClosed = new Promise<string>((r) => { held.on('error', (e: NodeJS.ErrnoException) => r(e.code ?? 'error')); held.on('close', () => r('closed')); });
  const moved = await call('PATCH', '/proxies/web', { upstream: `127.0.0.1:${echo2.port}` });
  t.equal(moved.json.upstream, `127.0.0.1:${echo2.port}`);
  t.equal(moved.json.listen, p.listen, 'the same listen address');
  t.notOk('sgemu' in moved.json, 'no extension fields in the answer unless a request gave them');
  t.match(await heldClosed, /closed|ECONNRESET/, 'a new upstream closes the open connections');
  t.equal(await probe(src, host, port), 'allowed');
  t.equal(echo2.accepted.length, 1, 'new connections reach the new upstream');
});

t.test('extension "disabled": "timeout": a disabled proxy drops SYNs (connect times out, upstream sees nothing); twin: enabled passes', async (t) => {
  const echo = await echoServer(t);
  const { call } = await toxiDaemon(t);
  const host = freshAddr(), src = freshAddr();
  const p = (await call('POST', '/proxies', { name: 'db', listen: `${host}:0`, upstream: `127.0.0.1:${echo.port}`, sgemu: { disabled: 'timeout' } })).json;
  t.same(p.sgemu, { instance: null, disabled: 'timeout' }, 'the extension is shown back when given');
  const port = Number(p.listen.split(':')[1]);
  t.equal(await probe(src, host, port), 'allowed', 'twin: enabled, the same flow passes');

  const open = net.connect({ host, port, localAddress: src });
  await new Promise<void>((r) => open.once('connect', () => r()));
  const closed = new Promise<string>((r) => { open.on('error', (e: NodeJS.ErrnoException) => r(e.code ?? 'error')); open.on('close', () => r('closed')); });
  t.equal((await call('PATCH', '/proxies/db', { enabled: false })).status, 200);
  t.match(await closed, /closed|ECONNRESET/, 'disabled: the open connection is closed, as Toxiproxy does');
  const before = echo.accepted.length;
  t.equal(await probe(src, host, port, 600), 'timeout', 'disabled with "timeout": connect never completes');
  t.equal(echo.accepted.length, before, 'the upstream accepted nothing');

  // Created disabled with "timeout": listens (and drops) from the start, on a real port.
  const q = (await call('POST', '/proxies', { name: 'db2', listen: `${freshAddr()}:0`, upstream: `127.0.0.1:${echo.port}`, enabled: false, sgemu: { disabled: 'timeout' } })).json;
  t.match(q.listen, /:[1-9]\d*$/);
  const [qh, qp] = q.listen.split(':');
  t.equal(await probe(src, qh, Number(qp), 600), 'timeout');
  t.equal((await call('POST', '/reset')).status, 204);
  t.equal(await probe(src, qh, Number(qp)), 'allowed', 'reset enables every proxy');
});

t.test('extension "instance": the proxy is a service of a config instance and its groups decide per source', async (t) => {
  const echo = await echoServer(t);
  const addr = freshAddr(), good = freshAddr(), bad = freshAddr();
  const port = await freePort(addr);
  const yaml = `
securityGroups:
  - id: sg-web
    ingress:
      - { protocol: tcp, ports: ${port}, cidr: ${good}/32 }
instances:
  - { name: web, address: ${addr}, securityGroups: [sg-web] }
`;
  const { call } = await toxiDaemon(t, yaml);
  const r = await call('POST', '/proxies', { name: 'api', listen: `127.0.0.1:${port}`, upstream: `127.0.0.1:${echo.port}`, sgemu: { instance: 'web' } });
  t.equal(r.status, 201);
  t.equal(r.json.listen, `${addr}:${port}`, 'listens on the instance\'s address, the port from listen');
  t.equal(await probe(good, addr, port), 'allowed', 'the source the group allows passes');
  const before = echo.accepted.length;
  t.equal(await probe(bad, addr, port, 600), 'timeout', 'another source times out, as the group says');
  t.equal(echo.accepted.length, before, 'the upstream accepted nothing for it');

  const unknown = await call('POST', '/proxies', { name: 'x', listen: '127.0.0.1:0', upstream: '127.0.0.1:1', sgemu: { instance: 'nope' } });
  t.equal(unknown.status, 400);
  t.match(unknown.json.error, /sgemu\.instance "nope" is not an instance of the config; instances: web/);
});

t.test('listen addresses: loopback only (0.0.0.0 and other hosts 400); a taken port 500 and nothing changes', async (t) => {
  const echo = await echoServer(t);
  const addr = freshAddr();
  const port = await freePort(addr);
  const yaml = `securityGroups:\n  - { id: sg-any, ingress: [{ protocol: tcp, ports: all, cidr: 0.0.0.0/0 }] }\n` +
    `instances:\n  - name: svc\n    address: ${addr}\n    securityGroups: [sg-any]\n    services: [{ protocol: tcp, port: ${port}, backend: "127.0.0.1:${echo.port}" }]\n`;
  const { call, daemon } = await toxiDaemon(t, yaml);
  for (const listen of ['0.0.0.0:26379', '192.0.2.1:26379', '[::]:1']) {
    const r = await call('POST', '/proxies', { name: 'x', listen, upstream: `127.0.0.1:${echo.port}` });
    t.equal(r.status, 400, `${listen}: 400`);
    t.match(r.json.error, /^bad request body: listen /);
  }
  const taken = await call('POST', '/proxies', { name: 'x', listen: `${addr}:${port}`, upstream: `127.0.0.1:${echo.port}` });
  t.equal(taken.status, 500, 'a port a config service holds: 500, as a failed listen in Toxiproxy');
  t.match(taken.json.error, /^listen tcp .*: bind: address already in use/);
  t.same((await call('GET', '/proxies')).json, {}, 'the proxy was not added');
  t.equal(await probe(freshAddr(), addr, port), 'allowed', 'the config service is untouched');
  t.equal(daemon.listeners.size, 1);
  const local = await call('POST', '/proxies', { name: 'local', listen: 'localhost:0', upstream: `localhost:${echo.port}` });
  t.equal(local.status, 201, 'localhost: 127.0.0.1, as the node client\'s own helper uses');
  t.match(local.json.listen, /^127\.0\.0\.1:\d+$/);
  t.equal(local.json.upstream, `localhost:${echo.port}`, 'upstream shown as given');
});

t.test('populate creates or replaces; errors carry the proxies field; reset removes toxics and enables', async (t) => {
  const echo = await echoServer(t);
  const { call } = await toxiDaemon(t);
  const a = `${freshAddr()}:0`, b = `${freshAddr()}:0`;
  const r = await call('POST', '/populate', [
    { name: 'a', listen: a, upstream: `127.0.0.1:${echo.port}` },
    { name: 'b', listen: b, upstream: `127.0.0.1:${echo.port}`, enabled: false },
  ]);
  t.equal(r.status, 201);
  t.equal(r.type, 'application/json');
  t.same(Object.keys(r.json), ['proxies']);
  t.same(r.json.proxies.map((p: { name: string; enabled: boolean }) => [p.name, p.enabled]), [['a', true], ['b', false]]);
  const aListen = r.json.proxies[0].listen;
  await call('POST', '/proxies/a/toxics', { type: 'latency', attributes: { latency: 5 } });

  // The same listen and upstream: kept with its toxics; another upstream: replaced.
  const again = await call('POST', '/populate', [{ name: 'a', listen: aListen, upstream: `127.0.0.1:${echo.port}` }]);
  t.equal(again.json.proxies[0].toxics.length, 1, 'same listen and upstream: the proxy is kept, toxics too');
  const other = await call('POST', '/populate', [{ name: 'a', listen: aListen, upstream: `localhost:${echo.port}` }]);
  t.equal(other.json.proxies[0].toxics.length, 0, 'another upstream: replaced');
  t.equal(other.json.proxies[0].listen, aListen);

  const missing = await call('POST', '/populate', [{ name: 'c', listen: b }, { upstream: '127.0.0.1:1' }]);
  t.equal(missing.status, 400);
  t.same(missing.json, { error: 'missing required field: upstream at proxy 1', status: 400, proxies: null });
  const dupes = await call('POST', '/populate', [{ name: 'd', upstream: '127.0.0.1:1' }, { name: 'd', upstream: '127.0.0.1:1' }]);
  t.equal(dupes.status, 500);
  t.same(dupes.json, { error: 'duplicate proxy name "d"', status: 500, proxies: null });
  t.equal((await call('POST', '/populate', { name: 'e' })).status, 400, 'not an array: 400');
  t.notOk('c' in (await call('GET', '/proxies')).json, 'a rejected populate changes nothing');

  await call('POST', '/proxies/a/toxics', { type: 'timeout', stream: 'upstream' });
  const reset = await call('POST', '/reset');
  t.equal(reset.status, 204);
  t.equal(reset.text, '');
  const after = (await call('GET', '/proxies')).json;
  t.same([after.a.enabled, after.b.enabled], [true, true], 'every proxy enabled');
  t.same([after.a.toxics, after.b.toxics], [[], []], 'every toxic removed');
  const [bh, bp] = after.b.listen.split(':');
  t.equal(await probe(freshAddr(), bh, Number(bp)), 'allowed', 'the proxy created disabled now passes');
});

t.test('browsers are refused: a Mozilla User-Agent (as Toxiproxy) and a change with a foreign Origin (as our API)', async (t) => {
  const { call } = await toxiDaemon(t);
  const ua = await call('GET', '/proxies', undefined, { 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64)' });
  t.equal(ua.status, 403);
  t.equal(ua.text, 'User agent not allowed\n');
  const foreign = await call('POST', '/proxies', { name: 'x', listen: '127.0.0.1:0', upstream: '127.0.0.1:1' }, { origin: 'http://evil.example' });
  t.equal(foreign.status, 403);
  t.same((await call('GET', '/proxies')).json, {}, 'nothing was created');
  t.equal((await call('POST', '/reset', undefined, { origin: 'http://evil.example' })).status, 403);
  t.equal((await call('POST', '/reset')).status, 204, 'twin: without Origin (curl, clients) it is served');
});

t.test('proxies live in memory: never in the state file or EC2 describe output; a reload keeps them', async (t) => {
  const echo = await echoServer(t);
  const dir = t.testdir({});
  const statePath = join(dir, 'state.json');
  const yaml = `securityGroups:\n  - { id: sg-a, ingress: [] }\ninstances:\n  - { name: base, address: ${freshAddr()}, securityGroups: [sg-a] }\n`;
  const { call, daemon } = await toxiDaemon(t, yaml, { statePath });
  const host = freshAddr();
  const p = (await call('POST', '/proxies', { name: 'web', listen: `${host}:0`, upstream: `127.0.0.1:${echo.port}` })).json;
  const port = Number(p.listen.split(':')[1]);
  // An EC2 change saves the state file (from the base model) and swaps: the proxy stays live.
  await daemon.ec2!.call({ Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-a', 'IpPermissions.1.IpProtocol': 'tcp', 'IpPermissions.1.FromPort': '80', 'IpPermissions.1.ToPort': '80', 'IpPermissions.1.IpRanges.1.CidrIp': '10.0.0.0/8' });
  const state = readFileSync(statePath, 'utf8');
  t.notMatch(state, /toxiproxy/, 'no synthetic VPC, group or instance in the state file');
  t.match(state, /10\.0\.0\.0\/8/, 'the EC2 change is there');
  const groups = await daemon.ec2!.call({ Action: 'DescribeSecurityGroups' });
  t.notMatch(groups, /toxiproxy/, 'DescribeSecurityGroups shows no synthetic group');
  const insts = await daemon.ec2!.call({ Action: 'DescribeInstances' });
  t.notMatch(insts, /toxiproxy/, 'DescribeInstances shows no synthetic instance');
  t.equal(await probe(freshAddr(), host, port), 'allowed', 'the proxy passes after the EC2 change');
  t.ok(await daemon.reload(), 'reload accepted');
  t.equal(await probe(freshAddr(), host, port), 'allowed', 'and after a config reload');
  t.ok(await until(() => daemon.model.instances.some((i) => i.name.startsWith('toxiproxy-')), 100), 'the live model carries the overlay');
});

t.test('sgemu run --toxiproxy [ADDR]: default 127.0.0.1:8474, an address, loopback only, off without it', async (t) => {
  const opts = (...argv: string[]) => daemonOptions(parseCommandArgs(optionalValue(argv, '--toxiproxy', DEFAULT_TOXIPROXY), RUN_OPTIONS).values, () => {});
  t.same(opts('--toxiproxy').toxiproxy, { host: '127.0.0.1', port: 8474 }, 'alone: Toxiproxy\'s default address');
  t.same(opts('--toxiproxy', '--ui').toxiproxy, { host: '127.0.0.1', port: 8474 }, 'followed by another option: the default');
  t.same(opts('--toxiproxy', '127.0.0.2:18474').toxiproxy, { host: '127.0.0.2', port: 18474 });
  t.same(opts('--toxiproxy=9000').toxiproxy, { host: '127.0.0.1', port: 9000 });
  t.equal(opts().toxiproxy, null, 'off unless asked');
  t.throws(() => opts('--toxiproxy', '0.0.0.0:8474'), { code: 'Usage', message: /no authentication/ }, 'beyond loopback: a usage error (exit 2)');
});
