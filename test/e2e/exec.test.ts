// `sgemu exec` (issue #12): as uid 65534 with no capability and no setup, a command runs inside a
// private user + network namespace where instances have their AWS addresses (10.0.1.15) and every
// outcome is exact: allowed (bytes echoed by a backend on the host), denied (timeout, backend saw
// nothing), refused (backend down), TCP and UDP; the API answers inside and a revoke from inside
// changes live traffic; exec's status is the command's; signals reach it; nothing is left behind.

import t from 'tap';
import dgram from 'node:dgram';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, echoServer } from './helpers.js';
import { unreadableForNobody } from '../helpers.js';
import { helperPath } from '../../src/native/netd.js';
import { nativeStatus } from '../../src/native/sock-filter.js';

const CLI = new URL('../../dist/cli/main.js', import.meta.url).pathname;
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));
const NOBODY = 65534;

function userns(): string | false {
  const r = spawnSync('unshare', ['--user', '--net', 'true'], { encoding: 'utf8' });
  return r.status === 0 ? false : `user namespaces not available here: ${r.stderr.trim()}`;
}
const skip = process.getuid?.() !== 0 ? 'runs as root to switch to uid 65534 (a plain user runs exec as itself: see README)'
  : !SETPRIV ? 'setpriv(1) not installed' : !nativeStatus().loaded ? 'native addon not built'
  : !existsSync(helperPath()) ? 'helper not built' : unreadableForNobody(CLI) || userns();

