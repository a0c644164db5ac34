// `sgemu run --busy-poll US` (issue 16: added latency): each native TCP relay thread polls epoll
// for up to US µs after a turn before it sleeps. What is checked here is what must hold whatever
// the machine: the option's range (a usage error, exit 2, outside 0..1000), bytes relayed
// unchanged with polling on, and that polling follows activity only: an idle relay sleeps (its
// threads use next to no CPU), so the option costs nothing while nothing moves. Its effect on
// latency and CPU is a timing claim: scripts/bench/tcp.ts --busy-poll US (bench-results).

import t from 'tap';
import net from 'node:net';
import { readdirSync, readFileSync } from 'node:fs';
import { RUN_OPTIONS, daemonOptions } from '../../src/cli/run.js';
import { parseCommandArgs } from '../../src/cli/command.js';
import { addonHandle } from '../../src/native/sock-filter.js';
import { RELAY_BUSY_POLL_MAX_US, setRelayBusyPoll, tcpRelayStatus } from '../../src/native/tcp-relay.js';
import { echoServer, freePort, freshAddr, startDaemon } from './helpers.js';

const relay = tcpRelayStatus();
const skip = relay.available ? false : `native TCP relay unavailable: ${relay.reason}`;

/** CPU ms of this process's relay threads (utime + stime, clock ticks of 10 ms). */
function relayCpuMs(): number {
  let ticks = 0;
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      if (!readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').startsWith('sgemu-tcp-rel')) continue;
      const f = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch { /* the thread ended */ }
  }
  return ticks * 10;
}

t.test('--busy-poll: 0 unless asked, 0..1000 µs, anything else a usage error', async (t) => {
  const opts = (...argv: string[]) => daemonOptions(parseCommandArgs(argv, RUN_OPTIONS).values, () => {});
  t.equal(opts().relayBusyPollUs, 0, 'off by default: the relay sleeps as soon as it has nothing to do');
  t.equal(opts('--busy-poll', '50').relayBusyPollUs, 50);
  t.equal(opts(`--busy-poll=${RELAY_BUSY_POLL_MAX_US}`).relayBusyPollUs, RELAY_BUSY_POLL_MAX_US);
  t.throws(() => opts('--busy-poll', '1001'), { code: 'Usage', message: /--busy-poll 1001 is out of range \(0\.\.1000\)/ });
  t.throws(() => opts('--busy-poll', '-1'), { code: 'Usage' });
  t.throws(() => opts('--busy-poll', '20us'), { code: 'Usage', message: /not a whole number/ });
});

t.test('the addon refuses a polling time past its limit', { skip }, async (t) => {
  const a = addonHandle() as unknown as { relayBusyPoll(us: unknown): number };
  t.throws(() => a.relayBusyPoll(RELAY_BUSY_POLL_MAX_US + 1), TypeError);
  t.throws(() => a.relayBusyPoll(-1), TypeError);
  t.throws(() => a.relayBusyPoll('100'), TypeError);
  t.equal(a.relayBusyPoll(0), 0);
});

t.test('with 1000 µs of polling: 300 round trips relayed unchanged, then an idle relay sleeps', { skip }, async (t) => {
  t.teardown(() => setRelayBusyPoll(0));
  const addr = freshAddr(), port = await freePort(addr);
  const echo = await echoServer(t);
  await startDaemon(t, `
securityGroups:
  - { id: sg-b, ingress: [ { protocol: tcp, ports: ${port}, cidr: 127.0.0.0/8 } ] }
instances:
  - { name: b, address: ${addr}, securityGroups: [sg-b], services: [ { protocol: tcp, port: ${port}, backend: "127.0.0.1:${echo.port}" } ] }
`, { relayBusyPollUs: RELAY_BUSY_POLL_MAX_US });
  const c = net.connect({ host: addr, port });
  c.setNoDelay(true);
  t.teardown(() => c.destroy());
  await new Promise<void>((res, rej) => { c.once('connect', res); c.once('error', rej); });
  let wrong = 0;
  for (let i = 0; i < 300; i++) {
    const msg = Buffer.from(`ping ${i} ${'x'.repeat(i % 97)}`);
    const back = await new Promise<Buffer>((res) => {
      const parts: Buffer[] = [];
      let n = 0;
      const on = (d: Buffer) => { parts.push(d); n += d.length; if (n >= msg.length) { c.off('data', on); res(Buffer.concat(parts)); } };
      c.on('data', on);
      c.write(msg);
    });
    if (!back.equals(msg)) wrong++;
  }
  t.equal(wrong, 0, 'every echo came back byte for byte');
  // Idle: each thread polls for at most 1 ms after its last turn, then blocks in epoll_wait. Had
  // it kept polling, 2 s of idle would be ~2000 ms of CPU per thread.
  await new Promise((r) => setTimeout(r, 100));
  const before = relayCpuMs();
  await new Promise((r) => setTimeout(r, 2000));
  const used = relayCpuMs() - before;
  t.ok(used <= 200, `the idle relay threads used ${used} ms of CPU in 2 s (polling stops when nothing moves)`);
});
