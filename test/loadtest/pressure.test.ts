// `sgemu loadtest` against a whole daemon on loopback, the parts beyond plain TCP (issue #7): UDP
// flows (echo, a source the rules deny, a backend that is down) and conntrack pressure (--hold):
// once the held flows fill the daemon's table, every new flow times out and is no mismatch.

import t, { type Test } from 'tap';
import dgram from 'node:dgram';
import { freshAddr, freePort, echoServer, startDaemon, sleep, until } from '../e2e/helpers.js';
import { runLoadtest } from '../../src/loadtest/run.js';
import { apiRequest } from '../../src/cli/command.js';
import loadtest from '../../src/cli/loadtest.js';

async function runCli(argv: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const orig = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array) => { out += String(chunk); return true; }) as typeof process.stdout.write;
  try { return { code: await loadtest.run(argv), out }; } finally { process.stdout.write = orig; }
}

/** A UDP echo on 127.0.0.1 (closed in teardown). */
async function udpEcho(t: Test): Promise<number> {
  const s = dgram.createSocket('udp4');
  s.on('message', (m, r) => s.send(m, r.port, r.address));
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => { s.close(() => r()); }));
  return s.address().port;
}

t.test('UDP flows through a real daemon: echo, denied, backend down; no mismatch', async (t) => {
  const dns = freshAddr(), down = freshAddr();
  const echoPort = await udpEcho(t), deadPort = await freePort('127.0.0.1', 'udp');
  // Sources 127.77.0.1..40: the /27 admits .1-.31 to dns; down admits everyone.
  const { daemon } = await startDaemon(t, `
securityGroups:
  - id: sg-dns
    description: dns
    ingress: [{ protocol: udp, ports: 5353, cidr: 127.77.0.0/27 }]
  - id: sg-down
    description: down
    ingress: [{ protocol: udp, ports: 5354, cidr: 127.0.0.0/8 }]
instances:
  - { name: dns, address: ${dns}, securityGroups: [sg-dns], services: [{ protocol: udp, port: 5353, backend: "127.0.0.1:${echoPort}" }] }
  - { name: udown, address: ${down}, securityGroups: [sg-down], services: [{ protocol: udp, port: 5354, backend: "127.0.0.1:${deadPort}" }] }
`, { api: { host: '127.0.0.1', port: 0 } });
  const api = `127.0.0.1:${daemon.api!.port}`;
  await sleep(100);   // let the liveness monitor see the dead backend
  const refusal = (daemon.status() as { refusal: string }).refusal;

  const r = await runLoadtest({
    api, flows: 120, durationS: 10, ratePerS: Infinity, concurrency: 16, timeoutMs: 500, sources: 40, mix: null,
    fetchJson: (p, b) => apiRequest(api, p, b), sampleMs: 500,
  });
  t.equal(r.flows, 120);
  t.equal(r.mismatchCount, 0, JSON.stringify(r.mismatches.slice(0, 3)));
  const d = r.listeners.find((l) => l.instance === 'dns')!, u = r.listeners.find((l) => l.instance === 'udown')!;
  t.equal(d.protocol, 'udp');
  t.ok(d.outcomes.connected > 0, `admitted sources: the echo came back (${JSON.stringify(d.outcomes)})`);
  t.ok(d.outcomes.timeout > 0, `denied sources: silence (${JSON.stringify(d.outcomes)})`);
  t.equal(d.outcomes.connected + d.outcomes.timeout, d.flows);
  if (refusal === 'raw') t.equal(u.outcomes.refused, u.flows, `backend down, raw refusal: ICMP port unreachable (${JSON.stringify(u.outcomes)})`);
  else t.equal(u.outcomes.timeout, u.flows, `backend down without CAP_NET_RAW: silence (${JSON.stringify(u.outcomes)})`);
  t.ok(u.flows > 0);
  t.comment(`udp outcomes ${JSON.stringify(r.outcomes)} (refusal ${refusal}); dns reply p50 ${d.latency.percentile(0.5) / 1000} ms`);
});

