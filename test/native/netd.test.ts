// The capability helper sgemu-netd (issue #11): what it does for the daemon, on real sockets, and
// what it refuses — non-loopback addresses, sockets and listeners it did not create, malformed
// requests — under a fuzz of thousands of requests: it never crashes, never acts outside its
// own loopback listeners, never leaks a descriptor, and exits when the daemon goes.
import t from 'tap';
import dgram from 'node:dgram';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { existsSync, openSync, closeSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Netd, encodeRequest, helperPath, T_OPEN, T_ATTACH, T_RST, T_UNREACH, T_WATCH, T_CLOSE, T_PROBE } from '../../src/native/netd.js';
import { nativeStatus, createUdpSocket, closeFd } from '../../src/native/sock-filter.js';
import { compileAcceptAll, compileDropAllNew, encodeProgram } from '../../src/policy/bpf.js';
import { mulberry32 } from '../prng.js';
import { until } from '../helpers.js';

class Prng {
  private readonly next: () => number;
  constructor(seed: number) { this.next = mulberry32(seed); }
  int(lo: number, hi: number): number { return lo + Math.floor(this.next() * (hi - lo + 1)); }
  pick<T>(xs: readonly T[]): T { return xs[this.int(0, xs.length - 1)]!; }
  bytes(n: number): Buffer { const b = Buffer.alloc(n); for (let i = 0; i < n; i++) b[i] = this.int(0, 255); return b; }
}

const skip = !nativeStatus().loaded ? 'native addon not built' : !existsSync(helperPath()) ? `helper ${helperPath()} not built` : false;
const ACCEPT = encodeProgram(compileAcceptAll());
const DROP_SYN = encodeProgram(compileDropAllNew('tcp-syn'));
const DROP_UDP = encodeProgram(compileDropAllNew('udp'));
const block = 60 + (process.pid % 30);
let nextAddr = 1;
const addr = () => `127.${block}.${nextAddr >> 8}.${(nextAddr++ & 255) || 1}`;

function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}
function gone(pid: number): boolean {
  try { return /\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return true; }
}

function start(t: { teardown(f: () => void): void }): Netd {
  const d = Netd.start();
  t.teardown(() => d.close());
  const p = d.probe();
  if (!(p.tcpFilter && p.raw && p.packet)) throw new Error(`the helper has no capabilities here: ${JSON.stringify(p)}`);
  return d;
}

t.test('opens filtered loopback listeners and swaps their filters', { skip }, async (t) => {
  const d = start(t);
  const a = addr();
  const fd = d.open({ protocol: 6, family: 4, address: a, port: 0, program: DROP_SYN });
  const server = net.createServer((c) => c.end('hi'));
  await new Promise<void>((r) => server.listen({ fd }, () => r()));
  t.teardown(() => server.close());
  const port = (server.address() as net.AddressInfo).port;
  // Dropped by the helper's filter: no connection within 300 ms.
  const first = await new Promise<string>((r) => {
    const c = net.connect({ host: a, port });
    const timer = setTimeout(() => { c.destroy(); r('timeout'); }, 300);
    c.on('connect', () => { clearTimeout(timer); c.destroy(); r('connected'); });
    c.on('error', (e: NodeJS.ErrnoException) => { clearTimeout(timer); r(e.code ?? 'error'); });
  });
  t.equal(first, 'timeout', 'drop-all filter attached before bind');
  d.attach(fd, ACCEPT);
  const got = await new Promise<string>((r, j) => { const c = net.connect({ host: a, port }); c.on('data', (x) => { r(x.toString()); c.destroy(); }); c.on('error', j); });
  t.equal(got, 'hi', 'filter swapped through the helper');
});

