// Whole daemons on loopback: the three outcomes of SPEC §1 for TCP, per-source rules, bytes
// unchanged, half-close and resets, reload within 50 ms, tracked vs untracked on revoke, IPv6,
// outbound entries, and the conntrack entry. Every drop test has a twin in which a rule allows
// the same flow and it passes.

import t from 'tap';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { freshAddr, freePort, echoServer, probe, isRoot, startDaemon, write, sleep, until } from './helpers.js';

const ROOT = isRoot();

function config(addr: string, port: number, backendPort: number, ingress: string, extra = ''): string {
  return `
securityGroups:
  - id: sg-app
    description: test
    ingress:
${ingress}
instances:
  - name: app
    address: ${addr}
    securityGroups: [sg-app]
    services:
      - { protocol: tcp, port: ${port}, backend: "127.0.0.1:${backendPort}" }
${extra}`;
}

t.test('per-source rules: the allowed source passes, the denied one times out and the backend sees nothing', async (t) => {
  const addr = freshAddr(), good = freshAddr(), bad = freshAddr();
  const port = await freePort(addr);
  const echo = await echoServer(t);
  await startDaemon(t, config(addr, port, echo.port, `      - { protocol: tcp, ports: ${port}, cidr: ${good}/32 }`));
  t.equal(await probe(good, addr, port), 'allowed', 'allowed source gets its bytes back');
  const before = echo.accepted.length;
  t.equal(await probe(bad, addr, port, 600), 'timeout', 'denied source: connect never completes');
  t.equal(echo.accepted.length, before, 'the backend accepted nothing for the denied source');
});

t.test('allowed + backend down is refused at once; both liveness transitions', async (t) => {
  const addr = freshAddr(), src = freshAddr();
  const port = await freePort(addr);
  const deadPort = await freePort();
  const { daemon } = await startDaemon(t, config(addr, port, deadPort, `      - { protocol: tcp, ports: ${port}, cidr: ${src}/32 }`));
  const expected = daemon.refuser.mode === 'raw' ? 'refused' : 'reset';
  if (!ROOT) t.comment('not root: checking the accept-then-reset fallback');
  const t0 = performance.now();
  t.equal(await probe(src, addr, port, 1500), expected, `backend down → ${expected}`);
  t.ok(performance.now() - t0 < 500, 'the answer is fast (< 500 ms), not a timeout');

  // The backend comes up: the first connection after the monitor's poll works.
  const srv = net.createServer((c) => c.pipe(c));
  await new Promise<void>((r) => srv.listen(deadPort, '127.0.0.1', () => r()));
  await sleep(60);
  t.equal(await probe(src, addr, port), 'allowed', 'backend up → allowed');
  // ...and goes down again.
  await new Promise<void>((r) => srv.close(() => r()));
  await sleep(60);
  t.equal(await probe(src, addr, port, 1500), expected, `backend down again → ${expected}`);
  // A denied source stays silent even while the backend is down.
  t.equal(await probe(freshAddr(), addr, port, 600), 'timeout', 'denied source still times out');
});

t.test('bytes unchanged both ways: an 8 MiB transfer checked by hash', async (t) => {
  const addr = freshAddr(), src = freshAddr();
  const port = await freePort(addr);
  const echo = await echoServer(t);
  await startDaemon(t, config(addr, port, echo.port, `      - { protocol: tcp, ports: ${port}, cidr: 127.0.0.0/8 }`));
  const data = randomBytes(8 << 20);
  const got = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = net.connect({ host: addr, port, localAddress: src, allowHalfOpen: true }, () => { s.end(data); });
    s.on('data', (d) => chunks.push(d));
    s.on('end', () => resolve(Buffer.concat(chunks)));
    s.on('error', reject);
  });
  t.equal(got.length, data.length, 'every byte came back');
  t.equal(createHash('sha256').update(got).digest('hex'), createHash('sha256').update(data).digest('hex'), 'same hash');
});

