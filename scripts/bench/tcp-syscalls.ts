// What a short TCP connection costs the proxy's threads, counted by the kernel: system calls (by
// kind), context switches and CPU µs per connection, for HAProxy (mode tcp, one thread) and for
// the sgemu daemon (its relay threads `sgemu-tcp-relay*` and its Node thread counted apart), under
// the conn/s load of scripts/bench/tcp.ts (C workers: connect, 16 B, 16 B echo, close).
// Connection rates on a shared 2-core machine move ±20-40 % with the neighbours; the counts per
// connection do not, so they show what a relay change does.
//
// Run (from the repo root, as root or with perf_event_paranoid ≤ 1):
//   TS_NODE_TRANSPILE_ONLY=1 node --import @tapjs/typescript/import scripts/bench/tcp-syscalls.ts --dist
//     [--quick] [--threads N] [--trace]
//   --trace   also one sample per thread group counting each system call by name (perf stat on
//             the syscalls:sys_enter_* tracepoints: exact counts, unlike `perf trace -s`, which
//             drops events under this load)
//   --record DIR   also `perf record -g` each thread group for one sample into DIR/<target>-<group>.data
//             (then: perf report -i FILE --no-children --sort sym --stdio)
// It also times a null system call (getppid) on this machine, against a vDSO clock_gettime in the
// same run, and prints what the entries and exits alone cost each thread group per connection:
// the most that batching the calls (io_uring) could save, the kernel's TCP work aside.

import net from 'node:net';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QUICK, fmtNum, openConfig, haveCommand, header, median, runMain, sleep, startBackends, startHaproxy, startSgemu, freePort } from './lib.js';

const argv = process.argv.slice(2);
const THREADS = argv.includes('--threads') ? argv[argv.indexOf('--threads') + 1]! : '';
const TRACE = argv.includes('--trace');
const RECORD = argv.includes('--record') ? argv[argv.indexOf('--record') + 1]! : '';
const C = QUICK ? 8 : 32;
const SAMPLES = QUICK ? 1 : 3;
const SAMPLE_S = QUICK ? 0.5 : 2;
const SGEMU_ADDR = '127.0.0.51';
const HAPROXY_ADDR = '127.0.0.61';
const EVENTS = ['task-clock', 'context-switches', 'raw_syscalls:sys_enter'];

let srcIdx = 0;
const nextSrc = (): string => `127.0.2.${1 + (srcIdx++ % 250)}`;

/** The load: C workers of connect / 16 B / 16 B / close until stop(); done counts completions. */
function load(host: string, port: number): { done: () => number; stop: () => Promise<void> } {
  const req = Buffer.alloc(16, 0x61);
  let done = 0, running = true;
  const one = (): Promise<void> => new Promise((res) => {
    const s = net.connect({ host, port, localAddress: nextSrc(), noDelay: true });
    let got = 0, ok = false;
    const guard = setTimeout(() => s.destroy(), 2000);
    s.on('connect', () => s.write(req));
    s.on('data', (b) => { got += b.length; if (got >= 16 && !ok) { ok = true; s.end(); } });
    s.on('error', () => {});
    s.on('close', () => { clearTimeout(guard); if (ok) done++; res(); });
  });
  const all = Promise.all(Array.from({ length: C }, async () => { while (running) await one(); }));
  return { done: () => done, stop: async () => { running = false; await all; } };
}

/** Thread ids of pid whose name starts with `prefix` (all threads when prefix is ''). */
function tids(pid: number, match: (comm: string) => boolean): number[] {
  const out: number[] = [];
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try { if (match(readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim())) out.push(Number(t)); } catch { /* gone */ }
  }
  return out;
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((res) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    p.on('close', () => res(out));
  });
}

const SYSCALLS = ['accept4', 'socket', 'setsockopt', 'getsockopt', 'fcntl', 'bind', 'connect', 'epoll_ctl', 'epoll_wait', 'epoll_pwait',
  'recvfrom', 'sendto', 'read', 'write', 'splice', 'shutdown', 'close', 'futex', 'clock_gettime', 'timerfd_settime'];

