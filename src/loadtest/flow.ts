// One TCP flow on the wire and what the client saw (SPEC §1): connected (connect completed, 16
// bytes written, and within a short settle time neither a reset nor an error came back — an echo
// ends the wait early; backends need not echo), refused (ECONNREFUSED), timeout (no connect
// within the timeout), reset (ECONNRESET / EPIPE, before or just after the connect). A connected
// flow is closed gracefully (FIN), then destroyed if the peer does not close within CLOSE_MS.

import net from 'node:net';
import type { Outcome } from './expect.js';

const PAYLOAD = Buffer.from('sgemu-loadtest\r\n');   // 16 bytes
const CLOSE_MS = 500;

export interface FlowResult {
  outcome: Outcome;
  /** Time to the connect (connected) or to the answer (refused, reset), in µs; the timeout otherwise. */
  latencyUs: number;
  /** The errno code seen, when not a plain outcome (e.g. EADDRNOTAVAIL). */
  code: string;
}

/**
 * Opens one connection from `source` to `host:port` and classifies it.
 * @param timeoutMs  connect timeout
 * @param settleMs   how long a connected flow is watched for a reset (≤ timeoutMs)
 */
export function runTcpFlow(source: string, host: string, port: number, timeoutMs: number, settleMs: number): Promise<FlowResult> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let connectedAt = 0;
    let done = false;
    const s = net.connect({ host, port, localAddress: source });
    const finish = (outcome: Outcome, code = '') => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const latencyUs = Math.round(((connectedAt || performance.now()) - t0) * 1000);
      if (outcome === 'connected') {
        s.end();
        const killer = setTimeout(() => s.destroy(), CLOSE_MS);
        s.once('close', () => clearTimeout(killer));
        s.resume();
      } else {
        s.destroy();
      }
      resolve({ outcome, latencyUs, code });
    };
    let timer = setTimeout(() => finish('timeout'), timeoutMs);
    s.on('connect', () => {
      connectedAt = performance.now();
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
