// The native UDP relay (src/native/addon/udp_relay.c through src/native/udp-relay.ts) on real
// loopback sockets: unknown clients are handed to JS, added flows are relayed without JS, replies
// reach their own client from the listening address, boundaries and sizes are preserved,
// counters and turns add up, a dead backend reports ECONNREFUSED, removal and close are clean.
import t, { type Test } from 'tap';
import dgram from 'node:dgram';
import { closeFd, createUdpSocket, nativeStatus } from '../../src/native/sock-filter.js';
import {
  UdpRelay, udpRelayAvailable, forEachDatagram, STAT_COUNT, STAT_PACKETS_IN, STAT_BYTES_IN, STAT_PACKETS_OUT,
  STAT_BYTES_OUT, STAT_EXCHANGES, STAT_REPLIES, STAT_LAST_DIR,
} from '../../src/native/udp-relay.js';
import { readdirSync, readFileSync } from 'node:fs';
import { freePort, freshAddr, sleep, startDaemon, until } from '../e2e/helpers.js';

const st = nativeStatus();
const skip = !st.loaded ? `native addon not loaded: ${st.error}` : !udpRelayAvailable() ? 'addon has no udpRelayOpen (or SGEMU_RELAY=node)' : false;

interface Seen { address: string; port: number; msg: Buffer }

/** A relay on a fresh listening socket (port 0); every unknown-client datagram is recorded in `seen`. */
function openRelay(t: Test, family: 4 | 6 = 4, address = family === 4 ? freshAddr() : '::1') {
  const fd = createUdpSocket({ family, address, port: 0, program: null });
  const seen: Seen[] = [];
  const errors: [number, number, number][] = [];
  const relay = UdpRelay.open(fd, family, {
    datagrams: (batch, count) => forEachDatagram(batch, count, (a, p, m) => seen.push({ address: a, port: p, msg: Buffer.from(m) })),
    flowError: (slot, errno, gen) => errors.push([slot, errno, gen]),
  });
  t.teardown(() => { relay.close(); closeFd(fd); });
  return { fd, relay, seen, errors, address };
}

/** The same on a known port, for clients to send to. */
async function listenerOn(t: Test, family: 4 | 6 = 4) {
  const address = family === 4 ? freshAddr() : '::1';
  const port = await freePort(address, 'udp');
  const fd = createUdpSocket({ family, address, port, program: null });
  const seen: Seen[] = [];
  const errors: [number, number, number][] = [];
  const relay = UdpRelay.open(fd, family, {
    datagrams: (batch, count) => forEachDatagram(batch, count, (a, p, m) => seen.push({ address: a, port: p, msg: Buffer.from(m) })),
    flowError: (slot, errno, gen) => errors.push([slot, errno, gen]),
  });
  t.teardown(() => { relay.close(); closeFd(fd); });
  return { fd, relay, seen, errors, address, port };
}

/** An echo backend on host that records each sender "addr:port". */
async function echo(t: Test, host = '127.0.0.1'): Promise<{ port: number; from: string[] }> {
  const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const from: string[] = [];
  s.on('message', (m, r) => { from.push(`${r.address}:${r.port}`); s.send(m, r.port, r.address); });
  await new Promise<void>((r) => s.bind(0, host, () => r()));
  t.teardown(() => new Promise<void>((r) => s.close(() => r())));
  return { port: s.address().port, from };
}

/** A connected client from `src`; `got` collects replies (with the address they came from). */
async function client(t: Test, src: string, host: string, port: number) {
  const s = dgram.createSocket(src.includes(':') ? 'udp6' : 'udp4');
  const got: { msg: Buffer; from: string }[] = [];
  const errs: string[] = [];
  s.on('message', (m, r) => got.push({ msg: m, from: `${r.address}:${r.port}` }));
  s.on('error', (e: NodeJS.ErrnoException) => errs.push(e.code ?? 'error'));
  await new Promise<void>((r) => s.bind(0, src, () => s.connect(port, host, () => r())));
  t.teardown(() => { try { s.close(); } catch { /* closed */ } });
  return { s, got, errs, port: s.address().port };
}

