// The conntrack table with an injected clock: AWS's long idle timeouts are advanced, not waited.

import t from 'tap';
import { ManualClock } from '../../src/dataplane/clock.js';
import { ConnTable, EXPIRE_IDLE, EXPIRE_CUT, FlowEntry, ST_ESTABLISHED, type OpenFlow } from '../../src/dataplane/conntrack/table.js';
import { entryToJson } from '../../src/dataplane/conntrack/view.js';
import { parseIpv4, parseIpv6Words } from '../../src/policy/addr.js';
import { mulberry32 } from '../prng.js';

/** What the table told the flows that report to it (a relay's own counters: `bytes`). */
interface Owner { expired: number[]; bytes: number }
function owner(): Owner { return { expired: [], bytes: 0 }; }

/** A flow object as the relays are: it is its own conntrack entry, and reports to an Owner. */
class TestFlow extends FlowEntry {
  constructor(readonly o: Owner) { super(); }
  override sample(): void { this.bytesIn = this.o.bytes; }
  override expire(reason: number): void { this.o.expired.push(reason); }
}

/** Opens `f` as a new TestFlow reporting to f.owner, or as `again` (a closed flow tracked again). */
function open(table: ConnTable, f: OpenFlow & { owner: Owner }, again?: TestFlow): TestFlow | null {
  return table.open(f, again ?? new TestFlow(f.owner));
}

const flow = (o: Owner, timeoutMs: number) => ({
  proto: 6, family: 4 as const, inst: 0, dir: 0, listener: 0, tracked: true, state: ST_ESTABLISHED,
  src: '127.0.0.2', srcPort: 40000, dst: '127.0.0.10', dstPort: 22, rulePort: 22, timeoutMs, owner: o,
});

t.test('idle expiry at exactly the timeout, never early; activity postpones it', async (t) => {
  const clock = new ManualClock();
  const table = new ConnTable(10, clock);
  const o = owner();
  const e = open(table, flow(o, 432000_000))!;
  clock.advance(431_999_000);
  table.sweep(100);
  t.ok(e.live, 'alive 1 s before the 5-day timeout');
  o.bytes = 10;                      // traffic in between
  table.sweep(100);
  clock.advance(2000);
  table.sweep(100);
  t.ok(e.live, 'activity reset the idle clock');
  clock.advance(432000_000);
  table.sweep(100);
  t.notOk(e.live, 'expired after 5 idle days');
  t.same(o.expired, [EXPIRE_IDLE]);
  t.equal(table.count, 0);
  t.equal(table.expiredIdle, 1);
});

t.test('bounded: open returns null when full and counts the overflow; slots are reused', async (t) => {
  const table = new ConnTable(2, new ManualClock());
  const a = open(table, flow(owner(), 1000))!;
  t.ok(open(table, flow(owner(), 1000)));
  t.equal(open(table, flow(owner(), 1000)), null, 'third flow refused');
  t.equal(table.overflows, 1);
  t.ok(table.full);
  table.close(a);
  table.close(a);                   // idempotent
  t.equal(table.count, 1);
  const c = open(table, flow(owner(), 1000))!;
  t.equal(c.slot, a.slot, 'the freed slot is reused');
  t.equal(table.capacity, 2, 'no new slot was allocated');
});

t.test('the sweeper scans a bounded slice per call and wraps around', async (t) => {
  const clock = new ManualClock();
  const table = new ConnTable(100, clock);
  const owners = Array.from({ length: 50 }, () => owner());
  for (const o of owners) open(table, flow(o, 1000));
  clock.advance(1000);
  t.equal(table.sweep(20), 20, 'first slice');
  t.equal(table.sweep(20), 20, 'second slice');
  t.equal(table.sweep(20), 10, 'the rest');
  t.equal(table.count, 0);
});

t.test('drop tells the owner why; the JSON view has the SPEC fields', async (t) => {
  const clock = new ManualClock(5000);
  const table = new ConnTable(4, clock);
  const o = owner();
  const e = open(table, flow(o, 432000_000))!;
  clock.advance(3200);
  const j = entryToJson(e, 'web', clock.nowMs());
  t.same(Object.keys(j), ['protocol', 'instance', 'direction', 'state', 'tracked', 'src', 'srcPort', 'dst', 'dstPort',
    'bytesIn', 'bytesOut', 'ageSeconds', 'idleSeconds', 'expiresInSeconds']);
  t.match(j, { protocol: 'tcp', instance: 'web', direction: 'ingress', state: 'ESTABLISHED', ageSeconds: 3.2, idleSeconds: 3.2, expiresInSeconds: 431996.8 });
  table.drop(e, EXPIRE_CUT);
  t.same(o.expired, [EXPIRE_CUT]);
  t.notOk(e.live);
});

