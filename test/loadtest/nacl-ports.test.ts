// `sgemu loadtest` with a network ACL that passes the replies to only part of the ephemeral range
// (issue #14, the loadtest remainder): the NACL's egress allows 40000-65535 towards clients, so a
// flow from client port 35000 times out and one from 50000 passes. Explain without the client's
// port answers for the worst port of 32768-60999 (deny); the load test must judge each flow by its
// own port, and then its expectations match the wire: zero mismatches, both outcomes seen.

import t from 'tap';
import dgram from 'node:dgram';
import { freshAddr, freePort, echoServer, startDaemon, sleep } from '../e2e/helpers.js';
import { runLoadtest } from '../../src/loadtest/run.js';
import { apiRequest } from '../../src/cli/command.js';

t.test('a NACL egress allowing only 40000-65535 to the client: loadtest expectations match the wire', async (t) => {
  const addr = freshAddr();
  const tcpPort = await freePort(addr), udpPort = await freePort(addr, 'udp');
  const echo = await echoServer(t);
  const uecho = dgram.createSocket('udp4');
  uecho.on('message', (m, r) => uecho.send(m, r.port, r.address));
  await new Promise<void>((r) => uecho.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => uecho.close());
  const { daemon } = await startDaemon(t, `
networkAcls:
  - id: acl-app
    entries:
      - { ruleNumber: 100, egress: false, protocol: tcp, ports: ${tcpPort}, cidr: 0.0.0.0/0, action: allow }
      - { ruleNumber: 110, egress: false, protocol: udp, ports: ${udpPort}, cidr: 0.0.0.0/0, action: allow }
      - { ruleNumber: 100, egress: true, protocol: tcp, ports: 40000-65535, cidr: 0.0.0.0/0, action: allow }
      - { ruleNumber: 110, egress: true, protocol: udp, ports: 40000-65535, cidr: 0.0.0.0/0, action: allow }
subnets:
  - { id: subnet-app, cidr: 10.0.1.0/24, networkAcl: acl-app }
securityGroups:
  - id: sg-web
    ingress:
      - { protocol: tcp, ports: ${tcpPort}, cidr: 127.0.0.0/8 }
      - { protocol: udp, ports: ${udpPort}, cidr: 127.0.0.0/8 }
instances:
  - name: web
    address: ${addr}
    subnet: subnet-app
    securityGroups: [sg-web]
    services:
      - { protocol: tcp, port: ${tcpPort}, backend: "127.0.0.1:${echo.port}" }
      - { protocol: udp, port: ${udpPort}, backend: "127.0.0.1:${uecho.address().port}" }
`, { api: { host: '127.0.0.1', port: 0 } });
  const api = `127.0.0.1:${daemon.api!.port}`;
  await sleep(100);
  const r = await runLoadtest({
    api, flows: 240, durationS: 20, ratePerS: Infinity, concurrency: 32, timeoutMs: 400, sources: 8, mix: null,
    fetchJson: (p, b) => apiRequest(api, p, b), sampleMs: 500,
  });
  t.equal(r.flows, 240);
  t.equal(r.mismatchCount, 0, `no mismatch: ${JSON.stringify(r.mismatches.slice(0, 3))}`);
  for (const proto of ['tcp', 'udp'] as const) {
    const l = r.listeners.find((x) => x.protocol === proto)!;
    // 32768-39999 of 32768-60999 is a quarter: each side is seen in 120 flows (bounds: > 5 sigma away)
    t.ok(l.outcomes.connected > 0 && l.outcomes.timeout > 0, `${proto}: client ports ≥ 40000 connected, below timed out: ${JSON.stringify(l.outcomes)}`);
    t.equal(l.outcomes.connected + l.outcomes.timeout, l.flows, `${proto}: nothing else`);
  }
  t.ok(r.notes.some((n) => /judged by explain for their own client port/.test(n)), 'the report says flows were judged by their port');
});
