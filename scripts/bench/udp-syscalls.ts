// What the native UDP relay thread spends per relayed request: system calls (by kind), context
// switches and CPU µs, counted by the kernel for that one thread (perf stat -t, /proc task stat),
// under the same load as scripts/bench/udp.ts (F flows × W requests in flight, 64 B, an echo
// backend in its own process). Request/reply rates on a shared 2-core machine move ±20-40 %
// with the neighbours; these per-request counts do not, so they show what a relay change does.
//
// Run (from the repo root, as root or with perf_event_paranoid ≤ 1 for the syscall counts):
//   TS_NODE_TRANSPILE_ONLY=1 node --import @tapjs/typescript/import scripts/bench/udp-syscalls.ts [--quick] [--results FILE]

import dgram from 'node:dgram';
import { spawn } from 'node:child_process';
import { closeFd, createUdpSocket } from '../../src/native/sock-filter.js';
import { UdpRelay, forEachDatagram } from '../../src/native/udp-relay.js';
import { QUICK, fmtNum, haveCommand, header, median, report, runMain, sleep, spreadPct, startBackends, freePort, threadCpuMs, threadId } from './lib.js';

const FLOWS = QUICK ? 4 : 16;
const WINDOW = 4;
const SAMPLES = QUICK ? 2 : 5;
const SAMPLE_MS = QUICK ? 500 : 2000;
const ADDR = '127.0.0.52';
const MSG = Buffer.alloc(64, 0x75);
const EVENTS = ['raw_syscalls:sys_enter', 'syscalls:sys_enter_sendto', 'syscalls:sys_enter_sendmmsg', 'syscalls:sys_enter_recvmmsg',
  'syscalls:sys_enter_epoll_wait', 'context-switches'];



async function main(): Promise<void> {
  header('udp relay thread: syscalls, context switches and CPU per relayed request');
  console.log(`# ${FLOWS} flows × ${WINDOW} in flight, 64 B, ${SAMPLES} samples of ${SAMPLE_MS} ms; counts from perf stat -t on the sgemu-udp thread`);
  const be = await startBackends();
  const port = await freePort(ADDR);
  const fd = createUdpSocket({ family: 4, address: ADDR, port, program: null });
  let nextSlot = 0;
  const slots = new Map<string, number>();
  const relay: UdpRelay = UdpRelay.open(fd, 4, {
    datagrams: (batch, count) => forEachDatagram(batch, count, (a, p, m) => {
      let slot = slots.get(`${a}:${p}`);
      if (slot === undefined) {
        slot = nextSlot++;
        slots.set(`${a}:${p}`, slot);
        relay.add(slot, a, p, '127.0.0.1', be.udpEcho, null);
      }
      relay.send(slot, m);
    }),
    flowError: () => {},
  });
  const socks: dgram.Socket[] = [];
  let running = true;
  try {
    for (let i = 0; i < FLOWS; i++) {
      const s = dgram.createSocket('udp4');
      await new Promise<void>((res) => s.bind(0, `127.0.3.${i + 1}`, () => s.connect(port, ADDR, () => res())));
      s.on('message', () => { if (running) s.send(MSG); });
      s.on('error', () => {});
      socks.push(s);
      for (let w = 0; w < WINDOW; w++) s.send(MSG);
    }
    await sleep(300);
    const tid = threadId('sgemu-udp');
    const perf = haveCommand('perf');
    const cpu: number[] = [], rate: number[] = [];
    const perReq = new Map<string, number[]>(EVENTS.map((e) => [e, []]));
    for (let k = 0; k < SAMPLES; k++) {
      const i0 = relay.info(), c0 = threadCpuMs(tid), t0 = performance.now();
      let counts = new Map<string, number>();
      if (perf) {
        // perf counts the relay thread while it runs `sleep` for the sample (-x, : CSV on stderr)
        // async: the clients in this process keep the load going meanwhile
        const p = spawn('perf', ['stat', '-x,', '-e', EVENTS.join(','), '-t', String(tid), '--', 'sleep', String(SAMPLE_MS / 1000)], { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        p.stderr.on('data', (d: Buffer) => { err += d.toString(); });
        await new Promise<void>((res) => p.on('close', () => res()));
        counts = new Map(err.split('\n').map((l) => l.split(',')).filter((f) => f.length > 3 && /^\d+$/.test(f[0]!)).map((f) => [f[2]!, Number(f[0])]));
      } else await sleep(SAMPLE_MS);
      const i1 = relay.info(), c1 = threadCpuMs(tid), secs = (performance.now() - t0) / 1000;
      const reqs = i1.forwarded - i0.forwarded;
      cpu.push((c1 - c0) * 1000 / reqs);
      rate.push(reqs / secs);
      for (const e of EVENTS) if (counts.has(e)) perReq.get(e)!.push(counts.get(e)! / reqs);
    }
    running = false;
    const detail = `rate ${fmtNum(median(rate))}/s; per request: ` +
      EVENTS.filter((e) => perReq.get(e)!.length > 0).map((e) => `${e.replace(/^.*sys_enter_?/, '').replace(/^$/, 'all syscalls') || e} ${median(perReq.get(e)!).toFixed(2)}`).join(', ');
    report({ name: 'udp relay thread CPU per request', value: median(cpu), unit: 'µs', n: SAMPLES, spreadPct: spreadPct(cpu), detail, target: '', met: null });
    const all = perReq.get('raw_syscalls:sys_enter')!;
    if (all.length > 0) report({ name: 'udp relay thread syscalls per request', value: median(all), unit: 'syscalls', n: all.length, spreadPct: spreadPct(all), detail, target: '', met: null });
    else console.log('# perf not available (or not permitted): no syscall counts');
  } finally {
    running = false;
    for (const s of socks) s.close();
    relay.close();
    closeFd(fd);
    await be.proc.stop();
  }
}

runMain(main);
