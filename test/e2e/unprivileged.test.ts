// As a normal user (issue #11): the daemon runs as uid 65534, the wire behaves as in AWS through
// the capability helper after `sgemu setup`, and without it the daemon exits 2 with the fix or,
// with --fallback, runs degraded exactly as documented. "Without privilege" is another uid here,
// never root minus one capability. The clients and backends are this (root) test process: only
// the daemon's privilege is under test.
//
// The helper under test is a copy in a temp dir, given its capabilities by the real
// `sgemu setup` (SGEMU_NETD points both at it), so the build tree is left as it was.

import t from 'tap';
import dgram from 'node:dgram';
import net from 'node:net';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { lookup } from 'node:dns/promises';
import { join } from 'node:path';
import { freshAddr, freePort, echoServer, noWireFaults, probe } from './helpers.js';
import { unreadableForNobody } from '../helpers.js';
import { helperPath } from '../../src/native/netd.js';
import { nativeStatus } from '../../src/native/sock-filter.js';

const CLI = new URL('../../dist/cli/main.js', import.meta.url).pathname;
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));
const SETCAP = ['/usr/sbin/setcap', '/sbin/setcap', '/usr/bin/setcap'].find((p) => existsSync(p));
const NOBODY = 65534;
const skip = process.getuid?.() !== 0 ? 'needs root to switch to uid 65534 and to run setup'
  : !SETPRIV ? 'setpriv(1) not installed (util-linux)'
  : !SETCAP ? 'setcap(8) not installed (libcap2-bin)'
  : !nativeStatus().loaded ? 'native addon not built'
  : !existsSync(helperPath()) ? `helper ${helperPath()} not built` : unreadableForNobody(CLI);

/** Two of the backends are given by name, as people write them (resolved by the daemon running as
 * uid 65534), where localhost is 127.0.0.1 here; the others by address. */
const LOCAL = (await lookup('localhost', { all: true }).catch(() => [])).some((a) => a.address === '127.0.0.1') ? 'localhost' : '127.0.0.1';

