// The Node API (src/node/, SPEC §10) on real loopback sockets: start from a config object,
// authorize/revoke with the EC2 service's codes, flow events, setBackend, reload, stop leaving
// no fd behind. The packed-tarball version of the same story is test/node/pack.test.ts.

import t, { type Test } from 'tap';
import net from 'node:net';
import dgram from 'node:dgram';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { start, expectFlow, AwsError, ConfigErrors, SgemuError, type ConfigFile } from '../../src/index.js';
import { echoServer, freshAddr, freePort, noWireFaults } from '../e2e/helpers.js';

const fds = () => readdirSync('/proc/self/fd').length;

async function world(t: Test) {
  const addr = freshAddr();
  const port = await freePort(addr);
  const echo = await echoServer(t);
  const config: ConfigFile = {
    securityGroups: [{ id: 'sg-api', name: 'api', ingress: [] }],
    instances: [{ name: 'api', address: addr, securityGroups: ['sg-api'], services: [{ protocol: 'tcp', port, backend: `127.0.0.1:${echo.port}` }] }],
  };
  return { addr, port, echo, config };
}

t.test('timeout → authorize → allowed → revoke → timeout, with a flow event; stop leaves no fd', async (t) => {
  const { addr, port, echo, config } = await world(t);
  const before = fds();
  const sg = await start({ config });
  t.teardown(() => sg.stop());
  t.match(sg.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const src = freshAddr();
  t.equal(await expectFlow({ from: src, to: addr, port, timeoutMs: 300 }), 'timeout', 'no rule: timeout');
  t.equal(echo.accepted.length, 0, 'the backend saw nothing');
  t.equal(sg.explain({ from: src, to: addr, protocol: 'tcp', port }).decision, 'deny');

  const added = await sg.authorize('sg-api', 'ingress', { protocol: 'tcp', ports: port, cidr: `${src}/32`, description: 'from the test' });
  t.equal(added.length, 1);
  t.match(added[0], { groupId: 'sg-api', direction: 'ingress', protocol: 'tcp', fromPort: port, toPort: port, cidr: `${src}/32` });
  t.match(added[0]!.ruleId, /^sgr-[0-9a-f]{17}$/);
  const opened = sg.waitFor((e) => e.type === 'open' && e.src === src, 2000);
  t.equal(await sg.expectFlow({ from: src, to: 'api', port, timeoutMs: 1000 }), 'allowed', 'authorized: allowed');
  const ev = await opened;
  t.match(ev, { type: 'open', protocol: 'tcp', instance: 'api', direction: 'ingress', src, dst: addr, dstPort: port });
  t.equal(sg.explain({ from: src, to: addr, protocol: 'tcp', port }).decision, 'allow');

  const removed = await sg.revoke('sg-api', 'ingress', added[0]!.ruleId);
  t.same(removed.map((r) => r.ruleId), [added[0]!.ruleId]);
  const n = echo.accepted.length;
  t.equal(await expectFlow({ from: src, to: addr, port, timeoutMs: 300 }), 'timeout', 'revoked: timeout again');
  t.equal(echo.accepted.length, n, 'the backend saw nothing new');

  await sg.stop();
  await sg.stop();   // idempotent
  t.ok(fds() <= before, `fds: ${before} before start, ${fds()} after stop`);
});

t.test('errors are classes carrying the AWS code, as the EC2 API answers', async (t) => {
  const { port, config } = await world(t);
  const sg = await start({ config, api: false });
  t.teardown(() => sg.stop());
  t.equal(sg.url, null);
  const rule = { protocol: 'tcp' as const, ports: port, cidr: '127.0.0.0/8' };
  await t.rejects(sg.authorize('sg-nope', 'ingress', rule), { name: 'AwsError', code: 'InvalidGroup.NotFound' });
  await t.rejects(sg.authorize('bad', 'ingress', rule), { code: 'InvalidGroupId.Malformed' });
  await t.rejects(sg.authorize('sg-api', 'ingress', { protocol: 'tcp', ports: '90-80', cidr: '127.0.0.0/8' }), { code: 'InvalidParameterValue' });
  await t.rejects(sg.authorize('sg-api', 'ingress', { protocol: 'tcp', ports: 80 }), { code: 'MissingParameter' });
  await t.rejects(sg.authorize('sg-api', 'ingress', { protocol: 'tcp', ports: 80, cidr: '10.0.0.0/33' }), { code: 'InvalidParameterValue' });
  await t.rejects(sg.authorize('sg-api', 'ingress', { protocol: 'tcp', port: 80, cidr: '10.0.0.0/8' } as never), { code: 'UnknownParameter' });
  await sg.authorize('sg-api', 'ingress', rule);
  await t.rejects(sg.authorize('sg-api', 'ingress', rule), { code: 'InvalidPermission.Duplicate' });
  await t.rejects(sg.revoke('sg-api', 'ingress', { protocol: 'tcp', ports: port, cidr: '10.9.0.0/16' }), { code: 'InvalidPermission.NotFound' });
  await t.rejects(sg.revoke('sg-api', 'ingress', 'sgr-00000000000000000'), { code: 'InvalidSecurityGroupRuleId.NotFound' });
  const err = await sg.authorize('sg-nope', 'ingress', rule).catch((e: unknown) => e);
  t.ok(err instanceof AwsError && err instanceof SgemuError, 'instanceof AwsError and SgemuError');
  t.equal((err as AwsError).status, 400);
  // Egress, by content, and revoke by content.
  const eg = await sg.authorize('sg-api', 'egress', { protocol: 'udp', ports: '5000-5010', cidr: ['127.0.0.0/8', '::1/128'] });
  t.equal(eg.length, 2, 'one rule per source, as AWS');
  const gone = await sg.revoke('sg-api', 'egress', { protocol: 'udp', ports: '5000-5010', cidr: '::1/128' });
  t.equal(gone.length, 1);
  t.equal(gone[0]!.cidr, '::1/128');
  t.throws(() => sg.explain({ from: 'nowhere', to: 'api', protocol: 'tcp', port: 1 }), { code: 'Usage' });
});

t.test('start and reload reject bad configs with ConfigErrors; the running rules stay', async (t) => {
  const { addr, port, echo, config } = await world(t);
  await t.rejects(start({ config: { instances: [{ name: 'x', address: '10.0.0.1' }] } }), ConfigErrors);
  await t.rejects(start({ config: 'securityGroups: [ { id: nope } ]' }), { code: 'InvalidParameterValue' });
  await t.rejects(start({} as never), { code: 'Usage' });
  const src = freshAddr();
  const open: ConfigFile = { ...config, securityGroups: [{ id: 'sg-api', ingress: [{ protocol: 'tcp', ports: port, cidr: `${src}/32` }] }] };
  const sg = await start({ config: open, api: false });
  t.teardown(() => sg.stop());
  t.equal(await expectFlow({ from: src, to: `${addr}:${port}` }), 'allowed');
  await t.rejects(sg.reload({ ...open, securityGroups: [{ id: 'sg-api', ingress: [{ protocol: 'tcp', ports: 'x', cidr: '0.0.0.0/0' }] }] }), ConfigErrors);
  t.equal(await expectFlow({ from: src, to: `${addr}:${port}` }), 'allowed', 'rejected reload: rules unchanged');
  await sg.reload(config);
  t.equal(await expectFlow({ from: src, to: `${addr}:${port}`, timeoutMs: 300 }), 'timeout', 'reloaded: denied');
  t.ok(echo.accepted.length >= 2);

  // configFile: reload() re-reads it.
  const dir = t.testdir({});
  const file = join(dir, 'sgemu.yaml');
  const addr2 = freshAddr();
  const port2 = await freePort(addr2);
  const yaml = (cidr: string) => `securityGroups: [ { id: sg-f, ingress: [ { protocol: tcp, ports: ${port2}, cidr: ${cidr} } ] } ]
instances: [ { name: f, address: ${addr2}, securityGroups: [sg-f], services: [ { protocol: tcp, port: ${port2}, backend: "127.0.0.1:${echo.port}" } ] } ]
`;
  writeFileSync(file, yaml('10.0.0.0/8'));
  const sf = await start({ configFile: file, api: false });
  t.teardown(() => sf.stop());
  t.equal(await sf.expectFlow({ from: src, to: 'f', port: port2, timeoutMs: 300 }), 'timeout');
  writeFileSync(file, yaml(`${src}/32`));
  await sf.reload();
  t.equal(await sf.expectFlow({ from: src, to: 'f', port: port2 }), 'allowed');
});

t.test('setBackend down → refused; up → allowed again; flows() iterates events', async (t) => {
  const { addr, port, echo, config } = await world(t);
  const src = freshAddr();
  config.securityGroups = [{ id: 'sg-api', ingress: [{ protocol: 'tcp', ports: port, cidr: '127.0.0.0/8' }] }];
  const sg = await start({ config, api: false });
  t.teardown(() => sg.stop());
  const events: string[] = [];
  const reader = (async () => {
    for await (const e of sg.flows()) {
      events.push(`${e.type}:${e.reason ?? ''}`);
      if (e.type === 'refuse') break;
    }
  })();
  t.equal(await expectFlow({ from: src, to: addr, port }), 'allowed');
  sg.setBackend('api', 'tcp', port, 'down');
  const n = echo.accepted.length;
  t.equal(await expectFlow({ from: src, to: addr, port }), 'refused', 'marked down: refused');
  t.equal(echo.accepted.length, n, 'the backend saw nothing');
  await reader;
  t.ok(events.some((e) => e.startsWith('open')), `events: ${events.join(' ')}`);
  t.ok(events.some((e) => e.startsWith('refuse')), 'a refuse event');
  sg.setBackend('api', 'tcp', port, 'up');
  t.equal(await expectFlow({ from: src, to: addr, port }), 'allowed', 'up again');
  t.throws(() => sg.setBackend('nope', 'tcp', port, 'down'), { code: 'InvalidInstanceID.NotFound' });
  t.throws(() => sg.setBackend('api', 'tcp', 1, 'down'), { code: 'InvalidParameterValue' });
  t.ok(sg.conntrack().every((e) => e.instance === 'api'));
  await t.rejects(sg.waitFor(() => false, 50), { code: 'Timeout' });
  // An iterator open at stop() ends.
  const it = sg.flows();
  const next = it.next();
  await sg.stop();
  t.same(await next, { value: undefined, done: true });
});

t.test('expectFlow: refused with nothing listening, UDP allowed/timeout, bad input', async (t) => {
  const closed = await freePort();
  t.equal(await expectFlow({ to: '127.0.0.1', port: closed }), 'refused');
  await t.rejects(expectFlow({ to: 'localhost', port: 80 }), { code: 'InvalidParameterValue' });
  await t.rejects(expectFlow({ to: '127.0.0.1' }), { code: 'InvalidParameterValue' });
  const u = dgram.createSocket('udp4');
  await new Promise<void>((r) => u.bind(0, '127.0.0.1', () => r()));
  u.on('message', (m, r) => u.send(m, r.port, r.address));
  t.teardown(() => u.close());
  t.equal(await expectFlow({ to: '127.0.0.1', protocol: 'udp', port: u.address().port }), 'allowed');
  const quiet = dgram.createSocket('udp4');
  await new Promise<void>((r) => quiet.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => quiet.close());
  t.equal(await expectFlow({ to: '127.0.0.1', protocol: 'udp', port: quiet.address().port, timeoutMs: 200 }), 'timeout');
  // reset: a server that resets right after accept.
  const rs = net.createServer((c) => c.resetAndDestroy());
  await new Promise<void>((r) => rs.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => rs.close(() => r())));
  t.equal(await expectFlow({ to: '127.0.0.1', port: (rs.address() as net.AddressInfo).port }), 'reset');
});

