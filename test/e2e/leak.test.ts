// No fd or conntrack growth over many short connections (bounded: 3000 connections, < 20 s).
// The 100k-connection figure is a benchmark (scripts/bench/), not a test.

import t from 'tap';
import net from 'node:net';
import { readdirSync } from 'node:fs';
import { freshAddr, freePort, echoServer, startDaemon, sleep } from './helpers.js';

const fds = () => readdirSync('/proc/self/fd').length;

t.test('3000 short connections leave no fds, relays or conntrack entries behind', async (t) => {
  const addr = freshAddr();
  const port = await freePort(addr);
  const echo = await echoServer(t);
  const { daemon } = await startDaemon(t, `
securityGroups:
  - id: sg-l
    ingress: [ { protocol: tcp, ports: ${port}, cidr: 127.0.0.0/8 } ]
instances:
  - name: l
    address: ${addr}
    securityGroups: [sg-l]
    services:
      - { protocol: tcp, port: ${port}, backend: "127.0.0.1:${echo.port}" }
`);
  const one = (src: string) => new Promise<void>((resolve, reject) => {
    const s = net.connect({ host: addr, port, localAddress: src }, () => s.end('x'));
    s.on('data', () => {});
    s.on('close', () => resolve());
    s.on('error', reject);
  });
  const sources = Array.from({ length: 20 }, () => freshAddr());
  // Warm up, then measure.
  for (let i = 0; i < 50; i++) await one(sources[i % 20]!);
  await sleep(100);
  const before = fds();
  const deadline = Date.now() + 20000;
  let n = 0;
  while (n < 3000 && Date.now() < deadline) {
    await Promise.all(Array.from({ length: 20 }, (_, i) => one(sources[i]!)));
    n += 20;
  }
  await sleep(200);
  t.ok(n >= 1000, `${n} connections made`);
  t.equal(daemon.table.count, 0, 'no conntrack entry left');
  const listener = [...daemon.listeners.values()][0]!;
  t.equal(listener.flowCount, 0, 'no relay left');
  t.ok(fds() <= before + 2, `fds: ${before} before, ${fds()} after`);
  t.equal(daemon.counters.accepted >= n, true, 'every connection was accepted and counted');
});
