// Adversarial tests of TCP faults in the native relay (issue 18, SPEC.md §9; native-notes/faults.md):
// memory bounds of the fault queues, many flows under a fault that is then removed, faults removed
// while data is queued, both streams limited, toxicity over many flows, every close order while data
// is queued, the daemon stopping with queued data, reload storms, outbound entries and IPv6.
// Real daemon in this process, real sockets on loopback only; every wait bounded.

import t, { type Test } from 'tap';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { relayFaultStats, relayStats, tcpRelayStatus } from '../../src/native/tcp-relay.js';
import { freePort, freshAddr, sleep, startDaemon, until } from './helpers.js';

const skip = !tcpRelayStatus().available ? `native TCP relay unavailable: ${tcpRelayStatus().reason}` : false;

interface Back { port: number; conns: net.Socket[]; got: Map<net.Socket, Buffer[]>; server: net.Server }

/** A backend: `mode` echo (default), sink (reads, never answers) or stall (never reads). On `send:N` it sends N bytes and ends. */
async function backend(t: Test, mode: 'echo' | 'sink' | 'stall' = 'echo', host = '127.0.0.1'): Promise<Back> {
  const conns: net.Socket[] = [];
  const got = new Map<net.Socket, Buffer[]>();
  const server = net.createServer({ allowHalfOpen: true }, (c) => {
    conns.push(c);
    got.set(c, []);
    c.on('error', () => {});
    if (mode === 'stall') { c.pause(); return; }
    c.on('data', (d: Buffer) => {
      got.get(c)!.push(d);
      const m = /^send:(\d+)$/.exec(d.toString());
      if (m) { c.end(Buffer.alloc(Number(m[1]), 0x62)); return; }
      if (mode === 'echo') c.write(d);
    });
    c.on('end', () => c.end());
  });
  server.maxConnections = Infinity;
  await new Promise<void>((r) => server.listen(0, host, 511, () => r()));
  t.teardown(() => { for (const c of conns) c.destroy(); return new Promise<void>((r) => server.close(() => r())); });
  return { port: (server.address() as net.AddressInfo).port, conns, got, server };
}

function yaml(addr: string, port: number, backPort: number, faults: string, extra = ''): string {
  return `
securityGroups:
  - id: sg-adv
    ingress: [ { protocol: tcp, ports: ${port}, cidr: 127.0.0.0/8 } ]
instances:
  - name: adv
    address: ${addr}
    securityGroups: [sg-adv]
    services:
      - protocol: tcp
        port: ${port}
        backend: "127.0.0.1:${backPort}"
        faults: ${faults}
${extra}`;
}

function connect(t: Test, host: string, port: number, localAddress?: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ host, port, localAddress });
    c.setNoDelay(true);
    c.on('error', () => {});
    t.teardown(() => c.destroy());
    c.once('connect', () => { c.off('error', reject); resolve(c); });
    c.once('error', reject);
  });
}

/** Everything the socket receives until it ends or closes, and how it ended. */
function collect(c: net.Socket): Promise<{ data: Buffer; how: 'end' | 'reset' | 'close'; at: number }> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let how: 'end' | 'reset' | 'close' = 'close';
    c.on('data', (d: Buffer) => parts.push(d));
    c.on('end', () => { how = 'end'; });
    c.on('error', (e: NodeJS.ErrnoException) => { if (e.code === 'ECONNRESET') how = 'reset'; });
    c.on('close', () => resolve({ data: Buffer.concat(parts), how, at: performance.now() }));
  });
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const rssMb = (): number => process.memoryUsage().rss / 1048576;

/** The relay is back to nothing: no flow, no fault state. */
async function relayIdle(t: Test, what: string, ms = 10_000): Promise<void> {
  const ok = await until(() => (relayStats()?.flows ?? 0) === 0 && (relayFaultStats()?.faultedFlows ?? 0) === 0, ms, 20);
  t.ok(ok, `${what}: relay flows ${relayStats()?.flows}, faulted ${relayFaultStats()?.faultedFlows} (both 0)`);
}

async function addFault(api: string, body: unknown): Promise<number> {
  const r = await fetch(`http://${api}/v1/faults`, { method: 'POST', body: JSON.stringify(body) });
  await r.text();
  return r.status;
}
async function removeFault(api: string, target: string, name?: string): Promise<number> {
  const r = await fetch(`http://${api}/v1/faults?target=${encodeURIComponent(target)}${name ? `&name=${encodeURIComponent(name)}` : ''}`, { method: 'DELETE' });
  await r.text();
  return r.status;
}

