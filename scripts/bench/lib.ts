// Shared pieces of the end-to-end benchmarks: options, statistics, result lines, and the processes
// under test (the sgemu daemon, HAProxy, socat, the backends), each started by the script itself
// on loopback addresses and stopped when it ends.
//
// A result is a ratio against a baseline measured in the same run (STYLE "Benchmarks"): samples of
// the candidate and the baseline are taken in alternation, the ratio is computed per round, and
// the line shows the median ratio, n and ± (sample stddev / mean of the per-round ratios).
//
// Options every script takes:
//   --quick          tiny sizes (the whole suite in < 30 s; a smoke test, not a measurement)
//   --results FILE   also write the results as JSON (run.mjs reads them)
//   --dist           run the daemon from dist/cli/main.js (after `npm run build`) instead of src/
//   --cpu-prof DIR   run the daemon under `node --cpu-prof` and write its profile to DIR

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const argv = process.argv.slice(2);
const optValue = (name: string): string | null => {
  const i = argv.indexOf(name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1]! : null;
};
export const QUICK = argv.includes('--quick');
export const RESULTS_FILE = optValue('--results');
export const USE_DIST = argv.includes('--dist');
export const CPU_PROF_DIR = optValue('--cpu-prof');

// ---------------------------------------------------------------- statistics

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Sample stddev / mean, in percent (0 for fewer than two samples). */
export function spreadPct(xs: readonly number[]): number {
  if (xs.length < 2) return 0;
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1));
  return mean === 0 ? 0 : (100 * sd) / Math.abs(mean);
}

/** p in [0, 100] of a sorted array, nearest rank. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- results

export interface Result {
  /** e.g. "tcp bulk", "udp req/s" */
  name: string;
  /** the headline number: a ratio (unit "x direct") or a measurement (unit "ms", "MB/s", ...) */
  value: number;
  unit: string;
  n: number;
  spreadPct: number;
  /** absolute figures behind the ratio, free text */
  detail: string;
  /** the issue's target, free text ("≥ 1.0x haproxy"), or "" */
  target: string;
  /** whether the target is met; null when there is no target or nothing was measured */
  met: boolean | null;
}

const results: Result[] = [];

export function fmtNum(v: number, digits = 2): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a >= 1e9) return `${(v / 1e9).toFixed(digits)} G`;
  if (a >= 1e6) return `${(v / 1e6).toFixed(digits)} M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(digits)} k`;
  return v.toFixed(digits);
}

export function formatResult(r: Result): string {
  if (r.n === 0) return `${r.name}: ${r.detail}${r.target ? `  [target ${r.target}: n/a]` : ''}`;
  const v = r.unit.startsWith('x') ? `${r.value.toFixed(2)}${r.unit}` : `${fmtNum(r.value)} ${r.unit}`;
  const t = r.target ? `  [target ${r.target}: ${r.met === null ? 'n/a' : r.met ? 'met' : 'MISSED'}]` : '';
  return `${r.name}: ${v}, n=${r.n}, ±${r.spreadPct.toFixed(1)}%${r.detail ? `  (${r.detail})` : ''}${t}`;
}

/** Prints a result line and keeps it for --results. */
export function report(r: Result): void {
  results.push(r);
  console.log(formatResult(r));
}

/** A benchmark that could not run (baseline missing, daemon failing): printed, kept, not fatal. */
export function skip(name: string, why: string, target = ''): void {
  report({ name, value: NaN, unit: '', n: 0, spreadPct: 0, detail: `skipped: ${why}`, target, met: null });
}

export function writeResults(): void {
  if (RESULTS_FILE) writeFileSync(RESULTS_FILE, JSON.stringify(results, null, 1));
}

/**
 * The candidate/baseline ratio from paired samples (same round, taken in alternation), or null
 * when either side has no samples.
 */
export function pairedRatio(cand: readonly number[], base: readonly number[]): { value: number; n: number; spreadPct: number } | null {
  const n = Math.min(cand.length, base.length);
  if (n === 0) return null;
  const r: number[] = [];
  for (let i = 0; i < n; i++) r.push(cand[i]! / base[i]!);
  return { value: median(r), n, spreadPct: spreadPct(r) };
}