// ---------------------------------------------------------------- tuple index (issue #4)

const v4 = (o: Owner, src: string, srcPort: number, dst = '127.0.0.10', dstPort = 22, proto = 6) => ({
  ...flow(o, 1000), proto, src, srcPort, dst, dstPort, rulePort: dstPort,
});
const v6 = (o: Owner, src: string, srcPort: number, dst = '::1', dstPort = 22, proto = 6) => ({
  ...v4(o, src, srcPort, dst, dstPort, proto), family: 6 as const,
});

t.test('find4 finds a flow from both directions, and nothing else', async (t) => {
  const table = new ConnTable(10, new ManualClock());
  const o = owner();
  const tcp = open(table, v4(o, '127.0.0.2', 40000))!;
  const udp = open(table, v4(o, '127.0.0.2', 40000, '127.0.0.10', 22, 17))!;
  const src = parseIpv4('127.0.0.2'), dst = parseIpv4('127.0.0.10');
  t.equal(table.find4(6, src, 40000, dst, 22), tcp, 'client → instance');
  t.equal(table.find4(6, dst, 22, src, 40000), tcp, 'the reply (swapped tuple)');
  t.equal(table.find4(17, dst, 22, src, 40000), udp, 'the protocol is part of the tuple');
  t.equal(table.find4(6, src, 22, dst, 40000), null, 'ports swapped without the addresses: another flow');
  t.equal(table.find4(6, src, 40001, dst, 22), null);
  t.equal(table.find4(6, src, 40000, dst + 1, 22), null);
  t.equal(table.find4(1, src, 40000, dst, 22), null);
  t.equal(table.find6(6, [0, 0, 0, 1], 40000, [0, 0, 0, 1], 22), null, 'an IPv4 flow is not an IPv6 one');
  t.equal(tcp.src, '127.0.0.2', 'text form rebuilt from the number');
  t.equal(tcp.dst, '127.0.0.10');
  table.close(tcp);
  t.equal(table.find4(6, src, 40000, dst, 22), null, 'closed: gone from the index');
  t.equal(tcp.src, '127.0.0.2', 'a closed entry stays readable until its slot is reused (owners read it in expire)');
  t.equal(tcp.srcPort, 40000);
  const slot = tcp.slot;
  const again = open(table, v4(o, '127.0.0.3', 50000), tcp)!;
  t.equal(again, tcp, 'the slot and its object are reused');
  t.equal(again.slot, slot);
  t.equal(table.find4(6, src, 40000, dst, 22), null);
  t.equal(table.find4(6, dst, 22, parseIpv4('127.0.0.3'), 50000), again);
  // addresses with the top bit set are uint32, not negative
  const hi = open(table, v4(o, '255.255.255.254', 65535, '128.0.0.1', 0))!;
  t.equal(hi.src, '255.255.255.254');
  t.equal(table.find4(6, 0xfffffffe, 65535, 0x80000001, 0), hi);
  t.equal(table.find4(6, 0x80000001 | 0, 0, 0xfffffffe | 0, 65535), hi, 'a signed int32 address is read as uint32');
});

