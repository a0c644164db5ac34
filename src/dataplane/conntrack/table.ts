// The connection-tracking table: every flow the daemon let through, its AWS state and idle timeout.
//
// Owns: slots, the bound (`--conntrack-max`), idle expiry, the overflow counter and the tuple index
// (find a flow by its 5-tuple, from either direction).
// Must not: know about sockets. A flow's owner (the TCP or UDP relay) is the flow's FlowEntry: it
// reports activity through `sample()` and is told to go through `expire()`.
// Invariants: the table holds one pointer per slot, to the flow object opened there (null when
// free); `count` = live slots; a flow that was closed has `live === false` and keeps its fields
// readable until its slot is reused (owners read them in `expire()`). Every live slot, and only
// those, is in the index. Expiry is swept in bounded slices per tick so a large table never blocks
// the loop (STYLE: "a sweeper scans a bounded slice per tick").
//
// Per-slot state lives in typed arrays (struct of arrays), not in objects: a JS object field
// holding a non-integer number points to a boxed HeapNumber (8 + 16 bytes here, no pointer
// compression) and an address string is ~32 more, so the object-per-flow table cost 281 MB RSS
// per 1M entries (issue #7). The table allocates no object per flow either: the daemon's own
// per-flow object (TcpRelay, NativeRelay, UdpFlow) extends FlowEntry, whose fields are accessors
// over the columns at its `slot`; a table-made { slot, owner } facade beside it cost 50 JS-heap
// bytes per entry (issue 16). The price is paid once per flow: open parses the address texts and
// open/close maintain the index.
//
//   slot s:  key  u32 ×4  [ meta | srcPort + dstPort<<16 | src (v4, or v6 word 3) | dst (idem) ]
//            aux  u32 ×6  [ inst | listener | rulePort | timeoutMs | exchanges | lastActivity ]
//            num  f64 ×6  [ bytesIn bytesOut packetsIn packetsOut createdMs lastSeenMs ]
//            flows[s] → the flow object (8 bytes; its own `st` and `slot` fields are 16 more)
//            lazily, only once used: src6/dst6 u32 ×4 (IPv6 flows), rep f64 ×4 (flow-log reported* counters)
//   meta:    bits 0-7 proto | 8-15 state | 16-23 dir | 25 tracked | 26 IPv6
//   num, key and aux: one buffer reserved for `max` slots (resident as slots are first used);
//   flows: doubles up to `max`;   free: stack of slot numbers;   cursor → next slice to sweep
//
// inst/listener/rulePort are int32 (read back with `| 0`); timeoutMs (≤ 432e6 by AWS's 5 days)
// and exchanges saturate at 2^32 − 1; lastActivity is only compared for change (see refresh);
// counters stay float64 (they pass 2^32) and so do times (ms, fractional).
// 1M entries: 88 column + 8 index + 8 pointer bytes (ConnTable.bytes(): 104.4 per entry) and 16
// bytes on each flow object: 122.4-122.5 MB per 1M in the last 2 runs, 111-125 over 10 (was
// 171-178; the facade design's 50 JS-heap bytes and 108-byte columns), of
//   TS_NODE_TRANSPILE_ONLY=1 node --import @tapjs/typescript/import scripts/bench/conntrack.ts
//
// Addresses are kept as numbers (IPv4 uint32, IPv6 four uint32 words) and the text forms `src`
// and `dst` are built on demand (slow paths: listings, flow log, policy re-checks). A text that
// would not come back identical from its numbers (IPv6 not in RFC 5952 form, e.g. Node's
// "::ffff:127.0.0.1", or anything that does not parse) is kept as given in a side map.
//
// Tuple index: open addressing over an Int32Array, linear probing, backward-shift deletion (no
// tombstones; homes recomputed from the columns, no stored hash), load ≤ 1/2. An entry is the slot
// (24 bits: max ≤ 2^24) under a 7-bit tag from the hash's top bits (0 = empty): a probe skips
// other flows' entries without reading their key rows. The hash is symmetric in the two
// endpoints, so a flow and its reply (the swapped tuple) land in the same chain and one index
// entry answers both directions:
//
//   h = fin( end(src, srcPort) + end(dst, dstPort) ^ (proto+1)·K )
//   end(a, p) = m ^ (m >>> 16), m = (a ^ (p+1)·φ)·K1        fin(x) = y ^ (y >>> 13), y = (x ^ (x >>> 15))·K2
//
//   end6(w0..w3, p) = n ^ (n >>> 13), n = (m ^ (m >>> 16))·K1, m = w0·K1 ^ w1·K2 ^ w2·K3 ^ (w3 ^ (p+1)·φ)·K4
//
// (three fmix32 before: 9 multiplies and 9 xor-shifts; now 6 and 4; IPv6 a chain of four fmix32,
// 9 multiplies per endpoint, now 6). Probe lengths stay as they
// were: mean 1.48-1.51, max 22-36 buckets over 64k flows in the bench's four patterns (its lookup
// flows, one client's sequential ports, 256 clients × 256 ports, 256 clients × 256 listeners on
// fixed ports).
// A lookup reads three random cache lines (index entry, key row, flow pointer): find4 over 64k
// live flows, both directions, compared with null: 61-62 M/s at a load average of 2-4 on this
// 2-vCPU machine, 38-56 at 9-11 (47-64 M per CPU-second over the 6 runs); with the fmix32 hash and
// no tags 37-46 M/s (40-47 per CPU-second) at 2-4 (scripts/bench/conntrack.ts, command above).
//
// Idle time is measured, not pushed: TCP relays report byte totals (socket.bytesRead/bytesWritten)
// when sampled, so the per-chunk hot path does no conntrack work at all. A change in the totals
// since the last sample means the flow was active in between.

