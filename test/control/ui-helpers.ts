// Shared by the dashboard's browser tests: where Chromium is, how it is launched (as
// test/loadtest/report-browser.test.ts does), and a client that tells what a connection saw.

import net from 'node:net';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';

export const CHROMIUM = process.env.SGEMU_CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface ConnectResult { outcome: 'connected' | 'refused' | 'timeout' | 'reset' | string; localPort: number; socket: net.Socket | null }

/**
 * Connects from `src`; 'connected' once the handshake completes (closed at once when `close`,
 * else handed back open), 'timeout' when it has not within timeoutMs, else the error code.
 */
export function connectOutcome(src: string, host: string, port: number, timeoutMs: number, close = true): Promise<ConnectResult> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, localAddress: src });
    let done = false;
    const finish = (outcome: string, keep = false) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const localPort = s.localPort ?? 0;
      if (!keep) s.destroy();
      resolve({ outcome, localPort, socket: keep ? s : null });
    };
    const timer = setTimeout(() => finish('timeout'), timeoutMs);
    s.on('connect', () => finish('connected', !close));
    s.on('error', (e: NodeJS.ErrnoException) => finish(e.code === 'ECONNREFUSED' ? 'refused' : e.code === 'ECONNRESET' ? 'reset' : e.code ?? 'error'));
  });
}

/** Whether every host:port can be bound now (bind, close). */
export async function portsFree(list: [string, number][]): Promise<boolean> {
  for (const [host, port] of list) {
    const s = net.createServer();
    const ok = await new Promise<boolean>((r) => { s.once('error', () => r(false)); s.listen(port, host, () => r(true)); });
    if (!ok) return false;
    await new Promise<void>((r) => s.close(() => r()));
  }
  return true;
}

/**
 * The dashboard's browser tests take turns (tap runs two files at once): each starts Chromium, a
 * daemon and a load, and two of them on two cores measured each other, not the page (a CI run saw
 * a 210 ms task and an element detached under a click). A lock directory in the temp dir, holding
 * the owner's pid; a lock whose owner is gone is taken over. Released when `t` ends. After
 * `maxWaitMs` the test goes on anyway and says so.
 */
export async function takeBrowserTurn(t: Test, maxWaitMs = 120_000): Promise<void> {
  const dir = join(tmpdir(), 'sgemu-test-browser.lock');
  const t0 = Date.now();
  for (;;) {
    try {
      mkdirSync(dir);
      writeFileSync(join(dir, 'pid'), String(process.pid));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    if (!lockOwnerAlive(dir)) { rmSync(dir, { recursive: true, force: true }); continue; }
    if (Date.now() - t0 > maxWaitMs) { t.comment(`another browser test held ${dir} for ${maxWaitMs} ms: going on beside it`); return; }
    await sleep(200);
  }
  if (Date.now() - t0 > 1000) t.comment(`waited ${((Date.now() - t0) / 1000).toFixed(1)} s for another browser test to finish`);
  t.teardown(() => { if (readPid(dir) === process.pid) rmSync(dir, { recursive: true, force: true }); });
}

function readPid(dir: string): number | null {
  try { return Number(readFileSync(join(dir, 'pid'), 'utf8')) || null; } catch { return null; }
}

/** Whether the lock's owner still runs (a lock without its pid file yet is young: alive for 5 s). */
function lockOwnerAlive(dir: string): boolean {
  const pid = readPid(dir);
  if (pid === null) {
    try { return Date.now() - statSync(dir).mtimeMs < 5000; } catch { return false; }
  }
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

/**
 * Watches the main threads of the Chromium renderers started under this process (their
 * /proc/PID/schedstat: time run, and time waited runnable for a CPU), sampled every few ms. A
 * task's time in the page is the page's own work plus that wait, which on a machine running other
 * tests is the machine's, not the page's: `own(start, ms)` takes the wait in that window out.
 * Without schedstat (a kernel without CONFIG_SCHEDSTATS) `available` is false and own() is the
 * wall time.
 */
export class RendererWatch {
  private readonly samples = new Map<number, number[]>();   // pid → [epochMs, waitMs, runMs, ...]
  private sampler: NodeJS.Timeout | null = null;
  private scanner: NodeJS.Timeout | null = null;
  available = false;

  start(everyMs = 5): this {
    this.scan();
    this.sampler = setInterval(() => this.sample(), everyMs);
    this.scanner = setInterval(() => this.scan(), 300);
    return this;
  }

  stop(): void {
    if (this.sampler) clearInterval(this.sampler);
    if (this.scanner) clearInterval(this.scanner);
    this.sample();
  }

  /** The ms of a task that started at `startEpochMs` and lasted `ms` that were the page's own. */
  own(startEpochMs: number, ms: number): number {
    let wait = 0;
    for (const s of this.samples.values()) wait = Math.max(wait, at(s, startEpochMs + ms, 1) - at(s, startEpochMs, 1));
    return Math.max(0, ms - wait);
  }

  /** Over [from, to]: the busiest renderer's ms run and ms waited for a CPU. */
  totals(from: number, to: number): { runMs: number; waitMs: number } {
    let best = { runMs: 0, waitMs: 0 };
    for (const s of this.samples.values()) {
      const runMs = at(s, to, 2) - at(s, from, 2);
      if (runMs > best.runMs) best = { runMs, waitMs: at(s, to, 1) - at(s, from, 1) };
    }
    return best;
  }

  private sample(): void {
    const now = performance.timeOrigin + performance.now();
    for (const [pid, s] of this.samples) {
      try {
        const [run, wait] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ').map(Number);
        s.push(now, wait! / 1e6, run! / 1e6);
        this.available = true;
      } catch { /* exited */ }
    }
  }

  private scan(): void {
    const parent = new Map<number, number>();
    const renderers: number[] = [];
    for (const name of readdirSync('/proc')) {
      const pid = Number(name);
      if (!Number.isInteger(pid) || pid <= 1) continue;
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        parent.set(pid, Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
        if (!this.samples.has(pid) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('--type=renderer')) renderers.push(pid);
      } catch { /* gone meanwhile */ }
    }
    for (const pid of renderers) {
      let p = pid;
      for (let hops = 0; p > 1 && p !== process.pid && hops < 64; hops++) p = parent.get(p) ?? 0;
      if (p === process.pid) this.samples.set(pid, []);
    }
  }
}

/** Field `k` (1 wait, 2 run) of samples [t, wait, run, ...] at time `t`, interpolated. */
function at(s: number[], t: number, k: number): number {
  if (s.length === 0) return 0;
  if (t <= s[0]!) return s[k]!;
  for (let i = 3; i < s.length; i += 3) {
    if (s[i]! >= t) {
      const t0 = s[i - 3]!, t1 = s[i]!;
      const f = t1 > t0 ? (t - t0) / (t1 - t0) : 1;
      return s[i - 3 + k]! + f * (s[i + k]! - s[i - 3 + k]!);
    }
  }
  return s[s.length - 3 + k]!;
}
