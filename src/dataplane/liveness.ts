// Is anything listening on a backend? Answered from the kernel's socket table, never by connecting,
// so dev servers see no probe traffic (linux-techniques.md §5).
//
// Owns: the set of watched backends (host:port, TCP or UDP) and their last known state; one poll
// timer for all of them; change callbacks.
// Cost: asked through sock_diag (src/native/addon/sock_diag.c), which walks only the listening
// hash: ~30 µs a query. Reading /proc/net/tcp instead costs 1-2 ms a read on a large-memory
// machine (the kernel walks every established-hash bucket to fill the buffer), 50 times a second
// per file — measured as 15-30 % of a core for an idle daemon (scripts/bench, issue #4 note). /proc
// stays as the fallback when the addon is not built.
// A failed connect to a backend (ECONNREFUSED) marks it down at once through `markDown`.
//
// A backend elsewhere (an address of no interface here: another machine, a container, a network
// namespace) is not in this kernel's socket table. It counts as up until a connect to it is
// refused; then it is down, and one TCP connect every REMOTE_PROBE_MS (closed at once) finds
// when it is back. So its clients are refused exactly while it is known down, and the one whose
// flow found it down sees the reset of a flow the relay could not connect. A UDP one is up again
// after REMOTE_PROBE_MS (a datagram probe would reach the application).

import { closeSync, openSync, readSync } from 'node:fs';
import net, { isIP, isIPv4 } from 'node:net';
import { networkInterfaces } from 'node:os';
import { listeningSockets } from '../native/sock-filter.js';
import { hostPort } from '../model/types.js';

/** A backend: `host` an address, or a name whose addresses are `addrs` (any of them listening is up). */
export interface Backend { proto: 6 | 17; host: string; port: number; addrs?: readonly string[] }
/**
 * One address of a watched backend, in the kernel's /proc hex. `remote`: not on this machine,
 * so no socket table to read; `remoteUp` then stands for it (markDown clears it, a probe sets it).
 */
interface Target { addr: string; hex: string; v4: boolean; remote: boolean; remoteUp: boolean; probe: NodeJS.Timeout | null }

/** How often a remote backend known down is tried (a TCP connect, closed at once). */
export const REMOTE_PROBE_MS = 1000;

/** Whether `addr` is this machine's: loopback, unspecified, or an address of one of its interfaces. */
export function isLocalAddress(addr: string): boolean {
  if (isIPv4(addr)) { if (addr.startsWith('127.') || addr === '0.0.0.0') return true; }
  else if (addr === '::1' || addr === '::' || /^::ffff:127\./i.test(addr)) return true;
  const norm = addr.toLowerCase();
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.address.toLowerCase() === norm) return true;
  }
  return false;
}
type Listener = (key: string, up: boolean) => void;

const LISTEN = '0A';
const UDP_UNCONN = '07';

/** Kernel /proc hex of an address: IPv4 as one little-endian word; IPv6 as four. */
export function procHex(host: string): string {
  if (isIPv4(host)) {
    const b = host.split('.').map(Number);
    return [b[3], b[2], b[1], b[0]].map((x) => x!.toString(16).padStart(2, '0')).join('').toUpperCase();
  }
  // IPv6: expand, then each 32-bit group byte-reversed (host order on little-endian machines).
  const full = expand6(host);
  let out = '';
  for (let i = 0; i < 4; i++) {
    const word = full.slice(i * 8, i * 8 + 8);
    out += word.slice(6, 8) + word.slice(4, 6) + word.slice(2, 4) + word.slice(0, 2);
  }
  return out.toUpperCase();
}

function expand6(host: string): string {
  let h = host.toLowerCase();
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(h);
  if (v4) {
    const b = v4[1]!.split('.').map(Number);
    h = h.slice(0, -v4[1]!.length) + ((b[0]! << 8) | b[1]!).toString(16) + ':' + ((b[2]! << 8) | b[3]!).toString(16);
  }
  const [a, b = ''] = h.split('::');
  const left = a ? a.split(':') : [];
  const right = h.includes('::') ? (b ? b.split(':') : []) : [];
  const fill = h.includes('::') ? new Array(8 - left.length - right.length).fill('0') : [];
  return [...left, ...fill, ...right].map((g) => g.padStart(4, '0')).join('');
}

const ANY4 = '00000000';
const ANY6 = '00000000000000000000000000000000';

