// The EC2 API's mutations (SPEC §4: CreateSecurityGroup, Authorize/Revoke, ModifySecurityGroupRules,
// tags, the NACL actions of nacl.ts): each edits the Ctx's config-object copy and validates it
// through the config loader (validate), returning a Plan. They run inside the engine's
// transaction (service.ts) and must not save, apply, or touch anything but their Ctx.

import { randomBytes } from 'node:crypto';
import { loadConfigText } from '../../../config/load.js';
import { ruleKey } from '../../../config/ids.js';
import { objList } from '../../../config/to-object.js';
import { AwsError, ConfigErrors } from '../../../model/errors.js';
import { EGRESS, INGRESS, type Direction, type Instance, type Model, type Rule, type SecurityGroup } from '../../../model/types.js';
import {
  awsProtocol, checkCidrFamily, configRule, groupArn, parseApiProtocol, parsePermissions,
  portFields, revokedRuleXml, ruleToConfig, securityGroupRuleXml, sourceKind, type ConfigRule,
  type RuleSource,
} from './permissions.js';
import { isCommonParameter } from './params.js';
import {
  createNetworkAcl, deleteNetworkAcl, deleteNetworkAclEntry, putNetworkAclEntry,
  replaceNetworkAclAssociation, type NaclCtx, type NaclPlan, type Validate,
} from './nacl.js';
import { clip, type QNode } from './query.js';
import { items, t, tagSet } from './xml.js';
import type { Ctx, Mutation, Obj } from './types.js';

/** Codes the config loader uses that are AWS codes; any other becomes InvalidParameterValue. */
const AWS_CODES = new Set([
  'InvalidParameterValue', 'MissingParameter', 'InvalidGroup.Duplicate', 'InvalidGroup.NotFound', 'InvalidGroup.Reserved',
  'SecurityGroupsPerInstanceLimitExceeded', 'SecurityGroupLimitExceeded', 'RulesPerSecurityGroupLimitExceeded',
  'InvalidVpcID.NotFound', 'InvalidPrefixListID.NotFound', 'InvalidPermission.Malformed', 'InvalidPermission.Duplicate',
  'InvalidInstanceID.NotFound',
  'NetworkAclEntryAlreadyExists', 'NetworkAclEntryLimitExceeded', 'InvalidNetworkAclID.NotFound', 'InvalidSubnetID.NotFound',
  'InvalidSubnet.Conflict', 'InvalidSubnet.Range',
]);

