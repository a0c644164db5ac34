// Shared by the dashboard's browser tests: where Chromium is, how it is launched (as
// test/loadtest/report-browser.test.ts does), and a client that tells what a connection saw.

import net from 'node:net';

export const CHROMIUM = process.env.SGEMU_CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface ConnectResult { outcome: 'connected' | 'refused' | 'timeout' | 'reset' | string; localPort: number; socket: net.Socket | null }

/**
 * Connects from `src`; 'connected' once the handshake completes (closed at once when `close`,
 * else handed back open), 'timeout' when it has not within timeoutMs, else the error code.
 */
export function connectOutcome(src: string, host: string, port: number, timeoutMs: number, close = true): Promise<ConnectResult> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, localAddress: src });
    let done = false;
    const finish = (outcome: string, keep = false) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const localPort = s.localPort ?? 0;
      if (!keep) s.destroy();
      resolve({ outcome, localPort, socket: keep ? s : null });
    };
    const timer = setTimeout(() => finish('timeout'), timeoutMs);
    s.on('connect', () => finish('connected', !close));
    s.on('error', (e: NodeJS.ErrnoException) => finish(e.code === 'ECONNREFUSED' ? 'refused' : e.code === 'ECONNRESET' ? 'reset' : e.code ?? 'error'));
  });
}

/** Whether every host:port can be bound now (bind, close). */
export async function portsFree(list: [string, number][]): Promise<boolean> {
  for (const [host, port] of list) {
    const s = net.createServer();
    const ok = await new Promise<boolean>((r) => { s.once('error', () => r(false)); s.listen(port, host, () => r(true)); });
    if (!ok) return false;
    await new Promise<void>((r) => s.close(() => r()));
  }
  return true;
}
