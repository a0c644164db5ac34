// Real refusals with raw sockets through `raw-socket` (linux-techniques.md §3–4,
// native-notes/raw-rst.md, native-notes/icmp-unreachable.md). Needs CAP_NET_RAW.
//
// Owns: building RST|ACK segments and ICMP/ICMPv6 port-unreachable messages, their checksums, and
// the raw sockets that send them. Must not: decide who is refused (src/dataplane/refuse.ts does).
// Invariants: IPv4 sockets use IP_HDRINCL and IPv6 sockets IPV6_HDRINCL, so the source is the
// address the client connected to (not the route's preferred source); receive is paused on every
// socket (we never read from them); sends are fire-and-forget, failures counted in `errors`.
//
//   RST|ACK (v4: 20-byte IP header + 20-byte TCP header; v6: 40 + 20)
//     sport = instance port, dport = client port, seq 0, ack = client ISN + 1,
//     data offset 5, flags 0x14, window 0, checksum over the pseudo-header (RFC 793 / RFC 8200 §8.1)
//   ICMP 3/3 (RFC 792): type 3, code 3, checksum, 4 unused bytes, original IPv4 header + 8 bytes
//   ICMPv6 1/4 (RFC 4443 §3.1): type 1, code 4, checksum incl. pseudo-header, 4 unused bytes,
//     as much of the invoking packet as fits in the minimum MTU (1280 − 40 − 8 = 1232 bytes)

import { createRequire } from 'node:module';
import ipaddr from 'ipaddr.js';

interface RawSocket {
  send(buf: Buffer, offset: number, length: number, address: string, cb: (err: Error | null, bytes?: number) => void): void;
  setOption(level: number, option: number, value: number): void;
  pauseRecv(): void;
  close(): void;
  on(ev: 'error', fn: (e: Error) => void): void;
}
interface RawModule {
  createSocket(o: { protocol: number; addressFamily: number }): RawSocket;
  AddressFamily: { IPv4: number; IPv6: number };
  SocketLevel: { IPPROTO_IP: number; IPPROTO_IPV6: number };
  SocketOption: { IP_HDRINCL: number; IPV6_HDRINCL?: number };
}

const IPPROTO_ICMP = 1, IPPROTO_TCP = 6, IPPROTO_ICMPV6 = 58;
const TH_RST = 0x04, TH_ACK = 0x10;
const ICMP_DEST_UNREACH = 3, ICMP_PORT_UNREACH = 3;
const ICMPV6_DEST_UNREACH = 1, ICMPV6_PORT_UNREACH = 4;
const ICMPV6_QUOTE_MAX = 1232;
const TTL = 64;
/** linux/in6.h; raw-socket exports it only when its build headers define it. */
const IPV6_HDRINCL = 36;

let rawModule: RawModule | null = null;
/** Whether `raw-socket` loads; opens nothing. Cheap: for the start-up route choice. */
export function rawLoadable(): boolean {
  try { loadRaw(); return true; } catch { return false; }
}