const SG_ID = /^sg-[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const SGR_ID = /^sgr-[0-9a-f]{17}$/;
const MAX_TAG_KEY = 128;
const MAX_TAG_VALUE = 256;

// -------------------------------------------------------------------------------- validation

/** The one validation path: the config loader. Its first error becomes the API error. */
function validate(obj: Obj): Model {
  try {
    return loadConfigText(JSON.stringify(obj), '<api>');
  } catch (e) {
    if (e instanceof ConfigErrors) {
      const first = e.errors[0];
      const code = first && AWS_CODES.has(first.code) ? first.code : 'InvalidParameterValue';
      throw new AwsError(code, first ? first.message : e.message);
    }
    throw e;
  }
}

// ----------------------------------------------------------------------------------- lookups

export function groupById(model: Model, id: string, param = 'GroupId'): SecurityGroup {
  if (!SG_ID.test(id)) {
    throw new AwsError('InvalidGroupId.Malformed', `Invalid id: "${clip(id)}" (${param}: expecting "sg-..." e.g. sg-0123456789abcdef0)`);
  }
  const g = model.groups.find((x) => x.id === id);
  if (!g) throw new AwsError('InvalidGroup.NotFound', `The security group '${clip(id)}' does not exist`);
  return g;
}

/** GroupName resolves in the default (first) VPC, as EC2 resolves names in the default VPC. */
export function groupByName(model: Model, name: string): SecurityGroup {
  const vpcId = model.vpcs[0]?.id ?? '';
  const lower = name.replace(/\s+$/, '').toLowerCase();
  const g = model.groups.find((x) => x.vpcId === vpcId && x.name.toLowerCase() === lower);
  if (!g) throw new AwsError('InvalidGroup.NotFound', `The security group '${clip(name)}' does not exist in default VPC '${vpcId}'`);
  return g;
}

function targetGroup(model: Model, q: QNode, allowName: boolean): SecurityGroup {
  const id = q.str('GroupId');
  if (id) return groupById(model, id);
  const name = q.str('GroupName');
  if (name && allowName) return groupByName(model, name);
  throw new AwsError('MissingParameter', `The request must contain the parameter GroupId${allowName ? ' or GroupName' : ''}`);
}

function findRule(g: SecurityGroup, id: string, dir: Direction | null): Rule | undefined {
  const lists = dir === null ? [g.ingress, g.egress] : [dir === INGRESS ? g.ingress : g.egress];
  for (const l of lists) for (const r of l) if (r.id === id) return r;
  return undefined;
}

export function checkRuleId(id: string): void {
  if (!SGR_ID.test(id)) {
    throw new AwsError('InvalidSecurityGroupRuleId.Malformed', `Invalid id: "${clip(id)}" (expecting "sgr-" and 17 hex digits)`);
  }
}

function ruleNotFound(id: string, g: SecurityGroup): AwsError {
  return new AwsError('InvalidSecurityGroupRuleId.NotFound', `The security group rule ID '${clip(id)}' does not exist in ${g.id}`);
}

function dirKey(dir: Direction): 'ingress' | 'egress' {
  return dir === INGRESS ? 'ingress' : 'egress';
}

/**
 * The config entry of group `g` in `obj`, its rule lists rewritten from the model with explicit
 * ids (so index i of a list is rule i of the model and edited rules keep their ids). A standard
 * default group, which modelToConfigObject leaves out, is added as `default: true`.
 */
function editableGroup(obj: Obj, g: SecurityGroup): Obj {
  const groups = objList(obj, 'securityGroups');
  let e = groups.find((x) => (g.isDefault ? x.default === true && x.vpc === g.vpcId : x.id === g.id && x.default !== true));
  if (!e) {
    if (!g.isDefault) throw new Error(`group ${g.id} is missing from the config object`);
    e = { default: true, vpc: g.vpcId };
    groups.push(e);
  }
  e.ingress = g.ingress.map(ruleToConfig);
  e.egress = g.egress.map(ruleToConfig);
  return e;
}

function rulesOf(e: Obj, dir: Direction): ConfigRule[] {
  return objList(e, dirKey(dir));
}

function groupIn(model: Model, id: string): SecurityGroup {
  const g = model.groups.find((x) => x.id === id);
  if (!g) throw new Error(`group ${id} vanished during validation`);
  return g;
}

/**
 * Requested rules in canonical form: validated by the loader as the only rules of `g`'s `dir`
 * list in a scratch copy. A permission given twice in one call is InvalidParameterValue (AWS).
 */
function canonicalRules(c: Ctx, g: SecurityGroup, dir: Direction, rules: ConfigRule[]): Rule[] {
  const scratch = structuredClone(c.obj);
  const e = editableGroup(scratch, g);
  e[dirKey(dir)] = rules.map((r) => ({ ...r }));
  let m: Model;
  try {
    m = validate(scratch);
  } catch (err) {
    if (err instanceof AwsError && err.code === 'InvalidPermission.Duplicate') {
      throw new AwsError('InvalidParameterValue', 'The same permission must not appear multiple times');
    }
    throw err;
  }
  const gg = groupIn(m, g.id);
  return dir === INGRESS ? gg.ingress : gg.egress;
}

// --------------------------------------------------------------------------------- mutations

function tagSpecs(q: QNode, resourceType: string): Record<string, string> {
  const tags: Record<string, string> = {};
  q.list('TagSpecification').forEach((spec, i) => {
    const type = spec.str('ResourceType');
    if (type !== resourceType) {
      throw new AwsError('InvalidParameterValue', `TagSpecification.${i + 1}.ResourceType '${clip(type ?? '')}' is not valid here; use ${resourceType}`);
    }
    spec.list('Tag').forEach((tg, j) => {
      const key = tg.need('Key', `TagSpecification.${i + 1}.Tag.${j + 1}.`);
      tags[key] = checkTag(key, tg.str('Value') ?? '');
    });
  });
  return tags;
}

function checkTag(key: string, value: string): string {
  if (key.length < 1 || key.length > MAX_TAG_KEY) throw new AwsError('InvalidParameterValue', `Tag key '${clip(key)}' must be 1..${MAX_TAG_KEY} characters`);
  if (/^aws:/i.test(key)) throw new AwsError('InvalidParameterValue', `Tag key '${clip(key)}' may not start with aws: (reserved by AWS)`);
  if (value.length > MAX_TAG_VALUE) throw new AwsError('InvalidParameterValue', `Tag value of '${clip(key)}' is ${value.length} characters; at most ${MAX_TAG_VALUE}`);
  return value;
}

const createSecurityGroup: Mutation = (_s, c, q) => {
  const name = q.need('GroupName');
  const description = q.need('GroupDescription');
  const vpcId = q.str('VpcId') || c.model.vpcs[0]?.id;
  const tags = tagSpecs(q, 'security-group');
  const id = 'sg-' + randomBytes(9).toString('hex').slice(0, 17);
  const entry: Obj = { id, name, description, ingress: [] };
  if (vpcId) entry.vpc = vpcId;
  if (Object.keys(tags).length) entry.tags = tags;
  objList(c.obj, 'securityGroups').push(entry);
  const model = validate(c.obj);
  return { obj: c.obj, model, xml: t('groupId', id) + tagSet(tags) + t('securityGroupArn', groupArn(model, id)) };
};

const deleteSecurityGroup: Mutation = (_s, c, q) => {
  const g = targetGroup(c.model, q, true);
  if (g.isDefault) throw new AwsError('CannotDelete', `the default security group '${g.id}' of ${g.vpcId} cannot be deleted`);
  const users = c.model.instances.filter((i) => i.groupIds.includes(g.id)).map((i) => i.name);
  if (users.length) {
    throw new AwsError('DependencyViolation', `resource ${g.id} has a dependent object: attached to instance${users.length > 1 ? 's' : ''} ${users.join(', ')}; detach it first (ModifyInstanceAttribute)`);
  }
  const refs = c.model.groups.filter((o) => o.id !== g.id && [...o.ingress, ...o.egress].some((r) => r.peer.kind === 'group' && r.peer.groupId === g.id));
  if (refs.length) {
    throw new AwsError('DependencyViolation', `resource ${g.id} has a dependent object: referenced by rules of ${refs.map((o) => o.id).join(', ')}; revoke those rules first`);
  }
  c.obj.securityGroups = objList(c.obj, 'securityGroups').filter((e) => !(e.id === g.id && e.default !== true));
  const model = validate(c.obj);
  c.deleted.add(g.id);
  for (const r of [...g.ingress, ...g.egress]) c.ruleTags.delete(r.id);
  return { obj: c.obj, model, xml: t('return', true) + t('groupId', g.id) };
};

function authorize(dir: Direction): Mutation {
  return (_s, c, q) => {
    const g = targetGroup(c.model, q, dir === INGRESS);
    const wanted = parsePermissions(q);
    if (wanted.length === 0) throw new AwsError('MissingParameter', 'The request must contain the parameter IpPermissions');
    const tags = tagSpecs(q, 'security-group-rule');
    canonicalRules(c, g, dir, wanted);
    const e = editableGroup(c.obj, g);
    const list = rulesOf(e, dir);
    const start = list.length;
    list.push(...wanted.map((r) => ({ ...r })));
    let model = validate(c.obj);
    // A rule modified in place keeps its id, so new content could derive an id already in use.
    const taken = new Set(model.groups.flatMap((x) => [...x.ingress, ...x.egress]).map((r) => r.id));
    const fresh = (m: Model): Rule[] => (dir === INGRESS ? groupIn(m, g.id).ingress : groupIn(m, g.id).egress).slice(start);
    const counts = new Map<string, number>();
    for (const x of model.groups) for (const r of [...x.ingress, ...x.egress]) counts.set(r.id, (counts.get(r.id) ?? 0) + 1);
    let clash = false;
    fresh(model).forEach((r, i) => {
      if ((counts.get(r.id) ?? 0) > 1) {
        let id: string;
        do id = 'sgr-' + randomBytes(9).toString('hex').slice(0, 17); while (taken.has(id));
        const obj = list[start + i];
        if (obj) obj.id = id;
        clash = true;
      }
    });
    if (clash) model = validate(c.obj);
    const added = fresh(model);
    if (Object.keys(tags).length) for (const r of added) c.ruleTags.set(r.id, { ...tags });
    return {
      obj: c.obj, model,
      xml: t('return', true) + items('securityGroupRuleSet', added, (r) => securityGroupRuleXml(r, model, c.ruleTags.get(r.id) ?? {})),
    };
  };
}

function revoke(dir: Direction): Mutation {
  return (_s, c, q) => {
    const g = targetGroup(c.model, q, dir === INGRESS);
    const ids = q.strings('SecurityGroupRuleId');
    const wanted = parsePermissions(q);
    if (ids.length === 0 && wanted.length === 0) {
      throw new AwsError('MissingParameter', 'The request must contain the parameter IpPermissions or SecurityGroupRuleId');
    }
    const current = dir === INGRESS ? g.ingress : g.egress;
    const remove = new Set<string>();
    for (const id of ids) {
      checkRuleId(id);
      const r = findRule(g, id, dir);
      if (!r) throw ruleNotFound(id, g);
      remove.add(r.id);
    }
    if (wanted.length) {
      for (const w of canonicalRules(c, g, dir, wanted)) {
        const k = ruleKey(g.id, w);
        const r = current.find((x) => ruleKey(g.id, x) === k);
        if (!r) {
          throw new AwsError('InvalidPermission.NotFound',
            `The specified rule does not exist in this security group: ${g.id} has no ${dirKey(dir)} rule ${awsProtocol(w.protocol)} ${w.fromPort}..${w.toPort} ${peerText(w)}; nothing was revoked`);
        }
        remove.add(r.id);
      }
    }
    const e = editableGroup(c.obj, g);
    e[dirKey(dir)] = current.filter((r) => !remove.has(r.id)).map(ruleToConfig);
    const model = validate(c.obj);
    const gone = current.filter((r) => remove.has(r.id));
    for (const r of gone) c.ruleTags.delete(r.id);
    return {
      obj: c.obj, model,
      xml: t('return', true) + items('revokedSecurityGroupRuleSet', gone, (r) => revokedRuleXml(r, c.model)),
    };
  };
}

function peerText(r: Rule): string {
  const p = r.peer;
  return p.kind === 'cidr' ? p.cidr : p.kind === 'group' ? p.groupId : p.prefixListId;
}

const modifySecurityGroupRules: Mutation = (_s, c, q) => {
  const g = groupById(c.model, q.need('GroupId'));
  const changes = q.list('SecurityGroupRule');
  if (changes.length === 0) throw new AwsError('MissingParameter', 'The request must contain the parameter SecurityGroupRule.1.SecurityGroupRuleId');
  const e = editableGroup(c.obj, g);
  const seen = new Set<string>();
  changes.forEach((ch, i) => {
    const w = `SecurityGroupRule.${i + 1}.`;
    const id = ch.need('SecurityGroupRuleId', w);
    checkRuleId(id);
    const old = findRule(g, id, null);
    if (!old) throw ruleNotFound(id, g);
    if (seen.has(id)) throw new AwsError('InvalidParameterValue', `${w}SecurityGroupRuleId ${id} is given more than once`);
    seen.add(id);
    const spec = ch.at('SecurityGroupRule');
    const get = (k: string): string | undefined => spec?.str(k);
    const protocol = get('IpProtocol') !== undefined ? parseApiProtocol(get('IpProtocol') ?? '', `${w}SecurityGroupRule.`) : old.protocol;
    const int = (k: string): number | undefined => spec?.int(k, -99999, 99999, `${w}SecurityGroupRule.`);
    const from = int('FromPort') ?? (protocol === old.protocol ? old.fromPort : undefined);
    const to = int('ToPort') ?? (protocol === old.protocol ? old.toPort : undefined);
    const given: RuleSource[] = [];
    const v4 = get('CidrIpv4'), v6 = get('CidrIpv6'), pl = get('PrefixListId'), ref = get('ReferencedGroupId');
    if (v4) { checkCidrFamily(v4, 4, `${w}SecurityGroupRule.CidrIpv4`); given.push({ kind: 'cidr4', value: v4, description: undefined }); }
    if (v6) { checkCidrFamily(v6, 6, `${w}SecurityGroupRule.CidrIpv6`); given.push({ kind: 'cidr6', value: v6, description: undefined }); }
    if (pl) given.push({ kind: 'prefixList', value: pl, description: undefined });
    if (ref) given.push({ kind: 'group', value: ref, description: undefined });
    if (given.length > 1) throw new AwsError('InvalidParameterValue', `${w}SecurityGroupRule gives ${given.length} sources; a rule has exactly one of CidrIpv4, CidrIpv6, PrefixListId, ReferencedGroupId`);
    const oldSrc = ruleToConfig(old);
    const kind = sourceKind(old);
    const src: RuleSource = given[0] ?? {
      kind,
      value: String((Array.isArray(oldSrc.groups) ? oldSrc.groups[0] : Array.isArray(oldSrc.prefixLists) ? oldSrc.prefixLists[0] : oldSrc.cidr) ?? ''),
      description: undefined,
    };
    if (src.kind !== kind) {
      throw new AwsError('InvalidParameterValue', `You cannot change the source type of security group rule ${id} (${kind} → ${src.kind}); revoke it and authorize a new rule`);
    }
    src.description = get('Description') ?? old.description;
    const next = { ...configRule(protocol, portFields(protocol, from, to), src), id };
    const list = rulesOf(e, old.direction);
    const idx = (old.direction === INGRESS ? g.ingress : g.egress).findIndex((r) => r.id === id);
    list[idx] = next;
  });
  const model = validate(c.obj);
  return { obj: c.obj, model, xml: t('return', true) };
};

function updateDescriptions(dir: Direction): Mutation {
  return (_s, c, q) => {
    const g = targetGroup(c.model, q, true);
    const current = dir === INGRESS ? g.ingress : g.egress;
    const desc = new Map<string, string>();   // rule id → new description
    q.list('SecurityGroupRuleDescription').forEach((d, i) => {
      const id = d.need('SecurityGroupRuleId', `SecurityGroupRuleDescription.${i + 1}.`);
      checkRuleId(id);
      if (!current.some((r) => r.id === id)) throw ruleNotFound(id, g);
      desc.set(id, d.str('Description') ?? '');
    });
    const wanted = parsePermissions(q);
    if (wanted.length) {
      for (const w of canonicalRules(c, g, dir, wanted)) {
        const k = ruleKey(g.id, w);
        const r = current.find((x) => ruleKey(g.id, x) === k);
        if (!r) throw new AwsError('InvalidPermission.NotFound', `The specified rule does not exist in this security group: ${g.id} has no ${dirKey(dir)} rule ${awsProtocol(w.protocol)} ${peerText(w)}`);
        desc.set(r.id, w.description);
      }
    }
    if (desc.size === 0) throw new AwsError('MissingParameter', 'The request must contain the parameter IpPermissions or SecurityGroupRuleDescription');
    const e = editableGroup(c.obj, g);
    const list = rulesOf(e, dir);
    current.forEach((r, i) => {
      const d = desc.get(r.id);
      const o = list[i];
      if (d === undefined || !o) return;
      if (d === '') delete o.description;
      else o.description = d;
    });
    const model = validate(c.obj);
    return { obj: c.obj, model, xml: t('return', true) };
  };
}

export function instanceByRef(model: Model, ref: string): Instance {
  const i = model.instances.find((x) => x.id === ref || x.name === ref);
  if (i) return i;
  if (!/^i-[0-9a-f]+$/.test(ref)) throw new AwsError('InvalidInstanceID.Malformed', `Invalid id: "${clip(ref)}" (expecting "i-..." or an instance name)`);
  throw new AwsError('InvalidInstanceID.NotFound', `The instance ID '${clip(ref)}' does not exist`);
}

const modifyInstanceAttribute: Mutation = (_s, c, q) => {
  const inst = instanceByRef(c.model, q.need('InstanceId'));
  const ids = q.strings('GroupId');
  if (ids.length === 0) {
    const other = [...q.kids.keys()].filter((k) => k !== 'InstanceId' && !isCommonParameter(k));
    if (other.length) throw new AwsError('UnsupportedOperation', `ModifyInstanceAttribute supports only GroupId.N (the instance's security groups) in sgemu, not ${clip(other.join(', '))}`);
    throw new AwsError('MissingParameter', 'The request must contain the parameter GroupId.1');
  }
  for (const id of ids) groupById(c.model, id, 'GroupId.N');
  const entry = objList(c.obj, 'instances').find((o) => o.name === inst.name);
  if (!entry) throw new Error(`instance ${inst.name} is missing from the config object`);
  entry.securityGroups = ids;
  const model = validate(c.obj);
  return { obj: c.obj, model, xml: t('return', true) };
};

function tagResources(remove: boolean): Mutation {
  return (_s, c, q) => {
    const ids = q.strings('ResourceId');
    if (ids.length === 0) throw new AwsError('MissingParameter', 'The request must contain the parameter ResourceId.1');
    const tags = q.list('Tag').map((tg, i) => {
      const key = tg.need('Key', `Tag.${i + 1}.`);
      const value = tg.str('Value');
      if (!remove) checkTag(key, value ?? '');
      return { key, value };
    });
    if (tags.length === 0 && !remove) throw new AwsError('MissingParameter', 'The request must contain the parameter Tag.1.Key');
    const edit = (cur: Record<string, string>): Record<string, string> => {
      const out = { ...cur };
      if (remove && tags.length === 0) return {};
      for (const { key, value } of tags) {
        if (!remove) out[key] = value ?? '';
        else if (value === undefined || out[key] === value) delete out[key];
      }
      return out;
    };
    let groupsChanged = false;
    for (const id of ids) {
      if (id.startsWith('sgr-')) {
        checkRuleId(id);
        const owner = c.model.groups.find((g) => findRule(g, id, null));
        if (!owner) throw new AwsError('InvalidSecurityGroupRuleId.NotFound', `The security group rule ID '${clip(id)}' does not exist`);
        c.ruleTags.set(id, edit(c.ruleTags.get(id) ?? {}));
      } else if (id.startsWith('sg-')) {
        const g = groupById(c.model, id, 'ResourceId');
        const e = editableGroup(c.obj, g);
        const next = edit(g.tags);
        if (Object.keys(next).length) e.tags = next;
        else delete e.tags;
        groupsChanged = true;
      } else {
        throw new AwsError('InvalidID', `The ID '${clip(id)}' is not valid: sgemu tags security groups (sg-…) and security group rules (sgr-…)`);
      }
    }
    const model = groupsChanged ? validate(c.obj) : null;
    return { obj: groupsChanged ? c.obj : null, model, xml: t('return', true) };
  };
}

export const MUTATIONS: Record<string, Mutation> = {
  CreateSecurityGroup: createSecurityGroup,
  DeleteSecurityGroup: deleteSecurityGroup,
  AuthorizeSecurityGroupIngress: authorize(INGRESS),
  AuthorizeSecurityGroupEgress: authorize(EGRESS),
  RevokeSecurityGroupIngress: revoke(INGRESS),
  RevokeSecurityGroupEgress: revoke(EGRESS),
  ModifySecurityGroupRules: modifySecurityGroupRules,
  UpdateSecurityGroupRuleDescriptionsIngress: updateDescriptions(INGRESS),
  UpdateSecurityGroupRuleDescriptionsEgress: updateDescriptions(EGRESS),
  ModifyInstanceAttribute: modifyInstanceAttribute,
  CreateTags: tagResources(false),
  DeleteTags: tagResources(true),
  CreateNetworkAcl: nacl(createNetworkAcl),
  DeleteNetworkAcl: nacl(deleteNetworkAcl),
  CreateNetworkAclEntry: nacl(putNetworkAclEntry(false)),
  ReplaceNetworkAclEntry: nacl(putNetworkAclEntry(true)),
  DeleteNetworkAclEntry: nacl(deleteNetworkAclEntry),
  ReplaceNetworkAclAssociation: nacl(replaceNetworkAclAssociation),
};

/** A network ACL mutation (nacl.ts) as a service mutation: the same context and validation. */
function nacl(fn: (c: NaclCtx, q: QNode, v: Validate) => NaclPlan): Mutation {
  return (_s, c, q) => fn(c, q, validate);
}