/** A UDP echo backend and a daemon serving it on a fresh address with `faults`; its API's address. */
async function udpEchoDaemon(t: Test, faults: string): Promise<{ addr: string; port: number; api: string }> {
  const dgram = await import('node:dgram');
  const addr = freshAddr(), port = await freePort(addr, 'udp');
  const echo = dgram.createSocket('udp4');
  echo.on('message', (m, r) => echo.send(m, r.port, r.address));
  await new Promise<void>((r) => echo.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => echo.close());
  const { daemon } = await startDaemon(t, `
securityGroups:
  - id: sg-u
    ingress: [ { protocol: udp, ports: ${port}, cidr: 127.0.0.0/8 } ]
instances:
  - name: adv
    address: ${addr}
    securityGroups: [sg-u]
    services:
      - protocol: udp
        port: ${port}
        backend: "127.0.0.1:${echo.address().port}"
        faults: ${faults}
`, { api: { host: '127.0.0.1', port: 0 } });
  return { addr, port, api: `127.0.0.1:${daemon.api!.port}` };
}

// ---------------------------------------------------------------------------------------------

// The memory bound holds since queued counts each segment's cost (5x the data for 1-byte slices,
// was 27x). The flows' arrival at the backend is checked too: a 1-byte slicer used to hold the
// relay thread for seconds (one send per byte while the stalled backend's buffers took them), so
// the other flows' backend connects waited, the test let go of the only backend connection it had
// seen, and the two others outlived their clients (tcp_relay.c FX_SEND_BUDGET).
t.test('slicer average_size 1: what a stalled backend leaves queued stays near the 1 MiB cap per direction', { skip }, async (t) => {
  const addr = freshAddr(), port = await freePort(addr);
  const back = await backend(t, 'stall');
  await startDaemon(t, yaml(addr, port, back.port, '[ { type: slicer, stream: upstream, attributes: { average_size: 1, size_variation: 0, delay: 0 } } ]'));
  const FLOWS = 3, SEND = 4 << 20;
  await sleep(200);
  global.gc?.();
  const before = rssMb();
  const clients: net.Socket[] = [];
  for (let i = 0; i < FLOWS; i++) {
    const c = await connect(t, addr, port);
    c.write(Buffer.alloc(SEND, 0x61));
    clients.push(c);
  }
  // the relay reads until its queue holds 1 MiB, then stops reading: wait until memory stops growing
  let last = rssMb();
  for (let i = 0, still = 0; i < 75 && still < 5; i++) {
    await sleep(200);
    const now = rssMb();
    still = now - last < 0.5 ? still + 1 : 0;
    last = now;
  }
  t.equal(back.conns.length, FLOWS, 'every flow reached the backend while the others filled their queues: no flow holds the relay thread');
  const grown = rssMb() - before;
  t.comment(`RSS grew ${grown.toFixed(1)} MB for ${FLOWS} flows x 1 MiB queued`);
  t.ok(grown < FLOWS * 8, `the queues of ${FLOWS} flows (1 MiB of data each) cost < 8x their data in memory (${grown.toFixed(1)} MB, ${(grown / FLOWS).toFixed(1)}x)`);
  for (const c of clients) c.destroy();
  for (const b of back.conns) b.destroy();
  await relayIdle(t, 'after both sides went');
});

