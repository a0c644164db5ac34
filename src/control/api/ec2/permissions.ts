// AWS IpPermission ↔ sgemu config rules, and model rules → EC2 XML.
// Owns: reading `IpPermissions.N.*` (and the old flat CidrIp/IpProtocol/FromPort/ToPort form) into
// config rule objects of SPEC §2 (one peer each: each IpRange, Ipv6Range, PrefixListId and Group
// becomes its own rule, as AWS gives each source its own rule id, reference §1.1), and writing
// rules as `ipPermissions` items (sources with the same protocol and ports grouped, as EC2) or as
// `SecurityGroupRule` items.
// Must not: validate what the config loader validates (CIDR text, port ranges, references, quotas,
// duplicates): the service hands every rule object to loadConfigText, the one validation path.
// Protocol mapping: AWS `-1` = our `all`; tcp/udp FromPort=ToPort=-1 = all ports (0-65535, as
// the AWS CLI's `--port all`); icmp/icmpv6 FromPort = type, ToPort = code; other protocols ignore
// ports (AWS: "allows all ports whatever range you give").

import { AwsError } from '../../../model/errors.js';
import {
  protocolNumber,
  PROTO_ALL, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, protocolName,
  type Model, type Rule,
} from '../../../model/types.js';
import { parseCidr } from '../../../config/cidr.js';
import { clip, type QNode } from './query.js';
import { items, n, t, tagSet } from './xml.js';

export type ConfigRule = Record<string, unknown>;
export type SourceKind = 'cidr4' | 'cidr6' | 'prefixList' | 'group';

export interface RuleSource {
  kind: SourceKind;
  value: string;
  description: string | undefined;
}

/** `tcp`, `-1`, `6`, `all`… → protocol number; InvalidParameterValue otherwise. */
export function parseApiProtocol(text: string, where: string): number {
  const p = protocolNumber(text);
  if (p !== undefined) return p;
  throw new AwsError('InvalidParameterValue',
    `Invalid value '${clip(text)}' for ${where}IpProtocol. Unknown protocol: use tcp, udp, icmp, icmpv6, -1 (all) or a protocol number 0..255`);
}

/** The config fields for a protocol and AWS From/ToPort. */
export function portFields(protocol: number, from: number | undefined, to: number | undefined): ConfigRule {
  if (protocol === PROTO_TCP || protocol === PROTO_UDP) {
    if (from === undefined || to === undefined) {
      throw new AwsError('InvalidParameterValue', "Invalid value 'Must specify both from and to ports with TCP/UDP.' for portRange.");
    }
    if (from === -1 && to === -1) return { ports: 'all' };
    return { ports: from === to ? from : `${from}-${to}` };
  }
  if (protocol === PROTO_ICMP || protocol === PROTO_ICMPV6) {
    const o: ConfigRule = {};
    if (from !== undefined) o.icmpType = from;
    if (to !== undefined) o.icmpCode = to;
    return o;
  }
  return {};
}

/** A config rule with one peer. */
export function configRule(protocol: number, ports: ConfigRule, src: RuleSource): ConfigRule {
  const o: ConfigRule = { protocol: protocolName(protocol), ...ports };
  if (src.kind === 'cidr4' || src.kind === 'cidr6') o.cidr = src.value;
  else if (src.kind === 'group') o.groups = [src.value];
  else o.prefixLists = [src.value];
  if (src.description !== undefined && src.description !== '') o.description = src.description;
  return o;
}

/** Checks that a CIDR given in CidrIp is IPv4 and one in CidrIpv6 is IPv6 (AWS: "malformed"). */
export function checkCidrFamily(text: string, family: 4 | 6, where: string): void {
  const c = parseCidr(text);
  if (c && c.family !== family) {
    throw new AwsError('InvalidParameterValue',
      `CIDR block ${clip(text)} is malformed: ${where} takes ${family === 4 ? 'IPv4 (use Ipv6Ranges / CidrIpv6 for IPv6)' : 'IPv6 (use IpRanges / CidrIp for IPv4)'}`);
  }
}

function portInt(p: QNode, name: string, where: string): number | undefined {
  return p.int(name, -99999, 99999, where);
}

