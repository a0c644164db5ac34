// The plain helpers every kind of test shares: fresh loopback addresses, a free port, waiting for
// a condition, sleeping. One copy each (issue 17: five tests carried their own). No daemon here:
// test/e2e/helpers.ts adds those helpers and re-exports these.
// Addresses: each test file takes fresh 127.x.y.z addresses from a block chosen by its pid, so
// files running in parallel never share an address. Never anything outside 127.0.0.0/8 and ::1.

import dgram from 'node:dgram';
import net from 'node:net';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

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

/**
 * Why uid 65534 cannot run `path` (a file of this checkout), or false when it can. Tests that drop
 * to uid 65534 run the CLI from the checkout: a checkout under a directory only root may enter
 * (mktemp -d is 0700, so is /root) cannot serve them; they skip with this reason (.ci/run moves
 * such a clone to a world-readable place first, so CI runs them). Needs root and setpriv.
 */
export function unreadableForNobody(path: string): string | false {
  const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));
  if (!setpriv) return 'setpriv(1) not installed';
  const r = spawnSync('/usr/bin/env', ['-i', 'PATH=/usr/bin:/bin', setpriv, '--reuid=65534', '--regid=65534', '--clear-groups', '--', 'test', '-r', path]);
  return r.status === 0 ? false : `uid 65534 cannot read ${path}: a directory above this checkout is closed to others (clone it under a world-readable directory; .ci/run does)`;
}