t.test('refuses what is not its own: addresses, sockets, listeners, peers', { skip }, async (t) => {
  const d = start(t);
  const a = addr();
  const code = (f: () => unknown) => { try { f(); return 'ok'; } catch (e) { return (e as { code?: string }).code; } };
  for (const bad of ['10.0.0.1', '0.0.0.0', '192.168.1.1', '8.8.8.8', '128.0.0.1']) {
    t.equal(code(() => d.open({ protocol: 6, family: 4, address: bad, port: 40000, program: ACCEPT })), 'EPERM', `OPEN ${bad}`);
  }
  t.equal(code(() => d.open({ protocol: 6, family: 6, address: '::', port: 40000, program: ACCEPT })), 'EPERM', 'OPEN ::');
  t.equal(code(() => d.open({ protocol: 6, family: 6, address: '::ffff:127.0.0.1', port: 40000, program: ACCEPT })), 'EPERM', 'OPEN v4-mapped');
  t.equal(code(() => d.open({ protocol: 6, family: 4, address: a, port: 0, program: null })), 'EINVAL', 'a TCP listener without a filter');
  // A socket this process made itself: the helper attaches nothing to it.
  const own = createUdpSocket({ family: 4, address: a, port: 0, program: null });
  t.equal(code(() => d.attach(own, ACCEPT)), 'EPERM', 'ATTACH to a socket it did not create');
  closeFd(own);
  const devnull = openSync('/dev/null', 'r');
  t.equal(code(() => d.call(encodeRequest({ type: T_ATTACH, count: 1, tail: ACCEPT.subarray(0, 8) }), devnull)), 'ENOTSOCK', 'ATTACH to a file');
  closeSync(devnull);
  // RST and ICMP only from its own listeners, only to loopback.
  const fd = d.open({ protocol: 6, family: 4, address: a, port: 0, program: ACCEPT });
  const s = net.createServer();
  await new Promise<void>((r) => s.listen({ fd }, () => r()));
  t.teardown(() => s.close());
  const port = (s.address() as net.AddressInfo).port;
  t.equal(code(() => d.call(encodeRequest({ type: T_RST, protocol: 6, family: 4, address: a, port, peer: '127.0.0.1', peerPort: 5555, ack: 1 }))), 'ok', 'RST from its listener to loopback');
  t.equal(code(() => d.call(encodeRequest({ type: T_RST, protocol: 6, family: 4, address: a, port, peer: '10.1.2.3', peerPort: 5555, ack: 1 }))), 'EPERM', 'RST to a non-loopback peer');
  t.equal(code(() => d.call(encodeRequest({ type: T_RST, protocol: 6, family: 4, address: '127.0.0.1', port: 22, peer: '127.0.0.1', peerPort: 5555, ack: 1 }))), 'EPERM', 'RST spoofing another listener');
  t.equal(code(() => d.watch([{ protocol: 6, family: 4, address: '127.0.0.1', port: 22 }], () => {}, () => {})), 'EPERM', 'WATCH a port it did not open');
  const quote = Buffer.alloc(28);
  quote[0] = 0x45; quote[9] = 17; Buffer.from([127, 0, 0, 1]).copy(quote, 12); Buffer.from([127, 0, 0, 1]).copy(quote, 16); quote.writeUInt16BE(53, 22);
  t.equal(code(() => d.call(encodeRequest({ type: T_UNREACH, protocol: 17, family: 4, address: '127.0.0.1', port: 53, count: 28, tail: quote }))), 'EPERM', 'ICMP from a UDP port it did not open');
  t.match(code(() => d.call(encodeRequest({ type: 99 }))), /^(EOPNOTSUPP|ENOTSUP)$/, 'unknown request type refused with an error reply');
  t.equal(code(() => d.call(encodeRequest({ type: T_CLOSE, protocol: 6, family: 4, address: a, port }))), 'ok', 'CLOSE forgets the listener');
  t.equal(code(() => d.attach(fd, ACCEPT)), 'EPERM', 'and then no longer attaches to it');
});