t.test('1000 concurrent flows under latency, then the fault removed: all finish, nothing leaks', { skip }, async (t) => {
  const addr = freshAddr(), port = await freePort(addr);
  const back = await backend(t, 'echo');
  const { daemon } = await startDaemon(t, yaml(addr, port, back.port, '[ { name: lat, type: latency, stream: downstream, attributes: { latency: 300, jitter: 50 } } ]'), { api: { host: '127.0.0.1', port: 0 }, conntrackMax: 20000 });
  const api = `127.0.0.1:${daemon.api!.port}`;
  const N = 1000;
  const src = [freshAddr(), freshAddr(), freshAddr(), freshAddr()];
  await sleep(50);
  const rss0 = rssMb();
  const socks: net.Socket[] = [];
  const results: Promise<{ data: Buffer; how: string }>[] = [];
  for (let i = 0; i < N; i++) {
    const c = await connect(t, addr, port, src[i % src.length]);
    socks.push(c);
    results.push(collect(c));
  }
  const msg = (i: number) => Buffer.from(`flow-${i}-${'x'.repeat(i % 200)}|`);
  socks.forEach((c, i) => { c.write(msg(i)); c.write(msg(i)); });
  await sleep(100);   // the echoes are queued behind 300 ms of latency now
  t.ok((relayFaultStats()?.faultedFlows ?? 0) >= N, `${relayFaultStats()?.faultedFlows} flows hold fault state`);
  t.equal(await removeFault(api, `adv:tcp/${port}`, 'lat'), 200, 'fault removed while data is queued');
  // every flow gets its two messages back, in order, then the client ends it
  const ok = await until(() => socks.every((c, i) => c.bytesRead >= 2 * msg(i).length), 20_000, 20);
  t.ok(ok, `every flow got its echo (${socks.filter((c, i) => c.bytesRead >= 2 * msg(i).length).length}/${N})`);
  for (const c of socks) c.end();
  const all = await Promise.race([Promise.all(results), sleep(20_000).then(() => null)]);
  t.ok(all, 'every flow closed');
  if (all) {
    const bad = all.map((r, i) => (r.data.equals(Buffer.concat([msg(i), msg(i)])) ? -1 : i)).filter((i) => i >= 0);
    t.same(bad.slice(0, 5), [], 'every flow got exactly its bytes back, in order');
  }
  await relayIdle(t, '1000 flows ended');
  const grown = rssMb() - rss0;
  t.ok(grown < 200, `RSS bounded: +${grown.toFixed(1)} MB for 1000 flows`);
  // new flows after the removal: no fault state (splice path)
  const c = await connect(t, addr, port);
  const r = collect(c);
  c.end('after');
  t.equal((await r).data.toString(), 'after');
  t.equal(relayFaultStats()?.faultedFlows, 0, 'a new flow holds no fault state');
});

t.test('bandwidth rate 1 with a 1 MiB upload, then the fault removed: every byte delivered intact', { skip }, async (t) => {
  const addr = freshAddr(), port = await freePort(addr);
  const back = await backend(t, 'sink');
  const { daemon } = await startDaemon(t, yaml(addr, port, back.port, '[ { name: bw, type: bandwidth, stream: upstream, attributes: { rate: 1 } } ]'), { api: { host: '127.0.0.1', port: 0 } });
  const api = `127.0.0.1:${daemon.api!.port}`;
  const data = Buffer.alloc(1 << 20);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
  const c = await connect(t, addr, port);
  const done = collect(c);
  c.end(data);
  await sleep(800);
  const early = Buffer.concat(back.got.get(back.conns[0]!) ?? []).length;
  t.ok(early <= 2_000, `at 1 KB/s, at most ~1 KB went through in 0.8 s (${early} bytes)`);
  t.equal(await removeFault(api, `adv:tcp/${port}`, 'bw'), 200);
  const ok = await until(() => Buffer.concat(back.got.get(back.conns[0]!) ?? []).length >= data.length, 15_000, 20);
  const got = Buffer.concat(back.got.get(back.conns[0]!) ?? []);
  t.ok(ok, `all of 1 MiB delivered after the removal (${got.length})`);
  t.equal(sha(got), sha(data), 'intact and in order');
  const r = await Promise.race([done, sleep(5000).then(() => null)]);
  t.ok(r && r.how === 'end', 'the FIN went through after the data: the flow ends cleanly');
  await relayIdle(t, 'after the upload');
});

