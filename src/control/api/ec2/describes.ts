// The EC2 API's describes (DescribeSecurityGroups, DescribeSecurityGroupRules, DescribeInstances,
// DescribeTags, DescribeNetworkAcls): filters, paging and XML over the live model. Read-only: a
// reader never changes the model or the extras.

import { createHash } from 'node:crypto';
import { AwsError } from '../../../model/errors.js';
import { type Instance, type Model, type Rule, type SecurityGroup } from '../../../model/types.js';
import { awsProtocol, groupArn, ipPermissionsXml, securityGroupRuleXml } from './permissions.js';
import { describeNetworkAcls } from './nacl.js';
import { clip, type QNode } from './query.js';
import { items, n, t, tagSet } from './xml.js';
import { checkRuleId, groupById, groupByName, instanceByRef } from './mutations.js';
import type { Reader } from './types.js';

// ----------------------------------------------------------------------------------- readers

interface Filter { name: string; values: RegExp[] }

function parseFilters(q: QNode, valid: (name: string) => boolean): Filter[] {
  return q.list('Filter').map((f, i) => {
    const name = f.need('Name', `Filter.${i + 1}.`);
    if (!valid(name)) throw new AwsError('InvalidParameterValue', `The filter '${clip(name)}' is invalid`);
    const values = f.strings('Value');
    if (values.length === 0) throw new AwsError('MissingParameter', `The request must contain the parameter Filter.${i + 1}.Value.1`);
    return { name, values: values.map(wildcard) };
  });
}