t.test('find6 finds a flow from both directions; texts come back as given', async (t) => {
  const table = new ConnTable(10, new ManualClock());
  const o = owner();
  const a = open(table, v6(o, 'fd00::2', 40000))!;
  const mapped = open(table, v6(o, '::ffff:127.0.0.2', 40001))!;
  const long = open(table, v6(o, '0:0:0:0:0:0:0:1', 40002, '2001:DB8::1', 443))!;
  const w = (s: string) => parseIpv6Words(s);
  t.equal(table.find6(6, w('fd00::2'), 40000, w('::1'), 22), a);
  t.equal(table.find6(6, w('::1'), 22, w('fd00::2'), 40000), a, 'the reply');
  t.equal(table.find6(17, w('::1'), 22, w('fd00::2'), 40000), null, 'other protocol');
  t.equal(table.find6(6, w('fd00::3'), 40000, w('::1'), 22), null);
  t.equal(table.find6(6, w('fd00::2'), 40000, w('::2'), 22), null);
  t.equal(table.find6(6, w('::ffff:7f00:2'), 40001, w('::1'), 22), mapped, 'a v4-mapped source by its words');
  t.equal(table.find6(6, w('2001:db8::1'), 443, w('::1'), 40002), long);
  const scratch = new Uint32Array(8);
  scratch.set(w('::1'), 0); scratch.set(w('fd00::2'), 4);
  t.equal(table.find6(6, scratch, 22, scratch, 40000, 0, 4), a, 'both addresses read from one scratch array at offsets');
  t.equal(table.find4(6, 1, 40000, 1, 22), null, 'an IPv6 flow is not an IPv4 one');
  t.equal(a.src, 'fd00::2');
  t.equal(a.family, 6);
  t.equal(mapped.src, '::ffff:127.0.0.2', 'Node\'s v4-mapped text, not the RFC 5952 hex form');
  t.equal(long.src, '0:0:0:0:0:0:0:1', 'non-canonical text kept as given');
  t.equal(long.dst, '2001:DB8::1');
  table.close(mapped);
  t.equal(table.find6(6, w('::ffff:7f00:2'), 40001, w('::1'), 22), null);
  const reused = open(table, v6(o, 'fd00::9', 1), mapped)!;
  t.equal(reused, mapped);
  t.equal(reused.src, 'fd00::9', 'the reused slot forgets the old text');
  const bad = open(table, { ...v4(o, 'not-an-address', 5), dst: '127.0.0.10' })!;
  t.equal(bad.src, 'not-an-address', 'an unparsable text is kept as given (and is findable by nothing)');
});

t.test('every field reads back what was written, across growth of the columns', async (t) => {
  const clock = new ManualClock(1234.5);
  const table = new ConnTable(1000, clock);
  const rec = owner(), o = new TestFlow(rec);
  const first = open(table, { ...v4(rec, '10.0.0.1', 1), inst: 7, dir: 1, listener: 3, tracked: false, state: ST_ESTABLISHED, rulePort: 8080, timeoutMs: 432000_000 }, o)!;
  first.bytesIn = 2 ** 40 + 1; first.bytesOut = 5; first.packetsIn = 3; first.packetsOut = 4; first.exchanges = 2;
  t.equal(first.reportedBytesIn, 0, 'flow-log counters read 0 before the flow log ever wrote one');
  first.reportedBytesIn = 11; first.reportedBytesOut = 12; first.reportedPacketsIn = 13; first.reportedPacketsOut = 14;
  first.state = 2; first.tracked = true;
  const others: FlowEntry[] = [];
  for (let i = 0; i < 300; i++) others.push(open(table, v4(rec, '10.0.1.1', 1000 + i))!);   // slot pointers grow 64 → 128 → 256 → 512 (columns: reserved for all 1000)
  t.equal(table.capacity, 301);
  t.same(first.toJSON(), {
    slot: 0, live: true, proto: 6, family: 4, inst: 7, dir: 1, listener: 3, tracked: true, state: 2,
    src: '10.0.0.1', srcPort: 1, dst: '127.0.0.10', dstPort: 22, rulePort: 8080,
    bytesIn: 2 ** 40 + 1, bytesOut: 5, packetsIn: 3, packetsOut: 4, exchanges: 2,
    reportedBytesIn: 11, reportedBytesOut: 12, reportedPacketsIn: 13, reportedPacketsOut: 14,
    createdMs: 1234.5, lastSeenMs: 1234.5, lastActivity: 0, timeoutMs: 432000_000,
  });
  t.equal(first.owner, o);
  t.equal(others[299]!.reportedBytesIn, 0, 'a flow opened after the flow log started has zeroed counters');
  t.equal(table.find4(6, parseIpv4('10.0.1.1'), 1299, parseIpv4('127.0.0.10'), 22), others[299]);
  t.equal(table.find4(6, parseIpv4('127.0.0.10'), 22, parseIpv4('10.0.0.1'), 1), first);
  table.close(first);
  t.equal(first.owner, null, 'close forgets the owner');
  const again = open(table, v4(rec, '10.0.0.2', 2), o)!;
  t.equal(again, first);
  t.match(again.toJSON(), { bytesIn: 0, packetsIn: 0, exchanges: 0, reportedBytesIn: 0, reportedPacketsOut: 0, tracked: true, state: ST_ESTABLISHED });
});

