// A listener that cannot open (issues #11, #17): never "ready" with fewer listeners than
// configured. A second daemon on the same config exits 2 naming each listener (and, UDP sockets
// being bound without SO_REUSEADDR, cannot take the first daemon's datagrams); a reload whose new
// listener cannot open is rejected whole and the running policy and listeners stay.

import t from 'tap';
import dgram from 'node:dgram';
import net from 'node:net';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freshAddr, freePort, echoServer, probe, startDaemon } from './helpers.js';

const CLI = new URL('../../dist/cli/main.js', import.meta.url).pathname;

t.test('a second daemon on the same config exits 2 and takes nothing from the first', async (t) => {
  const addr = freshAddr(), src = freshAddr();
  const tcp = await freePort(addr), udp = await freePort(addr);
  const echo = await echoServer(t);
  const uecho = dgram.createSocket('udp4');
  uecho.on('message', (m, r) => uecho.send(m, r.port, r.address));
  await new Promise<void>((r) => uecho.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => uecho.close());
  const yaml = `securityGroups:
  - id: sg-two
    ingress:
      - { protocol: tcp, ports: ${tcp}, cidr: ${src}/32 }
      - { protocol: udp, ports: ${udp}, cidr: ${src}/32 }
instances:
  - name: two
    address: ${addr}
    securityGroups: [sg-two]
    services:
      - { protocol: tcp, port: ${tcp}, backend: "127.0.0.1:${echo.port}" }
      - { protocol: udp, port: ${udp}, backend: "127.0.0.1:${uecho.address().port}" }
`;
  const { configPath } = await startDaemon(t, yaml);
  const second = spawnSync(process.execPath, [CLI, 'run', '-c', configPath, '--api', 'off', '--state', 'off'], { encoding: 'utf8', timeout: 30_000 });
  t.equal(second.status, 2, 'exit 2');
  t.match(second.stderr, /ListenerUnavailable/);
  t.match(second.stderr, new RegExp(`tcp ${addr.replace(/\./g, '\\.')}:${tcp}.*EADDRINUSE`), 'names the TCP listener and why');
  t.match(second.stderr, new RegExp(`udp ${addr.replace(/\./g, '\\.')}:${udp}.*EADDRINUSE`), 'names the UDP listener: no SO_REUSEADDR on UDP');
  t.match(second.stderr, /fix: /, 'and the fix');
  t.notMatch(second.stderr, /ready:/, 'never ready');
  t.equal(await probe(src, addr, tcp), 'allowed', 'the first daemon still serves TCP');
  const got = await new Promise<string>((resolve) => {
    const c = dgram.createSocket('udp4');
    const timer = setTimeout(() => { c.close(); resolve('silence'); }, 1000);
    c.on('message', (m) => { clearTimeout(timer); c.close(); resolve(m.toString()); });
    c.bind(0, src, () => c.send('ping', udp, addr));
  });
  t.equal(got, 'ping', 'and UDP');
});

t.test('a reload whose new listener cannot open is rejected; the running rules and listeners stay', async (t) => {
  const addr = freshAddr(), src = freshAddr(), other = freshAddr();
  const port = await freePort(addr), extra = await freePort(addr), held = await freePort(addr);
  const echo = await echoServer(t);
  // Something else holds addr:held.
  const squatter = net.createServer();
  await new Promise<void>((r) => squatter.listen(held, addr, () => r()));
  t.teardown(() => squatter.close());
  const yaml = (cidr: string, more: string) => `securityGroups:
  - id: sg-r
    ingress: [ { protocol: tcp, ports: 1-65535, cidr: ${cidr} } ]
instances:
  - name: r
    address: ${addr}
    securityGroups: [sg-r]
    services:
      - { protocol: tcp, port: ${port}, backend: "127.0.0.1:${echo.port}" }
${more}`;
  const { daemon, configPath, logs } = await startDaemon(t, yaml(`${src}/32`, ''));
  const v = daemon.policy.version;
  writeFileSync(configPath, yaml(`${other}/32`,
    `      - { protocol: tcp, port: ${extra}, backend: "127.0.0.1:${echo.port}" }\n      - { protocol: tcp, port: ${held}, backend: "127.0.0.1:${echo.port}" }\n`));
  t.equal(await daemon.reload(), false, 'reload rejected');
  t.equal(daemon.policy.version, v, 'policy version unchanged');
  t.equal(daemon.listeners.size, 1, 'no listener added');
  t.match(logs.join('\n'), new RegExp(`reload rejected[\\s\\S]*${held}[\\s\\S]*EADDRINUSE`), 'the log names the listener and why');
  t.equal(await probe(src, addr, port), 'allowed', 'the old rules still apply');
  t.equal(await probe(other, addr, port, 400), 'timeout', 'the new ones do not');
  // The listener that did open during the rejected reload was closed again: its port is free.
  const again = net.createServer();
  await new Promise<void>((resolve, reject) => { again.once('error', reject); again.listen(extra, addr, () => resolve()); });
  again.close();
  t.pass(`${addr}:${extra} is free again`);
});
