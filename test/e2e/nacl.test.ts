// Network ACLs on the wire (issue 14): whole daemons on loopback. The ephemeral-port pitfall (the
// security group allows, the NACL's egress lacks the client's port range → the client times out;
// the entry added → allowed), the client's exact port decided by the kernel filter, a deny entry
// numbered before an allow, a UDP reply denied, a NACL change stopping an established tracked
// flow, and traffic inside one subnet crossing no NACL. Every drop has its allowed twin.

import t, { type Test } from 'tap';
import net from 'node:net';
import dgram from 'node:dgram';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { freshAddr, freePort, echoServer, probe, startDaemon, write, sleep, isRoot } from './helpers.js';

/** One instance `web` in subnet-app behind acl-app, SG open to 127/8 on `port`. */
function config(addr: string, port: number, backend: number, entries: string, proto = 'tcp', listen = port): string {
  return `
networkAcls:
  - id: acl-app
    entries:
${entries}
subnets:
  - { id: subnet-app, cidr: 10.0.1.0/24, networkAcl: acl-app }
securityGroups:
  - id: sg-web
    ingress:
      - { protocol: ${proto}, ports: ${port}, cidr: 127.0.0.0/8 }
instances:
  - name: web
    address: ${addr}
    subnet: subnet-app
    securityGroups: [sg-web]
    services:
      - { protocol: ${proto}, port: ${port}, listenPort: ${listen}, backend: "127.0.0.1:${backend}" }
`;
}

const IN_ALL = (port: number | string, proto = 'tcp') => `      - { ruleNumber: 100, egress: false, protocol: ${proto}, ports: ${port}, cidr: 0.0.0.0/0, action: allow }\n`;
const OUT = (n: number, ports: string, proto = 'tcp', action = 'allow', cidr = '0.0.0.0/0') =>
  `      - { ruleNumber: ${n}, egress: true, protocol: ${proto}, ports: ${ports}, cidr: ${cidr}, action: ${action} }\n`;

/** Connect from src:srcPort (0 = kernel's choice) and classify as probe() does. */
function probeFrom(src: string, srcPort: number, host: string, port: number, timeoutMs = 500): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, localAddress: src, localPort: srcPort || undefined });
    let done = false;
    const finish = (o: string) => { if (!done) { done = true; clearTimeout(timer); s.destroy(); resolve(o); } };
    const timer = setTimeout(() => finish('timeout'), timeoutMs);
    s.on('connect', () => { s.write('ping\n'); s.once('data', (d) => finish(d.toString() === 'ping\n' ? 'allowed' : 'garbled')); });
    s.on('error', (e: NodeJS.ErrnoException) => finish(e.code === 'ECONNREFUSED' ? 'refused' : e.code === 'ECONNRESET' ? 'reset' : e.code ?? 'error'));
  });
}

t.test('ephemeral-port pitfall: SG allows, NACL egress lacks 1024-65535 → timeout; the entry added → allowed', async (t) => {
  const addr = freshAddr(), client = freshAddr();
  const port = await freePort(addr);
  const echo = await echoServer(t);
  const { daemon, configPath } = await startDaemon(t, config(addr, port, echo.port, IN_ALL(port) + OUT(100, '80')));
  t.equal(await probe(client, addr, port, 600), 'timeout', 'the reply would go to the client\'s ephemeral port: dropped, the client times out');
  t.equal(echo.accepted.length, 0, 'the backend accepted nothing');
  t.equal(daemon.counters.rejectedUser, 0, 'dropped by the kernel filter, not reset in userland');
  write(configPath, config(addr, port, echo.port, IN_ALL(port) + OUT(100, '80') + OUT(110, '1024-65535')));
  t.ok(await daemon.reload(), 'reload with egress 1024-65535');
  t.equal(await probe(client, addr, port), 'allowed', 'with the ephemeral range allowed out, the same flow passes');
  // The request side: no ingress entry for the port → timeout as well (twin of the line above).
  write(configPath, config(addr, port, echo.port, IN_ALL(port === 1 ? 2 : 1) + OUT(110, '1024-65535')));
  await daemon.reload();
  t.equal(await probe(client, addr, port, 600), 'timeout', 'no inbound NACL entry for the port: timeout');
});