t.test('half-close is forwarded as a FIN and the other direction goes on; a backend RST reaches the client', async (t) => {
  const addr = freshAddr(), src = freshAddr();
  const port = await freePort(addr);
  // Backend: on the client's FIN, waits, then sends "late" and closes; on "rst" resets.
  const backend = net.createServer({ allowHalfOpen: true }, (c) => {
    c.on('error', () => {});
    c.on('data', (d) => { if (d.toString() === 'rst') c.resetAndDestroy(); });
    c.on('end', () => { setTimeout(() => c.end('late'), 50); });
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => backend.close(() => r())));
  const bport = (backend.address() as net.AddressInfo).port;
  await startDaemon(t, config(addr, port, bport, `      - { protocol: tcp, ports: ${port}, cidr: 127.0.0.0/8 }`));

  const late = await new Promise<string>((resolve, reject) => {
    let text = '';
    const s = net.connect({ host: addr, port, localAddress: src, allowHalfOpen: true }, () => s.end());
    s.on('data', (d) => { text += d; });
    s.on('end', () => resolve(text));
    s.on('error', reject);
  });
  t.equal(late, 'late', 'after our FIN the backend could still send, then its FIN arrived');

  const code = await new Promise<string>((resolve) => {
    const s = net.connect({ host: addr, port, localAddress: src }, () => s.write('rst'));
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    s.on('close', () => resolve('closed'));
  });
  t.equal(code, 'ECONNRESET', 'the backend reset reached the client as a reset');
});

t.test('reload flips allow → deny for new connections within 50 ms; a tracked flow keeps working', async (t) => {
  const addr = freshAddr(), src = freshAddr();
  const port = await freePort(addr);
  const echo = await echoServer(t);
  const allow = config(addr, port, echo.port, `      - { protocol: tcp, ports: ${port}, cidr: ${src}/32 }`);
  const { daemon, configPath } = await startDaemon(t, allow);
  t.equal(await probe(src, addr, port), 'allowed');

  const held = net.connect({ host: addr, port, localAddress: src });
  await new Promise((r) => held.once('connect', r));
  const echoOnce = (s: net.Socket, msg: string, ms = 500) => new Promise<string>((resolve) => {
    const timer = setTimeout(() => { s.off('data', on); resolve('silence'); }, ms);
    const on = (d: Buffer) => { clearTimeout(timer); resolve(d.toString()); };
    s.once('data', on);
    s.write(msg);
  });
  t.equal(await echoOnce(held, 'a'), 'a');

  write(configPath, config(addr, port, echo.port, `      - { protocol: tcp, ports: ${port + 1 > 65535 ? 1 : port + 1}, cidr: ${src}/32 }`));
  const t0 = performance.now();
  t.ok(await daemon.reload(), 'reload accepted');
  const took = performance.now() - t0;
  t.ok(took < 50, `the swap took ${took.toFixed(1)} ms (< 50 ms)`);
  t.equal(await probe(src, addr, port, 500), 'timeout', 'a new connection is now dropped');
  t.equal(await echoOnce(held, 'b'), 'b', 'the tracked flow (narrow /32 rule) keeps working');

  // An invalid config is rejected and the running rules stay.
  write(configPath, 'securityGroups: [ { id: nope } ]\n');
  t.notOk(await daemon.reload(), 'invalid config rejected');
  t.equal(daemon.reloadFailures, 1);
  t.equal(await echoOnce(held, 'c'), 'c', 'still working after a rejected reload');
  held.destroy();
});

t.test('an untracked flow (0.0.0.0/0 in, all open out) is cut at once when its rule goes', async (t) => {
  const addr = freshAddr(), src = freshAddr();
  const port = await freePort(addr);
  const echo = await echoServer(t);
  const open = config(addr, port, echo.port, `      - { protocol: tcp, ports: ${port}, cidr: 0.0.0.0/0 }`);
  const { daemon, configPath } = await startDaemon(t, open);
  const s = net.connect({ host: addr, port, localAddress: src });
  s.on('error', () => {});
  await new Promise((r) => s.once('connect', r));
  await sleep(20);
  const entry = daemon.conntrack().find((e) => e.srcPort === s.localPort);
  t.equal(entry?.tracked, false, 'AWS would not track this flow');
  write(configPath, config(addr, port, echo.port, `      - { protocol: tcp, ports: 1, cidr: ${src}/32 }`));
  await daemon.reload();
  const reply = await new Promise<string>((resolve) => {
    const timer = setTimeout(() => resolve('silence'), 400);
    s.once('data', (d) => { clearTimeout(timer); resolve(d.toString()); });
    s.write('x');
  });
  t.equal(reply, 'silence', 'no byte passes any more');
  t.equal(daemon.counters.untrackedCut, 1, 'counted as an untracked cut');
  s.destroy();
});