/**
 * perf stat --per-thread on the threads for SAMPLE_S: thread → event → count. perf needs a few
 * hundred ms to set up the tracepoints before it starts counting, so the caller divides by the
 * backend connects counted in the same window (syscalls:sys_enter_connect: one per relayed
 * connection, for HAProxy and sgemu alike), never by connections counted by the clients.
 */
async function perfStat(threads: number[], events: string[]): Promise<Map<number, Map<string, number>>> {
  const out = await run('perf', ['stat', '-x,', '--per-thread', '-e', events.join(','), '-t', threads.join(','), '--', 'sleep', String(SAMPLE_S)]);
  const m = new Map<number, Map<string, number>>();
  for (const l of out.split('\n')) {
    const f = l.split(',');
    const tid = /-(\d+)$/.exec(f[0] ?? '');
    if (!tid || f.length < 4) continue;
    const t = Number(tid[1]);
    if (!m.has(t)) m.set(t, new Map());
    m.get(t)!.set(f[3]!.replace('syscalls:sys_enter_', ''), /^[\d.]+$/.test(f[1]!) ? Number(f[1]) : 0);
  }
  return m;
}

const sum = (m: Map<number, Map<string, number>>, th: number[], e: string): number => th.reduce((a, t) => a + (m.get(t)?.get(e) ?? 0), 0);

const NULL_SYSCALL_C = `#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
int main(int argc, char **argv) {
  const int n = argc > 1 ? atoi(argv[1]) : 2000000; struct timespec t;
  double a = now(); for (int i = 0; i < n; i++) syscall(SYS_getppid);
  double b = now(); for (int i = 0; i < n; i++) clock_gettime(CLOCK_MONOTONIC, &t);
  double c = now(); printf("%f %f\\n", (b - a) / n / 1e3, (c - b) / n / 1e3); return 0;
}
`;

/** µs per null system call and per vDSO clock_gettime (the baseline), median of 3; null without a C compiler. */
async function nullSyscallUs(): Promise<{ syscall: number; vdso: number } | null> {
  if (!haveCommand('cc')) return null;
  const dir = mkdtempSync(join(tmpdir(), 'sgemu-nullsys-'));
  try {
    writeFileSync(join(dir, 'n.c'), NULL_SYSCALL_C);
    await run('cc', ['-O2', '-o', join(dir, 'n'), join(dir, 'n.c')]);
    const sys: number[] = [], vdso: number[] = [];
    for (let k = 0; k < 3; k++) {
      const [a, b] = (await run(join(dir, 'n'), [String(NULL_CALLS)])).trim().split(' ').map(Number);
      if (!(a! > 0 && b! > 0)) return null;          // not built, or did not run
      sys.push(a!); vdso.push(b!);
    }
    return { syscall: median(sys), vdso: median(vdso) };
  } finally { rmSync(dir, { recursive: true, force: true }); }
}
let nullSys: { syscall: number; vdso: number } | null = null;
const NULL_CALLS = QUICK ? 200_000 : 2_000_000;