export function machineInfo(): { node: string; cpu: string; cores: number; kernel: string; platform: string } {
  const cpus = os.cpus();
  return { node: process.version, cpu: cpus[0]?.model.trim() ?? 'unknown', cores: cpus.length, kernel: os.release(), platform: os.platform() };
}

export function header(title: string): void {
  const m = machineInfo();
  console.log(`# ${title} — ${new Date().toISOString()}`);
  console.log(`# node ${m.node}, ${m.cpu} ×${m.cores}, ${m.platform} ${m.kernel}`);
  console.log(`# command: TS_NODE_TRANSPILE_ONLY=1 node --import @tapjs/typescript/import ${path.relative(ROOT, process.argv[1] ?? '')} ${argv.join(' ').replace(/--results \S+/, '').trim()}`.trimEnd());
}

// ---------------------------------------------------------------- processes

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) {
    try { if (c.pid) process.kill(-c.pid, 'SIGKILL'); } catch { try { c.kill('SIGKILL'); } catch { /* gone */ } }
  }
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));

export interface Proc {
  readonly pid: number;
  /** stdout + stderr so far (bounded to the last 64 KiB) */
  output(): string;
  /** SIGTERM the process group, SIGKILL after `graceMs`; resolves when it exited. */
  stop(graceMs?: number): Promise<void>;
  readonly exited: Promise<number | null>;
}

/** Spawns in its own process group (socat forks children), output kept for error messages. */
export function startProc(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Proc {
  const c = spawn(cmd, args, { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  children.add(c);
  let out = '';
  const keep = (b: Buffer) => { out = (out + b.toString()).slice(-65536); };
  c.stdout!.on('data', keep);
  c.stderr!.on('data', keep);
  const exited = new Promise<number | null>((res) => {
    c.on('exit', (code) => { children.delete(c); res(code); });
    c.on('error', (e) => { out += `\nspawn ${cmd}: ${e.message}`; children.delete(c); res(null); });
  });
  return {
    pid: c.pid ?? -1,
    output: () => out,
    exited,
    async stop(graceMs = 3000) {
      if (c.exitCode !== null || c.signalCode !== null || !c.pid) return;
      try { process.kill(-c.pid, 'SIGTERM'); } catch { /* gone */ }
      const t = setTimeout(() => { try { process.kill(-c.pid!, 'SIGKILL'); } catch { /* gone */ } }, graceMs);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Resolves when `out()` contains `needle`; rejects on exit or after `timeoutMs`. */
export async function waitOutput(p: Proc, needle: string | RegExp, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  let dead = false;
  void p.exited.then(() => { dead = true; });
  for (;;) {
    const o = p.output();
    if (typeof needle === 'string' ? o.includes(needle) : needle.test(o)) return;
    if (dead) throw new Error(`${what} exited before it was ready; its output:\n${o.slice(-2000)}`);
    if (Date.now() > until) throw new Error(`${what} not ready after ${timeoutMs} ms; its output:\n${o.slice(-2000)}`);
    await sleep(20);
  }
}

/** Resolves once a TCP connect to host:port succeeds (bounded by `timeoutMs`). */
export async function waitTcp(host: string, port: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((res) => {
      const s = net.connect({ host, port });
      s.once('connect', () => { s.destroy(); res(true); });
      s.once('error', () => res(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await sleep(20);
  }
}

/** A port that is free on `host` now (bound to 0 and released). */
export function freePort(host: string): Promise<number> {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.once('error', rej);
    s.listen(0, host, () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => res(p));
    });
  });
}

export interface Backends { tcpSink: number; tcpEcho: number; udpEcho: number; proc: Proc }

/** The backends of backend.mjs in their own process, on 127.0.0.1. */
export async function startBackends(): Promise<Backends> {
  const proc = startProc(process.execPath, [path.join(ROOT, 'scripts/bench/backend.mjs')]);
  await waitOutput(proc, /\{"tcpSink".*\}\n/, 10_000, 'the bench backends');
  const ports = JSON.parse(/\{"tcpSink".*\}/.exec(proc.output())![0]) as Omit<Backends, 'proc'>;
  return { ...ports, proc };
}

export function haveCommand(cmd: string): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => {
    try { return readFileSync(path.join(d, cmd)).length > 0; } catch { return false; }
  });
}

const tmpDirs: string[] = [];
process.on('exit', () => { for (const d of tmpDirs) rmSync(d, { recursive: true, force: true }); });
export function tmpDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'sgemu-bench-'));
  tmpDirs.push(d);
  return d;
}