/** EC2 filter values: `*` any run of characters, `?` one character, `\` escapes. */
function wildcard(v: string): RegExp {
  let re = '';
  for (let i = 0; i < v.length; i++) {
    const ch = v[i] ?? '';
    if (ch === '\\' && i + 1 < v.length) re += (v[++i] ?? '').replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    else if (ch === '*') re += '[\\s\\S]*';
    else if (ch === '?') re += '[\\s\\S]';
    else re += ch.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function anyMatch(f: Filter, candidates: readonly string[]): boolean {
  return candidates.some((c) => f.values.some((re) => re.test(c)));
}

function tagFilter(f: Filter, tags: Record<string, string>): boolean | undefined {
  if (f.name.startsWith('tag:')) {
    const v = tags[f.name.slice(4)];
    return v !== undefined && anyMatch(f, [v]);
  }
  if (f.name === 'tag-key') return anyMatch(f, Object.keys(tags));
  if (f.name === 'tag-value') return anyMatch(f, Object.values(tags));
  return undefined;
}

const isTagFilter = (name: string): boolean => name.startsWith('tag:') || name === 'tag-key' || name === 'tag-value';

/** Page of a list: MaxResults (5..1000) and an opaque NextToken bound to the operation. */
function page<T>(q: QNode, kind: string, list: readonly T[]): { slice: T[]; nextToken: string | undefined } {
  const max = q.int('MaxResults', 5, 1000) ?? list.length;
  let offset = 0;
  const token = q.str('NextToken');
  if (token) {
    const m = /^([a-z]+):(\d{1,9})$/.exec(Buffer.from(token, 'base64url').toString('utf8'));
    if (!m || m[1] !== kind) throw new AwsError('InvalidPaginationToken', `The pagination token '${clip(token)}' is not valid for this call; use the nextToken of the previous page`);
    offset = Number(m[2]);
  }
  const slice = list.slice(offset, offset + max);
  const next = offset + max < list.length ? Buffer.from(`${kind}:${offset + max}`).toString('base64url') : undefined;
  return { slice, nextToken: next };
}

const RULE_FILTER_FIELDS = new Set(['cidr', 'from-port', 'to-port', 'protocol', 'group-id', 'group-name', 'ipv6-cidr', 'prefix-list-id', 'user-id']);

function ruleFieldValues(field: string, r: Rule, model: Model): string[] {
  const p = r.peer;
  switch (field) {
    case 'cidr': return p.kind === 'cidr' && p.family === 4 ? [p.cidr] : [];
    case 'ipv6-cidr': return p.kind === 'cidr' && p.family === 6 ? [p.cidr] : [];
    case 'group-id': return p.kind === 'group' ? [p.groupId] : [];
    case 'group-name': return p.kind === 'group' ? model.groups.filter((g) => g.id === p.groupId).map((g) => g.name) : [];
    case 'user-id': return p.kind === 'group' ? [model.accountId] : [];
    case 'prefix-list-id': return p.kind === 'prefixList' ? [p.prefixListId] : [];
    case 'protocol': return [awsProtocol(r.protocol), String(r.protocol)];
    case 'from-port': return [String(r.fromPort)];
    case 'to-port': return [String(r.toPort)];
  }
  return [];
}

function sgFilterValid(name: string): boolean {
  if (isTagFilter(name) || ['description', 'group-id', 'group-name', 'owner-id', 'vpc-id'].includes(name)) return true;
  const m = /^(?:egress\.)?ip-permission\.(.+)$/.exec(name);
  return m !== null && RULE_FILTER_FIELDS.has(m[1] ?? '');
}

function groupMatches(f: Filter, g: SecurityGroup, model: Model): boolean {
  const tag = tagFilter(f, g.tags);
  if (tag !== undefined) return tag;
  switch (f.name) {
    case 'description': return anyMatch(f, [g.description]);
    case 'group-id': return anyMatch(f, [g.id]);
    case 'group-name': return anyMatch(f, [g.name]);
    case 'owner-id': return anyMatch(f, [model.accountId]);
    case 'vpc-id': return anyMatch(f, [g.vpcId]);
  }
  const egress = f.name.startsWith('egress.');
  const field = f.name.replace(/^(?:egress\.)?ip-permission\./, '');
  return (egress ? g.egress : g.ingress).some((r) => anyMatch(f, ruleFieldValues(field, r, model)));
}

const describeSecurityGroups: Reader = (_s, model, q) => {
  const ids = q.strings('GroupId');
  const names = q.strings('GroupName');
  const filters = parseFilters(q, sgFilterValid);
  let groups = model.groups;
  if (ids.length || names.length) {
    const picked = new Set<SecurityGroup>();
    for (const id of ids) picked.add(groupById(model, id, 'GroupId.N'));
    for (const name of names) picked.add(groupByName(model, name));
    groups = groups.filter((g) => picked.has(g));
  }
  groups = groups.filter((g) => filters.every((f) => groupMatches(f, g, model)));
  const { slice, nextToken } = page(q, 'sg', groups);
  return items('securityGroupInfo', slice, (g) =>
    t('ownerId', model.accountId) + t('groupId', g.id) + t('groupName', g.name) + t('groupDescription', g.description)
    + t('vpcId', g.vpcId) + t('securityGroupArn', groupArn(model, g.id))
    + ipPermissionsXml('ipPermissions', g.ingress, model) + ipPermissionsXml('ipPermissionsEgress', g.egress, model)
    + tagSet(g.tags))
    + t('nextToken', nextToken);
};

const describeSecurityGroupRules: Reader = (s, model, q) => {
  const ids = q.strings('SecurityGroupRuleId');
  const filters = parseFilters(q, (name) => isTagFilter(name) || name === 'group-id' || name === 'security-group-rule-id');
  let rules = model.groups.flatMap((g) => [...g.ingress, ...g.egress]);
  if (ids.length) {
    for (const id of ids) {
      checkRuleId(id);
      if (!rules.some((r) => r.id === id)) throw new AwsError('InvalidSecurityGroupRuleId.NotFound', `The security group rule ID '${clip(id)}' does not exist`);
    }
    rules = rules.filter((r) => ids.includes(r.id));
  }
  rules = rules.filter((r) => filters.every((f) => {
    const tag = tagFilter(f, s.tagsOfRule(r.id));
    if (tag !== undefined) return tag;
    return anyMatch(f, [f.name === 'group-id' ? r.groupId : r.id]);
  }));
  const { slice, nextToken } = page(q, 'sgr', rules);
  return items('securityGroupRuleSet', slice, (r) => securityGroupRuleXml(r, model, s.tagsOfRule(r.id))) + t('nextToken', nextToken);
};

const describeInstances: Reader = (_s, model, q) => {
  const refs = q.strings('InstanceId');
  const filters = parseFilters(q, (name) => ['instance-id', 'vpc-id', 'private-ip-address', 'instance.group-id', 'instance.group-name',
    'group-id', 'group-name', 'instance-state-name', 'tag:Name', 'tag-key', 'tag-value'].includes(name));
  let list = model.instances;
  if (refs.length) {
    const picked = new Set(refs.map((r) => instanceByRef(model, r)));
    list = list.filter((i) => picked.has(i));
  }
  const groupName = (id: string): string => model.groups.find((g) => g.id === id)?.name ?? id;
  list = list.filter((i) => filters.every((f) => {
    const tag = tagFilter(f, { Name: i.name });
    if (tag !== undefined) return tag;
    switch (f.name) {
      case 'instance-id': return anyMatch(f, [i.id]);
      case 'vpc-id': return anyMatch(f, [i.vpcId]);
      case 'private-ip-address': return anyMatch(f, [i.address]);
      case 'instance-state-name': return anyMatch(f, ['running']);
      case 'instance.group-id': case 'group-id': return anyMatch(f, i.groupIds);
      default: return anyMatch(f, i.groupIds.map(groupName));
    }
  }));
  const { slice, nextToken } = page(q, 'i', list);
  const groupSet = (i: Instance): string => items('groupSet', i.groupIds, (id) => t('groupId', id) + t('groupName', groupName(id)));
  return items('reservationSet', slice, (i) =>
    t('reservationId', 'r-' + createHash('sha256').update(i.id).digest('hex').slice(0, 17)) + t('ownerId', model.accountId)
    + items('groupSet', [], () => '')
    + items('instancesSet', [i], () =>
      t('instanceId', i.id) + t('imageId', 'ami-00000000000000000')
      + n('instanceState', t('code', 16), t('name', 'running'))
      + t('privateDnsName', '') + t('instanceType', 'sgemu.local')
      + t('privateIpAddress', i.address) + (i.address6 ? t('ipv6Address', i.address6) : '')
      + t('vpcId', i.vpcId) + groupSet(i)
      + tagSet({ Name: i.name })))
    + t('nextToken', nextToken);
};

const describeTags: Reader = (s, model, q) => {
  const filters = parseFilters(q, (name) => ['resource-id', 'resource-type', 'key', 'value'].includes(name));
  const all: { id: string; type: string; key: string; value: string }[] = [];
  for (const g of model.groups) {
    for (const [key, value] of Object.entries(g.tags)) all.push({ id: g.id, type: 'security-group', key, value });
    for (const r of [...g.ingress, ...g.egress]) {
      for (const [key, value] of Object.entries(s.tagsOfRule(r.id))) all.push({ id: r.id, type: 'security-group-rule', key, value });
    }
  }
  const list = all.filter((x) => filters.every((f) => anyMatch(f, [
    f.name === 'resource-id' ? x.id : f.name === 'resource-type' ? x.type : f.name === 'key' ? x.key : x.value,
  ])));
  const { slice, nextToken } = page(q, 'tag', list);
  return items('tagSet', slice, (x) => t('resourceId', x.id) + t('resourceType', x.type) + t('key', x.key) + t('value', x.value))
    + t('nextToken', nextToken);
};

export const READERS: Record<string, Reader> = {
  DescribeSecurityGroups: describeSecurityGroups,
  DescribeSecurityGroupRules: describeSecurityGroupRules,
  DescribeInstances: describeInstances,
  DescribeTags: describeTags,
  DescribeNetworkAcls: (_s, model, q) => describeNetworkAcls(model, q, { parseFilters, page }),
};
