// Soak: no fd or memory growth over 100k short TCP connections through the daemon (issue 4).
//
// Run (from the repo root):
//   TS_NODE_TRANSPILE_ONLY=1 node --import @tapjs/typescript/import scripts/bench/leak.ts [--quick]
//     [--dist] [--results FILE] [--connections N]
//
// The daemon runs in its own process (`sgemu run`, as in real use) in front of the bench echo
// backend. C workers loop connect / 16 B / 16 B / close from 127.0.2.1-250 until N connections
// are done (bounded: the run stops after RUN_LIMIT_MS whatever the count). Every STEP connections
// the workers stop, wait 200 ms for the daemon to see the last closes, and the daemon's open fds
// (/proc/PID/fd) and RSS (/proc/PID/status VmRSS) are read. --quick is a smoke run: it judges
// fds only (2000 connections are too few for a slope).
//
// Results: fd growth = fds at the end − fds after the warm-up (target 0); RSS growth = the slope
// of RSS over the second half of the run in KiB per 1000 connections (a leak of one small object
// per connection shows as a steady slope; a warm heap is flat within GC noise). RSS is read as it
// is, so GC timing adds noise to each reading; the least-squares slope over many readings is what
// is judged, and a leak of even 100 bytes per connection (100 KiB per 1000) cannot hide in it.

import { readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import { QUICK, header, report, runMain, skip, sleep, startBackends, startSgemu, freePort } from './lib.js';

const argv = process.argv.slice(2);
const nAt = argv.indexOf('--connections');
const TOTAL = nAt >= 0 ? Number(argv[nAt + 1]) : QUICK ? 2_000 : 100_000;
const STEP = QUICK ? 500 : 5_000;
const WARMUP = QUICK ? 500 : 10_000;
const CONCURRENCY = 32;
const RUN_LIMIT_MS = QUICK ? 20_000 : 10 * 60_000;
const ADDR = '127.0.0.51';

if (!(Number.isInteger(TOTAL) && TOTAL >= 2 * STEP)) {
  console.error(`leak: --connections must be an integer ≥ ${2 * STEP}, got ${argv[nAt + 1]}`);
  process.exit(2);
}

function fdCount(pid: number): number { return readdirSync(`/proc/${pid}/fd`).length; }
function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

let srcIdx = 0;
const nextSrc = (): string => `127.0.2.${1 + (srcIdx++ % 250)}`;
const REQ = Buffer.alloc(16, 0x61);

/** One short connection; true when the 16 bytes came back. */
function once(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = net.connect({ host: ADDR, port, localAddress: nextSrc(), noDelay: true });
    let got = 0, ok = false;
    const guard = setTimeout(() => s.destroy(), 3000);
    s.on('connect', () => s.write(REQ));
    s.on('data', (b) => { got += b.length; if (got >= 16 && !ok) { ok = true; s.end(); } });
    s.on('error', () => { /* counted at close */ });
    s.on('close', () => { clearTimeout(guard); res(ok); });
  });
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n, my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0, den = 0;
  for (let i = 0; i < n; i++) { num += (xs[i]! - mx) * (ys[i]! - my); den += (xs[i]! - mx) ** 2; }
  return den === 0 ? 0 : num / den;
}

async function main(): Promise<void> {
  header('soak: fds and RSS over many short TCP connections');
  console.log(`# ${TOTAL} connections, C=${CONCURRENCY}, readings every ${STEP} after a ${WARMUP} warm-up; clients from 127.0.2.1-250`);
  const be = await startBackends();
  const port = await freePort(ADDR);
  const yaml = `securityGroups:
  - id: sg-soak
    ingress: [ { protocol: tcp, ports: all, cidr: 127.0.0.0/8 } ]
instances:
  - name: soak
    address: ${ADDR}
    securityGroups: [sg-soak]
    services:
      - { protocol: tcp, port: ${port}, backend: "127.0.0.1:${be.tcpEcho}" }
`;
  let sgemu;
  try {
    sgemu = await startSgemu(yaml);
  } catch (e) {
    skip('soak fd growth', `sgemu did not start: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`, '0 fds');
    await be.proc.stop();
    return;
  }
  const pid = sgemu.proc.pid;
  const t0 = Date.now();
  let done = 0, failed = 0;
  const xs: number[] = [], rss: number[] = [], fds: number[] = [];
  let fdAfterWarmup = -1;
  try {
    while (done + failed < TOTAL && Date.now() - t0 < RUN_LIMIT_MS) {
      const stepEnd = Math.min(TOTAL, done + failed + STEP);
      await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
        while (done + failed < stepEnd && Date.now() - t0 < RUN_LIMIT_MS) {
          if (await once(port)) done++; else failed++;
        }
      }));
      await sleep(200);    // let the daemon see the last closes
      const n = done + failed;
      const f = fdCount(pid), r = rssKiB(pid);
      if (n >= WARMUP && fdAfterWarmup < 0) fdAfterWarmup = f;
      if (n >= TOTAL / 2) { xs.push(n / 1000); rss.push(r); }
      fds.push(f);
      console.log(`#   ${String(n).padStart(7)} connections (${failed} failed): ${f} fds, ${(r / 1024).toFixed(1)} MiB RSS, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }
  } finally {
    await sgemu.proc.stop();
    await be.proc.stop();
  }
  const n = done + failed;
  const growth = fds[fds.length - 1]! - fdAfterWarmup;
  const secs = (Date.now() - t0) / 1000;
  report({
    name: 'soak fd growth', value: growth, unit: 'fds', n: fds.length, spreadPct: 0,
    detail: `${n} connections in ${secs.toFixed(0)} s (${(n / secs).toFixed(0)}/s), ${failed} failed; fds ${fdAfterWarmup} after warm-up → ${fds[fds.length - 1]} at the end`,
    target: '0 fds after 100k', met: n >= TOTAL ? growth <= 0 : null,
  });
  const s = xs.length >= 3 ? slope(xs, rss) : NaN;
  report({
    name: 'soak RSS slope', value: s, unit: 'KiB/1000 conns', n: xs.length, spreadPct: 0,
    detail: `RSS ${(Math.min(...rss) / 1024).toFixed(1)}-${(Math.max(...rss) / 1024).toFixed(1)} MiB over the second half`,
    target: '< 100 KiB per 1000 (no per-connection leak)', met: Number.isFinite(s) && n >= TOTAL && !QUICK ? s < 100 : null,
  });
}

runMain(main);