t.test('refusals: RST|ACK for a watched SYN within 50 ms, ICMP port unreachable for a datagram', { skip }, async (t) => {
  const d = start(t);
  const a = addr();
  const fd = d.open({ protocol: 6, family: 4, address: a, port: 0, program: DROP_SYN });
  const s = net.createServer();
  await new Promise<void>((r) => s.listen({ fd }, () => r()));
  t.teardown(() => s.close());
  const port = (s.address() as net.AddressInfo).port;
  const ufd = d.open({ protocol: 17, family: 4, address: a, port: 0, program: DROP_UDP });
  const us = dgram.createSocket('udp4');
  await new Promise<void>((r) => us.bind({ fd: ufd }, () => r()));
  t.teardown(() => us.close());
  const uport = us.address().port;
  let syns = 0, datagrams = 0;
  d.watch([{ protocol: 6, family: 4, address: a, port }, { protocol: 17, family: 4, address: a, port: uport }],
    (e) => { syns++; d.sendRstAck(e.family, e.dst, e.dstPort, e.src, e.srcPort, (e.seq + 1) >>> 0); },
    (e) => { datagrams++; d.sendPortUnreachable(e.family, e.dst, e.ipPacket); });
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    const r = await new Promise<string>((res) => {
      const c = net.connect({ host: a, port });
      c.on('connect', () => { c.destroy(); res('connected'); });
      c.on('error', (e: NodeJS.ErrnoException) => res(e.code ?? 'error'));
    });
    const ms = performance.now() - t0;
    t.equal(r, 'ECONNREFUSED', `TCP refused (${ms.toFixed(1)} ms)`);
    // Not the SYN retransmit (1 s): the helper answered the first SYN. How fast is measured in
    // scripts/bench/privilege.ts (p50 in bench-results/), not asserted here.
    t.ok(ms < 1000, `answered the first SYN: ${ms.toFixed(1)} ms`);
  }
  const c = dgram.createSocket('udp4');
  t.teardown(() => c.close());
  const refused = await new Promise<string>((res) => {
    c.on('error', (e: NodeJS.ErrnoException) => res(e.code ?? 'error'));
    c.connect(uport, a, () => c.send('x'));
    setTimeout(() => res('silence'), 1000);
  });
  t.equal(refused, 'ECONNREFUSED', 'UDP: ICMP port unreachable');
  t.ok(syns >= 5 && datagrams >= 1, `events: ${syns} SYNs, ${datagrams} datagrams`);
  d.watch([], () => {}, () => {});
});

