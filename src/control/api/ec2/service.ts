// The EC2 Query API for security groups (SPEC §4, Version 2016-11-15): request → XML response.
// Owns: the operations, their parameters (reference §4.2), responses (§4.3) and errors (§4.4),
// and the commit order of a change: validate → save the state file → apply to live traffic.
// Must not: validate rules itself. The API's state is a config object (SPEC §2 schema); every
// mutation edits a copy and validates it with loadConfigText, so the API and the config file share
// one validation path, one CIDR normalisation and one rule-id scheme (content-derived, stable).
// Invariants:
//   - handle() never throws; every failure is EC2 error XML (4xx client, 5xx only for our bugs
//     or a failed disk/apply, documented as InternalError);
//   - mutations run one at a time (a promise chain), each on the live model of that moment;
//   - an accepted change is durable (saveState) before applyModel and before the response;
//     a rejected request (or DryRun) changes nothing, in memory or on disk.

import { randomBytes, randomUUID, createHash } from 'node:crypto';
import { loadConfigText, modelToConfigObject } from '../../../config/load.js';
import { ruleKey } from '../../../config/ids.js';
import { objList } from '../../../config/to-object.js';
import { AwsError, ConfigErrors } from '../../../model/errors.js';
import { EGRESS, INGRESS, type Direction, type Instance, type Model, type Rule, type SecurityGroup } from '../../../model/types.js';
import { readStateFile, removeStaleTemps, saveState, type StateExtras } from '../../state.js';
import {
  awsProtocol, checkCidrFamily, configRule, groupArn, ipPermissionsXml, parseApiProtocol, parsePermissions, portFields,
  revokedRuleXml, ruleToConfig, securityGroupRuleXml, sourceKind, type ConfigRule, type RuleSource,
} from './permissions.js';
import { checkParameters, isCommonParameter } from './params.js';
import {
  createNetworkAcl, deleteNetworkAcl, deleteNetworkAclEntry, describeNetworkAcls, putNetworkAclEntry, replaceNetworkAclAssociation,
  type NaclCtx, type NaclPlan, type Validate,
} from './nacl.js';
import { clip, parseQuery, type QNode } from './query.js';
import { errorXml, items, n, successXml, t, tagSet } from './xml.js';

export interface Ec2Host {
  getModel(): Model;                          // the live model
  applyModel(model: Model): Promise<void>;    // swaps the live policy (the daemon's)
}

export interface Ec2Response {
  status: number;
  contentType: string;
  body: string;
  /** The action when it is one sgemu serves (a bounded set, for metrics labels); else undefined. */
  action?: string | undefined;
}

const CONTENT_TYPE = 'text/xml;charset=UTF-8';

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

type Obj = Record<string, unknown>;

/** What a mutation reads: the live model, a fresh config object of it, and copies of the extras. */
interface Ctx {
  model: Model;
  obj: Obj;
  ruleTags: Map<string, Record<string, string>>;
  deleted: Set<string>;
}

/** What a mutation produced: a validated config object and model (null when only extras changed). */
interface Plan {
  obj: Obj | null;
  model: Model | null;
  xml: string;
}

type Mutation = (s: Ec2Service, c: Ctx, q: QNode) => Plan;
type Reader = (s: Ec2Service, model: Model, q: QNode) => string;

export class Ec2Service {
  private readonly host: Ec2Host;
  private readonly statePath: string | null;
  private ruleTags = new Map<string, Record<string, string>>();
  private deleted = new Set<string>();
  private chain: Promise<unknown> = Promise.resolve();
  /** Temp files of writers killed mid-save, removed at construction (`state.json.tmp-PID`). */
  readonly removedTemps: string[] = [];

  constructor(host: Ec2Host, opts: { statePath: string | null }) {
    this.host = host;
    this.statePath = opts.statePath;
    if (this.statePath) {
      // The only writer of the file clears what writers killed mid-save left (issue 17).
      this.removedTemps = removeStaleTemps(this.statePath);
      // The rule tags and deletions of the last run; the groups themselves came in through the
      // daemon's loadState. An unreadable file was already reported there.
      try {
        const st = readStateFile(this.statePath);
        if (st) {
          // Only what fits the live model: after --reset-state (the file left in place) a group
          // "deleted" in the old state is live again, and must not be dropped at the next restart.
          const live = host.getModel();
          const ruleIds = new Set(live.groups.flatMap((g) => [...g.ingress, ...g.egress].map((r) => r.id)));
          for (const [id, tags] of Object.entries(st.extras.ruleTags)) if (ruleIds.has(id)) this.ruleTags.set(id, { ...tags });
          for (const id of st.extras.deletedGroupIds) if (!live.groups.some((g) => g.id === id)) this.deleted.add(id);
        }
      } catch { /* start without extras */ }
    }
  }

  /**
   * One request given as parameters (`{ Action, GroupId, 'IpPermissions.1.IpProtocol', … }`) →
   * the result XML (inside the response element). Throws AwsError exactly where handle() answers
   * with error XML: the Node API (src/node/) goes through here, so it shares every check and code.
   */
  async call(params: Record<string, string>): Promise<string> {
    const q = parseQuery(new URLSearchParams(params).toString());
    return this.dispatch(q, q.str('Action') ?? '');
  }

