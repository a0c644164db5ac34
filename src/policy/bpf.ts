// The classic-BPF generator for kernel socket filters (linux-techniques.md §1, filter.rst).
//
// Owns: building, checking, encoding, interpreting and printing the cBPF programs that
// src/native/sock-filter.ts attaches with SO_ATTACH_FILTER. Pure: no I/O, no sockets; the C addon
// only copies the bytes `encodeProgram` returns into setsockopt.
//
// Invariants of every program returned here:
//   - at most BPF_MAXINSNS (or the caller's maxInsns) instructions, last one a `ret`;
//   - every conditional jump offset is 0..255 (u8) and lands inside the program; longer jumps go
//     through a `ja` trampoline (BPF_JA takes a 32-bit k);
//   - `exact: false` only ever means a SUPERSET of the requested source ranges is accepted (nearest
//     neighbours merged to fit), so the caller must re-check in userland; never a subset.
//
// Program shape ('tcp-syn', IPv4; 'udp' starts at `src:`, IPv6 replaces each `jge #K` by a
// word-by-word comparison of the four source words at net+8..net+20):
//
//       ldb [13]                 TCP flags byte (absolute loads start at the transport header)
//       and #0x12                SYN|ACK
//       jeq #0x02, src, +0       SYN without ACK → check the source
//       ret #-1                  anything else (established traffic, FIN, RST) → accept
//  src: ld  [net+12]             IPv4 source, SKF_NET_OFF + 12
//       jge #lo[m], R, +0        binary search over the sorted ranges: split at range m
//       ...left half...          A < lo[m]: ranges 0..m-1 (leaves return inline)
//   R:  ...right half...         A ≥ lo[m]: ranges m..n-1
//  leaf for [lo, hi]:
//       jge #lo, +0, deny        (omitted when the path already proved A ≥ lo)
//       jgt #hi, deny, +0        (omitted when the path already proved A ≤ hi)
//       ret #-1                  or, when network ACLs limit the client's port (the port the
//                                replies go to, SourceRanges.ports4/6) for this range:
//       ldh [0]                  the source port (TCP and UDP both start with it)
//       ...the same search tree over the allowed port ranges, leaves ret #-1 / ret #0...
//  deny: ret #0
//
// When a left half is longer than 255 instructions the assembler rewrites `jge #K, R, +0` into
// `jge #K, +0, +1; ja R` (relaxation, iterated to a fixed point).

import type { SourceRanges } from './types.js';

export interface BpfInsn { code: number; jt: number; jf: number; k: number }
export type FilterKind = 'tcp-syn' | 'udp';

export const BPF_MAXINSNS = 4096;

// Instruction classes and fields, spelled as in linux/bpf_common.h.
export const BPF_LD = 0x00, BPF_LDX = 0x01, BPF_ALU = 0x04, BPF_JMP = 0x05, BPF_RET = 0x06, BPF_MISC = 0x07;
export const BPF_W = 0x00, BPF_H = 0x08, BPF_B = 0x10;
export const BPF_IMM = 0x00, BPF_ABS = 0x20;
export const BPF_ADD = 0x00, BPF_SUB = 0x10, BPF_OR = 0x40, BPF_AND = 0x50, BPF_LSH = 0x60, BPF_RSH = 0x70;
export const BPF_JA = 0x00, BPF_JEQ = 0x10, BPF_JGT = 0x20, BPF_JGE = 0x30, BPF_JSET = 0x40;
export const BPF_K = 0x00, BPF_X = 0x08, BPF_A = 0x10;
/** Negative load base that addresses the network header (linux/filter.h). */
export const SKF_NET_OFF = -0x100000;
const SKF_LL_OFF = -0x200000;
const SKF_AD_OFF = -0x1000;

const RET_ACCEPT = 0xffffffff; // keep the whole packet
const RET_DROP = 0;
const TCP_FLAGS = 13;          // byte offset of the flags in the TCP header
const TH_SYN = 0x02, TH_ACK = 0x10;
const NET_SRC4 = (SKF_NET_OFF + 12) >>> 0;
const NET_SRC6 = (SKF_NET_OFF + 8) >>> 0;
const U32_MAX = 0xffffffff;
const U128_MAX = (1n << 128n) - 1n;

// ---------------------------------------------------------------------------------------------
// A tiny assembler with labels and jump relaxation.

