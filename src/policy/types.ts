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
import type { CompiledNacl } from './nacl.js';

/** Verdict bits returned by decide*: 0 = deny. */
export const VERDICT_DENY = 0;
export const VERDICT_ALLOW = 1;
/** Set together with ALLOW when AWS would not track the flow (CT §3.2): an open-world rule allows it
 * and the other direction allows all traffic back to the open world in the same address family. */
export const VERDICT_UNTRACKED = 2;
/** Set (with ALLOW cleared) when a network ACL drops the flow's request or its replies (SPEC §7).
 * NACLs keep no state: after a change such a flow stops passing, tracked or not. */
export const VERDICT_NACL_DENY = 4;

/**
 * Sorted, merged, inclusive source ranges. v4: [lo0, hi0, lo1, hi1, ...] as uint32.
 * v6: the same as bigint pairs (128-bit values). Both are in LOCAL (real) address space, i.e.
 * after taking the preimage of the `addresses` map, so a kernel filter can test them directly.
 */
export interface SourceRanges {
  v4: Uint32Array;
  v6: bigint[];
  /** Network ACLs make the decision depend on the client's (source) port, which the replies go
   * to: per range of v4 (pair i), the allowed source ports as merged inclusive pairs, null = every
   * port. Absent: every port for every range (no NACL restricts this listener). */
  ports4?: (number[] | null)[];
  ports6?: (number[] | null)[];
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

  // ---- network ACLs (SPEC §7) ----

  /** Compiled NACLs; index = the `acl` numbers below. */
  readonly nacls: readonly CompiledNacl[];
  /** Subnet ids by subnet index: model.subnets in order, then each VPC's implicit subnet. */
  readonly subnetIds: readonly string[];
  /** Subnet index → NACL index. */
  readonly subnetAcl: Int32Array;
  /** Instance index → subnet index. */
  readonly instSubnet: Int32Array;
  /** Some subnet's NACL can deny something: when false every naclFlow* allows. */
  readonly naclsActive: boolean;
  /** The instance whose address is this local address, or -1 (an outside peer). */
  instanceAt4(local: number): number;
  instanceAt6(w0: number, w1: number, w2: number, w3: number): number;
  /**
   * Hot path: do the NACLs pass a flow src → dst (appearance addresses; srcInst/dstInst -1 = not an
   * instance, crossing no NACL of its own)? The request (dstPort) is checked against the source
   * subnet's egress and the destination subnet's ingress; the replies (to srcPort, the client's
   * ephemeral port; -1 = no reply to check) against the destination's egress and the source's
   * ingress. One subnet: no NACL. Returns VERDICT_ALLOW or VERDICT_NACL_DENY.
   */
  naclFlow4(srcInst: number, dstInst: number, proto: number, src: number, dst: number, srcPort: number, dstPort: number): number;
  naclFlow6(srcInst: number, dstInst: number, proto: number, src: Uint32Array, dst: Uint32Array, srcPort: number, dstPort: number): number;
  /**
   * Hot path, the listener's whole decision for a new inbound flow to `inst`: its security groups'
   * ingress for the peer's appearance, and the NACLs of both paths. `peerLocal` is the real socket
   * peer, `peerPort` its port. A peer that is another instance comes through that instance's
   * outbound entry, whose listener checked the replies with the app's real port; its port here is
   * the relay's, so only the request path is checked. Verdict bits as decide4, VERDICT_NACL_DENY
   * when a NACL drops it.
   */
  decideIngress4(inst: number, proto: number, peerLocal: number, peerPort: number, port: number): number;
  decideIngress6(inst: number, proto: number, peerLocal: Uint32Array, peerPort: number, port: number): number;
}
