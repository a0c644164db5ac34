// Rule change → first new flow that sees it: rewrite the config, SIGHUP the daemon, and start a
// connect every 2 ms until the outcome flips (allowed → timed out, then back).
//
// Run (from the repo root):
//   TS_NODE_TRANSPILE_ONLY=1 node --import @tapjs/typescript/import scripts/bench/reload.ts [--quick]
//     [--dist] [--results FILE]
//
// Config A allows tcp from 127.0.0.0/8, config B only from 10.0.0.0/8. A probe connects from
// 127.0.4.x and counts as allowed when it connects within 40 ms, denied when it does not. The
// figure is (start of the first probe with the new outcome) − (SIGHUP sent), 2 ms resolution;
// probes keep starting every 2 ms while earlier ones are still waiting. Each flip gives up after
// 3 s. The daemon's own "reloaded … (X ms)" log figure is shown beside it. Target (issue 4): new
// flows see the change within 50 ms.

import net from 'node:net';
import { QUICK, header, median, report, runMain, skip, sleep, spreadPct, startBackends, startSgemu, freePort, type Sgemu } from './lib.js';

const FLIPS = QUICK ? 2 : 10;   // each flip is one SIGHUP (alternately to deny and to allow)
const PROBE_EVERY_MS = 2;
const PROBE_TIMEOUT_MS = 40;
const GIVE_UP_MS = 3000;
const ADDR = '127.0.0.50';
const TARGET_MS = 50;

let srcN = 0;
function probe(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = net.connect({ host: ADDR, port, localAddress: `127.0.4.${1 + (srcN++ % 250)}` });
    const t = setTimeout(() => { s.destroy(); res(false); }, PROBE_TIMEOUT_MS);
    s.once('connect', () => { clearTimeout(t); s.destroy(); res(true); });
    s.once('error', () => { clearTimeout(t); s.destroy(); res(false); });
  });
}

/** Sends SIGHUP, probes every 2 ms; ms from the signal to the start of the first probe that sees `want`. */
async function flip(sg: Sgemu, port: number, want: boolean): Promise<number | null> {
  const t0 = performance.now();
  sg.reload();
  const pending: Promise<void>[] = [];
  let first: number | null = null;
  while (first === null && performance.now() - t0 < GIVE_UP_MS) {
    const start = performance.now() - t0;
    pending.push(probe(port).then((ok) => { if (ok === want && (first === null || start < first)) first = start; }));
    await sleep(PROBE_EVERY_MS);
  }
  await Promise.all(pending);
  return first;
}

const config = (port: number, backend: number, cidr: string, host: string): string => `securityGroups:
  - id: sg-reload
    ingress: [ { protocol: tcp, ports: ${port}, cidr: ${cidr} } ]
instances:
  - name: reload
    address: ${ADDR}
    securityGroups: [sg-reload]
    services:
      - { protocol: tcp, port: ${port}, backend: "${host}:${backend}" }
`;

interface Flips { toDeny: number[]; toAllow: number[]; failed: number; daemonMs: number[] }

/** FLIPS reloads of a daemon whose backend is `host` (an address, or the name localhost). */
async function flips(be: Awaited<ReturnType<typeof startBackends>>, host: string): Promise<Flips | string> {
  const port = await freePort(ADDR);
  let sg: Sgemu;
  try {
    sg = await startSgemu(config(port, be.tcpEcho, '127.0.0.0/8', host));
  } catch (e) {
    return `the daemon did not start: ${e instanceof Error ? e.message.split('\n').slice(0, 6).join(' | ') : String(e)}`;
  }
  try {
    if (!(await probe(port))) console.log(`# WARNING (${host}): config A should allow the probe, and it does not`);
    const out: Flips = { toDeny: [], toAllow: [], failed: 0, daemonMs: [] };
    for (let i = 0; i < FLIPS; i++) {
      const deny = i % 2 === 0;
      sg.rewrite(config(port, be.tcpEcho, deny ? '10.0.0.0/8' : '127.0.0.0/8', host));
      const ms = await flip(sg, port, !deny);
      if (ms === null) out.failed++;
      else (deny ? out.toDeny : out.toAllow).push(ms);
      await sleep(100);
    }
    out.daemonMs = [...sg.proc.output().matchAll(/reloaded: .*\(([\d.]+) ms\)/g)].map((m) => Number(m[1]));
    return out;
  } finally {
    await sg.proc.stop();
  }
}

async function main(): Promise<void> {
  header('reload: rule change to first new flow');
  console.log(`# ${FLIPS} flips (SIGHUP after rewriting the config), probes every ${PROBE_EVERY_MS} ms, ${PROBE_TIMEOUT_MS} ms probe timeout`);
  const be = await startBackends();
  try {
    const plain = await flips(be, '127.0.0.1');
    if (typeof plain === 'string') { console.log(`# ${plain}`); skip('reload → new flows see it', 'the daemon did not start', `≤ ${TARGET_MS} ms`); return; }
    const all = [...plain.toDeny, ...plain.toAllow];
    if (all.length === 0) { skip('reload → new flows see it', `no flip seen within ${GIVE_UP_MS} ms in ${FLIPS} tries`, `≤ ${TARGET_MS} ms`); return; }
    const v = median(all);
    report({
      name: 'reload → new flows see it', value: v, unit: 'ms', n: all.length, spreadPct: spreadPct(all),
      detail: `allow→deny ${median(plain.toDeny).toFixed(1)} ms, deny→allow ${median(plain.toAllow).toFixed(1)} ms, max ${Math.max(...all).toFixed(1)} ms`
        + `${plain.failed ? `, ${plain.failed} flips not seen within ${GIVE_UP_MS} ms` : ''}; daemon-reported reload ${plain.daemonMs.length ? median(plain.daemonMs).toFixed(1) : '?'} ms`,
      target: `≤ ${TARGET_MS} ms`, met: plain.failed === 0 && v <= TARGET_MS,
    });
    // The same with the backend given as a name: a reload resolves it again (getaddrinfo; for
    // localhost, /etc/hosts). Baseline: the run above, same machine, same minute.
    const named = await flips(be, 'localhost');
    const allNamed = typeof named === 'string' ? [] : [...named.toDeny, ...named.toAllow];
    if (typeof named === 'string' || allNamed.length === 0) { skip('reload, backend by name / by address', typeof named === 'string' ? named : 'no flip seen'); return; }
    const daemonNamed = named.daemonMs.length ? median(named.daemonMs) : NaN, daemonPlain = plain.daemonMs.length ? median(plain.daemonMs) : NaN;
    report({
      name: 'reload, backend by name / by address', value: median(allNamed) / v, unit: 'x', n: allNamed.length, spreadPct: spreadPct(allNamed),
      detail: `first new flow ${median(allNamed).toFixed(1)} ms vs ${v.toFixed(1)} ms; daemon-reported reload ${daemonNamed.toFixed(1)} ms vs ${daemonPlain.toFixed(1)} ms`,
      target: '', met: null,
    });
  } finally {
    await be.proc.stop();
  }
}

runMain(main);
