// The runner and the command against a stand-in daemon: a small HTTP server answering
// /v1/status and /v1/explain the way the real API does, in front of real loopback sockets — an
// echo backend (connected), a closed port (refused) and an accept-then-reset server (what a
// daemon without an exact kernel filter does to a denied flow); for UDP an echo, a closed port
// (the kernel's ICMP port unreachable: refused) and a gate that drops what it does not admit
// (timeout). Runs without the real daemon.

import t, { type Test } from 'tap';
import net from 'node:net';
import http from 'node:http';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runLoadtest } from '../../src/loadtest/run.js';
import loadtest from '../../src/cli/loadtest.js';
import { apiRequest } from '../../src/cli/command.js';
import { freePort } from '../helpers.js';

async function listen(t: Test, server: net.Server | http.Server, host = '127.0.0.1'): Promise<number> {
  await new Promise<void>((r) => server.listen(0, host, () => r()));
  t.teardown(() => new Promise<void>((r) => { server.close(() => r()); }));
  return (server.address() as net.AddressInfo).port;
}

async function udpServer(t: Test, admit: (addr: string) => boolean): Promise<number> {
  const s = dgram.createSocket('udp4');
  s.on('message', (m, r) => { if (admit(r.address)) s.send(m, r.port, r.address); });
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => { s.close(() => r()); }));
  return s.address().port;
}

/** A stand-in daemon: three TCP and three UDP listeners, explain answers from `decide`. */
async function fakeDaemon(t: Test) {
  const echo = net.createServer((c) => { c.on('error', () => {}); c.pipe(c); });
  // The gate admits sources up to 127.77.0.8 and resets the others after accept, as a daemon
  // without an exact kernel filter does.
  const admitted = (a: string | undefined) => Number(a?.split('.')[3]) <= 8;
  const resetter = net.createServer((c) => { c.on('error', () => {}); if (admitted(c.remoteAddress)) c.pipe(c); else c.resetAndDestroy(); });
  const echoPort = await listen(t, echo), resetPort = await listen(t, resetter);
  const closedPort = await freePort();
  const udpEcho = await udpServer(t, () => true), udpGate = await udpServer(t, admitted), udpClosed = await freePort('127.0.0.1', 'udp');
  const listener = (instance: string, port: number, backendUp: boolean, exactFilter: boolean, protocol = 'tcp') => ({
    kind: 'service', instance, protocol, address: '127.0.0.1', listenPort: port, rulePort: port, backend: `127.0.0.1:${port}`,
    backendUp, filter: 'rules', nativeFilter: true, exactFilter, flows: 0,
  });
  const state = {
    explains: 0,
    rejectDown: false,
    // instance → decision; "gate" denies sources above 127.77.0.8
    decide: (q: { from: string; to: string }) => ((q.to === 'gate' || q.to === 'ugate') && !admitted(q.from) ? 'deny' : 'allow'),
  };
  const api = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      if (req.url === '/v1/status') {
        res.end(JSON.stringify({
          refusal: 'raw', nativeFilter: true, conntrack: { entries: 1, max: 1000, overflows: 0 }, rssBytes: 4e7, cpu: { user: 1000, system: 0 }, counters: {},
          listeners: [listener('web', echoPort, true, true), listener('down', closedPort, false, true), listener('gate', resetPort, true, false),
            listener('uecho', udpEcho, true, true, 'udp'), listener('udown', udpClosed, false, true, 'udp'), listener('ugate', udpGate, true, true, 'udp')],
        }));
      } else if (req.url === '/v1/explain') {
        state.explains++;
        const q = JSON.parse(body) as { from: string; to: string };
        if (state.rejectDown && q.to === 'down') { res.statusCode = 400; res.end(JSON.stringify({ error: 'Usage', message: 'no such instance' })); return; }
        const decision = state.decide(q);
        res.end(JSON.stringify({ decision, checks: [], reason: decision === 'allow' ? `test allows ${q.from}` : `no rule allows ${q.from}` }));
      } else { res.statusCode = 404; res.end('{}'); }
    });
  });
  const apiPort = await listen(t, api);
  return { api: `127.0.0.1:${apiPort}`, state };
}

/** Runs the command with stdout captured (the TAP stream must stay clean). */
async function runCli(argv: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const orig = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array) => { out += String(chunk); return true; }) as typeof process.stdout.write;
  try { return { code: await loadtest.run(argv), out }; } finally { process.stdout.write = orig; }
}

