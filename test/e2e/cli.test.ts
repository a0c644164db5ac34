// The built CLI as users run it: `sgemu run` with signals and the API, `sgemu demo`, `doctor`.
// Spawns dist/cli/main.js (npm test builds it first).

import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import { freshAddr, freePort, echoServer, probe, write, sleep } from './helpers.js';
import { unreadableForNobody } from '../helpers.js';

const CLI = new URL('../../dist/cli/main.js', import.meta.url).pathname;
if (!existsSync(CLI)) { t.fail(`${CLI} is missing: run 'npm run build'`); }

function waitFor(proc: ChildProcess, re: RegExp, ms = 15000): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re}; output:\n${out}`)), ms);
    const on = (d: Buffer) => {
      out += d;
      if (re.test(out)) { clearTimeout(timer); proc.stdout?.off('data', on); proc.stderr?.off('data', on); resolve(out); }
    };
    proc.stdout?.on('data', on);
    proc.stderr?.on('data', on);
  });
}

function exited(proc: ChildProcess): Promise<number | null> {
  return new Promise((r) => { if (proc.exitCode !== null) r(proc.exitCode); else proc.once('exit', (c) => r(c)); });
}

t.test('sgemu run: serves, answers the API, reloads on SIGHUP, rejects a bad config, drains on SIGTERM', async (t) => {
  const addr = freshAddr(), src = freshAddr();
  const port = await freePort(addr), api = await freePort();
  const echo = await echoServer(t);
  const dir = t.testdir({});
  const cfg = join(dir, 'sgemu.yaml');
  const flows = join(dir, 'flows.log');
  const yaml = (cidr: string) => `securityGroups:\n  - id: sg-a\n    ingress:\n      - { protocol: tcp, ports: ${port}, cidr: ${cidr} }\ninstances:\n  - name: a\n    address: ${addr}\n    securityGroups: [sg-a]\n    services:\n      - { protocol: tcp, port: ${port}, backend: "127.0.0.1:${echo.port}" }\n`;
  write(cfg, yaml(`${src}/32`));
  const proc = spawn(process.execPath, [CLI, 'run', '-c', cfg, '--api', `127.0.0.1:${api}`, '--flow-log', flows, '--flow-log-interval', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { if (proc.exitCode === null) proc.kill('SIGKILL'); });
  const log = await waitFor(proc, /ready:/);
  t.match(log, /listening a tcp/, 'start-up log lists the listener');
  t.match(log, /refusal: /, 'and the refusal mode');
  t.equal(await probe(src, addr, port), 'allowed');

  const ct = spawnSync(process.execPath, [CLI, 'conntrack', '--api', `127.0.0.1:${api}`, '--json'], { encoding: 'utf8' });
  t.equal(ct.status, 0, 'conntrack exits 0');
  t.ok(Array.isArray(JSON.parse(ct.stdout)), 'conntrack --json prints an array');
  const metrics = await (await fetch(`http://127.0.0.1:${api}/metrics`)).text();
  t.match(metrics, /sgemu_flows_accepted_total \d+/, 'metrics served');
  t.match(metrics, new RegExp(`sgemu_listener_flows_total\\{instance="a",protocol="tcp",port="${port}",direction="ingress",outcome="accepted"\\} [1-9]`),
    'per-listener counts, labelled by instance, protocol and port');
  const explain = await (await fetch(`http://127.0.0.1:${api}/v1/explain`, { method: 'POST', body: JSON.stringify({ from: src, to: 'a', protocol: 'tcp', port }) })).json() as { decision: string };
  t.equal(explain.decision, 'allow', 'POST /v1/explain');

  write(cfg, 'securityGroups: [ { id: broken } ]\n');
  proc.kill('SIGHUP');
  await waitFor(proc, /reload rejected/);
  t.equal(await probe(src, addr, port), 'allowed', 'a rejected reload keeps the running rules');
  write(cfg, yaml('127.0.0.1/32'));
  proc.kill('SIGHUP');
  await waitFor(proc, /reloaded: policy v2/);
  t.equal(await probe(src, addr, port, 600), 'timeout', 'SIGHUP applied the new rules');

  await sleep(1200);
  proc.kill('SIGTERM');
  t.equal(await exited(proc), 0, 'SIGTERM: exit 0');
  const records = readFileSync(flows, 'utf8').trim().split('\n');
  t.ok(records.some((l) => / ACCEPT OK$/.test(l) && l.split(' ').length === 14), 'flow log has ACCEPT records');
});

t.test('sgemu run: a missing config is a clear error, exit 2, no stack trace', async (t) => {
  const r = spawnSync(process.execPath, [CLI, 'run', '-c', '/nonexistent/sgemu.yaml', '--api', 'off'], { encoding: 'utf8' });
  t.equal(r.status, 2);
  t.notMatch(r.stderr, /\n\s+at .+:\d+:\d+/, 'no stack trace');
  t.match(r.stderr, /nonexistent/);
});