export interface Sgemu { proc: Proc; configPath: string; rewrite(yaml: string): void; reload(): void }

/**
 * The benchmarks' config: one instance `bench` at `address` whose group allows every port of
 * `protocol` from 127.0.0.0/8, with a service per [listen port, backend port on 127.0.0.1].
 */
export function openConfig(address: string, protocol: 'tcp' | 'udp', services: readonly [number, number][]): string {
  return `securityGroups:
  - id: sg-bench
    ingress: [ { protocol: ${protocol}, ports: all, cidr: 127.0.0.0/8 } ]
instances:
  - name: bench
    address: ${address}
    securityGroups: [sg-bench]
    services:
${services.map(([listen, backend]) => `      - { protocol: ${protocol}, port: ${listen}, backend: "127.0.0.1:${backend}" }`).join('\n')}
`;
}

/**
 * Starts `sgemu run -c FILE --api off --drain 0` in a child process (its own core and event loop,
 * as in real use) and waits for its "ready:" log line. From src/ through tap's TypeScript loader,
 * or from dist/ with --dist; under --cpu-prof when asked; with `dropNetRaw` under
 * `setpriv --bounding-set -net_raw` (the proc's pid is then setpriv's, which execs node: the same pid).
 */
export async function startSgemu(yaml: string, extraArgs: string[] = [], opts: { dropNetRaw?: boolean } = {}): Promise<Sgemu> {
  const dir = tmpDir();
  const configPath = path.join(dir, 'sgemu.yaml');
  writeFileSync(configPath, yaml);
  const nodeArgs: string[] = [];
  if (CPU_PROF_DIR) nodeArgs.push('--cpu-prof', '--cpu-prof-dir', path.resolve(CPU_PROF_DIR));
  if (USE_DIST) nodeArgs.push(path.join(ROOT, 'dist/cli/main.js'));
  else nodeArgs.push('--import', '@tapjs/typescript/import', path.join(ROOT, 'src/cli/main.ts'));
  nodeArgs.push('run', '-c', configPath, '--api', 'off', '--drain', '0', ...extraArgs);
  const env = { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' };
  // dropNetRaw: without CAP_NET_RAW the daemon has no pcap SYN watch (fallback refusal mode).
  const proc = opts.dropNetRaw
    ? startProc('setpriv', ['--bounding-set', '-net_raw', '--', process.execPath, ...nodeArgs], env)
    : startProc(process.execPath, nodeArgs, env);
  await waitOutput(proc, ' ready: ', 30_000, 'sgemu run');
  return {
    proc, configPath,
    rewrite: (y: string) => writeFileSync(configPath, y),
    reload: () => process.kill(proc.pid, 'SIGHUP'),
  };
}

export interface HaproxyRoute { bindHost: string; bindPort: number; backendPort: number }

/** HAProxy in `mode tcp`, one thread (the daemon is one Node thread too), or null when not installed. */
export async function startHaproxy(routes: HaproxyRoute[]): Promise<Proc | null> {
  if (!haveCommand('haproxy')) return null;
  const dir = tmpDir();
  const cfg = [
    'global', '  nbthread 1', '  maxconn 8000',
    'defaults', '  mode tcp', '  timeout connect 5s', '  timeout client 60s', '  timeout server 60s',
    ...routes.flatMap((r, i) => [
      `listen l${i}`, `  bind ${r.bindHost}:${r.bindPort}`, `  server s${i} 127.0.0.1:${r.backendPort}`,
    ]),
  ].join('\n') + '\n';
  const file = path.join(dir, 'haproxy.cfg');
  writeFileSync(file, cfg);
  const p = startProc('haproxy', ['-db', '-f', file]);
  const died = p.exited.then(() => { throw new Error(`haproxy exited: ${p.output().slice(-1000)}`); });
  await Promise.race([died, (async () => { for (const r of routes) await waitTcp(r.bindHost, r.bindPort, 10_000); })()]);
  died.catch(() => { /* reported above if it happened while starting */ });
  return p;
}

/** `socat UDP4-LISTEN:port,bind=host,fork,reuseaddr UDP4:127.0.0.1:backend`, or null when not installed. */
export async function startSocatUdp(host: string, port: number, backendPort: number): Promise<Proc | null> {
  if (!haveCommand('socat')) return null;
  const p = startProc('socat', [`UDP4-LISTEN:${port},bind=${host},fork,reuseaddr`, `UDP4:127.0.0.1:${backendPort}`]);
  await sleep(200);
  if (p.output()) throw new Error(`socat: ${p.output()}`);
  return p;
}

/** The fields of /proc/PID/stat after the command (state is [0], pgrp [2], utime [11], stime [12]). */
function statFields(pid: number | string): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}
const ticksMs = (f: string[]): number => ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
const CLK_TCK = 100;   // sysconf(_SC_CLK_TCK) on Linux is 100 on every mainstream architecture

