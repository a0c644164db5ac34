// Pure parts of the load test: the histogram, the expectation table, --mix, the rate limiter on
// a fake clock, the weighted picker and the HTML report's self-containment.

import t from 'tap';
import { Histogram, bucketOf, bucketHigh, BUCKETS } from '../../src/loadtest/histogram.js';
import { TokenBucket, burstFor } from '../../src/loadtest/rate.js';
import {
  expectedOutcome, explainQuery, explainKey, mixClass, parseMix, parseStatus, parseExplain, needsPortAnswer, parseOutbound, sourceAddress, parseSources, tableFull,
  WeightedPicker, type ListenerInfo,
} from '../../src/loadtest/expect.js';
import { renderHtml, formatText, resultJson, holdText } from '../../src/loadtest/report.js';
import type { LoadtestResult } from '../../src/loadtest/run.js';

t.test('histogram buckets are contiguous and within 1/32 of the value', async (t) => {
  let prevHigh = -1;
  for (let i = 0; i < BUCKETS; i++) {
    const high = bucketHigh(i);
    t.equal(bucketOf(prevHigh + 1), i, `bucket ${i} starts right after bucket ${i - 1}`);
    t.equal(bucketOf(high), i, `bucket ${i} ends at ${high}`);
    prevHigh = high;
    if (i > 300) break;   // the pattern repeats per power of two; 300 buckets cover 2^0..2^13
  }
  for (const v of [0, 1, 63, 64, 65, 100, 1000, 12345, 999_999, 2 ** 30 + 7]) {
    const high = bucketHigh(bucketOf(v));
    t.ok(high >= v && high - v <= v / 32 + 1, `${v} → bucket high ${high}`);
  }
  t.equal(bucketOf(-5), 0, 'negative clamps to 0');
  t.equal(bucketOf(2 ** 40), BUCKETS - 1, 'huge values land in the last bucket');
});

t.test('histogram percentiles against exact ones', async (t) => {
  const h = new Histogram();
  t.equal(h.percentile(0.5), 0, 'empty → 0');
  const values: number[] = [];
  let x = 12345;
  for (let i = 0; i < 10000; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;   // deterministic LCG
    const v = 50 + (x % 200000);
    values.push(v);
    h.record(v);
  }
  values.sort((a, b) => a - b);
  for (const q of [0.5, 0.9, 0.99, 0.999]) {
    const exact = values[Math.ceil(q * values.length) - 1]!;
    const got = h.percentile(q);
    t.ok(got >= exact && got <= exact * (1 + 1 / 32) + 1, `p${q * 100}: ${got} vs exact ${exact}`);
  }
  t.equal(h.percentile(1), values[values.length - 1], 'p100 is the exact max');
  t.equal(h.count, 10000);
  const h2 = new Histogram();
  h2.record(7); h2.add(h);
  t.equal(h2.count, 10001, 'add merges counts');
  t.equal(h2.min, 7, 'add merges min');
  h2.reset();
  t.equal(h2.count, 0, 'reset empties');
  const one = new Histogram();
  one.record(1500);
  t.equal(one.percentile(0.5), 1500, 'a single value is reported exactly (clamped to min/max)');
});

const L = (over: Partial<ListenerInfo> = {}): ListenerInfo => ({
  kind: 'service', instance: 'web', protocol: 'tcp', address: '127.0.0.10', listenPort: 8080, rulePort: 80,
  backend: '127.0.0.1:3000', backendUp: true, nativeFilter: true, exactFilter: true, ...over,
});

t.test('expected outcome: the table of expect.ts', async (t) => {
  t.equal(expectedOutcome(L(), 'raw', 'allow'), 'connected');
  t.equal(expectedOutcome(L(), 'reset', 'allow'), 'connected', 'refusal mode does not matter when the backend is up');
  t.equal(expectedOutcome(L({ backendUp: false }), 'raw', 'allow'), 'refused');
  t.equal(expectedOutcome(L({ backendUp: false }), 'reset', 'allow'), 'reset');
  t.equal(expectedOutcome(L(), 'reset', 'deny'), 'timeout');
  t.equal(expectedOutcome(L({ backendUp: false }), 'raw', 'deny'), 'timeout', 'a denied flow stays silent whatever the backend');
  t.equal(expectedOutcome(L({ nativeFilter: false }), 'raw', 'deny'), 'reset', 'no kernel filter → accept then reset');
  t.equal(expectedOutcome(L({ exactFilter: false }), 'raw', 'deny'), 'reset', 'coarse kernel filter → reset');
  t.equal(mixClass(L(), 'allow'), 'allowed');
  t.equal(mixClass(L({ backendUp: false }), 'allow'), 'refused');
  t.equal(mixClass(L({ backendUp: false }), 'deny'), 'denied');
});

