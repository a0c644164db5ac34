// Deterministic ids for things the config names without an id: rules (sgr-), each VPC's default
// group (sg-), instances (i-). sha256 of a canonical text, first 17 hex digits, as AWS's lengths.
// Invariant: the same inputs give the same id in every run and on every machine; the text hashed
// never includes file positions, order or descriptions, so reordering or re-wording a file keeps ids.

import { createHash } from 'node:crypto';
import type { Peer, Rule } from '../model/types.js';

function hex17(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 17);
}

function peerKey(p: Peer): string {
  switch (p.kind) {
    case 'cidr': return `cidr:${p.cidr}`;
    case 'group': return `group:${p.groupId}`;
    case 'prefixList': return `pl:${p.prefixListId}`;
  }
}

/** The identity of a rule inside its group: what makes two rules duplicates (AWS). */
export function ruleKey(groupId: string, r: Pick<Rule, 'direction' | 'protocol' | 'fromPort' | 'toPort' | 'peer'>): string {
  return `${groupId}|${r.direction}|${r.protocol}|${r.fromPort}|${r.toPort}|${peerKey(r.peer)}`;
}

/** `sgr-` + 17 hex of group + direction + protocol + ports + peer. */
export function ruleId(groupId: string, r: Omit<Rule, 'id' | 'pos' | 'description' | 'groupId'>): string {
  return 'sgr-' + hex17('rule\0' + ruleKey(groupId, r));
}

/** The id of a VPC's implicit `default` group. */
export function defaultGroupId(vpcId: string): string {
  return 'sg-' + hex17('default-group\0' + vpcId);
}

/** The id of an instance given without one. */
export function instanceId(name: string): string {
  return 'i-' + hex17('instance\0' + name);
}