/** Reads the listening (TCP) or bound (UDP) local address:port pairs from one /proc file. */
export function readBound(file: string, tcp: boolean, scratch: Buffer): Set<string> {
  const out = new Set<string>();
  let fd: number;
  try { fd = openSync(file, 'r'); } catch { return out; }
  try {
    let carry = '';
    let first = true;
    for (;;) {
      const n = readSync(fd, scratch, 0, scratch.length, null);
      if (n <= 0) break;
      const text = carry + scratch.toString('latin1', 0, n);
      const lines = text.split('\n');
      carry = lines.pop() ?? '';
      let stop = false;
      for (const line of lines) {
        if (first) { first = false; continue; }          // header
        // "  sl  local_address rem_address   st ..."
        const m = /^\s*\d+:\s+([0-9A-F]+):([0-9A-F]{4})\s+[0-9A-F]+:[0-9A-F]{4}\s+([0-9A-F]{2})/.exec(line);
        if (!m) continue;
        const st = m[3]!;
        if (tcp) {
          if (st !== LISTEN) { stop = true; break; }      // listeners come first; the rest is connections
        } else if (st !== UDP_UNCONN && st !== '01') continue;
        out.add(m[1] + ':' + parseInt(m[2]!, 16));
      }
      if (stop) break;
    }
  } finally { closeSync(fd); }
  return out;
}

export class BackendMonitor {
  private readonly watched = new Map<string, { b: Backend; targets: Target[]; up: boolean; live: string | null; refs: number }>();
  private timer: NodeJS.Timeout | null = null;
  private readonly listeners: Listener[] = [];
  private readonly scratch = Buffer.allocUnsafe(16384);
  /** Backends held in a state by `force` (the Node API's setBackend), whatever the kernel says. */
  private readonly forced = new Map<string, boolean>();
  polls = 0;

  constructor(private readonly intervalMs = 20) {}

  static key(b: Backend): string { return `${b.proto}/${b.host}/${b.port}` + (b.addrs ? `=${b.addrs.join(',')}` : ''); }

  onChange(fn: Listener): void { this.listeners.push(fn); }

  /** Starts watching; returns the key. The first state is read synchronously. */
  watch(b: Backend): string {
    const key = BackendMonitor.key(b);
    const w = this.watched.get(key);
    if (w) { w.refs++; return key; }
    // A name that did not resolve has no address: never up (its connects could only fail).
    const addrs = b.addrs ?? (isIP(b.host) !== 0 ? [b.host] : []);
    const targets = addrs.map((addr) => {
      const remote = !isLocalAddress(addr);
      return { addr, hex: procHex(addr), v4: isIPv4(addr), remote, remoteUp: remote, probe: null };
    });
    this.watched.set(key, { b, targets, up: false, live: null, refs: 1 });
    this.poll();
    if (!this.timer && this.intervalMs > 0) {
      this.timer = setInterval(() => this.poll(), this.intervalMs);
      this.timer.unref();
    }
    return key;
  }

  unwatch(key: string): void {
    const w = this.watched.get(key);
    if (!w) return;
    if (--w.refs > 0) return;
    this.watched.delete(key);
    this.forced.delete(key);
    for (const t of w.targets) this.stopProbe(t);
    if (this.watched.size === 0 && this.timer) { clearInterval(this.timer); this.timer = null; }
  }

  isUp(key: string): boolean { return this.watched.get(key)?.up ?? false; }

  /** Some address of the backend is not on this machine (its liveness is learnt from connects). */
  isRemote(key: string): boolean { return this.watched.get(key)?.targets.some((t) => t.remote) ?? false; }

  /** For the log: `tcp 127.0.0.1:3000`, `udp [::1]:53`; a name with the address that listens. */
  label(key: string): string {
    const w = this.watched.get(key);
    if (!w) return key;
    const b = w.b;
    const via = b.addrs === undefined ? '' : w.live !== null ? ` (${w.live})` : b.addrs.length === 0 ? ' (the name does not resolve)' : ` (${b.addrs.join(', ')})`;
    return `${b.proto === 6 ? 'tcp' : 'udp'} ${hostPort(b.host, b.port)}${via}`;
  }

  /** The first of the backend's addresses that listens (for a name, where flows go); null: none. */
  liveAddress(key: string): string | null { return this.watched.get(key)?.live ?? null; }

  /**
   * Holds a watched backend up or down regardless of the polls (a test marking a backend down
   * while its process keeps listening); null hands it back to the polls. Fires onChange.
   */
  force(key: string, up: boolean | null): void {
    if (up === null) this.forced.delete(key);
    else this.forced.set(key, up);
    if (up === null) this.poll();
    else this.set(key, up, this.watched.get(key)?.live ?? null);
  }

  /** Held down by force(key, false). Per accept, not per packet: a size check when nothing is held. */
  isForcedDown(key: string): boolean { return this.forced.size > 0 && this.forced.get(key) === false; }

  /**
   * Whether the backend listens at this moment: a fresh poll (sock_diag, tens of µs; at most one
   * per millisecond), whose changes reach onChange as any poll's do. The refuser asks this before
   * it refuses, so a backend that opened its socket since the last 20 ms poll is never refused.
   */
  upNow(key: string): boolean {
    const now = performance.now();
    if (now - this.lastPollMs >= 1) this.poll();
    return this.isUp(key);
  }
  private lastPollMs = -Infinity;

