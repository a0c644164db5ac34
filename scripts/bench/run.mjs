// `npm run bench`: runs every benchmark of scripts/bench/ one after the other (each in its own
// process, each measuring its baselines in the same run), prints one table of results, and
// appends the table, the machine and the command to bench-results/YYYY-MM-DD.md.
//
//   node scripts/bench/run.mjs [--quick] [--json] [--dist] [--only tcp,udp,...] [--no-save]
//
//   --quick    tiny sizes, the whole suite in < 30 s: a smoke run that keeps the scripts working,
//              not a measurement (three scripts run at once; its figures are noise). The daemon
//              runs from dist/ when dist/ is at least as new as every file of src/ (the TS loader
//              costs ~3 s of CPU per daemon start), else from src/; test/loadtest/bench-quick.test.ts runs it
//   --json     print {date, command, machine, results: [...]} on stdout; progress goes to stderr
//   --dist     run the daemon from dist/ (after `npm run build`) instead of src/ via the TS loader
//   --only     a subset, by name: matcher, conntrack, tcp, udp, synflood, reload, leak, privilege, faults
//   --no-save  do not append to bench-results/ (also: SGEMU_BENCH_NO_SAVE=1; tests use both)

import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const JSON_OUT = args.includes('--json');
const SAVE = !args.includes('--no-save') && process.env.SGEMU_BENCH_NO_SAVE !== '1';
const onlyAt = args.indexOf('--only');
const ONLY = onlyAt >= 0 ? (args[onlyAt + 1] ?? '').split(',').filter(Boolean) : null;

const SUITE = [
  { name: 'matcher', file: 'matcher.ts', daemon: false },
  { name: 'conntrack', file: 'conntrack.ts', daemon: false },
  { name: 'tcp', file: 'tcp.ts', daemon: true },
  { name: 'udp', file: 'udp.ts', daemon: true },
  { name: 'synflood', file: 'synflood.ts', daemon: true },
  { name: 'reload', file: 'reload.ts', daemon: true },
  { name: 'leak', file: 'leak.ts', daemon: true },
  { name: 'privilege', file: 'privilege.ts', daemon: true },
  { name: 'faults', file: 'faults.ts', daemon: true },
];
if (ONLY) {
  const unknown = ONLY.filter((n) => !SUITE.some((s) => s.name === n));
  if (unknown.length) {
    console.error(`bench: --only ${unknown.join(',')}: unknown benchmark; valid: ${SUITE.map((s) => s.name).join(', ')}`);
    process.exit(2);
  }
}
const log = (line) => (JSON_OUT ? process.stderr : process.stdout).write(line + '\n');

/** Newest modification time (ms) of the .ts files under `dir`. */
function newestTs(dir) {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestTs(p));
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/** --quick without --dist: dist/ when its CLI is at least as new as every source file (a fresh build). */
function freshDist() {
  const main = path.join(ROOT, 'dist/cli/main.js');
  try { return statSync(main).mtimeMs >= newestTs(path.join(ROOT, 'src')); } catch { return false; }
}
const DIST = args.includes('--dist') || (QUICK && freshDist());
const TIMEOUT_MS = QUICK ? 60_000 : 20 * 60_000;

function machine() {
  const cpus = os.cpus();
  return { node: process.version, cpu: cpus[0]?.model.trim() ?? 'unknown', cores: cpus.length, kernel: os.release(), platform: os.platform(), memGiB: +(os.totalmem() / 2 ** 30).toFixed(1) };
}