t.test('IPv6 on ::1: allowed with a ::1/128 rule; the same flow times out without it', async (t) => {
  const addr = freshAddr();
  const port = await freePort('::1');
  const echo = await echoServer(t);
  const v6 = (cidr: string) => `
securityGroups:
  - id: sg-six
    ingress:
      - { protocol: tcp, ports: ${port}, cidr: "${cidr}" }
instances:
  - name: six
    address: ${addr}
    address6: "::1"
    securityGroups: [sg-six]
    services:
      - { protocol: tcp, port: ${port}, backend: "127.0.0.1:${echo.port}" }
`;
  const { daemon, configPath } = await startDaemon(t, v6('::1/128'));
  t.equal(await probe('::1', '::1', port), 'allowed', 'IPv6 client allowed by ::1/128');
  write(configPath, v6('2001:db8::/32'));
  await daemon.reload();
  t.equal(await probe('::1', '::1', port, 600), 'timeout', 'IPv6 client denied: timeout');
});

t.test('outbound entries: allowed egress reaches the other instance; denied egress times out', async (t) => {
  const web = freshAddr(), db = freshAddr(), laptop = freshAddr();
  const dbPort = await freePort(db), outPort = await freePort(web), outPort2 = await freePort(web);
  const echo = await echoServer(t);
  const yaml = `
securityGroups:
  - id: sg-web
    egress:
      - { protocol: tcp, ports: 5432, groups: [sg-db] }
  - id: sg-db
    ingress:
      - { protocol: tcp, ports: 5432, groups: [sg-web] }
  - id: sg-closed
    egress: []
instances:
  - name: web
    address: ${web}
    securityGroups: [sg-web]
    outbound:
      - { protocol: tcp, port: ${outPort}, to: "db:5432" }
  - name: other
    address: ${freshAddr()}
    securityGroups: [sg-closed]
    outbound:
      - { protocol: tcp, port: ${outPort2}, to: "db:5432" }
  - name: db
    address: ${db}
    securityGroups: [sg-db]
    services:
      - { protocol: tcp, port: 5432, listenPort: ${dbPort}, backend: "127.0.0.1:${echo.port}" }
`;
  const { daemon } = await startDaemon(t, yaml);
  t.equal(await probe(laptop, web, outPort), 'allowed', 'web → db through the outbound entry');
  t.equal(await probe(laptop, db, dbPort, 600), 'timeout', 'db is closed to the laptop directly');
  const otherAddr = daemon.model.instances.find((i) => i.name === 'other')!.address;
  t.equal(await probe(laptop, otherAddr, outPort2, 600), 'timeout', 'egress [] → the app\'s connect times out');
});

t.test('the conntrack entry has the SPEC §5 fields while a connection is open', async (t) => {
  const addr = freshAddr(), src = freshAddr();
  const port = await freePort(addr);
  const echo = await echoServer(t);
  const { daemon } = await startDaemon(t, config(addr, port, echo.port, `      - { protocol: tcp, ports: ${port}, cidr: ${src}/32 }`));
  const s = net.connect({ host: addr, port, localAddress: src });
  await new Promise((r) => s.once('connect', r));
  s.write('hello');
  await new Promise((r) => s.once('data', r));
  const e = daemon.conntrack().find((x) => x.srcPort === s.localPort);
  t.ok(e, 'entry present');
  t.match(e, { protocol: 'tcp', instance: 'app', direction: 'ingress', state: 'ESTABLISHED', tracked: true,
    src, dst: addr, dstPort: port, bytesIn: 5, bytesOut: 5 });
  t.ok(e!.expiresInSeconds > 431990, 'expires after AWS\'s 432000 s idle timeout');
  s.destroy();
  await sleep(50);
  t.notOk(daemon.conntrack().find((x) => x.srcPort === s.localPort), 'gone once closed');
});