function loadRaw(): RawModule {
  if (!rawModule) {
    try {
      rawModule = createRequire(import.meta.url)('raw-socket') as RawModule;
    } catch (e) {
      throw new Error(`optional dependency 'raw-socket' not loadable: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return rawModule;
}

function addrBytes(family: 4 | 6, a: string): Buffer {
  const p = ipaddr.parse(a);
  if ((family === 4) !== (p.kind() === 'ipv4')) throw new RangeError(`raw: address "${a}" is not IPv${family}`);
  return Buffer.from(p.toByteArray());
}

/** Internet checksum (RFC 1071) over the concatenation of `parts`. */
export function inetChecksum(...parts: Buffer[]): number {
  let sum = 0, odd = -1;
  for (const p of parts) {
    for (let i = 0; i < p.length; i++) {
      if (odd < 0) odd = p[i]!;
      else { sum += (odd << 8) | p[i]!; odd = -1; }
    }
  }
  if (odd >= 0) sum += odd << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function pseudo(family: 4 | 6, src: Buffer, dst: Buffer, proto: number, len: number): Buffer {
  if (family === 4) {
    const p = Buffer.alloc(12);
    src.copy(p, 0); dst.copy(p, 4); p[9] = proto; p.writeUInt16BE(len, 10);
    return p;
  }
  const p = Buffer.alloc(40);
  src.copy(p, 0); dst.copy(p, 16); p.writeUInt32BE(len, 32); p[39] = proto;
  return p;
}

/** Network header for IP_HDRINCL / IPV6_HDRINCL. */
function ipHeader(family: 4 | 6, src: Buffer, dst: Buffer, proto: number, payloadLen: number): Buffer {
  if (family === 4) {
    const h = Buffer.alloc(20);
    h[0] = 0x45; h.writeUInt16BE(20 + payloadLen, 2); h.writeUInt16BE(0x4000, 6); h[8] = TTL; h[9] = proto;
    src.copy(h, 12); dst.copy(h, 16);
    h.writeUInt16BE(inetChecksum(h), 10);
    return h;
  }
  const h = Buffer.alloc(40);
  h.writeUInt32BE(0x60000000, 0); h.writeUInt16BE(payloadLen, 4); h[6] = proto; h[7] = TTL;
  src.copy(h, 8); dst.copy(h, 24);
  return h;
}

/** A TCP RST|ACK segment (no IP header) with its checksum. Exported for tests. */
export function buildRstAck(family: 4 | 6, src: string, srcPort: number, dst: string, dstPort: number, ack: number): Buffer {
  const s = addrBytes(family, src), d = addrBytes(family, dst);
  const tcp = Buffer.alloc(20);
  tcp.writeUInt16BE(srcPort, 0); tcp.writeUInt16BE(dstPort, 2);
  tcp.writeUInt32BE(0, 4); tcp.writeUInt32BE(ack >>> 0, 8);
  tcp[12] = 5 << 4; tcp[13] = TH_RST | TH_ACK;
  tcp.writeUInt16BE(inetChecksum(pseudo(family, s, d, IPPROTO_TCP, 20), tcp), 16);
  return Buffer.concat([ipHeader(family, s, d, IPPROTO_TCP, 20), tcp]);
}

/** ICMP port unreachable (with network header) answering `ipPacket`, from `from`. Exported for tests. */
export function buildPortUnreachable(family: 4 | 6, from: string, ipPacket: Buffer): { packet: Buffer; to: string } {
  const s = addrBytes(family, from);
  if (family === 4) {
    if (ipPacket.length < 20 || ipPacket[0]! >> 4 !== 4) throw new RangeError(`raw: quoted packet of ${ipPacket.length} bytes is not IPv4`);
    const ihl = (ipPacket[0]! & 0x0f) * 4;
    const quote = ipPacket.subarray(0, Math.min(ipPacket.length, ihl + 8));
    const icmp = Buffer.alloc(8 + quote.length);
    icmp[0] = ICMP_DEST_UNREACH; icmp[1] = ICMP_PORT_UNREACH;
    quote.copy(icmp, 8);
    icmp.writeUInt16BE(inetChecksum(icmp), 2);
    const d = Buffer.from(ipPacket.subarray(12, 16));
    return { packet: Buffer.concat([ipHeader(4, s, d, IPPROTO_ICMP, icmp.length), icmp]), to: `${d[0]}.${d[1]}.${d[2]}.${d[3]}` };
  }
  if (ipPacket.length < 40 || ipPacket[0]! >> 4 !== 6) throw new RangeError(`raw: quoted packet of ${ipPacket.length} bytes is not IPv6`);
  const d = Buffer.from(ipPacket.subarray(8, 24));
  const quote = ipPacket.subarray(0, Math.min(ipPacket.length, ICMPV6_QUOTE_MAX));
  const icmp = Buffer.alloc(8 + quote.length);
  icmp[0] = ICMPV6_DEST_UNREACH; icmp[1] = ICMPV6_PORT_UNREACH;
  quote.copy(icmp, 8);
  icmp.writeUInt16BE(inetChecksum(pseudo(6, s, d, IPPROTO_ICMPV6, icmp.length), icmp), 2);
  return { packet: Buffer.concat([ipHeader(6, s, d, IPPROTO_ICMPV6, icmp.length), icmp]), to: ipaddr.fromByteArray(Array.from(d)).toString() };
}

/** Raw senders for RST|ACK and ICMP unreachable. The constructor opens the IPv4 TCP socket, so
 * it throws at once without CAP_NET_RAW; the others open on first use. */
export class RawSender {
  /** Sends that failed (asynchronously); `lastError` holds the latest message. */
  errors = 0;
  lastError: string | null = null;
  private readonly mod: RawModule;
  private readonly socks = new Map<string, RawSocket>();
  private closed = false;
  private readonly onSent = (err: Error | null): void => {
    if (err) { this.errors++; this.lastError = err.message; }
  };

  constructor() {
    this.mod = loadRaw();
    this.sock(4, IPPROTO_TCP);
  }

  private sock(family: 4 | 6, proto: number): RawSocket {
    const key = `${family}/${proto}`;
    let s = this.socks.get(key);
    if (s) return s;
    const m = this.mod;
    try {
      s = m.createSocket({ protocol: proto, addressFamily: family === 4 ? m.AddressFamily.IPv4 : m.AddressFamily.IPv6 });
      if (family === 4) s.setOption(m.SocketLevel.IPPROTO_IP, m.SocketOption.IP_HDRINCL, 1);
      else s.setOption(m.SocketLevel.IPPROTO_IPV6, m.SocketOption.IPV6_HDRINCL ?? IPV6_HDRINCL, 1);
    } catch (e) {
      s?.close();
      throw new Error(`raw socket IPv${family} protocol ${proto}: ${e instanceof Error ? e.message : String(e)} (needs CAP_NET_RAW)`);
    }
    s.pauseRecv();
    s.on('error', (e) => { this.errors++; this.lastError = e.message; });
    this.socks.set(key, s);
    return s;
  }

  /** RST|ACK from src:srcPort (the address the client connected to) to the client dst:dstPort. */
  sendRstAck(family: 4 | 6, src: string, srcPort: number, dst: string, dstPort: number, ack: number): void {
    if (this.closed) return;
    const pkt = buildRstAck(family, src, srcPort, dst, dstPort, ack);
    this.sock(family, IPPROTO_TCP).send(pkt, 0, pkt.length, dst, this.onSent);
  }

  /** ICMP(v6) port unreachable from `from`, quoting `ipPacket` (the datagram's IP packet), to its source. */
  sendPortUnreachable(family: 4 | 6, from: string, ipPacket: Buffer): void {
    if (this.closed) return;
    const { packet, to } = buildPortUnreachable(family, from, ipPacket);
    this.sock(family, family === 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6).send(packet, 0, packet.length, to, this.onSent);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.socks.values()) s.close();
    this.socks.clear();
  }
}