t.test('runner: every outcome as expected, explain asked once per question', async (t) => {
  const d = await fakeDaemon(t);
  const r = await runLoadtest({
    api: d.api, flows: 150, durationS: 10, ratePerS: Infinity, concurrency: 16, timeoutMs: 500, sources: 16, mix: null,
    fetchJson: (p, b) => apiRequest(d.api, p, b), sampleMs: 200,
  });
  t.equal(r.flows, 150);
  t.equal(r.mismatchCount, 0, JSON.stringify(r.mismatches.slice(0, 3)));
  t.ok(r.outcomes.connected > 0 && r.outcomes.refused > 0 && r.outcomes.reset > 0, JSON.stringify(r.outcomes));
  t.equal(d.state.explains, 16 * 6, 'one explain per (source, instance, port)');
  t.match(r.notes.join('\n'), /UDP flows expect an echo/);
  const web = r.listeners.find((l) => l.instance === 'web')!;
  t.equal(web.outcomes.connected, web.flows, 'echo listener: all connected');
  const by = (i: string) => r.listeners.find((l) => l.instance === i)!;
  t.ok(by('uecho').flows > 0 && by('uecho').outcomes.connected === by('uecho').flows, `UDP echo: connected ${JSON.stringify(by('uecho').outcomes)}`);
  t.ok(by('udown').flows > 0 && by('udown').outcomes.refused === by('udown').flows, `UDP closed port: refused ${JSON.stringify(by('udown').outcomes)}`);
  t.ok(by('ugate').outcomes.timeout > 0 && by('ugate').outcomes.connected > 0, `UDP gate: admitted echo, others time out ${JSON.stringify(by('ugate').outcomes)}`);
  t.equal(by('uecho').latency.count, by('uecho').flows, 'UDP reply latency recorded');
  t.ok(web.latency.count === web.flows && web.latency.max > 0, 'connect latency recorded');
  t.ok(r.daemon.length >= 2, 'daemon figures sampled at start and end');
});

t.test('runner: --mix shares and the rate cap', async (t) => {
  const d = await fakeDaemon(t);
  const r = await runLoadtest({
    api: d.api, flows: 100, durationS: 10, ratePerS: Infinity, concurrency: 8, timeoutMs: 500, sources: 16,
    mix: { allowed: 70, denied: 20, refused: 10 }, fetchJson: (p, b) => apiRequest(d.api, p, b),
  });
  // allowed = web + gate's allowed sources (connected), denied = gate's others (reset here), refused = down.
  t.equal(r.outcomes.refused, 10, 'refused share');
  const down = r.listeners.find((l) => l.instance === 'down')!, udown = r.listeners.find((l) => l.instance === 'udown')!;
  t.equal(down.flows + udown.flows, 10, 'refused flows go to the TCP and UDP listeners with a closed backend');
  t.ok(down.flows > 0 && udown.flows > 0);
  t.equal(r.mismatchCount, 0);
  const t0 = performance.now();
  const slow = await runLoadtest({
    api: d.api, flows: null, durationS: 0.5, ratePerS: 40, concurrency: 8, timeoutMs: 500, sources: 4, mix: null,
    fetchJson: (p, b) => apiRequest(d.api, p, b),
  });
  const el = (performance.now() - t0) / 1000;
  t.ok(slow.flows >= 5 && slow.flows <= 40 * 0.5 + 2, `0.5 s at 40/s: ${slow.flows} flows`);
  t.ok(el < 3, `duration bounded (${el.toFixed(2)} s)`);
});

t.test('command: exit 0 and a report; a stale policy answer is a mismatch and exit 1', async (t) => {
  const d = await fakeDaemon(t);
  const dir = t.testdir({});
  const report = join(dir, 'r.html');
  const ok = await runCli(['--api', d.api, '--flows', '60', '--sources', '12', '--timeout', '0.5', '--report', report]);
  t.equal(ok.code, 0, ok.out);
  t.match(ok.out, /no mismatches/);
  t.match(readFileSync(report, 'utf8'), /<svg /);

  // The policy now says "allow" for everyone at the gate, but the gate still resets most: mismatches.
  d.state.decide = () => 'allow';
  const bad = await runCli(['--api', d.api, '--flows', '60', '--sources', '12', '--timeout', '0.5', '--json']);
  t.equal(bad.code, 1);
  const j = JSON.parse(bad.out) as { mismatchCount: number; mismatches: { expected: string; actual: string; reason: string; instance: string }[] };
  t.ok(j.mismatchCount > 0);
  t.match(j.mismatches[0], { instance: 'gate', expected: 'connected', actual: 'reset', reason: /test allows/ });
});

t.test('runner: a question the daemon rejects drops those flows with a note', async (t) => {
  const d = await fakeDaemon(t);
  d.state.rejectDown = true;
  const r = await runLoadtest({
    api: d.api, flows: 30, durationS: 10, ratePerS: Infinity, concurrency: 8, timeoutMs: 500, sources: 4, mix: null,
    fetchJson: (p, b) => apiRequest(d.api, p, b),
  });
  t.equal(r.listeners.find((l) => l.instance === 'down')!.flows, 0, 'no flow to the listener without an answer');
  t.equal(r.flows, 30);
  t.match(r.notes.join('\n'), /explain failed for 4 question\(s\), 4 flow pair\(s\) skipped/);
});

t.test('command: bad input and no daemon are exit-2 errors', async (t) => {
  await t.rejects(runCli(['--flows', '10', '--duration', '2']), { code: 'Usage' });
  await t.rejects(runCli(['--mix', 'bogus=1']), { code: 'Usage' });
  await t.rejects(runCli(['--concurrency', '0']), { code: 'Usage' });
  const port = await freePort();
  await t.rejects(runCli(['--api', `127.0.0.1:${port}`, '--flows', '1']), { code: 'DaemonUnreachable' });
});
