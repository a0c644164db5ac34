// The daemon's side of the capability helper, sgemu-netd (src/native/netd/sgemu-netd.c,
// native-notes/capability-helper.md): the only process that holds CAP_NET_ADMIN and CAP_NET_RAW
// while the daemon runs as the user.
//
// Owns: the helper process, its two channels and the encoding of every message. Requests go over
// a SOCK_SEQPACKET pair, one synchronous round trip each through the addon (netdCall), so that
// a listener open or a filter swap is done when the call returns; events (SYNs and datagrams to
// watched listeners) come back over a SOCK_STREAM pair read by Node, 120-byte records.
// Must not: decide anything; the refuser and the listeners do. Invariants: every fd received is
// O_CLOEXEC and owned by the caller; a failed call throws NativeError with the helper's errno;
// when this process dies the helper sees its channel close (and PR_SET_PDEATHSIG) and exits.
//
//   request (64-byte header + tail)                      reply (20 bytes, + fd for OPEN)
//    0 magic u32   4 version u16   6 type u16             0 magic  4 version  6 type  8 seq
//    8 seq u32    12 family u8    13 proto u8            12 err i32 (errno, 0 = ok)
//   14 port u16   16 addr[16]     32 peer[16]            16 value u32
//   48 peer_port u16  50 backlog u16  52 ack u32
//   56 count u16  58 reserved[6]  64 tail: program | targets (20 bytes each) | quote

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import ipaddr from 'ipaddr.js';
import { NativeError } from '../model/errors.js';
import { addonHandle, nativeArtifactPath, packageRoot } from './sock-filter.js';
import { errnoName, fail, isFailure, nativeUnavailable, type Failure } from './failure.js';
import type { SynEvent, UdpEvent } from './pcap.js';

interface NetdAddon {
  socketpair(type: number): [number, number] | Failure;
  netdCall(fd: number, req: Buffer, passFd: number, timeoutMs: number): { reply: Buffer; fd: number } | Failure;
  closeFd(fd: number): number | Failure;
}

const MAGIC = 0x31444e53, VERSION = 1;
export const T_PROBE = 1, T_OPEN = 2, T_ATTACH = 3, T_CLOSE = 4, T_RST = 5, T_UNREACH = 6, T_WATCH = 7;
/** --namespace only (src/native/netd/namespace.c): an address on the namespace's lo, the command, a signal to it. */
export const T_ADDR = 8, T_EXEC = 9, T_SIGNAL = 10;
const HDR = 64, REPLY = 20, EVENT = 120, TARGET = 20;
const SOCK_STREAM = 1, SOCK_SEQPACKET = 5;
/** A round trip costs tens of µs; this only bounds a helper that stopped answering. */
const CALL_TIMEOUT_MS = 5000;

/** Where the helper binary is: $SGEMU_NETD, else the source build or the prebuilt copy
 * (nativeArtifactPath: build/Release first, then prebuilds/). */
export function helperPath(): string {
  return process.env.SGEMU_NETD || (nativeArtifactPath('sgemu-netd') ?? join(packageRoot(), 'build', 'Release', 'sgemu-netd'));
}

export interface NetdProbe { tcpFilter: boolean; raw: boolean; packet: boolean; errno: number; namespace: boolean }
export interface Target { protocol: 6 | 17; family: 4 | 6; address: string; port: number }


function writeAddr(b: Buffer, at: number, family: 4 | 6, address: string): void {
  const p = ipaddr.parse(address);
  if ((p.kind() === 'ipv4') !== (family === 4)) throw new RangeError(`netd: "${address}" is not IPv${family}`);
  Buffer.from(p.toByteArray()).copy(b, at);
}
function readAddr(b: Buffer, at: number, family: number): string {
  return family === 4 ? `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}` : ipaddr.fromByteArray(Array.from(b.subarray(at, at + 16))).toString();
}

/** The request header; `tail` follows it. Exported for the helper's fuzz test. */
export function encodeRequest(o: {
  type: number; seq?: number; family?: number; protocol?: number; port?: number; address?: string;
  peer?: string; peerPort?: number; backlog?: number; ack?: number; count?: number; tail?: Buffer;
}): Buffer {
  const tail = o.tail ?? Buffer.alloc(0);
  const b = Buffer.alloc(HDR + tail.length);
  b.writeUInt32LE(MAGIC, 0); b.writeUInt16LE(VERSION, 4); b.writeUInt16LE(o.type, 6); b.writeUInt32LE(o.seq ?? 0, 8);
  b[12] = o.family ?? 0; b[13] = o.protocol ?? 0; b.writeUInt16LE(o.port ?? 0, 14);
  if (o.address) writeAddr(b, 16, o.family === 6 ? 6 : 4, o.address);
  if (o.peer) writeAddr(b, 32, o.family === 6 ? 6 : 4, o.peer);
  b.writeUInt16LE(o.peerPort ?? 0, 48); b.writeUInt16LE(o.backlog ?? 0, 50); b.writeUInt32LE((o.ack ?? 0) >>> 0, 52);
  b.writeUInt16LE(o.count ?? 0, 56);
  tail.copy(b, HDR);
  return b;
}

