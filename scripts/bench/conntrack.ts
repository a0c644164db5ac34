// Conntrack micro benchmark: ConnTable (src/dataplane/conntrack/table.ts) open/close rate, the
// numeric flow-key lookup the UDP relay does per datagram, and heap/RSS per entry at 1M entries.
//
// Run (from the repo root; needs --expose-gc, which the script adds by re-running itself):
//   TS_NODE_TRANSPILE_ONLY=1 node --expose-gc --import @tapjs/typescript/import scripts/bench/conntrack.ts [--quick] [--results FILE]
//
// Baselines, measured in the same run, on the same flows:
//   open/close  a Map<string, object> keyed "proto|src|sport|dst|dport" (the naive table): set + delete
//   lookup      Map.get with that string key, vs Map.get with the relay's numeric key
//               (addr·65536 + port) and vs parseIpv4(rinfo.address)·65536 + port then Map.get
// Targets (issue 7): ≥ 20 M lookups/s; 1M entries ≤ 200 MB RSS.

import { spawnSync } from 'node:child_process';
import { ConnTable, ST_ESTABLISHED, type FlowOwner, type OpenFlow } from '../../src/dataplane/conntrack/table.js';
import { ManualClock } from '../../src/dataplane/clock.js';
import { parseIpv4 } from '../../src/policy/addr.js';
import { QUICK, header, median, pairedRatio, report, runMain, spreadPct } from './lib.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  // Re-run with --expose-gc (heap per entry needs a full collection before each reading).
  const r = spawnSync(process.execPath, ['--expose-gc', ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: process.env });
  process.exit(r.status ?? 1);
}

const SAMPLES = QUICK ? 2 : 9;
const SAMPLE_MS = QUICK ? 25 : 150;
const BATCH = 10_000;
const LOOKUP_FLOWS = 65_536;
const BIG = QUICK ? 100_000 : 1_000_000;

const owner: FlowOwner = { sample() { /* counters live in the entry */ }, expire() { /* nothing to close */ } };

/** BATCH flows from distinct sources 10.x.y.z to one instance, as the TCP relay opens them. */
function flows(n: number, offset = 0): OpenFlow[] {
  const out: OpenFlow[] = [];
  for (let i = 0; i < n; i++) {
    const a = (0x0a000000 + offset + i) >>> 0;
    out.push({
      proto: 6, family: 4, inst: 0, dir: 0, listener: 0, tracked: true, state: ST_ESTABLISHED,
      src: `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`, srcPort: 1024 + (i % 60000),
      dst: '127.0.0.50', dstPort: 9000, rulePort: 9000, timeoutMs: 432_000_000, owner,
    });
  }
  return out;
}

/** Warm up, then SAMPLES timed samples of ≥ SAMPLE_MS; ops/s per sample. */
function measure(run: () => number): number[] {
  const warmUntil = performance.now() + SAMPLE_MS;
  while (performance.now() < warmUntil) run();
  const rates: number[] = [];
  for (let s = 0; s < SAMPLES; s++) {
    let ops = 0;
    const t0 = performance.now();
    let t = t0;
    while (t - t0 < SAMPLE_MS) { ops += run(); t = performance.now(); }
    rates.push(ops / ((t - t0) / 1000));
  }
  return rates;
}

let sink = 0;

