// UDP faults in the native relay (issue #18): loss, duplicate, reorder and latency applied by the
// relay thread to real datagrams on loopback, both directions, per flow (toxicity), with the
// first datagram (handed to JS) faulted like the rest, a memory cap on held/delayed datagrams,
// and removal; the daemon test runs last (stopping a daemon closes the shared capability helper).
// Statistical bounds are ±5 sigma of the binomial; times are medians of many.
import t, { type Test } from 'tap';
import dgram from 'node:dgram';
import { closeFd, createUdpSocket, nativeStatus } from '../../src/native/sock-filter.js';
import { UdpRelay, udpRelayAvailable, forEachDatagram } from '../../src/native/udp-relay.js';
import { parseFault } from '../../src/config/faults.js';
import type { Fault } from '../../src/model/types.js';
import { freePort, freshAddr, sleep, until } from '../helpers.js';

const st = nativeStatus();
const skip = !st.loaded ? `native addon not loaded: ${st.error}` : !udpRelayAvailable() ? 'addon has no udpRelayOpen (or SGEMU_RELAY=node)' : false;

const fault = (type: string, stream: 'upstream' | 'downstream', attributes: Record<string, number>, toxicity = 1): Fault =>
  parseFault({ type, stream, toxicity, attributes }, 17);

/** A relay on a fresh address and port; unknown clients' first datagrams are kept in `seen`. */
async function relayOn(t: Test) {
  const address = freshAddr();
  const port = await freePort(address, 'udp');
  const fd = createUdpSocket({ family: 4, address, port, program: null });
  const seen: { address: string; port: number; msg: Buffer }[] = [];
  const relay = UdpRelay.open(fd, 4, {
    datagrams: (batch, count) => forEachDatagram(batch, count, (a, p, m) => seen.push({ address: a, port: p, msg: Buffer.from(m) })),
    flowError: () => {},
  });
  t.teardown(() => { relay.close(); closeFd(fd); });
  return { relay, seen, address, port };
}

/** A backend that records every datagram (and echoes it when `echo`). */
async function backend(t: Test, echo: boolean) {
  const s = dgram.createSocket('udp4');
  const got: Buffer[] = [];
  s.on('message', (m, r) => { got.push(m); if (echo) s.send(m, r.port, r.address); });
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  s.setRecvBufferSize(4 << 20);
  t.teardown(() => new Promise<void>((r) => s.close(() => r())));
  return { port: s.address().port, got };
}

/** A client whose first datagram opened a flow in slot `slot` (forwarded by JS, as udp.ts does). */
async function flow(t: Test, r: Awaited<ReturnType<typeof relayOn>>, bePort: number, slot: number, first = 'open') {
  const s = dgram.createSocket('udp4');
  const got: { msg: Buffer; at: bigint }[] = [];
  s.on('message', (m) => got.push({ msg: m, at: process.hrtime.bigint() }));
  const src = freshAddr();
  await new Promise<void>((res) => s.bind(0, src, () => s.connect(r.port, r.address, () => res())));
  s.setRecvBufferSize(4 << 20);
  t.teardown(() => { try { s.close(); } catch { /* closed */ } });
  const n = r.seen.length;
  s.send(first);
  if (!(await until(() => r.seen.length > n, 2000))) throw new Error('first datagram never reached JS');
  r.relay.add(slot, src, s.address().port, '127.0.0.1', bePort, null);
  r.relay.send(slot, r.seen[r.seen.length - 1]!.msg);
  return { s, got };
}

const send = (s: dgram.Socket, m: string | Buffer): Promise<void> => new Promise((r) => s.send(m, () => r()));

