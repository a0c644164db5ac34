// pageEntries (GET /v1/conntrack?sort=…, the dashboard's conntrack view): addresses sort as
// numbers (127.0.0.9 before 127.0.0.10), IPv6 after IPv4 when mixed, ties keep table order,
// filters by instance and text, and the page's entries alone are refreshed and built.

import t from 'tap';
import { ConnTable, FlowEntry } from '../../src/dataplane/conntrack/table.js';
import { pageEntries, type PageQuery } from '../../src/dataplane/conntrack/view.js';

function table(srcs: string[]): FlowEntry[] {
  const tb = new ConnTable(100, { nowMs: () => 1000 });
  return srcs.map((src, i) => tb.open({ proto: 6, family: src.includes(':') ? 6 : 4, inst: i % 2, dir: 0, listener: 0, tracked: true, state: 1,
    src, srcPort: 5000 - i, dst: src.includes(':') ? '::1' : '127.1.0.1', dstPort: 80, rulePort: 80, timeoutMs: 60_000 }, new FlowEntry())!);
}
const q = (over: Partial<PageQuery>): PageQuery => ({ offset: 0, limit: 100, sort: 'src', desc: false, instance: null, text: null, ...over });
const names = (i: number) => ['a', 'b'][i]!;

t.test('addresses sort as numbers; IPv6 after IPv4 when mixed; ties in table order', async (t) => {
  const v4 = table(['127.0.0.10', '127.0.0.9', '10.0.0.1', '127.0.0.9']);
  t.same(pageEntries(v4, names, 1000, q({})).entries.map((e) => `${e.src}:${e.srcPort}`),
    ['10.0.0.1:4998', '127.0.0.9:4999', '127.0.0.9:4997', '127.0.0.10:5000']);
  t.same(pageEntries(v4, names, 1000, q({ desc: true, limit: 2, offset: 1 })).entries.map((e) => e.src), ['127.0.0.9', '127.0.0.9']);
  const mixed = table(['::1', '127.0.0.10', '127.0.0.9']);
  t.same(pageEntries(mixed, names, 1000, q({})).entries.map((e) => e.src), ['127.0.0.9', '127.0.0.10', '::1']);
});

t.test('filters, totals and refreshing only the page', async (t) => {
  const es = table(['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4']);
  const refreshed: string[] = [];
  const r = pageEntries(es, names, 1000, q({ sort: 'srcPort', limit: 1 }), (e) => refreshed.push(e.src));
  t.equal(r.total, 4);
  t.same(r.entries.map((e) => e.srcPort), [4997]);
  t.same(refreshed, ['127.0.0.4'], 'only the entry shown was refreshed');
  t.same(pageEntries(es, names, 1000, q({ instance: 'b' })).entries.map((e) => e.src), ['127.0.0.2', '127.0.0.4']);
  t.same(pageEntries(es, names, 1000, q({ text: '127.0.0.3:' })).entries.map((e) => e.src), ['127.0.0.3']);
  t.equal(pageEntries(es, names, 1000, q({ offset: 10 })).entries.length, 0, 'past the end: an empty page, the total still 4');
});