  private async dispatch(q: QNode, action: string): Promise<string> {
    if (action === '') throw new AwsError('MissingParameter', 'The request must contain the parameter Action');
    const mutation = Object.hasOwn(MUTATIONS, action) ? MUTATIONS[action] : undefined;
    const reader = Object.hasOwn(READERS, action) ? READERS[action] : undefined;
    if (!mutation && !reader) {
      throw new AwsError('InvalidAction', `The action ${clip(action)} is not valid for this web service; sgemu serves ${[...Object.keys(MUTATIONS), ...Object.keys(READERS)].sort().join(', ')}`);
    }
    checkParameters(action, q);        // EC2 rejects a parameter the action does not take first
    const dryRun = q.bool('DryRun');
    if (mutation) return this.serial(() => this.mutate(mutation, q, dryRun));
    if (!reader) throw new Error(`no handler for ${action}`);   // unreachable: checked above
    const xml = reader(this, this.host.getModel(), q);
    if (dryRun) throw dryRunError();
    return xml;
  }

  /** Body = the x-www-form-urlencoded POST body. Never throws: errors become EC2 error XML. */
  async handle(body: string): Promise<Ec2Response> {
    const requestId = randomUUID();
    let action = '';
    let known: string | undefined;
    try {
      const q = parseQuery(typeof body === 'string' ? body : '');
      action = q.str('Action') ?? '';
      if (Object.hasOwn(MUTATIONS, action) || Object.hasOwn(READERS, action)) known = action;
      const xml = await this.dispatch(q, action);
      return { status: 200, contentType: CONTENT_TYPE, body: successXml(action, requestId, xml), action: known };
    } catch (e) {
      if (e instanceof AwsError) return { status: e.status, contentType: CONTENT_TYPE, body: errorXml(e.code, e.message, requestId), action: known };
      const msg = e instanceof Error ? e.message : String(e);
      return {
        status: 500, contentType: CONTENT_TYPE, action: known,
        body: errorXml('InternalError', `sgemu failed on ${clip(action) || 'the request'} (please report): ${clip(msg, 300)}`, requestId),
      };
    }
  }

  /** Tags of a rule (the config schema has none; kept here and in the state file). */
  tagsOfRule(id: string): Record<string, string> {
    return this.ruleTags.get(id) ?? {};
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async mutate(m: Mutation, q: QNode, dryRun: boolean): Promise<string> {
    const model = this.host.getModel();
    const ctx: Ctx = {
      model,
      obj: asObj(modelToConfigObject(model)),
      ruleTags: new Map([...this.ruleTags].map(([k, v]) => [k, { ...v }])),
      deleted: new Set(this.deleted),
    };
    const plan = m(this, ctx, q);
    if (dryRun) throw dryRunError();
    const extras = (c: Ctx): StateExtras => ({ ruleTags: Object.fromEntries(c.ruleTags), deletedGroupIds: [...c.deleted] });
    if (this.statePath) {
      try {
        saveState(this.statePath, plan.obj ?? ctx.obj, extras(ctx));
      } catch (e) {
        throw new AwsError('InternalError', `could not save the state file ${this.statePath}: ${errText(e)}; nothing was changed`, 500);
      }
    }
    if (plan.model) {
      try {
        await this.host.applyModel(plan.model);
      } catch (e) {
        if (this.statePath) {
          try {
            saveState(this.statePath, asObj(modelToConfigObject(model)), { ruleTags: Object.fromEntries(this.ruleTags), deletedGroupIds: [...this.deleted] });
          } catch { /* the next accepted change rewrites it */ }
        }
        throw new AwsError('InternalError', `could not apply the change to live traffic: ${errText(e)}; nothing was changed`, 500);
      }
    }
    this.ruleTags = ctx.ruleTags;
    this.deleted = ctx.deleted;
    return plan.xml;
  }
}

function dryRunError(): AwsError {
  return new AwsError('DryRunOperation', 'Request would have succeeded, but DryRun flag is set.', 412);
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function asObj(v: unknown): Obj {
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Obj;
  throw new Error('modelToConfigObject did not return an object');
}

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

function groupById(model: Model, id: string, param = 'GroupId'): SecurityGroup {
  if (!SG_ID.test(id)) {
    throw new AwsError('InvalidGroupId.Malformed', `Invalid id: "${clip(id)}" (${param}: expecting "sg-..." e.g. sg-0123456789abcdef0)`);
  }
  const g = model.groups.find((x) => x.id === id);
  if (!g) throw new AwsError('InvalidGroup.NotFound', `The security group '${clip(id)}' does not exist`);
  return g;
}

/** GroupName resolves in the default (first) VPC, as EC2 resolves names in the default VPC. */
function groupByName(model: Model, name: string): SecurityGroup {
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

function checkRuleId(id: string): void {
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

function instanceByRef(model: Model, ref: string): Instance {
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

const MUTATIONS: Record<string, Mutation> = {
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

const READERS: Record<string, Reader> = {
  DescribeSecurityGroups: describeSecurityGroups,
  DescribeSecurityGroupRules: describeSecurityGroupRules,
  DescribeInstances: describeInstances,
  DescribeTags: describeTags,
  DescribeNetworkAcls: (_s, model, q) => describeNetworkAcls(model, q, { parseFilters, page }),
};