/** One IpPermission node → its config rules (one per source). */
function permissionRules(p: QNode, where: string): ConfigRule[] {
  const protoText = p.need('IpProtocol', where);
  const protocol = parseApiProtocol(protoText, where);
  const ports = portFields(protocol, portInt(p, 'FromPort', where), portInt(p, 'ToPort', where));
  const sources: RuleSource[] = [];
  p.list('IpRanges').forEach((r, i) => {
    const w = `${where}IpRanges.${i + 1}.`;
    const cidr = r.need('CidrIp', w);
    checkCidrFamily(cidr, 4, `${w}CidrIp`);
    sources.push({ kind: 'cidr4', value: cidr, description: r.str('Description') });
  });
  p.list('Ipv6Ranges').forEach((r, i) => {
    const w = `${where}Ipv6Ranges.${i + 1}.`;
    const cidr = r.need('CidrIpv6', w);
    checkCidrFamily(cidr, 6, `${w}CidrIpv6`);
    sources.push({ kind: 'cidr6', value: cidr, description: r.str('Description') });
  });
  p.list('PrefixListIds').forEach((r, i) => {
    sources.push({ kind: 'prefixList', value: r.need('PrefixListId', `${where}PrefixListIds.${i + 1}.`), description: r.str('Description') });
  });
  p.list('Groups').forEach((r, i) => {
    const w = `${where}Groups.${i + 1}.`;
    if (r.str('VpcPeeringConnectionId')) {
      throw new AwsError('UnsupportedOperation', `${w}VpcPeeringConnectionId: VPC peering is not emulated; reference groups of the same VPC`);
    }
    const ref = r.str('GroupId') || r.str('GroupName');
    if (!ref) throw new AwsError('MissingParameter', `The request must contain the parameter ${w}GroupId or ${w}GroupName`);
    sources.push({ kind: 'group', value: ref, description: r.str('Description') });
  });
  if (sources.length === 0) {
    throw new AwsError('MissingParameter', `Missing source specification in ${where || 'the permission'}: include source security group or CIDR information (IpRanges, Ipv6Ranges, PrefixListIds or Groups)`);
  }
  return sources.map((s) => configRule(protocol, ports, s));
}

/**
 * `IpPermissions.N.*` plus the old flat form (IpProtocol, FromPort, ToPort, CidrIp,
 * SourceSecurityGroupName) → config rules in request order. Empty when none was given.
 */
export function parsePermissions(q: QNode): ConfigRule[] {
  const out: ConfigRule[] = [];
  q.list('IpPermissions').forEach((p, i) => out.push(...permissionRules(p, `IpPermissions.${i + 1}.`)));
  const flatCidr = q.str('CidrIp');
  const flatGroup = q.str('SourceSecurityGroupName');
  if (q.str('IpProtocol') !== undefined || flatCidr !== undefined || flatGroup !== undefined) {
    const protocol = parseApiProtocol(q.str('IpProtocol') ?? '-1', '');
    const ports = portFields(protocol, portInt(q, 'FromPort', ''), portInt(q, 'ToPort', ''));
    const sources: RuleSource[] = [];
    if (flatCidr) {
      checkCidrFamily(flatCidr, 4, 'CidrIp');
      sources.push({ kind: 'cidr4', value: flatCidr, description: undefined });
    }
    if (flatGroup) sources.push({ kind: 'group', value: flatGroup, description: undefined });
    if (sources.length === 0) {
      throw new AwsError('MissingParameter', 'Missing source specification: include source security group or CIDR information (CidrIp or SourceSecurityGroupName)');
    }
    out.push(...sources.map((s) => configRule(protocol, ports, s)));
  }
  return out;
}

/** A model rule as a config rule object, with its id (so the id survives edits). */
export function ruleToConfig(r: Rule): ConfigRule {
  const src: RuleSource = r.peer.kind === 'cidr'
    ? { kind: r.peer.family === 4 ? 'cidr4' : 'cidr6', value: r.peer.cidr, description: r.description }
    : r.peer.kind === 'group'
      ? { kind: 'group', value: r.peer.groupId, description: r.description }
      : { kind: 'prefixList', value: r.peer.prefixListId, description: r.description };
  let ports: ConfigRule = {};
  if (r.protocol === PROTO_TCP || r.protocol === PROTO_UDP) ports = { ports: r.fromPort === r.toPort ? r.fromPort : `${r.fromPort}-${r.toPort}` };
  else if (r.protocol === PROTO_ICMP || r.protocol === PROTO_ICMPV6) ports = { icmpType: r.fromPort, icmpCode: r.toPort };
  return { ...configRule(r.protocol, ports, src), id: r.id };
}

export function sourceKind(r: Rule): SourceKind {
  return r.peer.kind === 'cidr' ? (r.peer.family === 4 ? 'cidr4' : 'cidr6') : r.peer.kind;
}

// ------------------------------------------------------------------------------------------ XML