t.test('expected outcome: UDP rows and a full conntrack table', async (t) => {
  const U = (over: Partial<ListenerInfo> = {}) => L({ protocol: 'udp', ...over });
  t.equal(expectedOutcome(U(), 'raw', 'allow'), 'connected', 'the echo comes back');
  t.equal(expectedOutcome(U({ backendUp: false }), 'raw', 'allow'), 'refused', 'ICMP port unreachable');
  t.equal(expectedOutcome(U({ backendUp: false }), 'reset', 'allow'), 'timeout', 'no raw refusal: silence');
  t.equal(expectedOutcome(U({ exactFilter: false }), 'reset', 'deny'), 'timeout', 'UDP is dropped in userland, never reset');
  for (const l of [L(), L({ backendUp: false }), L({ exactFilter: false }), U()]) {
    for (const d of ['allow', 'deny'] as const) t.equal(expectedOutcome(l, 'raw', d, true), 'timeout', `full table: ${l.protocol} ${d} → timeout`);
  }
  t.equal(tableFull({ conntrackEntries: 10, conntrackMax: 10 }), true);
  t.equal(tableFull({ conntrackEntries: 9, conntrackMax: 10 }), false);
  t.equal(tableFull({ conntrackEntries: 0, conntrackMax: 0 }), false, 'no max reported: never full');
});

t.test('--sources: a count or a list of loopback addresses and blocks', async (t) => {
  t.same(parseSources('3'), ['127.77.0.1', '127.77.0.2', '127.77.0.3']);
  t.same(parseSources('127.0.0.1, 127.0.0.5,127.0.0.1'), ['127.0.0.1', '127.0.0.5'], 'duplicates once');
  t.same(parseSources('127.77.1.0/30'), ['127.77.1.1', '127.77.1.2'], 'a block without its first and last');
  t.same(parseSources('127.77.1.6/31'), ['127.77.1.6', '127.77.1.7'], '/31: both');
  t.equal(parseSources('127.78.0.0/17').length, 32766);
  for (const bad of ['0', '65001', '10.0.0.1', '127.0.0.1/8', '127.0.0.300', 'web', '']) {
    t.throws(() => parseSources(bad), { code: 'Usage' }, `"${bad}" is rejected`);
  }
  t.throws(() => parseSources('127.1.0.0/16,127.2.0.0/16'), { code: 'Usage', message: /more than 65000/ });
});

t.test('explain questions: service from the source, outbound from the instance to its target', async (t) => {
  t.same(explainQuery(L(), '127.77.0.1', []), { from: '127.77.0.1', to: 'web', protocol: 'tcp', port: 80 });
  t.same(explainQuery(L({ address: '::1' }), '::1', []), { from: '::1', to: '::1', protocol: 'tcp', port: 80 }, 'IPv6: the address');
  const out = parseOutbound([
    { name: 'web', outbound: [{ protocol: 'tcp', port: 15432, to: 'db:5432', as: '127.0.0.20:5432' }, { protocol: 'tcp', port: 18443, to: '127.0.0.1:9443', as: '52.94.0.10:443' }] },
    { name: 'junk' }, 7,
  ]);
  t.equal(out.length, 2);
  const ob = L({ kind: 'outbound', listenPort: 18443, rulePort: 443, backend: '127.0.0.1:9443' });
  const q1 = explainQuery(ob, '127.77.0.1', out), q2 = explainQuery(ob, '127.77.0.9', out);
  t.same(q1, { from: 'web', to: '52.94.0.10', protocol: 'tcp', port: 443 }, 'outside host: the as address');
  t.equal(explainKey(q1), explainKey(q2), 'the source does not matter for outbound');
  const ob2 = L({ kind: 'outbound', listenPort: 15432, rulePort: 5432, backend: '127.0.0.20:5432' });
  t.same(explainQuery(ob2, 'x', out), { from: 'web', to: 'db', protocol: 'tcp', port: 5432 }, 'instance target by name');
  t.same(explainQuery(L({ kind: 'outbound', listenPort: 1, backend: '10.0.0.1:99' }), 'x', []).to, '10.0.0.1', 'unknown entry: the backend host');
});

