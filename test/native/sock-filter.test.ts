// Kernel differential: programs from src/policy/bpf.ts attached to real loopback sockets through
// our addon. A connection completes iff the interpreter accepts iff the plain range check allows;
// denied = no connect within 300 ms AND the server never saw a connection.
import t from 'tap';
import net from 'node:net';
import dgram from 'node:dgram';
import { attachFilter, closeFd, createTcpListener, createUdpSocket, detachFilter, filterLength, nativeStatus } from '../../src/native/sock-filter.js';
import { compileAcceptAll, compileDropAllNew, compileSourceFilter, encodeProgram, runFilter } from '../../src/policy/bpf.js';
import { probeLoopback, probeSocketFilter } from '../../src/native/probe.js';
import { sleep, until } from '../helpers.js';

const st = nativeStatus();
const skip = st.loaded ? false : `native addon not loaded: ${st.error}`;
const CONNECT_TIMEOUT_MS = 300;

const ip4 = (s: string): number => s.split('.').reduce((a, x) => a * 256 + Number(x), 0) >>> 0;
const txt4 = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');

type Served = { server: net.Server; port: number; accepted: string[] };

async function serve(t: { teardown(fn: () => unknown): void }, fd: number): Promise<Served> {
  const accepted: string[] = [];
  const server = net.createServer((s) => { accepted.push(s.remoteAddress ?? '?'); s.destroy(); });
  await new Promise<void>((res, rej) => { server.once('error', rej); server.listen({ fd }, () => res()); });
  t.teardown(() => new Promise<void>((res) => server.close(() => res())));
  const a = server.address() as net.AddressInfo;
  return { server, port: a.port, accepted };
}

/** 'ok' when the handshake completes, 'timeout' after CONNECT_TIMEOUT_MS, else the error code. */
function tryConnect(host: string, port: number, localAddress?: string, family?: number): Promise<string> {
  return new Promise((res) => {
    const s = net.connect({ host, port, localAddress, family });
    const timer = setTimeout(() => { s.destroy(); res('timeout'); }, CONNECT_TIMEOUT_MS);
    s.once('connect', () => { clearTimeout(timer); s.destroy(); res('ok'); });
    s.once('error', (e: NodeJS.ErrnoException) => { clearTimeout(timer); res(e.code ?? 'error'); });
  });
}

function synPkt4(src: number): { net: Buffer; transport: Buffer } {
  const n = Buffer.alloc(20); n[0] = 0x45; n.writeUInt32BE(src, 12);
  const tr = Buffer.alloc(20); tr[13] = 0x02;
  return { net: n, transport: tr };
}

t.test('probes', { skip }, async (t) => {
  t.equal(probeSocketFilter().ok, true, probeSocketFilter().reason);
  const lo = probeLoopback();
  t.ok(lo.v4.includes('127.0.0.2'), `127.x addresses bind: ${lo.v4.join(' ')}`);
});

