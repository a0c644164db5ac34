// GET /metrics through prom-client (issue #6): a registry per daemon, values read from the
// daemon's plain counters at scrape time. Unit: a fake source (aggregation of listeners that share
// labels, listeners gone after a reload, the histogram, two daemons in one process). End to end:
// a real daemon, real connections on loopback; the numbers move with the traffic.
import t from 'tap';
import net from 'node:net';
import { Counters } from '../../src/dataplane/counters.js';
import { DaemonMetrics, type Gauges, type ListenerMetrics } from '../../src/observe/metrics.js';
import { echoServer, freePort, freshAddr, probe, startDaemon } from '../e2e/helpers.js';

interface Sample { name: string; labels: Record<string, string>; value: number }

/** Prometheus text format 0.0.4 → samples and the TYPE of each family. */
function parse(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const ty = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (ty) { types.set(ty[1]!, ty[2]!); continue; }
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return { samples, types };
}

/** The value of the one sample with this name and (a subset of) these labels; undefined if none. */
function value(s: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const hits = s.filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  if (hits.length > 1) throw new Error(`${hits.length} samples of ${name} ${JSON.stringify(labels)}`);
  return hits[0]?.value;
}

const gauges = (over: Partial<Gauges> = {}): Gauges => ({
  conntrackEntries: 0, conntrackMax: 100, listeners: 0, policyVersion: 1, reloads: 0, reloadFailures: 0,
  lastReloadSeconds: 0, apiRequests: 0, refusalRaw: false, ...over,
});
const listener = (over: Partial<ListenerMetrics>): ListenerMetrics => ({
  instance: 'web', protocol: 'tcp', port: 80, direction: 'ingress', accepted: 0, rejected: 0, refused: 0, flows: 0, faults: 0, ...over,
});

t.test('collected at scrape time from plain counters; listeners sharing labels add up; gone ones disappear', async (t) => {
  const c = new Counters();
  let g = gauges();
  let ls: ListenerMetrics[] = [listener({ accepted: 2, flows: 1 }), listener({ accepted: 3, rejected: 1 }), listener({ instance: 'db "x"', port: 5432, refused: 4 })];
  const m = new DaemonMetrics({ counters: c, gauges: () => g, listeners: () => ls });
  const other = new DaemonMetrics({ counters: new Counters(), gauges: () => gauges(), listeners: () => [] });   // a second daemon: no clash

  let { samples, types } = parse(await m.text());
  t.equal(value(samples, 'sgemu_flows_accepted_total'), 0);
  t.equal(types.get('sgemu_flows_accepted_total'), 'counter');
  t.equal(types.get('sgemu_conntrack_entries'), 'gauge');
  t.equal(types.get('sgemu_policy_reload_duration_seconds'), 'histogram');
  const web = { instance: 'web', protocol: 'tcp', port: '80', direction: 'ingress' };
  t.equal(value(samples, 'sgemu_listener_flows_total', { ...web, outcome: 'accepted' }), 5, 'two sockets of one service add up');
  t.equal(value(samples, 'sgemu_listener_flows_total', { ...web, outcome: 'rejected' }), 1);
  t.equal(value(samples, 'sgemu_listener_open_flows', web), 1);
  t.equal(value(samples, 'sgemu_listener_flows_total', { instance: 'db "x"', port: '5432', outcome: 'refused' }), 4, 'label values escaped and read back');

  c.accepted = 7; c.rejectedKernel = 2; c.rejectedUser = 1; c.refusedRaw = 3; c.overflowDropped = 9; c.bytesIn = 100; c.bytesOut = 250;
  g = gauges({ conntrackEntries: 4, conntrackMax: 50, reloads: 2, policyVersion: 3, lastReloadSeconds: 0.004, refusalRaw: true });
  ls = [listener({ accepted: 1 })];
  m.observeReload(0.002); m.observeReload(0.3);
  m.countRequest('ec2:DescribeSecurityGroups', 200); m.countRequest('ec2:DescribeSecurityGroups', 200); m.countRequest('GET /metrics', 200);
  ({ samples } = parse(await m.text()));
  t.equal(value(samples, 'sgemu_flows_accepted_total'), 7, 'counters read at scrape time');
  t.equal(value(samples, 'sgemu_flows_rejected_total', { where: 'kernel' }), 2);
  t.equal(value(samples, 'sgemu_flows_rejected_total', { where: 'userland' }), 1);
  t.equal(value(samples, 'sgemu_flows_refused_total', { how: 'raw' }), 3);
  t.equal(value(samples, 'sgemu_conntrack_overflow_total'), 9);
  t.equal(value(samples, 'sgemu_conntrack_entries'), 4);
  t.equal(value(samples, 'sgemu_conntrack_max'), 50);
  t.equal(value(samples, 'sgemu_bytes_total', { direction: 'out' }), 250);
  t.equal(value(samples, 'sgemu_policy_reloads_total'), 2);
  t.equal(value(samples, 'sgemu_policy_version'), 3);
  t.equal(value(samples, 'sgemu_refusal_raw'), 1);
  t.equal(value(samples, 'sgemu_policy_reload_duration_seconds_count'), 2, 'histogram count');
  t.equal(value(samples, 'sgemu_policy_reload_duration_seconds_bucket', { le: '0.0025' }), 1, 'histogram bucket');
  t.equal(value(samples, 'sgemu_api_requests_total', { action: 'ec2:DescribeSecurityGroups', status: '200' }), 2);
  t.equal(value(samples, 'sgemu_listener_flows_total', { instance: 'db "x"', outcome: 'refused' }), undefined, 'a listener gone in a reload takes its series along');

  const o = parse(await other.text()).samples;
  t.equal(value(o, 'sgemu_flows_accepted_total'), 0, 'the second registry is its own');
  t.equal(value(o, 'sgemu_api_requests_total', { action: 'ec2:DescribeSecurityGroups' }), undefined);
});

