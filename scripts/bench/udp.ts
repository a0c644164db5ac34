// UDP request/reply rate: several flows, several datagrams in flight each, direct to the echo
// backend, through socat (UDP4-LISTEN fork: one child per flow) and through the sgemu daemon, in
// one run, samples taken in alternation.
//
// Run (from the repo root):
//   TS_NODE_TRANSPILE_ONLY=1 node --import @tapjs/typescript/import scripts/bench/udp.ts [--quick]
//     [--dist] [--cpu-prof DIR] [--results FILE] [--node-relay]
//
// --node-relay adds a fourth target: a second daemon with SGEMU_RELAY=node (node:dgram relay
// instead of the native recvmmsg/sendmmsg thread, native-notes/udp-batching.md), to compare both.
//
// F flows, each a connected UDP socket from its own address 127.0.2.1.. (a distinct conntrack
// entry and socat child each), keep W 64-byte requests in flight: every reply sends the next. A
// flow that got no reply for 50 ms counts its outstanding requests as lost and sends W again.
// Rate = replies / s. Targets (issue 5): ≥ 0.7x direct and ≥ 1.5x socat.

import dgram from 'node:dgram';
import os from 'node:os';
import {
  openConfig,
  QUICK, addCpu, busyPct, cpuPer, cpuReading, cpuTally, fmtNum, groupCpuMs, header, median, pairedRatio, report, runMain, skip, sleep,
  startBackends, startSgemu, startSocatUdp, freePort, type CpuTally, type Proc, type Sgemu,
} from './lib.js';

const ROUNDS = QUICK ? 2 : 5;
const FLOWS = QUICK ? 4 : 16;
const WINDOW = 4;
const SAMPLE_MS = QUICK ? 300 : 2000;
const WARM_MS = QUICK ? 100 : 300;
const SGEMU_ADDR = '127.0.0.50';
const SOCAT_ADDR = '127.0.0.70';
const MSG = Buffer.alloc(64, 0x75);
const NODE_RELAY = process.argv.includes('--node-relay');
const NODE_ADDR = '127.0.0.51';

interface Flow { sock: dgram.Socket; inflight: number; lastReply: number }
/** cpu: while measuring, summed over rounds (done = replies); the relay is its process group. */
interface Target {
  name: string; host: string; port: number; flows: Flow[]; replies: number; lost: number; running: boolean;
  proxyPgid: number | null; cpu: CpuTally;
}
let backendPid = 0;

const cpuNow = (t: Target): CpuTally => cpuReading(t.replies, backendPid, t.proxyPgid === null ? 0 : groupCpuMs(t.proxyPgid));

async function openFlows(t: Target): Promise<void> {
  for (let i = 0; i < FLOWS; i++) {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((res, rej) => { sock.once('error', rej); sock.bind(0, `127.0.2.${i + 1}`, () => res()); });
    await new Promise<void>((res, rej) => { sock.once('error', rej); sock.connect(t.port, t.host, () => res()); });
    const f: Flow = { sock, inflight: 0, lastReply: performance.now() };
    sock.on('error', () => { /* ICMP unreachable while a proxy restarts: counted as loss */ });
    sock.on('message', () => {
      t.replies++;
      f.inflight--;
      f.lastReply = performance.now();
      if (t.running) { f.inflight++; sock.send(MSG); }
    });
    t.flows.push(f);
  }
}

/** Replies per second over `ms` (after `warmMs` of the same load). */
async function measure(t: Target, warmMs: number, ms: number): Promise<number> {
  t.running = true;
  const refill = setInterval(() => {
    const now = performance.now();
    for (const f of t.flows) {
      if (now - f.lastReply < 50 && f.inflight > 0) continue;
      t.lost += Math.max(0, f.inflight);
      f.inflight = WINDOW;
      f.lastReply = now;
      for (let i = 0; i < WINDOW; i++) f.sock.send(MSG);
    }
  }, 25);
  for (const f of t.flows) { f.inflight = WINDOW; f.lastReply = performance.now(); for (let i = 0; i < WINDOW; i++) f.sock.send(MSG); }
  await sleep(warmMs);
  const c0 = cpuNow(t);
  const r0 = t.replies, t0 = performance.now();
  await sleep(ms);
  const rate = (t.replies - r0) / ((performance.now() - t0) / 1000);
  addCpu(t.cpu, c0, cpuNow(t));
  t.running = false;
  clearInterval(refill);
  await sleep(60);   // let the in-flight requests drain before the next target runs
  return rate;
}

