// A burst of simultaneous SYNs to a service whose backend is down: every allowed client is
// refused at once, none waits for a SYN retransmit (regression: a 4 MiB capture ring held 32
// frames and lost half of a 64-SYN burst; native-notes/pcap-syn-watch.md).

import t from 'tap';
import { freshAddr, freePort, startDaemon, probe } from './helpers.js';

t.test('64 simultaneous allowed SYNs to a down backend: all refused, none after a retransmit', async (t) => {
  const addr = freshAddr();
  const port = await freePort(addr);
  const dead = await freePort();
  const { daemon } = await startDaemon(t, `
securityGroups:
  - id: sg-b
    ingress: [ { protocol: tcp, ports: ${port}, cidr: 127.0.0.0/8 } ]
instances:
  - name: b
    address: ${addr}
    securityGroups: [sg-b]
    services:
      - { protocol: tcp, port: ${port}, backend: "127.0.0.1:${dead}" }
`);
  if (daemon.refuser.mode !== 'raw') { t.skip(`needs exact refusal: ${daemon.refuser.reason}`, () => {}); return; }
  const sources = Array.from({ length: 64 }, () => freshAddr());
  // 900 ms: below Linux's 1 s initial SYN retransmit, so a lost first SYN shows up as a timeout.
  const outcomes = await Promise.all(sources.map((s) => probe(s, addr, port, 900)));
  const counts: Record<string, number> = {};
  for (const o of outcomes) counts[o] = (counts[o] ?? 0) + 1;
  t.same(counts, { refused: 64 }, `outcomes ${JSON.stringify(counts)}`);
});
