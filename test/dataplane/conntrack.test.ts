// The conntrack table with an injected clock: AWS's long idle timeouts are advanced, not waited.

import t from 'tap';
import { ManualClock } from '../../src/dataplane/clock.js';
import { ConnTable, EXPIRE_IDLE, EXPIRE_CUT, ST_ESTABLISHED, type FlowEntry, type FlowOwner } from '../../src/dataplane/conntrack/table.js';
import { entryToJson } from '../../src/dataplane/conntrack/view.js';

function owner(): FlowOwner & { expired: number[]; bytes: number } {
  const o = {
    expired: [] as number[], bytes: 0,
    sample(e: FlowEntry) { e.bytesIn = o.bytes; },
    expire(_e: FlowEntry, reason: number) { o.expired.push(reason); },
  };
  return o;
}

const flow = (o: FlowOwner, timeoutMs: number) => ({
  proto: 6, family: 4 as const, inst: 0, dir: 0, listener: 0, tracked: true, state: ST_ESTABLISHED,
  src: '127.0.0.2', srcPort: 40000, dst: '127.0.0.10', dstPort: 22, rulePort: 22, timeoutMs, owner: o,
});

t.test('idle expiry at exactly the timeout, never early; activity postpones it', async (t) => {
  const clock = new ManualClock();
  const table = new ConnTable(10, clock);
  const o = owner();
  const e = table.open(flow(o, 432000_000))!;
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
  const a = table.open(flow(owner(), 1000))!;
  t.ok(table.open(flow(owner(), 1000)));
  t.equal(table.open(flow(owner(), 1000)), null, 'third flow refused');
  t.equal(table.overflows, 1);
  t.ok(table.full);
  table.close(a);
  table.close(a);                   // idempotent
  t.equal(table.count, 1);
  const c = table.open(flow(owner(), 1000))!;
  t.equal(c.slot, a.slot, 'the freed slot is reused');
  t.equal(table.capacity, 2, 'no new slot was allocated');
});

t.test('the sweeper scans a bounded slice per call and wraps around', async (t) => {
  const clock = new ManualClock();
  const table = new ConnTable(100, clock);
  const owners = Array.from({ length: 50 }, () => owner());
  for (const o of owners) table.open(flow(o, 1000));
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
  const e = table.open(flow(o, 432000_000))!;
  clock.advance(3200);
  const j = entryToJson(e, 'web', clock.nowMs());
  t.same(Object.keys(j), ['protocol', 'instance', 'direction', 'state', 'tracked', 'src', 'srcPort', 'dst', 'dstPort',
    'bytesIn', 'bytesOut', 'ageSeconds', 'idleSeconds', 'expiresInSeconds']);
  t.match(j, { protocol: 'tcp', instance: 'web', direction: 'ingress', state: 'ESTABLISHED', ageSeconds: 3.2, idleSeconds: 3.2, expiresInSeconds: 431996.8 });
  table.drop(e, EXPIRE_CUT);
  t.same(o.expired, [EXPIRE_CUT]);
  t.notOk(e.live);
});
