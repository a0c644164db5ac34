// The native TCP relay with two worker threads (setRelayThreads, `sgemu run --threads`; issue 16):
// both threads run (named, every signal blocked), short flows accepted by either one relay
// their bytes unchanged and leave no flow, pipe or fd behind, and calls from the JS thread
// (connect, reset, blackhole, faults) reach the flow whichever thread owns it. The rest of the
// relay's behaviour runs with several threads through SGEMU_RELAY_THREADS=2 on the other suites.

import t from 'tap';
import net from 'node:net';
import { readdirSync, readFileSync } from 'node:fs';
import { createTcpListener, nativeStatus } from '../../src/native/sock-filter.js';
import {
  relayBlackhole, relayConnect, relayFaults, relayFlowFaults, relayListen, relayReset, relayStats, relayUnlisten, setRelayThreads,
  tcpRelayStatus, type RelayFlow,
} from '../../src/native/tcp-relay.js';
import { compileAcceptAll, encodeProgram } from '../../src/policy/bpf.js';
import { FAULT_CODES } from '../../src/native/fault-codes.js';
import { freePort, sleep, until } from '../e2e/helpers.js';

const status = tcpRelayStatus();
const skip = !nativeStatus().loaded ? `native addon not loaded: ${nativeStatus().error}`
  : !status.available ? `native TCP relay unavailable: ${status.reason}` : '';
if (skip) t.plan(0, skip);
else run();

function relayThreadIds(): number[] {
  return readdirSync('/proc/self/task').filter((tid) => {
    try { return readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim().startsWith('sgemu-tcp-rel'); } catch { return false; }
  }).map(Number);
}

function run(): void {
  setRelayThreads(2);

  async function echo(): Promise<{ port: number; close: () => void }> {
    const srv = net.createServer((c) => { c.on('error', () => {}); c.pipe(c); });
    await new Promise<void>((res) => srv.listen(0, '127.0.0.1', () => res()));
    return { port: (srv.address() as net.AddressInfo).port, close: () => srv.close() };
  }

  type Answer = (id: number) => 'connect' | 'reset' | 'hold';
  async function relay(backendPort: number, answer: Answer = () => 'connect') {
    const port = await freePort('127.0.0.1');
    const fd = createTcpListener({ family: 4, address: '127.0.0.1', port, program: encodeProgram(compileAcceptAll()) });
    const ids: number[] = [];
    const ended = new Map<number, Promise<void>>();
    const lid = relayListen(fd, {
      onAccept(id): RelayFlow | null {
        ids.push(id);
        const a = answer(id);
        if (a === 'reset') { relayReset(id); return null; }
        let end!: () => void;
        ended.set(id, new Promise<void>((r) => { end = r; }));
        if (a === 'connect') relayConnect(id, '127.0.0.1', backendPort, null);
        return { onConnected() {}, onFin() {}, onFailed() { end(); }, onClosed() { end(); } };
      },
    });
    return { port, lid, ids, ended };
  }

  function roundTrip(port: number, msg: string): Promise<string> {
    return new Promise((res, rej) => {
      const c = net.connect(port, '127.0.0.1', () => c.end(msg));
      let got = '';
      c.on('data', (b) => { got += b.toString(); });
      c.on('end', () => { c.destroy(); res(got); });
      c.on('error', rej);
    });
  }

  t.test('two threads: both run with every signal blocked; 600 short flows over both, nothing left behind', async (t) => {
    const be = await echo();
    t.teardown(be.close);
    const r = await relay(be.port);
    t.teardown(() => relayUnlisten(r.lid));
    t.equal(relayStats()!.threads, 2, 'relayStats reports 2 threads');
    const tids = relayThreadIds();
    t.equal(tids.length, 2, 'two relay threads (sgemu-tcp-relay, sgemu-tcp-rel1)');
    for (const tid of tids) {
      const m = /^SigBlk:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/self/task/${tid}/status`, 'utf8'));
      t.ok(m && (BigInt('0x' + m[1]) & ((1n << 2n) | (1n << 14n))) === ((1n << 2n) | (1n << 14n)), `thread ${tid}: SIGINT and SIGTERM blocked`);
    }
    const fds = () => readdirSync('/proc/self/fd').length;
    await roundTrip(r.port, 'warm');
    await sleep(50);
    const before = fds();
    let bad = 0, n = 0;
    const deadline = Date.now() + 20_000;
    while (n < 600 && Date.now() < deadline) {
      const batch = await Promise.all(Array.from({ length: 30 }, (_, i) => roundTrip(r.port, `flow ${n + i} `.repeat(3))));
      batch.forEach((got, i) => { if (got !== `flow ${n + i} `.repeat(3)) bad++; });
      n += 30;
    }
    await Promise.all(r.ended.values());
    await until(() => relayStats()!.flows === 0, 5000);
    t.ok(n >= 300, `${n} flows in the time box`);
    t.equal(bad, 0, 'every flow echoed its bytes unchanged');
    const odd = r.ids.filter((id) => (id & 0x1ffff) % 2 === 1).length;
    t.comment(`flows by owning thread: ${r.ids.length - odd} on thread 0, ${odd} on thread 1`);
    const st = relayStats()!;
    t.equal(st.flows, 0, 'no live flow in the relay');
    t.equal(st.pipesInUse, 0, 'every pipe back in its pool');
    t.ok(fds() <= before + 4, `fds: ${before} before, ${fds()} after (each thread's pool may keep a pair)`);
  });

  t.test('two threads: reset, blackhole and faults from the JS thread reach flows of either thread', async (t) => {
    const be = await echo();
    t.teardown(be.close);
    const r = await relay(be.port, () => 'connect');
    t.teardown(() => relayUnlisten(r.lid));
    // Hold 16 connections open so that both threads are likely to own some.
    const socks: net.Socket[] = [];
    for (let i = 0; i < 16; i++) {
      const c = net.connect(r.port, '127.0.0.1');
      c.on('error', () => {});
      await new Promise<void>((res) => c.once('connect', () => res()));
      socks.push(c);
    }
    t.teardown(() => { for (const c of socks) c.destroy(); });
    await until(() => r.ids.length === 16 && relayStats()!.flows === 16, 5000);
    // A latency fault on the listener reaches every live flow, whichever thread owns it.
    // [code, stream (1 downstream), toxicity, latency ms, jitter ms, -, id] (src/native/fault-codes.ts)
    relayFaults(r.lid, Float64Array.of(FAULT_CODES['latency']!, 1, 1, 1, 0, 0, 1));
    t.ok(r.ids.every((id) => relayFlowFaults(id) === 1), 'every live flow got the fault');
    relayFaults(r.lid, new Float64Array(0));
    t.ok(r.ids.every((id) => relayFlowFaults(id) === 0), 'and lost it');
    t.ok(relayBlackhole(r.ids[0]!), 'blackhole of a relaying flow');
    for (const id of r.ids.slice(1)) relayReset(id);
    await until(() => relayStats()!.flows === 1, 5000);
    t.equal(relayStats()!.flows, 1, 'the reset flows are gone, the blackholed one stays');
    t.notOk(relayReset(r.ids[1]!), 'a stale id is refused (ENOENT)');
  });
}
