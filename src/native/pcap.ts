// Seeing SYNs and datagrams the socket filter dropped: one libpcap handle on `lo` through `cap`
// (linux-techniques.md §2, native-notes/pcap-syn-watch.md). Needs CAP_NET_RAW.
//
// Owns: the capture handle, its capture filter (rebuilt by setTargets) and the parse of captured
// frames at fixed offsets. Must not: decide policy or answer packets (src/dataplane/refuse.ts does).
// Invariants: one scratch Buffer per handle, reused for every packet (cap writes into it); events
// carry copies only where the consumer keeps bytes (UdpEvent.ipPacket). Link type on `lo` is
// Ethernet with a 14-byte header of zeros; libpcap taps `lo` before socket filters, so a SYN that a
// listener's filter drops is still seen here, once.
//
// Frame layout parsed (offsets from the start of the scratch buffer):
//   0..13  Ethernet (type at 12: 0x0800 IPv4, 0x86dd IPv6)
//   14     IPv4: ihl (low nibble ×4), proto at 14+9, src 14+12, dst 14+16, transport at 14+ihl
//          IPv6: next header at 14+6, src 14+8..23, dst 14+24..39, transport at 54 (no ext headers)
//   L4     TCP: sport 0, dport 2, seq 4, flags 13 · UDP: sport 0, dport 2

import { createRequire } from 'node:module';
import ipaddr from 'ipaddr.js';

export interface SynEvent { family: 4 | 6; src: string; srcPort: number; dst: string; dstPort: number; seq: number }
export interface UdpEvent { family: 4 | 6; src: string; srcPort: number; dst: string; dstPort: number; ipPacket: Buffer }

interface CapHandle {
  open(device: string, filter: string, bufSize: number, buffer: Buffer): string;
  close(): void;
  on(ev: 'packet', fn: (nbytes: number, trunc: boolean) => void): void;
}
interface CapModule { Cap: new () => CapHandle }

const ETH_LEN = 14;
const ETHERTYPE_IPV4 = 0x0800, ETHERTYPE_IPV6 = 0x86dd;
const IPPROTO_TCP = 6, IPPROTO_UDP = 17;
const TH_SYN = 0x02, TH_ACK = 0x10;
const SCRATCH_BYTES = 65535 + ETH_LEN;
// cap fixes snaplen at 65535, so each ring frame is ~128 KiB: 4 MiB held 32 frames and a burst of
// 64 simultaneous SYNs lost half (measured: tcpdump saw 64, cap 32; the missed clients were refused
// only after their 1 s SYN retransmit). 32 MiB holds 256 frames (measured: 64 of 64 captured).
const KERNEL_BUFFER_BYTES = 32 * 1024 * 1024;
/** A capture filter that matches nothing: keeps the handle (and the privilege check) open. */
const MATCH_NOTHING = 'less 0';

/**
 * Closed handles are kept reachable for the life of the process. cap's close() only calls
 * uv_poll_stop (never uv_close) on the poll handle embedded in its C++ object; if that object is
 * garbage-collected, libuv's handle queue keeps a dangling pointer and the process crashes at exit
 * (SIGSEGV seen in test/native/refuse-raw.test.ts). One small object per setTargets/close.
 */
const retired: CapHandle[] = [];

let capModule: CapModule | null = null;
/** Whether `cap` loads (libpcap bound); opens nothing. Cheap: for the start-up route choice. */
export function pcapLoadable(): boolean {
  try { loadCap(); return true; } catch { return false; }
}

function loadCap(): CapModule {
  if (!capModule) {
    try {
      capModule = createRequire(import.meta.url)('cap') as CapModule;
    } catch (e) {
      throw new Error(`optional dependency 'cap' (libpcap) not loadable: ${e instanceof Error ? e.message : String(e)}; install libpcap-dev and rebuild it`);
    }
  }
  return capModule;
}

function v4Text(b: Buffer, o: number): string {
  return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
}
function v6Text(b: Buffer, o: number): string {
  return ipaddr.fromByteArray(Array.from(b.subarray(o, o + 16))).toString();
}

/** `tcp dst port P and SYN-without-ACK` for IPv4; IPv6 reads the flags at 40+13 (tcp[] is v4-only in libpcap). */
export function captureFilter(tcp: { address: string; port: number }[], udp: { address: string; port: number }[]): string {
  const parts: string[] = [];
  for (const t of tcp) {
    if (t.address.includes(':')) parts.push(`(ip6 and ip6[6] == 6 and dst host ${t.address} and tcp dst port ${t.port} and ip6[53] & 0x12 == 0x02)`);
    else parts.push(`(ip and dst host ${t.address} and tcp dst port ${t.port} and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn)`);
  }
  for (const u of udp) {
    parts.push(`(${u.address.includes(':') ? 'ip6' : 'ip'} and dst host ${u.address} and udp dst port ${u.port})`);
  }
  return parts.length ? parts.join(' or ') : MATCH_NOTHING;
}