t.test('v4 differential: kernel = interpreter = range check (60 sources)', { skip }, async (t) => {
  // Allowed: 127.0.0.16-127.0.0.47, 127.0.1.0-127.0.1.255, 127.3.0.1 and 127.200.0.0/16 minus nothing.
  const ranges = Uint32Array.from([
    ip4('127.0.0.16'), ip4('127.0.0.47'), ip4('127.0.1.0'), ip4('127.0.1.255'),
    ip4('127.3.0.1'), ip4('127.3.0.1'), ip4('127.200.0.0'), ip4('127.200.255.255'),
  ]);
  const { insns, exact } = compileSourceFilter('tcp-syn', 4, { v4: ranges, v6: [] });
  t.ok(exact);
  const fd = createTcpListener({ family: 4, address: '127.0.0.1', port: 0, program: encodeProgram(insns) });
  t.equal(filterLength(fd), insns.length, 'the program the kernel holds has our length');
  const srv = await serve(t, fd);
  // Sources: edges of every range plus a deterministic spread over 127/8.
  const srcs = new Set<number>();
  for (let i = 0; i < ranges.length; i++) { srcs.add(ranges[i]!); srcs.add(ranges[i]! - 1); srcs.add(ranges[i]! + 1); }
  let x = 12345;
  while (srcs.size < 60) { x = (Math.imul(x, 1103515245) + 12345) >>> 0; srcs.add((ip4('127.0.0.0') | (x & 0x00ffffff) | (x & 1 ? 0 : 0x00c80000)) >>> 0); }
  const list = [...srcs].slice(0, 60); // every address in 127/8 binds as a source (§6)
  const want = list.map((s) => { for (let i = 0; i < ranges.length; i += 2) if (ranges[i]! <= s && s <= ranges[i + 1]!) return true; return false; });
  const interp = list.map((s) => runFilter(insns, synPkt4(s)) !== 0);
  t.same(interp, want, 'interpreter agrees with the range check');
  const got: string[] = [];
  for (let i = 0; i < list.length; i += 20) {
    got.push(...await Promise.all(list.slice(i, i + 20).map((s) => tryConnect('127.0.0.1', srv.port, txt4(s)))));
  }
  await new Promise((r) => setTimeout(r, 50));
  const mismatches = list.map((s, i) => ({ src: txt4(s), want: want[i], got: got[i] })).filter((m) => (m.got === 'ok') !== m.want || (m.got !== 'ok' && m.got !== 'timeout'));
  t.same(mismatches, [], `kernel agrees on ${list.length} sources (${want.filter(Boolean).length} allowed)`);
  const deniedSeen = srv.accepted.filter((a) => !want[list.findIndex((s) => txt4(s) === a)]);
  t.same(deniedSeen, [], 'the server never saw a denied source');
  t.equal(srv.accepted.length, want.filter(Boolean).length, 'every allowed source was accepted once');
});

t.test('long program with ja trampolines: the kernel loads it and agrees (40 sources)', { skip }, async (t) => {
  // 700 single addresses spread over 127.0.0.0/16 → > 2000 instructions, long jumps relaxed.
  const pts: number[] = [];
  for (let i = 0; i < 700; i++) pts.push(ip4('127.0.0.0') + 2 + i * 90);
  const ranges = Uint32Array.from(pts.flatMap((p) => [p, p]));
  const { insns, exact } = compileSourceFilter('tcp-syn', 4, { v4: ranges, v6: [] });
  t.ok(exact && insns.length > 2000 && insns.some((i) => i.code === 0x05 && i.k > 255), `${insns.length} insns with trampolines`);
  const fd = createTcpListener({ family: 4, address: '127.0.0.1', port: 0, program: encodeProgram(insns) });
  t.equal(filterLength(fd), insns.length);
  const srv = await serve(t, fd);
  const list: number[] = [];
  for (let i = 0; i < 20; i++) { const p = pts[(i * 37) % pts.length]!; list.push(p, p + 1 + (i % 5)); }
  const want = list.map((s) => runFilter(insns, synPkt4(s)) !== 0);
  t.same(want, list.map((_, i) => i % 2 === 0), 'interpreter: listed addresses allowed, neighbours denied');
  const got = await Promise.all(list.map((s) => tryConnect('127.0.0.1', srv.port, txt4(s))));
  t.same(got.map((g) => g === 'ok'), want, 'kernel agrees');
  t.ok(got.every((g) => g === 'ok' || g === 'timeout'), 'denied ones time out');
});

t.test('v4 on another 127.x listener address', { skip }, async (t) => {
  const prog = compileSourceFilter('tcp-syn', 4, { v4: Uint32Array.from([ip4('127.0.0.9'), ip4('127.0.0.9')]), v6: [] }).insns;
  const srv = await serve(t, createTcpListener({ family: 4, address: '127.0.0.77', port: 0, program: encodeProgram(prog) }));
  t.equal(await tryConnect('127.0.0.77', srv.port, '127.0.0.9'), 'ok', 'allowed twin passes');
  t.equal(await tryConnect('127.0.0.77', srv.port, '127.0.0.10'), 'timeout', 'denied source times out');
  t.same(srv.accepted, ['127.0.0.9']);
});

t.test('v6 on ::1: allowed vs denied', { skip: skip || (probeLoopback().v6 ? false : '::1 does not bind') }, async (t) => {
  const allow = compileSourceFilter('tcp-syn', 6, { v4: new Uint32Array(0), v6: [1n, 1n] }).insns;
  const deny = compileSourceFilter('tcp-syn', 6, { v4: new Uint32Array(0), v6: [2n, 100n] }).insns;
  const a = await serve(t, createTcpListener({ family: 6, address: '::1', port: 0, program: encodeProgram(allow) }));
  const d = await serve(t, createTcpListener({ family: 6, address: '::1', port: 0, program: encodeProgram(deny) }));
  t.equal(await tryConnect('::1', a.port), 'ok', 'program allowing ::1 passes');
  t.equal(await tryConnect('::1', d.port), 'timeout', 'program denying ::1 times out');
  t.equal(a.accepted.length, 1);
  t.equal(d.accepted.length, 0, 'denied listener accepted nothing');
});

