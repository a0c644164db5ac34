// The benchmark suite's smoke mode (issue #7): `node scripts/bench/run.mjs --quick` runs every
// script of scripts/bench/, so none can rot unnoticed. It must exit 0 with a result line for every
// benchmark, each measured or skipped with its reason (HAProxy and socat are optional baselines:
// absent, they are skipped, not failed), and must write nothing into bench-results/.
// No speed is asserted (STYLE): the figures of a smoke run are noise; the run is bounded in time.

import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const RESULTS_DIR = path.join(ROOT, 'bench-results');
// The suite is designed to finish in < 30 s (about 20 s on 2 shared cores, daemon from dist/);
// beyond this bound it is killed and the test fails.
const LIMIT_MS = 120_000;

interface BenchJson {
  quick: boolean;
  seconds: number;
  benchmarks: { name: string; exitCode: number; seconds: number }[];
  results: { name: string; value: number | null; n: number; detail: string }[];
}

function snapshot(): string {
  if (!existsSync(RESULTS_DIR)) return '';
  return readdirSync(RESULTS_DIR).sort().map((f) => `${f}:${statSync(path.join(RESULTS_DIR, f)).size}`).join(',');
}

t.test('bench --quick: every script runs, exit 0, nothing written to bench-results/', async (t) => {
  const before = snapshot();
  const t0 = performance.now();
  const { code, out, err } = await new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    // Outside tap's coverage: its process hook adds NODE_OPTIONS=--import processinfo to every
    // child, and precise coverage in the benchmark processes tripled the run (46 s vs 15 s).
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('_TAPJS_') && !k.startsWith('TAP')));
    const c = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, 'scripts/bench/run.mjs', '--quick', '--no-save', '--json'], {
      cwd: ROOT, env: { ...env, SGEMU_BENCH_NO_SAVE: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '', err = '';
    c.stdout.on('data', (d) => { out += d; });
    c.stderr.on('data', (d) => { err = (err + d).slice(-20_000); });
    const timer = setTimeout(() => { err += `\n[test] killed after ${LIMIT_MS} ms`; c.kill('SIGTERM'); }, LIMIT_MS);
    c.on('close', (code) => { clearTimeout(timer); resolve({ code, out, err }); });
  });
  const seconds = (performance.now() - t0) / 1000;
  t.equal(code, 0, `exit 0 (stderr tail: ${err.slice(-1500)})`);
  const j = JSON.parse(out) as BenchJson;
  t.equal(j.quick, true);
  t.same(j.benchmarks.map((b) => b.name).sort(), ['conntrack', 'leak', 'matcher', 'reload', 'synflood', 'tcp', 'udp'], 'every benchmark ran');
  for (const b of j.benchmarks) t.equal(b.exitCode, 0, `${b.name} exit 0 (${b.seconds.toFixed(1)} s)`);
  t.ok(j.results.length >= 10, `${j.results.length} result lines`);
  for (const r of j.results.filter((x) => !(x.n > 0))) t.match(r.detail, /^skipped: ./, `${r.name}: skipped with its reason`);
  t.notOk(j.results.some((r) => / \(script\)$/.test(r.name)), 'no script failed');
  t.equal(snapshot(), before, 'bench-results/ unchanged');
  t.match(err, /# --quick: the daemon runs from (dist|src)\//);
  t.comment(`bench --quick: ${seconds.toFixed(1)} s (${j.benchmarks.map((b) => `${b.name} ${b.seconds.toFixed(1)} s`).join(', ')}); load ${os.loadavg()[0]!.toFixed(1)}`);
});

t.test('baselines that are not installed are skipped, not failed', async (t) => {
  // lib.ts finds haproxy and socat on PATH; with an empty PATH they are "not installed".
  const lib = await import('../../scripts/bench/lib.js');
  const empty = mkdtempSync(path.join(os.tmpdir(), 'sgemu-bench-path-'));
  const path0 = process.env.PATH;
  process.env.PATH = empty;
  t.teardown(() => { process.env.PATH = path0; rmSync(empty, { recursive: true, force: true }); });
  t.equal(lib.haveCommand('haproxy'), false);
  t.equal(await lib.startHaproxy([{ bindHost: '127.0.0.1', bindPort: 9, backendPort: 9 }]), null, 'no haproxy: null, the script reports a skip');
  t.equal(await lib.startSocatUdp('127.0.0.1', 9, 9), null, 'no socat: null, the script reports a skip');
  process.env.PATH = path0;
  t.equal(lib.haveCommand('node') || lib.haveCommand('sh'), true, 'with PATH back, commands are found');
});