t.test('writing a key field of a live entry re-indexes it', async (t) => {
  const table = new ConnTable(10, new ManualClock());
  const e = open(table, v4(owner(), '127.0.0.2', 40000))!;
  const src = parseIpv4('127.0.0.2'), dst = parseIpv4('127.0.0.10');
  e.srcPort = 40001;
  t.equal(table.find4(6, src, 40000, dst, 22), null);
  t.equal(table.find4(6, dst, 22, src, 40001), e);
  e.src = '127.0.0.3';
  t.equal(table.find4(6, parseIpv4('127.0.0.3'), 40001, dst, 22), e);
  e.proto = 17;
  t.equal(table.find4(17, parseIpv4('127.0.0.3'), 40001, dst, 22), e);
  e.family = 6;
  t.equal(e.src, '127.0.0.3', 'an IPv4 text on an IPv6 entry is kept as text');
  t.equal(table.find4(17, parseIpv4('127.0.0.3'), 40001, dst, 22), null);
});

t.test('full table: open refuses and counts, find still answers, onFullChange on both edges', async (t) => {
  const table = new ConnTable(3, new ManualClock());
  const edges: boolean[] = [];
  table.onFullChange = (full) => edges.push(full);
  const o = owner();
  const es = [1, 2, 3].map((i) => open(table, v4(o, `127.0.0.${i}`, 1000 + i))!);
  t.same(edges, [true]);
  t.equal(open(table, v4(o, '127.0.0.9', 9)), null);
  t.equal(table.overflows, 1);
  t.equal(table.find4(6, parseIpv4('127.0.0.9'), 9, parseIpv4('127.0.0.10'), 22), null, 'the refused flow was not indexed');
  for (let i = 0; i < 3; i++) t.equal(table.find4(6, parseIpv4('127.0.0.10'), 22, parseIpv4(`127.0.0.${i + 1}`), 1001 + i), es[i]);
  table.close(es[1]!);
  t.same(edges, [true, false]);
  t.equal(table.capacity, 3);
});

t.test('near full: a headroom of 256, once up at the mark, once down below it with hysteresis; small tables always', async (t) => {
  const table = new ConnTable(1024, new ManualClock());       // near full at 768, off again at ≤ 639
  t.equal(table.nearFullAt, 768);
  const edges: boolean[] = [];
  table.onNearFullChange = (near) => edges.push(near);
  const o = owner();
  const es: FlowEntry[] = [];
  for (let i = 0; i < 767; i++) es.push(open(table, v4(o, '127.0.1.1', 1000 + i))!);
  t.same(edges, [], 'below the mark');
  t.notOk(table.nearFull);
  es.push(open(table, v4(o, '127.0.1.1', 9000))!);
  t.same(edges, [true], 'at the mark');
  t.ok(table.nearFull);
  table.close(es.pop()!);
  es.push(open(table, v4(o, '127.0.1.1', 9001))!);
  t.same(edges, [true], 'wavering at the mark does not toggle');
  while (es.length > 640) table.close(es.pop()!);
  t.same(edges, [true], 'still near full at 640');
  table.close(es.pop()!);
  t.same(edges, [true, false], 'off at 639');
  t.equal(new ConnTable(1_000_000, new ManualClock()).nearFullAt, 1_000_000 - 256, 'headroom 256 in a large table');
  const mid = new ConnTable(300, new ManualClock());          // near full at 44, off again at ≤ 21
  const me: FlowEntry[] = [];
  for (let i = 0; i < 44; i++) me.push(open(mid, v4(o, '127.0.1.2', 1000 + i))!);
  t.ok(mid.nearFull, '300: near full at 44');
  while (me.length > 22) mid.close(me.pop()!);
  t.ok(mid.nearFull, '300: still at 22');
  mid.close(me.pop()!);
  t.notOk(mid.nearFull, '300: off again at 21 (the hysteresis never goes below 0)');
  const small = new ConnTable(64, new ManualClock());
  t.equal(small.nearFullAt, 0);
  t.ok(small.nearFull, 'a table of ≤ 256 entries is always near full (no batching: every accept is seen at once)');
  small.close(open(small, v4(o, '127.0.1.3', 1))!);
  t.ok(small.nearFull, 'and stays so when empty');
});