t.test('sgemu run: an --api address in use is a clear error, exit 2, and nothing keeps serving', async (t) => {
  const addr = freshAddr();
  const port = await freePort(addr);
  const echo = await echoServer(t);
  const taken = net.createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => { taken.close(); });
  const apiPort = (taken.address() as net.AddressInfo).port;
  const dir = t.testdir({});
  const cfg = join(dir, 'sgemu.yaml');
  write(cfg, `securityGroups:\n  - id: sg-a\n    ingress:\n      - { protocol: tcp, ports: ${port}, cidr: 127.0.0.0/8 }\ninstances:\n  - name: a\n    address: ${addr}\n    securityGroups: [sg-a]\n    services:\n      - { protocol: tcp, port: ${port}, backend: "127.0.0.1:${echo.port}" }\n`);
  // The service listener opens before the API; a failed API bind must close it and exit, not
  // leave a daemon serving without the API it was asked for.
  const r = spawnSync(process.execPath, [CLI, 'run', '-c', cfg, '--api', `127.0.0.1:${apiPort}`], { encoding: 'utf8', timeout: 20000 });
  t.equal(r.status, 2, 'exit 2 (not killed by the timeout)');
  t.match(r.stderr, new RegExp(`EADDRINUSE: cannot listen on --api 127\\.0\\.0\\.1:${apiPort}: the address is in use`));
  t.notMatch(r.stderr, /\n\s+at .+:\d+:\d+/, 'no stack trace');
  t.notMatch(r.stderr, /internal error/);
  t.equal(await probe('127.0.0.1', addr, port), 'refused', 'the service address is closed again');
});