t.test('start rejects when a configured listener cannot open, closing the rest', async (t) => {
  const { addr, port, config } = await world(t);
  const taken = net.createServer();
  await new Promise<void>((r) => taken.listen(port, addr, () => r()));
  t.teardown(() => new Promise<void>((r) => taken.close(() => r())));
  const before = fds();
  await t.rejects(start({ config }), { code: 'ListenerUnavailable', message: /EADDRINUSE/ });
  t.ok(fds() <= before, `fds: ${before} before, ${fds()} after`);
});

t.test('a UDP service: allowed through the native relay, and stop leaves no fd', async (t) => {
  const addr = freshAddr();
  const u = dgram.createSocket('udp4');
  await new Promise<void>((r) => u.bind(0, '127.0.0.1', () => r()));
  u.on('message', (m, r) => u.send(m, r.port, r.address));
  t.teardown(() => u.close());
  const port = await freePort(addr);
  const before = fds();
  const sg = await start({ api: false, config: {
    securityGroups: [{ id: 'sg-u', ingress: [{ protocol: 'udp', ports: port, cidr: '127.0.0.0/8' }] }],
    instances: [{ name: 'u', address: addr, securityGroups: ['sg-u'], services: [{ protocol: 'udp', port, backend: `127.0.0.1:${u.address().port}` }] }],
  } });
  t.equal(await sg.expectFlow({ from: freshAddr(), to: 'u', protocol: 'udp', port }), 'allowed');
  t.ok(sg.conntrack().some((e) => e.protocol === 'udp' && e.instance === 'u'), 'a udp conntrack entry');
  await sg.stop();
  t.ok(fds() <= before, `fds: ${before} before start, ${fds()} after stop`);
});

