// UDP to a backend that binds just before the first datagram (issue #17 item 9, the UDP half):
// iperf3's server binds its UDP port per test and its client sends one datagram within
// milliseconds, inside the 20 ms liveness poll, and does not resend. The listener forwards the
// datagram whatever the last poll said and lets the backend's own kernel decide: bound, it is
// answered; closed, its port unreachable comes back and the client gets the same ICMP.
import t from 'tap';
import dgram from 'node:dgram';
import { freshAddr, freePort, startDaemon, until } from './helpers.js';
import type { Listener } from '../../src/dataplane/listener.js';

const ROUNDS = 50;

/** One datagram from a connected client, no resend: 'allowed' (answered), 'refused' (ECONNREFUSED) or 'timeout'. */
function once(src: string, host: string, port: number, ms: number): Promise<string> {
  return new Promise((resolve) => {
    const c = dgram.createSocket('udp4');
    const done = (o: string) => { clearTimeout(give); c.close(); resolve(o); };
    const give = setTimeout(() => done('timeout'), ms);
    c.on('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNREFUSED' ? 'refused' : e.code ?? 'error'));
    c.on('message', () => done('allowed'));
    c.bind(0, src, () => c.connect(port, host, () => c.send('x')));
  });
}

t.test('UDP: a backend bound 1 ms before the only datagram is never refused; a closed one is', async (t) => {
  const addr = freshAddr(), src = freshAddr();
  const port = await freePort(addr, 'udp');
  const bePort = await freePort('127.0.0.1', 'udp');
  const { daemon } = await startDaemon(t, `securityGroups:
  - id: sg-race
    ingress: [{ protocol: udp, ports: ${port}, cidr: ${src}/32 }]
instances:
  - name: race
    address: ${addr}
    securityGroups: [sg-race]
    services: [{ protocol: udp, port: ${port}, backend: "127.0.0.1:${bePort}" }]
`);
  if (daemon.refuser.mode !== 'raw') { t.skip(`needs exact refusal here: ${daemon.refuser.reason}`, () => {}); return; }
  const l = [...daemon.listeners.values()].find((x) => x.spec.protocol === 17) as Listener;

  t.ok(await until(() => !daemon.monitor.isUp(l.backendKey), 2000), 'the backend is believed down');
  const refusedBefore = daemon.counters.refusedRaw;
  t.equal(await once(src, addr, port, 2000), 'refused', 'closed backend: the client sees ECONNREFUSED on its connected socket');
  t.equal(await once(src, addr, port, 2000), 'refused', 'and again for the next client');
  t.ok(daemon.counters.refusedRaw >= refusedBefore + 2, 'counted as refusals');

  const outcomes: string[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    if (!(await until(() => !daemon.monitor.isUp(l.backendKey), 2000))) { outcomes.push('never-down'); continue; }
    const be = dgram.createSocket('udp4');
    be.on('message', (m, r) => be.send(m, r.port, r.address));
    await new Promise<void>((r) => be.bind(bePort, '127.0.0.1', () => r()));
    await new Promise((r) => setTimeout(r, 1));
    outcomes.push(await once(src, addr, port, 2000));
    await new Promise<void>((r) => be.close(() => r()));
  }
  const tally = outcomes.reduce<Record<string, number>>((a, o) => { a[o] = (a[o] ?? 0) + 1; return a; }, {});
  t.same(tally, { allowed: ROUNDS }, `${ROUNDS} rounds, each one datagram sent 1 ms after the backend bound: ${JSON.stringify(tally)}`);

  t.ok(await until(() => !daemon.monitor.isUp(l.backendKey), 2000));
  t.equal(await once(src, addr, port, 2000), 'refused', 'closed again: refused again');
});

t.test('UDP over IPv6 (::1): a closed backend is refused with ICMPv6, a bound one answered', async (t) => {
  const addr = freshAddr();
  const port = await freePort('::1', 'udp');
  const bePort = await freePort('::1', 'udp');
  const { daemon } = await startDaemon(t, `securityGroups:
  - id: sg-race6
    ingress: [{ protocol: udp, ports: ${port}, cidr: "::1/128" }]
instances:
  - name: race6
    address: ${addr}
    address6: "::1"
    securityGroups: [sg-race6]
    services: [{ protocol: udp, port: ${port}, backend: "[::1]:${bePort}" }]
`);
  if (daemon.refuser.mode !== 'raw') { t.skip(`needs exact refusal here: ${daemon.refuser.reason}`, () => {}); return; }
  const l = [...daemon.listeners.values()].find((x) => x.spec.protocol === 17 && x.spec.family === 6) as Listener;
  t.ok(l, 'an IPv6 UDP listener');
  const ask = (): Promise<string> => new Promise((resolve) => {
    const c = dgram.createSocket('udp6');
    const done = (o: string) => { clearTimeout(give); c.close(); resolve(o); };
    const give = setTimeout(() => done('timeout'), 2000);
    c.on('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNREFUSED' ? 'refused' : e.code ?? 'error'));
    c.on('message', () => done('allowed'));
    c.bind(0, '::1', () => c.connect(port, '::1', () => c.send('x')));
  });
  t.ok(await until(() => !daemon.monitor.isUp(l.backendKey), 2000), 'believed down');
  t.equal(await ask(), 'refused', 'closed: ECONNREFUSED');
  const be = dgram.createSocket('udp6');
  be.on('message', (m, r) => be.send(m, r.port, r.address));
  await new Promise<void>((r) => be.bind(bePort, '::1', () => r()));
  t.teardown(() => be.close());
  t.equal(await ask(), 'allowed', 'bound just now: answered');
});