t.test('the kernel filter checks the client\'s exact port (the port replies go to)', async (t) => {
  const addr = freshAddr(), client = freshAddr();
  const port = await freePort(addr);
  const echo = await echoServer(t);
  const okPort = await freePort(client);
  let badPort = await freePort(client);
  while (badPort === okPort) badPort = await freePort(client);
  const { daemon } = await startDaemon(t, config(addr, port, echo.port, IN_ALL(port) + OUT(100, `${okPort}`)));
  t.equal(await probeFrom(client, badPort, addr, port), 'timeout', `from port ${badPort}: the reply is denied, timeout`);
  t.equal(await probeFrom(client, okPort, addr, port), 'allowed', `from port ${okPort}: allowed`);
  t.equal(echo.accepted.length, 1, 'the backend saw only the allowed connection');
  t.equal(daemon.counters.rejectedUser, 0, 'no userland reset: the kernel decided');
});

t.test('a deny entry numbered before an allow wins; numbered after, the allow wins', async (t) => {
  const addr = freshAddr(), bad = freshAddr(), good = freshAddr();
  const port = await freePort(addr);
  const echo = await echoServer(t);
  const deny = (n: number) => `      - { ruleNumber: ${n}, egress: false, protocol: tcp, ports: ${port}, cidr: ${bad}/32, action: deny }\n`;
  const { daemon, configPath } = await startDaemon(t, config(addr, port, echo.port, deny(50) + IN_ALL(port) + OUT(100, '1024-65535')));
  t.equal(await probe(bad, addr, port, 600), 'timeout', 'rule 50 denies the source before rule 100 allows all');
  t.equal(await probe(good, addr, port), 'allowed', 'another source passes rule 100');
  write(configPath, config(addr, port, echo.port, deny(150) + IN_ALL(port) + OUT(100, '1024-65535')));
  await daemon.reload();
  t.equal(await probe(bad, addr, port), 'allowed', 'deny renumbered 150: rule 100 decides first');
});

/** A connected UDP client: send, resolve with the reply or 'silence'. */
function ask(src: string, host: string, port: number, timeoutMs = 500): Promise<string> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const timer = setTimeout(() => { s.close(); resolve('silence'); }, timeoutMs);
    s.on('message', (m) => { clearTimeout(timer); s.close(); resolve(m.toString()); });
    s.on('error', (e: NodeJS.ErrnoException) => { clearTimeout(timer); s.close(); resolve(e.code ?? 'error'); });
    s.bind(0, src, () => s.connect(port, host, () => s.send('ping')));
  });
}

async function udpEcho(t: Test): Promise<{ port: number; seen: number }> {
  const sock = dgram.createSocket('udp4');
  const st = { port: 0, seen: 0 };
  sock.on('message', (m, r) => { st.seen++; sock.send(m, r.port, r.address); });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => sock.close(() => r())));
  st.port = sock.address().port;
  return st;
}

