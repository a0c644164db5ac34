// TCP end to end: bulk throughput, new connections/s and added latency, through the sgemu daemon,
// through HAProxy (mode tcp, nbthread 1: the daemon is one Node thread) and direct to the backend,
// in one run, samples taken in alternation (round i measures direct, haproxy, sgemu in turn,
// starting from a different one each round).
//
// Run (from the repo root):
//   TS_NODE_TRANSPILE_ONLY=1 node --import @tapjs/typescript/import scripts/bench/tcp.ts [--quick]
//     [--dist] [--cpu-prof DIR] [--results FILE] [--only bulk|conn|lat] [--busy-poll US]
//
// Processes: this script (the clients), scripts/bench/backend.mjs (sink and echo on 127.0.0.1),
// `sgemu run` on 127.0.0.50, haproxy on 127.0.0.60. Clients connect from 127.0.1.1-250 so that
// short connections do not run out of ephemeral ports.
//
//   bulk   S parallel streams upload B bytes each to the sink, which answers the byte count at
//          FIN; MB/s = S·B / (first connect → last count). Targets (issue 4): ≥ 1.0x HAProxy.
//   conn   C workers loop: connect, write 16 B, read 16 B, close; completed connections/s over
//          a fixed time. Target: ≥ 1.0x HAProxy.
//   lat    one persistent connection, 64 B request/response, sequential; p50/p99 per round, and
//          new-connection latency (connect → first reply). Target: sgemu p50 − direct p50 < 100 µs.

import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import {
  QUICK, addCpu, busyPct, cpuMs, cpuPer, cpuReading, cpuTally, fmtNum, header, median, pairedRatio, percentile, report, runMain, skip, sleep, spreadPct,
  openConfig, startBackends, startHaproxy, startSgemu, freePort, type CpuTally, type Proc, type Sgemu,
} from './lib.js';

const argv = process.argv.slice(2);
const onlyIdx = argv.indexOf('--only');
const ONLY = onlyIdx >= 0 ? argv[onlyIdx + 1] ?? '' : '';
const busyIdx = argv.indexOf('--busy-poll');
/** `--busy-poll US`: the daemon runs with `sgemu run --busy-poll US` (its latency/CPU trade). */
const BUSY_POLL = busyIdx >= 0 ? argv[busyIdx + 1] ?? '0' : '';
const want = (k: string): boolean => !ONLY || ONLY.split(',').includes(k);

const ROUNDS = QUICK ? 2 : 5;
const BULK_STREAMS = QUICK ? 2 : 4;
const BULK_BYTES = QUICK ? 4 << 20 : 256 << 20;
const CONN_CONCURRENCY = QUICK ? 8 : 32;
const CONN_MS = QUICK ? 300 : 2000;
const LAT_RTS = QUICK ? 200 : 3000;
const CONNECT_LAT_N = QUICK ? 30 : 300;
const ROUND_TIMEOUT_MS = 120_000;

const SGEMU_ADDR = '127.0.0.50';
const HAPROXY_ADDR = '127.0.0.60';
const CHUNK = Buffer.alloc(256 << 10, 0x5a);

let srcIdx = 0;
/** Client source addresses 127.0.1.1 .. 127.0.1.250, in turn. */
const nextSrc = (): string => `127.0.1.${1 + (srcIdx++ % 250)}`;

interface Target { name: string; host: string; sinkPort: number; echoPort: number }

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, rej) => { t = setTimeout(() => rej(new Error(`${what}: no result after ${ms} ms`)), ms); }),
  ]);
}

/** One stream: upload `bytes`, end, expect the sink's 8-byte count. */
function upload(host: string, port: number, bytes: number): Promise<void> {
  return new Promise((res, rej) => {
    const s = net.connect({ host, port, localAddress: nextSrc(), noDelay: true });
    let left = bytes;
    const pump = (): void => {
      while (left > 0) {
        const n = Math.min(left, CHUNK.length);
        left -= n;
        const ok = s.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n));
        if (!ok) { s.once('drain', pump); return; }
      }
      s.end();
    };
    const got: Buffer[] = [];
    s.on('connect', pump);
    s.on('data', (b) => got.push(b));
    s.on('end', () => {
      const r = Buffer.concat(got);
      if (r.length !== 8 || r.readBigUInt64BE() !== BigInt(bytes)) rej(new Error(`sink on ${host}:${port} counted ${r.length === 8 ? r.readBigUInt64BE() : `a ${r.length}-byte answer`}, sent ${bytes}`));
      else res();
      s.destroy();
    });
    s.on('error', rej);
  });
}

