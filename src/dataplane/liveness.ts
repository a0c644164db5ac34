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

import { closeSync, openSync, readSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { listeningSockets } from '../native/sock-filter.js';

export interface Backend { proto: 6 | 17; host: string; port: number }
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
  private readonly watched = new Map<string, { b: Backend; hex: string; any: string; up: boolean; refs: number }>();
  private timer: NodeJS.Timeout | null = null;
  private readonly listeners: Listener[] = [];
  private readonly scratch = Buffer.allocUnsafe(16384);
  /** Backends held in a state by `force` (the Node API's setBackend), whatever the kernel says. */
  private readonly forced = new Map<string, boolean>();
  polls = 0;

  constructor(private readonly intervalMs = 20) {}

  static key(b: Backend): string { return `${b.proto}/${b.host}/${b.port}`; }

  onChange(fn: Listener): void { this.listeners.push(fn); }

  /** Starts watching; returns the key. The first state is read synchronously. */
  watch(b: Backend): string {
    const key = BackendMonitor.key(b);
    const w = this.watched.get(key);
    if (w) { w.refs++; return key; }
    const v4 = isIPv4(b.host);
    this.watched.set(key, { b, hex: procHex(b.host), any: v4 ? ANY4 : ANY6, up: false, refs: 1 });
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
    if (this.watched.size === 0 && this.timer) { clearInterval(this.timer); this.timer = null; }
  }

  isUp(key: string): boolean { return this.watched.get(key)?.up ?? false; }

  /**
   * Holds a watched backend up or down regardless of the polls (a test marking a backend down
   * while its process keeps listening); null hands it back to the polls. Fires onChange.
   */
  force(key: string, up: boolean | null): void {
    if (up === null) this.forced.delete(key);
    else this.forced.set(key, up);
    if (up === null) this.poll();
    else this.set(key, up);
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
  markDown(key: string): void { this.set(key, false); this.lastPollMs = -Infinity; }   // upNow() asks the kernel again

  poll(): void {
    this.polls++;
    this.lastPollMs = performance.now();
    let tcp4: Set<string> | null = null, tcp6: Set<string> | null = null;
    let udp4: Set<string> | null = null, udp6: Set<string> | null = null;
    for (const [key, w] of this.watched) {
      const v4 = w.any === ANY4;
      let set: Set<string>;
      if (w.b.proto === 6) set = v4 ? (tcp4 ??= this.merged('tcp', true)) : (tcp6 ??= this.merged('tcp6', true));
      else set = v4 ? (udp4 ??= this.merged('udp', false)) : (udp6 ??= this.merged('udp6', false));
      // A backend on 127.0.0.1:3000 is served by a socket bound to that address or to the wildcard.
      let up = set.has(w.hex + ':' + w.b.port) || set.has(w.any + ':' + w.b.port);
      // An IPv4 backend is also served by a dual-stack [::]:port socket.
      if (!up && v4) {
        const s6 = w.b.proto === 6 ? (tcp6 ??= this.merged('tcp6', true)) : (udp6 ??= this.merged('udp6', false));
        up = s6.has(ANY6 + ':' + w.b.port) || s6.has('0000000000000000FFFF0000' + w.hex + ':' + w.b.port);
      }
      this.set(key, this.forced.get(key) ?? up);
    }
  }

  private merged(name: string, tcp: boolean): Set<string> {
    const family = name.endsWith('6') ? 6 : 4;
    return listeningSockets(family, tcp ? 6 : 17) ?? readBound('/proc/net/' + name, tcp, this.scratch);
  }

  private set(key: string, up: boolean): void {
    const w = this.watched.get(key);
    if (!w || w.up === up) return;
    w.up = up;
    for (const fn of this.listeners) fn(key, up);
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.watched.clear();
    this.forced.clear();
  }
}