async function main(): Promise<void> {
  header('conntrack micro benchmark');
  console.log(`# ${SAMPLES} samples × ≥${SAMPLE_MS} ms after warm-up; ops/s median, ± = sample stddev / mean`);
  const clock = new ManualClock(0);

  // ---- open + close, batches of BATCH live entries
  const batch = flows(BATCH);
  const keys = batch.map((f) => `${f.proto}|${f.src}|${f.srcPort}|${f.dst}|${f.dstPort}`);
  const table = new ConnTable(1 << 20, clock);
  const entries = new Array(BATCH);
  const tableRates: number[] = [], mapRates: number[] = [];
  const naive = new Map<string, object>();
  for (let round = 0; round < 2; round++) {   // alternate the two, twice, so drift hits both
    tableRates.push(...measure(() => {
      for (let i = 0; i < BATCH; i++) entries[i] = table.open(batch[i]!);
      for (let i = 0; i < BATCH; i++) table.close(entries[i]);
      return BATCH;
    }));
    mapRates.push(...measure(() => {
      for (let i = 0; i < BATCH; i++) {
        const f = batch[i]!;
        naive.set(`${f.proto}|${f.src}|${f.srcPort}|${f.dst}|${f.dstPort}`, { flow: f, bytesIn: 0, bytesOut: 0, lastSeenMs: 0 });
      }
      for (let i = 0; i < BATCH; i++) naive.delete(keys[i]!);
      return BATCH;
    }));
  }
  const oc = pairedRatio(tableRates, mapRates)!;
  report({
    name: 'conntrack open+close', value: oc.value, unit: 'x string-key Map', n: oc.n, spreadPct: oc.spreadPct,
    detail: `ConnTable ${(median(tableRates) / 1e6).toFixed(2)} M pairs/s ±${spreadPct(tableRates).toFixed(1)}%, Map<string> ${(median(mapRates) / 1e6).toFixed(2)} M/s`,
    target: '', met: null,
  });

  // ---- lookup: 64k live flows, random existing keys
  const lf = flows(LOOKUP_FLOWS, 1 << 20);
  const numMap = new Map<number, object>(), strMap = new Map<string, object>();
  const addrs: string[] = [], ports = new Int32Array(LOOKUP_FLOWS), numKeys = new Float64Array(LOOKUP_FLOWS), strKeys: string[] = [];
  for (let i = 0; i < LOOKUP_FLOWS; i++) {
    const f = lf[i]!, e = table.open(f)!;
    const k = parseIpv4(f.src) * 65536 + f.srcPort;
    numMap.set(k, e); strMap.set(`${f.src}|${f.srcPort}`, e);
    addrs.push(f.src); ports[i] = f.srcPort; numKeys[i] = k; strKeys.push(`${f.src}|${f.srcPort}`);
  }
  const order = new Int32Array(4096);
  let seed = 7;
  for (let i = 0; i < order.length; i++) order[i] = (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % LOOKUP_FLOWS;
  const N = order.length;
  const numRates: number[] = [], strRates: number[] = [], parseRates: number[] = [];
  for (let round = 0; round < 2; round++) {
    numRates.push(...measure(() => { for (let i = 0; i < N; i++) if (numMap.get(numKeys[order[i]!]!)) sink++; return N; }));
    parseRates.push(...measure(() => {
      for (let i = 0; i < N; i++) { const j = order[i]!; if (numMap.get(parseIpv4(addrs[j]!) * 65536 + ports[j]!)) sink++; }
      return N;
    }));
    strRates.push(...measure(() => {
      // the naive relay builds the key from rinfo per datagram
      for (let i = 0; i < N; i++) { const j = order[i]!; if (strMap.get(`${addrs[j]!}|${ports[j]!}`)) sink++; }
      return N;
    }));
  }
  const lk = pairedRatio(numRates, strRates)!;
  report({
    name: 'conntrack lookup (numeric key)', value: median(numRates), unit: 'lookups/s', n: numRates.length, spreadPct: spreadPct(numRates),
    detail: `${lk.value.toFixed(1)}x the string-key Map (${(median(strRates) / 1e6).toFixed(2)} M/s) over ${LOOKUP_FLOWS} live flows`,
    target: '≥ 20 M/s', met: median(numRates) >= 20e6,
  });
  const pk = pairedRatio(parseRates, strRates)!;
  report({
    name: 'udp flow lookup from rinfo (parseIpv4 + get)', value: pk.value, unit: 'x string-key Map', n: pk.n, spreadPct: pk.spreadPct,
    detail: `${(median(parseRates) / 1e6).toFixed(2)} M/s vs ${(median(strRates) / 1e6).toFixed(2)} M/s`, target: '', met: null,
  });
  for (const e of [...table.live()]) table.close(e);
  numMap.clear(); strMap.clear();

  // ---- memory at BIG entries: each flow has its own src string (as remoteAddress gives one)
  const big = new ConnTable(BIG, clock);
  const tmpl = flows(1)[0]!;
  gc!(); gc!();
  const h0 = process.memoryUsage();
  for (let i = 0; i < BIG; i++) {
    const a = (0x0b000000 + i) >>> 0;
    tmpl.src = `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
    tmpl.srcPort = 1024 + (i % 60000);
    big.open(tmpl);
  }
  gc!(); gc!();
  const h1 = process.memoryUsage();
  const heapPer = (h1.heapUsed - h0.heapUsed) / BIG;
  const rssMb = (h1.rss - h0.rss) / 1e6;
  const perMillion = (rssMb * 1e6) / BIG;
  report({
    name: `conntrack memory at ${BIG / 1e6}M entries`, value: perMillion, unit: 'MB RSS per 1M', n: 1, spreadPct: 0,
    detail: `${heapPer.toFixed(0)} heap bytes/entry (incl. its src string), RSS +${rssMb.toFixed(0)} MB, table count ${big.count}`,
    target: '≤ 200 MB per 1M', met: perMillion <= 200,
  });
  if (sink < 0) console.log(sink);
}

runMain(main);