t.test('UDP: the reply denied by the NACL egress → no answer; allowed → answer', async (t) => {
  const addr = freshAddr(), client = freshAddr();
  const echo = await udpEcho(t);
  const listen = await new Promise<number>((resolve) => {
    const s = dgram.createSocket('udp4');
    s.bind(0, addr, () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
  const { daemon, configPath } = await startDaemon(t, config(addr, 53, echo.port, IN_ALL(53, 'udp') + OUT(100, '53', 'udp'), 'udp', listen));
  t.equal(await ask(client, addr, listen), 'silence', 'the reply to the client\'s port is denied: no answer');
  t.equal(echo.seen, 0, 'the backend saw nothing');
  write(configPath, config(addr, 53, echo.port, IN_ALL(53, 'udp') + OUT(100, '53', 'udp') + OUT(110, '1024-65535', 'udp'), 'udp', listen));
  await daemon.reload();
  t.equal(await ask(client, addr, listen), 'ping', 'egress 1024-65535: the answer comes back');
});

t.test('a NACL change stops an established tracked flow; the SG alone would keep it', async (t) => {
  const addr = freshAddr(), client = freshAddr();
  const port = await freePort(addr);
  const echo = await echoServer(t);
  const { daemon, configPath } = await startDaemon(t, config(addr, port, echo.port, IN_ALL(port) + OUT(110, '1024-65535')));
  const s = net.connect({ host: addr, port, localAddress: client });
  s.on('error', () => {});
  await new Promise((r) => s.once('connect', r));
  const echoOnce = (msg: string, ms = 400) => new Promise<string>((resolve) => {
    const timer = setTimeout(() => { s.off('data', on); resolve('silence'); }, ms);
    const on = (d: Buffer) => { clearTimeout(timer); resolve(d.toString()); };
    s.once('data', on);
    s.write(msg);
  });
  t.equal(await echoOnce('a'), 'a');
  t.equal(daemon.conntrack().find((e) => e.srcPort === s.localPort)?.tracked, true, 'a tracked flow (SG 127.0.0.0/8)');
  write(configPath, config(addr, port, echo.port, IN_ALL(port) + OUT(110, '1024-65535', 'tcp', 'deny', `${client}/32`) + OUT(120, '1024-65535')));
  await daemon.reload();
  t.equal(await echoOnce('b'), 'silence', 'rule 110 now denies the replies to this client: nothing passes, tracked or not');
  t.equal(daemon.counters.naclCut, 1, 'counted as a NACL cut');
  t.equal(await probe(freshAddr(), addr, port), 'allowed', 'another client still passes rule 120');
  s.destroy();
});

t.test('instances in one subnet cross no NACL; from another subnet the NACLs apply', async (t) => {
  const web = freshAddr(), db = freshAddr(), other = freshAddr(), laptop = freshAddr();
  const dbPort = await freePort(db), out1 = await freePort(web), out2 = await freePort(other);
  const echo = await echoServer(t);
  const yaml = `
networkAcls:
  - id: acl-closed
subnets:
  - { id: subnet-a, networkAcl: acl-closed }
  - { id: subnet-b }
securityGroups:
  - id: sg-all
    ingress:
      - { protocol: tcp, ports: all, cidr: 127.0.0.0/8 }
instances:
  - name: web
    address: ${web}
    subnet: subnet-a
    securityGroups: [sg-all]
    outbound:
      - { protocol: tcp, port: ${out1}, to: "db:5432" }
  - name: other
    address: ${other}
    subnet: subnet-b
    securityGroups: [sg-all]
    outbound:
      - { protocol: tcp, port: ${out2}, to: "db:5432" }
  - name: db
    address: ${db}
    subnet: subnet-a
    securityGroups: [sg-all]
    services:
      - { protocol: tcp, port: 5432, listenPort: ${dbPort}, backend: "127.0.0.1:${echo.port}" }
`;
  await startDaemon(t, yaml);
  t.equal(await probe(laptop, web, out1), 'allowed', 'web → db inside subnet-a: no NACL, although acl-closed denies everything');
  t.equal(await probe(laptop, other, out2, 600), 'timeout', 'other (subnet-b) → db (subnet-a): acl-closed denies, timeout');
  t.equal(await probe(laptop, db, dbPort, 600), 'timeout', 'laptop → db from outside: acl-closed denies');
  await sleep(10);
});

t.test('UDP: a NACL change stops a live flow (its next datagram gets no answer)', async (t) => {
  const addr = freshAddr(), client = freshAddr();
  const echo = await udpEcho(t);
  const listen = await new Promise<number>((resolve) => {
    const s = dgram.createSocket('udp4');
    s.bind(0, addr, () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
  const open = IN_ALL(53, 'udp') + OUT(110, '1024-65535', 'udp');
  const { daemon, configPath } = await startDaemon(t, config(addr, 53, echo.port, open, 'udp', listen));
  const s = dgram.createSocket('udp4');
  t.teardown(() => { try { s.close(); } catch { /* closed */ } });
  await new Promise<void>((r) => s.bind(0, client, () => s.connect(listen, addr, () => r())));
  const once = (msg: string, ms = 500) => new Promise<string>((resolve) => {
    const timer = setTimeout(() => { s.off('message', on); resolve('silence'); }, ms);
    const on = (m: Buffer) => { clearTimeout(timer); resolve(m.toString()); };
    s.once('message', on);
    s.send(msg);
  });
  t.equal(await once('a'), 'a', 'the flow answers');
  write(configPath, config(addr, 53, echo.port, IN_ALL(53, 'udp') + OUT(100, '1024-65535', 'udp', 'deny', `${client}/32`) + OUT(110, '1024-65535', 'udp'), 'udp', listen));
  await daemon.reload();
  t.equal(await once('b'), 'silence', 'egress rule 100 now denies the replies to this client: no answer');
  t.equal(daemon.counters.naclCut, 1, 'counted as a NACL cut');
  t.equal(await ask(freshAddr(), addr, listen), 'ping', 'another client still gets answers (rule 110)');
});

// No IPv6 wire test: on loopback the only IPv6 address is ::1, which is the instance's own address6,
// and an instance talking to itself crosses no NACL (one subnet). IPv6 NACL decisions are covered by
// test/policy/nacl-property.test.ts (matcher and filter ranges) and test/policy/bpf-nacl.test.ts
// (the program's port checks over IPv6 headers).

t.test('flow log: a SYN the NACL denies is a REJECT record, and counted as rejected by the kernel', { skip: isRoot() ? false : 'REJECT records come from libpcap: needs CAP_NET_RAW (root)' }, async (t) => {
  const addr = freshAddr(), client = freshAddr();
  const port = await freePort(addr);
  const echo = await echoServer(t);
  const flows = join(t.testdir({}), 'flows.log');
  const { daemon } = await startDaemon(t, config(addr, port, echo.port, IN_ALL(port) + OUT(100, '80')), { flowLog: flows, flowLogIntervalS: 1 });
  t.equal(await probe(client, addr, port, 600), 'timeout', 'the NACL drops it: timeout');
  let text = '';
  for (let i = 0; i < 40 && !/ REJECT OK/.test(text); i++) {
    await sleep(100);
    text = existsSync(flows) ? readFileSync(flows, 'utf8') : '';
  }
  const line = text.split('\n').find((l) => l.includes(` ${client} ${addr} `) && l.endsWith(' REJECT OK'));
  t.ok(line, `a REJECT record for ${client} -> ${addr}:${port}`);
  t.match(line ?? '', new RegExp(` ${port} 6 \\d+ \\d+ \\d+ \\d+ REJECT OK$`));
  t.ok(daemon.counters.rejectedKernel >= 1, 'counted as rejected by the kernel filter');
});

t.test('outbound entry: the replies come back to the app\'s port, so the source subnet\'s ingress must allow it', async (t) => {
  const web = freshAddr(), db = freshAddr(), app = freshAddr();
  const dbPort = await freePort(db), out = await freePort(web);
  const echo = await echoServer(t);
  const okPort = await freePort(app);
  const yaml = (inPorts: string) => `
networkAcls:
  - id: acl-web
    entries:
      - { ruleNumber: 100, egress: true, protocol: tcp, ports: 5432, cidr: ${db}/32, action: allow }
      - { ruleNumber: 100, egress: false, protocol: tcp, ports: ${inPorts}, cidr: ${db}/32, action: allow }
subnets:
  - { id: subnet-web, networkAcl: acl-web }
  - { id: subnet-db }
securityGroups:
  - id: sg-db
    ingress:
      - { protocol: tcp, ports: 5432, cidr: 127.0.0.0/8 }
instances:
  - name: web
    address: ${web}
    subnet: subnet-web
    outbound:
      - { protocol: tcp, port: ${out}, to: "db:5432" }
  - name: db
    address: ${db}
    subnet: subnet-db
    securityGroups: [sg-db]
    services:
      - { protocol: tcp, port: 5432, listenPort: ${dbPort}, backend: "127.0.0.1:${echo.port}" }
`;
  const { daemon, configPath } = await startDaemon(t, yaml(`${okPort}`));
  t.equal(await probeFrom(app, okPort, web, out), 'allowed', `the app's port ${okPort} is allowed back in: web → db passes`);
  let other = await freePort(app);
  while (other === okPort) other = await freePort(app);
  t.equal(await probeFrom(app, other, web, out), 'timeout', `from port ${other} the replies would be dropped: the app's connect times out`);
  write(configPath, yaml('1024-65535'));
  await daemon.reload();
  t.equal(await probeFrom(app, other, web, out), 'allowed', 'ingress 1024-65535 from db: allowed');
});