function asNobody(args: string[], cwd: string) {
  // Through env -i: tap's process-info hook adds NODE_OPTIONS to every child, and a node run as
  // uid 65534 would then try to write into the repository's .tap/ (EACCES at exit).
  return spawn('/usr/bin/env', ['-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, 'HOME=/nonexistent',
    SETPRIV!, `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', process.execPath, CLI, ...args],
    { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
}
function run(args: string[], cwd: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const p = asNobody(args, cwd);
  let stdout = '', stderr = '';
  p.stdout.on('data', (d) => { stdout += d; });
  p.stderr.on('data', (d) => { stderr += d; });
  return new Promise((r) => p.on('exit', (status) => r({ status, stdout, stderr })));
}

// The command under test: runs inside the namespace as uid 65534, prints one JSON line of what it
// saw, and exits 7 (exec must return that).
const CHECK = String.raw`
import net from 'node:net';
import dgram from 'node:dgram';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
const [dbAddr, appAddr, pidFile] = process.argv.slice(2);
const tcp = (port, ms = 1500) => new Promise((res) => {
  const t0 = performance.now();
  const s = net.connect({ host: dbAddr, port, localAddress: appAddr });
  const timer = setTimeout(() => { s.destroy(); res({ o: 'timeout' }); }, ms);
  s.on('connect', () => { s.write('ping'); s.once('data', (d) => { clearTimeout(timer); s.destroy(); res({ o: d.toString() === 'ping' ? 'allowed' : 'garbled' }); }); });
  s.on('error', (e) => { clearTimeout(timer); res({ o: e.code === 'ECONNREFUSED' ? 'refused' : e.code, ms: performance.now() - t0 }); });
});
const udp = (port, ms = 1000) => new Promise((res) => {
  const s = dgram.createSocket('udp4');
  const fin = (o) => { clearTimeout(timer); s.close(); res({ o }); };
  const timer = setTimeout(() => fin('timeout'), ms);
  s.on('error', (e) => fin(e.code === 'ECONNREFUSED' ? 'refused' : e.code));
  s.on('message', (m) => fin(m.toString() === 'ping' ? 'allowed' : 'garbled'));
  s.bind(0, appAddr, () => s.connect(port, dbAddr, () => s.send('ping')));
});
const ec2 = (params) => fetch(process.env.SGEMU_API + '/', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams({ Version: '2016-11-15', ...params }).toString() }).then((r) => r.status);
const out = {};
out.allowed = await tcp(5432);
out.denied = await tcp(7000);
out.down = await tcp(6000);
out.udpAllowed = await udp(53);
out.udpDenied = await udp(9999);
out.udpDown = await udp(5353);
out.status = await fetch(process.env.SGEMU_API + '/v1/status').then((r) => r.json()).then((j) => j.privilege);
out.revoke = await ec2({ Action: 'RevokeSecurityGroupIngress', GroupId: 'sg-db', 'IpPermissions.1.IpProtocol': 'tcp',
  'IpPermissions.1.FromPort': '5432', 'IpPermissions.1.ToPort': '5432', 'IpPermissions.1.IpRanges.1.CidrIp': '10.0.0.0/16' });
out.afterRevoke = await tcp(5432, 800);
// The host's pid of a background process left running (this PID namespace numbers it otherwise;
// /proc is the host's, so /proc/self/stat says it).
const bg = spawn('sh', ['-c', 'read p _ < /proc/self/stat; echo $p > ' + pidFile + '; exec sleep 300'], { detached: true, stdio: 'ignore' });
bg.unref();
for (let i = 0; i < 100; i++) { try { if (readFileSync(pidFile, 'utf8').trim()) break; } catch {} await new Promise((r) => setTimeout(r, 20)); }
console.log(JSON.stringify(out));
process.exit(7);
`;

t.test('uid 65534, nothing set up: exec gives every outcome at AWS addresses, and leaves nothing behind', { skip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sgemu-exec-'));
  chmodSync(dir, 0o777);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const echo = await echoServer(t);
  const uecho = dgram.createSocket('udp4');
  const useen: string[] = [];
  uecho.on('message', (m, r) => { useen.push(r.address); uecho.send(m, r.port, r.address); });
  await new Promise<void>((r) => uecho.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => uecho.close());
  const dead = await freePort(), udead = await freePort();
  writeFileSync(join(dir, 'sgemu.yaml'), `securityGroups:
  - id: sg-db
    ingress:
      - { protocol: tcp, ports: 5432, cidr: 10.0.0.0/16 }
      - { protocol: tcp, ports: 6000, cidr: 10.0.0.0/16 }
      - { protocol: udp, ports: 53, cidr: 10.0.0.0/16 }
      - { protocol: udp, ports: 5353, cidr: 10.0.0.0/16 }
  - id: sg-app
instances:
  - name: db
    address: 10.0.1.15
    securityGroups: [sg-db]
    services:
      - { protocol: tcp, port: 5432, backend: "127.0.0.1:${echo.port}" }
      - { protocol: tcp, port: 6000, backend: "127.0.0.1:${dead}" }
      - { protocol: tcp, port: 7000, backend: "127.0.0.1:${echo.port}" }
      - { protocol: udp, port: 53, backend: "127.0.0.1:${uecho.address().port}" }
      - { protocol: udp, port: 5353, backend: "127.0.0.1:${udead}" }
      - { protocol: udp, port: 9999, backend: "127.0.0.1:${uecho.address().port}" }
  - name: app
    address: 10.0.2.20
    securityGroups: [sg-app]
`);
  writeFileSync(join(dir, 'check.mjs'), CHECK);
  const pidFile = join(dir, 'bg.pid');
  const api = await freePort();
  const p = asNobody(['exec', '-c', 'sgemu.yaml', '--api', `127.0.0.1:${api}`, '--', process.execPath, 'check.mjs', '10.0.1.15', '10.0.2.20', pidFile], dir);
  let stdout = '', stderr = '';
  p.stdout.on('data', (d) => { stdout += d; });
  p.stderr.on('data', (d) => { stderr += d; });
  // While the command runs, the host side answers too.
  let hostSaw = '';
  const poll = setInterval(() => {
    fetch(`http://127.0.0.1:${api}/v1/status`).then((r) => r.json() as Promise<{ privilege?: string }>).then((j) => { hostSaw = j.privilege ?? ''; }, () => {});
  }, 100);
  const status = await new Promise<number | null>((r) => p.on('exit', (c) => r(c)));
  clearInterval(poll);
  t.equal(status, 7, `exec's status is the command's (stderr: ${stderr.slice(-400)})`);
  const line = stdout.trim().split('\n').pop() ?? '{}';
  const out = JSON.parse(line) as Record<string, { o: string; ms?: number } | string | number>;
  t.match(out, {
    allowed: { o: 'allowed' }, denied: { o: 'timeout' }, down: { o: 'refused' },
    udpAllowed: { o: 'allowed' }, udpDenied: { o: 'timeout' }, udpDown: { o: 'refused' },
    status: 'namespace', revoke: 200, afterRevoke: { o: 'timeout' },
  }, line);
  t.comment(`refused after ${(out.down as { ms?: number }).ms?.toFixed(1)} ms`);
  t.ok(echo.accepted.length >= 1, 'the host backend got the allowed connection');
  t.equal(echo.accepted.length, 1, 'and nothing else: not the denied port 7000, not the revoked one');
  t.equal(useen.length, 1, 'the UDP backend saw only the allowed datagram');
  t.equal(hostSaw, 'namespace', 'the host --api answered while the command ran');
  const bg = Number(readFileSync(pidFile, 'utf8'));
  const alive = (pid: number) => { try { return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return false; } };
  const end = Date.now() + 2000;
  while (Date.now() < end && alive(bg)) await new Promise((r) => setTimeout(r, 50));
  t.notOk(alive(bg), 'a background process the command left is gone with it');
  const left = spawnSync('pgrep', ['-u', String(NOBODY), '-f', 'sgemu-netd --namespace'], { encoding: 'utf8' });
  t.equal(left.stdout.trim(), '', 'no helper left');
});