t.test('limit_data on both streams: each stream counts its own bytes', { skip }, async (t) => {
  const addr = freshAddr(), port = await freePort(addr);
  const back = await backend(t, 'sink');
  await startDaemon(t, yaml(addr, port, back.port, `[ { name: up, type: limit_data, stream: upstream, attributes: { bytes: 1000 } },
                  { name: down, type: limit_data, stream: downstream, attributes: { bytes: 500 } } ]`));
  // upstream: 5000 bytes sent, exactly 1000 reach the backend, then the connection closes
  const c1 = await connect(t, addr, port);
  const r1 = collect(c1);
  c1.write(Buffer.alloc(5000, 0x75));
  const e1 = await Promise.race([r1, sleep(5000).then(() => null)]);
  t.ok(e1, 'the connection closed after the upstream limit');
  await until(() => back.conns.length >= 1 && back.conns[0]!.readableEnded, 2000);
  t.equal(Buffer.concat(back.got.get(back.conns[0]!) ?? []).length, 1000, 'exactly 1000 bytes upstream');
  // downstream: 8 bytes up (under 1000), the backend sends 3000, the client gets exactly 500
  const c2 = await connect(t, addr, port);
  const r2 = collect(c2);
  c2.write('send:3000');
  const e2 = await Promise.race([r2, sleep(5000).then(() => null)]);
  t.ok(e2, 'the connection closed after the downstream limit');
  t.equal(e2?.data.length, 500, 'exactly 500 bytes downstream');
  t.equal(Buffer.concat(back.got.get(back.conns[1]!) ?? []).toString(), 'send:3000', 'the upstream bytes (under their own limit) all went through');
  await relayIdle(t, 'after limit_data');
});

t.test('reset_peer with toxicity 0.5 over 200 flows: about half are reset (binomial bounds)', { skip }, async (t) => {
  const addr = freshAddr(), port = await freePort(addr);
  const back = await backend(t, 'echo');
  await startDaemon(t, yaml(addr, port, back.port, '[ { type: reset_peer, stream: downstream, toxicity: 0.5, attributes: { timeout: 50 } } ]'));
  const N = 200;
  let reset = 0, echoed = 0, other = 0;
  for (let batch = 0; batch < N; batch += 50) {
    await Promise.all(Array.from({ length: 50 }, async () => {
      const c = await connect(t, addr, port);
      const r = collect(c);
      c.write('hello');
      await until(() => c.bytesRead >= 5 || c.destroyed, 2000);
      c.end();
      const x = await Promise.race([r, sleep(3000).then(() => null)]);
      if (x?.how === 'reset') reset++;
      else if (x && x.data.toString() === 'hello') echoed++;
      else other++;
    }));
  }
  // mean 100, sd 7.07: ±5 sd
  t.ok(reset >= 65 && reset <= 135, `${reset} of ${N} reset (65..135)`);
  t.equal(reset + echoed, N, `every other flow echoed untouched (${echoed} echoed, ${other} neither)`);
  await relayIdle(t, 'after 200 flows');
});

t.test('timeout, then removed: the flow does not hang (data flows again, or it closes as Toxiproxy does)', { skip }, async (t) => {
  const addr = freshAddr(), port = await freePort(addr);
  const back = await backend(t, 'echo');
  const { daemon } = await startDaemon(t, yaml(addr, port, back.port, '[ { name: to, type: timeout, stream: upstream, attributes: { timeout: 0 } } ]'), { api: { host: '127.0.0.1', port: 0 } });
  const api = `127.0.0.1:${daemon.api!.port}`;
  const c = await connect(t, addr, port);
  const r = collect(c);
  c.write('dropped');
  await sleep(200);
  t.equal(c.bytesRead, 0, 'nothing comes back while the timeout toxic drops the data');
  t.equal(await removeFault(api, `adv:tcp/${port}`, 'to'), 200);
  await sleep(50);
  if (!c.destroyed) c.write('again');
  await until(() => c.bytesRead >= 5 || c.destroyed || c.readableEnded, 3000);
  t.ok(c.bytesRead >= 5 || c.readableEnded || c.destroyed, `after removal: ${c.bytesRead >= 5 ? 'data flows again' : 'closed'}`);
  t.comment(c.bytesRead >= 5 ? 'sgemu: removal lets data flow (Toxiproxy main closes the link: TimeoutToxic.Cleanup)' : 'closed on removal');
  c.end();
  await Promise.race([r, sleep(3000)]);
  await relayIdle(t, 'after timeout removal');
});

