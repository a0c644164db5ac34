// Whole daemons, UDP: request/reply round-trips, denied gets no reply and the backend sees
// nothing, dead backend → ECONNREFUSED on a connected client (privileged), replies pass although
// no inbound rule allows the backend, revoke keeps a tracked flow and cuts an untracked one,
// IPv6 on ::1, and many concurrent flows each getting their own replies.

import t, { type Test } from 'tap';
import dgram from 'node:dgram';
import { freePort, freshAddr, startDaemon, write, sleep } from './helpers.js';

async function udpEcho(t: Test, host = '127.0.0.1'): Promise<{ port: number; seen: string[]; sock: dgram.Socket }> {
  const sock = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const seen: string[] = [];
  sock.on('message', (m, r) => { seen.push(`${r.address}:${r.port}`); sock.send(m, r.port, r.address); });
  await new Promise<void>((r) => sock.bind(0, host, () => r()));
  t.teardown(() => new Promise<void>((r) => sock.close(() => r())));
  return { port: sock.address().port, seen, sock };
}

/** A connected client socket: sends `msg`, resolves with the reply, 'silence' or the error code. */
function ask(src: string, host: string, port: number, msg = 'ping', timeoutMs = 400, sock?: dgram.Socket): Promise<string> {
  return new Promise((resolve) => {
    const s = sock ?? dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    let done = false;
    const finish = (r: string) => {
      if (done) return;
      done = true; clearTimeout(timer); s.off('message', onMsg); s.off('error', onErr);
      if (!sock) s.close();
      resolve(r);
    };
    const onMsg = (m: Buffer) => finish(m.toString());
    const onErr = (e: NodeJS.ErrnoException) => finish(e.code ?? 'error');
    const timer = setTimeout(() => finish('silence'), timeoutMs);
    s.on('message', onMsg);
    s.on('error', onErr);
    const send = () => s.send(msg);
    if (sock) send();
    else s.bind(0, src, () => s.connect(port, host, send));
  });
}

function cfg(addr: string, port: number, backend: number, ingress: string, extra = ''): string {
  return `
securityGroups:
  - id: sg-dns
    ingress:
${ingress}
instances:
  - name: dns
    address: ${addr}
    securityGroups: [sg-dns]
    services:
      - { protocol: udp, port: 53, listenPort: ${port}, backend: "127.0.0.1:${backend}" }
${extra}`;
}

t.test('allowed round-trip; denied gets no answer and the backend sees nothing', async (t) => {
  const addr = freshAddr(), good = freshAddr(), bad = freshAddr();
  const port = await freePort(addr, 'udp');
  const echo = await udpEcho(t);
  await startDaemon(t, cfg(addr, port, echo.port, `      - { protocol: udp, ports: 53, cidr: ${good}/32 }`));
  t.equal(await ask(good, addr, port, 'hello'), 'hello', 'allowed source gets its reply');
  const before = echo.seen.length;
  t.equal(await ask(bad, addr, port, 'hello'), 'silence', 'denied source: no answer');
  t.equal(echo.seen.length, before, 'the backend saw nothing from the denied source');
});

t.test('dead backend → ECONNREFUSED on a connected client socket (ICMP port unreachable)', async (t) => {
  const addr = freshAddr(), src = freshAddr();
  const port = await freePort(addr, 'udp');
  const dead = await freePort('127.0.0.1', 'udp');
  const { daemon } = await startDaemon(t, cfg(addr, port, dead, `      - { protocol: udp, ports: 53, cidr: ${src}/32 }`));
  if (daemon.refuser.mode !== 'raw') {
    t.skip(`needs CAP_NET_RAW, libpcap and raw sockets: ${daemon.refuser.reason}`, () => {});
    return;
  }
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, src, () => s.connect(port, addr, () => r())));
  t.teardown(() => s.close());
  const first = await ask(src, addr, port, 'q1', 500, s);
  const second = first === 'ECONNREFUSED' ? first : await ask(src, addr, port, 'q2', 500, s);
  t.equal(second, 'ECONNREFUSED', 'the client socket reports ECONNREFUSED');
  t.equal(await ask(freshAddr(), addr, port, 'q', 400), 'silence', 'a denied source still hears nothing');
});