async function measure(name: string, host: string, port: number, groups: [string, number[]][]): Promise<void> {
  const l = load(host, port);
  await sleep(500);
  const all = groups.flatMap(([, th]) => th);
  const conns = groups[0]![1];   // the thread(s) that connect to the backend
  try {
    const per = new Map<string, Map<string, number[]>>(groups.map(([g]) => [g, new Map()]));
    const push = (g: string, e: string, v: number): void => {
      const m = per.get(g)!;
      if (!m.has(e)) m.set(e, []);
      m.get(e)!.push(v);
    };
    for (let k = 0; k < SAMPLES; k++) {
      const d0 = l.done();
      const c = await perfStat(all, [...EVENTS, 'syscalls:sys_enter_connect']);
      const n = sum(c, conns, 'connect');
      for (const [g, th] of groups) {
        for (const e of EVENTS) push(g, e, sum(c, th, e) / n);
        push(g, 'rate', (l.done() - d0) / SAMPLE_S);
      }
    }
    for (const [g] of groups) {
      const m = per.get(g)!;
      const f = (e: string, d = 2): string => fmtNum(median(m.get(e)!), d);
      // task-clock is in ms (perf's msec): ×1000 for µs per connection
      console.log(`${`${name} ${g}`.padEnd(22)} CPU ${fmtNum(median(m.get('task-clock')!) * 1000, 1).padStart(6)} µs/conn  syscalls ${f('raw_syscalls:sys_enter').padStart(6)}/conn  ctx-sw ${f('context-switches').padStart(5)}/conn  (${f('rate', 0)} conn/s, n=${SAMPLES})`);
      if (nullSys) {
        const calls = median(m.get('raw_syscalls:sys_enter')!), cpu = median(m.get('task-clock')!) * 1000;
        console.log(`#   ${name} ${g}: entries and exits alone ≈ ${fmtNum(calls * nullSys.syscall, 1)} µs/conn (${fmtNum(calls, 1)} × ${fmtNum(nullSys.syscall, 2)} µs), ${fmtNum((calls * nullSys.syscall / cpu) * 100, 0)} % of its CPU`);
      }
    }
    if (RECORD) {
      for (const [g, th] of groups) {
        const file = `${RECORD}/${name}-${g.replace(/\W+/g, '-')}.data`;
        await run('perf', ['record', '-q', '-g', '-o', file, '-t', th.join(','), '--', 'sleep', String(SAMPLE_S)]);
        console.log(`#   ${name} ${g}: perf record -g -t ${th.join(',')} → ${file}`);
      }
    }
    if (TRACE) {
      const c = await perfStat(all, SYSCALLS.map((s) => `syscalls:sys_enter_${s}`));
      const n = sum(c, conns, 'connect');
      for (const [g, th] of groups) {
        const parts = SYSCALLS.map((s) => [s, sum(c, th, s) / n] as const).filter(([, v]) => v >= 0.005).sort((a, b) => b[1] - a[1]).map(([s, v]) => `${s} ${v.toFixed(2)}`);
        console.log(`#   ${name} ${g} syscalls per connection (${n} connects): ${parts.join(', ')}`);
      }
    }
  } finally {
    await l.stop();
  }
}

async function main(): Promise<void> {
  header('tcp per-connection cost: syscalls, context switches, CPU per short connection, by thread');
  console.log(`# C=${C} workers: connect, 16 B, 16 B echo, close; ${SAMPLES} samples × ${SAMPLE_S} s of perf stat --per-thread; per connection = per backend connect${THREADS ? `; sgemu --threads ${THREADS}` : ''}`);
  nullSys = await nullSyscallUs();
  console.log(nullSys
    ? `# a null system call (getppid) costs ${fmtNum(nullSys.syscall, 3)} µs here, ${fmtNum(nullSys.syscall / nullSys.vdso, 1)}x a vDSO clock_gettime (${fmtNum(nullSys.vdso, 3)} µs), median of 3 × ${NULL_CALLS / 1e6}M calls`
    : '# no C compiler (cc): the null system call is not timed');
  if (!haveCommand('perf')) { console.log('# perf not installed: nothing to count'); return; }
  const be = await startBackends();
  const hPort = await freePort(HAPROXY_ADDR), sPort = await freePort(SGEMU_ADDR);
  const haproxy = await startHaproxy([{ bindHost: HAPROXY_ADDR, bindPort: hPort, backendPort: be.tcpEcho }]);
  const sgemu = await startSgemu(openConfig(SGEMU_ADDR, 'tcp', [[sPort, be.tcpEcho]]), THREADS ? ['--threads', THREADS] : []);
  try {
    const spid = sgemu.proc.pid;
    await sleep(300);
    const relay = tids(spid, (c) => c.startsWith('sgemu-tcp-rel'));
    const rest = tids(spid, (c) => !c.startsWith('sgemu-tcp-rel'));
    if (haproxy) await measure('haproxy', HAPROXY_ADDR, hPort, [['process', tids(haproxy.pid, () => true)]]);
    await measure('sgemu', SGEMU_ADDR, sPort, [['relay', relay], ['node+others', rest]]);
  } finally {
    await sgemu.proc.stop();
    await haproxy?.stop();
    await be.proc.stop();
  }
}

runMain(main);
