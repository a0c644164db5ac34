// Privileged: libpcap sees the SYN / datagram a socket filter dropped, and a raw socket answers it
// with RST|ACK / ICMP port unreachable, so the client sees a real refusal (linux-techniques.md §2–4).
import t from 'tap';
import net from 'node:net';
import dgram from 'node:dgram';
import { createTcpListener, createUdpSocket, nativeStatus } from '../../src/native/sock-filter.js';
import { compileDropAllNew, encodeProgram } from '../../src/policy/bpf.js';
import { probeCapNetRaw, probeLoopback, probePcap, probeRaw } from '../../src/native/probe.js';
import { PacketWatch, captureFilter, type SynEvent, type UdpEvent } from '../../src/native/pcap.js';
import { RawSender, buildRstAck, inetChecksum } from '../../src/native/raw.js';

function why(): string | false {
  const st = nativeStatus();
  if (!st.loaded) return `native addon not loaded: ${st.error}`;
  if (!probeCapNetRaw()) return 'no CAP_NET_RAW (run as root)';
  const p = probePcap();
  if (!p.ok) return `libpcap: ${p.reason}`;
  const r = probeRaw();
  if (!r.ok) return `raw sockets: ${r.reason}`;
  return false;
}
const skip = why();
const REFUSE_WITHIN_MS = 500; // verified ~10 ms after the SYN; generous for loaded CI

t.test('checksums and capture filter text (no privilege)', async (t) => {
  const seg = buildRstAck(4, '127.0.0.1', 80, '127.0.0.2', 40000, 1001);
  t.equal(seg.length, 40);
  t.equal(inetChecksum(seg.subarray(0, 20)), 0, 'IPv4 header checksum verifies');
  const ps = Buffer.alloc(12); seg.copy(ps, 0, 12, 20); ps[9] = 6; ps.writeUInt16BE(20, 10);
  t.equal(inetChecksum(ps, seg.subarray(20)), 0, 'TCP checksum over the pseudo-header verifies');
  t.equal(seg[20 + 13], 0x14, 'RST|ACK');
  t.equal(seg.readUInt32BE(20 + 8), 1001, 'ack = ISN + 1 as given');
  const s6 = buildRstAck(6, '::1', 80, '::1', 40000, 7);
  const ps6 = Buffer.alloc(40); s6.copy(ps6, 0, 8, 40); ps6.writeUInt32BE(20, 32); ps6[39] = 6;
  t.equal(inetChecksum(ps6, s6.subarray(40)), 0, 'TCP over IPv6 checksum verifies');
  t.equal(captureFilter([], []), 'less 0');
  t.match(captureFilter([{ address: '127.0.0.1', port: 80 }], [{ address: '::1', port: 53 }]), /tcp-syn.*ip6 and dst host ::1 and udp dst port 53/);
});

function connectResult(host: string, port: number, ms: number): Promise<{ result: string; ms: number }> {
  const start = Date.now();
  return new Promise((res) => {
    const s = net.connect({ host, port });
    const timer = setTimeout(() => { s.destroy(); res({ result: 'timeout', ms: Date.now() - start }); }, ms);
    s.once('connect', () => { clearTimeout(timer); s.destroy(); res({ result: 'ok', ms: Date.now() - start }); });
    s.once('error', (e: NodeJS.ErrnoException) => { clearTimeout(timer); res({ result: e.code ?? 'error', ms: Date.now() - start }); });
  });
}

async function listen(t: { teardown(fn: () => unknown): void }, family: 4 | 6, address: string): Promise<{ port: number; accepted: () => number }> {
  let accepted = 0;
  const fd = createTcpListener({ family, address, port: 0, program: encodeProgram(compileDropAllNew('tcp-syn')) });
  const server = net.createServer((s) => { accepted++; s.destroy(); });
  await new Promise<void>((res) => server.listen({ fd }, () => res()));
  t.teardown(() => new Promise<void>((res) => server.close(() => res())));
  return { port: (server.address() as net.AddressInfo).port, accepted: () => accepted };
}

