// Builds Model objects directly (no YAML) for explain/lint tests. Rule ids are derived from the
// content so they are stable; they need not match the config loader's hashing.
import {
  DEFAULT_CONNECTION_TRACKING, DEFAULT_QUOTAS, EGRESS, INGRESS, PROTO_ALL,
  type Direction, type Instance, type Model, type Peer, type Rule, type SecurityGroup,
} from '../../src/model/types.js';

let counter = 0;

export function peerOf(text: string): Peer {
  if (text.startsWith('sg-')) return { kind: 'group', groupId: text };
  if (text.startsWith('pl-')) return { kind: 'prefixList', prefixListId: text };
  return { kind: 'cidr', cidr: text, family: text.includes(':') ? 6 : 4 };
}

/** rule('tcp', 22, '0.0.0.0/0') ; ports as number, [from, to] or -1. */
export function rule(groupId: string, direction: Direction, protocol: number, ports: number | [number, number], peer: string, description = 'd'): Rule {
  const [fromPort, toPort] = typeof ports === 'number' ? [ports, ports] : ports;
  counter++;
  return {
    id: 'sgr-' + counter.toString(16).padStart(17, '0'),
    groupId, direction, protocol, fromPort, toPort, peer: peerOf(peer), description,
  };
}

export type RuleSpec = [protocol: number, ports: number | [number, number], peer: string, description?: string];

export function group(id: string, ingress: (RuleSpec | Rule)[], egress?: (RuleSpec | Rule)[] | null, extra: Partial<SecurityGroup> = {}): SecurityGroup {
  const mk = (dir: Direction) => (x: RuleSpec | Rule): Rule => Array.isArray(x) ? rule(id, dir, x[0], x[1], x[2], x[3] ?? 'd') : x;
  const ing = ingress.map(mk(INGRESS));
  return {
    id, name: id.slice(3), vpcId: 'vpc-local', description: 'group ' + id,
    ingress: ing,
    egress: egress ? egress.map(mk(EGRESS)) : [rule(id, EGRESS, PROTO_ALL, -1, '0.0.0.0/0', ''), rule(id, EGRESS, PROTO_ALL, -1, '::/0', '')],
    isDefault: false, tags: {}, ...extra,
  };
}

export function instance(name: string, address: string, groupIds: string[], address6: string | null = null): Instance {
  return {
    name, id: 'i-' + name, vpcId: 'vpc-local', address, address6, groupIds,
    connectionTracking: { ...DEFAULT_CONNECTION_TRACKING }, services: [], outbound: [],
  };
}

export function model(groups: SecurityGroup[], instances: Instance[], extra: Partial<Model> = {}): Model {
  return {
    region: 'us-east-1', accountId: '000000000000', vpcs: [{ id: 'vpc-local' }], prefixLists: [],
    groups, instances, addresses: [], quotas: { ...DEFAULT_QUOTAS }, ...extra,
  };
}

export { INGRESS, EGRESS };