/** utime + stime of a process in milliseconds, from /proc/PID/stat. */
export function cpuMs(pid: number): number { return ticksMs(statFields(pid)); }

/** The id of this process's thread named `comm` (e.g. the UDP relay's `sgemu-udp`), or 0. */
export function threadId(comm: string): number {
  for (const t of readdirSync('/proc/self/task')) {
    try { if (readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim() === comm) return Number(t); } catch { /* gone */ }
  }
  return 0;
}

/** utime + stime of one thread of this process, ms (clock ticks of 10 ms: long samples only). */
export function threadCpuMs(tid: number): number { return ticksMs(statFields(`self/task/${tid}`)); }

/** CPU of every process in process group `pgid` (socat's children per flow), in milliseconds. */
export function groupCpuMs(pgid: number): number {
  let ms = 0;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const f = statFields(d);
      if (Number(f[2]) === pgid) ms += ticksMs(f);
    } catch { /* exited meanwhile */ }
  }
  return ms;
}

/** The machine's busy and total CPU time so far (all cores, ms), from /proc/stat. */
export function machineCpuMs(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = f[3]! + f[4]!;
  return { busy: ((total - idle) * 1000) / CLK_TCK, total: (total * 1000) / CLK_TCK };
}

/**
 * CPU spent while a load ran, summed over samples (ms): this process (the clients), the backend,
 * the proxy, and the machine's busy and total time; `done` is the work it bought (requests,
 * connections, MB). On a machine with few cores the three share them, so this says where a gap
 * between two proxies comes from.
 */
export interface CpuTally { done: number; client: number; backend: number; proxy: number; busy: number; total: number }
export const cpuTally = (): CpuTally => ({ done: 0, client: 0, backend: 0, proxy: 0, busy: 0, total: 0 });

/** A reading now; `proxyMs` is the proxy's CPU so far (0 without one). */
export function cpuReading(done: number, backendPid: number, proxyMs: number): CpuTally {
  const m = machineCpuMs();
  return { done, client: cpuMs(process.pid), backend: cpuMs(backendPid), proxy: proxyMs, busy: m.busy, total: m.total };
}

/** Adds what happened between two readings to `into`. */
export function addCpu(into: CpuTally, from: CpuTally, to: CpuTally): void {
  for (const k of Object.keys(into) as (keyof CpuTally)[]) into[k] += to[k] - from[k];
}

/** "µs per unit of work" of one column, and the machine's busy share, for the bench lines. */
export function cpuPer(c: CpuTally, ms: number, digits: number): string {
  return c.done > 0 ? (ms * 1000 / c.done).toFixed(digits) : '-';
}
export function busyPct(c: CpuTally): string {
  return c.total > 0 ? (100 * c.busy / c.total).toFixed(0) : '-';
}

/** Runs `main`, prints a failure instead of a stack for known problems, writes --results. */
export function runMain(main: () => Promise<void>): void {
  main().then(
    () => { writeResults(); process.exit(0); },
    (e: unknown) => { console.error(e instanceof Error ? e.stack ?? e.message : String(e)); writeResults(); process.exit(1); },
  );
}