/** One running helper. `Netd.start()` spawns it; `close()` (or this process's death) ends it. */
export class Netd {
  private seq = 0;
  private ev: net.Socket | null = null;
  private pending = Buffer.alloc(0);
  private onSyn: ((e: SynEvent) => void) | null = null;
  private onUdp: ((e: UdpEvent) => void) | null = null;
  private onExit: ((status: number) => void) | null = null;
  /** Whether the helper is still there (false after close or when it died). */
  alive = true;
  /** Requests refused or failed, for status and tests; the latest message in lastError. */
  errors = 0;
  lastError: string | null = null;

  private constructor(private readonly addon: NetdAddon, private ctl: number, readonly path: string, private readonly child: ChildProcess) {}

  /**
   * Spawns the helper at `path` with its two channels. Throws NativeError when it cannot run.
   * `namespace`: the helper makes a user + network + PID namespace of its own (`sgemu exec`);
   * its stdio is then this process's, for the command it will run there.
   */
  static start(path = helperPath(), opts: { namespace?: boolean } = {}): Netd {
    const addon = addonHandle() as unknown as NetdAddon | null;
    if (!addon || typeof addon.netdCall !== 'function') throw nativeUnavailable('the capability helper needs the native addon (sgemu_native.node), which is not built');
    if (!existsSync(path)) throw new NativeError('execve', 2, 'ENOENT', `capability helper ${path} not found; rebuild with \`node scripts/build-addon.mjs\``);
    const ctl = addon.socketpair(SOCK_SEQPACKET);
    if (isFailure(ctl)) fail(ctl, 'netd channel');
    const ev = addon.socketpair(SOCK_STREAM);
    if (isFailure(ev)) { addon.closeFd(ctl[0]); addon.closeFd(ctl[1]); fail(ev, 'netd events'); }
    let child: ChildProcess;
    try {
      child = spawn(path, opts.namespace ? ['--namespace'] : [],
        { stdio: opts.namespace ? ['inherit', 'inherit', 'inherit', ctl[1], ev[1]] : ['ignore', 'ignore', 'inherit', ctl[1], ev[1]], env: {} });
    } finally {
      addon.closeFd(ctl[1]);
      addon.closeFd(ev[1]);
    }
    child.on('error', () => {});       // an exec failure shows as EPIPE on the first call
    child.unref();
    const d = new Netd(addon, ctl[0], path, child);
    child.on('exit', () => { d.alive = false; });
    const sock = new net.Socket({ fd: ev[0], readable: true, writable: false });
    sock.on('data', (chunk: Buffer) => d.onData(chunk));
    sock.on('error', () => {});
    sock.unref();
    d.ev = sock;
    return d;
  }

  /** The helper's pid (tests check it exits). */
  get pid(): number | undefined { return this.child.pid; }