t.test('status and explain answers are checked', async (t) => {
  const st = parseStatus({
    refusal: 'raw', nativeFilter: true, conntrack: { entries: 3, max: 100, overflows: 0 }, rssBytes: 1e6, cpu: { user: 10, system: 5 },
    listeners: [{ kind: 'service', instance: 'web', protocol: 'tcp', address: '127.0.0.10', listenPort: 80, rulePort: 80, backend: 'b', backendUp: false, filter: 'rules', nativeFilter: true, exactFilter: true, flows: 0 }],
  });
  t.equal(st.refusal, 'raw');
  t.equal(st.cpuUs, 15);
  t.equal(st.listeners[0]!.backendUp, false);
  t.throws(() => parseStatus({ listeners: 'no' }), { code: 'DaemonError' });
  t.throws(() => parseStatus({ listeners: [{ kind: 'weird', instance: 'a', protocol: 'tcp', address: 'x', listenPort: 1, rulePort: 1 }] }), { code: 'DaemonError' });
  t.same(parseExplain({ decision: 'deny', reason: 'no rule', checks: [] }), { decision: 'deny', reason: 'no rule', portsAssumed: null, naclOnlyDeny: true });
  // issue #14: explain assumed the client port; a NACL-only deny may hold for some ports only
  const nacl = parseExplain({ decision: 'deny', reason: 'r', sourcePortAssumed: '32768-60999',
    checks: [{ layer: 'sg', decision: 'allow' }, { layer: 'nacl', path: 'reply', decision: 'deny' }] });
  t.same(nacl.portsAssumed, [32768, 60999]);
  t.ok(needsPortAnswer(nacl, 35000) && needsPortAnswer(nacl, 50000), 'a NACL deny over the range: every flow asks for its own port');
  t.notOk(needsPortAnswer(nacl, 0), 'no port known: the range answer stands');
  const sgDeny = parseExplain({ decision: 'deny', reason: 'r', sourcePortAssumed: '32768-60999', checks: [{ layer: 'sg', decision: 'deny' }, { layer: 'nacl', decision: 'allow' }] });
  t.notOk(needsPortAnswer(sgDeny, 35000), 'a security-group deny holds for every port');
  const allow = parseExplain({ decision: 'allow', reason: 'r', sourcePortAssumed: '32768-60999', checks: [] });
  t.notOk(needsPortAnswer(allow, 40000), 'an allow over the whole range holds for a port in it');
  t.ok(needsPortAnswer(allow, 1500), 'but not outside it');
  t.notOk(needsPortAnswer(parseExplain({ decision: 'deny', reason: 'r', checks: [] }), 35000), 'no NACL: one answer for all ports');
  t.equal(explainKey({ from: 'a', to: 'b', protocol: 'udp', port: 53, sourcePort: 40000 }), 'a|b|udp|53|40000', 'the port is part of the question');
  t.throws(() => parseExplain({ decision: 'maybe' }), { code: 'DaemonError' });
});

t.test('--mix parsing', async (t) => {
  t.same(parseMix('allowed=70,denied=20,refused=10'), { allowed: 70, denied: 20, refused: 10 });
  t.same(parseMix('denied=1'), { allowed: 0, denied: 1, refused: 0 });
  t.throws(() => parseMix('allowed=70,dropped=30'), { code: 'Usage' });
  t.throws(() => parseMix('allowed=-1'), { code: 'Usage' });
  t.throws(() => parseMix('allowed=0'), { code: 'Usage' });
});

