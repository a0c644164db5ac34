// Shared helpers for tests that run real daemons and real sockets on loopback; the plain ones
// (freshAddr, freePort, until, sleep) live in test/helpers.ts and are re-exported here.

import net from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { Daemon, type DaemonOptions } from '../../src/control/daemon.js';
import { tcpRelayStatus } from '../../src/native/tcp-relay.js';
import { udpRelayAvailable } from '../../src/native/udp-relay.js';
export { freshAddr, freePort, sleep, until } from '../helpers.js';

/** An echo backend that records every connection it accepted. */
export async function echoServer(t: Test, host = '127.0.0.1'): Promise<{ port: number; accepted: string[]; server: net.Server }> {
  const accepted: string[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (c) => {
    accepted.push(`${c.remoteAddress}:${c.remotePort}`);
    c.on('error', () => {});
    c.pipe(c);
  });
  await new Promise<void>((r) => server.listen(0, host, () => r()));
  t.teardown(() => new Promise<void>((r) => { server.close(() => r()); }));
  return { port: (server.address() as net.AddressInfo).port, accepted, server };
}

export type Outcome = 'allowed' | 'refused' | 'timeout' | 'reset' | 'closed' | 'garbled' | string;

/**
 * Connects from `src` and classifies what the client sees: allowed (bytes echoed), refused
 * (ECONNREFUSED), timeout (no connect within timeoutMs), reset (ECONNRESET after connect).
 */
export function probe(src: string, host: string, port: number, timeoutMs = 400): Promise<Outcome> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, localAddress: src });
    let done = false;
    const finish = (o: Outcome) => { if (!done) { done = true; clearTimeout(timer); s.destroy(); resolve(o); } };
    const timer = setTimeout(() => finish('timeout'), timeoutMs);
    s.on('connect', () => {
      s.write('ping\n');
      s.once('data', (d) => finish(d.toString() === 'ping\n' ? 'allowed' : 'garbled'));
    });
    s.on('error', (e: NodeJS.ErrnoException) => finish(e.code === 'ECONNREFUSED' ? 'refused' : e.code === 'ECONNRESET' ? 'reset' : e.code ?? 'error'));
    s.on('close', () => finish('closed'));
  });
}

export function isRoot(): boolean { return process.getuid?.() === 0; }

/** Faults act on the wire only in the native relays (native-notes/faults.md, Fallback): the
 * reason an assertion about what a faulted flow sees is skipped here, or false when it runs. */
export function noWireFaults(proto: 'tcp' | 'udp' = 'tcp'): string | false {
  if (proto === 'udp') return udpRelayAvailable() ? false : 'UDP faults are applied by the native relay only, which is off here (no addon, or SGEMU_RELAY=node)';
  const st = tcpRelayStatus();
  return st.available ? false : `TCP faults are applied by the native relay only, which is off here (${st.reason})`;
}

/** Starts an in-process daemon on a config written to the test's dir; stops it in teardown. */
export async function startDaemon(t: Test, yaml: string, extra: Partial<DaemonOptions> = {}): Promise<{ daemon: Daemon; configPath: string; logs: string[] }> {
  const dir = t.testdir({});
  const configPath = join(dir, 'sgemu.yaml');
  writeFileSync(configPath, yaml);
  const logs: string[] = [];
  const daemon = new Daemon({
    configPath, api: null, flowLog: null, flowLogIntervalS: 60, statePath: null, resetState: false,
    watch: false, conntrackMax: 10000, log: (l) => logs.push(l), ...extra,
  });
  await daemon.start();
  t.teardown(() => daemon.stop(0));
  return { daemon, configPath, logs };
}

export function write(path: string, text: string): void { writeFileSync(path, text); }