t.test('replies pass although no inbound rule allows the backend, and the flow becomes a stream', async (t) => {
  const addr = freshAddr(), src = freshAddr();
  const port = await freePort(addr, 'udp');
  const echo = await udpEcho(t);
  const { daemon } = await startDaemon(t, cfg(addr, port, echo.port, `      - { protocol: udp, ports: 53, cidr: ${src}/32 }`));
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, src, () => s.connect(port, addr, () => r())));
  t.teardown(() => s.close());
  t.equal(await ask(src, addr, port, 'one', 400, s), 'one');
  let e = daemon.conntrack().find((x) => x.srcPort === s.address().port);
  t.match(e, { protocol: 'udp', state: 'REPLIED', direction: 'ingress' });
  t.ok(e!.expiresInSeconds <= 30, 'single exchange: udpTimeout (30 s)');
  t.equal(await ask(src, addr, port, 'two', 400, s), 'two');
  e = daemon.conntrack().find((x) => x.srcPort === s.address().port);
  t.equal(e?.state, 'STREAM', 'several exchanges: a stream');
  t.ok(e!.expiresInSeconds > 30 && e!.expiresInSeconds <= 180, 'stream: udpStreamTimeout (180 s)');
});

t.test('revoke keeps a tracked flow and cuts an untracked one', async (t) => {
  const addr = freshAddr(), src = freshAddr();
  const p53 = await freePort(addr, 'udp'), p54 = await freePort(addr, 'udp');
  const echo = await udpEcho(t);
  // :53 allowed from src/32 → tracked. :54 allowed from 0.0.0.0/0 with all egress open → untracked.
  const yaml = (ingress: string) => `
securityGroups:
  - id: sg-dns
    ingress:
${ingress}
instances:
  - name: dns
    address: ${addr}
    securityGroups: [sg-dns]
    services:
      - { protocol: udp, port: 53, listenPort: ${p53}, backend: "127.0.0.1:${echo.port}" }
      - { protocol: udp, port: 54, listenPort: ${p54}, backend: "127.0.0.1:${echo.port}" }
`;
  const { daemon, configPath } = await startDaemon(t, yaml(`      - { protocol: udp, ports: 53, cidr: ${src}/32 }\n      - { protocol: udp, ports: 54, cidr: 0.0.0.0/0 }`));
  const a = dgram.createSocket('udp4'), b = dgram.createSocket('udp4');
  await new Promise<void>((r) => a.bind(0, src, () => a.connect(p53, addr, () => r())));
  await new Promise<void>((r) => b.bind(0, src, () => b.connect(p54, addr, () => r())));
  t.teardown(() => { a.close(); b.close(); });
  t.equal(await ask(src, addr, p53, 'a1', 400, a), 'a1');
  t.equal(await ask(src, addr, p54, 'b1', 400, b), 'b1');
  const ct = daemon.conntrack();
  t.equal(ct.find((x) => x.srcPort === a.address().port && x.dstPort === p53)?.tracked, true, ':53 flow tracked');
  t.equal(ct.find((x) => x.srcPort === b.address().port && x.dstPort === p54)?.tracked, false, ':54 flow untracked');
  write(configPath, yaml(`      - { protocol: udp, ports: 55, cidr: 127.0.0.1/32 }`));
  t.ok(await daemon.reload(), 'both rules revoked');
  t.equal(await ask(src, addr, p53, 'a2', 400, a), 'a2', 'the tracked flow keeps working');
  t.equal(await ask(src, addr, p54, 'b2', 400, b), 'silence', 'the untracked flow is cut at once');
  t.equal(await ask(freshAddr(), addr, p53, 'new', 400), 'silence', 'a new flow is denied');
});

t.test('IPv6 on ::1: allowed, then denied after a reload', async (t) => {
  const addr = freshAddr();
  const port = await freePort('::1', 'udp');
  const echo = await udpEcho(t);
  const six = (cidr: string) => `
securityGroups:
  - id: sg-six
    ingress:
      - { protocol: udp, ports: 5353, cidr: "${cidr}" }
instances:
  - name: six
    address: ${addr}
    address6: "::1"
    securityGroups: [sg-six]
    services:
      - { protocol: udp, port: 5353, listenPort: ${port}, backend: "127.0.0.1:${echo.port}" }
`;
  const { daemon, configPath } = await startDaemon(t, six('::1/128'));
  t.equal(await ask('::1', '::1', port, 'v6'), 'v6', 'IPv6 request answered');
  write(configPath, six('2001:db8::/32'));
  await daemon.reload();
  t.equal(await ask('::1', '::1', port, 'v6-again'), 'silence', 'denied after the reload (new flow)');
});

