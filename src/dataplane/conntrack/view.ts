// The conntrack entry as users and scripts see it (SPEC §5): `sgemu conntrack --json` and
// GET /v1/conntrack. Slow path: builds objects.

import { DIRECTION_NAMES, protocolName } from '../../model/types.js';
import { STATE_NAMES, type FlowEntry } from './table.js';

export interface ConntrackJson {
  protocol: string; instance: string; direction: string; state: string; tracked: boolean;
  src: string; srcPort: number; dst: string; dstPort: number;
  bytesIn: number; bytesOut: number; ageSeconds: number; idleSeconds: number; expiresInSeconds: number;
  /** The faults this flow got (SPEC.md §9), present only when it got some. */
  faults?: string[];
}

const round1 = (x: number) => Math.round(x * 10) / 10;

export function entryToJson(e: FlowEntry, instance: string, nowMs: number): ConntrackJson {
  const idleMs = Math.max(0, nowMs - e.lastSeenMs);
  return {
    protocol: protocolName(e.proto),
    instance,
    direction: DIRECTION_NAMES[e.dir] ?? String(e.dir),
    state: STATE_NAMES[e.state] ?? String(e.state),
    tracked: e.tracked,
    src: e.src, srcPort: e.srcPort, dst: e.dst, dstPort: e.dstPort,
    bytesIn: e.bytesIn, bytesOut: e.bytesOut,
    ageSeconds: round1(Math.max(0, nowMs - e.createdMs) / 1000),
    idleSeconds: round1(idleMs / 1000),
    expiresInSeconds: round1(Math.max(0, e.timeoutMs - idleMs) / 1000),
    ...faultsOf(e),
  };
}

function faultsOf(e: FlowEntry): { faults?: string[] } {
  const names = e.live ? e.faultNames() : null;
  return names && names.length > 0 ? { faults: names } : {};
}

/** The columns a conntrack listing can be sorted by (GET /v1/conntrack?sort=…): the SPEC §5 fields. */
export const SORT_FIELDS = ['protocol', 'instance', 'direction', 'state', 'tracked', 'src', 'srcPort', 'dst', 'dstPort',
  'bytesIn', 'bytesOut', 'ageSeconds', 'idleSeconds', 'expiresInSeconds'] as const;
export type SortField = typeof SORT_FIELDS[number];

export interface PageQuery {
  offset: number;
  limit: number;
  sort: SortField;
  desc: boolean;
  /** Only entries of this instance. */
  instance: string | null;
  /** Only entries whose "src:port dst:port state protocol" text contains this (case-insensitive). */
  text: string | null;
}

/**
 * One page of entries, sorted (slow path, for the dashboard's conntrack view). Sorts raw entries
 * on one precomputed key per entry and builds JSON for the page alone, so that a 100k-entry table
 * costs one key array and one sort, not 100k objects. Keys are the entries as last sampled (the
 * sweeper samples every flow about once a second); `refresh` samples the page's entries before
 * they are shown. Ties keep table order, so paging is stable while the table does not change.
 */
export function pageEntries(entries: FlowEntry[], instanceName: (inst: number) => string, nowMs: number, q: PageQuery,
  refresh?: (e: FlowEntry) => void): { total: number; entries: ConntrackJson[] } {
  let rows = entries;
  if (q.instance !== null) rows = rows.filter((e) => instanceName(e.inst) === q.instance);
  if (q.text !== null && q.text !== '') {
    const t = q.text.toLowerCase();
    rows = rows.filter((e) => `${e.src}:${e.srcPort} ${e.dst}:${e.dstPort} ${STATE_NAMES[e.state] ?? ''} ${protocolName(e.proto)}`.toLowerCase().includes(t));
  }
  // Numeric columns sort on a Float64Array (one monomorphic compare), text columns on strings;
  // addresses as numbers while all are IPv4 (zero-padded string keys took 4x as long at 100k
  // entries: 733 vs 183 ms median on a loaded 2-core machine), as text when IPv6 is among them.
  const addrSort = q.sort === 'src' || q.sort === 'dst';
  const anyV6 = addrSort && rows.some((e) => (q.sort === 'src' ? e.src : e.dst).includes(':'));
  const textSort = q.sort === 'instance' || q.sort === 'state' || (addrSort && anyV6);
  const num = new Float64Array(textSort ? 0 : rows.length);
  const text: string[] = textSort ? new Array(rows.length) : [];
  const addrKeys = new Map<string, string>();
  const addrKey = (a: string) => {
    let k = addrKeys.get(a);
    if (k === undefined) { k = sortableAddress(a); addrKeys.set(a, k); }
    return k;
  };
  for (let i = 0; i < rows.length; i++) {
    const e = rows[i]!;
    switch (q.sort) {
      case 'protocol': num[i] = e.proto; break;
      case 'instance': text[i] = instanceName(e.inst); break;
      case 'direction': num[i] = e.dir; break;
      case 'state': text[i] = STATE_NAMES[e.state] ?? ''; break;
      case 'tracked': num[i] = e.tracked ? 1 : 0; break;
      case 'src': if (textSort) text[i] = addrKey(e.src); else num[i] = ipv4Number(e.src); break;
      case 'srcPort': num[i] = e.srcPort; break;
      case 'dst': if (textSort) text[i] = addrKey(e.dst); else num[i] = ipv4Number(e.dst); break;
      case 'dstPort': num[i] = e.dstPort; break;
      case 'bytesIn': num[i] = e.bytesIn; break;
      case 'bytesOut': num[i] = e.bytesOut; break;
      case 'ageSeconds': num[i] = nowMs - e.createdMs; break;
      case 'idleSeconds': num[i] = nowMs - e.lastSeenMs; break;
      case 'expiresInSeconds': num[i] = e.timeoutMs - Math.max(0, nowMs - e.lastSeenMs); break;
    }
  }
  const order = new Int32Array(rows.length);
  for (let i = 0; i < order.length; i++) order[i] = i;
  const sign = q.desc ? -1 : 1;
  if (textSort) {
    order.sort((a, b) => {
      const ka = text[a]!, kb = text[b]!;
      return ka < kb ? -sign : ka > kb ? sign : a - b;
    });
  } else {
    order.sort((a, b) => (num[a]! - num[b]!) * sign || a - b);
  }
  const end = Math.min(rows.length, q.offset + q.limit);
  const out: ConntrackJson[] = [];
  for (let i = q.offset; i < end; i++) {
    const e = rows[order[i]!]!;
    refresh?.(e);
    out.push(entryToJson(e, instanceName(e.inst), nowMs));
  }
  return { total: rows.length, entries: out };
}

/** Dotted IPv4 text as its number (no validation: the table holds well-formed addresses). */
function ipv4Number(a: string): number {
  let n = 0, part = 0;
  for (let i = 0; i < a.length; i++) {
    const c = a.charCodeAt(i);
    if (c === 46) { n = n * 256 + part; part = 0; } else part = part * 10 + (c - 48);
  }
  return n * 256 + part;
}

/** An address as a string that sorts numerically: IPv4 octets zero-padded, IPv6 after IPv4. */
function sortableAddress(a: string): string {
  if (!a.includes(':')) return '4' + a.split('.').map((o) => o.padStart(3, '0')).join('.');
  return '6' + a;
}