t.test('attach-replace on a live listener flips new connections', { skip }, async (t) => {
  const fd = createTcpListener({ family: 4, address: '127.0.0.1', port: 0, program: null });
  t.equal(filterLength(fd), 0, 'no filter attached');
  const srv = await serve(t, fd);
  t.equal(await tryConnect('127.0.0.1', srv.port, '127.0.0.5'), 'ok', 'unfiltered passes');
  attachFilter(fd, encodeProgram(compileDropAllNew('tcp-syn')));
  t.equal(await tryConnect('127.0.0.1', srv.port, '127.0.0.5'), 'timeout', 'drop-all-new: times out');
  attachFilter(fd, encodeProgram(compileSourceFilter('tcp-syn', 4, { v4: Uint32Array.from([ip4('127.0.0.5'), ip4('127.0.0.5')]), v6: [] }).insns));
  t.equal(await tryConnect('127.0.0.1', srv.port, '127.0.0.5'), 'ok', 'replaced: allowed again');
  t.equal(await tryConnect('127.0.0.1', srv.port, '127.0.0.6'), 'timeout', 'replaced: other source denied');
  detachFilter(fd);
  t.equal(filterLength(fd), 0);
  t.equal(await tryConnect('127.0.0.1', srv.port, '127.0.0.6'), 'ok', 'detached: everything passes');
  t.equal(srv.accepted.length, 3);
});

t.test('errors carry syscall and errno code', { skip }, async (t) => {
  const fd = createTcpListener({ family: 4, address: '127.0.0.1', port: 0, program: encodeProgram(compileAcceptAll()) });
  const srv = await serve(t, fd);
  t.throws(() => createTcpListener({ family: 4, address: '127.0.0.1', port: srv.port, program: null }), { code: 'EADDRINUSE', syscall: 'bind' });
  t.throws(() => createTcpListener({ family: 4, address: 'not-an-ip', port: 0, program: null }), { code: 'EINVAL', syscall: 'inet_pton' });
  t.throws(() => attachFilter(fd, Buffer.alloc(3)), { code: 'EINVAL' });
  // The kernel's own checker rejects a program that does not end in ret.
  t.throws(() => attachFilter(fd, Buffer.from([0x20, 0, 0, 0, 0, 0, 0, 0])), { code: 'EINVAL', syscall: 'setsockopt' });
  const u = createUdpSocket({ family: 4, address: '127.0.0.1', port: 0, program: null });
  closeFd(u);
  t.throws(() => closeFd(u), { code: 'EBADF' });
});

t.test('UDP: a filtered socket never receives datagrams from a denied source', { skip }, async (t) => {
  const prog = compileSourceFilter('udp', 4, { v4: Uint32Array.from([ip4('127.0.0.2'), ip4('127.0.0.2')]), v6: [] }).insns;
  const fd = createUdpSocket({ family: 4, address: '127.0.0.1', port: 0, program: encodeProgram(prog) });
  const sock = dgram.createSocket('udp4');
  const got: string[] = [];
  sock.on('message', (m, r) => got.push(`${r.address}:${m.toString()}`));
  await new Promise<void>((res) => sock.bind({ fd }, () => res()));
  t.teardown(() => sock.close());
  const port = sock.address().port;
  const send = async (from: string, text: string): Promise<void> => {
    const c = dgram.createSocket('udp4');
    await new Promise<void>((res) => c.bind(0, from, () => res()));
    await new Promise<void>((res, rej) => c.send(text, port, '127.0.0.1', (e) => (e ? rej(e) : res())));
    c.close();
  };
  await send('127.0.0.3', 'denied');
  await send('127.0.0.2', 'allowed');
  await until(() => got.length > 0, 1000, 10);
  await sleep(50);
  t.same(got, ['127.0.0.2:allowed'], 'only the allowed datagram arrived');
});
