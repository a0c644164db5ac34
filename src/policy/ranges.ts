// Inclusive address-range sets, the currency of the compiler: IPv4 as flat [lo, hi, ...] number
// pairs (uint32 values), IPv6 as flat bigint pairs. Compile-time and slow-path code only.
//
// Invariant of every "merged" list: sorted by lo, disjoint, and never adjacent (hi + 1 < next lo),
// so two merged lists are equal as sets iff they are equal element by element.

/** Sort and merge overlapping or adjacent pairs. Input is not modified. */
export function mergeRanges4(pairs: readonly number[]): number[] {
  const n = pairs.length >>> 1;
  if (n === 0) return [];
  const order: number[] = [];
  for (let i = 0; i < n; i++) order.push(i);
  order.sort((a, b) => pairs[2 * a]! - pairs[2 * b]! || pairs[2 * a + 1]! - pairs[2 * b + 1]!);
  const out: number[] = [];
  let lo = pairs[2 * order[0]!]!, hi = pairs[2 * order[0]! + 1]!;
  for (let k = 1; k < n; k++) {
    const a = pairs[2 * order[k]!]!, b = pairs[2 * order[k]! + 1]!;
    if (a <= hi + 1) { if (b > hi) hi = b; continue; }
    out.push(lo, hi);
    lo = a; hi = b;
  }
  out.push(lo, hi);
  return out;
}

/** Same for 128-bit bigint pairs. */
export function mergeRanges6(pairs: readonly bigint[]): bigint[] {
  const n = pairs.length >>> 1;
  if (n === 0) return [];
  const order: number[] = [];
  for (let i = 0; i < n; i++) order.push(i);
  order.sort((a, b) => {
    const x = pairs[2 * a]!, y = pairs[2 * b]!;
    return x < y ? -1 : x > y ? 1 : 0;
  });
  const out: bigint[] = [];
  let lo = pairs[2 * order[0]!]!, hi = pairs[2 * order[0]! + 1]!;
  for (let k = 1; k < n; k++) {
    const a = pairs[2 * order[k]!]!, b = pairs[2 * order[k]! + 1]!;
    if (a <= hi + 1n) { if (b > hi) hi = b; continue; }
    out.push(lo, hi);
    lo = a; hi = b;
  }
  out.push(lo, hi);
  return out;
}

/** Pairs of a merged list clipped to [lo, hi], each shifted by `delta`, appended to `out`. */
export function clipShift4(merged: ArrayLike<number>, lo: number, hi: number, delta: number, out: number[]): void {
  for (let i = 0; i < merged.length; i += 2) {
    const a = Math.max(merged[i]!, lo), b = Math.min(merged[i + 1]!, hi);
    if (a <= b) out.push(a + delta, b + delta);
  }
}

export function clipShift6(merged: readonly bigint[], lo: bigint, hi: bigint, delta: bigint, out: bigint[]): void {
  for (let i = 0; i < merged.length; i += 2) {
    const a = merged[i]! > lo ? merged[i]! : lo, b = merged[i + 1]! < hi ? merged[i + 1]! : hi;
    if (a <= b) out.push(a + delta, b + delta);
  }
}

/** Is x in a merged IPv4 list (binary search)? */
export function rangesContain4(merged: ArrayLike<number>, x: number): boolean {
  x >>>= 0;
  let l = 0, h = (merged.length >>> 1) - 1;
  while (l <= h) {
    const m = (l + h) >>> 1;
    if (merged[2 * m + 1]! < x) l = m + 1;
    else if (merged[2 * m]! > x) h = m - 1;
    else return true;
  }
  return false;
}

export function rangesContain6(merged: readonly bigint[], x: bigint): boolean {
  let l = 0, h = (merged.length >>> 1) - 1;
  while (l <= h) {
    const m = (l + h) >>> 1;
    if (merged[2 * m + 1]! < x) l = m + 1;
    else if (merged[2 * m]! > x) h = m - 1;
    else return true;
  }
  return false;
}