t.test('a real daemon: the numbers move with real traffic and API calls', async (t) => {
  const addr = freshAddr(), src = freshAddr(), bad = freshAddr();
  const port = await freePort(addr);
  const downPort = await freePort(addr);
  const echo = await echoServer(t);
  const deadBackend = await freePort('127.0.0.1');      // nothing listens there: allowed flows are refused
  const { daemon } = await startDaemon(t, `
securityGroups:
  - id: sg-m
    ingress:
      - { protocol: tcp, ports: ${port}, cidr: ${src}/32 }
      - { protocol: tcp, ports: ${downPort}, cidr: ${src}/32 }
instances:
  - name: m
    address: ${addr}
    securityGroups: [sg-m]
    services:
      - { protocol: tcp, port: ${port}, backend: "127.0.0.1:${echo.port}" }
      - { protocol: tcp, port: ${downPort}, backend: "127.0.0.1:${deadBackend}" }
`, { api: { host: '127.0.0.1', port: 0 } });
  const base = `http://127.0.0.1:${daemon.api!.port}`;
  const scrape = async (): Promise<Sample[]> => {
    const res = await fetch(`${base}/metrics`);
    t.equal(res.status, 200);
    t.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    return parse(await res.text()).samples;
  };
  const up = { instance: 'm', protocol: 'tcp', port: String(port), direction: 'ingress' };
  const down = { ...up, port: String(downPort) };

  let s = await scrape();
  t.equal(value(s, 'sgemu_listener_flows_total', { ...up, outcome: 'accepted' }), 0, 'nothing yet');
  t.equal(value(s, 'sgemu_conntrack_max'), 10000);

  // A held connection: one open flow, one conntrack entry.
  const held = net.connect({ host: addr, port, localAddress: src });
  held.on('error', () => {});
  await new Promise((r) => held.once('connect', r));
  held.write('x'.repeat(1000));
  await new Promise((r) => held.once('data', r));
  s = await scrape();
  t.equal(value(s, 'sgemu_listener_flows_total', { ...up, outcome: 'accepted' }), 1, 'accepted counted');
  t.equal(value(s, 'sgemu_listener_open_flows', up), 1, 'one open flow');
  t.ok((value(s, 'sgemu_conntrack_entries') ?? 0) >= 1, 'a conntrack entry');
  held.destroy();

  t.equal(await probe(src, addr, port), 'allowed');
  t.not(await probe(src, addr, downPort), 'allowed', 'backend down: refused or reset');
  t.equal(await probe(bad, addr, port, 300), 'timeout', 'denied: timeout');
  await new Promise((r) => setTimeout(r, 150));    // closes and captures are counted asynchronously
  s = await scrape();
  t.equal(value(s, 'sgemu_listener_flows_total', { ...up, outcome: 'accepted' }), 2, 'both allowed connections');
  t.equal(value(s, 'sgemu_flows_accepted_total'), 2);
  t.equal(value(s, 'sgemu_listener_flows_total', { ...down, outcome: 'refused' }), 1, 'the refused one');
  t.ok((value(s, 'sgemu_bytes_total', { direction: 'in' }) ?? 0) >= 1000, 'bytes of closed flows');
  // A denied SYN is seen where libpcap watches the listener (exact-refusal mode watches those
  // whose backend is down) or where no kernel filter dropped it (userland reset).
  t.equal(await probe(bad, addr, downPort, 300) === 'allowed', false, 'denied on the down service too');
  await new Promise((r) => setTimeout(r, 100));
  s = await scrape();
  const seen = value(s, 'sgemu_listener_flows_total', { ...down, outcome: 'rejected' });
  const filtered = [...daemon.listeners.values()].every((l) => l.nativeFilter);
  t.comment(`refusal ${daemon.refuser.mode}, kernel filters ${filtered ? 'on' : 'off'}: rejected ${seen}`);
  if (daemon.refuser.mode === 'raw' || !filtered) t.equal(seen, 1, 'the denied SYN is counted once');
  else t.equal(seen, 0, 'kernel-dropped SYNs are not seen without libpcap');
  t.equal((value(s, 'sgemu_flows_rejected_total', { where: 'kernel' }) ?? 0) + (value(s, 'sgemu_flows_rejected_total', { where: 'userland' }) ?? 0),
    s.filter((x) => x.name === 'sgemu_listener_flows_total' && x.labels.outcome === 'rejected').reduce((a, x) => a + x.value, 0),
    'daemon-wide rejections = the sum over listeners');

  // The control plane: a reload through the EC2 API, and the API requests themselves.
  const post = (body: string) => fetch(`${base}/`, { method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  t.equal((await post('Action=DescribeSecurityGroups&Version=2016-11-15')).status, 200);
  t.equal((await post('Action=DescribeSecurityGroups&Version=2016-11-15&Bogus=1')).status, 400);
  t.equal((await post('Action=NoSuchThing&Version=2016-11-15')).status, 400);
  const before = value(s, 'sgemu_policy_reload_duration_seconds_count') ?? 0;
  const auth = await post(`Action=AuthorizeSecurityGroupIngress&Version=2016-11-15&GroupId=sg-m&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=${port}&IpPermissions.1.ToPort=${port}&IpPermissions.1.IpRanges.1.CidrIp=${bad}/32`);
  t.equal(auth.status, 200);
  s = await scrape();
  t.equal(value(s, 'sgemu_policy_reload_duration_seconds_count'), before + 1, 'the API change was one timed swap');
  t.equal(value(s, 'sgemu_policy_reloads_total'), 1);
  t.equal(value(s, 'sgemu_policy_version'), 2);
  t.equal(value(s, 'sgemu_api_requests_total', { action: 'ec2:DescribeSecurityGroups', status: '200' }), 1);
  t.equal(value(s, 'sgemu_api_requests_total', { action: 'ec2:DescribeSecurityGroups', status: '400' }), 1, 'UnknownParameter counted under its action');
  t.equal(value(s, 'sgemu_api_requests_total', { action: 'ec2:unknown', status: '400' }), 1, 'an unknown action does not become a label');
  t.equal(value(s, 'sgemu_api_requests_total', { action: 'ec2:AuthorizeSecurityGroupIngress', status: '200' }), 1);
  t.ok((value(s, 'sgemu_api_requests_total', { action: 'GET /metrics', status: '200' }) ?? 0) >= 3, 'scrapes are API requests too');
  t.equal(await probe(bad, addr, port), 'allowed', 'and the change is live');
});