for (const [family, address] of [[4, '127.0.0.1'], [4, '127.0.0.88'], [6, '::1']] as const) {
  const v6skip = family === 6 && !skip && !probeLoopback().v6 ? '::1 does not bind' : false;
  t.test(`TCP ${address}: SYN seen by pcap, RST|ACK → ECONNREFUSED`, { skip: skip || v6skip }, async (t) => {
    const l = await listen(t, family, address);
    const raw = new RawSender();
    t.teardown(() => raw.close());
    const seen: SynEvent[] = [];
    const watch = new PacketWatch((e) => {
      seen.push(e);
      raw.sendRstAck(e.family, e.dst, e.dstPort, e.src, e.srcPort, (e.seq + 1) >>> 0);
    });
    t.teardown(() => watch.close());
    // The twin first: watched but not answered (other port) → the drop-all filter makes it time out.
    watch.setTargets([{ address, port: l.port + 1 }], []);
    const silent = await connectResult(address, l.port, 300);
    t.equal(silent.result, 'timeout', 'unanswered: the filter drops the SYN, the client waits');
    watch.setTargets([{ address, port: l.port }], []);
    const r = await connectResult(address, l.port, REFUSE_WITHIN_MS);
    t.equal(r.result, 'ECONNREFUSED', `refused in ${r.ms} ms`);
    t.ok(seen.length >= 1 && seen[0]!.dstPort === l.port && seen[0]!.family === family && seen[0]!.dst === address, 'the SYN event names the listener');
    t.equal(l.accepted(), 0, 'the server accepted nothing');
    t.equal(raw.errors, 0, raw.lastError ?? 'no send errors');
  });
}

for (const [family, address] of [[4, '127.0.0.1'], [6, '::1']] as const) {
  t.test(`UDP ${address}: datagram seen by pcap, ICMP port unreachable → ECONNREFUSED`, { skip }, async (t) => {
    // A bound socket with a drop-all filter: the kernel neither delivers nor sends its own ICMP.
    const fd = createUdpSocket({ family, address, port: 0, program: encodeProgram(compileDropAllNew('udp')) });
    const server = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
    let delivered = 0;
    server.on('message', () => delivered++);
    await new Promise<void>((res) => server.bind({ fd }, () => res()));
    t.teardown(() => server.close());
    const port = server.address().port;
    const raw = new RawSender();
    t.teardown(() => raw.close());
    const seen: UdpEvent[] = [];
    const watch = new PacketWatch(() => {}, (e) => { seen.push(e); raw.sendPortUnreachable(e.family, e.dst, e.ipPacket); });
    t.teardown(() => watch.close());
    watch.setTargets([], [{ address, port }]);
    const client = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
    t.teardown(() => client.close());
    await new Promise<void>((res) => client.connect(port, address, () => res()));
    const code = await new Promise<string>((resolve) => {
      let again: NodeJS.Timeout | undefined;
      const res = (c: string): void => { clearTimeout(again); resolve(c); };
      const timer = setTimeout(() => res('timeout'), REFUSE_WITHIN_MS);
      client.once('error', (e: NodeJS.ErrnoException) => { clearTimeout(timer); res(e.code ?? 'error'); });
      client.send('hello', (e) => { if (e) { clearTimeout(timer); res((e as NodeJS.ErrnoException).code ?? 'error'); } });
      // The error is reported on the next send/recv after the ICMP arrives.
      again = setTimeout(() => client.send('again', (e) => { if (e) { clearTimeout(timer); res((e as NodeJS.ErrnoException).code ?? 'error'); } }), 100);
    });
    t.equal(code, 'ECONNREFUSED');
    t.ok(seen.length >= 1 && seen[0]!.dstPort === port && seen[0]!.ipPacket[0]! >> 4 === family, 'the datagram event carries the IP packet');
    t.equal(delivered, 0, 'the filtered socket received nothing');
    t.equal(raw.errors, 0, raw.lastError ?? 'no send errors');
  });
}