t.test('--hold fills the conntrack table: new flows time out, no mismatch; below the max they do not', async (t) => {
  const web = freshAddr();
  const webPort = await freePort(web);
  const echo = await echoServer(t);
  const max = 24;
  const { daemon } = await startDaemon(t, `
securityGroups:
  - id: sg-web
    description: web
    ingress: [{ protocol: tcp, ports: ${webPort}, cidr: 127.77.0.0/16 }]
instances:
  - { name: web, address: ${web}, securityGroups: [sg-web], services: [{ protocol: tcp, port: ${webPort}, backend: "127.0.0.1:${echo.port}" }] }
`, { api: { host: '127.0.0.1', port: 0 }, conntrackMax: max });
  const api = `127.0.0.1:${daemon.api!.port}`;
  const fetchJson = (p: string, b?: unknown) => apiRequest(api, p, b);

  const r = await runLoadtest({
    api, flows: 30, durationS: 10, ratePerS: Infinity, concurrency: 8, timeoutMs: 300, sources: 8, mix: null, hold: max, fetchJson, sampleMs: 250,
  });
  const h = r.hold!;
  t.ok(h, 'a hold report');
  t.equal(h.held, max, `every held flow connected (${JSON.stringify(h)})`);
  t.equal(h.fullAfterHold, true, 'the table is full after the hold');
  t.equal(h.entriesAfterHold, max);
  t.equal(h.openAtEnd, max, 'held flows stayed open through the run');
  t.equal(r.outcomes.timeout, 30, `every new flow timed out (${JSON.stringify(r.outcomes)})`);
  t.equal(h.flowsWhileFull, 30);
  t.equal(h.timeoutsWhileFull, 30);
  t.equal(r.mismatchCount, 0, JSON.stringify(r.mismatches.slice(0, 3)));
  t.ok(r.daemon.some((s) => s.conntrackEntries === max && s.conntrackMax === max), 'daemon samples show the full table');
  t.ok(h.overflowsEnd >= h.overflowsStart, `overflow counter ${h.overflowsStart} → ${h.overflowsEnd}`);
  // The full-table filter drops new SYNs in the kernel; with CAP_NET_RAW the refuser watches full
  // listeners through pcap and counts them (src/dataplane/refuse.ts). Without it they go uncounted.
  if (daemon.refuser.mode === 'raw') {
    t.ok(h.overflowsEnd - h.overflowsStart >= 30, `each dropped new flow is counted (${h.overflowsStart} → ${h.overflowsEnd})`);
    const m = await (await fetch(`http://${api}/metrics`)).text();
    t.match(m, /^sgemu_conntrack_overflow_total [1-9]\d*$/m, 'and the metric shows it');
  } else {
    t.match(r.notes.join('\n'), /overflow counter did not rise/, 'without CAP_NET_RAW the report says the counter cannot see kernel drops');
  }
  t.comment(`hold: overflow counter ${h.overflowsStart} → ${h.overflowsAfterHold} → ${h.overflowsEnd}`);

  // The held flows are released at the end: the table empties and new flows connect again.
  const entries = () => (daemon.status() as { conntrack: { entries: number } }).conntrack.entries;
  t.ok(await until(() => entries() === 0, 2000, 50), `held flows released (${entries()} entries left)`);

  // Below the max: the run is the ordinary one, with a note.
  const below = await runLoadtest({
    api, flows: 10, durationS: 10, ratePerS: Infinity, concurrency: 4, timeoutMs: 500, sources: 4, mix: null, hold: 4, fetchJson,
  });
  t.equal(below.hold!.fullAfterHold, false);
  t.equal(below.outcomes.connected, 10, JSON.stringify(below.outcomes));
  t.equal(below.mismatchCount, 0);
  t.match(below.notes.join('\n'), /--hold 4: the table was not full/);

  // Just below the max: the run's own flows fill the table now and then; a timeout then is no mismatch.
  const edge = await runLoadtest({
    api, flows: 24, durationS: 10, ratePerS: Infinity, concurrency: 8, timeoutMs: 300, sources: 4, mix: null, hold: max - 2, fetchJson,
  });
  t.equal(edge.hold!.held, max - 2);
  t.equal(edge.outcomes.connected + edge.outcomes.timeout + edge.outcomes.reset, 24, JSON.stringify(edge.outcomes));
  t.equal(edge.mismatchCount, 0, JSON.stringify(edge.mismatches.slice(0, 3)));
  if (edge.outcomes.timeout + edge.outcomes.reset > 0) t.match(edge.notes.join('\n'), /within --concurrency \(8\) entries of full timed out or were reset/);
  // A reset at the edge is a flow the daemon accepted but had no entry for: it counts it.
  if (edge.outcomes.reset > 0) t.ok(edge.hold!.overflowsEnd > edge.hold!.overflowsStart, `overflow counter ${edge.hold!.overflowsStart} → ${edge.hold!.overflowsEnd}`);
  t.comment(`hold max-2: ${JSON.stringify(edge.outcomes)}, overflow counter +${edge.hold!.overflowsEnd - edge.hold!.overflowsStart}`);
});

