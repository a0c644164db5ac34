// The plain helpers every kind of test shares: fresh loopback addresses, a free port, waiting for
// a condition, sleeping. One copy each (issue 17: five tests carried their own). No daemon here:
// test/e2e/helpers.ts adds those helpers and re-exports these.
// Addresses: each test file takes fresh 127.x.y.z addresses from a block chosen by its pid, so
// files running in parallel never share an address. Never anything outside 127.0.0.0/8 and ::1.

import dgram from 'node:dgram';
import net from 'node:net';

let next = 1;
const block = 100 + (process.pid % 150);
/** A fresh loopback address no other test file uses: 127.<block>.<n>.<m>. */
export function freshAddr(): string {
  const n = next++;
  return `127.${block}.${(n >> 8) & 255}.${(n & 255) || 1}`;
}

/**
 * A port that is free on `host` right now for `protocol` (bind 0, read, close): where a test
 * needs a port nothing listens on, or one to configure before something binds it.
 */
export async function freePort(host = '127.0.0.1', protocol: 'tcp' | 'udp' = 'tcp'): Promise<number> {
  if (protocol === 'udp') {
    const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => { s.once('error', reject); s.bind(0, host, () => resolve()); });
    const p = s.address().port;
    await new Promise<void>((r) => s.close(() => r()));
    return p;
  }
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `cond` every `everyMs` until it holds (true) or `ms` have passed (false): bounded, so a
 * test asserts the result (`t.ok(await until(...), 'what')`) rather than hanging.
 */
export async function until(cond: () => boolean, ms = 1000, everyMs = 5): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await sleep(everyMs);
  }
  return true;
}