/** AWS spelling of a protocol: tcp, udp, icmp, icmpv6, -1, or the number. */
export function awsProtocol(p: number): string {
  return p === PROTO_ALL ? '-1' : protocolName(p);
}

/** Whether DescribeSecurityGroups shows From/ToPort (it leaves them out for all-port protocols). */
function hasPorts(p: number): boolean {
  return p === PROTO_TCP || p === PROTO_UDP || p === PROTO_ICMP || p === PROTO_ICMPV6;
}

export function ruleArn(model: Model, id: string): string {
  return `arn:aws:ec2:${model.region}:${model.accountId}:security-group-rule/${id}`;
}

export function groupArn(model: Model, id: string): string {
  return `arn:aws:ec2:${model.region}:${model.accountId}:security-group/${id}`;
}

/** `ipPermissions` / `ipPermissionsEgress` items: rules with the same protocol and ports grouped. */
export function ipPermissionsXml(name: string, rules: readonly Rule[], model: Model): string {
  const perms = new Map<string, Rule[]>();
  for (const r of rules) {
    const k = `${r.protocol}|${r.fromPort}|${r.toPort}`;
    const list = perms.get(k);
    if (list) list.push(r);
    else perms.set(k, [r]);
  }
  return items(name, [...perms.values()], (rs) => {
    const r0 = rs[0];
    if (!r0) return '';
    const desc = (r: Rule): string => (r.description ? t('description', r.description) : '');
    const groups = rs.filter((r) => r.peer.kind === 'group');
    const v4 = rs.filter((r) => r.peer.kind === 'cidr' && r.peer.family === 4);
    const v6 = rs.filter((r) => r.peer.kind === 'cidr' && r.peer.family === 6);
    const pls = rs.filter((r) => r.peer.kind === 'prefixList');
    return t('ipProtocol', awsProtocol(r0.protocol))
      + (hasPorts(r0.protocol) ? t('fromPort', r0.fromPort) + t('toPort', r0.toPort) : '')
      + items('groups', groups, (r) => {
        const id = r.peer.kind === 'group' ? r.peer.groupId : '';
        const g = model.groups.find((x) => x.id === id);
        return t('userId', model.accountId) + t('groupId', id) + (g ? t('groupName', g.name) + t('vpcId', g.vpcId) : '') + desc(r);
      })
      + items('ipRanges', v4, (r) => t('cidrIp', r.peer.kind === 'cidr' ? r.peer.cidr : '') + desc(r))
      + items('ipv6Ranges', v6, (r) => t('cidrIpv6', r.peer.kind === 'cidr' ? r.peer.cidr : '') + desc(r))
      + items('prefixListIds', pls, (r) => t('prefixListId', r.peer.kind === 'prefixList' ? r.peer.prefixListId : '') + desc(r));
  });
}

/** The peer element(s) of a SecurityGroupRule. */
function peerXml(r: Rule, model: Model, referencedAs: 'info' | 'id'): string {
  const p = r.peer;
  if (p.kind === 'cidr') return t(p.family === 4 ? 'cidrIpv4' : 'cidrIpv6', p.cidr);
  if (p.kind === 'prefixList') return t('prefixListId', p.prefixListId);
  if (referencedAs === 'id') return t('referencedGroupId', p.groupId);
  const g = model.groups.find((x) => x.id === p.groupId);
  return n('referencedGroupInfo', t('groupId', p.groupId), t('userId', model.accountId), g ? t('vpcId', g.vpcId) : '');
}

/** A `SecurityGroupRule` item body (Authorize*, DescribeSecurityGroupRules). */
export function securityGroupRuleXml(r: Rule, model: Model, tags: Record<string, string>): string {
  return t('securityGroupRuleId', r.id) + t('groupId', r.groupId) + t('groupOwnerId', model.accountId)
    + t('isEgress', r.direction === 1) + t('ipProtocol', awsProtocol(r.protocol))
    + t('fromPort', r.fromPort) + t('toPort', r.toPort) + peerXml(r, model, 'info')
    + (r.description ? t('description', r.description) : '') + tagSet(tags) + t('securityGroupRuleArn', ruleArn(model, r.id));
}

/** A `RevokedSecurityGroupRule` item body. */
export function revokedRuleXml(r: Rule, model: Model): string {
  return t('securityGroupRuleId', r.id) + t('groupId', r.groupId) + t('isEgress', r.direction === 1)
    + t('ipProtocol', awsProtocol(r.protocol)) + t('fromPort', r.fromPort) + t('toPort', r.toPort)
    + peerXml(r, model, 'id') + (r.description ? t('description', r.description) : '');
}
