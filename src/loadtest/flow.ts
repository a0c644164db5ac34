// One flow on the wire and what the client saw (SPEC §1).
// TCP: connected (connect completed, 16 bytes written, and within a short settle time neither a
// reset nor an error came back — an echo ends the wait early; backends need not echo), refused
// (ECONNREFUSED), timeout (no connect within the timeout), reset (ECONNRESET / EPIPE, before or
// just after the connect). A connected flow is closed gracefully (FIN), then destroyed if the
// peer does not close within CLOSE_MS.
// UDP: one datagram from a socket bound to the source and connected to the listener (a new
// source port, so a new flow for the daemon): connected (a reply with the same bytes: UDP
// backends are expected to echo), refused (ECONNREFUSED: the ICMP port unreachable of raw
// refusal, seen on a connected socket, udp(7)), timeout (no reply within the timeout); a reply
// with other bytes is an error (EREPLYBYTES).
// Held flows (--hold) are TCP connections kept open until released.
// Every result carries the client's own port: network ACLs judge the replies by it (issue #14), so
// where they are in play the runner binds TCP flows to a port it picks and reads UDP's after bind.

import net from 'node:net';
import dgram from 'node:dgram';
import type { Outcome } from './expect.js';

const PAYLOAD = Buffer.from('sgemu-loadtest\r\n');   // 16 bytes
const CLOSE_MS = 500;

export interface FlowResult {
  outcome: Outcome;
  /** Time to the connect (connected) or to the answer (refused, reset), in µs; the timeout otherwise. */
  latencyUs: number;
  /** The errno code seen, when not a plain outcome (e.g. EADDRNOTAVAIL). */
  code: string;
  /** The client's own port (network ACLs check the replies to it); 0 when unknown. */
  localPort: number;
}

/**
 * Opens one connection from `source` to `host:port` and classifies it.
 * @param timeoutMs  connect timeout
 * @param settleMs   how long a connected flow is watched for a reset (≤ timeoutMs)
 */
export function runTcpFlow(source: string, host: string, port: number, timeoutMs: number, settleMs: number, localPort = 0): Promise<FlowResult> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let connectedAt = 0;
    let done = false;
    // localPort > 0: bound to it, so the flow's port is known whatever the outcome (a refused or
    // reset socket is gone before its port can be read); EADDRINUSE/EADDRNOTAVAIL: try another.
    const s = net.connect({ host, port, localAddress: source, ...(localPort > 0 ? { localPort } : {}) });
    let seenPort = localPort;
    const finish = (outcome: Outcome, code = '') => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const latencyUs = Math.round(((connectedAt || performance.now()) - t0) * 1000);
      if (seenPort === 0) seenPort = s.localPort ?? 0;
      if (outcome === 'connected') {
        s.end();
        const killer = setTimeout(() => s.destroy(), CLOSE_MS);
        s.once('close', () => clearTimeout(killer));
        s.resume();
      } else {
        s.destroy();
      }
      resolve({ outcome, latencyUs, code, localPort: seenPort });
    };
    let timer = setTimeout(() => finish('timeout'), timeoutMs);
    s.on('connect', () => {
      connectedAt = performance.now();
      seenPort = s.localPort ?? seenPort;
      clearTimeout(timer);
      timer = setTimeout(() => finish('connected'), settleMs);
      s.write(PAYLOAD);
      s.once('data', () => finish('connected'));
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      const code = e.code ?? 'error';
      if (code === 'ECONNREFUSED') finish('refused');
      else if (code === 'ECONNRESET' || code === 'EPIPE') finish('reset');
      else finish('error', code);
    });
    // A FIN from the peer right after connect (a server that closes at once) is still a connection.
    s.on('end', () => { if (connectedAt) finish('connected'); });
    s.on('close', () => { if (!done) finish(connectedAt ? 'connected' : 'error', connectedAt ? '' : 'closed'); });
  });
}

/** A UDP flow's payload: unique per flow, so a stray reply of another flow cannot pass as ours. */
let udpSeq = 0;

/**
 * Sends one datagram from `source` (port 0: a fresh source port) to `host:port` and classifies
 * the answer. @param timeoutMs  how long to wait for the reply
 */
export function runUdpFlow(source: string, host: string, port: number, timeoutMs: number): Promise<FlowResult> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const payload = Buffer.from(`sgemu-loadtest udp ${++udpSeq}\r\n`);
    const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    let done = false;
    let localPort = 0;
    const finish = (outcome: Outcome, code = '') => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const latencyUs = Math.round((performance.now() - t0) * 1000);
      try { s.close(); } catch { /* closed already */ }
      resolve({ outcome, latencyUs, code, localPort });
    };
    const timer = setTimeout(() => finish('timeout'), timeoutMs);
    s.on('error', (e: NodeJS.ErrnoException) => {
      const code = e.code ?? 'error';
      finish(code === 'ECONNREFUSED' ? 'refused' : 'error', code === 'ECONNREFUSED' ? '' : code);
    });
    s.on('message', (m) => finish(m.equals(payload) ? 'connected' : 'error', m.equals(payload) ? '' : 'EREPLYBYTES'));
    s.bind(0, source, () => {
      localPort = s.address().port;
      s.connect(port, host, () => { if (!done) s.send(payload); });
    });
  });
}

/** A TCP connection held open for the run (--hold): how it opened, and whether it is still open. */
export interface HeldFlow { outcome: Outcome; code: string; open: boolean; release: () => void }

/**
 * Opens one TCP connection from `source` and keeps it open until `release()`, so the conntrack
 * entry it makes stays in the daemon's table. Resolves once it is connected, or with the failure;
 * `open` turns false if the peer closes it later.
 */
export function holdTcpFlow(source: string, host: string, port: number, timeoutMs: number): Promise<HeldFlow> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, localAddress: source });
    const h: HeldFlow = { outcome: 'timeout', code: '', open: false, release: () => { s.destroy(); } };
    let settled = false;
    const settle = (outcome: Outcome, code = '') => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      h.outcome = outcome; h.code = code; h.open = outcome === 'connected';
      if (!h.open) s.destroy();
      resolve(h);
    };
    const timer = setTimeout(() => settle('timeout'), timeoutMs);
    s.on('connect', () => settle('connected'));
    s.on('data', () => { /* nothing is written; a backend that talks first is drained */ });
    s.on('error', (e: NodeJS.ErrnoException) => {
      const code = e.code ?? 'error';
      settle(code === 'ECONNREFUSED' ? 'refused' : code === 'ECONNRESET' || code === 'EPIPE' ? 'reset' : 'error', code);
    });
    s.on('close', () => { h.open = false; settle('error', 'closed'); });
  });
}