t.test('weighted picker gives each class its share', async (t) => {
  const p = new WeightedPicker(['a', 'b', 'c'], [70, 20, 10]);
  const n: Record<string, number> = { a: 0, b: 0, c: 0 };
  for (let i = 0; i < 1000; i++) n[p.next()]!++;
  t.same(n, { a: 700, b: 200, c: 100 });
});

t.test('source addresses stay in 127.77.0.0/16 and are distinct', async (t) => {
  const s = new Set(Array.from({ length: 65000 }, (_, i) => sourceAddress(i)));
  t.equal(s.size, 65000);
  t.equal(sourceAddress(0), '127.77.0.1');
  t.ok([...s].every((a) => /^127\.77\.\d+\.\d+$/.test(a)));
});

t.test('token bucket on a fake clock', async (t) => {
  const rate = 100, tick = 10;
  const b = new TokenBucket(rate, burstFor(rate, tick), 0);
  let taken = 0;
  for (let now = 0; now <= 1000; now += tick) while (b.take(now)) taken++;
  // 1 initial token + 100 per second; never more.
  t.ok(taken >= 100 && taken <= 101, `1 s at 100/s took ${taken}`);
  // A stall of 5 s does not let it burst 500 at once.
  let burst = 0;
  while (b.take(6000)) burst++;
  t.ok(burst <= burstFor(rate, tick), `after a stall: ${burst} ≤ burst ${burstFor(rate, tick)}`);
  const u = new TokenBucket(Infinity, 1, 0);
  t.ok(u.take(0) && u.take(0) && u.available(0) === Infinity, 'unlimited always gives');
  t.equal(new TokenBucket(0.5, 1, 0).available(0), 1, 'slow rates still start with one token');
});

t.test('token bucket on the real clock: 50/s for 400 ms (bounded time)', async (t) => {
  const b = new TokenBucket(50, burstFor(50, 10), performance.now());
  let taken = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const iv = setInterval(() => {
      while (b.take(performance.now())) taken++;
      if (performance.now() - t0 >= 400) { clearInterval(iv); resolve(); }
    }, 10);
  });
  const el = (performance.now() - t0) / 1000;
  // never above rate·elapsed + the one starting token; at least half of it under loop lag
  t.ok(taken <= Math.ceil(50 * el) + 1, `${taken} ≤ 50/s × ${el.toFixed(3)} s + 1`);
  t.ok(taken >= 10, `${taken} ≥ 10`);
});

function fakeResult(): LoadtestResult {
  const { Histogram: H } = { Histogram };
  const lat = new H();
  lat.record(800); lat.record(1200);
  const listeners = [{ key: 'tcp 127.0.0.10:8080', kind: 'service' as const, instance: 'web<script>', protocol: 'tcp' as const, address: '127.0.0.10', listenPort: 8080, rulePort: 80, flows: 3, outcomes: { connected: 2, refused: 0, timeout: 1, reset: 0, error: 0 }, mismatches: 1, latency: lat, answerLatency: new H() }];
  return {
    api: '127.0.0.1:4510', startedAt: '2026-11-25T10:00:00.000Z', elapsedS: 2, flows: 3, throughputPerS: 1.5,
    outcomes: { connected: 2, refused: 0, timeout: 1, reset: 0, error: 0 }, mismatchCount: 1,
    mismatches: [{ atS: 1.2, source: '127.77.0.1', listener: 'tcp 127.0.0.10:8080', instance: 'web', kind: 'service', rulePort: 80, expected: 'connected', actual: 'timeout', code: '', query: { from: '127.77.0.1', to: 'web', protocol: 'tcp', port: 80 }, decision: 'allow', reason: 'see https://example.com <b>' }],
    listeners, latency: lat,
    timeline: [{ t: 1, started: 2, done: 2, mismatches: 0, p50Ms: 0.8, p99Ms: 1.2, maxMs: 1.2 }, { t: 2, started: 1, done: 1, mismatches: 1, p50Ms: 0, p99Ms: 0, maxMs: 0 }],
    daemon: [{ t: 0, conntrackEntries: 0, conntrackMax: 100, overflows: 3, rssBytes: 5e7, cpuPercent: 0 }, { t: 1, conntrackEntries: 2, conntrackMax: 100, overflows: 5, rssBytes: 6e7, cpuPercent: 12.5 }],
    hold: null,
    notes: ['a note'],
    settings: { flows: 3, durationS: 10, ratePerS: null, concurrency: 4, timeoutMs: 1000, sources: 2, mix: null, hold: 0 },
  };
}