type Target = number | Label; // a number is a relative offset already (only 0 is used: fall through)
class Label { pos = -1 }

interface AsmInsn { code: number; k: number; jt: Target; jf: Target }

class Asm {
  readonly items: AsmInsn[] = [];
  readonly labelsAt: Label[][] = [];

  emit(code: number, k: number, jt: Target = 0, jf: Target = 0): void {
    this.items.push({ code, k: k >>> 0, jt, jf });
  }
  /** Binds `l` to the next instruction emitted. */
  place(l: Label): void {
    const i = this.items.length;
    (this.labelsAt[i] ??= []).push(l);
  }
  get length(): number { return this.items.length; }

  /** Resolves labels; conditional jumps further than 255 get a `ja` trampoline after them. */
  finish(): BpfInsn[] {
    const n = this.items.length;
    const labelIndex = new Map<Label, number>();
    for (let i = 0; i <= n; i++) for (const l of this.labelsAt[i] ?? []) labelIndex.set(l, i);
    const tramp = new Uint8Array(n); // bit 1: jt needs a trampoline, bit 2: jf does
    const addr = new Int32Array(n + 1);
    for (;;) {
      let a = 0;
      for (let i = 0; i < n; i++) { addr[i] = a; a += 1 + (tramp[i] & 1) + ((tramp[i] >> 1) & 1); }
      addr[n] = a;
      let changed = false;
      for (let i = 0; i < n; i++) {
        const it = this.items[i]!;
        if ((it.code & 0x07) !== BPF_JMP || (it.code & 0xf0) === BPF_JA) continue;
        for (const bit of [1, 2]) {
          const t = bit === 1 ? it.jt : it.jf;
          if (typeof t === 'number' || tramp[i]! & bit) continue;
          const dest = addr[labelIndex.get(t)!]!;
          if (dest - (addr[i]! + 1) > 255) { tramp[i]! |= bit; changed = true; }
        }
      }
      if (!changed) break;
    }
    const dest = (t: Target, i: number): number => {
      if (typeof t === 'number') return addr[i + 1]! + t; // relative to the next source item
      const at = labelIndex.get(t);
      if (at === undefined) throw new Error('bpf assembler: label never placed');
      return addr[at]!;
    };
    const out: BpfInsn[] = [];
    for (let i = 0; i < n; i++) {
      const it = this.items[i]!;
      const pc = addr[i]!;
      if ((it.code & 0x07) !== BPF_JMP) { out.push({ code: it.code, jt: 0, jf: 0, k: it.k }); continue; }
      if ((it.code & 0xf0) === BPF_JA) { out.push({ code: it.code, jt: 0, jf: 0, k: (dest(it.jt, i) - pc - 1) >>> 0 }); continue; }
      const tT = dest(it.jt, i), tF = dest(it.jf, i);
      const t = tramp[i]!;
      // Layout: [jcond] [ja jt-target if bit 1] [ja jf-target if bit 2]
      const jtAt = t & 1 ? pc + 1 : tT;
      const jfAt = t & 2 ? pc + 1 + (t & 1) : tF;
      out.push({ code: it.code, jt: jtAt - pc - 1, jf: jfAt - pc - 1, k: it.k });
      if (t & 1) out.push({ code: BPF_JMP | BPF_JA, jt: 0, jf: 0, k: (tT - (pc + 1) - 1) >>> 0 });
      if (t & 2) { const p = pc + 1 + (t & 1); out.push({ code: BPF_JMP | BPF_JA, jt: 0, jf: 0, k: (tF - p - 1) >>> 0 }); }
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Range trees.

interface Family<T> {
  /** Emits "if src >= k goto t else goto f". */
  ge(a: Asm, k: T, t: Label, f: Label): void;
  /** Emitted once before the tree (IPv4 loads the source into A; IPv6 loads per comparison). */
  prologue(a: Asm): void;
  min: T; max: T;
  lt(x: T, y: T): boolean;
  inc(x: T): T; dec(x: T): T;
  gap(hi: T, lo: T): T; // lo - hi, for choosing nearest neighbours
}

/** The source port at transport offset 0, for the NACL port checks at the leaves. */
const PORT: Family<number> = {
  ge(a, k, t, f) { a.emit(BPF_JMP | BPF_JGE | BPF_K, k, t, f); },
  prologue(a) { a.emit(BPF_LD | BPF_H | BPF_ABS, 0); },
  min: 0, max: 0xffff,
  lt: (x, y) => x < y,
  inc: (x) => x + 1, dec: (x) => x - 1,
  gap: (hi, lo) => lo - hi,
};

const V4: Family<number> = {
  ge(a, k, t, f) { a.emit(BPF_JMP | BPF_JGE | BPF_K, k, t, f); },
  prologue(a) { a.emit(BPF_LD | BPF_W | BPF_ABS, NET_SRC4); },
  min: 0, max: U32_MAX,
  lt: (x, y) => x < y,
  inc: (x) => x + 1, dec: (x) => x - 1,
  gap: (hi, lo) => lo - hi,
};

const V6: Family<bigint> = {
  // src >= K, lexicographic over the four big-endian words; trailing zero words of K need no test.
  ge(a, k, t, f) {
    if (k === 0n) { a.emit(BPF_JMP | BPF_JA, 0, t); return; }
    const w = [Number((k >> 96n) & 0xffffffffn), Number((k >> 64n) & 0xffffffffn), Number((k >> 32n) & 0xffffffffn), Number(k & 0xffffffffn)];
    let last = 3;
    while (w[last] === 0) last--;
    for (let i = 0; i <= last; i++) {
      a.emit(BPF_LD | BPF_W | BPF_ABS, NET_SRC6 + 4 * i);
      if (i === last) { a.emit(BPF_JMP | BPF_JGE | BPF_K, w[i]!, t, f); break; }
      // After `jgt #0` fails A is 0, and `jgt #0xffffffff` never holds: one test suffices.
      if (w[i] !== U32_MAX) a.emit(BPF_JMP | BPF_JGT | BPF_K, w[i]!, t, 0);
      if (w[i] !== 0) a.emit(BPF_JMP | BPF_JEQ | BPF_K, w[i]!, 0, f);
    }
  },
  prologue() { /* loads happen inside each comparison */ },
  min: 0n, max: U128_MAX,
  lt: (x, y) => x < y,
  inc: (x) => x + 1n, dec: (x) => x - 1n,
  gap: (hi, lo) => lo - hi,
};

/** Emits the decision for ranges[i..j] (pairs), knowing bLo ≤ src ≤ bHi. `ports[i]`, when given
 * and not null, lists the source ports range i accepts (checked at its leaf). */
function emitTree<T>(a: Asm, fam: Family<T>, r: T[], i: number, j: number, bLo: T, bHi: T, ports?: readonly (readonly number[] | null)[]): void {
  if (i > j) { a.emit(BPF_RET | BPF_K, RET_DROP); return; }
  if (i === j) {
    const lo = r[2 * i]!, hi = r[2 * i + 1]!;
    const deny = new Label(), accept = new Label();
    let denyUsed = false;
    if (fam.lt(bLo, lo)) {
      const next = new Label();
      fam.ge(a, lo, next, deny); denyUsed = true;
      a.place(next);
    }
    if (fam.lt(hi, bHi)) { fam.ge(a, fam.inc(hi), deny, accept); denyUsed = true; }
    a.place(accept);
    const p = ports?.[i];
    if (p) {
      PORT.prologue(a);
      emitTree(a, PORT, [...p], 0, p.length / 2 - 1, PORT.min, PORT.max);
    } else a.emit(BPF_RET | BPF_K, RET_ACCEPT);
    if (denyUsed) { a.place(deny); a.emit(BPF_RET | BPF_K, RET_DROP); }
    return;
  }
  const m = (i + j + 1) >> 1;
  const split = r[2 * m]!;
  const left = new Label(), right = new Label();
  fam.ge(a, split, right, left);
  a.place(left);
  emitTree(a, fam, r, i, m - 1, bLo, fam.dec(split), ports);
  a.place(right);
  emitTree(a, fam, r, m, j, split, bHi, ports);
}

/** Sorted, disjoint ranges with their port lists; overlapping input is joined with the union of
 * its ports (a superset), adjacent ranges only when their ports are the same. */
function normalizeWithPorts<T>(fam: Family<T>, pairs: ArrayLike<T>, ports: readonly (readonly number[] | null)[]): { r: T[]; p: (number[] | null)[] } {
  const idx: [T, T, number[] | null][] = [];
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    const lo = pairs[i]!, hi = pairs[i + 1]!;
    const pp = ports[i / 2] ?? null;
    if (!fam.lt(hi, lo) && (pp === null || pp.length > 0)) idx.push([lo, hi, pp === null ? null : [...pp]]);
  }
  idx.sort((x, y) => (fam.lt(x[0], y[0]) ? -1 : fam.lt(y[0], x[0]) ? 1 : 0));
  const r: T[] = [], p: (number[] | null)[] = [];
  const same = (x: number[] | null, y: number[] | null): boolean => x === null || y === null ? x === y : x.length === y.length && x.every((v, k) => v === y[k]);
  for (const [lo, hi, pp] of idx) {
    const n = r.length;
    const last = n > 0 ? r[n - 1]! : undefined;
    const overlaps = last !== undefined && !fam.lt(last, lo);
    const adjacent = last !== undefined && !overlaps && last !== fam.max && !fam.lt(fam.inc(last), lo);
    if (overlaps || (adjacent && same(p[p.length - 1]!, pp))) {
      if (fam.lt(last!, hi)) r[n - 1] = hi;
      const q = p[p.length - 1]!;
      if (overlaps && !same(q, pp)) p[p.length - 1] = q === null || pp === null ? null : unionPorts(q, pp);
    } else { r.push(lo, hi); p.push(pp); }
  }
  return { r, p };
}

/** Sorted, merged inclusive port pairs [lo, hi, …] of both lists. */
export function unionPorts(a: readonly number[], b: readonly number[]): number[] {
  const all: [number, number][] = [];
  for (let i = 0; i < a.length; i += 2) all.push([a[i]!, a[i + 1]!]);
  for (let i = 0; i < b.length; i += 2) all.push([b[i]!, b[i + 1]!]);
  all.sort((x, y) => x[0] - y[0]);
  const out: number[] = [];
  for (const [lo, hi] of all) {
    const n = out.length;
    if (n > 0 && lo <= out[n - 1]! + 1) { if (hi > out[n - 1]!) out[n - 1] = hi; } else out.push(lo, hi);
  }
  return out;
}

/** Sorts and merges overlapping or adjacent pairs (defensive: SourceRanges should already be). */
function normalize<T>(fam: Family<T>, pairs: ArrayLike<T>): T[] {
  const idx: [T, T][] = [];
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    const lo = pairs[i]!, hi = pairs[i + 1]!;
    if (!fam.lt(hi, lo)) idx.push([lo, hi]);
  }
  idx.sort((x, y) => (fam.lt(x[0], y[0]) ? -1 : fam.lt(y[0], x[0]) ? 1 : 0));
  const out: T[] = [];
  for (const [lo, hi] of idx) {
    const n = out.length;
    if (n > 0 && (out[n - 1] === fam.max || !fam.lt(fam.inc(out[n - 1]!), lo))) {
      if (fam.lt(out[n - 1]!, hi)) out[n - 1] = hi;
    } else out.push(lo, hi);
  }
  return out;
}

/** Merges the `count` smallest gaps between neighbours (a superset of the input). */
function mergeNearest<T>(fam: Family<T>, r: T[], count: number): T[] {
  const n = r.length / 2;
  const gaps: number[] = [];
  for (let g = 0; g + 1 < n; g++) gaps.push(g);
  gaps.sort((x, y) => {
    const a = fam.gap(r[2 * x + 1]!, r[2 * x + 2]!), b = fam.gap(r[2 * y + 1]!, r[2 * y + 2]!);
    return fam.lt(a, b) ? -1 : fam.lt(b, a) ? 1 : x - y;
  });
  const close = new Uint8Array(n);
  for (let g = 0; g < count && g < gaps.length; g++) close[gaps[g]!] = 1;
  const out: T[] = [];
  for (let i = 0; i < n; i++) {
    if (i > 0 && close[i - 1]) out[out.length - 1] = r[2 * i + 1]!;
    else out.push(r[2 * i]!, r[2 * i + 1]!);
  }
  return out;
}

function assemble<T>(kind: FilterKind, fam: Family<T>, r: T[], ports?: readonly (readonly number[] | null)[]): BpfInsn[] {
  const a = new Asm();
  if (kind === 'tcp-syn') {
    const src = new Label();
    a.emit(BPF_LD | BPF_B | BPF_ABS, TCP_FLAGS);
    a.emit(BPF_ALU | BPF_AND | BPF_K, TH_SYN | TH_ACK);
    a.emit(BPF_JMP | BPF_JEQ | BPF_K, TH_SYN, src, 0);
    a.emit(BPF_RET | BPF_K, RET_ACCEPT);
    a.place(src);
  }
  fam.prologue(a);
  emitTree(a, fam, r, 0, r.length / 2 - 1, fam.min, fam.max, ports);
  return a.finish();
}

function compileRanges<T>(kind: FilterKind, fam: Family<T>, pairs: ArrayLike<T>, maxInsns: number,
  ports?: readonly (readonly number[] | null)[]): { insns: BpfInsn[]; exact: boolean } {
  if (ports && ports.some((p) => p !== null)) {
    const n = normalizeWithPorts(fam, pairs, ports);
    if (n.r.length === 0) return { insns: compileDropAllNew(kind), exact: true };
    const insns = assemble(kind, fam, n.r, n.p);
    if (insns.length <= maxInsns) return { insns, exact: true };
    // Too long with the port checks: the ranges alone (a superset), coarsened as usual below.
    const loose = compileRanges(kind, fam, n.r, maxInsns);
    return { insns: loose.insns, exact: false };
  }
  let r = normalize(fam, pairs);
  if (r.length === 2 && r[0] === fam.min && r[1] === fam.max) return { insns: compileAcceptAll(), exact: true };
  if (r.length === 0) return { insns: compileDropAllNew(kind), exact: true };
  let insns = assemble(kind, fam, r);
  let exact = true;
  // Too long: merge nearest neighbours (superset) in proportion to the overshoot, until it fits.
  for (let round = 0; insns.length > maxInsns; round++) {
    exact = false;
    const n = r.length / 2;
    if (n <= 1 || round > 64) {
      // One range left and still too long cannot happen for sane maxInsns; fall back to accept-all
      // for the checked packets (superset) rather than exceed the kernel limit.
      return { insns: compileAcceptAll(), exact: false };
    }
    const want = Math.max(1, Math.min(n - 1, Math.floor((n * maxInsns) / insns.length * 0.97)));
    r = mergeNearest(fam, r, n - want);
    if (r.length === 2 && r[0] === fam.min && r[1] === fam.max) return { insns: compileAcceptAll(), exact: false };
    insns = assemble(kind, fam, r);
  }
  return { insns, exact };
}

/**
 * 'tcp-syn': a SYN without ACK is accepted iff its source is in `ranges` (the family's half)
 * and, when `ranges.ports4/6` lists ports for that range, its source port is one of them;
 * every other packet is accepted. 'udp': a datagram is accepted iff its source (and port) is.
 * Family 6 assumes a V6ONLY socket (the network header is always IPv6).
 */
export function compileSourceFilter(kind: FilterKind, family: 4 | 6, ranges: SourceRanges, maxInsns = BPF_MAXINSNS): { insns: BpfInsn[]; exact: boolean } {
  if (!(maxInsns >= 16 && maxInsns <= BPF_MAXINSNS)) {
    throw new RangeError(`compileSourceFilter maxInsns ${maxInsns}: must be 16..${BPF_MAXINSNS}`);
  }
  return family === 4 ? compileRanges(kind, V4, ranges.v4, maxInsns, ranges.ports4) : compileRanges(kind, V6, ranges.v6, maxInsns, ranges.ports6);
}

/** 'tcp-syn': drop every SYN without ACK, accept everything else. 'udp': drop every datagram. */
export function compileDropAllNew(kind: FilterKind): BpfInsn[] {
  if (kind === 'udp') return [{ code: BPF_RET | BPF_K, jt: 0, jf: 0, k: RET_DROP }];
  return [
    { code: BPF_LD | BPF_B | BPF_ABS, jt: 0, jf: 0, k: TCP_FLAGS },
    { code: BPF_ALU | BPF_AND | BPF_K, jt: 0, jf: 0, k: TH_SYN | TH_ACK },
    { code: BPF_JMP | BPF_JEQ | BPF_K, jt: 0, jf: 1, k: TH_SYN },
    { code: BPF_RET | BPF_K, jt: 0, jf: 0, k: RET_DROP },
    { code: BPF_RET | BPF_K, jt: 0, jf: 0, k: RET_ACCEPT },
  ];
}

export function compileAcceptAll(): BpfInsn[] {
  return [{ code: BPF_RET | BPF_K, jt: 0, jf: 0, k: RET_ACCEPT }];
}

/**
 * Structural check the kernel would also make (sk_chk_filter): length 1..BPF_MAXINSNS, only
 * opcodes we emit, jumps inside the program, last instruction a return. Returns null when valid,
 * otherwise what is wrong and where.
 */
export function checkProgram(insns: BpfInsn[]): string | null {
  const n = insns.length;
  if (n < 1 || n > BPF_MAXINSNS) return `program length ${n}: must be 1..${BPF_MAXINSNS}`;
  for (let pc = 0; pc < n; pc++) {
    const { code, jt, jf, k } = insns[pc]!;
    if (!Number.isInteger(jt) || jt < 0 || jt > 255 || !Number.isInteger(jf) || jf < 0 || jf > 255) return `insn ${pc}: jt ${jt} / jf ${jf} must be 0..255`;
    if (!Number.isInteger(k) || k < 0 || k > U32_MAX) return `insn ${pc}: k ${k} must be a uint32`;
    if ((code & 0x07) === BPF_JMP) {
      const to = (code & 0xf0) === BPF_JA ? [pc + 1 + k] : [pc + 1 + jt, pc + 1 + jf];
      for (const t of to) if (t >= n) return `insn ${pc}: jump to ${t} is past the end (${n} insns)`;
    }
  }
  if ((insns[n - 1]!.code & 0x07) !== BPF_RET) return `insn ${n - 1}: last instruction must be a ret`;
  return null;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** struct sock_filter[] in host byte order: u16 code, u8 jt, u8 jf, u32 k (8 bytes each). */
export function encodeProgram(insns: BpfInsn[]): Buffer {
  const bad = checkProgram(insns);
  if (bad) throw new RangeError(`encodeProgram: ${bad}`);
  const b = Buffer.alloc(insns.length * 8);
  for (let i = 0; i < insns.length; i++) {
    const { code, jt, jf, k } = insns[i]!;
    const o = i * 8;
    if (LITTLE_ENDIAN) { b.writeUInt16LE(code, o); b.writeUInt32LE(k >>> 0, o + 4); } else { b.writeUInt16BE(code, o); b.writeUInt32BE(k >>> 0, o + 4); }
    b[o + 2] = jt;
    b[o + 3] = jf;
  }
  return b;
}

/** Reads `size` bytes at `k` as the kernel would for a socket filter; -1 when out of bounds. */
function load(pkt: { net: Buffer; transport: Buffer }, k: number, size: number): number {
  let buf: Buffer, off: number;
  const sk = k | 0; // k is a uint32; negative bases are sign-extended by the kernel
  if (sk >= 0) { buf = pkt.transport; off = sk; } else if (sk >= SKF_NET_OFF && sk < SKF_AD_OFF) { buf = pkt.net; off = sk - SKF_NET_OFF; } else return -1;
  if (sk < 0 && sk < SKF_LL_OFF) return -1;
  if (off + size > buf.length) return -1;
  return size === 4 ? buf.readUInt32BE(off) : size === 2 ? buf.readUInt16BE(off) : buf[off]!;
}

/**
 * Interpreter of the subset we emit (ld/ldh/ldb abs incl. SKF_NET_OFF, ld imm, alu k, jumps k,
 * ret k/a). An out-of-bounds load returns 0 (drop), as in the kernel. Returns the ret value.
 */
export function runFilter(insns: BpfInsn[], pkt: { net: Buffer; transport: Buffer }): number {
  let A = 0, X = 0;
  for (let pc = 0, steps = 0; pc < insns.length && steps <= BPF_MAXINSNS; pc++, steps++) {
    const { code, jt, jf, k } = insns[pc]!;
    switch (code & 0x07) {
      case BPF_LD: {
        if ((code & 0xe0) === BPF_IMM) { A = k >>> 0; break; }
        if ((code & 0xe0) !== BPF_ABS) throw new RangeError(`runFilter insn ${pc}: unsupported load mode 0x${code.toString(16)}`);
        const size = (code & 0x18) === BPF_W ? 4 : (code & 0x18) === BPF_H ? 2 : 1;
        const v = load(pkt, k, size);
        if (v < 0) return 0;
        A = v >>> 0;
        break;
      }
      case BPF_LDX: X = k >>> 0; break;
      case BPF_ALU: {
        const src = (code & 0x08) === BPF_X ? X : k >>> 0;
        switch (code & 0xf0) {
          case BPF_ADD: A = (A + src) >>> 0; break;
          case BPF_SUB: A = (A - src) >>> 0; break;
          case BPF_AND: A = (A & src) >>> 0; break;
          case BPF_OR: A = (A | src) >>> 0; break;
          case BPF_LSH: A = (A << src) >>> 0; break;
          case BPF_RSH: A = A >>> src; break;
          default: throw new RangeError(`runFilter insn ${pc}: unsupported alu op 0x${code.toString(16)}`);
        }
        break;
      }
      case BPF_JMP: {
        const op = code & 0xf0;
        if (op === BPF_JA) { pc += k; break; }
        const src = (code & 0x08) === BPF_X ? X : k >>> 0;
        const c = op === BPF_JEQ ? A === src : op === BPF_JGT ? A > src : op === BPF_JGE ? A >= src : op === BPF_JSET ? (A & src) !== 0 : null;
        if (c === null) throw new RangeError(`runFilter insn ${pc}: unsupported jump 0x${code.toString(16)}`);
        pc += c ? jt : jf;
        break;
      }
      case BPF_RET: return (code & 0x18) === BPF_A ? A : k >>> 0;
      case BPF_MISC: if ((code & 0xf8) === 0) X = A; else A = X; break;
      default: throw new RangeError(`runFilter insn ${pc}: unsupported class 0x${code.toString(16)}`);
    }
  }
  return 0; // fell off the end: the kernel rejects such programs; treat as drop
}

function hex(k: number): string { return '0x' + (k >>> 0).toString(16); }
function mem(k: number): string {
  const sk = k | 0;
  return sk < 0 && sk >= SKF_NET_OFF && sk < SKF_AD_OFF ? `[net+${sk - SKF_NET_OFF}]` : `[${sk}]`;
}

/** One line per instruction, absolute jump targets: `  3: jge #0x7f000002 jt 5 jf 4`. */
export function disassemble(insns: BpfInsn[]): string {
  const w = String(Math.max(0, insns.length - 1)).length;
  const lines: string[] = [];
  for (let pc = 0; pc < insns.length; pc++) {
    const { code, jt, jf, k } = insns[pc]!;
    let s: string;
    switch (code & 0x07) {
      case BPF_LD: {
        const op = (code & 0x18) === BPF_W ? 'ld' : (code & 0x18) === BPF_H ? 'ldh' : 'ldb';
        s = (code & 0xe0) === BPF_IMM ? `${op} #${hex(k)}` : `${op} ${mem(k)}`;
        break;
      }
      case BPF_ALU: {
        const names: Record<number, string> = { [BPF_ADD]: 'add', [BPF_SUB]: 'sub', [BPF_AND]: 'and', [BPF_OR]: 'or', [BPF_LSH]: 'lsh', [BPF_RSH]: 'rsh' };
        s = `${names[code & 0xf0] ?? `alu?${hex(code)}`} #${hex(k)}`;
        break;
      }
      case BPF_JMP: {
        const op = code & 0xf0;
        if (op === BPF_JA) { s = `ja ${pc + 1 + k}`; break; }
        const names: Record<number, string> = { [BPF_JEQ]: 'jeq', [BPF_JGT]: 'jgt', [BPF_JGE]: 'jge', [BPF_JSET]: 'jset' };
        s = `${names[op] ?? `j?${hex(code)}`} #${hex(k)} jt ${pc + 1 + jt} jf ${pc + 1 + jf}`;
        break;
      }
      case BPF_RET: s = (code & 0x18) === BPF_A ? 'ret a' : `ret #${k === RET_ACCEPT ? '-1' : hex(k)}`; break;
      default: s = `.word ${hex(code)} ${jt} ${jf} ${hex(k)}`;
    }
    lines.push(`${String(pc).padStart(w, ' ')}: ${s}`);
  }
  return lines.join('\n') + '\n';
}
