// The EC2 Query API for network ACLs (issue 14, SPEC §7): CreateNetworkAcl, DeleteNetworkAcl,
// CreateNetworkAclEntry, ReplaceNetworkAclEntry, DeleteNetworkAclEntry, DescribeNetworkAcls (with
// filters) and ReplaceNetworkAclAssociation, wired into Ec2Service (service.ts) as its other
// mutations: each edits a copy of the config object, which the config loader validates (one
// validation path: rule numbers, CIDRs, quotas, AWS codes), then the service saves and applies it.
// Must not: validate entries itself beyond the API's own parameter shapes.
//
// Wire names (botocore ec2 2016-11-15): requests NetworkAclId, RuleNumber, Protocol (a number or
// a name; -1 = all), RuleAction allow|deny, Egress, CidrBlock | Ipv6CidrBlock, PortRange.From/To,
// IcmpTypeCode.Type/Code, AssociationId; responses networkAcl{networkAclId, vpcId, default,
// entrySet/item{ruleNumber, protocol, ruleAction, egress, cidrBlock|ipv6CidrBlock, icmpTypeCode,
// portRange}, associationSet/item{networkAclAssociationId, networkAclId, subnetId}, tagSet, ownerId}.
// The final `*` entries show as rule 32767 deny (v4 and v6), as EC2 lists them.

import { createHash, randomBytes } from 'node:crypto';
import { naclEntryToObject, objList } from '../../../config/to-object.js';
import { PATTERNS } from '../../../config/schema.js';
import { AwsError } from '../../../model/errors.js';
import {
  NACL_RULE_STAR, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, defaultNetworkAclId, protocolNumber,
  type Model, type NaclEntry, type NetworkAcl,
} from '../../../model/types.js';
import { clip, type QNode } from './query.js';
import { items, n, t, tagSet } from './xml.js';

type Obj = Record<string, unknown>;
export interface NaclCtx { model: Model; obj: Obj; deleted: Set<string> }
export interface NaclPlan { obj: Obj | null; model: Model | null; xml: string }
export type Validate = (obj: Obj) => Model;

const ACL_ID = new RegExp(PATTERNS.networkAclId);

/** The association id of a subnet with its NACL: stable for the pair, new when it changes. */
export function associationId(subnetId: string, aclId: string): string {
  return 'aclassoc-' + createHash('sha256').update(`nacl-assoc\0${subnetId}\0${aclId}`).digest('hex').slice(0, 17);
}

function aclById(model: Model, id: string): NetworkAcl {
  if (!ACL_ID.test(id)) throw new AwsError('InvalidNetworkAclID.Malformed', `Invalid id: "${clip(id)}" (expecting "acl-...")`);
  const a = (model.networkAcls ?? []).find((x) => x.id === id);
  if (!a) throw new AwsError('InvalidNetworkAclID.NotFound', `The networkAcl ID '${clip(id)}' does not exist`);
  return a;
}

/** The config entry of NACL `a`, entries rewritten from the model (a standard default is added). */
function editableAcl(obj: Obj, a: NetworkAcl): Obj {
  const list = objList(obj, 'networkAcls');
  let e = list.find((x) => (a.isDefault ? x.default === true && x.vpc === a.vpcId : x.id === a.id && x.default !== true));
  if (!e) {
    if (!a.isDefault) throw new Error(`network ACL ${a.id} is missing from the config object`);
    e = { default: true, vpc: a.vpcId };
    list.push(e);
  }
  e.entries = a.entries.map(naclEntryToObject);
  return e;
}

