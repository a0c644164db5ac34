// Soak: no fd or memory growth over 100k short TCP connections through the daemon (issue 4).
//
// Run (from the repo root; needs --expose-gc, which the script adds by re-running itself):
//   TS_NODE_TRANSPILE_ONLY=1 node --import @tapjs/typescript/import scripts/bench/leak.ts [--quick]
//     [--dist] [--results FILE] [--connections N]
//
// The daemon runs in this process (the Daemon class of src/control/daemon.ts, or of dist/ with
// --dist: the same code `sgemu run` runs, native relay included) in front of an echo backend in
// this process too, so that a full garbage collection can be forced before every reading: the
// RSS of a separate daemon is dominated by when V8 happens to collect (it climbs for tens of
// thousands of connections, then drops), which hides or fakes a slow leak. C workers loop
// connect / 16 B / 16 B / close from 127.0.2.1-250 until N connections are done (bounded: the run
// stops after RUN_LIMIT_MS whatever the count). Every STEP connections the workers stop, 200 ms
// pass for the last closes, gc() runs twice, and the process's open fds (/proc/self/fd), JS heap
// used, external memory and RSS are read.
//
// Results: fd growth = fds at the end − fds after the warm-up (target 0); heap growth = the
// least-squares slope of heapUsed after GC over the readings after the warm-up, in bytes per
// connection (a leak of one small object per connection is ≥ 50 B; target < 10 B); RSS after GC
// is reported beside it (it also covers the native relay's memory). --quick is a smoke run: 2000
// connections, nothing judged.

import { spawnSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { QUICK, ROOT, USE_DIST, header, report, runMain, skip, sleep, freePort, tmpDir } from './lib.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  const r = spawnSync(process.execPath, ['--expose-gc', ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: process.env });
  process.exit(r.status ?? 1);
}

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

const MiB = (b: number): string => (b / 1048576).toFixed(1);

async function main(): Promise<void> {
  header('soak: fds and memory over many short TCP connections (daemon in-process, GC forced before each reading)');
  console.log(`# ${TOTAL} connections, C=${CONCURRENCY}, readings every ${STEP} after a ${WARMUP} warm-up; clients from 127.0.2.1-250; daemon from ${USE_DIST ? 'dist/' : 'src/'}`);
  const { Daemon } = await import(path.join(ROOT, USE_DIST ? 'dist/control/daemon.js' : 'src/control/daemon.js')) as typeof import('../../src/control/daemon.js');
  const echo = net.createServer((c) => { c.on('error', () => {}); c.pipe(c); });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  const echoPort = (echo.address() as net.AddressInfo).port;
  const port = await freePort(ADDR);
  const configPath = path.join(tmpDir(), 'sgemu.yaml');
  writeFileSync(configPath, `securityGroups:
  - id: sg-soak
    ingress: [ { protocol: tcp, ports: all, cidr: 127.0.0.0/8 } ]
instances:
  - name: soak
    address: ${ADDR}
    securityGroups: [sg-soak]
    services:
      - { protocol: tcp, port: ${port}, backend: "127.0.0.1:${echoPort}" }
`);
  const daemon = new Daemon({
    configPath, api: null, flowLog: null, flowLogIntervalS: 60, statePath: null, resetState: false,
    watch: false, conntrackMax: 10_000, log: () => {},
  });
  try {
    await daemon.start();
  } catch (e) {
    skip('soak fd growth', `the daemon did not start: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`, '0 fds');
    echo.close();
    return;
  }
  const t0 = Date.now();
  let done = 0, failed = 0;
  const xs: number[] = [], heap: number[] = [], rssAfter: number[] = [], fds: number[] = [];
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
      gc!(); gc!();
      const n = done + failed;
      const m = process.memoryUsage();
      const f = readdirSync('/proc/self/fd').length;
      if (n >= WARMUP) {
        if (fdAfterWarmup < 0) fdAfterWarmup = f;
        xs.push(n); heap.push(m.heapUsed); rssAfter.push(m.rss);
      }
      fds.push(f);
      console.log(`#   ${String(n).padStart(7)} connections (${failed} failed): ${f} fds, heap ${MiB(m.heapUsed)} MiB, external ${MiB(m.external)} MiB, RSS ${MiB(m.rss)} MiB, conntrack ${daemon.table.count}, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }
  } finally {
    await daemon.stop(0);
    await new Promise((r) => echo.close(r));
  }
  const n = done + failed;
  const judged = n >= TOTAL && !QUICK;
  const growth = fds[fds.length - 1]! - fdAfterWarmup;
  const secs = (Date.now() - t0) / 1000;
  report({
    name: 'soak fd growth', value: growth, unit: 'fds', n: fds.length, spreadPct: 0,
    detail: `${n} connections in ${secs.toFixed(0)} s (${(n / secs).toFixed(0)}/s), ${failed} failed; fds ${fdAfterWarmup} after warm-up → ${fds[fds.length - 1]} at the end`,
    target: '0 fds after 100k', met: judged ? growth <= 0 : null,
  });
  const s = xs.length >= 3 ? slope(xs, heap) : NaN;
  report({
    name: 'soak heap growth after GC', value: s, unit: 'B/connection', n: xs.length, spreadPct: 0,
    detail: `heap ${MiB(Math.min(...heap))}-${MiB(Math.max(...heap))} MiB, RSS after GC ${MiB(Math.min(...rssAfter))}-${MiB(Math.max(...rssAfter))} MiB after the warm-up`,
    target: '< 10 B per connection (no per-connection leak)', met: judged && Number.isFinite(s) ? s < 10 : null,
  });
}

runMain(main);
