// A service whose backend is a name (`backend: localhost:PORT`), as people write it: the daemon
// resolves it at load, watches the address that listens, and relays through the native relay with
// faults in force, TCP and UDP; a stopped backend is refused, not "down forever". Before this,
// the monitor read a name as an address that never listens: every connection was refused while
// the dev server ran, and faults were skipped (Node relay). `localhost` comes from /etc/hosts
// (no DNS query leaves the machine).

import t from 'tap';
import net from 'node:net';
import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { tcpRelayStatus } from '../../src/native/tcp-relay.js';
import { udpRelayAvailable } from '../../src/native/udp-relay.js';
import type { TcpListener } from '../../src/dataplane/tcp.js';
import type { UdpListener } from '../../src/dataplane/udp.js';
import { echoServer, freshAddr, freePort, noWireFaults, probe, startDaemon, until } from './helpers.js';

const v4 = (await lookup('localhost', { all: true }).catch(() => [])).some((a) => a.address === '127.0.0.1');
const skip = !v4 ? 'localhost does not resolve to 127.0.0.1 here' : false;

/** One instance at `addr`, open to loopback for `proto`, with these service lines. */
const config = (addr: string, proto: 'tcp' | 'udp', services: string[]): string => `
securityGroups:
  - id: sg-app
    ingress: [ { protocol: ${proto}, ports: all, cidr: 127.0.0.0/8 } ]
instances:
  - name: app
    address: ${addr}
    securityGroups: [sg-app]
    services:
${services.map((x) => `      - ${x}\n`).join('')}`;

t.test('TCP: backend localhost:PORT is relayed natively, its faults apply, and a stopped backend is refused', { skip }, async (t) => {
  const addr = freshAddr(), src = freshAddr();
  const plain = await freePort(addr), slow = await freePort(addr);
  const echo = await echoServer(t);
  const { daemon, logs } = await startDaemon(t, config(addr, 'tcp', [
    `{ protocol: tcp, port: ${plain}, backend: "localhost:${echo.port}" }`,
    `{ protocol: tcp, port: ${slow}, backend: "localhost:${echo.port}", faults: [ { type: latency, attributes: { latency: 150 } } ] }`,
  ]));
  t.match(logs.join('\n'), /backend name localhost: .*127\.0\.0\.1/, 'the name is resolved at load and logged');
  t.notMatch(logs.join('\n'), /not applied/, 'no "faults are not applied" warning', { skip: noWireFaults() });
  const l = [...daemon.listeners.values()].find((x) => x.spec.listenPort === plain) as TcpListener;
  t.equal(l.backendAddress(), '127.0.0.1', 'flows go to the address that listens');
  t.same(daemon.plane.listenerStatus().filter((x) => x.listenPort === plain).map((x) => [x.backend, x.backendAddress]), [[`localhost:${echo.port}`, '127.0.0.1']],
    'the status (API, dashboard) shows the name and the address flows go to');
  t.ok(daemon.monitor.isUp(l.backendKey), 'the backend is up (it was "down" for a name before)');
  if (tcpRelayStatus().available) t.ok(l.nativeRelay, 'the native relay serves it');
  t.equal(await probe(src, addr, plain), 'allowed');
  if (tcpRelayStatus().available) {
    const t0 = performance.now();
    t.equal(await probe(src, addr, slow, 2000), 'allowed');
    const ms = performance.now() - t0;
    t.ok(ms >= 140, `the latency fault is in force: ${ms.toFixed(0)} ms for a round trip (asked 150 ms downstream)`);
  }
  await new Promise<void>((r) => echo.server.close(() => r()));
  t.ok(await until(() => !daemon.monitor.isUp(l.backendKey), 2000), 'the stopped backend is seen down');
  t.equal(await probe(src, addr, plain), daemon.refuser.mode === 'raw' ? 'refused' : 'reset', 'and refused');
});

