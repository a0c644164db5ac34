// Faults through the JSON API (/v1/faults) and `sgemu fault` (SPEC.md §9): add, list, remove,
// their errors and exit codes; a fault shows in the conntrack entries of the flows that got it and
// in the metrics; config faults are listed with their origin and survive a reload; faults a config
// gives are checked at line:col.

import t from 'tap';
import net from 'node:net';
import fault from '../../src/cli/fault.js';
import { loadConfigText } from '../../src/config/load.js';
import { ConfigErrors } from '../../src/model/errors.js';
import { echoServer, freshAddr, freePort, noWireFaults, startDaemon } from './helpers.js';

async function runCli(argv: string[]): Promise<{ code: number; out: string; error: { code: string; message: string } | null }> {
  let out = '';
  const orig = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array) => { out += String(chunk); return true; }) as typeof process.stdout.write;
  try { return { code: await fault.run(argv), out, error: null }; }
  catch (e) { const x = e as { code: string; message: string }; return { code: 2, out, error: { code: x.code, message: x.message } }; }
  finally { process.stdout.write = orig; }
}

async function json(api: string, path: string, init: RequestInit = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://${api}${path}`, init);
  return { status: res.status, body: await res.json() as Record<string, unknown> };
}

t.test('the JSON API and the CLI add, list and remove faults; conntrack and metrics show them', async (t) => {
  const addr = freshAddr();
  const port = await freePort(addr), port2 = await freePort(addr);
  const echo = await echoServer(t);
  const { daemon } = await startDaemon(t, `
securityGroups:
  - id: sg-app
    ingress: [ { protocol: tcp, ports: ${port}, cidr: 127.0.0.0/8 }, { protocol: tcp, ports: ${port2}, cidr: 127.0.0.0/8 } ]
instances:
  - name: app
    address: ${addr}
    securityGroups: [sg-app]
    services:
      - { protocol: tcp, port: ${port}, backend: "127.0.0.1:${echo.port}" }
      - protocol: tcp
        port: ${port2}
        backend: "127.0.0.1:${echo.port}"
        faults: [ { name: slow, type: latency, attributes: { latency: 5 } } ]
`, { api: { host: '127.0.0.1', port: 0 } });
  const api = `127.0.0.1:${daemon.api!.port}`;
  const target = `app:tcp/${port}`;

  let r = await json(api, '/v1/faults');
  t.same(r.body, { faults: [{ target: `app:tcp/${port2}`, origin: 'config', name: 'slow', type: 'latency', stream: 'downstream', toxicity: 1, attributes: { latency: 5, jitter: 0 } }] }, 'the config fault, with defaults filled in');

  r = await json(api, '/v1/faults', { method: 'POST', body: JSON.stringify({ target, type: 'latency', attributes: { latency: 20 } }) });
  t.equal(r.status, 201);
  t.match(r.body, { target, origin: 'api', name: 'latency_downstream', type: 'latency' });
  t.equal((await json(api, '/v1/faults', { method: 'POST', body: JSON.stringify({ target, type: 'latency' }) })).status, 409, 'same name: 409');
  t.match(await json(api, '/v1/faults', { method: 'POST', body: JSON.stringify({ target: 'nope:tcp/1', type: 'latency' }) }), { status: 404, body: { error: 'FaultTargetNotFound' } });
  t.match(await json(api, '/v1/faults', { method: 'POST', body: JSON.stringify({ target: 'app:80', type: 'latency' }) }), { status: 400, body: { error: 'InvalidFaultTarget' } });
  t.match(await json(api, '/v1/faults', { method: 'POST', body: JSON.stringify({ target, type: 'teleport' }) }), { status: 400, body: { error: 'InvalidFaultType' } });
  t.match(await json(api, '/v1/faults', { method: 'POST', body: JSON.stringify({ target, type: 'latency', name: 'x', attributes: { latency: -1 } }) }), { status: 400, body: { error: 'InvalidFault' } });
  t.match(await json(api, '/v1/faults', { method: 'POST', body: '{' }), { status: 400, body: { error: 'InvalidJson' } });
  t.match(await json(api, '/v1/faults', { method: 'POST', headers: { origin: 'http://evil.example' }, body: JSON.stringify({ target, type: 'timeout', name: 'y' }) }), { status: 403 }, 'a foreign page cannot add faults');

  // A flow through the faulted service: its conntrack entry names the fault; metrics count it.
  const c = net.connect({ host: addr, port });
  t.teardown(() => c.destroy());
  await new Promise<void>((res) => c.once('connect', () => res()));
  await new Promise<void>((res) => { c.once('data', () => res()); c.write('hi'); });
  const ct = (await json(api, '/v1/conntrack')).body as unknown as { dstPort: number; faults?: string[] }[];
  t.same(ct.find((e) => e.dstPort === port)?.faults, ['latency_downstream'], 'the conntrack entry names the fault the flow got', { skip: noWireFaults() });
  const metrics = await (await fetch(`http://${api}/metrics`)).text();
  t.match(metrics, new RegExp(`sgemu_listener_faults\\{instance="app",protocol="tcp",port="${port}",direction="ingress"\\} 1`));
  t.match(metrics, /sgemu_fault_flows_total\{type="latency"\} [1-9]/, 'a flow got the latency fault', { skip: noWireFaults() });

  // The CLI: list (table and JSON), add with --attr, remove one, remove all, errors exit 2.
  let cli = await runCli(['list', '--api', api]);
  t.equal(cli.code, 0);
  t.match(cli.out, /TARGET\s+NAME\s+TYPE\s+STREAM\s+TOXICITY\s+ATTRIBUTES\s+FROM/);
  t.match(cli.out, new RegExp(`app:tcp/${port}\\s+latency_downstream\\s+latency\\s+downstream\\s+1\\s+latency=20 jitter=0\\s+api`));
  cli = await runCli(['add', target, '--type', 'reset_peer', '--stream', 'upstream', '--attr', 'timeout=500', '--toxicity', '0.5', '--api', api, '--json']);
  t.equal(cli.code, 0, cli.error?.message ?? '');
  t.match(JSON.parse(cli.out), { name: 'reset_peer_upstream', stream: 'upstream', toxicity: 0.5, attributes: { timeout: 500 } });
  cli = await runCli(['add', target, '--type', 'reset_peer', '--stream', 'upstream', '--api', api]);
  t.match(cli, { code: 2, error: { code: 'FaultExists' } }, 'a second fault of that name: exit 2 with the reason');
  cli = await runCli(['add', target, '--type', 'latency', '--attr', 'latency', '--api', api]);
  t.match(cli, { code: 2, error: { code: 'Usage' } }, '--attr without =NUMBER');
  cli = await runCli(['list', target, '--json', '--api', api]);
  t.same(JSON.parse(cli.out).map((f: { name: string }) => f.name), ['latency_downstream', 'reset_peer_upstream']);
  cli = await runCli(['remove', target, 'latency_downstream', '--api', api]);
  t.match(cli, { code: 0, out: /removed 1 fault from/ });
  cli = await runCli(['remove', target, 'latency_downstream', '--api', api]);
  t.match(cli, { code: 2, error: { code: 'FaultNotFound' } });
  cli = await runCli(['remove', `app:tcp/${port2}`, '--api', api]);
  t.match(cli, { code: 0, out: /removed 1 fault/ }, 'remove without a name takes the config fault too');
  t.same((await json(api, `/v1/faults?target=app:tcp/${port2}`)).body, { faults: [] });
  cli = await runCli(['frobnicate', '--api', api]);
  t.match(cli, { code: 2, error: { code: 'Usage' } });

  // A reload keeps the run-time changes: the config fault stays removed, the API one stays.
  await daemon.reload();
  t.same(daemon.listFaults().map((x) => `${x.target} ${x.fault.name}`), [`${target} reset_peer_upstream`]);
});

t.test('faults in a config are checked at line:col', async (t) => {
  const bad = `instances:
  - name: app
    address: 127.0.0.5
    services:
      - protocol: tcp
        port: 80
        backend: 3000
        faults:
          - { type: latency, attributes: { latency: 10 } }
          - { type: loss, attributes: { probability: 0.1 } }
          - { type: latency, attributes: { latency: 20 } }
      - protocol: udp
        port: 53
        backend: 5353
        faults: [ { type: loss, attributes: { probability: 2 } } ]
`;
  try {
    loadConfigText(bad, 'x.yaml');
    t.fail('expected errors');
  } catch (e) {
    if (!(e instanceof ConfigErrors)) throw e;
    const lines = e.errors.map((x) => `${x.line} ${x.message}`);
    t.match(lines.find((l) => l.startsWith('10 ')), /fault type "loss" is not valid for tcp/);
    t.match(lines.find((l) => l.startsWith('11 ')), /used twice/);
    t.match(lines.find((l) => l.startsWith('15 ')), /loss.probability 2 is not valid/);
  }
});