t.test('sweep removes expired flows from the index and keeps the live ones findable', async (t) => {
  const clock = new ManualClock();
  const table = new ConnTable(1000, clock);
  const short = owner(), long = owner();
  for (let i = 0; i < 200; i++) open(table, { ...v4(i % 2 ? short : long, '10.1.0.1', i), timeoutMs: i % 2 ? 1000 : 5000 });
  clock.advance(1000);
  let expired = 0;
  for (let n = 0; n < 20; n++) expired += table.sweep(16);          // bounded slices, several passes
  t.equal(expired, 100);
  t.equal(short.expired.length, 100);
  t.equal(table.count, 100);
  const a = parseIpv4('10.1.0.1'), d = parseIpv4('127.0.0.10');
  let found = 0;
  for (let i = 0; i < 200; i++) if (table.find4(6, a, i, d, 22) !== null) { found++; t.equal(i % 2, 0, `port ${i} is a long flow`); }
  t.equal(found, 100);
  t.equal([...table.live()].length, 100);
});

t.test('churn: open/close at random against a Map reference (seeded), v4 and v6 mixed', async (t) => {
  const seed = 0x5eed07;
  const rnd = mulberry32(seed);
  const clock = new ManualClock();
  const MAX = 700;
  const table = new ConnTable(MAX, clock);
  const o = owner();
  // A small tuple space (1600 tuples; the reference settles near 740 > MAX), so that flows come
  // back, the table fills now and then, chains form and backward shifts happen.
  type Ref = { e: FlowEntry; proto: number; v6: boolean; a: number; ap: number; b: number; bp: number; srcText: string };
  const ref = new Map<string, Ref>();
  const keyOf = (proto: number, v6: boolean, a: number, ap: number, b: number, bp: number) => {
    const x = `${a}:${ap}`, y = `${b}:${bp}`;                        // unordered pair: both directions
    return `${proto}/${v6 ? 6 : 4}/${x < y ? x + '|' + y : y + '|' + x}`;
  };
  const text = (v6: boolean, a: number) => (v6 ? `fd00::${a.toString(16)}` : `10.0.${a >>> 8}.${a & 255}`);
  const words = (a: number) => [0xfd000000, 0, 0, a];
  const look = (r: { proto: number; v6: boolean; a: number; ap: number; b: number; bp: number }, reply: boolean) => {
    const [sa, sp, da, dp] = reply ? [r.b, r.bp, r.a, r.ap] : [r.a, r.ap, r.b, r.bp];
    return r.v6 ? table.find6(r.proto, words(sa), sp, words(da), dp)
      : table.find4(r.proto, parseIpv4(text(false, sa)), sp, parseIpv4(text(false, da)), dp);
  };
  const randomTuple = () => ({
    proto: rnd() < 0.8 ? 6 : 17, v6: rnd() < 0.3,
    a: 1 + Math.floor(rnd() * 10), ap: 1 + Math.floor(rnd() * 10), b: 1 + Math.floor(rnd() * 2), bp: 80 + Math.floor(rnd() * 2),
  });
  let mismatches = 0, opens = 0, closes = 0, full = 0;
  const OPS = 20_000;
  for (let op = 0; op < OPS && mismatches === 0; op++) {
    const x = randomTuple();
    const k = keyOf(x.proto, x.v6, x.a, x.ap, x.b, x.bp);
    const have = ref.get(k);
    const found = look(x, rnd() < 0.5);
    if (found !== (have?.e ?? null)) { mismatches++; t.fail(`op ${op}: find ${k} gave slot ${found?.slot ?? 'null'}, reference ${have?.e.slot ?? 'null'} (seed ${seed})`); }
    if (have && rnd() < 0.7) {
      (rnd() < 0.5 ? () => table.close(have.e) : () => table.drop(have.e, EXPIRE_CUT))();
      ref.delete(k); closes++;
    } else if (!have && rnd() < 0.6) {
      const src = text(x.v6, x.a), dst = x.v6 ? `fd00::${x.b.toString(16)}` : `10.0.${x.b >>> 8}.${x.b & 255}`;
      const f = { ...v4(o, src, x.ap, dst, x.bp, x.proto), family: (x.v6 ? 6 : 4) as 4 | 6 };
      const e = open(table, f);
      if (e === null) { full++; if (ref.size !== MAX) { mismatches++; t.fail(`op ${op}: refused at ${ref.size} < ${MAX}`); } continue; }
      ref.set(k, { e, ...x, srcText: src }); opens++;
    }
    if (table.count !== ref.size) { mismatches++; t.fail(`op ${op}: count ${table.count} vs reference ${ref.size}`); }
  }
  t.equal(mismatches, 0, `no mismatch over ${OPS} ops (${opens} opens, ${closes} closes, ${full} refused when full)`);
  t.ok(opens > 1000 && closes > 1000, 'the run churned');
  // Final state: every reference flow found from both sides with its own fields; live() agrees.
  let bad = 0;
  for (const r of ref.values()) {
    if (look(r, false) !== r.e || look(r, true) !== r.e || r.e.src !== r.srcText || r.e.srcPort !== r.ap || r.e.dstPort !== r.bp || r.e.family !== (r.v6 ? 6 : 4)) bad++;
  }
  t.equal(bad, 0, `all ${ref.size} reference flows intact`);
  t.same(new Set(table.live()), new Set([...ref.values()].map((r) => r.e)), 'live() yields exactly the reference flows');
});