t.test('exec: signals reach the command, its status is returned, a missing command is 127', { skip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sgemu-exec-'));
  chmodSync(dir, 0o777);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'sgemu.yaml'), 'instances:\n  - { name: a, address: 10.9.0.1 }\n');
  const p = asNobody(['exec', '-c', 'sgemu.yaml', '--', 'sh', '-c', 'trap "exit 42" TERM; echo started; while :; do sleep 0.1; done'], dir);
  let errText = '';
  p.stderr.on('data', (d: Buffer) => { errText += d.toString(); });
  await new Promise<void>((r) => p.stdout.on('data', (d: Buffer) => { if (d.toString().includes('started')) r(); }));
  p.kill('SIGTERM');
  const [status, signal] = await new Promise<[number | null, string | null]>((r) => p.on('exit', (c, s) => r([c, s])));
  t.equal(status, 42, `SIGTERM reached the command, which exited 42 (signal ${signal}, stderr: ${errText.trim()})`);
  const missing = await run(['exec', '-c', 'sgemu.yaml', '--', 'no-such-command-sgemu'], dir);
  t.equal(missing.status, 127, 'command not found: 127');
  t.match(missing.stderr, /no-such-command-sgemu/);
  const usage = await run(['exec', '-c', 'sgemu.yaml'], dir);
  t.equal(usage.status, 2, 'no command: usage error');
  const ok = await run(['exec', '-c', 'sgemu.yaml', '--', 'sh', '-c', 'exit 0'], dir);
  t.equal(ok.status, 0);
});