t.test('loss 0.3 upstream over 10k datagrams: within ±5 sigma of the binomial, nothing else lost', { skip }, async (t) => {
  const r = await relayOn(t);
  const be = await backend(t, false);
  const c = await flow(t, r, be.port, 0);
  t.ok(await until(() => be.got.length === 1), 'the first datagram passed before any fault');
  r.relay.setFaults([fault('loss', 'upstream', { probability: 0.3 })]);
  const N = 10_000, CHUNK = 200;
  let sent = 0, settled = true;
  while (sent < N && settled) {
    for (let i = 0; i < CHUNK; i++) await send(c.s, `d${sent + i}`);
    sent += CHUNK;
    // paced: every datagram of the chunk has arrived or was lost by the fault, none by a full buffer
    settled = await until(() => be.got.length - 1 + r.relay.info().faultLost === sent, 3000);
  }
  t.ok(settled, `every chunk of ${CHUNK} settled before the next (${sent} sent)`);
  const got = be.got.length - 1;
  const mean = N * 0.7, sigma = Math.sqrt(N * 0.3 * 0.7);
  t.ok(Math.abs(got - mean) <= 5 * sigma, `received ${got} of ${N} (expected ${mean} ± ${Math.round(5 * sigma)})`);
  t.equal(r.relay.info().faultLost, N - got, 'every missing datagram is one the fault dropped');
});

t.test('duplicate: upstream (the first, JS-forwarded datagram too) and downstream, every datagram twice', { skip }, async (t) => {
  const r = await relayOn(t);
  const be = await backend(t, true);
  r.relay.setFaults([fault('duplicate', 'upstream', { probability: 1 })]);
  const c = await flow(t, r, be.port, 0, 'first');
  t.ok(await until(() => be.got.length === 2), 'the first datagram, forwarded by JS, reached the backend twice');
  t.same(be.got.map(String), ['first', 'first']);
  for (let i = 0; i < 20; i++) await send(c.s, `u${i}`);
  t.ok(await until(() => be.got.length === 42), `the backend got 42: ${be.got.length}`);
  t.ok(await until(() => c.got.length === 42), 'each copy echoed once');
  r.relay.setFaults([fault('duplicate', 'downstream', { probability: 1 })]);
  be.got.length = 0; c.got.length = 0;
  for (let i = 0; i < 20; i++) await send(c.s, `d${i}`);
  t.ok(await until(() => c.got.length === 40), `the client got each reply twice: ${c.got.length}`);
  t.equal(be.got.length, 20, 'upstream untouched now');
  t.ok(r.relay.info().faultDuplicated >= 41, 'counted');
});

t.test('reorder: a held datagram goes after the next one, or alone after the gap', { skip }, async (t) => {
  const r = await relayOn(t);
  const be = await backend(t, false);
  const c = await flow(t, r, be.port, 0);
  t.ok(await until(() => be.got.length === 1));
  be.got.length = 0;
  r.relay.setFaults([fault('reorder', 'upstream', { probability: 1, gap: 2000 })]);
  for (let i = 1; i <= 10; i++) await send(c.s, String(i));
  t.ok(await until(() => be.got.length === 10), 'all ten arrived');
  // p = 1: each datagram with nothing held is held; the next one passes and releases it.
  t.same(be.got.map(String), ['2', '1', '4', '3', '6', '5', '8', '7', '10', '9'], 'pairs swapped');
  r.relay.setFaults([fault('reorder', 'upstream', { probability: 1, gap: 50 })]);
  be.got.length = 0;
  const t0 = Date.now();
  await send(c.s, 'alone');
  t.ok(await until(() => be.got.length === 1, 3000), 'a held datagram with no successor leaves after the gap');
  t.ok(Date.now() - t0 >= 45, 'not before the gap (50 ms; timer resolution below 5 ms)');
  t.ok(r.relay.info().faultReordered >= 6);
});

/** Ping-pong RTTs in ms through the flow, one datagram in flight. */
async function rtts(c: { s: dgram.Socket; got: { msg: Buffer; at: bigint }[] }, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const k = c.got.length;
    const t0 = process.hrtime.bigint();
    c.s.send(`p${i}`);
    if (!(await until(() => c.got.length > k, 3000, 1))) break;
    out.push(Number(c.got[k]!.at - t0) / 1e6);
  }
  return out;
}
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]!; };

