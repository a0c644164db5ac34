// A backend that opens its socket just before traffic arrives is never refused (issue #17 item 9):
// the refuser asks the kernel at the moment of the SYN or datagram (sock_diag) instead of trusting
// the last 20 ms liveness poll. Before, iperf3's UDP test through sgemu failed every time with
// "Connection refused", and a dev server restarting had the same window for TCP.

import t from 'tap';
import dgram from 'node:dgram';
import net from 'node:net';
import { freshAddr, freePort, probe, startDaemon, until } from './helpers.js';
import { MODE_DOWN, type Listener } from '../../src/dataplane/listener.js';

const ROUNDS = 6;

t.test('TCP and UDP: the backend opens 1 ms before the first packet, never refused', async (t) => {
  const addr = freshAddr(), src = freshAddr();
  const tcp = await freePort(addr), udp = await freePort(addr);
  const backendTcp = await freePort(), backendUdp = await freePort();
  const { daemon } = await startDaemon(t, `securityGroups:
  - id: sg-race
    ingress:
      - { protocol: tcp, ports: ${tcp}, cidr: ${src}/32 }
      - { protocol: udp, ports: ${udp}, cidr: ${src}/32 }
instances:
  - name: race
    address: ${addr}
    securityGroups: [sg-race]
    services:
      - { protocol: tcp, port: ${tcp}, backend: "127.0.0.1:${backendTcp}" }
      - { protocol: udp, port: ${udp}, backend: "127.0.0.1:${backendUdp}" }
`);
  if (daemon.refuser.mode !== 'raw') { t.skip(`needs exact refusal here: ${daemon.refuser.reason}`, () => {}); return; }
  const ls = [...daemon.listeners.values()] as Listener[];
  const lt = ls.find((l) => l.spec.protocol === 6)!, lu = ls.find((l) => l.spec.protocol === 17)!;
  t.equal(await probe(src, addr, tcp, 1500), 'refused', 'twin: with nothing listening the client is refused');

  const tcpOutcomes: string[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    t.ok(await until(() => lt.mode === MODE_DOWN, 2000), 'listener in backend-down mode');
    const server = net.createServer((c) => { c.on('error', () => {}); c.pipe(c); });
    await new Promise<void>((r) => server.listen(backendTcp, '127.0.0.1', () => r()));
    await new Promise((r) => setTimeout(r, 1));
    tcpOutcomes.push(await probe(src, addr, tcp, 3000));
    await new Promise<void>((r) => { server.close(() => r()); });
  }
  t.notOk(tcpOutcomes.includes('refused'), `TCP never refused while the backend listened: ${tcpOutcomes.join(', ')}`);
  t.ok(tcpOutcomes.every((o) => o === 'allowed'), 'every connection reached the backend');

  const udpOutcomes: string[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    t.ok(await until(() => !daemon.monitor.isUp(lu.backendKey), 2000), 'UDP backend believed down (the UDP listener forwards anyway: udp-backend-race.test.ts)');
    const be = dgram.createSocket('udp4');
    be.on('message', (m, r) => be.send(m, r.port, r.address));
    await new Promise<void>((r) => be.bind(backendUdp, '127.0.0.1', () => r()));
    await new Promise((r) => setTimeout(r, 1));
    // A client that resends every 200 ms, as a UDP client does (iperf3, DNS): refused or answered.
    const outcome = await new Promise<string>((resolve) => {
      const c = dgram.createSocket('udp4');
      let timer: NodeJS.Timeout | null = null;
      const done = (o: string) => { if (timer) clearInterval(timer); clearTimeout(give); c.close(); resolve(o); };
      const give = setTimeout(() => done('timeout'), 3000);
      c.on('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNREFUSED' ? 'refused' : e.code ?? 'error'));
      c.on('message', () => done('allowed'));
      c.bind(0, src, () => c.connect(udp, addr, () => { c.send('x'); timer = setInterval(() => c.send('x'), 200); }));
    });
    udpOutcomes.push(outcome);
    await new Promise<void>((r) => be.close(() => r()));
  }
  t.notOk(udpOutcomes.includes('refused'), `UDP never refused while the backend was bound: ${udpOutcomes.join(', ')}`);
  t.ok(udpOutcomes.every((o) => o === 'allowed'), 'every client was answered');
  // How many SYNs fell in the window (the refuser asked the kernel and stood back) varies with the
  // 20 ms poll: 0 to a few of 6. UDP no longer asks (it forwards, and the backend's ICMP decides),
  // so this is information, not the test; "never refused" above is.
  t.comment(`TCP refusals avoided by asking the kernel: ${daemon.counters.refusalsAvoided}`);
});