t.test('sgemu demo: the tour\'s first three outcomes are real', async (t) => {
  const api = await freePort();
  const proc = spawn(process.execPath, [CLI, 'demo', '--api', `127.0.0.1:${api}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { if (proc.exitCode === null) proc.kill('SIGKILL'); });
  let out: string;
  try { out = await waitFor(proc, /sgemu demo is running/); }
  catch (e) { t.fail(String(e)); return; }
  t.match(out, /curl -s http:\/\/127\.0\.0\.10:8080\//, 'the tour names exact commands');
  const http = await new Promise<string>((resolve) => {
    const s = net.connect({ host: '127.0.0.10', port: 8080, localAddress: '127.0.0.1' }, () => s.write('GET / HTTP/1.0\r\n\r\n'));
    let body = '';
    s.on('data', (d) => { body += d; });
    s.on('end', () => resolve(body));
    s.on('error', (e) => resolve(String(e)));
  });
  t.match(http, /hello from the demo web backend/, '1. allowed');
  t.equal(await probe('127.0.0.5', '127.0.0.10', 8080, 700), 'timeout', '2. the stranger times out');
  const refused = await probe('127.0.0.1', '127.0.0.10', 2222, 1500);
  t.ok(refused === 'refused' || refused === 'reset', `3. ssh with nothing behind it: ${refused}`);
  proc.kill('SIGINT');
  t.equal(await exited(proc), 0, 'Ctrl-C stops everything, exit 0');
});

// As a normal user with nothing set up (issue #12): the README's first command still shows the
// product — the demo runs in a private namespace and plays its tour, every outcome exact.
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));
t.test('sgemu demo as uid 65534 with nothing set up plays the tour in a namespace: every outcome as in AWS',
  { skip: process.getuid?.() !== 0 ? 'runs as root to switch to uid 65534' : !SETPRIV ? 'setpriv(1) not installed'
    : spawnSync('unshare', ['--user', '--net', 'true']).status !== 0 ? 'user namespaces not available here' : unreadableForNobody(CLI) }, async (t) => {
  const api = await freePort();
  // env -i: tap's process-info hook would make the uid-65534 node write into .tap/ (EACCES).
  const r = spawnSync('/usr/bin/env', ['-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, 'HOME=/nonexistent',
    SETPRIV!, '--reuid=65534', '--regid=65534', '--clear-groups', '--', process.execPath, CLI, 'demo', '--api', `127.0.0.1:${api}`],
    { encoding: 'utf8', timeout: 60_000, cwd: '/tmp' });
  t.equal(r.status, 0, `exit 0 (stderr: ${r.stderr.slice(-300)})`);
  t.match(r.stderr, /private\s+network namespace/, 'says where it runs and why');
  t.match(r.stdout, /1\. ALLOWED[\s\S]*answered in [\d.]+ ms: hello from the demo web backend/, '1. allowed');
  t.match(r.stdout, /2\. TIMEOUT[\s\S]*timed out after 3\.\d s/, '2. timeout');
  t.match(r.stdout, /3\. REFUSED[\s\S]*refused in [\d.]+ ms/, '3. refused');
  t.match(r.stdout, /4\. TIMEOUT[\s\S]*timed out after/, '4. timeout');
  t.match(r.stdout, /5\. ALLOWED[\s\S]*answered in [\d.]+ ms: hello/, '5. outbound allowed');
  t.match(r.stdout, /Every outcome as in AWS/);
});

t.test('sgemu doctor --json reports every check', async (t) => {
  const r = spawnSync(process.execPath, [CLI, 'doctor', '--json'], { encoding: 'utf8' });
  t.ok(r.status === 0 || r.status === 1, `exit ${r.status}`);
  const j = JSON.parse(r.stdout) as { checks: { name: string }[]; refusalMode: string; timeoutMode: string };
  t.ok(j.checks.length >= 6);
  t.match(j, { refusalMode: /^(raw|reset)$/, timeoutMode: /^(kernel|userland-reset)$/, relay: { tcp: /^(native|node)$/, udp: /^(native|node)$/ } });
  const forced = spawnSync(process.execPath, [CLI, 'doctor', '--json'], { encoding: 'utf8', env: { ...process.env, SGEMU_RELAY: 'node' } });
  t.same((JSON.parse(forced.stdout) as { relay: unknown }).relay, { tcp: 'node', udp: 'node' }, 'SGEMU_RELAY=node: both relays in Node');
});

t.test('sgemu run --watch: saving the file applies the rules', async (t) => {
  const addr = freshAddr(), src = freshAddr();
  const port = await freePort(addr);
  const echo = await echoServer(t);
  const cfg = join(t.testdir({}), 'sgemu.yaml');
  const yaml = (cidr: string) => `securityGroups:\n  - id: sg-w\n    ingress:\n      - { protocol: tcp, ports: ${port}, cidr: ${cidr} }\ninstances:\n  - name: w\n    address: ${addr}\n    securityGroups: [sg-w]\n    services:\n      - { protocol: tcp, port: ${port}, backend: "127.0.0.1:${echo.port}" }\n`;
  write(cfg, yaml('127.0.0.1/32'));
  const proc = spawn(process.execPath, [CLI, 'run', '-c', cfg, '--api', 'off', '--state', 'off', '--watch'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { if (proc.exitCode === null) proc.kill('SIGKILL'); });
  await waitFor(proc, /ready:/);
  t.equal(await probe(src, addr, port, 500), 'timeout', 'denied before the edit');
  const reloaded = waitFor(proc, /reloaded: policy v2/);
  write(cfg, yaml(`${src}/32`));
  await reloaded;
  t.equal(await probe(src, addr, port), 'allowed', 'allowed after saving the file');
  proc.kill('SIGTERM');
  t.equal(await exited(proc), 0);
});

// Without privilege (another uid, not root minus a capability): test/e2e/unprivileged.test.ts.

t.test('sgemu loadtest -c FILE starts its own daemon: every outcome class, zero mismatches, exit 0', async (t) => {
  const web = freshAddr(), down = freshAddr();
  const webPort = await freePort(web), downPort = await freePort(down), dead = await freePort();
  const echo = await echoServer(t);
  const cfg = join(t.testdir({}), 'sgemu.yaml');
  write(cfg, `
securityGroups:
  - id: sg-web
    ingress: [ { protocol: tcp, ports: ${webPort}, cidr: 127.77.0.0/26 } ]
  - id: sg-down
    ingress: [ { protocol: tcp, ports: ${downPort}, cidr: 127.0.0.0/8 } ]
instances:
  - { name: web, address: ${web}, securityGroups: [sg-web], services: [ { protocol: tcp, port: ${webPort}, backend: "127.0.0.1:${echo.port}" } ] }
  - { name: down, address: ${down}, securityGroups: [sg-down], services: [ { protocol: tcp, port: ${downPort}, backend: "127.0.0.1:${dead}" } ] }
`);
  const r = spawnSync(process.execPath, [CLI, 'loadtest', '-c', cfg, '--flows', '120', '--concurrency', '16', '--timeout', '0.5', '--sources', '96', '--json'],
    { encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, r.stderr.slice(-500));
  const j = JSON.parse(r.stdout) as { flows: number; mismatchCount: number; outcomes?: Record<string, number> };
  t.equal(j.flows, 120);
  t.equal(j.mismatchCount, 0);
  const bad = spawnSync(process.execPath, [CLI, 'loadtest', '-c', cfg, '--api', '127.0.0.1:4510'], { encoding: 'utf8' });
  t.equal(bad.status, 2, '-c and --api together: usage error');
});