t.test('latency 20 ms downstream: the added median delay is 20 ms ± 10%; with jitter the order is kept', { skip }, async (t) => {
  const r = await relayOn(t);
  const be = await backend(t, true);
  const c = await flow(t, r, be.port, 0);
  t.ok(await until(() => c.got.length === 1));
  const base = median(await rtts(c, 40));
  r.relay.setFaults([fault('latency', 'downstream', { latency: 20, jitter: 0 })]);
  const slow = await rtts(c, 40);
  t.equal(slow.length, 40, 'every ping answered');
  const added = median(slow) - base;
  t.ok(Math.abs(added - 20) <= 2, `added median ${added.toFixed(2)} ms (baseline RTT ${base.toFixed(3)} ms)`);
  t.ok(Math.min(...slow) >= 20, `never early: min RTT ${Math.min(...slow).toFixed(2)} ms`);

  r.relay.setFaults([fault('latency', 'downstream', { latency: 20, jitter: 15 })]);
  c.got.length = 0;
  // In groups of 25, each taken by the relay before the next is sent: the groups still overlap in
  // the delay queue (35 ms of jitter), but a blast of 300 could overflow a default-sized socket
  // buffer while a machine running other tests keeps the relay thread off its CPU (seen in CI),
  // and loss is not what this test is about.
  const d0 = r.relay.info().faultDelayed;
  for (let i = 0; i < 300; i += 25) {
    for (let j = i; j < i + 25; j++) await send(c.s, String(j));
    await until(() => r.relay.info().faultDelayed - d0 >= i + 25, 2000);
  }
  t.ok(await until(() => c.got.length === 300, 5000), `all 300 delayed replies arrived (${c.got.length})`);
  const order = c.got.map((g) => Number(String(g.msg)));
  t.same(order, order.slice().sort((a, b) => a - b), 'in the order they were sent, although each drew its own delay');
  t.ok(r.relay.info().faultDelayed - d0 >= 300, `the relay delayed all 300 (${r.relay.info().faultDelayed - d0})`);

  r.relay.setFaults([]);
  await sleep(50);
  const after = median(await rtts(c, 40));
  t.ok(after < base + 5, `removed: median RTT back to ${after.toFixed(3)} ms`);
});

t.test('toxicity: 0 leaves the flow alone, 1 applies; per flow, rolled again when the fault changes', { skip }, async (t) => {
  const r = await relayOn(t);
  const be = await backend(t, true);
  const a = await flow(t, r, be.port, 0);
  const b = await flow(t, r, be.port, 1);
  t.ok(await until(() => a.got.length === 1 && b.got.length === 1));
  r.relay.setFaults([fault('loss', 'upstream', { probability: 1 }, 0)]);
  for (let i = 0; i < 50; i++) { await send(a.s, 'x'); await send(b.s, 'y'); }
  t.ok(await until(() => a.got.length === 51 && b.got.length === 51), 'toxicity 0: nothing lost');
  r.relay.setFaults([fault('loss', 'upstream', { probability: 1 }, 1)]);
  for (let i = 0; i < 50; i++) { await send(a.s, 'x'); await send(b.s, 'y'); }
  await sleep(100);
  t.equal(a.got.length + b.got.length, 102, 'toxicity 1, loss 1: nothing passes');
  // toxicity 0.5 on 2 flows: a changed fault is rolled again (here its toxicity moves by a hair
  // each time, so it is a new fault; an unchanged one keeps its roll), so over 40 sets both
  // outcomes appear
  let hit = 0, spared = 0;
  for (let k = 0; k < 40; k++) {
    r.relay.setFaults([fault('loss', 'upstream', { probability: 1 }, 0.5 + k * 1e-6)]);
    const n = a.got.length;
    await send(a.s, 'z');
    if (await until(() => a.got.length > n, 100)) spared++; else hit++;
  }
  t.ok(hit > 0 && spared > 0, `toxicity 0.5: ${hit} sets hit the flow, ${spared} spared it`);
  r.relay.setFaults([]);
  const n = a.got.length;
  for (let i = 0; i < 20; i++) await send(a.s, 'back');
  t.ok(await until(() => a.got.length === n + 20), 'faults removed: back to normal');
});