interface Open { cap: CapHandle; buf: Buffer }

/** One libpcap handle on `lo`. The constructor opens it (throws without CAP_NET_RAW or libpcap). */
export class PacketWatch {
  private handle: Open | null = null;
  private filter = '';
  private closed = false;

  /** Opens and closes one handle to prove libpcap works here (throws otherwise); captures nothing
   * until setTargets names something to watch. */
  constructor(private readonly onSyn: (e: SynEvent) => void, private readonly onUdp?: (e: UdpEvent) => void) {
    const probe = this.open(MATCH_NOTHING);
    probe.cap.close();
    retired.push(probe.cap);
    this.filter = MATCH_NOTHING;
  }

  /** Recompiles the capture filter. The new handle opens before the old closes (no gap; a
   * packet seen twice in the overlap is answered twice, which is harmless for RST and ICMP).
   * With no targets the handle is closed, not kept with an empty filter: while any packet socket
   * is open on `lo` the kernel clones every loopback packet for it (dev_queue_xmit_nit) before
   * its filter rejects it, which costs the whole data plane. */
  setTargets(tcp: { address: string; port: number }[], udp: { address: string; port: number }[]): void {
    if (this.closed) return;
    const f = captureFilter(tcp, udp);
    if (f === this.filter) return;
    const next = f === MATCH_NOTHING ? null : this.open(f);
    const prev = this.handle;
    this.handle = next;
    this.filter = f;
    if (prev) { prev.cap.close(); retired.push(prev.cap); }
  }

  /** Whether a capture handle is open now (false while there is nothing to watch). */
  get capturing(): boolean { return this.handle !== null; }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.handle) { this.handle.cap.close(); retired.push(this.handle.cap); }
    this.handle = null;
  }

  private open(filter: string): Open {
    const { Cap } = loadCap();
    const cap = new Cap();
    const buf = Buffer.alloc(SCRATCH_BYTES);
    let link: string;
    try {
      link = cap.open('lo', filter, KERNEL_BUFFER_BYTES, buf);
    } catch (e) {
      retired.push(cap);
      throw new Error(`libpcap open of 'lo' with filter "${filter}" failed: ${e instanceof Error ? e.message : String(e)} (needs CAP_NET_RAW)`);
    }
    if (link !== 'ETHERNET') {
      cap.close();
      retired.push(cap);
      throw new Error(`libpcap link type on 'lo' is ${link}; expected ETHERNET`);
    }
    const h: Open = { cap, buf };
    cap.on('packet', (nbytes) => this.parse(h, nbytes)); // one closure per handle, not per packet
    return h;
  }

  private parse(h: Open, n: number): void {
    if (h !== this.handle || n < ETH_LEN + 20) return;
    const b = h.buf;
    const type = b.readUInt16BE(12);
    let family: 4 | 6, proto: number, l4: number, srcOff: number, dstOff: number;
    if (type === ETHERTYPE_IPV4) {
      family = 4;
      proto = b[ETH_LEN + 9]!;
      l4 = ETH_LEN + (b[ETH_LEN]! & 0x0f) * 4;
      srcOff = ETH_LEN + 12; dstOff = ETH_LEN + 16;
    } else if (type === ETHERTYPE_IPV6) {
      family = 6;
      proto = b[ETH_LEN + 6]!;
      l4 = ETH_LEN + 40;
      srcOff = ETH_LEN + 8; dstOff = ETH_LEN + 24;
    } else return;
    if (proto === IPPROTO_TCP) {
      if (n < l4 + 20 || (b[l4 + 13]! & (TH_SYN | TH_ACK)) !== TH_SYN) return;
      this.onSyn({
        family,
        src: family === 4 ? v4Text(b, srcOff) : v6Text(b, srcOff), srcPort: b.readUInt16BE(l4),
        dst: family === 4 ? v4Text(b, dstOff) : v6Text(b, dstOff), dstPort: b.readUInt16BE(l4 + 2),
        seq: b.readUInt32BE(l4 + 4),
      });
    } else if (proto === IPPROTO_UDP && this.onUdp) {
      if (n < l4 + 8) return;
      this.onUdp({
        family,
        src: family === 4 ? v4Text(b, srcOff) : v6Text(b, srcOff), srcPort: b.readUInt16BE(l4),
        dst: family === 4 ? v4Text(b, dstOff) : v6Text(b, dstOff), dstPort: b.readUInt16BE(l4 + 2),
        ipPacket: Buffer.from(b.subarray(ETH_LEN, n)),
      });
    }
  }
}
