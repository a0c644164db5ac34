// Summarises a V8 .cpuprofile (from `node --cpu-prof`, e.g. the daemon run by a benchmark with
// --cpu-prof DIR): the top functions by self time, and by total (inclusive) time.
//
//   node scripts/bench/profile-summary.mjs FILE.cpuprofile [--top N]

import { readFileSync } from 'node:fs';
import path from 'node:path';

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith('--'));
const topAt = args.indexOf('--top');
const TOP = topAt >= 0 ? Number(args[topAt + 1]) : 25;
if (!file) {
  console.error('usage: node scripts/bench/profile-summary.mjs FILE.cpuprofile [--top N]');
  process.exit(2);
}
const prof = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

// Sample i lasted timeDeltas[i + 1] µs (V8's convention: deltas precede the next sample).
const selfUs = new Map();
const deltas = prof.timeDeltas;
for (let i = 0; i < prof.samples.length; i++) {
  const dt = deltas[i + 1] ?? 0;
  selfUs.set(prof.samples[i], (selfUs.get(prof.samples[i]) ?? 0) + dt);
}
const label = (n) => {
  const f = n.callFrame;
  const where = f.url ? `${path.basename(f.url)}:${f.lineNumber + 1}` : '';
  return `${f.functionName || '(anonymous)'} ${where}`.trim();
};
const selfBy = new Map(), totalBy = new Map();
let all = 0;
for (const [id, us] of selfUs) {
  all += us;
  const n = byId.get(id);
  const k = label(n);
  selfBy.set(k, (selfBy.get(k) ?? 0) + us);
  const seen = new Set();
  for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
    const kk = label(byId.get(cur));
    if (seen.has(kk)) continue;
    seen.add(kk);
    totalBy.set(kk, (totalBy.get(kk) ?? 0) + us);
  }
}
const show = (title, m) => {
  console.log(`\n${title}`);
  for (const [k, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
    console.log(`${((100 * us) / all).toFixed(1).padStart(6)}%  ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`);
  }
};
console.log(`${file}: ${(all / 1e6).toFixed(2)} s sampled`);
show('self time', selfBy);
show('total time (inclusive)', totalBy);
