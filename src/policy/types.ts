// The contract between the policy compiler and everything that asks it: the data plane (hot,
// numeric), the socket-filter generator (source ranges per listener) and explain (slow path).
//
// A CompiledPolicy is immutable. Control compiles a new one beside the live one, checks it, then
// swaps one reference; the data plane reads `this.policy` once per decision.
//
// Addresses: "appearance" addresses are what the rules see (AWS semantics). "Local" addresses are
// the real loopback addresses the daemon sees on sockets. `addresses:` in the config maps local →
// appearance; an instance's own address always appears as itself. IPv4 addresses are uint32
// (`>>> 0`); IPv6 addresses are four uint32 words, most significant first.

import type { Direction, Model } from '../model/types.js';

/** Verdict bits returned by decide*: 0 = deny. */
export const VERDICT_DENY = 0;
export const VERDICT_ALLOW = 1;
/** Set together with ALLOW when AWS would not track the flow (CT §3.2): an open-world rule allows it
 * and the other direction allows all traffic back to the open world in the same address family. */
export const VERDICT_UNTRACKED = 2;

/**
 * Sorted, merged, inclusive source ranges. v4: [lo0, hi0, lo1, hi1, ...] as uint32.
 * v6: the same as bigint pairs (128-bit values). Both are in LOCAL (real) address space, i.e.
 * after taking the preimage of the `addresses` map, so a kernel filter can test them directly.
 */
export interface SourceRanges {
  v4: Uint32Array;
  v6: bigint[];
}

export interface CompiledPolicy {
  readonly version: number;
  readonly model: Model;
  /** instance name → index into model.instances (the `inst` argument below). */
  readonly instanceIndex: ReadonlyMap<string, number>;

  /**
   * Hot path: may the instance `inst` exchange a new flow with `peer` (appearance address) in
   * direction `dir`? INGRESS: peer is the source, port the destination port at the instance.
   * EGRESS: peer is the destination, port its destination port. ICMP: port = type << 8 | code.
   * Allocation-free; never throws for in-range input.
   */
  decide4(inst: number, dir: Direction, proto: number, peer: number, port: number): number;
  decide6(inst: number, dir: Direction, proto: number,
          w0: number, w1: number, w2: number, w3: number, port: number): number;

  /** The address the rules see for a local IPv4 address (identity unless `addresses:` maps it). */
  appear4(local: number): number;
  /** Same for IPv6: writes the appearance words to `out` (identity when unmapped); true when a mapping applied. */
  appear6(w0: number, w1: number, w2: number, w3: number, out: Uint32Array): boolean;

  /** For socket filters: local source ranges allowed to open a new flow to (inst, proto, port) inbound. */
  ingressSources(inst: number, proto: number, port: number): SourceRanges;

  /** Rules in effect for an instance and direction (union of its groups), for logs and metrics. */
  ruleCount(inst: number, dir: Direction): number;
}
