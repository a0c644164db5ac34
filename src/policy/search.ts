// The two searches the hot matchers share (security groups in compile.ts, network ACLs in
// nacl.ts): the port segment through a bucket index, and the order of IPv6 addresses kept as four
// uint32 words. One copy each, so both tables stay laid out alike.
//
//   port segment i covers [starts[i], starts[i+1]); index[b] = the segment holding port b << BUCKET_SHIFT
//   (BUCKETS + 1 entries), so a lookup binary-searches only the segments of one 64-port bucket.

export const BUCKET_SHIFT = 6;                 // 1024 buckets of 64 ports

/** The segment holding `port` through the bucket index: the answer lies between the segments
 * holding the first port of this bucket and of the next, so the search spans a handful of entries
 * however many rules there are. 1000 rules vs 10: 2.80× slower with a plain search over all
 * segments, 1.25× with the index (scripts/bench/matcher.ts, results in scripts/bench/README.md). */
export function portSegment(t: { readonly starts: Uint32Array; readonly index: Uint16Array }, port: number): number {
  const starts = t.starts;
  const b = port >>> BUCKET_SHIFT;
  let l = t.index[b]!, h = t.index[b + 1]!;
  while (l < h) {
    const m = (l + h + 1) >>> 1;
    if (starts[m]! <= port) l = m; else h = m - 1;
  }
  return l;
}

/** Sign of (a[o..o+3]) − (w0..w3), all uint32. */
export function cmp6(a: Uint32Array, o: number, w0: number, w1: number, w2: number, w3: number): number {
  let x = a[o]!, y = w0;
  if (x === y) { x = a[o + 1]!; y = w1; } else return x < y ? -1 : 1;
  if (x === y) { x = a[o + 2]!; y = w2; } else return x < y ? -1 : 1;
  if (x === y) { x = a[o + 3]!; y = w3; } else return x < y ? -1 : 1;
  return x === y ? 0 : x < y ? -1 : 1;
}
