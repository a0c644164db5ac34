// The capability helper's cost (issue #11): a daemon whose listeners come from sgemu-netd over a
// socketpair against one that opens them itself, in the same run, alternating.
//
// Run (from the repo root, as root so that both routes exist; the helper then holds root's
// capabilities, and its cost is the same IPC as with file capabilities):
//   TS_NODE_TRANSPILE_ONLY=1 node --import @tapjs/typescript/import scripts/bench/privilege.ts [--quick]
//     [--dist] [--results FILE]
//
// start-up: spawn → "ready:" with 100 listeners (80 TCP, 20 UDP); target ≤ 2x in-process.
// reload: the daemon's own "reloaded … (X ms)" for a SIGHUP that changes every listener's rules
//   (every TCP filter swapped through the helper).
// refusal: connect() to an allowed listener whose backend is down until ECONNREFUSED (SYN seen
//   by the helper's packet socket, RST|ACK from its raw socket); SPEC: within 50 ms.

import net from 'node:net';
import { QUICK, header, median, pairedRatio, percentile, report, runMain, skip, sleep, spreadPct, startSgemu, freePort, type Sgemu } from './lib.js';

const ROUNDS = QUICK ? 1 : 5;
const LISTENERS_TCP = 80, LISTENERS_UDP = 20;
const REFUSALS = QUICK ? 10 : 60;
const BASE = '127.0.9.';

function config(backend: number, cidr: string, ports: number[]): string {
  const services = ports.map((p, i) => `      - { protocol: ${i < LISTENERS_TCP ? 'tcp' : 'udp'}, port: ${p}, backend: "127.0.0.1:${backend}" }`);
  return `securityGroups:
  - id: sg-p
    ingress:
      - { protocol: tcp, ports: 1-65535, cidr: ${cidr} }
      - { protocol: udp, ports: 1-65535, cidr: ${cidr} }
instances:
  - name: p
    address: ${BASE}1
    securityGroups: [sg-p]
    services:
${services.join('\n')}
`;
}

async function start(route: 'process' | 'helper', yaml: string): Promise<{ sg: Sgemu; ms: number }> {
  process.env.SGEMU_PRIVILEGE = route;
  const t0 = performance.now();
  const sg = await startSgemu(yaml);
  return { sg, ms: performance.now() - t0 };
}

function refusedMs(port: number): Promise<number | null> {
  return new Promise((res) => {
    const t0 = performance.now();
    const s = net.connect({ host: `${BASE}1`, port, localAddress: '127.0.0.1' });
    const timer = setTimeout(() => { s.destroy(); res(null); }, 2000);
    s.once('connect', () => { clearTimeout(timer); s.destroy(); res(null); });
    s.once('error', (e: NodeJS.ErrnoException) => { clearTimeout(timer); res(e.code === 'ECONNREFUSED' ? performance.now() - t0 : null); });
  });
}

async function main(): Promise<void> {
  header('privilege: the capability helper against in-process privilege');
  if (process.getuid?.() !== 0) { skip('helper start-up (100 listeners)', 'needs root for the in-process baseline', '≤ 2x in-process'); return; }
  const dead = await freePort('127.0.0.1');        // nothing listens: every service's backend is down
  const ports: number[] = [];
  for (let i = 0; i < LISTENERS_TCP + LISTENERS_UDP; i++) ports.push(await freePort(`${BASE}1`));
  const a = config(dead, '127.0.0.0/8', ports), b = config(dead, '127.0.0.0/9', ports);
  const startMs: Record<string, number[]> = { process: [], helper: [] };
  const reloadMs: Record<string, number[]> = { process: [], helper: [] };
  const refuse: Record<string, number[]> = { process: [], helper: [] };
  let lost = 0;
  for (let r = 0; r < ROUNDS; r++) {
    for (const route of (r % 2 === 0 ? ['process', 'helper'] : ['helper', 'process']) as ('process' | 'helper')[]) {
      let run: { sg: Sgemu; ms: number };
      try { run = await start(route, a); } catch (e) {
        skip(`${route} start-up`, e instanceof Error ? e.message.split('\n')[0]! : String(e));
        return;
      }
      startMs[route]!.push(run.ms);
      if (!new RegExp(`privilege: ${route === 'helper' ? 'root \\(capability helper' : 'root \\(this process'}`).test(run.sg.proc.output())) {
        console.log(`# WARNING: ${route} run did not take the ${route} route`);
      }
      await sleep(200);
      for (let i = 0; i < REFUSALS; i++) {
        const ms = await refusedMs(ports[i % LISTENERS_TCP]!);
        if (ms === null) lost++; else refuse[route]!.push(ms);
      }
      run.sg.rewrite(b);
      run.sg.reload();
      const deadline = Date.now() + 10_000;
      while (!/reloaded: .*\(([\d.]+) ms\)/.test(run.sg.proc.output()) && Date.now() < deadline) await sleep(20);
      const m = /reloaded: .*\(([\d.]+) ms\)/.exec(run.sg.proc.output());
      if (m) reloadMs[route]!.push(Number(m[1]));
      await run.sg.proc.stop();
    }
  }
  delete process.env.SGEMU_PRIVILEGE;
  const st = pairedRatio(startMs.helper!, startMs.process!);
  if (st) report({ name: 'helper start-up (100 listeners)', value: st.value, unit: 'x in-process', n: st.n, spreadPct: st.spreadPct,
    detail: `helper ${median(startMs.helper!).toFixed(0)} ms, in-process ${median(startMs.process!).toFixed(0)} ms (spawn → ready)`,
    target: '≤ 2x in-process', met: st.value <= 2 });
  const rl = pairedRatio(reloadMs.helper!, reloadMs.process!);
  if (rl) report({ name: 'helper reload (100 filter swaps)', value: rl.value, unit: 'x in-process', n: rl.n, spreadPct: rl.spreadPct,
    detail: `helper ${median(reloadMs.helper!).toFixed(1)} ms, in-process ${median(reloadMs.process!).toFixed(1)} ms (daemon-reported)`, target: '', met: null });
  for (const route of ['helper', 'process'] as const) {
    const xs = [...refuse[route]!].sort((x, y) => x - y);
    if (xs.length === 0) { skip(`refusal (${route})`, 'no connect was refused'); continue; }
    report({ name: `refusal latency (${route === 'helper' ? 'helper' : 'in-process'})`, value: median(xs), unit: 'ms', n: xs.length, spreadPct: spreadPct(xs),
      detail: `p90 ${percentile(xs, 90).toFixed(2)} ms, max ${xs[xs.length - 1]!.toFixed(2)} ms${lost ? `; ${lost} connects not refused in 2 s` : ''}`,
      target: '≤ 50 ms', met: percentile(xs, 90) <= 50 });
  }
}

runMain(main);