t.test('exec: loadtest inside checks every flow against the policy, and the flow log records them', { skip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sgemu-exec-'));
  chmodSync(dir, 0o777);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const echo = await echoServer(t);
  writeFileSync(join(dir, 'sgemu.yaml'), `securityGroups:
  - id: sg-db
    ingress: [ { protocol: tcp, ports: 5432, cidr: 127.0.0.0/9 } ]
instances:
  - { name: db, address: 10.0.1.15, securityGroups: [sg-db], services: [ { protocol: tcp, port: 5432, backend: "127.0.0.1:${echo.port}" } ] }
`);
  const flowLog = join(dir, 'flows.log');
  const r = await run(['exec', '-c', 'sgemu.yaml', '--flow-log', flowLog, '--flow-log-interval', '1', '--', process.execPath, CLI,
    'loadtest', '--flows', '80', '--concurrency', '16', '--timeout', '0.5', '--sources', '64', '--json'], dir);
  t.equal(r.status, 0, `loadtest inside exits 0 (stderr: ${r.stderr.slice(-300)})`);
  const j = JSON.parse(r.stdout) as { flows: number; mismatchCount: number; outcomes: Record<string, number> };
  t.equal(j.flows, 80);
  t.equal(j.mismatchCount, 0, `every outcome matched explain: ${JSON.stringify(j.outcomes)}`);
  t.ok((j.outcomes.connected ?? 0) > 0, 'some flows allowed (reached the backend on the host)');
  const records = readFileSync(flowLog, 'utf8').trim().split('\n').filter((l) => /^2 /.test(l));
  t.ok(records.length > 0, `flow log records written: ${records.length}`);
  t.ok(records.some((l) => / 10\.0\.1\.15 /.test(l)), 'with the instance address as AWS would log it');
});

// As root: the namespace maps uid 0 to itself, which Linux >= 5.12 allows only when the creator
// of the namespace held CAP_SETFCAP (commit db2e718a4798). The helper drops every capability
// before unshare, so `sgemu exec` as root (a CI job in a root shell) failed with EPERM; it now
// keeps CAP_SETFCAP through the unshare alone.
const skipRoot = process.getuid?.() !== 0 ? 'needs root' : !nativeStatus().loaded ? 'native addon not built'
  : !existsSync(helperPath()) ? 'helper not built' : userns();

t.test('as root: exec runs the command as root inside, and the rules apply', { skip: skipRoot }, async (t) => {
  const dir = t.testdir({});
  const echo = await echoServer(t);
  writeFileSync(join(dir, 'sgemu.yaml'), `securityGroups:
  - id: sg-db
    ingress: [ { protocol: tcp, ports: 5432, cidr: 10.0.2.0/24 } ]
  - id: sg-app
instances:
  - name: db
    address: 10.0.1.15
    securityGroups: [sg-db]
    services: [ { protocol: tcp, port: 5432, backend: "127.0.0.1:${echo.port}" } ]
  - name: app
    address: 10.0.2.20
    securityGroups: [sg-app]
`);
  // From app (allowed) and from db's own address (no rule: times out).
  const probe = String.raw`
const net = require('node:net');
const tcp = (from) => new Promise((res) => {
  const s = net.connect({ host: '10.0.1.15', port: 5432, localAddress: from });
  const timer = setTimeout(() => { s.destroy(); res('timeout'); }, 1000);
  s.on('connect', () => { s.write('ping'); s.once('data', (d) => { clearTimeout(timer); s.destroy(); res(String(d) === 'ping' ? 'allowed' : 'garbled'); }); });
  s.on('error', (e) => { clearTimeout(timer); res(e.code); });
});
(async () => console.log(JSON.stringify({ uid: process.getuid(), app: await tcp('10.0.2.20'), db: await tcp('10.0.1.15') })))();
`;
  const p = spawn(process.execPath, [CLI, 'exec', '-c', 'sgemu.yaml', '--api', 'off', '--', process.execPath, '-e', probe], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '', stderr = '';
  p.stdout.on('data', (d) => { stdout += d; });
  p.stderr.on('data', (d) => { stderr += d; });
  const status = await new Promise<number | null>((r) => p.on('exit', (s) => r(s)));
  t.equal(status, 0, `exit 0 (stderr: ${stderr.trim().slice(0, 400)})`);
  const line = stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  t.same(line ? JSON.parse(line) : null, { uid: 0, app: 'allowed', db: 'timeout' }, 'root inside; allowed from app, dropped from db');
});