  /** A connect to the backend was refused: it is down now, whatever the last poll said. */
  markDown(key: string): void {
    const w = this.watched.get(key);
    if (w) {
      // A remote address is down until a probe connects: the one flows went to, or all of them.
      const target = w.targets.find((t) => t.addr === w.live && t.remote);
      for (const t of target ? [target] : w.targets) if (t.remote) { t.remoteUp = false; this.startProbe(w.b, t); }
    }
    this.set(key, false, null);
    this.lastPollMs = -Infinity;     // upNow() asks the kernel again
  }

  private startProbe(b: Backend, t: Target): void {
    if (t.probe !== null) return;
    t.probe = setTimeout(() => {
      if (b.proto === 17) { t.probe = null; t.remoteUp = true; this.poll(); return; }
      const s = net.connect({ host: t.addr, port: b.port });
      const done = (up: boolean): void => {
        s.destroy();
        if (t.probe === null) return;        // unwatched meanwhile
        t.probe = null;
        if (up) { t.remoteUp = true; this.poll(); } else this.startProbe(b, t);
      };
      s.setTimeout(REMOTE_PROBE_MS, () => done(false));
      s.once('connect', () => done(true));
      s.once('error', () => done(false));
    }, REMOTE_PROBE_MS);
    t.probe.unref();
  }

  private stopProbe(t: Target): void {
    if (t.probe !== null) clearTimeout(t.probe);
    t.probe = null;
  }

  poll(): void {
    this.polls++;
    this.lastPollMs = performance.now();
    let tcp4: Set<string> | null = null, tcp6: Set<string> | null = null;
    let udp4: Set<string> | null = null, udp6: Set<string> | null = null;
    const sets = (proto: 6 | 17, v4: boolean): Set<string> => proto === 6
      ? v4 ? (tcp4 ??= this.merged('tcp', true)) : (tcp6 ??= this.merged('tcp6', true))
      : v4 ? (udp4 ??= this.merged('udp', false)) : (udp6 ??= this.merged('udp6', false));
    for (const [key, w] of this.watched) {
      let live: string | null = null;
      for (const t of w.targets) {
        if (t.remote) {
          if (t.remoteUp) { live = t.addr; break; }
          continue;
        }
        // A backend on 127.0.0.1:3000 is served by a socket bound to that address or to the
        // wildcard; an IPv4 one also by a dual-stack [::]:port socket.
        const set = sets(w.b.proto, t.v4);
        let up = set.has(t.hex + ':' + w.b.port) || set.has((t.v4 ? ANY4 : ANY6) + ':' + w.b.port);
        if (!up && t.v4) {
          const s6 = sets(w.b.proto, false);
          up = s6.has(ANY6 + ':' + w.b.port) || s6.has('0000000000000000FFFF0000' + t.hex + ':' + w.b.port);
        }
        if (up) { live = t.addr; break; }
      }
      this.set(key, this.forced.get(key) ?? live !== null, live);
    }
  }

  /**
   * For a loopback backend given as one address that is down: the other loopback address when
   * something listens on the same port there (`[::1]:5173` for a 127.0.0.1:5173 backend: a dev
   * server bound to "localhost" often takes ::1 alone), as host:port. null otherwise. For the log's hint; reads
   * the socket table once.
   */
  otherLoopbackListener(key: string): string | null {
    const w = this.watched.get(key);
    if (!w || w.up || w.b.addrs !== undefined || w.targets.length !== 1) return null;
    const t = w.targets[0]!;
    const tcp = w.b.proto === 6;
    const other = t.addr === '127.0.0.1' ? '::1' : t.addr === '::1' ? '127.0.0.1' : null;
    if (other === null) return null;
    const v4 = other === '127.0.0.1';
    const set = this.merged(tcp ? (v4 ? 'tcp' : 'tcp6') : (v4 ? 'udp' : 'udp6'), tcp);
    return set.has(procHex(other) + ':' + w.b.port) ? hostPort(other, w.b.port) : null;
  }

  private merged(name: string, tcp: boolean): Set<string> {
    const family = name.endsWith('6') ? 6 : 4;
    return listeningSockets(family, tcp ? 6 : 17) ?? readBound('/proc/net/' + name, tcp, this.scratch);
  }

  /** Fires onChange when the state or, for a name, the address flows go to changed. */
  private set(key: string, up: boolean, live: string | null): void {
    const w = this.watched.get(key);
    if (!w || (w.up === up && w.live === live)) return;
    w.up = up;
    w.live = live;
    for (const fn of this.listeners) fn(key, up);
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const w of this.watched.values()) for (const t of w.targets) this.stopProbe(t);
    this.watched.clear();
    this.forced.clear();
  }
}