/** Create/ReplaceNetworkAclEntry parameters → a config entry (the loader checks the values). */
function entryFromQuery(q: QNode): Obj {
  const ruleNumber = q.int('RuleNumber', -2147483648, 2147483647);
  if (ruleNumber === undefined) throw new AwsError('MissingParameter', 'The request must contain the parameter RuleNumber');
  const ptext = q.need('Protocol');
  const protocol = protocolNumber(ptext);
  if (protocol === undefined) throw new AwsError('InvalidParameterValue', `Invalid value '${clip(ptext)}' for protocol: use a protocol number (-1 = all, 6 tcp, 17 udp, 1 icmp, 58 icmpv6) or its name`);
  const action = q.need('RuleAction').trim().toLowerCase();
  if (action !== 'allow' && action !== 'deny') throw new AwsError('InvalidParameterValue', `Invalid value '${clip(action)}' for ruleAction: use allow or deny`);
  if (q.str('Egress') === undefined) throw new AwsError('MissingParameter', 'The request must contain the parameter Egress');
  const egress = q.bool('Egress');
  const v4 = q.str('CidrBlock'), v6 = q.str('Ipv6CidrBlock');
  if (!v4 && !v6) throw new AwsError('MissingParameter', 'The request must contain the parameter CidrBlock or Ipv6CidrBlock');
  if (v4 && v6) throw new AwsError('InvalidParameterCombination', 'Specify either CidrBlock or Ipv6CidrBlock, not both');
  const cidr = (v4 ?? v6)!;
  if (v4 && cidr.includes(':')) throw new AwsError('InvalidParameterValue', `CIDR block ${clip(cidr)} is malformed: an IPv6 block goes in Ipv6CidrBlock`);
  if (v6 && !cidr.includes(':')) throw new AwsError('InvalidParameterValue', `CIDR block ${clip(cidr)} is malformed: an IPv4 block goes in CidrBlock`);
  const e: Obj = { ruleNumber, egress, protocol: String(protocol), cidr, action };
  if (protocol === PROTO_TCP || protocol === PROTO_UDP) {
    const from = q.int('PortRange.From', 0, 65535), to = q.int('PortRange.To', 0, 65535);
    if (from === undefined || to === undefined) {
      throw new AwsError('InvalidParameterValue', `Invalid value for portRange: a ${protocol === PROTO_TCP ? 'tcp' : 'udp'} entry needs PortRange.From and PortRange.To`);
    }
    e.ports = `${from}-${to}`;
  } else if (protocol === PROTO_ICMP || protocol === PROTO_ICMPV6) {
    const type = q.int('IcmpTypeCode.Type', -1, 255), code = q.int('IcmpTypeCode.Code', -1, 255);
    if (type === undefined && protocol === PROTO_ICMP) throw new AwsError('InvalidParameterValue', 'Invalid value for icmpTypeCode: an icmp entry needs IcmpTypeCode.Type (-1 = all) and IcmpTypeCode.Code');
    e.icmpType = type ?? -1;
    e.icmpCode = code ?? -1;
  }
  return e;
}

function sameSlot(x: Obj, ruleNumber: unknown, egress: boolean): boolean {
  return Number(x.ruleNumber) === Number(ruleNumber) && x.egress === egress;
}

export const createNetworkAcl = (c: NaclCtx, q: QNode, validate: Validate): NaclPlan => {
  const vpcId = q.need('VpcId');
  if (!c.model.vpcs.some((v) => v.id === vpcId)) throw new AwsError('InvalidVpcID.NotFound', `The vpc ID '${clip(vpcId)}' does not exist`);
  const tags: Record<string, string> = {};
  q.list('TagSpecification').forEach((spec) => spec.list('Tag').forEach((tg) => { tags[tg.need('Key')] = tg.str('Value') ?? ''; }));
  const id = 'acl-' + randomBytes(9).toString('hex').slice(0, 17);
  objList(c.obj, 'networkAcls').push({ id, vpc: vpcId, ...(Object.keys(tags).length ? { tags } : {}), entries: [] });
  const model = validate(c.obj);
  return { obj: c.obj, model, xml: n('networkAcl', aclXml(model, aclById(model, id))) };
};

export const deleteNetworkAcl = (c: NaclCtx, q: QNode, validate: Validate): NaclPlan => {
  const a = aclById(c.model, q.need('NetworkAclId'));
  if (a.isDefault) throw new AwsError('InvalidParameterValue', `cannot delete default network ACL ${a.id}`);
  const users = (c.model.subnets ?? []).filter((s) => s.networkAclId === a.id).map((s) => s.id);
  if (users.length) throw new AwsError('DependencyViolation', `The networkAcl '${a.id}' has dependencies and cannot be deleted: associated with ${users.join(', ')} (ReplaceNetworkAclAssociation first)`);
  c.obj.networkAcls = objList(c.obj, 'networkAcls').filter((x) => !(x.id === a.id && x.default !== true));
  c.deleted.add(a.id);              // kept with the deleted groups: not re-added from the config file
  return { obj: c.obj, model: validate(c.obj), xml: t('return', true) };
};

export function putNetworkAclEntry(replace: boolean) {
  return (c: NaclCtx, q: QNode, validate: Validate): NaclPlan => {
    const a = aclById(c.model, q.need('NetworkAclId'));
    const entry = entryFromQuery(q);
    const e = editableAcl(c.obj, a);
    const list = objList(e, 'entries');
    const at = list.findIndex((x) => sameSlot(x, entry.ruleNumber, entry.egress === true));
    if (replace) {
      if (at < 0) throw new AwsError('InvalidNetworkAclEntry.NotFound', `The network acl entry identified by ${String(entry.ruleNumber)} (${entry.egress ? 'egress' : 'ingress'}) does not exist in ${a.id}`);
      list[at] = entry;
    } else {
      if (at >= 0) throw new AwsError('NetworkAclEntryAlreadyExists', `The network acl entry identified by ${String(entry.ruleNumber)} already exists.`);
      list.push(entry);
    }
    return { obj: c.obj, model: validate(c.obj), xml: t('return', true) };
  };
}

