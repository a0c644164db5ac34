// Backend names (`backend: localhost:3000`) are resolved at load and reload, not per connection;
// the listener specs carry their addresses. The resolver is injected: no DNS traffic in tests.

import t from 'tap';
import { BackendNames, backendNames } from '../../src/control/backend-names.js';
import { listenerSpecs } from '../../src/control/listeners.js';
import { loadConfigText } from '../../src/config/load.js';

// web's service backend, and db's (which web reaches through an outbound entry).
const config = (backend: string, dbBackend = 'db:5432'): string => `
securityGroups:
  - id: sg-web
    ingress: [ { protocol: tcp, ports: all, cidr: 127.0.0.0/8 } ]
instances:
  - name: web
    address: 127.0.0.10
    securityGroups: [sg-web]
    services: [ { protocol: tcp, port: 8080, backend: "${backend}" } ]
    outbound: [ { protocol: tcp, port: 5432, to: "db:5432" } ]
  - name: db
    address: 127.0.0.11
    securityGroups: [sg-web]
    services: [ { protocol: tcp, port: 5432, backend: "${dbBackend}" } ]
`;

t.test('the names a model uses: service backends, never addresses', async (t) => {
  t.same(backendNames(loadConfigText(config('localhost:3000'), 'test.yaml')), ['db', 'localhost']);
  t.same(backendNames(loadConfigText(config('127.0.0.1:3000', '127.0.0.1:5432'), 'test.yaml')), []);
  t.same(backendNames(loadConfigText(config('[::1]:3000', 'localhost:5432'), 'test.yaml')), ['localhost']);
});

t.test('resolve: addresses in the resolver\'s order, deduplicated; failures and changes logged once', async (t) => {
  const answers = new Map<string, string[] | Error>([
    ['localhost', ['::1', '127.0.0.1', '127.0.0.1']],
    ['db', Object.assign(new Error('getaddrinfo ENOTFOUND db'), { code: 'ENOTFOUND' })],
  ]);
  const asked: string[] = [];
  const log: string[] = [];
  const names = new BackendNames((l) => log.push(l), async (n) => {
    asked.push(n);
    const a = answers.get(n);
    if (a instanceof Error) throw a;
    return a ?? [];
  });
  const model = loadConfigText(config('localhost:3000'), 'test.yaml');
  await names.resolve(model);
  t.same(asked.sort(), ['db', 'localhost'], 'each name once');
  t.same(names.get('localhost'), ['::1', '127.0.0.1']);
  t.same(names.get('db'), [], 'a name that does not resolve has no address');
  t.equal(names.get('other'), undefined);
  t.match(log.join('\n'), /backend name localhost: ::1, 127\.0\.0\.1/);
  t.match(log.join('\n'), /backend name db does not resolve \(ENOTFOUND\): connections to its services are refused until it does \(asked again every 30 s and on reload\)/);

  const specs = listenerSpecs(model, { names });
  const svc = specs.find((s) => s.kind === 'service' && s.instName === 'web')!;
  t.same(svc.backendAddrs, ['::1', '127.0.0.1'], 'the service spec carries the addresses');
  t.same(svc.probeAddrs, ['::1', '127.0.0.1']);
  t.same(specs.find((s) => s.kind === 'service' && s.instName === 'db')!.backendAddrs, [], 'a name that does not resolve: none');
  const out = specs.find((s) => s.kind === 'outbound')!;
  t.equal(out.backendAddrs, undefined, 'the outbound entry relays to db\'s listener, an address');
  t.same(out.probeAddrs, [], 'and its liveness is db\'s backend\'s: the name, unresolved');
  const inNs = listenerSpecs(model, { names, namespace: true }).find((s) => s.kind === 'outbound')!;
  t.same(inNs.backendAddrs, [], 'in sgemu exec it connects to db\'s backend itself: the name');
  t.equal(listenerSpecs(loadConfigText(config('127.0.0.1:3000', '127.0.0.1:5432'), 'test.yaml'), { names }).some((s) => s.backendAddrs !== undefined), false,
    'an address carries no list');

  log.length = 0;
  await names.resolve(model);
  t.same(log, [], 'the same answers again: nothing logged');
  answers.set('db', ['127.0.0.5']);
  await names.resolve(model);
  t.same(log, ['backend name db: 127.0.0.5 (a flow goes to the first that listens)'], 'a change is logged');
  await names.resolve(loadConfigText(config('127.0.0.1:3000', '127.0.0.1:5432'), 'test.yaml'));
  t.equal(names.get('localhost'), undefined, 'names the config no longer uses are forgotten');
});

t.test('a resolver that never answers does not hold up a start or a reload for long', async (t) => {
  const log: string[] = [];
  const names = new BackendNames((l) => log.push(l), () => new Promise<string[]>(() => {}), 50);
  const t0 = performance.now();
  await names.resolve(loadConfigText(config('slow:3000', '127.0.0.1:5432'), 'test.yaml'));
  t.ok(performance.now() - t0 < 2000, 'bounded by the lookup timeout');
  t.same(names.get('slow'), []);
  t.match(log.join('\n'), /backend name slow does not resolve \(no answer in 0\.05 s\)/);
});

t.test('refresh: a failed lookup keeps the addresses that work, nothing is forgotten, changes are reported', async (t) => {
  let answer: string[] | Error = ['127.0.0.7'];
  const log: string[] = [];
  const names = new BackendNames((l) => log.push(l), async () => { if (answer instanceof Error) throw answer; return answer; });
  const model = loadConfigText(config('app.test:3000', '127.0.0.1:5432'), 'test.yaml');
  t.equal(await names.resolve(model), true, 'the first load is a change');
  t.equal(await names.resolve(model, { refresh: true }), false, 'the same answer: no change');
  answer = Object.assign(new Error('getaddrinfo EAI_AGAIN app.test'), { code: 'EAI_AGAIN' });
  t.equal(await names.resolve(model, { refresh: true }), false, 'a failed refresh changes nothing');
  t.same(names.get('app.test'), ['127.0.0.7'], 'and keeps the address');
  answer = ['127.0.0.8'];
  t.equal(await names.resolve(model, { refresh: true }), true, 'a new address is a change');
  t.same(names.get('app.test'), ['127.0.0.8']);
  await names.resolve(loadConfigText(config('other.test:3000', '127.0.0.1:5432'), 'test.yaml'), { refresh: true });
  t.same(names.get('app.test'), ['127.0.0.8'], 'a refresh forgets nothing (a reload may be loading another model)');
  answer = Object.assign(new Error('getaddrinfo ENOTFOUND app.test'), { code: 'ENOTFOUND' });
  await names.resolve(model);
  t.same(names.get('app.test'), [], 'a load (start, reload) that does not resolve the name: no address');
  t.equal(names.get('other.test'), undefined, 'and forgets names the model does not use');
});