t.test('a full conntrack table makes new flows time out, like a full kernel table; room again lets them in', async (t) => {
  const addr = freshAddr(), src = freshAddr();
  const port = await freePort(addr);
  const echo = await echoServer(t);
  const { daemon } = await startDaemon(t, config(addr, port, echo.port, `      - { protocol: tcp, ports: ${port}, cidr: 127.0.0.0/8 }`), { conntrackMax: 1 });
  const held = net.connect({ host: addr, port, localAddress: src });
  held.on('error', () => {});
  await new Promise((r) => held.once('connect', r));
  await sleep(30);
  t.equal(daemon.table.count, 1, 'one tracked flow fills the table');
  t.equal(await probe(freshAddr(), addr, port, 600), 'timeout', 'the next flow times out');
  held.destroy();
  await sleep(60);
  t.equal(await probe(freshAddr(), addr, port), 'allowed', 'with room again, new flows pass');
});

t.test('a connection whose handshake completed before a revoke but that is accepted after it is an existing (tracked) flow', async (t) => {
  // The kernel completes handshakes on its own; the daemon accepts them later. A rule revoked in
  // between must not turn a connection that existed at the change into a new, denied one. Made
  // deterministic with the Node relay (SGEMU_RELAY=node: libuv accepts only when the event loop
  // polls): the loop is held while a client in another process connects, the swap runs inside the
  // same synchronous block, and only then can the daemon accept. The exact filter in force would
  // have dropped that SYN, so the daemon books the connection under the previous policy. (The
  // native relay accepts on its own thread; its swap drains: test/native/tcp-relay.test.ts.)
  process.env['SGEMU_RELAY'] = 'node';
  t.teardown(() => { delete process.env['SGEMU_RELAY']; });
  const addr = freshAddr(), src = freshAddr();
  const port = await freePort(addr);
  const echo = await echoServer(t);
  const allow = config(addr, port, echo.port, `      - { protocol: tcp, ports: ${port}, cidr: ${src}/32 }`);
  const none = config(addr, port, echo.port, `      - { protocol: tcp, ports: 1, cidr: ${src}/32 }`);
  const { daemon, configPath } = await startDaemon(t, allow);
  const client = spawn(process.execPath, ['-e', `
    const net = require('node:net');
    process.stdin.once('data', () => {
      const s = net.connect({ host: '${addr}', port: ${port}, localAddress: '${src}' });
      s.on('error', (e) => { console.log('error ' + e.code); process.exit(0); });
      s.on('connect', () => setTimeout(() => s.write('still'), 600));
      s.on('data', (d) => { console.log('reply ' + d); process.exit(0); });
      s.on('close', () => { console.log('closed'); process.exit(0); });
      setTimeout(() => { console.log('silence'); process.exit(0); }, 3000);
    });
    console.log('ready');
  `], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => { client.kill(); });
  let out = '';
  client.stdout!.on('data', (d) => { out += d; });
  t.ok(await until(() => out.includes('ready'), 10_000, 10), 'the client process is ready');
  const accepted0 = daemon.counters.accepted;
  client.stdin!.write('go\n');
  const t0 = Date.now();
  while (Date.now() - t0 < 400) { /* hold the loop: the client's handshake completes in the kernel */ }
  write(configPath, none);
  const reloaded = daemon.reload();      // its swap runs now, before the loop can accept
  t.equal(daemon.counters.accepted, accepted0, 'not accepted yet when the rules changed');
  t.ok(await reloaded, 'reloaded to a rule that no longer admits the client');
  await new Promise((r) => client.once('exit', r));
  t.equal(out.trim().split('\n').pop(), 'reply still', 'the connection that existed at the change lives on (tracked)');
  const ct = daemon.conntrack();
  t.equal(daemon.counters.accepted, accepted0 + 1, 'accepted once, after the swap');
  t.ok(ct.length <= 1, 'conntrack holds at most that flow');
});