t.test('numeric address views: srcV4/dstV4 and srcV6/dstV6 feed find4/find6 without text', async (t) => {
  const table = new ConnTable(4, new ManualClock());
  const a = open(table, v4(owner(), '192.0.2.200', 5))!;
  t.equal(a.srcV4, parseIpv4('192.0.2.200'));
  t.equal(a.dstV4, parseIpv4('127.0.0.10'));
  t.equal(table.find4(a.proto, a.dstV4, a.dstPort, a.srcV4, a.srcPort), a);
  t.same([...a.srcV6(new Uint32Array(4))], [0, 0, 0, 0], 'no IPv6 words on an IPv4 entry');
  const b = open(table, v6(owner(), '2001:db8::7', 6))!;
  const w = new Uint32Array(8);
  b.srcV6(w, 0); b.dstV6(w, 4);
  t.same([...w], [...parseIpv6Words('2001:db8::7'), ...parseIpv6Words('::1')]);
  t.equal(table.find6(b.proto, w, b.dstPort, w, b.srcPort, 4, 0), b);
});

t.test('the flow object is the entry (issue 16): live only in its own slot, opened again after close, never twice', async (t) => {
  const table = new ConnTable(4, new ManualClock());
  const rec = owner();
  const a = new TestFlow(rec);
  t.notOk(a.live, 'not live before open');
  t.equal(a.slot, -1);
  t.equal(table.open(v4(rec, '127.0.0.2', 1), a), a, 'open returns the object it was given');
  t.throws(() => table.open(v4(rec, '127.0.0.2', 2), a), 'an open flow cannot be opened again');
  t.equal(table.count, 1);
  const slot = a.slot;
  table.close(a);
  const b = open(table, v4(rec, '127.0.0.3', 3))!;
  t.equal(b.slot, slot, 'b took the freed slot');
  t.notOk(a.live, 'the closed flow is not live, though its slot is');
  t.equal(a.owner, null);
  table.close(a);
  table.drop(a, EXPIRE_CUT);
  table.halfClose(a);
  t.ok(b.live, 'closing or dropping the stale object again leaves the slot\'s new flow alone');
  t.same(rec.expired, [], 'and calls no expire');
  t.equal(table.find4(6, parseIpv4('127.0.0.3'), 3, parseIpv4('127.0.0.10'), 22), b);
  const other = new ConnTable(4, new ManualClock());
  other.close(b);
  other.drop(b, EXPIRE_CUT);
  t.ok(b.live, 'another table does not close it');
  t.equal(table.open(v4(rec, '127.0.0.4', 4), a), a, 'the closed object is opened again, in a free slot');
  t.ok(a.live);
  t.not(a.slot, b.slot);
  t.equal(table.find4(6, parseIpv4('127.0.0.10'), 22, parseIpv4('127.0.0.4'), 4), a);
  t.equal(table.count, 2);
  t.throws(() => new ConnTable(2 ** 24 + 1, new ManualClock()), RangeError, 'slot numbers are 24 bits in the index');
  t.equal(new ConnTable(2 ** 24, new ManualClock()).max, 2 ** 24);
});
