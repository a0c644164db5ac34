// A backend that is not on this machine (here: in a network namespace this test creates, reached
// over a veth pair): the kernel's socket table cannot say whether it listens, so the monitor
// counts it up until a connect is refused, then refuses its clients until a probe connect finds
// it back. Before, such a backend was "down" for good: every client was refused while it served.

import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { freshAddr, freePort, probe, startDaemon, until, isRoot } from './helpers.js';
import { isLocalAddress } from '../../src/dataplane/liveness.js';

const NS = `sgemu-rb-${process.pid}`;
const HOST_IP = '198.18.0.1', NS_IP = '198.18.0.2';     // RFC 2544 benchmark range, only on our veth

function ip(...args: string[]): boolean { return spawnSync('ip', args, { stdio: 'ignore' }).status === 0; }

const skip = !isRoot() ? 'needs root to create a network namespace and a veth pair' : ip('netns', 'add', NS) ? false : '`ip netns add` failed here';

t.test('isLocalAddress: loopback and this machine\'s interfaces are local', async (t) => {
  t.ok(isLocalAddress('127.0.0.1'));
  t.ok(isLocalAddress('127.9.9.9'));
  t.ok(isLocalAddress('::1'));
  t.ok(isLocalAddress('0.0.0.0'));
  t.notOk(isLocalAddress('192.0.2.7'), 'TEST-NET-1 is on no interface here');
});

t.test('a backend in another network namespace: up while it serves, refused once a connect found it stopped, back when it is', { skip }, async (t) => {
  const link = `sgrb${process.pid % 100000}`;
  t.teardown(() => { ip('link', 'del', link); ip('netns', 'del', NS); });
  t.ok(ip('link', 'add', link, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', NS), 'veth pair');
  t.ok(ip('addr', 'add', `${HOST_IP}/30`, 'dev', link) && ip('link', 'set', link, 'up'), 'host side up');
  t.ok(ip('-n', NS, 'addr', 'add', `${NS_IP}/30`, 'dev', 'eth0') && ip('-n', NS, 'link', 'set', 'eth0', 'up') && ip('-n', NS, 'link', 'set', 'lo', 'up'), 'namespace side up');
  t.notOk(isLocalAddress(NS_IP), 'the namespace\'s address is not this machine\'s');

  const port = 7000 + (process.pid % 1000);
  let server: ChildProcess | null = null;
  const startServer = async (): Promise<void> => {
    const child = spawn('ip', ['netns', 'exec', NS, process.execPath, '-e',
      `require('net').createServer((c) => c.pipe(c)).listen(${port}, '${NS_IP}', () => console.log('ready'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    server = child;
    await new Promise<void>((resolve, reject) => {
      child.stdout!.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`backend exited ${code}`)));
    });
  };
  const stopServer = async (): Promise<void> => {
    const child = server;
    server = null;
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((r) => { child.once('exit', () => r()); child.kill('SIGKILL'); });
  };
  t.teardown(stopServer);
  await startServer();

  const addr = freshAddr(), src = freshAddr();
  const listenPort = await freePort(addr);
  const { daemon, logs } = await startDaemon(t, `
securityGroups:
  - id: sg-app
    ingress: [ { protocol: tcp, ports: all, cidr: 127.0.0.0/8 } ]
instances:
  - name: app
    address: ${addr}
    securityGroups: [sg-app]
    services: [ { protocol: tcp, port: ${listenPort}, backend: "${NS_IP}:${port}" } ]
`);
  const l = [...daemon.listeners.values()][0]!;
  t.ok(daemon.monitor.isRemote(l.backendKey), 'seen as remote');
  t.match(logs.join('\n'), /the backend is not on this machine/, 'and the log says what that means');
  t.ok(daemon.monitor.isUp(l.backendKey), 'up until a connect says otherwise');
  t.equal(await probe(src, addr, listenPort, 2000), 'allowed', 'relayed to the namespace');

  await stopServer();
  const first = await probe(src, addr, listenPort, 2000);
  t.ok(first === 'reset' || first === 'closed', `the flow that finds it stopped is cut (${first})`);
  t.ok(await until(() => !daemon.monitor.isUp(l.backendKey), 2000), 'then it is down (the relay\'s event reaches JS a moment after the reset)');
  const exact = daemon.refuser.mode === 'raw';
  t.equal(await probe(src, addr, listenPort, 2000), exact ? 'refused' : 'reset', 'the next client is refused');

  await startServer();
  t.ok(await until(() => daemon.monitor.isUp(l.backendKey), 5000, 20), 'a probe connect finds it back');
  t.equal(await probe(src, addr, listenPort, 2000), 'allowed', 'and clients get through again');
});