/** A world-readable temp dir (uid 65534 reads the config and runs the helper from it). */
function openDir(t: { teardown(f: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'sgemu-unpriv-'));
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function asNobody(args: string[], env: Record<string, string>): ChildProcess {
  return spawn(SETPRIV!, [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', process.execPath, CLI, ...args],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HOME: '/nonexistent', ...env } });
}
function asNobodySync(args: string[], env: Record<string, string>) {
  return spawnSync(SETPRIV!, [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', process.execPath, CLI, ...args],
    { encoding: 'utf8', env: { ...process.env, HOME: '/nonexistent', ...env }, timeout: 30_000 });
}

function waitFor(proc: ChildProcess, re: RegExp, ms = 15000): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re}; output:\n${out}`)), ms);
    const on = (d: Buffer) => { out += d; if (re.test(out)) { clearTimeout(timer); resolve(out); } };
    proc.stdout?.on('data', on);
    proc.stderr?.on('data', on);
    proc.once('exit', (c) => { clearTimeout(timer); reject(new Error(`exited ${c} before ${re}:\n${out}`)); });
  });
}
function exited(proc: ChildProcess): Promise<number | null> {
  return new Promise((r) => { if (proc.exitCode !== null) r(proc.exitCode); else proc.once('exit', (c) => r(c)); });
}

async function udpEcho(t: { teardown(f: () => void): void }): Promise<{ port: number; seen: string[] }> {
  const sock = dgram.createSocket('udp4');
  const seen: string[] = [];
  sock.on('message', (m, r) => { seen.push(`${r.address}:${r.port}`); sock.send(m, r.port, r.address); });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => sock.close());
  return { port: sock.address().port, seen };
}

/** A datagram from src to host:port on a connected socket: echoed, refused (ICMP), or silence. */
function udpProbe(src: string, host: string, port: number, ms = 600): Promise<string> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    let done = false;
    const finish = (o: string) => { if (!done) { done = true; clearTimeout(timer); s.close(); resolve(o); } };
    const timer = setTimeout(() => finish('timeout'), ms);
    s.on('error', (e: NodeJS.ErrnoException) => finish(e.code === 'ECONNREFUSED' ? 'refused' : e.code ?? 'error'));
    s.on('message', (m) => finish(m.toString() === 'ping' ? 'allowed' : 'garbled'));
    s.bind(0, src, () => s.connect(port, host, () => s.send('ping')));
  });
}

async function ec2(api: number, params: Record<string, string>): Promise<{ status: number; text: string }> {
  const body = new URLSearchParams({ Version: '2016-11-15', ...params }).toString();
  const r = await fetch(`http://127.0.0.1:${api}/`, { method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  return { status: r.status, text: await r.text() };
}

interface Setup { addr: string; src: string; tcp: number; tcpDown: number; udp: number; udpDown: number; echo: { port: number; accepted: string[] }; uecho: { port: number; seen: string[] }; cfg: string }

async function world(t: Parameters<typeof echoServer>[0], dir: string): Promise<Setup> {
  const addr = freshAddr(), src = freshAddr();
  const tcp = await freePort(addr), tcpDown = await freePort(addr), udp = await freePort(addr), udpDown = await freePort(addr);
  const dead = await freePort(), udead = await freePort();
  const echo = await echoServer(t);
  const uecho = await udpEcho(t);
  const cfg = join(dir, 'sgemu.yaml');
  writeFileSync(cfg, `securityGroups:
  - id: sg-u
    ingress:
      - { protocol: tcp, ports: ${tcp}, cidr: ${src}/32 }
      - { protocol: tcp, ports: ${tcpDown}, cidr: ${src}/32 }
      - { protocol: udp, ports: ${udp}, cidr: ${src}/32 }
      - { protocol: udp, ports: ${udpDown}, cidr: ${src}/32 }
instances:
  - name: u
    address: ${addr}
    securityGroups: [sg-u]
    services:
      - { protocol: tcp, port: ${tcp}, backend: "${LOCAL}:${echo.port}" }
      - { protocol: tcp, port: ${tcpDown}, backend: "127.0.0.1:${dead}" }
      - { protocol: udp, port: ${udp}, backend: "127.0.0.1:${uecho.port}" }
      - { protocol: udp, port: ${udpDown}, backend: "${LOCAL}:${udead}" }
`);
  chmodSync(cfg, 0o644);
  return { addr, src, tcp, tcpDown, udp, udpDown, echo, uecho, cfg };
}

/** Median round trip (ms) of small messages on one connection from src. */
async function rttMs(src: string, host: string, port: number, n = 7): Promise<number> {
  const c = net.connect({ host, port, localAddress: src });
  c.on('error', () => {});
  await new Promise((r) => c.once('connect', r));
  c.setNoDelay(true);
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await new Promise<void>((r) => { c.once('data', () => r()); c.write('ping'); });
    xs.push(performance.now() - t0);
  }
  c.destroy();
  return xs.sort((a, b) => a - b)[Math.floor(n / 2)]!;
}

/** A TCP latency fault and a UDP loss fault added through the API take effect, and go again. */
async function faultChecks(t: Parameters<typeof echoServer>[0], w: Setup, api: number): Promise<void> {
  const post = (body: unknown) => fetch(`http://127.0.0.1:${api}/v1/faults`, { method: 'POST', body: JSON.stringify(body) });
  const base = await rttMs(w.src, w.addr, w.tcp);
  t.equal((await post({ target: `u:tcp/${w.tcp}`, type: 'latency', attributes: { latency: 100 } })).status, 201, 'fault added');
  const slow = await rttMs(w.src, w.addr, w.tcp);
  t.ok(slow - base >= 90 && slow - base <= 140, `latency fault on the wire: +${(slow - base).toFixed(1)} ms of 100`, { skip: noWireFaults() });
  t.equal((await post({ target: `u:udp/${w.udp}`, type: 'loss', stream: 'upstream', attributes: { probability: 1 } })).status, 201);
  t.equal(await udpProbe(w.src, w.addr, w.udp), 'timeout', 'UDP loss 1: nothing answered', { skip: noWireFaults('udp') });
  for (const target of [`u:tcp/${w.tcp}`, `u:udp/${w.udp}`]) {
    t.equal((await fetch(`http://127.0.0.1:${api}/v1/faults?target=${target}`, { method: 'DELETE' })).status, 200);
  }
  t.equal(await udpProbe(w.src, w.addr, w.udp), 'allowed', 'faults removed: UDP answered again');
  t.ok(await rttMs(w.src, w.addr, w.tcp) < base + 50, 'and TCP fast again');
}

t.test('uid 65534 after `sgemu setup`: every outcome as in AWS, through the capability helper', { skip }, async (t) => {
  const dir = openDir(t);
  const helper = join(dir, 'sgemu-netd');
  copyFileSync(helperPath(), helper);
  const env = { SGEMU_NETD: helper };
  const setup = spawnSync(process.execPath, [CLI, 'setup'], { encoding: 'utf8', env: { ...process.env, ...env } });
  t.equal(setup.status, 0, setup.stderr);
  t.match(setup.stdout, /cap_net_admin,cap_net_raw/, 'setup says what it gave');

  const doc = asNobodySync(['doctor', '--json'], env);
  t.equal(doc.status, 0, 'doctor: exact');
  t.match(JSON.parse(doc.stdout), { mode: 'helper', exact: true });

  const w = await world(t, dir);
  const api = await freePort();
  const proc = asNobody(['run', '-c', w.cfg, '--api', `127.0.0.1:${api}`, '--state', 'off'], env);
  t.teardown(() => { if (proc.exitCode === null) proc.kill('SIGKILL'); });
  const log = await waitFor(proc, /ready:/);
  t.match(log, /privilege: helper/, 'start-up log names the mode');
  t.match(log, /ready: 4 listeners/, 'every listener opened');

  const other = freshAddr();
  t.equal(await probe(w.src, w.addr, w.tcp), 'allowed', 'TCP allowed: bytes echoed');
  const acceptedBefore = w.echo.accepted.length;
  t.equal(await probe(other, w.addr, w.tcp, 700), 'timeout', 'TCP denied: timeout');
  t.equal(w.echo.accepted.length, acceptedBefore, 'and the backend saw nothing');
  const t0 = performance.now();
  t.equal(await probe(w.src, w.addr, w.tcpDown, 1000), 'refused', 'TCP allowed, backend down: ECONNREFUSED');
  t.comment(`refused after ${(performance.now() - t0).toFixed(1)} ms`);
  t.equal(await udpProbe(w.src, w.addr, w.udp), 'allowed', 'UDP allowed: echoed');
  const seenBefore = w.uecho.seen.length;
  t.equal(await udpProbe(other, w.addr, w.udp), 'timeout', 'UDP denied: no answer');
  t.equal(w.uecho.seen.length, seenBefore, 'and the backend saw nothing');
  t.equal(await udpProbe(w.src, w.addr, w.udpDown, 1000), 'refused', 'UDP allowed, backend down: ICMP port unreachable');

  // API changes swap the TCP filter through the helper.
  const perm = { GroupId: 'sg-u', 'IpPermissions.1.IpProtocol': 'tcp', 'IpPermissions.1.FromPort': String(w.tcp), 'IpPermissions.1.ToPort': String(w.tcp), 'IpPermissions.1.IpRanges.1.CidrIp': `${other}/32` };
  t.equal((await ec2(api, { Action: 'AuthorizeSecurityGroupIngress', ...perm })).status, 200);
  t.equal(await probe(other, w.addr, w.tcp), 'allowed', 'after authorize: allowed');
  // Tracked on revoke: an open connection lives on, new ones time out.
  const held = net.connect({ host: w.addr, port: w.tcp, localAddress: other });
  held.on('error', () => {});
  await new Promise((r) => held.once('connect', r));
  t.equal((await ec2(api, { Action: 'RevokeSecurityGroupIngress', ...perm })).status, 200);
  t.equal(await probe(other, w.addr, w.tcp, 600), 'timeout', 'after revoke: new connections time out');
  const echoed = await new Promise<string>((resolve) => {
    const timer = setTimeout(() => resolve('silence'), 800);
    held.once('data', (d) => { clearTimeout(timer); resolve(d.toString()); });
    held.write('still here');
  });
  t.equal(echoed, 'still here', 'the tracked connection lives on');
  held.destroy();
  // Untracked (0.0.0.0/0 in, default egress): a revoke stops the open flow at once.
  const open = { GroupId: 'sg-u', 'IpPermissions.1.IpProtocol': 'tcp', 'IpPermissions.1.FromPort': String(w.tcp), 'IpPermissions.1.ToPort': String(w.tcp), 'IpPermissions.1.IpRanges.1.CidrIp': '0.0.0.0/0' };
  t.equal((await ec2(api, { Action: 'AuthorizeSecurityGroupIngress', ...open })).status, 200);
  const u = net.connect({ host: w.addr, port: w.tcp, localAddress: other });
  let cut = false;
  u.on('error', () => { cut = true; });
  u.on('close', () => { cut = true; });
  await new Promise((r) => u.once('connect', r));
  t.equal((await ec2(api, { Action: 'RevokeSecurityGroupIngress', ...open })).status, 200);
  const after = await new Promise<string>((resolve) => {
    const timer = setTimeout(() => resolve(cut ? 'cut' : 'silence'), 800);
    u.once('data', (d) => { clearTimeout(timer); resolve(d.toString()); });
    if (!cut) u.write('anyone?');
  });
  t.not(after, 'anyone?', `the untracked connection stopped passing (${after})`);
  u.destroy();

  // Faults (SPEC.md §9) as this user, in the relay the helper's listeners feed.
  await faultChecks(t, w, api);

  proc.kill('SIGTERM');
  t.equal(await exited(proc), 0, 'SIGTERM: clean exit');
  const undo = spawnSync(process.execPath, [CLI, 'setup', '--undo'], { encoding: 'utf8', env: { ...process.env, ...env } });
  t.equal(undo.status, 0, undo.stderr);
  t.equal(asNobodySync(['doctor', '--json'], env).status, 1, 'after setup --undo: no longer exact');
});

t.test('uid 65534 with nothing set up: exit 2 with the fix; --fallback runs degraded as documented', { skip }, async (t) => {
  const dir = openDir(t);
  const helper = join(dir, 'sgemu-netd');
  copyFileSync(helperPath(), helper);         // a helper without capabilities
  const env = { SGEMU_NETD: helper };
  const w = await world(t, dir);

  const plain = asNobodySync(['run', '-c', w.cfg, '--api', 'off', '--state', 'off'], env);
  t.equal(plain.status, 2, 'exit 2');
  t.match(plain.stderr, /PrivilegeRequired/, 'names what is missing');
  t.match(plain.stderr, /CAP_NET_ADMIN/, 'and why');
  t.match(plain.stderr, /sudo .* setup/, 'and the one command that fixes it');
  t.match(plain.stderr, /on this kernel \(\d[^;]*; since Linux commit 5d39580f68e6\)/, 'the kernel named by its release, the change by its commit');
  t.match(plain.stderr, /without sudo, for a test command: sgemu exec -c FILE -- CMD/, 'and the way without sudo');
  t.notMatch(plain.stderr, /ready:/, 'never ready');

  const doc = asNobodySync(['doctor', '--json'], env);
  t.equal(doc.status, 1);
  const d = JSON.parse(doc.stdout) as { mode: string; behaviours: { behaviour: string; exact: boolean; upgrade: string | null }[] };
  t.equal(d.mode, 'unavailable');
  t.ok(d.behaviours.filter((b) => !b.exact).every((b) => /setup/.test(b.upgrade ?? '')), 'each degraded behaviour names the upgrade');

  const fapi = await freePort();
  const proc = asNobody(['run', '-c', w.cfg, '--api', `127.0.0.1:${fapi}`, '--state', 'off', '--fallback'], env);
  t.teardown(() => { if (proc.exitCode === null) proc.kill('SIGKILL'); });
  const log = await waitFor(proc, /ready:/);
  t.match(log, /FALLBACK/, 'the start-up log says it runs degraded');
  t.match(log, /denied TCP: connect\(\) succeeds, then ECONNRESET/, 'and which outcomes change');
  t.match(log, /ready: 4 listeners/);
  t.equal(await probe(w.src, w.addr, w.tcp), 'allowed', 'allowed still allowed');
  const before = w.echo.accepted.length;
  t.equal(await probe(freshAddr(), w.addr, w.tcp, 1000), 'reset', 'denied TCP: accepted then reset');
  t.equal(w.echo.accepted.length, before, 'the backend still saw nothing');
  t.equal(await probe(w.src, w.addr, w.tcpDown, 1000), 'reset', 'backend down: reset instead of refused');
  t.equal(await udpProbe(freshAddr(), w.addr, w.udp), 'timeout', 'denied UDP: still dropped in the kernel (UDP filters need no privilege)');
  t.equal(await udpProbe(w.src, w.addr, w.udpDown, 800), 'timeout', 'UDP backend down: silence');
  await faultChecks(t, w, fapi);   // faults need no privilege: the same in fallback
  proc.kill('SIGTERM');
  t.equal(await exited(proc), 0);
});