t.test('--hold needs an allowed TCP flow to hold', async (t) => {
  const web = freshAddr();
  const webPort = await freePort(web);
  const { daemon } = await startDaemon(t, `
securityGroups:
  - { id: sg-web, description: web, ingress: [] }
instances:
  - { name: web, address: ${web}, securityGroups: [sg-web], services: [{ protocol: tcp, port: ${webPort}, backend: "127.0.0.1:1" }] }
`, { api: { host: '127.0.0.1', port: 0 } });
  const api = `127.0.0.1:${daemon.api!.port}`;
  await t.rejects(runLoadtest({
    api, flows: 1, durationS: 1, ratePerS: Infinity, concurrency: 1, timeoutMs: 200, sources: 2, mix: null, hold: 5,
    fetchJson: (p, b) => apiRequest(api, p, b),
  }), { code: 'NothingToTest', message: /--hold 5: .* no allowed TCP flow/ });
});

t.test('command: -c FILE --conntrack-max N --hold N, text and JSON; bad --hold, --sources, --conntrack-max are exit-2 errors', async (t) => {
  const web = freshAddr();
  const webPort = await freePort(web);
  const echo = await echoServer(t);
  const dir = t.testdir({
    'sgemu.yaml': `
securityGroups:
  - { id: sg-web, description: web, ingress: [{ protocol: tcp, ports: ${webPort}, cidr: 127.77.0.0/16 }] }
instances:
  - { name: web, address: ${web}, securityGroups: [sg-web], services: [{ protocol: tcp, port: ${webPort}, backend: "127.0.0.1:${echo.port}" }] }
`,
  });
  const config = `${dir}/sgemu.yaml`;
  const j = await runCli(['-c', config, '--conntrack-max', '6', '--hold', '6', '--flows', '12', '--timeout', '0.2', '--sources', '127.77.3.0/29', '--json']);
  t.equal(j.code, 0, j.out.slice(0, 500));
  const r = JSON.parse(j.out) as { outcomes: Record<string, number>; hold: { held: number; fullAfterHold: boolean; timeoutsWhileFull: number }; settings: { hold: number; sources: number } };
  t.match(r, { hold: { held: 6, fullAfterHold: true, timeoutsWhileFull: 12 }, outcomes: { timeout: 12 }, settings: { hold: 6, sources: 6 } });
  const text = await runCli(['-c', config, '--conntrack-max', '4', '--hold', '4', '--flows', '4', '--timeout', '0.2']);
  t.equal(text.code, 0);
  t.match(text.out, /^hold: 4 of 4 flows held open .*: FULL; 4 new flows launched while full, 4 timed out/m);

  await t.rejects(runCli(['--conntrack-max', '10', '--flows', '1']), { code: 'Usage', message: /--conntrack-max 10 sizes the daemon that -c starts/ });
  await t.rejects(runCli(['-c', config, '--hold', '-1']), { code: 'Usage' });
  await t.rejects(runCli(['-c', config, '--sources', '10.0.0.1']), { code: 'Usage', message: /not an IPv4 loopback/ });
});