t.test('UDP: backend localhost:PORT relays datagrams both ways', { skip }, async (t) => {
  const addr = freshAddr();
  const port = await freePort(addr, 'udp');
  const back = dgram.createSocket('udp4');
  back.on('message', (m, r) => back.send(m, r.port, r.address));
  await new Promise<void>((r) => back.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => { back.close(() => r()); }));
  const { daemon } = await startDaemon(t, config(addr, 'udp', [`{ protocol: udp, port: ${port}, backend: "localhost:${back.address().port}" }`]));
  const l = [...daemon.listeners.values()].find((x) => x.spec.protocol === 17)!;
  t.ok(daemon.monitor.isUp(l.backendKey), 'the backend is up');
  const c = dgram.createSocket('udp4');
  t.teardown(() => c.close());
  await new Promise<void>((r) => c.bind(0, freshAddr(), () => r()));
  const reply = new Promise<string>((r) => c.once('message', (m) => r(m.toString())));
  c.send('hello', port, addr);
  t.equal(await Promise.race([reply, new Promise<string>((r) => setTimeout(() => r('no reply'), 2000))]), 'hello', 'echoed through the relay');
  if (udpRelayAvailable()) t.ok((l as UdpListener).relay !== null, 'the native UDP relay serves it');
});

t.test('a reload that names another port re-watches and re-targets', { skip }, async (t) => {
  const addr = freshAddr(), src = freshAddr();
  const port = await freePort(addr);
  const a = await echoServer(t), b = await echoServer(t);
  const yaml = (p: number): string => config(addr, 'tcp', [`{ protocol: tcp, port: ${port}, backend: "localhost:${p}" }`]);
  const { daemon, configPath } = await startDaemon(t, yaml(a.port));
  t.equal(await probe(src, addr, port), 'allowed');
  t.equal(a.accepted.length, 1);
  const { writeFileSync } = await import('node:fs');
  writeFileSync(configPath, yaml(b.port));
  t.ok(await daemon.reload(), 'reloaded');
  t.equal(await probe(src, addr, port), 'allowed');
  t.equal(b.accepted.length, 1, 'the new backend got the flow');
  t.equal(a.accepted.length, 1, 'the old one did not');
});

t.test('a 127.0.0.1 backend whose server took ::1 alone: the log says where it listens', async (t) => {
  const srv = net.createServer((c) => c.end());
  const ok = await new Promise<boolean>((r) => { srv.once('error', () => r(false)); srv.listen(0, '::1', () => r(true)); });
  if (!ok) { t.skip('no ::1 here', () => {}); return; }
  t.teardown(() => new Promise<void>((r) => { srv.close(() => r()); }));
  const p = (srv.address() as net.AddressInfo).port;
  const addr = freshAddr();
  const { logs } = await startDaemon(t, config(addr, 'tcp', [`{ protocol: tcp, port: ${await freePort(addr)}, backend: "127.0.0.1:${p}" }`]));
  t.match(logs.join('\n'), new RegExp(`listening .*\\] \\(something listens on \\[::1\\]:${p} instead: .*use backend: \\[::1\\]:${p}`));
});

t.test('a name whose address changes is followed within the refresh period, no reload needed', async (t) => {
  const a = freshAddr(), b = freshAddr();
  const first = await echoServer(t, a);
  let secondSaw = 0;
  const second = net.createServer((c) => { secondSaw++; c.pipe(c); });
  await new Promise<void>((r, j) => { second.once('error', j); second.listen(first.port, b, () => r()); });
  t.teardown(() => new Promise<void>((r) => { second.close(() => r()); }));
  let answer = [a];
  const addr = freshAddr(), src = freshAddr();
  const port = await freePort(addr);
  const { daemon, logs } = await startDaemon(t, config(addr, 'tcp', [`{ protocol: tcp, port: ${port}, backend: "app.test:${first.port}" }`]),
    { lookup: async (name) => name === 'app.test' ? answer : [], namesRefreshMs: 50 });
  t.equal(await probe(src, addr, port), 'allowed');
  t.equal(first.accepted.length, 1, 'the first address served it');
  answer = [b];
  t.ok(await until(() => logs.some((l) => l.includes(`backend name app.test: ${b}`)), 3000), 'the refresh sees the new address');
  const l = () => [...daemon.listeners.values()][0]!;
  t.ok(await until(() => l().spec.backendAddrs?.[0] === b && daemon.monitor.isUp(l().backendKey), 3000), 'the listener has it, and it is up');
  t.equal(await probe(src, addr, port), 'allowed', 'still served');
  t.equal(secondSaw, 1, 'by the new address');
  t.equal(first.accepted.length, 1, 'not by the old one');
});
