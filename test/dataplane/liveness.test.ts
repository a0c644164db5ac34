// Backend liveness from the kernel's socket table: no connection is ever made to the backend.

import t from 'tap';
import net from 'node:net';
import dgram from 'node:dgram';
import { BackendMonitor, procHex } from '../../src/dataplane/liveness.js';

t.test('procHex matches the kernel\'s /proc/net encoding', async (t) => {
  t.equal(procHex('127.0.0.1'), '0100007F');
  t.equal(procHex('::1'), '00000000000000000000000001000000');
});

t.test('TCP: down, up when something listens (specific or wildcard), down again; no connection made', async (t) => {
  const m = new BackendMonitor(0);
  t.teardown(() => m.close());
  const changes: boolean[] = [];
  m.onChange((_k, up) => changes.push(up));
  const probeSrv = net.createServer();
  await new Promise<void>((r) => probeSrv.listen(0, '127.0.0.1', () => r()));
  const port = (probeSrv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probeSrv.close(() => r()));
  const key = m.watch({ proto: 6, host: '127.0.0.1', port });
  t.notOk(m.isUp(key), 'nothing listens yet');
  let connections = 0;
  const srv = net.createServer(() => { connections++; });
  await new Promise<void>((r) => srv.listen(port, '127.0.0.1', () => r()));
  m.poll();
  t.ok(m.isUp(key), 'up once listening');
  await new Promise<void>((r) => srv.close(() => r()));
  m.poll();
  t.notOk(m.isUp(key), 'down after close');
  t.same(changes, [true, false]);
  t.equal(connections, 0, 'the backend never saw a probe');
  // A wildcard listener serves 127.0.0.1 too.
  const any = net.createServer();
  await new Promise<void>((r) => any.listen(port, '0.0.0.0', () => r()));
  m.poll();
  t.ok(m.isUp(key), 'a 0.0.0.0 listener counts');
  await new Promise<void>((r) => any.close(() => r()));
  m.markDown(key);
  t.notOk(m.isUp(key), 'markDown takes effect at once');
});

t.test('UDP: a bound socket counts as listening', async (t) => {
  const m = new BackendMonitor(0);
  t.teardown(() => m.close());
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const key = m.watch({ proto: 17, host: '127.0.0.1', port: s.address().port });
  t.ok(m.isUp(key));
  await new Promise<void>((r) => s.close(() => r()));
  m.poll();
  t.notOk(m.isUp(key));
});

t.test('sock_diag and /proc agree on listening sockets', async (t) => {
  const { listeningSockets } = await import('../../src/native/sock-filter.js');
  const { readBound } = await import('../../src/dataplane/liveness.js');
  const diag = listeningSockets(4, 6);
  if (diag === null) { t.skip('native addon not built: /proc is the only source', () => {}); return; }
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => { srv.close(() => r()); }));
  const proc = readBound('/proc/net/tcp', true, Buffer.allocUnsafe(16384));
  const now = listeningSockets(4, 6)!;
  const mine = `0100007F:${(srv.address() as net.AddressInfo).port}`;
  t.ok(now.has(mine), 'sock_diag sees our listener');
  t.ok(proc.has(mine), '/proc sees it too');
  for (const k of proc) t.ok(now.has(k), `sock_diag has ${k}`);
});

t.test('a backend name: up while any of its addresses listens, flows go to the first that does', async (t) => {
  const m = new BackendMonitor(0);
  t.teardown(() => m.close());
  const changes: boolean[] = [];
  m.onChange((_k, up) => changes.push(up));
  const free = net.createServer();
  await new Promise<void>((r) => free.listen(0, '127.0.0.1', () => r()));
  const port = (free.address() as net.AddressInfo).port;
  await new Promise<void>((r) => free.close(() => r()));
  // ::1 first, as /etc/hosts lists localhost on many systems; 127.0.0.2 second.
  const key = m.watch({ proto: 6, host: 'localhost', port, addrs: ['::1', '127.0.0.2'] });
  t.notOk(m.isUp(key), 'nothing listens yet');
  t.equal(m.liveAddress(key), null);
  t.equal(m.label(key), `tcp localhost:${port} (::1, 127.0.0.2)`);
  const v4 = net.createServer();
  await new Promise<void>((r) => v4.listen(port, '127.0.0.2', () => r()));
  m.poll();
  t.ok(m.isUp(key), 'up: the second address listens');
  t.equal(m.liveAddress(key), '127.0.0.2', 'flows go to the address that listens');
  t.equal(m.label(key), `tcp localhost:${port} (127.0.0.2)`);
  const v6 = net.createServer();
  const v6ok = await new Promise<boolean>((r) => { v6.once('error', () => r(false)); v6.listen(port, '::1', () => r(true)); });
  if (v6ok) {
    m.poll();
    t.equal(m.liveAddress(key), '::1', 'both listen: the first address in the resolver\'s order');
    t.same(changes, [true, true], 'a change of address fires onChange (the relay re-targets)');
    await new Promise<void>((r) => v6.close(() => r()));
    m.poll();
    t.equal(m.liveAddress(key), '127.0.0.2', 'back to the one left');
  }
  await new Promise<void>((r) => v4.close(() => r()));
  m.poll();
  t.notOk(m.isUp(key), 'down when none listens');
  t.equal(m.liveAddress(key), null);
  t.not(key, m.watch({ proto: 6, host: 'localhost', port, addrs: ['127.0.0.2'] }), 'other addresses, another key (a reload that resolves differently re-watches)');
});

t.test('a name that did not resolve is never up', async (t) => {
  const m = new BackendMonitor(0);
  t.teardown(() => m.close());
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '0.0.0.0', () => r()));
  t.teardown(() => new Promise<void>((r) => { srv.close(() => r()); }));
  const port = (srv.address() as net.AddressInfo).port;
  const key = m.watch({ proto: 6, host: 'db.invalid', port, addrs: [] });
  t.notOk(m.isUp(key), 'even with a wildcard listener on its port');
  t.equal(m.label(key), `tcp db.invalid:${port} (the name does not resolve)`);
  t.notOk(m.isUp(m.watch({ proto: 6, host: 'db.invalid', port })), 'a name watched without addresses: the same');
});

t.test('a 127.0.0.1 backend that is down while its port listens on ::1: the hint names [::1]', async (t) => {
  const m = new BackendMonitor(0);
  t.teardown(() => m.close());
  const srv = net.createServer();
  const ok = await new Promise<boolean>((r) => { srv.once('error', () => r(false)); srv.listen(0, '::1', () => r(true)); });
  if (!ok) { t.skip('no ::1 here', () => {}); return; }
  t.teardown(() => new Promise<void>((r) => { srv.close(() => r()); }));
  const port = (srv.address() as net.AddressInfo).port;
  const key = m.watch({ proto: 6, host: '127.0.0.1', port });
  t.notOk(m.isUp(key), 'a server on ::1 alone does not serve 127.0.0.1');
  t.equal(m.otherLoopbackListener(key), `[::1]:${port}`);
  t.equal(m.otherLoopbackListener(m.watch({ proto: 6, host: '::1', port })), null, 'none for a backend that is up');
  t.equal(m.otherLoopbackListener(m.watch({ proto: 6, host: '127.0.0.1', port: port === 1 ? 2 : port - 1 })), null, 'none when nothing listens on the port');
});
