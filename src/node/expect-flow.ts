// expectFlow: what a client sees, from one real connection (SPEC §10).
// Owns: the classification of one TCP connect or one UDP exchange into
//   'allowed' | 'refused' | 'timeout' | 'reset'.
// Must not: ask sgemu anything: the answer comes from the socket, as the application's would.
// TCP:  connect() completes and no RST arrives within settleMs → allowed; ECONNREFUSED → refused;
//       no connect within timeoutMs (denied SYNs are dropped) → timeout; ECONNRESET (sgemu's
//       degraded mode accepts then resets, or a cut flow) → reset.
// UDP:  one datagram on a connected socket; any reply → allowed; ECONNREFUSED (ICMP port
//       unreachable) → refused; nothing within timeoutMs → timeout. An allowed UDP flow
//       needs a backend that answers (an echo), as a UDP client needs one.
// Every socket is closed before the promise settles; one timer per call.

import net from 'node:net';
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { UsageError } from '../model/errors.js';

export type FlowOutcome = 'allowed' | 'refused' | 'timeout' | 'reset';

export interface ExpectFlowOptions {
  /** Source address to bind (a loopback address, e.g. an instance's 127.x address); default: the kernel's choice. */
  from?: string;
  /** Destination address, or `address:port` / `[v6]:port`. */
  to: string;
  /** tcp (default) or udp. */
  protocol?: 'tcp' | 'udp';
  /** Destination port (the socket port; for a service with listenPort, that one). */
  port?: number;
  /** How long a connect may take before it counts as a timeout. Default 1000. */
  timeoutMs?: number;
  /** TCP: how long after connecting a reset still counts as 'reset'. Default 50. */
  settleMs?: number;
  /** UDP: the datagram to send. Default "sgemu-expect-flow". */
  payload?: string | Buffer;
}

/** Splits `to` into host and port (the port from `port` when `to` has none). */
function target(o: ExpectFlowOptions): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(o.to) ?? /^([^:]+):(\d+)$/.exec(o.to);
  const host = m ? m[1]! : o.to;
  const port = m ? Number(m[2]) : o.port;
  if (port === undefined || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new UsageError(`expectFlow: no valid port for ${JSON.stringify(o.to)} (got ${String(port)}); give port: 1..65535 or to: "address:port"`, 'InvalidParameterValue');
  }
  if (net.isIP(host) === 0) throw new UsageError(`expectFlow: to ${JSON.stringify(host)} is not an IP address (instance names work with sg.expectFlow)`, 'InvalidParameterValue');
  return { host, port };
}

/** Makes one real connection (TCP) or exchange (UDP) and says what the client saw. */
export function expectFlow(o: ExpectFlowOptions): Promise<FlowOutcome> {
  let t: { host: string; port: number };
  try { t = target(o); } catch (e) { return Promise.reject(e); }
  const timeoutMs = o.timeoutMs ?? 1000;
  if (o.from !== undefined && net.isIP(o.from) === 0) {
    return Promise.reject(new UsageError(`expectFlow: from ${JSON.stringify(o.from)} is not an IP address`, 'InvalidParameterValue'));
  }
  const proto = o.protocol ?? 'tcp';
  if (proto === 'udp') return expectUdp(t.host, t.port, o.from, timeoutMs, o.payload ?? 'sgemu-expect-flow');
  if (proto !== 'tcp') return Promise.reject(new UsageError(`expectFlow: protocol ${JSON.stringify(proto)}; use tcp or udp`, 'InvalidParameterValue'));
  return expectTcp(t.host, t.port, o.from, timeoutMs, o.settleMs ?? 50);
}

function expectTcp(host: string, port: number, from: string | undefined, timeoutMs: number, settleMs: number): Promise<FlowOutcome> {
  return new Promise((resolve, reject) => {
    const s = net.connect(from !== undefined ? { host, port, localAddress: from } : { host, port });
    let timer: NodeJS.Timeout | null = null;
    let settled = false;
    const finish = (r: FlowOutcome | Error): void => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      s.destroy();
      if (r instanceof Error) reject(r); else resolve(r);
    };
    timer = setTimeout(() => finish('timeout'), timeoutMs);
    s.on('connect', () => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => finish('allowed'), settleMs);
    });
    s.on('data', () => {});
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNREFUSED') finish('refused');
      else if (e.code === 'ECONNRESET' || e.code === 'EPIPE') finish('reset');
      else finish(e);
    });
  });
}

function expectUdp(host: string, port: number, from: string | undefined, timeoutMs: number, payload: string | Buffer): Promise<FlowOutcome> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket(isIPv6(host) ? 'udp6' : 'udp4');
    let timer: NodeJS.Timeout | null = null;
    let settled = false;
    const finish = (r: FlowOutcome | Error): void => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      s.close();
      if (r instanceof Error) reject(r); else resolve(r);
    };
    s.on('error', (e: NodeJS.ErrnoException) => { if (e.code === 'ECONNREFUSED') finish('refused'); else finish(e); });
    s.on('message', () => finish('allowed'));
    s.bind({ address: from ?? (isIPv6(host) ? '::' : '0.0.0.0'), port: 0 }, () => {
      s.connect(port, host, () => {
        timer = setTimeout(() => finish('timeout'), timeoutMs);
        s.send(payload);
      });
    });
  });
}
