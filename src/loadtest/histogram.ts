// A small log-linear latency histogram (the HDR idea, without the dependency): values are whole
// microseconds; below 64 µs every value has its own bucket, above it each power of two is split
// into 32 buckets, so a reported percentile is within 1/32 (≈3 %) of the true value. Fixed size
// (864 buckets, up to 2^31 µs ≈ 35 min; larger values land in the last bucket, `max` stays exact).
//
//   index:  0 .. 63        → value = index                         (linear, exact)
//           64 + 32·k + j  → [ (32+j)·2^(k+1), (33+j)·2^(k+1) - 1 ]   k = 0..25, j = 0..31

const SUB_BITS = 5;
const SUB = 1 << SUB_BITS;                    // 32 sub-buckets per power of two
const MAX_VALUE = 0x7fffffff;
export const BUCKETS = (31 - SUB_BITS + 1) * SUB; // 864

/** Bucket index of a value in µs (clamped to 0..2^31-1). */
export function bucketOf(valueUs: number): number {
  const v = valueUs <= 0 ? 0 : valueUs >= MAX_VALUE ? MAX_VALUE : Math.floor(valueUs);
  if (v < 2 * SUB) return v;
  const shift = 31 - Math.clz32(v) - SUB_BITS;
  return (shift + 1) * SUB + ((v >>> shift) - SUB);
}

/** The highest value (µs) that falls into bucket `i`. */
export function bucketHigh(i: number): number {
  if (i < 2 * SUB) return i;
  const shift = Math.floor(i / SUB) - 1;
  const sub = (i % SUB) + SUB;
  return (sub + 1) * 2 ** shift - 1;
}

export class Histogram {
  readonly counts = new Float64Array(BUCKETS);
  count = 0;
  min = Infinity;
  max = 0;
  sum = 0;

  /** Records one value in microseconds. */
  record(valueUs: number): void {
    this.counts[bucketOf(valueUs)]!++;
    this.count++;
    this.sum += valueUs;
    if (valueUs < this.min) this.min = valueUs;
    if (valueUs > this.max) this.max = valueUs;
  }

  /** The value at quantile q (0..1) in µs, as the bucket's upper bound clamped to [min, max]; 0 when empty. */
  percentile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(this.max, Math.max(this.min, bucketHigh(i)));
    }
    return this.max;
  }

  mean(): number { return this.count === 0 ? 0 : this.sum / this.count; }

  add(other: Histogram): void {
    for (let i = 0; i < BUCKETS; i++) this.counts[i]! += other.counts[i]!;
    this.count += other.count;
    this.sum += other.sum;
    if (other.min < this.min) this.min = other.min;
    if (other.max > this.max) this.max = other.max;
  }

  reset(): void {
    this.counts.fill(0);
    this.count = 0; this.min = Infinity; this.max = 0; this.sum = 0;
  }
}