t.test('unknown client goes to JS; once added, its datagrams are relayed natively both ways', { skip }, async (t) => {
  const l = await listenerOn(t);
  const be = await echo(t);
  const src = freshAddr();
  const c = await client(t, src, l.address, l.port);
  c.s.send('hello');
  t.ok(await until(() => l.seen.length === 1), 'the first datagram is handed to JS');
  t.match(l.seen[0], { address: src, port: c.port }, 'with the client address and port');
  t.equal(l.seen[0]!.msg.toString(), 'hello');
  l.relay.add(0, src, c.port, '127.0.0.1', be.port, null);
  t.equal(l.relay.send(0, l.seen[0]!.msg), 0, 'JS forwards the first datagram');
  t.ok(await until(() => c.got.length === 1), 'the reply reaches the client');
  t.equal(c.got[0]!.msg.toString(), 'hello');
  t.equal(c.got[0]!.from, `${l.address}:${l.port}`, 'from the listening address (the client sees one peer)');
  for (const m of ['a', 'bb', 'ccc']) {
    const n = c.got.length;
    c.s.send(m);
    t.ok(await until(() => c.got.length === n + 1), `reply to ${m}`);
    t.equal(c.got[n]!.msg.toString(), m);
  }
  t.equal(l.seen.length, 1, 'later datagrams never reached JS');
  const s = new Float64Array(STAT_COUNT);
  t.ok(l.relay.stats(0, s));
  t.same([s[STAT_PACKETS_IN], s[STAT_BYTES_IN], s[STAT_PACKETS_OUT], s[STAT_BYTES_OUT]], [4, 11, 4, 11], 'counts each way');
  t.equal(s[STAT_REPLIES], 4, 'four request→reply turns (≥ 2: STREAM)');
  t.equal(s[STAT_EXCHANGES], 3, 'three reply→request turns');
  t.equal(s[STAT_LAST_DIR], 2, 'last datagram came from the backend');
  t.equal(new Set(be.from).size, 1, 'the backend saw one socket for the flow');
  const info = l.relay.info();
  t.ok(info.forwarded >= 3 && info.replies >= 4, `relay totals ${JSON.stringify(info)}`);
});

t.test('a burst of one flow leaves in runs (sendmmsg) and arrives whole and in order, interleaved with another flow', { skip }, async (t) => {
  const l = await listenerOn(t);
  const be = dgram.createSocket('udp4');
  const got = new Map<number, string[]>();
  be.on('message', (m, r) => { const a = got.get(r.port) ?? []; a.push(String(m)); got.set(r.port, a); });
  await new Promise<void>((r) => be.bind(0, '127.0.0.1', () => r()));
  be.setRecvBufferSize(4 << 20);
  t.teardown(() => be.close());
  const cs = [];
  for (let k = 0; k < 2; k++) {
    const src = freshAddr();
    const c = await client(t, src, l.address, l.port);
    c.s.send('open');
    t.ok(await until(() => l.seen.length === k + 1));
    l.relay.add(k, src, c.port, '127.0.0.1', be.address().port, null);
    l.relay.send(k, l.seen[k]!.msg);
    cs.push(c);
  }
  // interleaved, so each receive batch holds runs of both; 20 at a time, so that a loaded machine
  // (the whole suite on 2 cores) does not overflow the listening socket's receive buffer
  for (let i = 0; i < 200; i++) {
    for (const c of cs) c.s.send(String(i));
    if (i % 20 === 19) await new Promise((r) => setTimeout(r, 2));
  }
  t.ok(await until(() => [...got.values()].every((a) => a.length === 201) && got.size === 2, 3000), 'all 2 × 201 arrived');
  for (const a of got.values()) t.same(a, ['open', ...Array.from({ length: 200 }, (_, i) => String(i))], 'in order');
});

