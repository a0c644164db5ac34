// The load of test/control/ui-load.test.ts, in its own process so that the test's event loop
// (and its echo backend) does not slow the generator: real TCP connections to HOST:PORT at RATE
// per second for SECONDS, at most 600 in flight; each closes once connected. Every twentieth
// comes from DENIED (dropped by the filter: given up after 300 ms). Prints one JSON line; the
// denied flows' outcomes are also counted apart (an overloaded machine can time out allowed ones too).
// argv: HOST PORT RATE SECONDS DENIED SOURCE...

import net from 'node:net';

const [host, portText, rateText, secondsText, deniedSrc, ...sources] = process.argv.slice(2);
const port = Number(portText), RATE = Number(rateText), SECONDS = Number(secondsText);
let started = 0, connected = 0, timedOut = 0, failed = 0, inFlight = 0;
const denied = { started: 0, connected: 0, timedOut: 0 };
const failures: Record<string, number> = {};

function one(src: string, deniedFlow: boolean): void {
  inFlight++;
  started++;
  if (deniedFlow) denied.started++;
  const s = net.connect({ host: host!, port, localAddress: src });
  let done = false;
  const end = (kind: 'connected' | 'timeout' | 'failed', code?: string) => {
    if (done) return;
    done = true;
    inFlight--;
    clearTimeout(timer);
    if (kind === 'connected') { connected++; if (deniedFlow) denied.connected++; }
    else if (kind === 'timeout') { timedOut++; if (deniedFlow) denied.timedOut++; }
    else { failed++; failures[code ?? 'error'] = (failures[code ?? 'error'] ?? 0) + 1; }
    s.destroy();
  };
  const timer = setTimeout(() => end('timeout'), deniedFlow ? 300 : 2000);
  s.on('connect', () => end('connected'));
  s.on('error', (e: NodeJS.ErrnoException) => end('failed', e.code));
}

const t0 = Date.now();
const total = RATE * SECONDS;
const timer = setInterval(() => {
  // On schedule, catching up on late ticks by at most 5 ticks' worth; never beyond the total.
  const due = Math.min(Math.floor(((Date.now() - t0) / 1000) * RATE), total) - started;
  for (let i = 0; i < Math.min(due, RATE / 20) && inFlight < 600; i++) {
    if (started % 20 === 19) one(deniedSrc!, true); else one(sources[started % sources.length]!, false);
  }
  if (started >= total || Date.now() - t0 > SECONDS * 1000 * 2) {
    clearInterval(timer);
    const loadS = (Date.now() - t0) / 1000;
    const wait = setInterval(() => {
      if (inFlight > 0 && Date.now() - t0 < (loadS + 3) * 1000) return;
      clearInterval(wait);
      process.stdout.write(JSON.stringify({ started, connected, timedOut, failed, failures, loadS, denied }) + '\n');
    }, 50);
  }
}, 10);