async function main(): Promise<void> {
  header('udp benchmark (request/reply rate)');
  console.log(`# rounds=${ROUNDS}; ${FLOWS} flows × ${WINDOW} in flight, 64 B, ${SAMPLE_MS} ms per sample; socat: UDP4-LISTEN fork`);
  const be = await startBackends();
  const targets: Target[] = [];
  backendPid = be.proc.pid;
  const mk = (name: string, host: string, port: number, proxyPgid: number | null): Target => ({
    name, host, port, flows: [], replies: 0, lost: 0, running: false, proxyPgid, cpu: cpuTally(),
  });
  targets.push(mk('direct', '127.0.0.1', be.udpEcho, null));
  let socat: Proc | null = null;
  const socatPort = await freePort(SOCAT_ADDR);
  socat = await startSocatUdp(SOCAT_ADDR, socatPort, be.udpEcho);
  if (socat) targets.push(mk('socat', SOCAT_ADDR, socatPort, socat.pid));
  else console.log('# socat not installed (apt-get install -y socat): socat baseline skipped');
  let sgemu: Sgemu | null = null;
  const sPort = await freePort(SGEMU_ADDR);
  try {
    sgemu = await startSgemu(openConfig(SGEMU_ADDR, 'udp', [[sPort, be.udpEcho]]));
    targets.push(mk('sgemu', SGEMU_ADDR, sPort, sgemu.proc.pid));
  } catch (e) {
    console.log(`# sgemu did not start: ${e instanceof Error ? e.message.split('\n').slice(0, 6).join(' | ') : String(e)}`);
  }
  let sgemuNode: Sgemu | null = null;
  if (NODE_RELAY) {
    const nPort = await freePort(NODE_ADDR);
    const saved = process.env.SGEMU_RELAY;
    process.env.SGEMU_RELAY = 'node';
    try {
      sgemuNode = await startSgemu(openConfig(NODE_ADDR, 'udp', [[nPort, be.udpEcho]]));
      targets.push(mk('sgemu-node', NODE_ADDR, nPort, sgemuNode.proc.pid));
    } catch (e) {
      console.log(`# sgemu (SGEMU_RELAY=node) did not start: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
    } finally {
      if (saved === undefined) delete process.env.SGEMU_RELAY; else process.env.SGEMU_RELAY = saved;
    }
  }
  try {
    for (const t of targets) await openFlows(t);
    const samples = new Map<string, number[]>(targets.map((t) => [t.name, []]));
    for (let r = 0; r < ROUNDS; r++) for (const t of targets) samples.get(t.name)!.push(await measure(t, WARM_MS, SAMPLE_MS));
    // Where the CPU goes: on a machine with few cores the clients, the backend and the relay share
    // them, so a relay's rate is bounded by cores / (CPU per request of all three), not by the relay.
    const ncpu = os.availableParallelism();
    console.log(`# CPU per request while measuring (${ncpu} cores): µs of the clients / backend / relay; machine busy`);
    for (const t of targets) {
      const c = t.cpu, us = (ms: number): string => cpuPer(c, ms, 1);
      const sum = c.done > 0 ? (c.client + c.backend + c.proxy) * 1000 / c.done : NaN;
      console.log(`#   ${t.name.padEnd(10)} ${us(c.client)} / ${us(c.backend)} / ${t.proxyPgid === null ? '-' : us(c.proxy)} µs = ${sum.toFixed(1)} µs; ` +
        `busy ${busyPct(c)}%; ${ncpu} cores / that = ${fmtNum(ncpu * 1e6 / sum)}/s`);
    }
    const detail = [...samples].map(([k, v]) => `${k} ${fmtNum(median(v))}/s`).join(', ')
      + '; lost ' + targets.map((t) => `${t.name} ${t.lost}`).join(', ');
    const d = samples.get('direct')!, s = samples.get('socat'), g = samples.get('sgemu');
    const name = `udp req/s ${FLOWS}×${WINDOW}`;
    if (g && median(g) === 0) console.log(`# sgemu relayed no reply; the daemon's log ends with:\n${sgemu!.proc.output().trimEnd().split('\n').slice(-8).map((l) => `#   ${l}`).join('\n')}`);
    if (g) {
      const vd = pairedRatio(g, d)!;
      report({ name: `${name} sgemu/direct`, value: vd.value, unit: 'x direct', n: vd.n, spreadPct: vd.spreadPct, detail, target: '≥ 0.7x direct', met: vd.value >= 0.7 });
      if (s) {
        const vs = pairedRatio(g, s)!;
        report({ name: `${name} sgemu/socat`, value: vs.value, unit: 'x socat', n: vs.n, spreadPct: vs.spreadPct, detail, target: '≥ 1.5x socat', met: vs.value >= 1.5 });
      } else skip(`${name} sgemu/socat`, 'socat not installed', '≥ 1.5x socat');
    } else {
      skip(`${name} sgemu/direct`, 'the daemon did not start', '≥ 0.7x direct');
      skip(`${name} sgemu/socat`, 'the daemon did not start', '≥ 1.5x socat');
    }
    const gn = samples.get('sgemu-node');
    if (g && gn) {
      const vn = pairedRatio(g, gn)!;
      report({ name: `${name} sgemu/sgemu-node`, value: vn.value, unit: 'x node relay', n: vn.n, spreadPct: vn.spreadPct, detail, target: '', met: null });
      const nd = pairedRatio(gn, d)!;
      report({ name: `${name} sgemu-node/direct`, value: nd.value, unit: 'x direct', n: nd.n, spreadPct: nd.spreadPct, detail, target: '', met: null });
    }
    if (s) {
      const sd = pairedRatio(s, d)!;
      report({ name: `${name} socat/direct`, value: sd.value, unit: 'x direct', n: sd.n, spreadPct: sd.spreadPct, detail, target: '', met: null });
    }
  } finally {
    for (const t of targets) for (const f of t.flows) f.sock.close();
    await sgemu?.proc.stop();
    await sgemuNode?.proc.stop();
    await socat?.stop();
    await be.proc.stop();
  }
}

runMain(main);