t.test('boundaries and sizes are preserved: empty, 1 B and 65000 B datagrams', { skip }, async (t) => {
  const l = await listenerOn(t);
  const be = await echo(t);
  const src = freshAddr();
  const c = await client(t, src, l.address, l.port);
  c.s.send('x');
  t.ok(await until(() => l.seen.length === 1));
  l.relay.add(3, src, c.port, '127.0.0.1', be.port, null);
  l.relay.send(3, l.seen[0]!.msg);
  t.ok(await until(() => c.got.length === 1));
  const big = Buffer.alloc(65_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 255;
  c.s.send(Buffer.alloc(0));
  t.ok(await until(() => c.got.length === 2), 'empty datagram relayed');
  t.equal(c.got[1]!.msg.length, 0);
  c.s.send(big);
  t.ok(await until(() => c.got.length === 3), 'large datagram relayed');
  t.ok(c.got[2]!.msg.equals(big), 'byte for byte');
});

t.test('many clients: every reply goes to its own sender; slots grow past the first block', { skip }, async (t) => {
  const l = await listenerOn(t);
  const be = await echo(t);
  const clients: Awaited<ReturnType<typeof client>>[] = [];
  for (let i = 0; i < 40; i++) clients.push(await client(t, freshAddr(), l.address, l.port));
  for (const c of clients) c.s.send(`${c.port}`);
  t.ok(await until(() => l.seen.length === clients.length), 'each new client reached JS once');
  l.seen.forEach((d, i) => {
    const slot = i * 97;                                  // up to 3783: flows[] grows from 1024
    l.relay.add(slot, d.address, d.port, '127.0.0.1', be.port, null);
    l.relay.send(slot, d.msg);
  });
  t.ok(await until(() => clients.every((c) => c.got.length === 1)), 'every client got a reply');
  for (let round = 0; round < 3; round++) for (const c of clients) c.s.send(`${c.port}`);
  t.ok(await until(() => clients.every((c) => c.got.length === 4)), 'three more rounds relayed natively');
  t.ok(clients.every((c) => c.got.every((g) => g.msg.toString() === `${c.port}`)), 'no client got another client\'s reply');
  t.equal(l.seen.length, clients.length, 'no datagram of a known flow reached JS');
});

t.test('remove(): the flow is forgotten and its next datagram goes to JS again', { skip }, async (t) => {
  const l = await listenerOn(t);
  const be = await echo(t);
  const src = freshAddr();
  const c = await client(t, src, l.address, l.port);
  c.s.send('1');
  t.ok(await until(() => l.seen.length === 1));
  const g0 = l.relay.add(7, src, c.port, '127.0.0.1', be.port, null);
  l.relay.send(7, l.seen[0]!.msg);
  t.ok(await until(() => c.got.length === 1));
  l.relay.remove(7);
  t.notOk(l.relay.stats(7, new Float64Array(STAT_COUNT)), 'no stats for a removed slot');
  t.not(l.relay.send(7, Buffer.from('x')), 0, 'send to a removed slot fails (errno)');
  c.s.send('2');
  t.ok(await until(() => l.seen.length === 2), 'back to JS');
  t.equal(c.got.length, 1, 'and not relayed');
  const g1 = l.relay.add(7, src, c.port, '127.0.0.1', be.port, null);
  t.ok(g1 > g0, 'the slot can be reused at once, under a new generation');
});

t.test('errors: duplicate client EEXIST, bad address EINVAL (NativeError codes)', { skip }, async (t) => {
  const l = await listenerOn(t);
  const be = await echo(t);
  l.relay.add(1, '127.0.0.9', 4000, '127.0.0.1', be.port, null);
  t.throws(() => l.relay.add(2, '127.0.0.9', 4000, '127.0.0.1', be.port, null), { code: 'EEXIST' });
  t.throws(() => l.relay.add(1, '127.0.0.8', 4000, '127.0.0.1', be.port, null), { code: 'EEXIST' }, 'slot in use');
  t.throws(() => l.relay.add(3, 'not-an-ip', 1, '127.0.0.1', be.port, null), { code: 'EINVAL' });
  t.throws(() => l.relay.add(3, '127.0.0.7', 1, '127.0.0.1', be.port, '::1'), { code: 'EINVAL' }, 'local and backend families differ');
});

t.test('backend down: the flow reports ECONNREFUSED and stops being polled', { skip }, async (t) => {
  const l = await listenerOn(t);
  const dead = await freePort('127.0.0.1', 'udp');
  const src = freshAddr();
  const c = await client(t, src, l.address, l.port);
  c.s.send('q');
  t.ok(await until(() => l.seen.length === 1));
  const gen = l.relay.add(5, src, c.port, '127.0.0.1', dead, null);
  t.ok(gen >= 1, 'add returns the generation');
  const first = l.relay.send(5, l.seen[0]!.msg);
  t.equal(first, 0, 'the first send succeeds (the ICMP comes back later)');
  t.ok(await until(() => l.errors.length === 1), 'flowError reported');
  t.same(l.errors[0], [5, 111, gen], 'slot 5, ECONNREFUSED (111), the flow\'s generation');
  c.s.send('q2');
  await sleep(50);
  t.equal(l.errors.length, 1, 'reported once');
});

t.test('outbound: the backend socket is bound to the local address first', { skip }, async (t) => {
  const l = await listenerOn(t);
  const be = await echo(t);
  const src = freshAddr(), local = freshAddr();
  const c = await client(t, src, l.address, l.port);
  c.s.send('o');
  t.ok(await until(() => l.seen.length === 1));
  l.relay.add(0, src, c.port, '127.0.0.1', be.port, local);
  l.relay.send(0, l.seen[0]!.msg);
  t.ok(await until(() => c.got.length === 1));
  t.match(be.from[0], new RegExp(`^${local.replace(/\./g, '\\.')}:`), 'the backend saw the local address');
});

t.test('IPv6 on ::1', { skip }, async (t) => {
  const l = await listenerOn(t, 6);
  const be = await echo(t, '::1');
  const c = await client(t, '::1', '::1', l.port);
  c.s.send('six');
  t.ok(await until(() => l.seen.length === 1));
  t.match(l.seen[0], { address: '::1', port: c.port });
  l.relay.add(0, '::1', c.port, '::1', be.port, null);
  l.relay.send(0, l.seen[0]!.msg);
  t.ok(await until(() => c.got.length === 1));
  t.equal(c.got[0]!.msg.toString(), 'six');
  c.s.send('again');
  t.ok(await until(() => c.got.length === 2), 'relayed natively');
  t.equal(l.seen.length, 1);
});

t.test('close(): idempotent; afterwards calls fail or do nothing and no event arrives', { skip }, async (t) => {
  const l = openRelay(t);
  l.relay.close();
  l.relay.close();
  t.not(l.relay.send(0, Buffer.from('x')), 0);
  t.notOk(l.relay.stats(0, new Float64Array(STAT_COUNT)));
  t.throws(() => l.relay.add(0, '127.0.0.9', 1, '127.0.0.1', 9, null), { code: 'EBADF' });
  l.relay.remove(0);
  t.same(Object.keys(l.relay.info()).length, 11, 'six relay totals and five fault counters');
  t.doesNotThrow(() => l.relay.setFaults([]), 'setFaults after close: a no-op');
});

t.test('forEachDatagram stops at a truncated record instead of throwing', async (t) => {
  const rec = Buffer.alloc(56 + 3);
  rec.writeUInt16LE(53, 0); rec[2] = 4; rec.writeUInt32LE(3, 4); rec.write('127.0.0.1', 8, 'latin1'); rec.write('abc', 56);
  const out: string[] = [];
  forEachDatagram(rec, 1, (a, p, m) => out.push(`${a}:${p}:${m.toString()}`));
  t.same(out, ['127.0.0.1:53:abc']);
  out.length = 0;
  forEachDatagram(rec.subarray(0, 58), 1, (a, p, m) => out.push(`${a}:${p}:${m.toString()}`));
  t.same(out, [], 'payload shorter than its length: nothing');
});

/** Threads of this process named sgemu-udp (the relay threads, pthread_setname_np). */
function relayThreads(): number {
  let n = 0;
  for (const tid of readdirSync('/proc/self/task')) {
    try { if (readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() === 'sgemu-udp') n++; } catch { /* gone */ }
  }
  return n;
}

function daemonConfig(addr: string, port: number, backend: number, src: string): string {
  return `securityGroups:
  - id: sg-dns
    ingress: [ { protocol: udp, ports: 53, cidr: ${src}/32 } ]
instances:
  - name: dns
    address: ${addr}
    securityGroups: [sg-dns]
    services:
      - { protocol: udp, port: 53, listenPort: ${port}, backend: "127.0.0.1:${backend}" }
`;
}

for (const mode of ['native', 'node'] as const) {
  t.test(`a daemon's UDP service relays through ${mode === 'native' ? 'the native relay' : 'node:dgram (SGEMU_RELAY=node)'}`, { skip }, async (t) => {
    const saved = process.env.SGEMU_RELAY;
    if (mode === 'node') process.env.SGEMU_RELAY = 'node';
    t.teardown(() => { if (saved === undefined) delete process.env.SGEMU_RELAY; else process.env.SGEMU_RELAY = saved; });
    const before = relayThreads();
    const addr = freshAddr(), src = freshAddr();
    const port = await freePort(addr, 'udp');
    const be = await echo(t);
    const { daemon } = await startDaemon(t, daemonConfig(addr, port, be.port, src));
    t.equal(relayThreads() - before, mode === 'native' ? 1 : 0, mode === 'native' ? 'one relay thread for the listener' : 'no relay thread');
    const c = await client(t, src, addr, port);
    for (const m of ['a', 'b', 'c']) {
      const n = c.got.length;
      c.s.send(m);
      t.ok(await until(() => c.got.length === n + 1), `reply ${m}`);
    }
    const e = daemon.conntrack().find((x) => x.srcPort === c.port);
    t.match(e, { protocol: 'udp', state: 'STREAM' }, 'conntrack sees the relayed exchanges');
    const bad = await client(t, freshAddr(), addr, port);
    bad.s.send('x');
    await sleep(150);
    t.equal(bad.got.length, 0, 'a denied source hears nothing');
    await daemon.stop(0);
    t.equal(relayThreads(), before, 'the thread is joined on stop');
  });
}