t.test('concurrent authorize/revoke calls each return their own rules', async (t) => {
  const { config } = await world(t);
  const sg = await start({ config, api: false });
  t.teardown(() => sg.stop());
  const ports = [7001, 7002, 7003, 7004, 7005];
  const added = await Promise.all(ports.map((p) => sg.authorize('sg-api', 'ingress', { protocol: 'tcp', ports: p, cidr: '127.0.0.0/8' })));
  t.same(added.map((a) => a.map((r) => r.fromPort)), ports.map((p) => [p]));
  const removed = await Promise.all(added.map((a) => sg.revoke('sg-api', 'ingress', a[0]!.ruleId)));
  t.same(removed.map((a) => a.map((r) => r.fromPort)), ports.map((p) => [p]));
});

t.test('faults from test code: addFault makes a reset_peer, faults() lists it, removeFault ends it', async (t) => {
  const { addr, port, config } = await world(t);
  config.securityGroups = [{ id: 'sg-api', ingress: [{ protocol: 'tcp', ports: port, cidr: '127.0.0.0/8' }] }];
  const sg = await start({ config, api: false });
  t.teardown(() => sg.stop());
  const target = `api:tcp/${port}`;
  const f = sg.addFault(target, { type: 'reset_peer', stream: 'upstream', attributes: { timeout: 0 } });
  t.same(f, { name: 'reset_peer_upstream', type: 'reset_peer', stream: 'upstream', toxicity: 1, attributes: { timeout: 0 } });
  t.same(sg.faults().map((x) => `${x.target} ${x.name} ${x.origin}`), [`${target} reset_peer_upstream api`]);
  const seen = await new Promise<string>((resolve) => {
    const c = net.connect({ host: addr, port, localAddress: freshAddr() }, () => c.write('hello'));
    c.on('data', () => resolve('data'));
    c.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    c.on('close', () => resolve('closed'));
  });
  t.equal(seen, 'ECONNRESET', 'the first data is answered by a reset', { skip: noWireFaults() });
  t.throws(() => sg.addFault(target, { type: 'reset_peer', stream: 'upstream' }), { code: 'FaultExists' });
  t.throws(() => sg.addFault('api:tcp/1', { type: 'latency' }), { code: 'FaultTargetNotFound' });
  t.equal(sg.removeFault(target), 1);
  t.equal(await expectFlow({ from: freshAddr(), to: addr, port }), 'allowed', 'removed: allowed again');
});