t.test('HTML report is self-contained and escapes what it shows', async (t) => {
  const html = renderHtml(fakeResult());
  t.match(html, /^<!doctype html>/);
  t.notMatch(html, /\b(src|href)\s*=/i, 'no src or href attribute at all');
  t.notMatch(html, /<script|<link|@import|url\(/i, 'no script, stylesheet link, import or url()');
  t.notMatch(html, /https?:\/\/(?!example\.com)/, 'no http(s) address other than the escaped text of a reason');
  t.match(html, /<svg /, 'has inline SVG charts');
  t.match(html, /web&lt;script&gt;/, 'instance names are escaped');
  t.match(html, /&lt;b&gt;/, 'reasons are escaped');
  t.match(html, /1 mismatch/);
});

t.test('the --hold report in text, JSON and HTML', async (t) => {
  const r = fakeResult();
  r.hold = {
    requested: 50, held: 40, openAtEnd: 40, failed: { connected: 0, refused: 0, timeout: 10, reset: 0, error: 0 }, firstErrorCode: '', holdS: 1.5,
    conntrackMax: 40, entriesAfterHold: 40, fullAfterHold: true, overflowsStart: 3, overflowsAfterHold: 4, overflowsEnd: 9, flowsWhileFull: 12, timeoutsWhileFull: 12,
  };
  r.settings.hold = 50;
  t.match(holdText(r.hold), /40 of 50 flows held open .*\(10 timeout\).*40 of 40 entries after the hold: FULL; 12 new flows launched while full, 12 timed out; daemon overflow counter 3 → 4 after the hold → 9 at the end \(\+6\)/);
  t.match(formatText(r), /^hold: 40 of 50/m);
  t.match(resultJson(r), { hold: { requested: 50, fullAfterHold: true, overflowsEnd: 9 } });
  const html = renderHtml(r);
  t.match(html, /Conntrack pressure \(--hold 50\)/);
  t.match(html, /■ overflows/, 'the conntrack chart shows the overflow counter');
  t.notMatch(html, /<script|\b(src|href)\s*=/i);
});

t.test('text and JSON forms', async (t) => {
  const r = fakeResult();
  const text = formatText(r);
  t.match(text, /LISTENER/);
  t.match(text, /expected connected, got timeout/);
  t.match(text, /conntrack up to 2 of 100/);
  const j = resultJson(r) as { listeners: { connectLatency: { p50Ms: number; maxMs: number } }[]; mismatchCount: number };
  t.equal(j.mismatchCount, 1);
  t.equal(j.listeners[0]!.connectLatency.maxMs, 1.2);
  t.ok(JSON.stringify(j).length > 0, 'serialisable');
});

t.test('progress line: redrawn in place on a TTY, silent otherwise', async (t) => {
  const { ProgressLine } = await import('../../src/loadtest/progress.js');
  let out = '';
  const tty = { isTTY: true, columns: 100, write: (s: string) => { out += s; return true; } } as unknown as NodeJS.WriteStream;
  const p = new ProgressLine(tty);
  p.update({ elapsedS: 1.5, started: 60, done: 50, inFlight: 10, mismatches: 2, ratePerS: 33.3, limit: 100 });
  t.match(out, /^\r\x1b\[K\[#{10}\.{10}\] 1\.5s  done 50\/100  in flight 10  33\/s  mismatches 2$/);
  p.clear();
  t.match(out, /\r\x1b\[K$/);
  let quiet = '';
  const pipe = { isTTY: false, write: (s: string) => { quiet += s; return true; } } as unknown as NodeJS.WriteStream;
  const q = new ProgressLine(pipe);
  q.update({ elapsedS: 1, started: 1, done: 1, inFlight: 0, mismatches: 0, ratePerS: 1, limit: null });
  q.clear();
  t.equal(quiet, '', 'nothing written to a pipe');
});
