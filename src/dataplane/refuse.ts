// Exact refusal: allowed traffic to a backend that is not listening gets what a real host sends,
// an RST|ACK (TCP) or ICMP port unreachable (UDP), and denied traffic stays silent.
//
// Owns: the libpcap handle on `lo` (src/native/pcap.ts) and the raw sender (src/native/raw.ts).
// How the race is won (linux-techniques.md §3): while a listener's backend is down its socket
// filter drops every new flow, so the kernel never answers; libpcap taps the device before
// socket filters and still sees the packet; we decide it against the policy and answer allowed
// ones. It also reports the REJECTs the kernel filter produced (denied SYNs) to the flow log,
// which are otherwise invisible to userland.
// Without CAP_NET_RAW, libpcap or raw-socket: mode 'reset' — TCP listeners accept and reset,
// UDP stays silent.
// It also counts the new flows a full conntrack table dropped (listeners in FULL mode drop them in
// the kernel, so userland would otherwise never know): sgemu_conntrack_overflow_total.
// Cost: the capture filter names only the listeners whose backend is down (the ones that need an
// answer) or whose table is full, plus every listener when the flow log wants the kernel's
// REJECTs. With nothing to watch no capture is open at all (src/native/pcap.ts). A SYN flood
// against a listener with a live backend and no flow log never wakes this process
// (scripts/bench/synflood.ts).

import { isIPv4 } from 'node:net';
import { PacketWatch, type SynEvent, type UdpEvent } from '../native/pcap.js';
import { parseIpv4, parseIpv6Words } from '../policy/addr.js';
import { RawSender } from '../native/raw.js';
import { NetdWatch, type Netd } from '../native/netd.js';
import { probeCapNetRaw } from '../native/probe.js';
import { VERDICT_ALLOW, VERDICT_NACL_DENY } from '../policy/types.js';
import { MODE_DOWN, MODE_FULL, type Listener } from './listener.js';
import type { Counters } from './counters.js';
import { flowEvents, publishFlow } from '../observe/events.js';

export type RefusalMode = 'raw' | 'reset';

export interface RefuserHooks {
  /** A new flow the kernel filter dropped because the policy denies it (flow log REJECT). */
  onRejected?: (l: Listener, src: string, srcPort: number, dst: string, dstPort: number) => void;
  onRefused?: (l: Listener, src: string, srcPort: number, dst: string, dstPort: number) => void;
  /** A new flow, allowed by the rules, that the kernel filter dropped because conntrack is full. */
  onOverflow?: (l: Listener) => void;
  /** Whether the listener's backend listens at this very moment (asked before refusing: a backend
   * that opened its socket since the last liveness poll must not be refused). */
  backendUpNow?: (l: Listener) => boolean;
  /** Whether a datagram belongs to a flow conntrack already tracks (UDP in FULL mode: those pass). */
  isTracked?: (l: Listener, src: string, srcPort: number) => boolean;
}

export class Refuser {
  mode: RefusalMode = 'reset';
  reason = '';
  private watch: Pick<PacketWatch, 'setTargets' | 'close'> | null = null;
  private raw: Pick<RawSender, 'sendRstAck' | 'sendPortUnreachable'> & { close?: () => void } | null = null;
  private tcp = new Map<string, Listener>();
  private udp = new Map<string, Listener>();
  private all: Listener[] = [];
  /** Capture every listener's new flows (for flow-log REJECT records), not only backend-down ones. */
  captureAll = false;
  /** Whether a listener needs answers now (its backend is down). Set by the daemon; the capture
   * must open before the listener's filter turns to drop-all, so it is asked of liveness, not mode. */
  needsAnswers: (l: Listener) => boolean = (l) => l.mode === MODE_DOWN;

  constructor(private readonly counters: Counters, private readonly hooks: RefuserHooks = {}) {}

