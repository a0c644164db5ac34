// A service whose backend leads back to itself through sgemu's own listeners is rejected at load
// (before, each connection opened the next until the conntrack table was full: the client got
// nothing and the daemon had 10,000 flows). Chains that end at a real server load.

import t from 'tap';
import { errorsOf } from './helpers.js';
import { setAddressScope } from '../../src/config/load-instances.js';

const world = (instances: string): string => `securityGroups:
  - id: sg-a
    ingress: [ { protocol: tcp, ports: all, cidr: 127.0.0.0/8 } ]
instances:
${instances}`;

t.test('a service whose backend is its own listener', async (t) => {
  const errs = errorsOf(world(`  - name: web
    address: 127.0.0.1
    securityGroups: [sg-a]
    services: [ { protocol: tcp, port: 8080, backend: "127.0.0.1:8080" } ]
`));
  t.equal(errs.length, 1);
  t.equal(errs[0]!.code, 'InvalidParameterValue');
  t.equal(errs[0]!.path, 'instances[0].services[0].backend');
  t.match(errs[0]!.message, /backend 127\.0\.0\.1:8080 is this service's own listener: web tcp 127\.0\.0\.1:8080 -> web tcp 127\.0\.0\.1:8080; every connection/);
  t.equal(errorsOf(world(`  - name: web
    address: 127.0.0.1
    securityGroups: [sg-a]
    services: [ { protocol: tcp, port: 8080, backend: 8080 } ]
`)).length, 1, 'a bare port is 127.0.0.1: the same loop');
  t.equal(errorsOf(world(`  - name: web
    address: 127.0.0.1
    securityGroups: [sg-a]
    services: [ { protocol: tcp, port: 8080, backend: "localhost:8080" } ]
`)).length, 1, 'localhost: the same loop');
  t.equal(errorsOf(world(`  - name: web
    address: 127.0.0.1
    address6: "::1"
    securityGroups: [sg-a]
    services: [ { protocol: tcp, port: 8080, backend: "[::1]:8080" } ]
`)).length, 1, 'through the IPv6 listener');
  t.same(errorsOf(world(`  - name: web
    address: 127.0.0.1
    securityGroups: [sg-a]
    services: [ { protocol: udp, port: 8080, backend: "127.0.0.1:8080" }, { protocol: tcp, port: 8080, listenPort: 8081, backend: "127.0.0.1:8080" } ]
`)).map((e) => e.message.split(':')[0]), ['backend 127.0.0.1'], 'only the UDP one: TCP listens on :8081 and relays to :8080, which is UDP');
});

t.test('two services relaying to each other, and an outbound entry in the loop', async (t) => {
  const errs = errorsOf(world(`  - name: a
    address: 127.0.0.10
    securityGroups: [sg-a]
    services: [ { protocol: tcp, port: 80, backend: "127.0.0.11:80" } ]
  - name: b
    address: 127.0.0.11
    securityGroups: [sg-a]
    services: [ { protocol: tcp, port: 80, backend: "127.0.0.10:80" } ]
`));
  t.equal(errs.length, 1, 'one loop, reported once');
  t.equal(errs[0]!.path, 'instances[0].services[0].backend', 'at its first service');
  t.match(errs[0]!.message, /these listeners relay to each other in a loop: a tcp 127\.0\.0\.10:80 -> b tcp 127\.0\.0\.11:80 -> a tcp 127\.0\.0\.10:80/);
  const viaOutbound = errorsOf(world(`  - name: a
    address: 127.0.0.10
    securityGroups: [sg-a]
    services: [ { protocol: tcp, port: 80, backend: "127.0.0.10:5432" } ]
    outbound: [ { protocol: tcp, port: 5432, to: "b:80" } ]
  - name: b
    address: 127.0.0.11
    securityGroups: [sg-a]
    services: [ { protocol: tcp, port: 80, backend: "127.0.0.10:80" } ]
`));
  t.equal(viaOutbound.length, 1);
  t.match(viaOutbound[0]!.message, /a tcp 127\.0\.0\.10:80 -> a outbound tcp 127\.0\.0\.10:5432 -> b tcp 127\.0\.0\.11:80 -> a tcp 127\.0\.0\.10:80/);
});

t.test('chains that end at a real server load', async (t) => {
  t.same(errorsOf(world(`  - name: front
    address: 127.0.0.10
    securityGroups: [sg-a]
    services: [ { protocol: tcp, port: 80, backend: "127.0.0.11:80" } ]
  - name: back
    address: 127.0.0.11
    securityGroups: [sg-a]
    services: [ { protocol: tcp, port: 80, backend: "127.0.0.1:3000" } ]
    outbound: [ { protocol: tcp, port: 5432, to: "front:80" } ]
`)), [], 'front -> back -> a server; back\'s outbound -> front -> back -> a server');
  t.same(errorsOf(world(`  - name: web
    address: 127.0.0.1
    securityGroups: [sg-a]
    services: [ { protocol: tcp, port: 8080, backend: "db.internal:8080" } ]
`)), [], 'a name other than localhost is not followed (not resolved at load)');
});

t.test('inside sgemu exec nothing is reachable that way: no check', async (t) => {
  setAddressScope('any');
  t.teardown(() => setAddressScope('loopback'));
  t.same(errorsOf(world(`  - name: web
    address: 10.0.1.15
    securityGroups: [sg-a]
    services: [ { protocol: tcp, port: 5432, backend: "10.0.1.15:5432" } ]
`)), []);
});