t.test('close orders while data is queued: no crash, no leak, FIN after the data', { skip }, async (t) => {
  const addr = freshAddr(), port = await freePort(addr);
  const back = await backend(t, 'echo');
  await startDaemon(t, yaml(addr, port, back.port, `[ { type: latency, stream: downstream, attributes: { latency: 300 } },
                  { type: latency, stream: upstream, attributes: { latency: 300 } } ]`));
  // 1. backend sends and closes at once: the client gets the data, then the FIN
  {
    const c = await connect(t, addr, port);
    const r = collect(c);
    const t0 = performance.now();
    c.write('send:100000');
    const x = await Promise.race([r.then((v) => v), sleep(5000).then(() => null)]);
    // the client never ended its side: with allowHalfOpen the relay closes once both are shut; end ours
    t.ok(x === null || x.data.length === 100000, 'data before FIN');
    if (x === null) {
      t.ok(await until(() => c.readableEnded, 3000), 'the FIN arrived');
      t.equal(c.bytesRead, 100000, 'all 100000 bytes before the FIN');
      t.ok(performance.now() - t0 >= 550, 'after both latencies');
      c.end();
    }
  }
  // 2. client writes and half-closes at once: the backend gets the data, then the FIN; the echo comes back
  {
    const c = await connect(t, addr, port);
    const r = collect(c);
    c.end('bye-bye');
    const x = await Promise.race([r, sleep(5000).then(() => null)]);
    t.equal(x?.data.toString(), 'bye-bye', 'the echo of a half-closed client comes back after the latency');
  }
  // 3. client resets while its data and the echo are queued
  for (let i = 0; i < 20; i++) {
    const c = await connect(t, addr, port);
    c.write(Buffer.alloc(50_000, 0x63));
    await sleep(i * 5);
    c.resetAndDestroy();
  }
  // 4. backend resets while data is queued both ways
  {
    const before = back.conns.length;
    const cs: net.Socket[] = [];
    for (let i = 0; i < 20; i++) {
      const c = await connect(t, addr, port);
      c.write(Buffer.alloc(50_000, 0x64));
      cs.push(c);
    }
    await until(() => back.conns.length >= before + 20, 3000);
    await sleep(400);
    for (const b of back.conns.slice(before)) b.resetAndDestroy();
    t.ok(await until(() => cs.every((c) => c.destroyed || c.readableEnded), 5000), 'every client learns that its backend went');
    for (const c of cs) c.destroy();
  }
  // 5. both close at the same moment while data is queued
  {
    const before = back.conns.length;
    const cs: net.Socket[] = [];
    for (let i = 0; i < 20; i++) {
      const c = await connect(t, addr, port);
      c.write(Buffer.alloc(10_000, 0x65));
      cs.push(c);
    }
    await until(() => back.conns.length >= before + 20, 3000);
    await sleep(350);
    cs.forEach((c, i) => { c.end(); back.conns[before + i]!.end(); });
  }
  await relayIdle(t, 'after every close order');
});

t.test('the daemon stops with data queued behind an hour of latency: no hang, no crash', { skip }, async (t) => {
  const addr = freshAddr(), port = await freePort(addr);
  const back = await backend(t, 'echo');
  const { daemon } = await startDaemon(t, yaml(addr, port, back.port, '[ { type: latency, stream: downstream, attributes: { latency: 3600000 } }, { type: bandwidth, stream: upstream, attributes: { rate: 1 } } ]'));
  const cs: net.Socket[] = [];
  for (let i = 0; i < 50; i++) {
    const c = await connect(t, addr, port);
    c.write(Buffer.alloc(300_000, 0x66));
    cs.push(c);
  }
  await sleep(300);
  const t0 = performance.now();
  const stopped = await Promise.race([daemon.stop(0).then(() => true), sleep(10_000).then(() => false)]);
  t.ok(stopped, `the daemon stopped (${(performance.now() - t0).toFixed(0)} ms)`);
  t.ok(await until(() => cs.every((c) => c.destroyed || c.readableEnded), 5000), 'every client connection ended');
  t.equal(relayStats()?.flows ?? 0, 0, 'no flow left in the relay');
});