  /**
   * Opens what refusals need, through `route` (src/dataplane/privilege.ts): this process's own
   * pcap and raw sockets, or the capability helper's. Returns the mode. Never throws.
   */
  start(route: { refusal: 'process' | 'helper' | null; netd: Netd | null } = { refusal: 'process', netd: null }): RefusalMode {
    if (route.refusal === 'helper' && route.netd) {
      const netd = route.netd;
      // Not the Netd itself: closing the refuser must not close the helper (the daemon owns it).
      this.raw = {
        sendRstAck: (family, src, srcPort, dst, dstPort, ack) => netd.sendRstAck(family, src, srcPort, dst, dstPort, ack),
        sendPortUnreachable: (family, from, ipPacket) => netd.sendPortUnreachable(family, from, ipPacket),
      };
      this.watch = new NetdWatch(netd, (ev) => this.onSyn(ev), (ev) => this.onUdp(ev));
      this.mode = 'raw';
      this.reason = 'through the capability helper sgemu-netd (SYNs seen on a packet socket, RST|ACK and ICMP from raw sockets)';
      return this.mode;
    }
    if (!probeCapNetRaw()) {
      this.reason = 'no CAP_NET_RAW in this process and no capability helper (see `sgemu doctor`)';
      return this.mode;
    }
    try {
      this.raw = new RawSender();
      this.watch = new PacketWatch((ev) => this.onSyn(ev), (ev) => this.onUdp(ev));
      this.mode = 'raw';
      this.reason = 'CAP_NET_RAW, libpcap and raw sockets available';
    } catch (e) {
      this.raw?.close?.();
      this.raw = null;
      this.watch = null;
      this.reason = `raw refusal unavailable: ${e instanceof Error ? e.message : String(e)}`;
    }
    return this.mode;
  }

  setListeners(listeners: Iterable<Listener>): void {
    this.all = [...listeners];
    for (const l of this.all) if (l.spec.protocol === 17) l.refuseClient = (src, srcPort) => this.refuseUdpFlow(l, src, srcPort);
    this.refresh();
  }

  /**
   * UDP (#17 item 9): a datagram the listener forwarded although the backend seemed down came back
   * as the backend's own ICMP port unreachable (ECONNREFUSED on the flow's connected socket). The
   * client gets the same from the listening address: the ICMP quotes a rebuilt IP+UDP header of
   * its datagram (client → listener), which is all its kernel matches the error on (RFC 1122
   * 4.1.3.3; Linux __udp4_lib_err looks the socket up by the quoted addresses and ports).
   */
  refuseUdpFlow(l: Listener, src: string, srcPort: number): boolean {
    if (this.mode !== 'raw' || this.raw === null) return false;
    const fam = l.spec.family;
    try {
      this.raw.sendPortUnreachable(fam, l.spec.address, quotedUdp(fam, src, srcPort, l.spec.address, l.spec.listenPort));
    } catch { return false; }
    this.counters.refusedRaw++;
    l.stats.refused++;
    if (flowEvents.hasSubscribers) this.publish('refuse', l, src, srcPort, 'backend-down');
    this.hooks.onRefused?.(l, src, srcPort, l.spec.address, l.spec.listenPort);
    return true;
  }

  /** Recomputes the capture targets (after a listener's mode changed). Cheap when nothing changed. */
  refresh(): void {
    this.tcp.clear();
    this.udp.clear();
    const tcp: { address: string; port: number }[] = [];
    const udp: { address: string; port: number }[] = [];
    for (const l of this.all) {
      if (!this.captureAll && !this.needsAnswers(l) && l.mode !== MODE_FULL) continue;
      const target = { address: l.spec.address, port: l.spec.listenPort };
      if (l.spec.protocol === 6) { this.tcp.set(`${target.address}|${target.port}`, l); tcp.push(target); }
      else { this.udp.set(`${target.address}|${target.port}`, l); udp.push(target); }
    }
    this.watch?.setTargets(tcp, udp);   // a no-op when the filter text is unchanged
  }

  private onSyn(ev: SynEvent): void {
    const l = this.tcp.get(`${ev.dst}|${ev.dstPort}`);
    if (!l) return;
    const v = l.decide(ev.src, ev.srcPort);
    if (!(v & VERDICT_ALLOW)) {
      this.counters.rejectedKernel++;
      l.stats.rejected++;
      this.hooks.onRejected?.(l, ev.src, ev.srcPort, ev.dst, ev.dstPort);
      // The kernel filter dropped it either way; the reason says which layer denied it.
      if (flowEvents.hasSubscribers) this.publish('reject', l, ev.src, ev.srcPort, v & VERDICT_NACL_DENY ? 'network-acl' : 'kernel-filter');
      return;
    }
    if (l.mode === MODE_FULL) { this.overflow(l, ev.src, ev.srcPort); return; }
    if (l.mode !== MODE_DOWN) return;    // the kernel answers (rules) or drops (closed)
    // Up since the last poll: no refusal. The poll just made switched the filter back to the
    // rules, so the client's SYN retransmit (1 s) connects. Never refused while it listens.
    if (this.hooks.backendUpNow?.(l)) { this.counters.refusalsAvoided++; return; }
    this.raw!.sendRstAck(ev.family, ev.dst, ev.dstPort, ev.src, ev.srcPort, (ev.seq + 1) >>> 0);
    this.counters.refusedRaw++;
    l.stats.refused++;
    if (flowEvents.hasSubscribers) this.publish('refuse', l, ev.src, ev.srcPort, 'backend-down');
    this.hooks.onRefused?.(l, ev.src, ev.srcPort, ev.dst, ev.dstPort);
  }

