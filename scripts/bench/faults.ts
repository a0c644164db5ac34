// Faults (issue 18): what they cost the relay. Two questions, each answered in one run:
//
//   bulk   Does the fault code slow flows without faults? S parallel streams upload B bytes each
//          to the sink through a service without faults and through one whose only fault has
//          toxicity 0 (every flow rolls "no fault" and stays on the splice path), and direct;
//          samples in alternation. Target: both ≈ the same ratio to direct (≥ 0.95x each other).
//   hold   With a latency fault (50 ms downstream) on C concurrent flows, each sending 64 B to the
//          echo every 100 ms for D seconds, the daemon's CPU: ms per second of run and µs per
//          message, against the same load through a service without faults in the same run.
//          Target: bounded (reported; the fault queues and timers should cost a small multiple).
//
// Run (from the repo root):
//   TS_NODE_TRANSPILE_ONLY=1 node --import @tapjs/typescript/import scripts/bench/faults.ts [--quick] [--dist]

import net from 'node:net';
import {
  QUICK, cpuMs, fmtNum, header, median, pairedRatio, report, runMain, sleep, startBackends, startSgemu,
} from './lib.js';

const ROUNDS = QUICK ? 2 : 5;
const STREAMS = QUICK ? 2 : 4;
const BYTES = QUICK ? 4 << 20 : 128 << 20;
const HOLD_FLOWS = QUICK ? 50 : 1000;
const HOLD_S = QUICK ? 1 : 5;
const ADDR = '127.0.0.52';
const CHUNK = Buffer.alloc(256 << 10, 0x5a);

let srcIdx = 0;
const nextSrc = (): string => `127.0.2.${1 + (srcIdx++ % 250)}`;

/** S streams of B bytes to host:port (the sink answers the count at FIN) → MB/s. */
async function bulk(host: string, port: number): Promise<number> {
  const t0 = performance.now();
  await Promise.all(Array.from({ length: STREAMS }, () => new Promise<void>((resolve, reject) => {
    const s = net.connect({ host, port, localAddress: nextSrc() });
    let sent = 0;
    const pump = (): void => {
      while (sent < BYTES) {
        sent += CHUNK.length;
        if (!s.write(CHUNK)) { s.once('drain', pump); return; }
      }
      s.end();
    };
    s.once('connect', pump);
    s.once('data', () => { s.destroy(); resolve(); });
    s.once('error', reject);
  })));
  return STREAMS * BYTES / 1e6 / ((performance.now() - t0) / 1000);
}

/** C flows, each a 64 B round trip every 100 ms for D s → messages answered. */
async function hold(host: string, port: number): Promise<number> {
  let answered = 0;
  const socks = await Promise.all(Array.from({ length: HOLD_FLOWS }, () => new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host, port, localAddress: nextSrc() });
    s.setNoDelay(true);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  })));
  const msg = Buffer.alloc(64, 0x61);
  for (const s of socks) s.on('data', (d: Buffer) => { answered += d.length / 64; });
  const timers = socks.map((s, i) => {
    let timer: NodeJS.Timeout | null = null;
    const start = setTimeout(() => { s.write(msg); timer = setInterval(() => s.write(msg), 100); }, (i * 100) / HOLD_FLOWS);
    return () => { clearTimeout(start); if (timer) clearInterval(timer); };
  });
  await sleep(HOLD_S * 1000);
  for (const stop of timers) stop();
  await sleep(200);
  for (const s of socks) s.destroy();
  return answered;
}

async function main(): Promise<void> {
  header(`faults: bulk ${STREAMS} x ${BYTES >> 20} MiB, ${ROUNDS} rounds; hold ${HOLD_FLOWS} flows x ${HOLD_S} s`);
  const b = await startBackends();
  const ports = { plain: 18001, zero: 18002, echo: 18003, latency: 18004 };
  const sg = await startSgemu(`
securityGroups:
  - id: sg-bench
    ingress: [ { protocol: tcp, ports: 18001-18004, cidr: 127.0.0.0/8 } ]
instances:
  - name: bench
    address: ${ADDR}
    securityGroups: [sg-bench]
    services:
      - { protocol: tcp, port: ${ports.plain}, backend: "127.0.0.1:${b.tcpSink}" }
      - protocol: tcp
        port: ${ports.zero}
        backend: "127.0.0.1:${b.tcpSink}"
        faults: [ { type: latency, toxicity: 0, attributes: { latency: 100 } } ]
      - { protocol: tcp, port: ${ports.echo}, backend: "127.0.0.1:${b.tcpEcho}" }
      - protocol: tcp
        port: ${ports.latency}
        backend: "127.0.0.1:${b.tcpEcho}"
        faults: [ { type: latency, stream: downstream, attributes: { latency: 50 } } ]
`, ['--conntrack-max', String(HOLD_FLOWS * 4)]);
  try {
    const direct: number[] = [], plain: number[] = [], zero: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const order = [0, 1, 2].map((i) => (i + r) % 3);
      for (const k of order) {
        if (k === 0) direct.push(await bulk('127.0.0.1', b.tcpSink));
        if (k === 1) plain.push(await bulk(ADDR, ports.plain));
        if (k === 2) zero.push(await bulk(ADDR, ports.zero));
      }
    }
    const pz = pairedRatio(zero, plain);
    const detail = `direct ${fmtNum(median(direct))} MB/s, no faults ${fmtNum(median(plain))} MB/s (${(median(plain) / median(direct)).toFixed(2)}x direct), toxicity-0 fault ${fmtNum(median(zero))} MB/s`;
    if (pz) report({ name: 'faults bulk toxicity-0/no-faults', value: pz.value, unit: 'x no faults', n: pz.n, spreadPct: pz.spreadPct, detail, target: '≥ 0.95x', met: pz.value >= 0.95 });

    const cpu: Record<string, number[]> = { plain: [], latency: [] };
    const msgs: Record<string, number[]> = { plain: [], latency: [] };
    for (let r = 0; r < Math.max(1, ROUNDS - 2); r++) {
      for (const k of (r % 2 === 0 ? ['plain', 'latency'] : ['latency', 'plain']) as ('plain' | 'latency')[]) {
        const c0 = cpuMs(sg.proc.pid);
        const n = await hold(ADDR, k === 'plain' ? ports.echo : ports.latency);
        cpu[k]!.push(cpuMs(sg.proc.pid) - c0);
        msgs[k]!.push(n);
        await sleep(300);
      }
    }
    const per = (k: 'plain' | 'latency'): number => median(cpu[k]!) * 1000 / median(msgs[k]!);
    const ms = (k: 'plain' | 'latency'): number => median(cpu[k]!) / HOLD_S;
    const ratio = pairedRatio(cpu.latency!, cpu.plain!);
    const hd = `daemon CPU ${ms('latency').toFixed(0)} ms/s with 50 ms latency on ${HOLD_FLOWS} flows (${per('latency').toFixed(1)} µs/message, ${fmtNum(median(msgs.latency!), 0)} messages), ` +
      `${ms('plain').toFixed(0)} ms/s without (${per('plain').toFixed(1)} µs/message)`;
    if (ratio) report({ name: 'faults hold latency/no-faults CPU', value: ratio.value, unit: 'x no faults', n: ratio.n, spreadPct: ratio.spreadPct, detail: hd, target: 'bounded (report)', met: null });
  } finally {
    await sg.proc.stop();
    await b.proc.stop();
  }
}

runMain(main);