t.test('reload storm and EC2-style model swaps: config and API faults stay applied on kept listeners', { skip }, async (t) => {
  const addr = freshAddr(), port = await freePort(addr), other = await freePort(addr);
  const back = await backend(t, 'echo');
  const cfg = (extraPort: boolean) => yaml(addr, port, back.port, '[ { name: lat, type: latency, attributes: { latency: 100 } } ]',
    extraPort ? `      - { protocol: tcp, port: ${other}, backend: "127.0.0.1:${back.port}" }\n` : '');
  const { daemon, configPath } = await startDaemon(t, cfg(false), { api: { host: '127.0.0.1', port: 0 } });
  const api = `127.0.0.1:${daemon.api!.port}`;
  t.equal(await addFault(api, { target: `adv:tcp/${port}`, name: 'up', type: 'latency', stream: 'upstream', attributes: { latency: 50 } }), 201);
  const c = await connect(t, addr, port);
  const rtts: number[] = [];
  let storm = true;
  const reloads = (async () => {
    for (let i = 0; storm && i < 60; i++) {
      writeFileSync(configPath, cfg(i % 2 === 0));
      await daemon.reload();
      await daemon.applyModel(daemon.baseModel);   // what an EC2 API change does: a whole swap
    }
  })();
  for (let i = 0; i < 15; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve) => { c.once('data', () => resolve()); c.write(`m${i}`); });
    rtts.push(performance.now() - t0);
  }
  storm = false;
  await reloads;
  t.ok(rtts.every((x) => x >= 135), `every round trip during the storm kept both latencies (>= 135 ms of 150): ${rtts.map((x) => x.toFixed(0)).join(' ')}`);
  const listed = ((await (await fetch(`http://${api}/v1/faults?target=adv:tcp/${port}`)).json()) as { faults: { name: string }[] }).faults.map((f) => f.name);
  t.same(listed, ['lat', 'up'], 'the config fault and the API fault are both still listed');
  const c2 = await connect(t, addr, port);
  const t0 = performance.now();
  await new Promise<void>((resolve) => { c2.once('data', () => resolve()); c2.write('new'); });
  t.ok(performance.now() - t0 >= 135, 'a new flow after the storm gets both faults');
});

t.test('faults on an outbound entry and on an IPv6 (::1) service', { skip }, async (t) => {
  const web = freshAddr(), db = freshAddr(), client = freshAddr();
  const dbPort = await freePort(db), outPort = await freePort(web), v6Port = await freePort('::1');
  const back = await backend(t, 'echo');
  await startDaemon(t, `
securityGroups:
  - id: sg-web
    egress: [ { protocol: tcp, ports: 5432, groups: [sg-db] } ]
  - id: sg-db
    ingress: [ { protocol: tcp, ports: 5432, groups: [sg-web] } ]
  - id: sg-six
    ingress: [ { protocol: tcp, ports: ${v6Port}, cidr: "::1/128" } ]
instances:
  - name: web
    address: ${web}
    securityGroups: [sg-web]
    outbound:
      - protocol: tcp
        port: ${outPort}
        to: "db:5432"
        faults: [ { type: latency, stream: downstream, attributes: { latency: 150 } } ]
  - name: db
    address: ${db}
    securityGroups: [sg-db]
    services:
      - { protocol: tcp, port: 5432, listenPort: ${dbPort}, backend: "127.0.0.1:${back.port}" }
  - name: six
    address: ${freshAddr()}
    address6: "::1"
    securityGroups: [sg-six]
    services:
      - protocol: tcp
        port: ${v6Port}
        backend: "127.0.0.1:${back.port}"
        faults: [ { type: latency, stream: upstream, attributes: { latency: 150 } } ]
`);
  const rtt = async (host: string, p: number, local?: string): Promise<number> => {
    const c = await connect(t, host, p, local);
    const t0 = performance.now();
    await new Promise<void>((resolve) => { c.once('data', () => resolve()); c.write('x'); });
    const d = performance.now() - t0;
    c.destroy();
    return d;
  };
  const out = await rtt(web, outPort, client);
  t.ok(out >= 135 && out < 400, `outbound entry: the fault delays the round trip (${out.toFixed(1)} ms, 150 asked)`);
  const six = await rtt('::1', v6Port, '::1');
  t.ok(six >= 135 && six < 400, `IPv6 service: the fault delays the round trip (${six.toFixed(1)} ms, 150 asked)`);
  await relayIdle(t, 'after outbound and IPv6');
});

/** An upload the backend does not read until the buffers on the way are full; then, optionally, a
 * fault added to the live flow; then the backend reads. Every byte must arrive either way. */