async function bulk(t: Target): Promise<number> {
  const t0 = performance.now();
  await withTimeout(Promise.all(Array.from({ length: BULK_STREAMS }, () => upload(t.host, t.sinkPort, BULK_BYTES))), ROUND_TIMEOUT_MS, `bulk via ${t.name}`);
  const s = (performance.now() - t0) / 1000;
  return (BULK_STREAMS * BULK_BYTES) / s / 1e6;
}

/** C workers of connect / 16 B / 16 B / close for `ms`; completed connections per second. */
async function connRate(t: Target): Promise<{ rate: number; errors: number; done: number }> {
  const req = Buffer.alloc(16, 0x61);
  let done = 0, errors = 0;
  const t0 = performance.now();
  const until = t0 + CONN_MS;
  const one = (): Promise<void> => new Promise((res) => {
    const s = net.connect({ host: t.host, port: t.echoPort, localAddress: nextSrc(), noDelay: true });
    let got = 0, ok = false;
    const guard = setTimeout(() => s.destroy(), 2000);
    s.on('connect', () => s.write(req));
    s.on('data', (b) => { got += b.length; if (got >= 16 && !ok) { ok = true; s.end(); } });
    s.on('error', () => { /* counted at close */ });
    s.on('close', () => { clearTimeout(guard); if (ok) done++; else errors++; res(); });
  });
  await withTimeout(Promise.all(Array.from({ length: CONN_CONCURRENCY }, async () => {
    while (performance.now() < until) await one();
  })), CONN_MS + 10_000, `conn/s via ${t.name}`);
  return { rate: done / ((performance.now() - t0) / 1000), errors, done };
}

/** Sequential 64 B request/response on one connection: per round-trip µs, sorted. */
function pingPong(t: Target): Promise<number[]> {
  return withTimeout(new Promise((res, rej) => {
    const s = net.connect({ host: t.host, port: t.echoPort, localAddress: nextSrc(), noDelay: true });
    const msg = Buffer.alloc(64, 0x62);
    const times: number[] = [];
    const warm = Math.min(200, LAT_RTS >> 2);
    let got = 0, i = 0, t0 = 0n;
    const send = (): void => { got = 0; t0 = process.hrtime.bigint(); s.write(msg); };
    s.on('connect', send);
    s.on('data', (b) => {
      got += b.length;
      if (got < 64) return;
      const us = Number(process.hrtime.bigint() - t0) / 1000;
      if (i++ >= warm) times.push(us);
      if (i < LAT_RTS + warm) send();
      else { s.destroy(); res(times.sort((a, b) => a - b)); }
    });
    s.on('error', rej);
  }), ROUND_TIMEOUT_MS, `latency via ${t.name}`);
}

/** Sequential new connections: µs from connect() to the first 16-byte reply, sorted. */
async function connectLatency(t: Target): Promise<number[]> {
  const out: number[] = [];
  const req = Buffer.alloc(16, 0x63);
  for (let i = 0; i < CONNECT_LAT_N; i++) {
    out.push(await withTimeout(new Promise<number>((res, rej) => {
      const t0 = process.hrtime.bigint();
      const s = net.connect({ host: t.host, port: t.echoPort, localAddress: nextSrc(), noDelay: true });
      let got = 0;
      s.on('connect', () => s.write(req));
      s.on('data', (b) => { got += b.length; if (got >= 16) { const us = Number(process.hrtime.bigint() - t0) / 1000; s.destroy(); res(us); } });
      s.on('error', rej);
    }), 5000, `connect latency via ${t.name}`));
  }
  return out.sort((a, b) => a - b);
}

/** Open fds and RSS of a process, from /proc. */
function procResources(pid: number): { fds: number; rss: number } {
  const fds = readdirSync(`/proc/${pid}/fd`).length;
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { fds, rss: m ? Number(m[1]) * 1024 : NaN };
}