t.test('held and delayed datagrams are bounded: over 4 MiB they are dropped and counted', { skip }, async (t) => {
  const r = await relayOn(t);
  const be = await backend(t, false);
  const c = await flow(t, r, be.port, 0);
  t.ok(await until(() => be.got.length === 1));
  be.got.length = 0;
  // The latency outlasts the sending (about 0.1 s here, 0.65 s on a machine running other work
  // at a higher priority, where 300 ms let the first ones leave and make room for more): what is
  // held at the end is what was delayed less what the backend already got.
  const LATENCY_MS = 3000;
  r.relay.setFaults([fault('latency', 'upstream', { latency: LATENCY_MS, jitter: 0 })]);
  const big = Buffer.alloc(60_000, 1);
  const taken = () => { const i = r.relay.info(); return i.faultDelayed + i.faultOverCap; };
  let paced = true;
  const t0 = performance.now();
  for (let i = 0; i < 100 && paced; i++) {   // 6 MB asked to wait, one at a time (the socket buffer holds ~3)
    await send(c.s, big);
    paced = await until(() => taken() === i + 1, 2000, 1);
  }
  t.ok(paced, 'each one delayed or dropped by the relay');
  const info = r.relay.info(), released = be.got.length;
  t.ok(info.faultOverCap > 0 && info.faultDelayed - released <= 69,
    `delayed ${info.faultDelayed} (${released} already released: sending took ${(performance.now() - t0).toFixed(0)} ms of the ${LATENCY_MS} ms), over the cap ${info.faultOverCap}`);
  t.ok(await until(() => be.got.length === info.faultDelayed, LATENCY_MS + 3000), 'the delayed ones arrive');
});

t.test('the relay refuses a fault set it cannot apply (EINVAL), and keeps the one it had', { skip }, async (t) => {
  const r = await relayOn(t);
  const be = await backend(t, false);
  const c = await flow(t, r, be.port, 0);
  t.ok(await until(() => be.got.length === 1));
  r.relay.setFaults([fault('duplicate', 'upstream', { probability: 1 })]);
  const tcpOnly: Fault = { name: 'bw', type: 'bandwidth', stream: 'upstream', toxicity: 1, attributes: { rate: 1 } };
  t.throws(() => r.relay.setFaults([tcpOnly]), { code: 'EINVAL' }, 'a TCP-only fault type');
  t.throws(() => r.relay.setFaults([{ ...fault('latency', 'upstream', { latency: 1 }), attributes: { latency: Number.NaN, jitter: 0 } }]), { code: 'EINVAL' }, 'NaN');
  t.throws(() => r.relay.setFaults([fault('loss', 'upstream', { probability: 0.5 }, 1), { ...fault('loss', 'upstream', { probability: 0.5 }), toxicity: 2 }]), { code: 'EINVAL' }, 'toxicity above 1');
  await send(c.s, 'still');
  t.ok(await until(() => be.got.length === 3), 'the previous set (duplicate) still applies');
});

t.test('UdpListener.setFaults: the daemon\'s UDP service delays its flows; [] restores them', { skip }, async (t) => {
  const { startDaemon } = await import('../e2e/helpers.js');
  const addr = freshAddr(), src = freshAddr();
  const port = await freePort(addr, 'udp');
  const be = await backend(t, true);
  const { daemon } = await startDaemon(t, `securityGroups:
  - id: sg-f
    ingress: [{ protocol: udp, ports: ${port}, cidr: ${src}/32 }]
instances:
  - name: f
    address: ${addr}
    securityGroups: [sg-f]
    services: [{ protocol: udp, port: ${port}, backend: "127.0.0.1:${be.port}" }]
`);
  const { UdpListener } = await import('../../src/dataplane/udp.js');
  const l = [...daemon.listeners.values()].find((x) => x instanceof UdpListener) as InstanceType<typeof UdpListener>;
  t.equal(l.relayMode, 'native');
  l.setFaults([fault('latency', 'upstream', { latency: 20, jitter: 0 })]);
  const s = dgram.createSocket('udp4');
  const got: { msg: Buffer; at: bigint }[] = [];
  s.on('message', (m) => got.push({ msg: m, at: process.hrtime.bigint() }));
  await new Promise<void>((res) => s.bind(0, src, () => s.connect(port, addr, () => res())));
  t.teardown(() => s.close());
  const slow = await rtts({ s, got }, 20);
  t.equal(slow.length, 20, 'answered');
  t.ok(Math.min(...slow) >= 20, `the first datagram (decided in JS) was delayed too: first RTT ${slow[0]!.toFixed(2)} ms, min ${Math.min(...slow).toFixed(2)}`);
  t.ok(Math.abs(median(slow) - 20) <= 2.5, `median RTT ${median(slow).toFixed(2)} ms`);
  l.setFaults([]);
  const fast = await rtts({ s, got }, 20);
  t.ok(median(fast) < 5, `removed: median ${median(fast).toFixed(3)} ms`);
});