async function stuckUpload(t: Test, withFault: boolean): Promise<void> {
  const addr = freshAddr(), port = await freePort(addr);
  const back = await backend(t, 'stall');
  const { daemon } = await startDaemon(t, yaml(addr, port, back.port, '[]'), { api: { host: '127.0.0.1', port: 0 } });
  const api = `127.0.0.1:${daemon.api!.port}`;
  const data = Buffer.alloc(16 << 20);
  for (let i = 0; i < data.length; i++) data[i] = (i * 40503) >>> 8;
  const c = await connect(t, addr, port);
  c.end(data);
  await until(() => back.conns.length === 1, 2000);
  await sleep(500);   // the pipe and the socket buffers on the way fill up; splice stops reading the client
  if (withFault) t.equal(await addFault(api, { target: `adv:tcp/${port}`, name: 'lat', type: 'latency', stream: 'upstream', attributes: { latency: 1 } }), 201, 'a fault added to the live, stuck flow');
  const b = back.conns[0]!;
  const parts: Buffer[] = [];
  b.on('data', (d: Buffer) => parts.push(d));
  b.resume();
  const ok = await until(() => parts.reduce((s, p) => s + p.length, 0) >= data.length, 15_000, 20);
  const got = Buffer.concat(parts);
  t.ok(ok, `all 16 MiB reach the backend once it reads (${got.length} of ${data.length})`);
  if (ok) t.equal(sha(got), sha(data), 'intact');
  c.destroy();
  b.destroy();
  await relayIdle(t, 'after the upload');
}

/** The same downstream: the client does not read a 16 MiB answer until the buffers are full. */
async function stuckDownload(t: Test, withFault: boolean): Promise<void> {
  const addr = freshAddr(), port = await freePort(addr);
  const back = await backend(t, 'echo');
  const { daemon } = await startDaemon(t, yaml(addr, port, back.port, '[]'), { api: { host: '127.0.0.1', port: 0 } });
  const api = `127.0.0.1:${daemon.api!.port}`;
  const N = 16 << 20;
  const c = await connect(t, addr, port);
  c.pause();
  c.write(`send:${N}`);
  await until(() => back.conns.length === 1, 2000);
  await sleep(500);
  if (withFault) t.equal(await addFault(api, { target: `adv:tcp/${port}`, name: 'lat', type: 'latency', stream: 'downstream', attributes: { latency: 1 } }), 201, 'a fault added to the live, stuck flow');
  let n = 0;
  c.on('data', (d: Buffer) => { n += d.length; });
  c.resume();
  const ok = await until(() => n >= N, 15_000, 20);
  t.ok(ok, `all 16 MiB reach the client once it reads (${n} of ${N})`);
  c.destroy();
  await relayIdle(t, 'after the download');
}

t.test('control: a back-pressured upload without faults completes', { skip }, (t) => stuckUpload(t, false));
t.test('a fault added to a flow splice left back-pressured: the upload still completes', { skip }, (t) => stuckUpload(t, true));
t.test('control: a back-pressured download without faults completes', { skip }, (t) => stuckDownload(t, false));
t.test('a fault added to a flow splice left back-pressured, downstream: the download still completes', { skip }, (t) => stuckDownload(t, true));

t.test('a toxic added on one stream leaves the other stream\'s data in flight delayed (Toxiproxy: one link changes)', {
  skip,
}, async (t) => {
  const addr = freshAddr(), port = await freePort(addr);
  const back = await backend(t, 'echo');
  const { daemon } = await startDaemon(t, yaml(addr, port, back.port, '[ { name: lat, type: latency, stream: downstream, attributes: { latency: 1000 } } ]'), { api: { host: '127.0.0.1', port: 0 } });
  const api = `127.0.0.1:${daemon.api!.port}`;
  const c = await connect(t, addr, port);
  const t0 = performance.now();
  const echoed = new Promise<number>((resolve) => c.once('data', () => resolve(performance.now() - t0)));
  c.write('ping');
  await sleep(200);   // the echo sits in the downstream queue now
  t.equal(await addFault(api, { target: `adv:tcp/${port}`, name: 'other', type: 'latency', stream: 'upstream', attributes: { latency: 0 } }), 201, 'an upstream toxic added');
  const rtt = await echoed;
  t.ok(rtt >= 900, `the echo still waited its 1000 ms of downstream latency (${rtt.toFixed(0)} ms)`);
});