export const deleteNetworkAclEntry = (c: NaclCtx, q: QNode, validate: Validate): NaclPlan => {
  const a = aclById(c.model, q.need('NetworkAclId'));
  const ruleNumber = q.int('RuleNumber', -2147483648, 2147483647);
  if (ruleNumber === undefined) throw new AwsError('MissingParameter', 'The request must contain the parameter RuleNumber');
  if (q.str('Egress') === undefined) throw new AwsError('MissingParameter', 'The request must contain the parameter Egress');
  const egress = q.bool('Egress');
  const e = editableAcl(c.obj, a);
  const list = objList(e, 'entries');
  const at = list.findIndex((x) => sameSlot(x, ruleNumber, egress));
  if (at < 0) throw new AwsError('InvalidNetworkAclEntry.NotFound', `The network acl entry identified by ${ruleNumber} (${egress ? 'egress' : 'ingress'}) does not exist in ${a.id}`);
  list.splice(at, 1);
  return { obj: c.obj, model: validate(c.obj), xml: t('return', true) };
};

export const replaceNetworkAclAssociation = (c: NaclCtx, q: QNode, validate: Validate): NaclPlan => {
  const assoc = q.need('AssociationId');
  const a = aclById(c.model, q.need('NetworkAclId'));
  const sn = (c.model.subnets ?? []).find((s) => associationId(s.id, s.networkAclId) === assoc);
  if (!sn) throw new AwsError('InvalidAssociationID.NotFound', `The association ID '${clip(assoc)}' does not exist`);
  if (a.vpcId !== sn.vpcId) throw new AwsError('InvalidParameterValue', `network ACL ${a.id} is in ${a.vpcId} but subnet ${sn.id} is in ${sn.vpcId}`);
  const e = objList(c.obj, 'subnets').find((x) => x.id === sn.id);
  if (!e) throw new Error(`subnet ${sn.id} is missing from the config object`);
  e.networkAcl = a.id;
  const model = validate(c.obj);
  return { obj: c.obj, model, xml: t('newAssociationId', associationId(sn.id, a.id)) };
};

// ---- DescribeNetworkAcls ------------------------------------------------------------------------

function entryXml(e: NaclEntry): string {
  const icmp = e.protocol === PROTO_ICMP || e.protocol === PROTO_ICMPV6;
  const ports = e.protocol === PROTO_TCP || e.protocol === PROTO_UDP;
  return t('ruleNumber', e.ruleNumber) + t('protocol', String(e.protocol)) + t('ruleAction', e.allow ? 'allow' : 'deny')
    + t('egress', e.egress) + (e.family === 4 ? t('cidrBlock', e.cidr) : t('ipv6CidrBlock', e.cidr))
    + (icmp ? n('icmpTypeCode', t('code', e.toPort), t('type', e.fromPort)) : '')
    + (ports ? n('portRange', t('from', e.fromPort), t('to', e.toPort)) : '');
}

/** The entries as EC2 lists them: each direction's entries, then its `*` (32767 deny, v4 and v6). */
function listedEntries(a: NetworkAcl): NaclEntry[] {
  const out: NaclEntry[] = [];
  for (const egress of [true, false]) {
    out.push(...a.entries.filter((e) => e.egress === egress));
    for (const [cidr, family] of [['0.0.0.0/0', 4], ['::/0', 6]] as const) {
      out.push({ ruleNumber: NACL_RULE_STAR, egress, protocol: -1, fromPort: -1, toPort: -1, cidr, family, allow: false });
    }
  }
  return out;
}

function aclXml(model: Model, a: NetworkAcl): string {
  const assoc = (model.subnets ?? []).filter((s) => s.networkAclId === a.id);
  return t('networkAclId', a.id) + t('vpcId', a.vpcId) + t('default', a.isDefault)
    + items('entrySet', listedEntries(a), entryXml)
    + items('associationSet', assoc, (s) => t('networkAclAssociationId', associationId(s.id, a.id)) + t('networkAclId', a.id) + t('subnetId', s.id))
    + tagSet(a.tags) + t('ownerId', model.accountId);
}

const FILTERS = new Set([
  'association.association-id', 'association.network-acl-id', 'association.subnet-id', 'default', 'entry.cidr', 'entry.egress',
  'entry.icmp.code', 'entry.icmp.type', 'entry.ipv6-cidr', 'entry.port-range.from', 'entry.port-range.to', 'entry.protocol',
  'entry.rule-action', 'entry.rule-number', 'network-acl-id', 'owner-id', 'vpc-id', 'tag-key', 'tag-value',
]);