t.test('1000 concurrent flows from many 127/8 sources: every reply reaches its sender', async (t) => {
  const addr = freshAddr();
  const port = await freePort(addr, 'udp');
  const echo = await udpEcho(t);
  await startDaemon(t, cfg(addr, port, echo.port, `      - { protocol: udp, ports: 53, cidr: 127.0.0.0/8 }`));
  const N = 1000;
  const socks: dgram.Socket[] = [];
  t.teardown(() => { for (const s of socks) s.close(); });
  const sources = Array.from({ length: 50 }, () => freshAddr());
  await Promise.all(Array.from({ length: N }, (_, i) => new Promise<void>((r) => {
    const s = dgram.createSocket('udp4');
    socks.push(s);
    s.bind(0, sources[i % sources.length], () => s.connect(port, addr, () => r()));
  })));
  // Like any UDP client, each resends after 250 ms without an answer (a burst of 1000 datagrams
  // can overflow a socket buffer; that is UDP, not a routing error). Any reply must be its own.
  let wrong = 0;
  const replies = await Promise.all(socks.map((s, i) => new Promise<boolean>((resolve) => {
    const want = `flow-${i}`;
    let tries = 0;
    const send = () => { if (tries++ < 8) s.send(want); else { s.off('message', on); resolve(false); } };
    const timer = setInterval(send, 250);
    const on = (m: Buffer) => {
      if (m.toString() !== want) { wrong++; return; }
      clearInterval(timer); s.off('message', on); resolve(true);
    };
    s.on('message', on);
    send();
  })));
  t.equal(wrong, 0, 'no flow ever received another flow\'s reply');
  t.equal(replies.filter(Boolean).length, N, 'every flow got its own reply');
  await sleep(10);
});

t.test('idle expiry with an injected clock: udpTimeout for a single exchange, udpStreamTimeout for a stream', async (t) => {
  const { ManualClock } = await import('../../src/dataplane/clock.js');
  const clock = new ManualClock(1000);
  const addr = freshAddr(), src = freshAddr();
  const port = await freePort(addr, 'udp');
  const echo = await udpEcho(t);
  const { daemon } = await startDaemon(t, cfg(addr, port, echo.port, `      - { protocol: udp, ports: 53, cidr: ${src}/32 }`), { clock });
  const one = dgram.createSocket('udp4'), many = dgram.createSocket('udp4');
  await new Promise<void>((r) => one.bind(0, src, () => one.connect(port, addr, () => r())));
  await new Promise<void>((r) => many.bind(0, src, () => many.connect(port, addr, () => r())));
  t.teardown(() => { one.close(); many.close(); });
  t.equal(await ask(src, addr, port, 'q', 400, one), 'q');
  for (const m of ['a', 'b', 'c']) t.equal(await ask(src, addr, port, m, 400, many), m);
  const find = (s: dgram.Socket) => daemon.conntrack().find((e) => e.srcPort === s.address().port);
  t.equal(find(one)?.state, 'REPLIED');
  t.equal(find(many)?.state, 'STREAM');
  clock.advance(29_000); daemon.sweep();
  t.ok(find(one), 'a single exchange lives 29 s');
  clock.advance(2_000); daemon.sweep();
  t.notOk(find(one), 'and is gone after 30 s idle (udpTimeout)');
  t.ok(find(many), 'the stream is still tracked at 31 s');
  clock.advance(150_000); daemon.sweep();
  t.notOk(find(many), 'the stream is gone after 180 s idle (udpStreamTimeout)');
  t.equal(await ask(src, addr, port, 'again', 400, one), 'again', 'the next datagram opens a new flow (still allowed)');
});

t.test('outbound UDP: the app sends to its instance address; egress and the target\'s ingress apply', async (t) => {
  const web = freshAddr(), dns = freshAddr(), app = freshAddr();
  const dnsPort = await freePort(dns, 'udp'), outPort = await freePort(web, 'udp'), outPort2 = await freePort(web, 'udp');
  const echo = await udpEcho(t);
  const { daemon } = await startDaemon(t, `
securityGroups:
  - id: sg-web
    egress: [ { protocol: udp, ports: 53, groups: [sg-dns] } ]
  - id: sg-closed
    egress: []
  - id: sg-dns
    ingress: [ { protocol: udp, ports: 53, groups: [sg-web] } ]
instances:
  - name: web
    address: ${web}
    securityGroups: [sg-web]
    outbound: [ { protocol: udp, port: ${outPort}, to: "dns:53" } ]
  - name: shut
    address: ${freshAddr()}
    securityGroups: [sg-closed]
    outbound: [ { protocol: udp, port: ${outPort2}, to: "dns:53" } ]
  - name: dns
    address: ${dns}
    securityGroups: [sg-dns]
    services: [ { protocol: udp, port: 53, listenPort: ${dnsPort}, backend: "127.0.0.1:${echo.port}" } ]
`);
  t.equal(await ask(app, web, outPort, 'lookup'), 'lookup', 'web → dns through the outbound entry, reply back');
  t.equal(await ask(app, dns, dnsPort, 'direct'), 'silence', 'dns is closed to others directly');
  const shut = daemon.model.instances.find((i) => i.name === 'shut')!.address;
  t.equal(await ask(app, shut, outPort2, 'nope'), 'silence', 'egress [] → nothing leaves');
});