t.test('UDP: loss and latency over many flows, then removed: counts in bounds, then every datagram direct', { skip }, async (t) => {
  const dgram = await import('node:dgram');
  const { addr, port, api } = await udpEchoDaemon(t, '[ { name: loss, type: loss, stream: upstream, attributes: { probability: 0.5 } }, { name: lat, type: latency, stream: downstream, attributes: { latency: 30 } } ]');
  const FLOWS = 50, PER = 40;
  const socks = await Promise.all(Array.from({ length: FLOWS }, async () => {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    t.teardown(() => s.close());
    return s;
  }));
  let got = 0, early = 0;
  const sent = new Map<string, number>();
  for (const s of socks) s.on('message', (m) => { got++; const at = sent.get(m.toString()); if (at !== undefined && performance.now() - at < 25) early++; });
  for (let k = 0; k < PER; k++) {
    for (let i = 0; i < FLOWS; i++) { const msg = `${i}:${k}`; sent.set(msg, performance.now()); socks[i]!.send(msg, port, addr); }
    await sleep(5);
  }
  await sleep(500);
  const total = FLOWS * PER;
  // the first datagram of each flow goes through JS but takes the same faults; binomial(2000, .5): sd 22
  t.ok(got >= total * 0.5 - 120 && got <= total * 0.5 + 120, `about half of ${total} echoed with 50% loss (${got})`);
  t.equal(early, 0, 'no echo came back before the 30 ms of latency');
  t.equal(await removeFault(api, `adv:udp/${port}`), 200, 'every fault removed');
  got = 0;
  for (let k = 0; k < 10; k++) {
    for (let i = 0; i < FLOWS; i++) socks[i]!.send(`after:${i}:${k}`, port, addr);
    await sleep(5);
  }
  t.ok(await until(() => got >= FLOWS * 10, 3000), `after the removal every datagram is echoed (${got} of ${FLOWS * 10})`);
});


t.test('limit_data keeps its count when a fault before it in the chain is removed', {
  skip,
}, async (t) => {
  const addr = freshAddr(), port = await freePort(addr);
  const back = await backend(t, 'sink');
  const { daemon } = await startDaemon(t, yaml(addr, port, back.port, `[ { name: first, type: latency, stream: upstream, attributes: { latency: 0 } },
                  { name: lim, type: limit_data, stream: upstream, attributes: { bytes: 1000 } } ]`), { api: { host: '127.0.0.1', port: 0 } });
  const api = `127.0.0.1:${daemon.api!.port}`;
  const c = await connect(t, addr, port);
  const r = collect(c);
  c.write(Buffer.alloc(800, 0x31));
  const upTo = (n: number) => until(() => back.conns.length > 0 && Buffer.concat(back.got.get(back.conns[0]!) ?? []).length >= n, 3000);
  t.ok(await upTo(800), '800 of the 1000 bytes through');
  t.equal(await removeFault(api, `adv:tcp/${port}`, 'first'), 200, 'the fault before limit_data removed');
  c.write(Buffer.alloc(800, 0x32));
  const closed = await Promise.race([r.then(() => true), sleep(3000).then(() => false)]);
  await sleep(100);
  const total = Buffer.concat(back.got.get(back.conns[0]!) ?? []).length;
  t.equal(total, 1000, `exactly 1000 bytes in all (${total})`);
  t.ok(closed, 'the connection closed at the limit');
});

t.test('UDP: a long latency replaced by a short one applies the short one to the live flow', {
  skip,
}, async (t) => {
  const dgram = await import('node:dgram');
  const { addr, port, api } = await udpEchoDaemon(t, '[ { name: slow, type: latency, stream: downstream, attributes: { latency: 30000 } } ]');
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => s.close());
  const got: string[] = [];
  s.on('message', (m) => got.push(m.toString()));
  s.send('first', port, addr);   // its echo is held for 30 s
  await sleep(300);
  t.equal(await removeFault(api, `adv:udp/${port}`, 'slow'), 200);
  t.equal(await addFault(api, { target: `adv:udp/${port}`, name: 'fast', type: 'latency', attributes: { latency: 10 } }), 201);
  const t0 = performance.now();
  s.send('second', port, addr);
  const ok = await until(() => got.includes('second'), 3000);
  t.ok(ok, `the live flow's next echo comes after the new 10 ms, not the old 30 s (${ok ? (performance.now() - t0).toFixed(0) + ' ms' : 'not within 3 s'})`);
});
