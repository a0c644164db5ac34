// The native UDP relay's cost with faults (issue #18): 1000 concurrent flows at a fixed offered
// rate, each request delayed 10 ms ± 5 each way by latency faults (so ~2 × rate × 10 ms datagrams
// wait in the relay's heap at any time), against the same flows with no fault, alternating in one
// run. Reported: the relay thread's CPU per request (ratio faulted / plain) and its share of a core,
// and the requests answered. The clients (this process) and an echo backend (its own process)
// are the same in both modes.
//
// Run (from the repo root):
//   TS_NODE_TRANSPILE_ONLY=1 node --import @tapjs/typescript/import scripts/bench/udp-faults.ts [--quick] [--results FILE]

import dgram from 'node:dgram';
import { closeFd, createUdpSocket } from '../../src/native/sock-filter.js';
import { UdpRelay, forEachDatagram } from '../../src/native/udp-relay.js';
import { parseFault } from '../../src/config/faults.js';
import { QUICK, fmtNum, header, median, pairedRatio, report, runMain, sleep, spreadPct, startBackends, freePort, threadCpuMs, threadId } from './lib.js';

const FLOWS = QUICK ? 200 : 1000;
const RATE_PER_FLOW = 10;          // requests per second per flow: 10 k/s offered in all
const ROUNDS = QUICK ? 2 : 5;
const SAMPLE_MS = QUICK ? 1000 : 3000;
const ADDR = '127.0.0.53';
const LATENCY = [
  parseFault({ type: 'latency', stream: 'upstream', attributes: { latency: 10, jitter: 5 } }, 17),
  parseFault({ type: 'latency', stream: 'downstream', attributes: { latency: 10, jitter: 5 } }, 17),
];


async function main(): Promise<void> {
  header('udp relay with latency faults on 1000 flows: relay CPU against no faults');
  console.log(`# ${FLOWS} flows × ${RATE_PER_FLOW}/s (open loop), 64 B; faults: latency 10 ± 5 ms upstream and downstream; ${ROUNDS} rounds of ${SAMPLE_MS} ms per mode`);
  const be = await startBackends();
  const port = await freePort(ADDR);
  const fd = createUdpSocket({ family: 4, address: ADDR, port, program: null });
  const slots = new Map<string, number>();
  const relay: UdpRelay = UdpRelay.open(fd, 4, {
    datagrams: (batch, count) => forEachDatagram(batch, count, (a, p, m) => {
      let slot = slots.get(`${a}:${p}`);
      if (slot === undefined) {
        slot = slots.size;
        slots.set(`${a}:${p}`, slot);
        relay.add(slot, a, p, '127.0.0.1', be.udpEcho, null);
      }
      relay.send(slot, m);
    }),
    flowError: () => {},
  });
  const socks: dgram.Socket[] = [];
  let answered = 0;
  const msg = Buffer.alloc(64, 0x66);
  let tick: NodeJS.Timeout | null = null;
  try {
    for (let i = 0; i < FLOWS; i++) {
      const s = dgram.createSocket('udp4');
      await new Promise<void>((res) => s.bind(0, `127.0.4.${(i % 250) + 1}`, () => s.connect(port, ADDR, () => res())));
      s.on('message', () => { answered++; });
      s.on('error', () => {});
      socks.push(s);
    }
    // Open loop: every 10 ms a tenth of the flows sends one request (each flow 10/s).
    let next = 0;
    const per = Math.ceil(FLOWS * RATE_PER_FLOW / 100);
    tick = setInterval(() => { for (let k = 0; k < per; k++) socks[next++ % FLOWS]!.send(msg); }, 10);
    await sleep(500);
    const tid = threadId('sgemu-udp');
    const cpu: Record<'plain' | 'latency', number[]> = { plain: [], latency: [] };
    const core: Record<'plain' | 'latency', number[]> = { plain: [], latency: [] };
    const rate: Record<'plain' | 'latency', number[]> = { plain: [], latency: [] };
    let maxDelayed = 0;
    for (let r = 0; r < ROUNDS; r++) {
      for (const mode of ['plain', 'latency'] as const) {
        relay.setFaults(mode === 'latency' ? LATENCY : []);
        await sleep(200);                                // the heap fills (or drains) to its steady depth
        const i0 = relay.info(), c0 = threadCpuMs(tid), a0 = answered, t0 = performance.now();
        await sleep(SAMPLE_MS);
        const i1 = relay.info(), c1 = threadCpuMs(tid), ms = performance.now() - t0;
        const reqs = i1.forwarded - i0.forwarded;
        cpu[mode].push((c1 - c0) * 1000 / reqs);
        core[mode].push((c1 - c0) / ms * 100);
        rate[mode].push((answered - a0) * 1000 / ms);
        if (mode === 'latency') maxDelayed = Math.max(maxDelayed, i1.faultDelayed - i0.faultDelayed);
      }
    }
    const info = relay.info();
    const detail = `relay thread ${median(cpu.plain).toFixed(1)} µs/req plain, ${median(cpu.latency).toFixed(1)} µs/req with latency; ` +
      `${median(core.plain).toFixed(1)} % / ${median(core.latency).toFixed(1)} % of a core; answered ${fmtNum(median(rate.plain))}/s / ${fmtNum(median(rate.latency))}/s; ` +
      `delayed ${fmtNum(maxDelayed * 1000 / SAMPLE_MS)}/s, over the cap ${info.faultOverCap}`;
    const v = pairedRatio(cpu.latency, cpu.plain)!;
    report({ name: `udp relay CPU per request, latency faults on ${FLOWS} flows`, value: v.value, unit: 'x no faults', n: v.n, spreadPct: v.spreadPct, detail, target: '', met: null });
    report({ name: `udp relay thread share of a core, latency faults on ${FLOWS} flows`, value: median(core.latency), unit: '%', n: ROUNDS, spreadPct: spreadPct(core.latency), detail, target: '', met: null });
  } finally {
    if (tick) clearInterval(tick);
    for (const s of socks) s.close();
    relay.close();
    closeFd(fd);
    await be.proc.stop();
  }
}

runMain(main);