async function main(): Promise<void> {
  header('tcp benchmark (bulk, conn/s, latency)');
  console.log(`# rounds=${ROUNDS}; bulk ${BULK_STREAMS}×${BULK_BYTES >> 20} MiB; conn/s C=${CONN_CONCURRENCY} × ${CONN_MS} ms; latency ${LAT_RTS} × 64 B RTs, ${CONNECT_LAT_N} new connections`);
  if (BUSY_POLL) console.log(`# sgemu run --busy-poll ${BUSY_POLL}`);
  console.log('# haproxy: mode tcp, nbthread 1 (sgemu is one Node thread); clients from 127.0.1.1-250');
  const be = await startBackends();
  const targets: Target[] = [{ name: 'direct', host: '127.0.0.1', sinkPort: be.tcpSink, echoPort: be.tcpEcho }];
  let haproxy: Proc | null = null;
  const hSink = await freePort(HAPROXY_ADDR), hEcho = await freePort(HAPROXY_ADDR);
  haproxy = await startHaproxy([
    { bindHost: HAPROXY_ADDR, bindPort: hSink, backendPort: be.tcpSink },
    { bindHost: HAPROXY_ADDR, bindPort: hEcho, backendPort: be.tcpEcho },
  ]);
  if (haproxy) targets.push({ name: 'haproxy', host: HAPROXY_ADDR, sinkPort: hSink, echoPort: hEcho });
  else console.log('# haproxy not installed (apt-get install -y haproxy): HAProxy baselines skipped');
  let sgemu: Sgemu | null = null;
  const sSink = await freePort(SGEMU_ADDR), sEcho = await freePort(SGEMU_ADDR);
  try {
    sgemu = await startSgemu(openConfig(SGEMU_ADDR, 'tcp', [[sSink, be.tcpSink], [sEcho, be.tcpEcho]]), BUSY_POLL ? ['--busy-poll', BUSY_POLL] : []);
    targets.push({ name: 'sgemu', host: SGEMU_ADDR, sinkPort: sSink, echoPort: sEcho });
  } catch (e) {
    console.log(`# sgemu did not start: ${e instanceof Error ? e.message.split('\n').slice(0, 6).join(' | ') : String(e)}`);
  }

  try {
    // A short warm-up for every target (JIT, connection pools), not measured.
    for (const t of targets) { await upload(t.host, t.sinkPort, 1 << 20); await connectLatency({ ...t }).catch(() => []); }

    const samples = new Map<string, { bulk: number[]; conn: number[]; connErr: number; p50: number[]; p99: number[]; c50: number[]; c99: number[] }>();
    for (const t of targets) samples.set(t.name, { bulk: [], conn: [], connErr: 0, p50: [], p99: [], c50: [], c99: [] });
    let sgemuConns = 0;
    // CPU while bulk (done = MB moved) and conn/s (done = connections) run, per target.
    const bulkCpu = new Map<string, CpuTally>(), connCpu = new Map<string, CpuTally>();
    const proxyPid = (t: Target): number | null => t.name === 'haproxy' ? haproxy!.pid : t.name === 'sgemu' ? sgemu!.proc.pid : null;
    const reading = (t: Target, done: number): CpuTally => {
      const p = proxyPid(t);
      return cpuReading(done, be.proc.pid, p === null ? 0 : cpuMs(p));
    };
    const tally = (m: Map<string, CpuTally>, t: Target): CpuTally => {
      let c = m.get(t.name);
      if (!c) m.set(t.name, c = cpuTally());
      return c;
    };
    const printCpu = (m: Map<string, CpuTally>, what: string, digits: number): void => {
      console.log(`# ${what} (${os.availableParallelism()} cores): µs of the clients / backend / proxy (all its threads); machine busy`);
      for (const [name, c] of m) {
        console.log(`#   ${name.padEnd(8)} ${cpuPer(c, c.client, digits)} / ${cpuPer(c, c.backend, digits)} / ${name === 'direct' ? '-' : cpuPer(c, c.proxy, digits)} µs; busy ${busyPct(c)}%`);
      }
    };
    const res0 = sgemu ? procResources(sgemu.proc.pid) : null;
    for (let r = 0; r < ROUNDS; r++) {
      // Rotate who goes first: a target measured right after another inherits its TIME_WAIT
      // sockets (haproxy and sgemu both connect 127.0.0.1 → the same backend port), which made the
      // last target pay for the port search of the one before it in every round.
      for (const t of targets.map((_, i) => targets[(i + r) % targets.length]!)) {
        const s = samples.get(t.name)!;
        if (want('bulk')) {
          const c0 = reading(t, 0);
          s.bulk.push(await bulk(t));
          addCpu(tally(bulkCpu, t), c0, reading(t, BULK_STREAMS * BULK_BYTES / 1e6));
        }
        if (want('conn')) {
          const c0 = reading(t, 0);
          const c = await connRate(t);
          addCpu(tally(connCpu, t), c0, reading(t, c.done));
          s.conn.push(c.rate); s.connErr += c.errors;
          if (t.name === 'sgemu') sgemuConns += c.done;
        }
        if (want('lat')) {
          const rt = await pingPong(t);
          s.p50.push(percentile(rt, 50)); s.p99.push(percentile(rt, 99));
          const ct = await connectLatency(t);
          s.c50.push(percentile(ct, 50)); s.c99.push(percentile(ct, 99));
        }
      }
    }
    const d = samples.get('direct')!, h = samples.get('haproxy'), g = samples.get('sgemu');
    const abs = (label: string, pick: (x: typeof d) => number[], unit: string): string =>
      [...samples].map(([k, v]) => `${k} ${fmtNum(median(pick(v)))}${unit}`).join(', ') + (label ? ` ${label}` : '');

    const ratioLines = (name: string, pick: (x: typeof d) => number[], unit: string, target: string): void => {
      const detail = abs('', pick, unit);
      if (g) {
        const vsD = pairedRatio(pick(g), pick(d))!;
        report({ name: `${name} sgemu/direct`, value: vsD.value, unit: 'x direct', n: vsD.n, spreadPct: vsD.spreadPct, detail, target: '', met: null });
        if (h) {
          const vsH = pairedRatio(pick(g), pick(h))!;
          report({ name: `${name} sgemu/haproxy`, value: vsH.value, unit: 'x haproxy', n: vsH.n, spreadPct: vsH.spreadPct, detail, target, met: vsH.value >= 1.0 });
        } else skip(`${name} sgemu/haproxy`, 'haproxy not installed', target);
      } else skip(`${name} sgemu`, 'the daemon did not start', target);
      if (h) {
        const hd = pairedRatio(pick(h), pick(d))!;
        report({ name: `${name} haproxy/direct`, value: hd.value, unit: 'x direct', n: hd.n, spreadPct: hd.spreadPct, detail, target: '', met: null });
      }
    };
    if (want('bulk')) {
      ratioLines(`tcp bulk ${BULK_STREAMS}×${BULK_BYTES >> 20}MiB`, (x) => x.bulk, ' MB/s', '≥ 1.0x haproxy');
      printCpu(bulkCpu, 'bulk CPU per MB moved (the backend is the sink)', 0);
    }
    if (want('conn')) {
      ratioLines(`tcp conn/s C=${CONN_CONCURRENCY}`, (x) => x.conn, '/s', '≥ 1.0x haproxy');
      if (sgemu && res0) {
        await sleep(500);
        const res1 = procResources(sgemu.proc.pid);
        console.log(`# sgemu after ${sgemuConns} short connections (and the other tests): open fds ${res0.fds} → ${res1.fds}, RSS ${(res0.rss / 1e6).toFixed(0)} → ${(res1.rss / 1e6).toFixed(0)} MB`);
      }
      // On a machine with few cores the clients, the backend and the proxy share them: the proxy
      // with the lower CPU per connection leaves more to the others and wins the rate.
      printCpu(connCpu, 'conn/s CPU per connection', 1);
      const errs = [...samples].filter(([, v]) => v.connErr > 0).map(([k, v]) => `${k} ${v.connErr}`);
      if (errs.length) console.log(`# conn/s: connections that failed or timed out: ${errs.join(', ')}`);
    }
    if (want('lat')) {
      const lat = (name: string, p: 'p50' | 'p99' | 'c50' | 'c99', target: string, limit: number): void => {
        const detail = abs('', (x) => x[p], ' µs');
        if (!g) { skip(name, 'the daemon did not start', target); return; }
        const added = g[p].map((v, i) => v - d[p][i]!);
        const v = median(added);
        report({ name, value: v, unit: 'µs', n: added.length, spreadPct: spreadPct(g[p]), detail, target, met: limit > 0 ? v < limit : null });
      };
      lat('tcp added latency p50 (64 B RT)', 'p50', '< 100 µs', 100);
      lat('tcp added latency p99 (64 B RT)', 'p99', '', 0);
      lat('tcp added new-conn latency p50', 'c50', '', 0);
      lat('tcp added new-conn latency p99', 'c99', '', 0);
    }
  } finally {
    await sgemu?.proc.stop();
    await haproxy?.stop();
    await be.proc.stop();
  }
}

runMain(main);