/** Values of one filter field for an ACL (entry fields: any entry). */
function fieldValues(model: Model, a: NetworkAcl, name: string): string[] {
  const assoc = (model.subnets ?? []).filter((s) => s.networkAclId === a.id);
  const ents = listedEntries(a);
  if (name.startsWith('tag:')) { const v = a.tags[name.slice(4)]; return v === undefined ? [] : [v]; }
  switch (name) {
    case 'association.association-id': return assoc.map((s) => associationId(s.id, a.id));
    case 'association.network-acl-id': return assoc.length ? [a.id] : [];
    case 'association.subnet-id': return assoc.map((s) => s.id);
    case 'default': return [String(a.isDefault)];
    case 'entry.cidr': return ents.filter((e) => e.family === 4).map((e) => e.cidr);
    case 'entry.ipv6-cidr': return ents.filter((e) => e.family === 6).map((e) => e.cidr);
    case 'entry.egress': return ents.map((e) => String(e.egress));
    case 'entry.icmp.code': return ents.filter((e) => e.protocol === PROTO_ICMP || e.protocol === PROTO_ICMPV6).map((e) => String(e.toPort));
    case 'entry.icmp.type': return ents.filter((e) => e.protocol === PROTO_ICMP || e.protocol === PROTO_ICMPV6).map((e) => String(e.fromPort));
    case 'entry.port-range.from': return ents.filter((e) => e.protocol === PROTO_TCP || e.protocol === PROTO_UDP).map((e) => String(e.fromPort));
    case 'entry.port-range.to': return ents.filter((e) => e.protocol === PROTO_TCP || e.protocol === PROTO_UDP).map((e) => String(e.toPort));
    case 'entry.protocol': return ents.map((e) => String(e.protocol));
    case 'entry.rule-action': return ents.map((e) => (e.allow ? 'allow' : 'deny'));
    case 'entry.rule-number': return ents.map((e) => String(e.ruleNumber));
    case 'network-acl-id': return [a.id];
    case 'owner-id': return [model.accountId];
    case 'vpc-id': return [a.vpcId];
    case 'tag-key': return Object.keys(a.tags);
    case 'tag-value': return Object.values(a.tags);
  }
  return [];
}

export interface DescribeTools {
  parseFilters(q: QNode, valid: (name: string) => boolean): { name: string; values: RegExp[] }[];
  page<T>(q: QNode, kind: string, list: readonly T[]): { slice: T[]; nextToken: string | undefined };
}

export function describeNetworkAcls(model: Model, q: QNode, tools: DescribeTools): string {
  const ids = q.strings('NetworkAclId');
  const filters = tools.parseFilters(q, (name) => FILTERS.has(name) || name.startsWith('tag:'));
  let acls = [...(model.networkAcls ?? [])];
  // The default NACL of every VPC, also for models without one listed.
  for (const v of model.vpcs) if (!acls.some((a) => a.id === defaultNetworkAclId(v.id))) acls.push({ id: defaultNetworkAclId(v.id), vpcId: v.id, isDefault: true, entries: [], tags: {} });
  if (ids.length) {
    for (const id of ids) aclById({ ...model, networkAcls: acls }, id);
    acls = acls.filter((a) => ids.includes(a.id));
  }
  acls = acls.filter((a) => filters.every((f) => fieldValues(model, a, f.name).some((v) => f.values.some((re) => re.test(v)))));
  const { slice, nextToken } = tools.page(q, 'acl', acls);
  return items('networkAclSet', slice, (a) => aclXml(model, a)) + t('nextToken', nextToken);
}

/** Parameter shapes for params.ts. */
const ENTRY = {
  NetworkAclId: true, RuleNumber: true, Protocol: true, RuleAction: true, Egress: true, CidrBlock: true, Ipv6CidrBlock: true,
  IcmpTypeCode: { Code: true, Type: true }, PortRange: { From: true, To: true },
} as const;
export const NACL_PARAMETERS = {
  CreateNetworkAcl: { VpcId: true, ClientToken: true, 'TagSpecification.N': { ResourceType: true, 'Tag.N': { Key: true, Value: true } } },
  DeleteNetworkAcl: { NetworkAclId: true },
  CreateNetworkAclEntry: ENTRY,
  ReplaceNetworkAclEntry: ENTRY,
  DeleteNetworkAclEntry: { NetworkAclId: true, RuleNumber: true, Egress: true },
  DescribeNetworkAcls: { 'NetworkAclId.N': true, MaxResults: true, NextToken: true, 'Filter.N': { Name: true, 'Value.N': true } },
  ReplaceNetworkAclAssociation: { AssociationId: true, NetworkAclId: true },
} as const;