/** Runs one script; resolves with its results (from --results) and its output. */
function runOne(b, dir, buffered) {
  const resultsFile = path.join(dir, `${b.name}.json`);
  const scriptArgs = [...(QUICK ? ['--quick'] : []), ...(b.daemon && DIST ? ['--dist'] : []), '--results', resultsFile];
  const nodeArgs = ['--import', '@tapjs/typescript/import', path.join('scripts/bench', b.file), ...scriptArgs];
  const command = `TS_NODE_TRANSPILE_ONLY=1 node ${nodeArgs.join(' ').replace(resultsFile, 'FILE')}`;
  return new Promise((resolve) => {
    const t0 = Date.now();
    const c = spawn(process.execPath, nodeArgs, { cwd: ROOT, env: { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const take = (d) => { out += d; if (!buffered) (JSON_OUT ? process.stderr : process.stdout).write(d); };
    c.stdout.on('data', take);
    c.stderr.on('data', take);
    const timer = setTimeout(() => { out += `\n[bench] ${b.name}: killed after ${TIMEOUT_MS} ms\n`; c.kill('SIGTERM'); setTimeout(() => c.kill('SIGKILL'), 3000).unref(); }, TIMEOUT_MS);
    c.on('close', (code) => {
      clearTimeout(timer);
      let results = [];
      try { results = JSON.parse(readFileSync(resultsFile, 'utf8')); } catch { /* matcher has none; failures are below */ }
      if (b.name === 'matcher') results = matcherResults(out);
      if (code !== 0) results.push({ name: `${b.name} (script)`, value: NaN, unit: '', n: 0, spreadPct: 0, detail: `failed with exit code ${code}, see its output`, target: '', met: false });
      resolve({ name: b.name, command, seconds: (Date.now() - t0) / 1000, code, output: out, results });
    });
  });
}

/** matcher.ts prints a table, not --results: one result per rule count (compiled decide4 vs linear scan). */
function matcherResults(out) {
  const samples = QUICK ? 5 : 11;
  const rows = [];
  for (const line of out.split('\n')) {
    const m = /^\s*(\d+)\s+([\d.]+) ([kMG]?)\/s ±([\d.]+)%.*?\s([\d.]+)×\s+([\d.]+)×/.exec(line);
    if (!m) continue;
    const rules = Number(m[1]), ratio = Number(m[5]);
    const rate = Number(m[2]) * ({ k: 1e3, M: 1e6, G: 1e9 }[m[3]] ?? 1);
    rows.push({
      name: `matcher decide4 ${rules} rules`, value: ratio, unit: 'x linear scan', n: samples, spreadPct: Number(m[4]),
      detail: `${m[2]} ${m[3]}decisions/s`, target: rules === 1000 ? '≥ 20x linear' : '', met: rules === 1000 ? ratio >= 20 : null,
    });
    if (rules === 10) {
      rows.push({
        name: 'matcher decide4 10 rules rate', value: rate, unit: 'decisions/s', n: samples, spreadPct: Number(m[4]),
        detail: '', target: '≥ 10 M/s', met: rate >= 10e6,
      });
    }
  }
  return rows;
}

function valueText(r) {
  if (!(r.n > 0)) return 'skipped';
  const v = Math.abs(r.value) >= 1e6 ? `${(r.value / 1e6).toFixed(2)} M` : Math.abs(r.value) >= 1e4 ? `${(r.value / 1e3).toFixed(1)} k` : r.value.toFixed(2);
  return r.unit.startsWith('x') ? `${r.value.toFixed(2)}${r.unit}` : `${v} ${r.unit}`;
}

function table(results) {
  const rows = results.map((r) => [
    r.name, valueText(r), r.n > 0 ? String(r.n) : '-', r.n > 0 ? `±${r.spreadPct.toFixed(1)}%` : '-',
    r.target || '-', r.met === null || r.met === undefined ? (r.n > 0 ? '' : 'n/a') : r.met ? 'met' : 'MISSED',
  ]);
  const head = ['benchmark', 'result', 'n', 'spread', 'target', ''];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r) => r.map((c, i) => c.padEnd(w[i])).join('  ').trimEnd();
  return [fmt(head), ...rows.map(fmt)].join('\n');
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'sgemu-bench-run-'));
const m = machine();
const command = `node scripts/bench/run.mjs ${args.join(' ')}`.trimEnd();
const started = new Date();
const loadAt = () => os.loadavg().map((x) => x.toFixed(1)).join(' ');
const load0 = loadAt();
log(`# sgemu benchmark suite — ${started.toISOString()}${QUICK ? ' (--quick: smoke run, figures are noise)' : ''}`);
log(`# node ${m.node}, ${m.cpu} ×${m.cores}, ${m.memGiB} GiB, ${m.platform} ${m.kernel}`);
log(`# command: ${command}`);
if (QUICK && !args.includes('--dist')) {
  log(DIST ? '# --quick: the daemon runs from dist/ (as new as src/)' : '# --quick: the daemon runs from src/ (dist/ is missing or older than src/; `npm run build` makes this run faster)');
}
const chosen = SUITE.filter((b) => !ONLY || ONLY.includes(b.name));
let runs = [];
if (QUICK) {
  // A smoke run: three lanes at once (figures are noise anyway), outputs printed as each ends.
  // Balanced by wall time on 2 busy cores (2026-11-25): matcher ~14 s of CPU-bound work alone,
  // conntrack 10 + reload 6, tcp 6 + udp 6 + synflood 7 (daemon from dist/).
  const lanes = [['matcher', 'leak'], ['conntrack', 'reload'], ['tcp', 'udp', 'synflood']];
  const done = await Promise.all(lanes.map(async (lane) => {
    const out = [];
    for (const b of chosen.filter((x) => lane.includes(x.name))) {
      const r = await runOne(b, dir, true);
      log(`\n## ${b.name}\n${r.output.trimEnd()}`);
      out.push(r);
    }
    return out;
  }));
  runs = chosen.map((b) => done.flat().find((r) => r.name === b.name)).filter(Boolean);
} else {
  for (const b of chosen) {
    log(`\n## ${b.name}`);
    runs.push(await runOne(b, dir, false));
  }
}
rmSync(dir, { recursive: true, force: true });
const results = runs.flatMap((r) => r.results);
const tab = table(results);
const seconds = (Date.now() - started.getTime()) / 1000;
log(`\n# results (ratios are candidate/baseline per round, median; spread = stddev/mean over rounds)\n${tab}`);
const load1 = loadAt();
log(`# ${seconds.toFixed(1)} s in all; load average (1/5/15 min) ${load0} at the start, ${load1} at the end, on ${m.cores} cores`);
if (JSON_OUT) {
  process.stdout.write(JSON.stringify({ date: started.toISOString(), command, quick: QUICK, machine: m, loadAverage: { start: load0, end: load1 }, seconds, benchmarks: runs.map((r) => ({ name: r.name, command: r.command, seconds: r.seconds, exitCode: r.code })), results }, null, 1) + '\n');
}
if (SAVE) {
  const resDir = path.join(ROOT, 'bench-results');
  mkdirSync(resDir, { recursive: true });
  const file = path.join(resDir, `${started.toISOString().slice(0, 10)}.md`);
  const md = [
    `\n## ${started.toISOString()}${QUICK ? ' — quick (smoke run, figures are noise)' : ''}`,
    '',
    `- command: \`${command}\` (${seconds.toFixed(0)} s)`,
    `- machine: node ${m.node}, ${m.cpu} ×${m.cores}, ${m.memGiB} GiB RAM, ${m.platform} ${m.kernel}`,
    `- load average (1/5/15 min): ${load0} at the start, ${load1} at the end (${m.cores} cores; other jobs inflate the spread)`,
    `- daemon: ${DIST ? 'dist/cli/main.js' : 'src/cli/main.ts via the TS loader'}, \`sgemu run --api off\`, one Node thread`,
    '',
    '```',
    tab,
    '```',
    '',
    '<details><summary>details</summary>',
    '',
    ...runs.flatMap((r) => [`### ${r.name} (${r.seconds.toFixed(1)} s, exit ${r.code})`, '', `\`${r.command}\``, '', '```', r.output.trimEnd().split('\n').slice(-60).join('\n'), '```', '']),
    '</details>',
    '',
  ].join('\n');
  if (!existsSync(file)) appendFileSync(file, `# Benchmark results, ${started.toISOString().slice(0, 10)}\n\nWritten by \`npm run bench\` (scripts/bench/run.mjs); see scripts/bench/README.md for what each line measures.\n`);
  appendFileSync(file, md);
  log(`# appended to ${path.relative(ROOT, file)}`);
}
process.exit(runs.every((r) => r.code === 0) ? 0 : 1);