import { inspect } from 'node:util';
import { formatIpv4, formatIpv6, parseIpv4, parseIpv6Words } from '../../policy/addr.js';
import type { Clock } from '../clock.js';

/**
 * Idle timeout of a half-closed TCP flow (a FIN seen in one direction, the other still open):
 * Linux conntrack's CLOSE_WAIT, where a flow goes once the FIN is acknowledged, as our own socket
 * did on reading it: nf_conntrack_tcp_timeout_close_wait = 60 s (net/netfilter/
 * nf_conntrack_proto_tcp.c tcp_timeouts[]; Documentation/networking/nf_conntrack-sysctl.rst; the
 * unacknowledged FIN_WAIT is 120 s, established 5 days). Without it, a client gone after its FIN
 * and a backend that never reads held a slot and two fds for the 5-day established timeout
 * (issue 17). Like every conntrack timeout it counts from the last packet: a half-closed flow
 * that still moves bytes lives on.
 */
export const TCP_HALF_CLOSED_TIMEOUT_MS = 60_000;

export const ST_SYN_SENT = 0;
export const ST_ESTABLISHED = 1;
export const ST_FIN_WAIT = 2;
export const ST_CLOSE = 3;
export const ST_UDP_UNREPLIED = 4;   // one direction only so far        (udpTimeout)
export const ST_UDP_REPLIED = 5;     // a single request-response        (udpTimeout)
export const ST_UDP_STREAM = 6;      // more than one exchange           (udpStreamTimeout)
export const STATE_NAMES = ['SYN_SENT', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE', 'UNREPLIED', 'REPLIED', 'STREAM'] as const;

export const EXPIRE_IDLE = 0;
export const EXPIRE_CUT = 1;        // untracked flow whose rule went away
export const EXPIRE_SHUTDOWN = 2;

/** What ConnTable.open records for a new flow (the flow object itself is the second argument). */
export interface OpenFlow {
  proto: number; family: 4 | 6; inst: number; dir: number; listener: number; tracked: boolean; state: number;
  src: string; srcPort: number; dst: string; dstPort: number; rulePort: number; timeoutMs: number;
}

// ---------------------------------------------------------------- column layout

const KW = 4;                                   // key words per slot
const K_META = 0, K_PORTS = 1, K_SRC = 2, K_DST = 3;
const M_PROTO = 0xff, M_STATE_SHIFT = 8, M_DIR_SHIFT = 16;
const M_TRACKED = 1 << 25, M_V6 = 1 << 26;
const M_MATCH = M_PROTO | M_V6;                 // what a lookup compares besides ports and addresses

const AW = 6;                                   // aux u32 per slot (the int32 fields read back with | 0)
const A_INST = 0, A_LISTENER = 1, A_RULE_PORT = 2, A_TIMEOUT = 3, A_EXCHANGES = 4, A_LAST_ACTIVITY = 5;
const U32_MAX = 0xffffffff;

const NW = 6;                                   // f64 per slot
const N_BYTES_IN = 0, N_BYTES_OUT = 1, N_PACKETS_IN = 2, N_PACKETS_OUT = 3, N_CREATED = 4, N_LAST_SEEN = 5;

const SLOT_BYTES = NW * 8 + KW * 4 + AW * 4;   // one buffer holds num, key and aux, in that order (f64 first: aligned)

const RW = 4;                                   // reported* f64 per slot (flow log only)
const R_BYTES_IN = 0, R_BYTES_OUT = 1, R_PACKETS_IN = 2, R_PACKETS_OUT = 3;

const INITIAL_SLOTS = 64;
/** Index entries: a tag (the hash's top 7 bits, bit 24 set so that no entry is 0 = empty) over the slot. */
const I_TAG = 0xff000000 | 0, I_SLOT = 0xffffff;
const MAX_SLOTS = I_SLOT + 1;
const tagOf = (h: number): number => (h | 0x01000000) & I_TAG;
const INITIAL_INDEX = 128;                      // power of two, ≥ 2 × INITIAL_SLOTS

/** One endpoint, mixed on its own (a multiply and a shift: not linear, so that sums of two do not
 * collide for every pair of addresses with the same sum, as clients × listeners would). */
const end4 = (a: number, port: number): number => {
  const x = Math.imul(a ^ Math.imul(port + 1, 0x9e3779b1), 0x85ebca6b);
  return x ^ (x >>> 16);
};
/** IPv6: each word through its own multiply (4, plus the port's), folded by xor, then one
 * multiply and two xor-shifts so that high bits reach the low ones (6 multiplies instead of the
 * chain of four fmix32, 9). */
const end6 = (w0: number, w1: number, w2: number, w3: number, port: number): number => {
  let x = Math.imul(w0, 0x85ebca6b) ^ Math.imul(w1, 0xc2b2ae35) ^ Math.imul(w2, 0x27d4eb2f) ^
    Math.imul(w3 ^ Math.imul(port + 1, 0x9e3779b1), 0x165667b1);
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  return x ^ (x >>> 13);
};
/** The two endpoints' mixes, summed (symmetric), with the protocol, through a short finaliser. */
const join = (proto: number, a: number, b: number): number => {
  let h = ((a + b) | 0) ^ Math.imul(proto + 1, 0x27d4eb2f);
  h = Math.imul(h ^ (h >>> 15), 0xc2b2ae35);
  return (h ^ (h >>> 13)) >>> 0;
};

/** A u32 column value: counts and timeouts above 2^32 − 1 saturate rather than wrap. */
const u32 = (v: number): number => (v >= U32_MAX ? U32_MAX : v > 0 ? v : 0);

/** Address text → numbers; -1 / null when it does not parse (the text is then kept as given, words 0). */
function tryParse4(text: string): number {
  try { return parseIpv4(text); } catch { return -1; }
}
function tryParse6(text: string): Uint32Array | null {
  try { return parseIpv6Words(text); } catch { return null; }
}

/**
 * The columns. Internal to this module: ConnTable owns the policy (bound, free list, sweep), the
 * store owns the arrays and the index. FlowEntry reads and writes through it.
 */
class Store {
  alloc = 0;                                    // slots `flows` holds (doubles up to max)
  cols = 0;                                     // slots the typed columns hold (max, unless reserving it failed)
  used = 0;                                     // slots ever handed out (= ConnTable.capacity)
  key = new Uint32Array(0);
  aux = new Uint32Array(0);
  num = new Float64Array(0);
  src6: Uint32Array | null = null;
  dst6: Uint32Array | null = null;
  rep: Float64Array | null = null;
  /** The flow object in each slot, null when the slot is free (the table keeps no other per-flow object). */
  flows: (FlowEntry | null)[] = [];
  /** Texts that do not round-trip through their numbers, by slot. Usually empty. */
  readonly srcText = new Map<number, string>();
  readonly dstText = new Map<number, string>();
  idx = new Int32Array(INITIAL_INDEX);
  mask = INITIAL_INDEX - 1;
  indexed = 0;
  // One-entry parse caches: the destination is the listener's own address, the same string for
  // every flow of a listener; IPv6 sources are mostly "::1".
  private lastDst = ''; private lastDstFamily = 0; private lastDstWords = new Uint32Array(4); private lastDstExact = false;
  private lastSrc6 = ''; private lastSrc6Words = new Uint32Array(4); private lastSrc6Exact = false;

  constructor(readonly max: number) {
    // The columns of every slot are reserved at once: an ArrayBuffer is zeroed lazily (calloc;
    // mmap above malloc's threshold), so its pages become resident only as slots are first used,
    // RSS follows the peak of live flows, and nothing is copied when the table fills up. Columns
    // that doubled left each smaller copy to malloc, which kept much of it resident: the bench's
    // 1M fill (scripts/bench/conntrack.ts) took RSS +139-178 MB for 104 MB of columns, index and
    // pointers, and +102-103 MB reserved. Where the address space or a strict overcommit limit
    // refuses the reservation, the columns double from INITIAL_SLOTS as before.
    if (max > 0) try { this.resize(max); } catch (e) { if (!(e instanceof RangeError)) throw e; }
  }

  /** Moves the columns to one buffer of n slots (n ≥ cols). */
  private resize(n: number): void {
    const buf = new ArrayBuffer(n * SLOT_BYTES);
    const num = new Float64Array(buf, 0, n * NW);
    const key = new Uint32Array(buf, n * NW * 8, n * KW);
    const aux = new Uint32Array(buf, n * (NW * 8 + KW * 4), n * AW);
    num.set(this.num); key.set(this.key); aux.set(this.aux);
    this.num = num; this.key = key; this.aux = aux;
    if (this.src6) { const a = new Uint32Array(n * 4); a.set(this.src6); this.src6 = a; }
    if (this.dst6) { const a = new Uint32Array(n * 4); a.set(this.dst6); this.dst6 = a; }
    if (this.rep) { const a = new Float64Array(n * RW); a.set(this.rep); this.rep = a; }
    this.cols = n;
  }

  /** Doubles the slot pointers, and the columns if they were not reserved (bounded by max). Precondition: used === alloc < max. */
  grow(): void {
    const n = Math.min(this.max, Math.max(INITIAL_SLOTS, this.alloc * 2));
    if (this.cols < n) this.resize(n);
    // Exactly n pointers (push would leave up to half again as many unused).
    const flows = new Array<FlowEntry | null>(n).fill(null), old = this.flows;
    for (let s = 0; s < this.used; s++) flows[s] = old[s]!;
    this.flows = flows;
    this.alloc = n;
  }

  /** A new slot at the end (used < alloc after grow). */
  append(): number {
    if (this.used === this.alloc) this.grow();
    return this.used++;
  }

  v6words(): Uint32Array {
    if (!this.src6) { this.src6 = new Uint32Array(this.cols * 4); this.dst6 = new Uint32Array(this.cols * 4); }
    return this.src6;
  }

  repCols(): Float64Array {
    return this.rep ??= new Float64Array(this.cols * RW);
  }

  /** Writes the address `text` (family from the slot's meta) as src (which 0) or dst (1). */
  setAddr(s: number, which: number, text: string): void {
    const key = this.key, k = s * KW + (which === 0 ? K_SRC : K_DST);
    const texts = which === 0 ? this.srcText : this.dstText;
    if (texts.size !== 0) texts.delete(s);
    if (!(key[s * KW + K_META]! & M_V6)) {
      if (which === 1 && text === this.lastDst && this.lastDstFamily === 4) { key[k] = this.lastDstWords[3]!; return; }
      const a = tryParse4(text);
      if (a < 0) { key[k] = 0; texts.set(s, text); return; }
      key[k] = a;
      if (which === 1) { this.lastDst = text; this.lastDstFamily = 4; this.lastDstWords[3] = a; }
      return;
    }
    this.v6words();
    const cols = which === 0 ? this.src6! : this.dst6!;
    let w: Uint32Array | null, exact: boolean;
    if (which === 1 && text === this.lastDst && this.lastDstFamily === 6) { w = this.lastDstWords; exact = this.lastDstExact; }
    else if (which === 0 && text === this.lastSrc6) { w = this.lastSrc6Words; exact = this.lastSrc6Exact; }
    else {
      w = tryParse6(text);
      exact = w !== null && formatIpv6(w) === text;
      if (w !== null && which === 1) { this.lastDst = text; this.lastDstFamily = 6; this.lastDstWords.set(w); this.lastDstExact = exact; }
      if (w !== null && which === 0) { this.lastSrc6 = text; this.lastSrc6Words.set(w); this.lastSrc6Exact = exact; }
    }
    const b = s * 4;
    if (w === null) { cols[b] = 0; cols[b + 1] = 0; cols[b + 2] = 0; cols[b + 3] = 0; }
    else { cols[b] = w[0]!; cols[b + 1] = w[1]!; cols[b + 2] = w[2]!; cols[b + 3] = w[3]!; }
    key[k] = cols[b + 3]!;
    if (!exact) texts.set(s, text);
  }

  addrText(s: number, which: number): string {
    const texts = which === 0 ? this.srcText : this.dstText;
    if (texts.size !== 0) { const t = texts.get(s); if (t !== undefined) return t; }
    const k = this.key;
    if (!(k[s * KW + K_META]! & M_V6)) return formatIpv4(k[s * KW + (which === 0 ? K_SRC : K_DST)]!);
    const cols = which === 0 ? this.src6! : this.dst6!;
    return formatIpv6(cols.subarray(s * 4, s * 4 + 4));
  }

  words(s: number, which: number, out: Uint32Array, at: number): Uint32Array {
    const cols = which === 0 ? this.src6 : this.dst6;
    const v6 = (this.key[s * KW + K_META]! & M_V6) !== 0 && cols !== null;
    for (let i = 0; i < 4; i++) out[at + i] = v6 ? cols![s * 4 + i]! : 0;
    return out;
  }

  /** The slot's tuple hash, from its columns (the key fields must not have changed since insert). */
  hashOf(s: number): number {
    const key = this.key, b = s * KW;
    const meta = key[b + K_META]!, ports = key[b + K_PORTS]!;
    const proto = meta & M_PROTO, sp = ports & 0xffff, dp = ports >>> 16;
    if (!(meta & M_V6)) return join(proto, end4(key[b + K_SRC]!, sp), end4(key[b + K_DST]!, dp));
    const a = this.src6!, d = this.dst6!, w = s * 4;
    return join(proto, end6(a[w]!, a[w + 1]!, a[w + 2]!, a[w + 3]!, sp), end6(d[w]!, d[w + 1]!, d[w + 2]!, d[w + 3]!, dp));
  }

  /** Adds a live slot to the index (doubling the index first when it would pass load 1/2). */
  insert(s: number): void {
    if ((this.indexed + 1) * 2 > this.idx.length) this.rehash(this.idx.length * 2);
    const h = this.hashOf(s);
    const idx = this.idx, mask = this.mask;
    let i = h & mask;
    while (idx[i] !== 0) i = (i + 1) & mask;
    idx[i] = tagOf(h) | s;
    this.indexed++;
  }

  /** Removes slot s (which must be indexed) and shifts its chain back so no tombstone is left. */
  remove(s: number): void {
    const idx = this.idx, mask = this.mask;
    const h = this.hashOf(s), want = tagOf(h) | s;
    let i = h & mask;
    while (idx[i] !== want) i = (i + 1) & mask;
    idx[i] = 0;
    // Backward shift (Knuth 6.4, algorithm R): move each later member of the run whose home is
    // not cyclically within (i, j] into the hole.
    for (let j = (i + 1) & mask; ; j = (j + 1) & mask) {
      const v = idx[j]!;
      if (v === 0) break;
      const home = this.hashOf(v & I_SLOT) & mask;
      if (i <= j ? (home <= i || home > j) : (home <= i && home > j)) {
        idx[i] = v; idx[j] = 0; i = j;
      }
    }
    this.indexed--;
  }

  private rehash(size: number): void {
    const old = this.idx;
    const idx = new Int32Array(size), mask = size - 1;
    for (let i = 0; i < old.length; i++) {
      const v = old[i]!;
      if (v === 0) continue;
      let j = this.hashOf(v & I_SLOT) & mask;
      while (idx[j] !== 0) j = (j + 1) & mask;
      idx[j] = v;
    }
    this.idx = idx; this.mask = mask;
  }

  /** Rewrites one key field of slot s through `write`, keeping the index right if it is live
   * (s = −1: a flow never opened; its writes go nowhere). */
  rekey(s: number, write: () => void): void {
    const live = s >= 0 && this.flows[s] !== null;
    if (live) this.remove(s);
    write();
    if (live) this.insert(s);
  }
}

/** Before its first open a flow reads this empty store (slot −1, never live). */
const NO_STORE = new Store(0);

/**
 * One flow, as the relays, the flow log and the API see it. The daemon's own per-flow object (the
 * TCP relay, the UDP flow) extends it, so a flow costs the table no object of its own: open()
 * binds the object to a free slot (`st`, `slot`) and the table keeps one pointer per slot. Every
 * field below is an accessor over the table's columns at `slot`. Ports are uint16, proto/state/
 * dir uint8, inst/listener/rulePort int32, timeoutMs/exchanges uint32 (saturating), counters and
 * times float64. Writing proto, family, src, dst or a port of a live flow re-indexes it.
 *
 * After close the object keeps its slot, and its fields stay readable until the table reuses the
 * slot (owners read them in expire()); `live` is false from close on, also once the slot holds
 * another flow. A closed flow may be opened again (it gets a slot, maybe another one). `live` is
 * read-only: use ConnTable.open/close/drop.
 */
export class FlowEntry {
  /** @internal The columns of the table that last opened this flow; written by the table only. */
  st: Store = NO_STORE;
  /** The flow's slot in that table (−1 before the first open); written by the table only. */
  slot = -1;

  /** Refresh bytesIn/bytesOut/packets from the relay's own counters. Cheap. Called by the table
   * on live flows (sweep, refresh); owners may call it on themselves. */
  sample(): void { /* counters written by the owner as they happen */ }
  /** The table has dropped this flow (idle expiry, untracked cut, shutdown): it is closed already. */
  expire(_reason: number): void { /* nothing to release */ }
  /** The names of the faults this flow got (SPEC.md §9); views only, never the hot path. */
  faultNames(): string[] { return []; }

  /** The table holds this object in its slot (opened, not closed or dropped since). */
  get live(): boolean { const s = this.slot; return s >= 0 && this.st.flows[s] === this; }
  /** The object the table calls sample()/expire() on: this flow while live, null once closed. */
  get owner(): FlowEntry | null { return this.live ? this : null; }

  get proto(): number { return this.st.key[this.slot * KW + K_META]! & M_PROTO; }
  set proto(v: number) { this.st.rekey(this.slot, () => this.setMeta(M_PROTO, v & 0xff)); }
  get family(): number { return this.st.key[this.slot * KW + K_META]! & M_V6 ? 6 : 4; }
  set family(v: number) {
    // The addresses are re-read as the new family: keep their texts across the switch.
    const src = this.src, dst = this.dst, st = this.st, s = this.slot;
    st.rekey(s, () => {
      this.setMeta(M_V6, v === 6 ? M_V6 : 0);
      st.setAddr(s, 0, src); st.setAddr(s, 1, dst);
    });
  }
  get state(): number { return (this.st.key[this.slot * KW + K_META]! >>> M_STATE_SHIFT) & 0xff; }
  set state(v: number) { this.setMeta(0xff << M_STATE_SHIFT, (v & 0xff) << M_STATE_SHIFT); }
  get dir(): number { return (this.st.key[this.slot * KW + K_META]! >>> M_DIR_SHIFT) & 0xff; }
  set dir(v: number) { this.setMeta(0xff << M_DIR_SHIFT, (v & 0xff) << M_DIR_SHIFT); }
  get tracked(): boolean { return (this.st.key[this.slot * KW + K_META]! & M_TRACKED) !== 0; }
  set tracked(v: boolean) { this.setMeta(M_TRACKED, v ? M_TRACKED : 0); }

  /** Built on demand (a new string per read): slow paths only. */
  get src(): string { return this.st.addrText(this.slot, 0); }
  set src(v: string) { this.st.rekey(this.slot, () => this.st.setAddr(this.slot, 0, v)); }
  get dst(): string { return this.st.addrText(this.slot, 1); }
  set dst(v: string) { this.st.rekey(this.slot, () => this.st.setAddr(this.slot, 1, v)); }
  get srcPort(): number { return this.st.key[this.slot * KW + K_PORTS]! & 0xffff; }
  set srcPort(v: number) { this.st.rekey(this.slot, () => this.setPorts(0xffff0000, v & 0xffff)); }
  get dstPort(): number { return this.st.key[this.slot * KW + K_PORTS]! >>> 16; }
  set dstPort(v: number) { this.st.rekey(this.slot, () => this.setPorts(0xffff, (v & 0xffff) << 16)); }

  /** The source as a uint32, no allocation (meaningful for IPv4 entries; 0 if its text did not parse). */
  get srcV4(): number { return this.st.key[this.slot * KW + K_SRC]!; }
  get dstV4(): number { return this.st.key[this.slot * KW + K_DST]!; }
  /** Copies the source's four words into out[at..at+3] (IPv6 entries; zeros otherwise). */
  srcV6(out: Uint32Array, at = 0): Uint32Array { return this.st.words(this.slot, 0, out, at); }
  dstV6(out: Uint32Array, at = 0): Uint32Array { return this.st.words(this.slot, 1, out, at); }

  get inst(): number { return this.st.aux[this.slot * AW + A_INST]! | 0; }
  set inst(v: number) { this.st.aux[this.slot * AW + A_INST] = v; }
  /** The listener's id (OpenFlow.listener; named so that a relay's `listener` object can extend this). */
  get listenerId(): number { return this.st.aux[this.slot * AW + A_LISTENER]! | 0; }
  set listenerId(v: number) { this.st.aux[this.slot * AW + A_LISTENER] = v; }
  get rulePort(): number { return this.st.aux[this.slot * AW + A_RULE_PORT]! | 0; }
  set rulePort(v: number) { this.st.aux[this.slot * AW + A_RULE_PORT] = v; }
  /** Idle timeout in ms (≤ 2^32 − 1, 49.7 days; AWS allows 5 days). */
  get timeoutMs(): number { return this.st.aux[this.slot * AW + A_TIMEOUT]!; }
  set timeoutMs(v: number) { this.st.aux[this.slot * AW + A_TIMEOUT] = u32(v); }
  /** UDP request-response turns (udp.ts only asks whether it is ≥ 1). */
  get exchanges(): number { return this.st.aux[this.slot * AW + A_EXCHANGES]!; }
  set exchanges(v: number) { this.st.aux[this.slot * AW + A_EXCHANGES] = u32(v); }
  /** The counters' sum at the last sample, mod 2^32: only compared for change (see refresh). */
  get lastActivity(): number { return this.st.aux[this.slot * AW + A_LAST_ACTIVITY]!; }
  set lastActivity(v: number) { this.st.aux[this.slot * AW + A_LAST_ACTIVITY] = v >>> 0; }

  get bytesIn(): number { return this.st.num[this.slot * NW + N_BYTES_IN]!; }
  set bytesIn(v: number) { this.st.num[this.slot * NW + N_BYTES_IN] = v; }
  get bytesOut(): number { return this.st.num[this.slot * NW + N_BYTES_OUT]!; }
  set bytesOut(v: number) { this.st.num[this.slot * NW + N_BYTES_OUT] = v; }
  get packetsIn(): number { return this.st.num[this.slot * NW + N_PACKETS_IN]!; }
  set packetsIn(v: number) { this.st.num[this.slot * NW + N_PACKETS_IN] = v; }
  get packetsOut(): number { return this.st.num[this.slot * NW + N_PACKETS_OUT]!; }
  set packetsOut(v: number) { this.st.num[this.slot * NW + N_PACKETS_OUT] = v; }
  get createdMs(): number { return this.st.num[this.slot * NW + N_CREATED]!; }
  set createdMs(v: number) { this.st.num[this.slot * NW + N_CREATED] = v; }
  get lastSeenMs(): number { return this.st.num[this.slot * NW + N_LAST_SEEN]!; }
  set lastSeenMs(v: number) { this.st.num[this.slot * NW + N_LAST_SEEN] = v; }

  // What the flow log has already counted (per interval records): columns allocated on first write.
  get reportedBytesIn(): number { const r = this.st.rep; return r === null ? 0 : r[this.slot * RW + R_BYTES_IN]!; }
  set reportedBytesIn(v: number) { this.st.repCols()[this.slot * RW + R_BYTES_IN] = v; }
  get reportedBytesOut(): number { const r = this.st.rep; return r === null ? 0 : r[this.slot * RW + R_BYTES_OUT]!; }
  set reportedBytesOut(v: number) { this.st.repCols()[this.slot * RW + R_BYTES_OUT] = v; }
  get reportedPacketsIn(): number { const r = this.st.rep; return r === null ? 0 : r[this.slot * RW + R_PACKETS_IN]!; }
  set reportedPacketsIn(v: number) { this.st.repCols()[this.slot * RW + R_PACKETS_IN] = v; }
  get reportedPacketsOut(): number { const r = this.st.rep; return r === null ? 0 : r[this.slot * RW + R_PACKETS_OUT]!; }
  set reportedPacketsOut(v: number) { this.st.repCols()[this.slot * RW + R_PACKETS_OUT] = v; }


  /** A plain snapshot of every field (debugging, tests). */
  toJSON(): Record<string, unknown> {
    if (this.slot < 0) return { slot: -1, live: false };
    return {
      slot: this.slot, live: this.live, proto: this.proto, family: this.family, inst: this.inst, dir: this.dir,
      listener: this.listenerId, tracked: this.tracked, state: this.state, src: this.src, srcPort: this.srcPort,
      dst: this.dst, dstPort: this.dstPort, rulePort: this.rulePort, bytesIn: this.bytesIn, bytesOut: this.bytesOut,
      packetsIn: this.packetsIn, packetsOut: this.packetsOut, exchanges: this.exchanges,
      reportedBytesIn: this.reportedBytesIn, reportedBytesOut: this.reportedBytesOut,
      reportedPacketsIn: this.reportedPacketsIn, reportedPacketsOut: this.reportedPacketsOut,
      createdMs: this.createdMs, lastSeenMs: this.lastSeenMs, lastActivity: this.lastActivity, timeoutMs: this.timeoutMs,
    };
  }
  [inspect.custom](): string { return `${this.constructor.name} ${inspect(this.toJSON())}`; }

  private setMeta(mask: number, bits: number): void {
    const k = this.slot * KW + K_META, key = this.st.key;
    key[k] = (key[k]! & ~mask) | bits;
  }
  private setPorts(keep: number, bits: number): void {
    const k = this.slot * KW + K_PORTS, key = this.st.key;
    key[k] = (key[k]! & keep) | bits;
  }
}

export class ConnTable {
  readonly max: number;
  count = 0;
  overflows = 0;            // flows refused because the table was full (metric)
  expiredIdle = 0;
  private readonly st: Store;
  private free = new Int32Array(0);
  private freeTop = 0;
  private cursor = 0;
  /** Called when the table becomes full and when it has room again (listeners swap filters). */
  onFullChange: ((full: boolean) => void) | null = null;
  /**
   * Near full: count ≥ nearFullAt (max less a headroom of 256, twice the relay's event batch;
   * a table of ≤ 256 entries is always near full). Listeners whose flows JS books in batches (the
   * native relay's auto-connect) stop batching near full, so that the flow that fills the table is
   * seen at once and the next ones are dropped by the filter, not accepted and reset. Called on
   * the way up at nearFullAt and on the way down at nearFullAt − 1 − hysteresis (half the
   * headroom), so a count wavering at the edge does not toggle it per flow.
   */
  onNearFullChange: ((nearFull: boolean) => void) | null = null;
  readonly nearFullAt: number;
  private readonly nearFullOffAt: number;
  private nearFullNow = false;

  constructor(max: number, private readonly clock: Clock) {
    if (!(max >= 1 && max <= MAX_SLOTS)) throw new RangeError(`conntrack max must be 1 to ${MAX_SLOTS} (the index holds 24-bit slot numbers), got ${max}`);
    this.max = max;
    const headroom = Math.min(256, max);
    this.nearFullAt = max - headroom;
    this.nearFullOffAt = this.nearFullAt - 1 - Math.min(headroom >> 1, this.nearFullAt >> 1);
    this.nearFullNow = this.nearFullAt === 0;
    this.st = new Store(max);
  }

  get full(): boolean { return this.count >= this.max; }
  get nearFull(): boolean { return this.nearFullNow; }

  /**
   * Tracks `flow` (not live: new, or closed) as the flow `f` in a free slot and returns it, or
   * null when the table is full (the caller drops the flow, as the kernel does).
   */
  open<T extends FlowEntry>(f: OpenFlow, flow: T): T | null {
    if (flow.live) throw new Error(`conntrack: open of a flow that is already open (slot ${flow.slot})`);
    if (this.count >= this.max) { this.overflows++; return null; }
    const st = this.st;
    const s = this.freeTop > 0 ? this.free[--this.freeTop]! : st.append();
    const now = this.clock.nowMs();
    const k = s * KW, key = st.key;
    key[k + K_META] = (f.proto & M_PROTO) | ((f.state & 0xff) << M_STATE_SHIFT) | ((f.dir & 0xff) << M_DIR_SHIFT) |
      (f.tracked ? M_TRACKED : 0) | (f.family === 6 ? M_V6 : 0);
    key[k + K_PORTS] = (f.srcPort & 0xffff) | ((f.dstPort & 0xffff) << 16);
    st.setAddr(s, 0, f.src);
    st.setAddr(s, 1, f.dst);
    const a = s * AW, aux = st.aux;
    aux[a + A_INST] = f.inst; aux[a + A_LISTENER] = f.listener; aux[a + A_RULE_PORT] = f.rulePort;
    aux[a + A_TIMEOUT] = u32(f.timeoutMs); aux[a + A_EXCHANGES] = 0; aux[a + A_LAST_ACTIVITY] = 0;
    const n = s * NW, num = st.num;
    num[n + N_BYTES_IN] = 0; num[n + N_BYTES_OUT] = 0; num[n + N_PACKETS_IN] = 0; num[n + N_PACKETS_OUT] = 0;
    num[n + N_CREATED] = now; num[n + N_LAST_SEEN] = now;
    const rep = st.rep;
    if (rep !== null) rep.fill(0, s * RW, s * RW + RW);
    flow.st = st;
    flow.slot = s;
    st.flows[s] = flow;
    st.insert(s);
    this.count++;
    if (this.count >= this.nearFullAt && !this.nearFullNow) { this.nearFullNow = true; this.onNearFullChange?.(true); }
    if (this.count === this.max) this.onFullChange?.(true);
    return flow;
  }

  /** This table holds `e` (live here). */
  private holds(e: FlowEntry): boolean { return e.st === this.st && this.st.flows[e.slot] === e; }

  /** The flow ended by itself (FIN/RST, socket closed). Idempotent. */
  close(e: FlowEntry): void {
    if (!this.holds(e)) return;
    const st = this.st, s = e.slot;
    st.flows[s] = null;
    st.remove(s);
    this.count--;
    if (this.freeTop === this.free.length) {
      const grown = new Int32Array(Math.max(INITIAL_SLOTS, st.alloc));
      grown.set(this.free); this.free = grown;
    }
    this.free[this.freeTop++] = s;
    if (this.count === this.max - 1) this.onFullChange?.(false);
    if (this.count <= this.nearFullOffAt && this.nearFullNow) { this.nearFullNow = false; this.onNearFullChange?.(false); }
  }

  /**
   * The live IPv4 flow with this tuple, seen from either side: (src:srcPort → dst:dstPort) finds
   * the entry opened with that tuple and also the one opened with the swapped (reply) tuple.
   * Addresses are uint32 (`parseIpv4`), ports 0-65535. Hot path: no allocation.
   */
  find4(proto: number, src: number, srcPort: number, dst: number, dstPort: number): FlowEntry | null {
    const st = this.st, key = st.key, idx = st.idx, mask = st.mask;
    src >>>= 0; dst >>>= 0;
    const want = proto & M_PROTO;
    const h = join(want, end4(src, srcPort), end4(dst, dstPort)), tag = tagOf(h);
    const fwd = (srcPort | (dstPort << 16)) >>> 0, rev = (dstPort | (srcPort << 16)) >>> 0;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const v = idx[i]!;
      if (v === 0) return null;
      if ((v & I_TAG) !== tag) continue;          // another flow's: its key row is not read
      const b = (v & I_SLOT) * KW;
      if ((key[b + K_META]! & M_MATCH) !== want) continue;
      const p = key[b + K_PORTS]!, a = key[b + K_SRC]!, d = key[b + K_DST]!;
      if ((p === fwd && a === src && d === dst) || (p === rev && a === dst && d === src)) return st.flows[v & I_SLOT]!;
    }
  }

  /**
   * IPv6 twin of find4: `src` and `dst` are four uint32 words each, most significant first
   * (`parseIpv6Words`), read at `srcAt`/`dstAt` so one scratch array can hold both.
   */
  find6(proto: number, src: ArrayLike<number>, srcPort: number, dst: ArrayLike<number>, dstPort: number, srcAt = 0, dstAt = 0): FlowEntry | null {
    const st = this.st, a6 = st.src6, d6 = st.dst6;
    if (a6 === null || d6 === null) return null;
    const key = st.key, idx = st.idx, mask = st.mask;
    const s0 = src[srcAt]! >>> 0, s1 = src[srcAt + 1]! >>> 0, s2 = src[srcAt + 2]! >>> 0, s3 = src[srcAt + 3]! >>> 0;
    const d0 = dst[dstAt]! >>> 0, d1 = dst[dstAt + 1]! >>> 0, d2 = dst[dstAt + 2]! >>> 0, d3 = dst[dstAt + 3]! >>> 0;
    const h = join(proto & M_PROTO, end6(s0, s1, s2, s3, srcPort), end6(d0, d1, d2, d3, dstPort)), tag = tagOf(h);
    const fwd = (srcPort | (dstPort << 16)) >>> 0, rev = (dstPort | (srcPort << 16)) >>> 0;
    const want = (proto & M_PROTO) | M_V6;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const v = idx[i]!;
      if (v === 0) return null;
      if ((v & I_TAG) !== tag) continue;
      const s = v & I_SLOT, b = s * KW, w = s * 4;
      if ((key[b + K_META]! & M_MATCH) !== want) continue;
      const p = key[b + K_PORTS]!;
      if (p === fwd && key[b + K_SRC] === s3 && key[b + K_DST] === d3 &&
        a6[w] === s0 && a6[w + 1] === s1 && a6[w + 2] === s2 && d6[w] === d0 && d6[w + 1] === d1 && d6[w + 2] === d2) return st.flows[s]!;
      if (p === rev && key[b + K_SRC] === d3 && key[b + K_DST] === s3 &&
        a6[w] === d0 && a6[w + 1] === d1 && a6[w + 2] === d2 && d6[w] === s0 && d6[w + 1] === s1 && d6[w + 2] === s2) return st.flows[s]!;
    }
  }

  /**
   * A FIN was seen on a TCP flow (established, or booked SYN_SENT by a relay that reports its
   * connect late): FIN_WAIT, idle timeout cut to TCP_HALF_CLOSED_TIMEOUT_MS (never raised),
   * counted from now (the FIN is a packet).
   */
  halfClose(e: FlowEntry): void {
    if (!this.holds(e) || (e.state !== ST_ESTABLISHED && e.state !== ST_SYN_SENT)) return;
    const st = this.st, a = e.slot * AW;
    e.state = ST_FIN_WAIT;
    if (st.aux[a + A_TIMEOUT]! > TCP_HALF_CLOSED_TIMEOUT_MS) st.aux[a + A_TIMEOUT] = TCP_HALF_CLOSED_TIMEOUT_MS;
    st.num[e.slot * NW + N_LAST_SEEN] = this.clock.nowMs();
  }

  /** Records activity now (UDP relays call this per datagram; TCP relies on sampling). */
  touch(e: FlowEntry): void { this.st.num[e.slot * NW + N_LAST_SEEN] = this.clock.nowMs(); }

  /**
   * Samples one live entry's counters and updates its idle clock. Activity is a change in the sum
   * of the four counters, kept mod 2^32 (a u32): the counters only grow, so the sum changes
   * whenever a byte or packet moved, and the u32 misses that only if the sum grew by an exact
   * multiple of 2^32 between two samples (the sweeper samples each flow about once a second);
   * then the flow looks idle for one sample, which matters only if that sample also reaches its
   * timeout (≥ 30 s since the last change seen).
   */
  refresh(e: FlowEntry, now = this.clock.nowMs()): void {
    if (!this.holds(e)) return;
    const st = this.st, s = e.slot;
    e.sample();
    const num = st.num, n = s * NW;            // read after sample(): it may have opened flows and grown the columns
    const activity = (num[n + N_BYTES_IN]! + num[n + N_BYTES_OUT]! + num[n + N_PACKETS_IN]! + num[n + N_PACKETS_OUT]!) >>> 0;
    const a = s * AW + A_LAST_ACTIVITY;
    if (activity !== st.aux[a]) { st.aux[a] = activity; num[n + N_LAST_SEEN] = now; }
  }

  /**
   * Scans up to `budget` slots from the cursor, expiring idle flows. Returns how many expired.
   * Called every tick; a full pass over N slots takes N / budget ticks.
   */
  sweep(budget: number): number {
    const st = this.st, n = st.used;
    if (n === 0) return 0;
    const now = this.clock.nowMs();
    let expired = 0;
    for (let i = 0; i < budget && i < n; i++) {
      if (this.cursor >= n) this.cursor = 0;
      const s = this.cursor++;
      const e = st.flows[s]!;
      if (e === null) continue;
      this.refresh(e, now);
      if (st.flows[s] !== e) continue;
      // re-read the columns: an owner's sample() may have opened flows and grown them
      if (now - st.num[s * NW + N_LAST_SEEN]! >= st.aux[s * AW + A_TIMEOUT]!) {
        this.close(e);
        this.expiredIdle++;
        expired++;
        e.expire(EXPIRE_IDLE);
      }
    }
    return expired;
  }

  /** Drops one flow on behalf of the daemon (untracked cut, shutdown) and tells its owner. */
  drop(e: FlowEntry, reason: number): void {
    if (!this.holds(e)) return;
    this.close(e);
    e.expire(reason);
  }

  /** Live entries (slow path: listings, policy swaps). */
  *live(): IterableIterator<FlowEntry> {
    const st = this.st;
    for (let s = 0; s < st.used; s++) { const e = st.flows[s]!; if (e !== null) yield e; }
  }

  /** Slots handed out so far (live or free), ≤ max; the sweeper's full pass is this long. */
  get capacity(): number { return this.st.used; }

  /**
   * Bytes the table holds for the slots handed out so far (benchmarks, diagnostics): the columns
   * of `capacity` slots (the rest of the reservation is not resident until used), the index and
   * the slot pointers. Not counted: the `st` and `slot` fields on each flow object.
   */
  bytes(): number {
    const st = this.st;
    const perSlot = SLOT_BYTES + (st.src6 ? 32 : 0) + (st.rep ? RW * 8 : 0);
    return st.used * perSlot + st.idx.byteLength + st.alloc * 8 + this.free.byteLength;
  }

  /**
   * The index's shape (benchmarks, diagnostics; a pass over the index): buckets, live flows, and
   * the probe length of a successful lookup (buckets read, 1 = found at home), mean and max over
   * the live flows. Both directions of a flow hash alike, so they probe alike.
   */
  probeStats(): { buckets: number; flows: number; mean: number; max: number } {
    const st = this.st, idx = st.idx, mask = st.mask;
    let sum = 0, max = 0, n = 0;
    for (let i = 0; i < idx.length; i++) {
      const v = idx[i]!;
      if (v === 0) continue;
      const len = ((i - (st.hashOf(v & I_SLOT) & mask)) & mask) + 1;
      sum += len; n++;
      if (len > max) max = len;
    }
    return { buckets: idx.length, flows: n, mean: n === 0 ? 0 : sum / n, max };
  }
}