  /** Resolves once the helper process has exited and been reaped (after close(), or when it
   * died), so that a caller can leave no child behind (the Node API's stop()). */
  exited(): Promise<void> {
    const c = this.child;
    if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => { c.once('exit', () => resolve()); });
  }

  /** One request, one reply; throws NativeError with the helper's errno on failure. */
  call(req: Buffer, passFd = -1, what = 'capability helper'): { value: number; fd: number } {
    if (this.ctl < 0) throw new NativeError('sendmsg', 32, 'EPIPE', `${what}: the capability helper is closed`);
    const seq = (this.seq = (this.seq + 1) >>> 0);
    req.writeUInt32LE(seq, 8);
    const r = this.addon.netdCall(this.ctl, req, passFd, CALL_TIMEOUT_MS);
    if (isFailure(r)) { this.errors++; this.lastError = `${what}: ${errnoName(r.errno)}`; this.alive = r.errno !== 32 && this.alive; fail(r, what); }
    const b = r.reply;
    if (b.length < REPLY || b.readUInt32LE(0) !== MAGIC || b.readUInt32LE(8) !== seq) {
      if (r.fd >= 0) this.addon.closeFd(r.fd);
      throw new NativeError('recvmsg', 71, 'EPROTO', `${what}: malformed reply from the capability helper`);
    }
    const err = b.readInt32LE(12);
    if (err !== 0) {
      if (r.fd >= 0) this.addon.closeFd(r.fd);
      this.errors++;
      this.lastError = `${what}: ${errnoName(err)}`;
      fail({ errno: err, syscall: 'sgemu-netd' }, what);
    }
    return { value: b.readUInt32LE(16), fd: r.fd };
  }

  /** Sends `req` as it is (no seq stamped, nothing checked) → the helper's err and value, and
   * any fd it sent (owned by the caller). For the helper's fuzz test. */
  callRaw(req: Buffer, passFd = -1): { err: number; value: number; fd: number; replyBytes: number } {
    const r = this.addon.netdCall(this.ctl, req, passFd, CALL_TIMEOUT_MS);
    if (isFailure(r)) fail(r, 'capability helper');
    return { err: r.reply.length >= REPLY ? r.reply.readInt32LE(12) : -1, value: r.reply.length >= REPLY ? r.reply.readUInt32LE(16) : 0, fd: r.fd, replyBytes: r.reply.length };
  }

  probe(): NetdProbe {
    const req = encodeRequest({ type: T_PROBE });
    const seq = (this.seq = (this.seq + 1) >>> 0);
    req.writeUInt32LE(seq, 8);
    const r = this.addon.netdCall(this.ctl, req, -1, CALL_TIMEOUT_MS);
    if (isFailure(r)) fail(r, 'capability helper probe');
    const v = r.reply.readUInt32LE(16);
    return { tcpFilter: (v & 1) !== 0, raw: (v & 2) !== 0, packet: (v & 4) !== 0, errno: r.reply.readInt32LE(12), namespace: (v & 8) !== 0 };
  }

  /** A listening TCP or bound UDP socket with `program` attached before bind → fd. */
  open(o: { protocol: 6 | 17; family: 4 | 6; address: string; port: number; backlog?: number; program: Buffer | null }): number {
    const prog = o.program ?? Buffer.alloc(0);
    const what = `${o.protocol === 6 ? 'TCP listener' : 'UDP socket'} ${o.family === 6 ? `[${o.address}]` : o.address}:${o.port} (through sgemu-netd)`;
    const r = this.call(encodeRequest({ type: T_OPEN, family: o.family, protocol: o.protocol, address: o.address, port: o.port,
      backlog: o.backlog ?? 511, count: prog.length / 8, tail: prog }), -1, what);
    if (r.fd < 0) throw new NativeError('recvmsg', 71, 'EPROTO', `${what}: the helper sent no descriptor`);
    return r.fd;
  }

  /** SO_ATTACH_FILTER on a socket the helper created (the fd travels with the request). */
  attach(fd: number, program: Buffer): void {
    this.call(encodeRequest({ type: T_ATTACH, count: program.length / 8, tail: program }), fd, `attach filter to fd ${fd} (through sgemu-netd)`);
  }

  /** The helper forgets a listener the daemon closed. */
  forget(protocol: 6 | 17, family: 4 | 6, address: string, port: number): void {
    try { this.call(encodeRequest({ type: T_CLOSE, protocol, family, address, port }), -1, 'forget listener'); } catch { /* gone already */ }
  }

  sendRstAck(family: 4 | 6, src: string, srcPort: number, dst: string, dstPort: number, ack: number): void {
    try {
      this.call(encodeRequest({ type: T_RST, protocol: 6, family, address: src, port: srcPort, peer: dst, peerPort: dstPort, ack }), -1, 'RST|ACK');
    } catch { /* counted in errors */ }
  }

  /** ICMP port unreachable from `from` (a UDP socket of the helper) quoting the datagram's header. */
  sendPortUnreachable(family: 4 | 6, from: string, ipPacket: Buffer): void {
    const hl = family === 4 ? (ipPacket[0]! & 0x0f) * 4 : 40;
    if (ipPacket.length < hl + 8) return;
    const quote = ipPacket.subarray(0, hl + 8);
    const port = quote.readUInt16BE(hl + 2);
    try {
      this.call(encodeRequest({ type: T_UNREACH, protocol: 17, family, address: from, port, count: quote.length, tail: quote }), -1, 'ICMP port unreachable');
    } catch { /* counted in errors */ }
  }

  /** --namespace: gives the namespace's lo an instance's address (127/8 and ::1 are there already). */
  addAddress(family: 4 | 6, address: string): void {
    this.call(encodeRequest({ type: T_ADDR, family, address }), -1, `address ${address} in the namespace`);
  }

  /** --namespace: runs argv inside (as PID 1's child, with this cwd and environment) → its pid;
   * `onExit` gets its exit status (128 + signal when killed). */
  exec(cwd: string, argv: string[], env: Record<string, string>, onExit: (status: number) => void): number {
    if (argv.length === 0) throw new RangeError('exec: no command');
    const nul = (xs: string[]) => xs.map((x) => x.replace(/\0/g, '') + '\0').join('');
    const tail = Buffer.from(nul([cwd]) + nul(argv) + '\0' + nul(Object.entries(env).map(([k, v]) => `${k}=${v}`)));
    if (tail.length > 256 * 1024) throw new RangeError(`exec: command and environment take ${tail.length} bytes; at most 256 KiB`);
    this.onExit = onExit;
    return this.call(encodeRequest({ type: T_EXEC, tail }), -1, `exec ${argv[0]}`).value;
  }

  /** --namespace: forwards a signal (SIGTERM, SIGINT, …) to the command. */
  signal(sig: number): void {
    try { this.call(encodeRequest({ type: T_SIGNAL, ack: sig }), -1, `signal ${sig}`); } catch { /* it ended */ }
  }

  /** Replaces the watch set; events go to the handlers. An empty set closes the packet socket. */
  watch(targets: Target[], onSyn: (e: SynEvent) => void, onUdp: (e: UdpEvent) => void): void {
    this.onSyn = onSyn;
    this.onUdp = onUdp;
    const tail = Buffer.alloc(targets.length * TARGET);
    targets.forEach((t, i) => {
      tail[i * TARGET] = t.protocol; tail[i * TARGET + 1] = t.family; tail.writeUInt16LE(t.port, i * TARGET + 2);
      writeAddr(tail, i * TARGET + 4, t.family, t.address);
    });
    this.call(encodeRequest({ type: T_WATCH, count: targets.length, tail }), -1, `watch ${targets.length} listeners`);
  }

  private onData(chunk: Buffer): void {
    const b = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    let at = 0;
    for (; at + EVENT <= b.length; at += EVENT) {
      const kind = b[at]!, family = b[at + 1] === 6 ? 6 : 4;
      const src = readAddr(b, at + 12, family), dst = readAddr(b, at + 28, family);
      const srcPort = b.readUInt16LE(at + 2), dstPort = b.readUInt16LE(at + 4);
      if (kind === 1) this.onSyn?.({ family, src, srcPort, dst, dstPort, seq: b.readUInt32LE(at + 8) });
      else if (kind === 2) {
        const len = Math.min(b.readUInt16LE(at + 6), 72);
        this.onUdp?.({ family, src, srcPort, dst, dstPort, ipPacket: Buffer.from(b.subarray(at + 44, at + 44 + len)) });
      } else if (kind === 3) this.onExit?.(b.readUInt32LE(at + 8));
    }
    this.pending = at < b.length ? Buffer.from(b.subarray(at)) : Buffer.alloc(0);
  }

  /** Closes both channels: the helper exits. */
  close(): void {
    if (this.ctl < 0) return;
    this.addon.closeFd(this.ctl);
    this.ctl = -1;
    this.ev?.destroy();
    this.ev = null;
    this.alive = false;
  }
}

/** The refuser's packet watch (same shape as PacketWatch in pcap.ts), through the helper. */
export class NetdWatch {
  private key = '';
  constructor(private readonly netd: Netd, private readonly onSyn: (e: SynEvent) => void, private readonly onUdp: (e: UdpEvent) => void) {}

  setTargets(tcp: { address: string; port: number }[], udp: { address: string; port: number }[]): void {
    const targets: Target[] = [
      ...tcp.map((t) => ({ protocol: 6 as const, family: (t.address.includes(':') ? 6 : 4) as 4 | 6, address: t.address, port: t.port })),
      ...udp.map((t) => ({ protocol: 17 as const, family: (t.address.includes(':') ? 6 : 4) as 4 | 6, address: t.address, port: t.port })),
    ];
    const key = targets.map((t) => `${t.protocol}|${t.address}|${t.port}`).sort().join(',');
    if (key === this.key) return;
    this.netd.watch(targets, this.onSyn, this.onUdp);
    this.key = key;
  }

  close(): void {
    if (this.key !== '' && this.netd.alive) { try { this.netd.watch([], this.onSyn, this.onUdp); } catch { /* helper gone */ } }
    this.key = '';
  }
}