  private onUdp(ev: UdpEvent): void {
    const l = this.udp.get(`${ev.dst}|${ev.dstPort}`);
    if (!l) return;
    if (l.mode === MODE_FULL) {
      // Live flows' datagrams pass a FULL program; the others are new flows the table dropped.
      if (l.decide(ev.src, ev.srcPort) & VERDICT_ALLOW && !this.hooks.isTracked?.(l, ev.src, ev.srcPort)) this.overflow(l, ev.src, ev.srcPort);
      return;
    }
    if (l.mode !== MODE_DOWN) return;   // datagrams of live flows are not "new": only DOWN answers
    if (!(l.decide(ev.src, ev.srcPort) & VERDICT_ALLOW)) return;
    if (this.hooks.backendUpNow?.(l)) { this.counters.refusalsAvoided++; return; }
    this.raw!.sendPortUnreachable(ev.family, ev.dst, ev.ipPacket);
    this.counters.refusedRaw++;
    l.stats.refused++;
    if (flowEvents.hasSubscribers) this.publish('refuse', l, ev.src, ev.srcPort, 'backend-down');
    this.hooks.onRefused?.(l, ev.src, ev.srcPort, ev.dst, ev.dstPort);
  }

  private overflow(l: Listener, src: string, srcPort: number): void {
    this.counters.overflowDropped++;
    this.hooks.onOverflow?.(l);
    if (flowEvents.hasSubscribers) this.publish('reject', l, src, srcPort, 'conntrack-full');
  }

  private publish(type: 'reject' | 'refuse', l: Listener, src: string, srcPort: number, reason: string): void {
    publishFlow({ type, protocol: l.spec.protocol === 6 ? 'tcp' : 'udp', instance: l.spec.instName,
      direction: l.spec.kind === 'service' ? 'ingress' : 'egress', src, srcPort, dst: l.spec.address, dstPort: l.spec.listenPort, reason });
  }

  close(): void {
    this.watch?.close();
    this.raw?.close?.();     // the helper (when it is the sender) is closed by its owner, not here
    this.watch = null;
    this.raw = null;
  }
}

/** The IP + UDP header (no payload) of a datagram src:srcPort → dst:dstPort, for an ICMP to quote. */
export function quotedUdp(family: 4 | 6, src: string, srcPort: number, dst: string, dstPort: number): Buffer {
  if (family === 4 && isIPv4(src)) {
    const b = Buffer.alloc(28);
    b[0] = 0x45; b.writeUInt16BE(28, 2); b[8] = 64; b[9] = 17;
    b.writeUInt32BE(parseIpv4(src), 12); b.writeUInt32BE(parseIpv4(dst), 16);
    let sum = 0;
    for (let i = 0; i < 20; i += 2) sum += b.readUInt16BE(i);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    b.writeUInt16BE(~sum & 0xffff, 10);
    b.writeUInt16BE(srcPort, 20); b.writeUInt16BE(dstPort, 22); b.writeUInt16BE(8, 24);
    return b;
  }
  const b = Buffer.alloc(48);
  b[0] = 0x60; b.writeUInt16BE(8, 4); b[6] = 17; b[7] = 64;
  parseIpv6Words(src).forEach((w, i) => b.writeUInt32BE(w >>> 0, 8 + 4 * i));
  parseIpv6Words(dst).forEach((w, i) => b.writeUInt32BE(w >>> 0, 24 + 4 * i));
  b.writeUInt16BE(srcPort, 40); b.writeUInt16BE(dstPort, 42); b.writeUInt16BE(8, 44);
  return b;
}
