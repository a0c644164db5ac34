// Half-closed TCP flows expire as in a real conntrack (issue 17): a client that sent its FIN while
// the backend never reads used to hold a conntrack slot and two fds for the 5-day established
// timeout. Now a FIN cuts the flow's idle timeout to 60 s (nf_conntrack's close_wait, see
// TCP_HALF_CLOSED_TIMEOUT_MS) and an idle half-closed flow is dropped with both its sockets.
// Twins: an established flow as idle lives on; a half-closed flow that still moves bytes lives on.
// The clock is injected and advanced; sockets are real. Both relays: native and Node streams.

import t, { type Test } from 'tap';
import net from 'node:net';
import { ManualClock } from '../../src/dataplane/clock.js';
import { TCP_HALF_CLOSED_TIMEOUT_MS } from '../../src/dataplane/conntrack/table.js';
import { TcpListener } from '../../src/dataplane/tcp.js';
import { tcpRelayStatus } from '../../src/native/tcp-relay.js';
import { freshAddr, freePort, startDaemon, until } from './helpers.js';

/** A backend that accepts and never reads; the test writes to it at will. */
async function silentBackend(t: Test): Promise<{ port: number; conns: net.Socket[] }> {
  const conns: net.Socket[] = [];
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (c) => { c.on('error', () => {}); conns.push(c); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => { for (const c of conns) c.destroy(); return new Promise<void>((r) => server.close(() => r())); });
  return { port: (server.address() as net.AddressInfo).port, conns };
}

for (const mode of ['native', 'node'] as const) {
  const skip = mode === 'native' && !tcpRelayStatus().available ? `native TCP relay unavailable: ${tcpRelayStatus().reason}` : false;
  t.test(`${mode} relay: a half-closed flow idle for 60 s is dropped with its sockets; established and active ones live`, { skip }, async (t) => {
    t.equal(TCP_HALF_CLOSED_TIMEOUT_MS, 60_000);
    const addr = freshAddr(), src = freshAddr();
    const port = await freePort(addr);
    const backend = await silentBackend(t);
    const clock = new ManualClock(1000);
    const saved = process.env.SGEMU_RELAY;
    if (mode === 'node') process.env.SGEMU_RELAY = 'node';
    const { daemon } = await startDaemon(t, `
securityGroups:
  - id: sg-app
    ingress: [ { protocol: tcp, ports: ${port}, cidr: ${src}/32 } ]
instances:
  - name: app
    address: ${addr}
    securityGroups: [sg-app]
    services: [ { protocol: tcp, port: ${port}, backend: "127.0.0.1:${backend.port}" } ]
`, { clock });
    if (saved === undefined) delete process.env.SGEMU_RELAY; else process.env.SGEMU_RELAY = saved;
    const listener = [...daemon.listeners.values()][0];
    if (!(listener instanceof TcpListener)) throw new Error('expected one TCP listener');
    t.equal(listener.nativeRelay, mode === 'native', `the listener relays through ${mode}`);

    // Three clients, accepted in order: `gone` half-closes and goes silent, `open` stays
    // established and silent, `active` half-closes but its backend keeps sending.
    const connect = async (): Promise<{ s: net.Socket; got: Buffer[]; closed: () => boolean; b: net.Socket }> => {
      const s = net.connect({ host: addr, port, localAddress: src });
      const got: Buffer[] = [];
      let closed = false;
      s.on('data', (d: Buffer) => got.push(d));
      s.on('error', () => {});
      s.on('close', () => { closed = true; });
      t.teardown(() => s.destroy());
      const n = backend.conns.length;
      t.ok(await until(() => backend.conns.length === n + 1, 3000), 'the backend accepted it');
      return { s, got, closed: () => closed, b: backend.conns[n]! };
    };
    const gone = await connect(), open = await connect(), active = await connect();
    gone.s.write('request the backend never reads');
    gone.s.end();
    active.s.end();
    const entry = (c: { s: net.Socket }) => daemon.conntrack().find((e) => e.srcPort === c.s.localPort);
    t.ok(await until(() => entry(gone)?.state === 'FIN_WAIT' && entry(active)?.state === 'FIN_WAIT', 3000), 'the FINs are seen');
    t.equal(entry(gone)?.expiresInSeconds, 60, 'a half-closed flow expires after 60 s idle');
    t.equal(entry(open)?.state, 'ESTABLISHED');
    t.equal(entry(open)?.expiresInSeconds, 432000, 'an established one after 5 days');

    // Bytes from the backend of `active` are activity; the sweep samples them.
    const poke = async (text: string) => {
      const before = Buffer.concat(active.got).length;
      active.b.write(text);
      t.ok(await until(() => Buffer.concat(active.got).length === before + text.length, 3000), 'the active flow moves bytes');
    };
    await poke('still talking');
    clock.advance(59_000); daemon.sweep();
    t.ok(entry(gone), 'after 59 s idle: still tracked');
    await poke('and more');
    clock.advance(2_000); daemon.sweep();
    t.notOk(entry(gone), 'after 61 s idle: the half-closed flow is gone');
    t.ok(entry(active), 'the half-closed flow that moves bytes lives (idle 2 s)');
    t.ok(entry(open), 'the established flow lives');
    t.ok(await until(() => gone.closed(), 3000), 'its client socket is closed');
    t.equal(listener.flowCount, 2, 'the relay let go of it');
    // Its backend socket was closed by the daemon: reading now gives the request and then EOF (or a reset).
    const ended = new Promise<string>((r) => { gone.b.on('end', () => r('end')); gone.b.on('close', () => r('close')); });
    gone.b.resume();
    t.match(await Promise.race([ended, new Promise((r) => setTimeout(() => r('still open'), 3000))]), /end|close/, 'its backend socket is closed');

    clock.advance(TCP_HALF_CLOSED_TIMEOUT_MS); daemon.sweep();
    t.notOk(entry(active), 'the active one goes once it too is silent for 60 s');
    clock.advance(200_000); daemon.sweep();
    t.ok(entry(open), 'the established flow, silent for 263 s, is still tracked');
    t.notOk(open.closed(), 'and still connected');
  });
}
