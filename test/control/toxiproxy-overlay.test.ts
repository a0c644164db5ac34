// The Toxiproxy overlay (src/control/toxiproxy/overlay.ts), pure: the base model is never changed;
// one synthetic instance per listen address and kind, in a VPC of its own that compiles; a proxy on
// a config instance joins its services; clashes and reserved names are left out and named; a model
// that already carries the overlay gets it once.

import t from 'tap';
import { loadConfigText } from '../../src/config/load.js';
import { compilePolicy } from '../../src/policy/compile.js';
import { TOXI_CLOSED_GROUP, TOXI_OPEN_GROUP, TOXI_VPC, overlayModel, stripOverlay, type OverlayProxy } from '../../src/control/toxiproxy/overlay.js';

const base = loadConfigText(`
securityGroups:
  - { id: sg-web, ingress: [{ protocol: tcp, ports: 8080, cidr: 127.0.0.1/32 }] }
instances:
  - name: web
    address: 127.0.0.10
    securityGroups: [sg-web]
    services: [{ protocol: tcp, port: 8080, backend: 3000 }]
`, 'test.yaml');

const proxy = (over: Partial<OverlayProxy>): OverlayProxy => ({
  name: 'p', state: 'open', address: '127.0.0.1', port: 26379, instance: null, backend: { host: '127.0.0.1', port: 6379 }, faults: [], ...over,
});

t.test('synthetic instances per address and kind; base untouched; compiles', async (t) => {
  const before = JSON.stringify(base);
  const { model, skipped } = overlayModel(base, [
    proxy({ name: 'a' }),
    proxy({ name: 'b', port: 26380, faults: [{ name: 'latency_downstream', type: 'latency', stream: 'downstream', toxicity: 1, attributes: { latency: 5, jitter: 0 } }] }),
    proxy({ name: 'c', port: 26381, state: 'closed' }),
    proxy({ name: 'd', port: 26382, state: 'off' }),
    proxy({ name: 'e', port: 9090, instance: 'web' }),
  ]);
  t.same(skipped, []);
  t.equal(JSON.stringify(base), before, 'the base model is not changed');
  const byName = new Map(model.instances.map((i) => [i.name, i]));
  t.same(byName.get('toxiproxy-127-0-0-1')?.services.map((s) => s.listenPort), [26379, 26380], 'one instance per listen address');
  t.same(byName.get('toxiproxy-127-0-0-1')?.groupIds, [TOXI_OPEN_GROUP]);
  t.same(byName.get('toxiproxy-closed-127-0-0-1')?.groupIds, [TOXI_CLOSED_GROUP], 'disabled with timeout: the closed instance');
  t.same(byName.get('toxiproxy-127-0-0-1')?.services[1]?.faults?.map((f) => f.name), ['latency_downstream'], 'toxics become faults');
  t.same(byName.get('web')?.services.map((s) => s.listenPort), [8080, 9090], 'on a config instance: one more service');
  t.equal(base.instances[0]!.services.length, 1);
  t.notOk([...byName.values()].some((i) => i.services.some((s) => s.listenPort === 26382)), 'off: no service at all');
  t.ok(model.vpcs.some((v) => v.id === TOXI_VPC));
  const open = model.groups.find((g) => g.id === TOXI_OPEN_GROUP)!;
  t.same(open.ingress.map((r) => [r.protocol, r.fromPort, r.toPort, r.peer.kind === 'cidr' ? r.peer.cidr : '']), [[6, 0, 65535, '0.0.0.0/0'], [6, 0, 65535, '::/0']]);
  t.doesNotThrow(() => compilePolicy(model, 2), 'the overlaid model compiles');
  t.same(overlayModel(model, []).model.instances.map((i) => i.name), ['web'], 'an overlaid model given again loses the synthetic part');
  t.equal(stripOverlay(base), base, 'nothing to strip: the same object');
});

t.test('clashes and reserved names are left out and named; the config wins', async (t) => {
  const r = overlayModel(base, [
    proxy({ name: 'clash', address: '127.0.0.10', port: 8080 }),
    proxy({ name: 'first', port: 1000 }),
    proxy({ name: 'second', port: 1000 }),
    proxy({ name: 'gone', instance: 'nope', port: 1001 }),
  ]);
  t.same(r.skipped.map((s) => s.name), ['clash', 'second', 'gone']);
  t.match(r.skipped[0]!.why, /127\.0\.0\.10:8080 is taken by instance web/);
  t.match(r.skipped[1]!.why, /taken by proxy first/);
  const reserved = loadConfigText(`instances:\n  - { name: toxiproxy-127-0-0-1, address: 127.0.0.20 }\n`, 'r.yaml');
  t.match(overlayModel(reserved, [proxy({})]).skipped[0]?.why, /reserves/);
});