t.test('fuzz: malformed, truncated, oversized and hostile requests', { skip }, async (t) => {
  const d = start(t);
  const pid = d.pid!;
  const rng = new Prng(0x5e9d);
  const a = addr();
  // One real listener so that requests naming it can get past the ownership checks.
  const fd = d.open({ protocol: 6, family: 4, address: a, port: 0, program: ACCEPT });
  const s = net.createServer();
  await new Promise<void>((r) => s.listen({ fd }, () => r()));
  t.teardown(() => s.close());
  const port = (s.address() as net.AddressInfo).port;
  // Descriptors the helper keeps by design: its raw socket (opened on first use; prime it).
  d.call(encodeRequest({ type: T_RST, protocol: 6, family: 4, address: a, port, peer: '127.0.0.1', peerPort: 9, ack: 1 }));
  const before = fdCount(pid);
  const devnull = openSync('/dev/null', 'r');
  t.teardown(() => closeSync(devnull));
  const types = [T_PROBE, T_OPEN, T_ATTACH, T_CLOSE, T_RST, T_UNREACH, T_WATCH, 0, 8, 255, 65535];
  const hostile = ['10.0.0.1', '0.0.0.0', '255.255.255.255', '169.254.1.1', '127.0.0.1', a];
  let replies = 0, opened = 0, oddReplies = 0;
  const returned: number[] = [];
  const N = 6000;
  for (let i = 0; i < N; i++) {
    let req: Buffer;
    const kind = rng.int(0, 6);
    if (kind === 0) req = rng.bytes(rng.int(0, 200));                                        // noise
    else if (kind === 1) req = encodeRequest({ type: rng.pick(types) }).subarray(0, rng.int(0, 63)); // truncated header
    else if (kind === 2) req = Buffer.concat([encodeRequest({ type: T_OPEN, family: 4, protocol: 6, address: a, port: 0, count: 1 }), rng.bytes(rng.int(33000, 40000))]); // oversized
    else if (kind === 6) {                                                                      // valid OPENs, any address
      const family = rng.pick([4, 6]);
      req = encodeRequest({ type: T_OPEN, family, protocol: rng.pick([6, 17]), port: 0, count: 1, tail: ACCEPT,
        address: family === 4 ? rng.pick(hostile) : rng.pick(['::1', '::', 'fe80::1', '2001:db8::1']) });
    } else {
      const family = rng.pick([4, 6, 0, 5]);
      const address = family === 6 ? rng.pick(['::1', '::', 'fe80::1', '2001:db8::1']) : rng.pick(hostile);
      const tailLen = rng.pick([0, 8, 16, 20, 28, 40, 48, 72, 73, 100]);
      req = encodeRequest({
        type: rng.pick(types), family, protocol: rng.pick([6, 17, 0, 1]), port: rng.pick([0, port, 22, 65535]),
        address: family === 4 || family === 6 ? address : undefined, peer: family === 6 ? '::1' : family === 4 ? rng.pick(hostile) : undefined,
        peerPort: rng.int(0, 65535), backlog: rng.int(0, 65535), ack: rng.int(0, 0x7fffffff),
        count: rng.pick([0, 1, 2, tailLen / 8, tailLen, 4096, 4097, 65535]), tail: rng.bytes(tailLen),
      });
      if (kind === 4) req.writeUInt32LE(rng.int(0, 0xffffffff), rng.pick([0, 4, 58, 60]));   // corrupt a fixed field
    }
    const pass = rng.int(0, 9) === 0 ? devnull : -1;
    let r;
    try { r = d.callRaw(req, pass); } catch (e) { t.fail(`request ${i} (${req.length} bytes, fd ${pass}): ${(e as Error).message}: ${req.subarray(0, 64).toString('hex')}`); break; }
    replies++;
    if (r.replyBytes !== 20) oddReplies++;
    if (r.fd >= 0) {
      opened++;
      // Kept until the end, where each one's address is checked.
      returned.push(r.fd);
    }
  }
  t.equal(replies, N, 'every request answered; the helper never crashed');
  t.equal(oddReplies, 0, 'every reply is one well-formed 20-byte message');
  t.ok(d.alive && !gone(pid), 'helper still running');
  d.watch([], () => {}, () => {});      // a fuzzed WATCH of its own listener may have opened the packet socket
  const links = () => readdirSync(`/proc/${pid}/fd`).map((f) => { try { return `${f}:${readlinkSync(`/proc/${pid}/fd/${f}`)}`; } catch { return f; } }).join(' ');
  t.equal(fdCount(pid), before, `no descriptor leaked in the helper (${before} open: ${links()})`);
  // Every socket the fuzz got back is bound to loopback: find each by inode in /proc/net.
  const local = new Map<string, string>();
  for (const f of ['tcp', 'tcp6', 'udp', 'udp6']) {
    for (const l of readFileSync(`/proc/net/${f}`, 'utf8').split('\n').slice(1)) {
      const cols = l.trim().split(/\s+/);
      if (cols.length > 9) local.set(cols[9]!, cols[1]!.split(':')[0]!);
    }
  }
  let nonLoopback = 0;
  for (const fd of returned) {
    const inode = /socket:\[(\d+)\]/.exec(readlinkSync(`/proc/self/fd/${fd}`))?.[1] ?? '';
    const hex = local.get(inode) ?? '';
    // /proc/net: IPv4 as little-endian hex (127.x.y.z ends in 7F); ::1 as 00000000000000000000000001000000
    const loop = hex.length === 8 ? hex.endsWith('7F') : hex === '00000000000000000000000001000000';
    if (!loop) nonLoopback++;
    closeFd(fd);
  }
  t.equal(nonLoopback, 0, `all ${returned.length} sockets the helper handed out are on loopback`);
  t.ok(returned.length > 50, 'the fuzz reached valid OPENs');
  t.comment(`${N} requests, ${opened} descriptors returned (valid OPENs on loopback)`);
  const p = d.probe();
  t.ok(p.tcpFilter, 'still serving after the fuzz');
});

t.test('exits when the daemon closes its end, and when the daemon is killed', { skip }, async (t) => {
  const d = Netd.start();
  const pid = d.pid!;
  d.probe();
  d.close();
  await until(() => gone(pid), 2000);
  t.ok(gone(pid), 'closed channel: the helper exited');

  const loader = join(process.cwd(), 'node_modules', '@tapjs', 'typescript', 'dist', 'esm', 'import.mjs');
  const code = `import { Netd } from ${JSON.stringify(join(process.cwd(), 'src', 'native', 'netd.ts'))};
    const d = Netd.start(); d.probe(); console.log(d.pid); setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, [`--import=file://${loader}`, '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  const helperPid = await new Promise<number>((r) => child.stdout.once('data', (b: Buffer) => r(Number(b.toString().trim()))));
  t.ok(helperPid > 0 && !gone(helperPid), `helper ${helperPid} running under a daemon`);
  child.kill('SIGKILL');
  await until(() => gone(helperPid), 2000);
  t.ok(gone(helperPid), 'daemon SIGKILLed: the helper exited');
});
