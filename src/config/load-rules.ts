// Config loading, part one: the rules side of the file — region, quotas, VPCs (with their default
// groups), prefix lists, security groups and their rules, network ACLs — read into RulesLoader's
// maps, which the instance side (load-instances.ts) resolves its references against.
// Must not: throw (errors are recorded on the Reader), or read instances, services or subnets.
// Split out of load.ts along its seam; load.ts is the entry point and orders the passes.

import {
  protocolNumber, DEFAULT_QUOTAS, EGRESS, INGRESS, PROTO_ALL, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP,
  PROTO_UDP, protocolName, type AddressMapping, type Direction, type Instance, type Peer,
  type PrefixList, type Quotas, type Rule, type SecurityGroup, type SourcePos, type Vpc,
  DEFAULT_NACL_ENTRIES, NACL_RULE_MAX, NACL_RULE_MIN, defaultNetworkAcl, defaultNetworkAclId,
  sortNaclEntries, type NaclEntry, type NetworkAcl, type Subnet,
} from '../model/types.js';
import { parseCidr, parseIp, type ParsedCidr } from './cidr.js';
import { defaultGroupId, ruleId, ruleKey } from './ids.js';
import { checkAwsText, keyPath, Reader } from './read.js';
import { kindName, scalarText, type TMap, type TNode } from './yaml-tree.js';
import { CONFIG_OBJECTS, PATTERNS, fieldsOf } from './schema.js';

export const DEFAULT_REGION = 'us-east-1';
export const DEFAULT_ACCOUNT_ID = '000000000000';
export const DEFAULT_VPC_ID = 'vpc-local';

// Field lists and id patterns come from the schema (src/config/schema.ts), the one description of
// the file's shape; this loader adds everything a schema cannot say.
const VPC_KEYS = fieldsOf('vpc');
const QUOTA_KEYS = fieldsOf('quotas');
const PL_KEYS = fieldsOf('prefixList');
const PL_ENTRY_KEYS = fieldsOf('prefixListEntry');
const GROUP_KEYS = fieldsOf('securityGroup');
const RULE_KEYS = fieldsOf('rule');
const ACL_KEYS = fieldsOf('networkAcl');
const ACL_ENTRY_KEYS = fieldsOf('networkAclEntry');

const VPC_ID = new RegExp(PATTERNS.vpcId);
const SG_ID = new RegExp(PATTERNS.groupId);
const PL_ID = new RegExp(PATTERNS.prefixListId);
const SGR_ID = new RegExp(PATTERNS.ruleId);
const ACL_ID = new RegExp(PATTERNS.networkAclId);
const QUOTAS = CONFIG_OBJECTS.quotas.properties;
export const range = (s: { minimum: number; maximum: number }): [number, number] => [s.minimum, s.maximum];

export interface GroupEntry {
  group: SecurityGroup;
  node: TMap | null;          // null for an implicit default group
  path: string;
}

/** The loader's state (filled in file order by run() in load.ts) and the rules side's passes. */
export class RulesLoader {
  readonly r: Reader;
  region = DEFAULT_REGION;
  accountId = DEFAULT_ACCOUNT_ID;
  quotas: Quotas = { ...DEFAULT_QUOTAS };
  vpcs: Vpc[] = [];
  prefixLists = new Map<string, PrefixList>();
  groups: GroupEntry[] = [];
  groupsById = new Map<string, GroupEntry>();
  groupsByName = new Map<string, GroupEntry>();   // `${vpcId}\0${lower(name)}`
  defaultByVpc = new Map<string, GroupEntry>();
  ruleKeys = new Map<string, string>();          // ruleKey → path of the first rule with it
  instances: Instance[] = [];
  addresses: AddressMapping[] = [];
  networkAcls = new Map<string, NetworkAcl>();
  subnets = new Map<string, Subnet>();
  explicitAcls = false;

  constructor(fileName: string) {
    this.r = new Reader(fileName);
  }
  readRegion(top: TMap): void {
    const r = this.r;
    const rn = r.child(top, 'region');
    const region = r.str(rn, 'region', 'region');
    if (rn && region !== undefined) {
      if (/^[a-z]{2}(-[a-z]+)+-\d{1,2}$/.test(region)) this.region = region;
      else r.err('InvalidParameterValue', 'region', rn.pos, `region "${region}" is not an AWS region name (e.g. us-east-1, eu-west-2)`);
    }
    const an = r.child(top, 'accountId');
    if (an) {
      // YAML reads an unquoted 000000000000 as the number 0: use the text as written.
      const text = an.kind === 'scalar' ? (an.source !== null && /^\d+$/.test(an.source) ? an.source : typeof an.value === 'string' ? an.value : String(an.value)) : '';
      if (/^\d{12}$/.test(text)) this.accountId = text;
      else r.err('InvalidParameterValue', 'accountId', an.pos, `accountId ${JSON.stringify(text)} must be 12 digits (e.g. "123456789012")`);
    }
  }

  readQuotas(top: TMap): void {
    const r = this.r;
    const qn = r.child(top, 'quotas');
    if (!qn) return;
    const q = r.map(qn, 'quotas', QUOTA_KEYS, 'quotas');
    if (!q) return;
    const gpi = r.int(r.child(q, 'groupsPerInstance'), 'quotas.groupsPerInstance', 'quotas.groupsPerInstance', ...range(QUOTAS.groupsPerInstance));
    const rpg = r.int(r.child(q, 'rulesPerGroup'), 'quotas.rulesPerGroup', 'quotas.rulesPerGroup', ...range(QUOTAS.rulesPerGroup));
    const nae = r.int(r.child(q, 'networkAclEntries'), 'quotas.networkAclEntries', 'quotas.networkAclEntries', ...range(QUOTAS.networkAclEntries));
    if (nae !== undefined) this.quotas = { ...this.quotas, naclEntriesPerDirection: nae };
    const groupsPerInstance = gpi ?? DEFAULT_QUOTAS.groupsPerInstance;
    const rulesPerGroup = rpg ?? DEFAULT_QUOTAS.rulesPerGroupPerDirection;
    if (groupsPerInstance * rulesPerGroup > DEFAULT_QUOTAS.rulesTimesGroups) {
      // AWS: rules per group × groups per interface may not exceed 1,000 (amazon-vpc-limits).
      r.err('InvalidParameterValue', 'quotas', qn.pos,
        `rulesPerGroup ${rulesPerGroup} × groupsPerInstance ${groupsPerInstance} = ${rulesPerGroup * groupsPerInstance} is over AWS's limit of ${DEFAULT_QUOTAS.rulesTimesGroups}; lower one of them (e.g. rulesPerGroup ${Math.floor(DEFAULT_QUOTAS.rulesTimesGroups / groupsPerInstance)})`);
      return;
    }
    this.quotas = { ...this.quotas, groupsPerInstance, rulesPerGroupPerDirection: rulesPerGroup };
  }

  readVpcs(top: TMap): void {
    const r = this.r;
    const vn = r.child(top, 'vpcs');
    if (!vn) {
      this.vpcs = [{ id: DEFAULT_VPC_ID }];
    } else {
      const items = r.list(vn, 'vpcs', 'vpcs');
      const seen = new Set<string>();
      for (const { node, path } of items) {
        // `- vpc-a` is accepted as short for `- { id: vpc-a }`.
        let idNode: TNode | undefined = node;
        if (node.kind === 'map') {
          const m = r.map(node, path, VPC_KEYS, 'a VPC');
          idNode = m ? r.need(m, 'id', path, 'a VPC') : undefined;
        }
        const id = r.str(idNode, keyPath(path, 'id'), 'VPC id');
        if (id === undefined || !idNode) continue;
        if (!VPC_ID.test(id)) { r.err('InvalidParameterValue', keyPath(path, 'id'), idNode.pos, `VPC id "${id}" must look like vpc-<letters, digits, . _ ->, e.g. vpc-local`); continue; }
        if (seen.has(id)) { r.err('InvalidParameterValue', keyPath(path, 'id'), idNode.pos, `VPC id "${id}" is listed twice`); continue; }
        seen.add(id);
        this.vpcs.push({ id, pos: r.sourcePos(path, node) });
      }
      if (items.length === 0 && vn.kind === 'seq') {
        r.err('InvalidParameterValue', 'vpcs', vn.pos, 'vpcs is empty; list at least one VPC or leave vpcs out for the default vpc-local');
      }
    }
    for (const v of this.vpcs) {
      const id = defaultGroupId(v.id);
      const g: SecurityGroup = {
        id, name: 'default', vpcId: v.id, description: 'default VPC security group',
        ingress: [], egress: [], isDefault: true, tags: {},
      };
      const entry: GroupEntry = { group: g, node: null, path: '' };
      this.groups.push(entry);
      this.groupsById.set(id, entry);
      this.groupsByName.set(`${v.id}\0default`, entry);
      this.defaultByVpc.set(v.id, entry);
    }
  }

  /** The VPC a group or instance names, or the only VPC; undefined (error recorded) otherwise. */
  vpcOf(m: TMap, path: string, what: string): string | undefined {
    const r = this.r;
    const n = r.child(m, 'vpc');
    if (!n) {
      if (this.vpcs.length === 1) return this.vpcs[0]?.id;
      if (this.vpcs.length > 1) {
        r.err('MissingParameter', keyPath(path, 'vpc'), m.pos, `${what} needs "vpc" when there are several VPCs (${this.vpcs.map((v) => v.id).join(', ')})`);
      }
      return undefined;
    }
    const id = r.str(n, keyPath(path, 'vpc'), 'vpc');
    if (id === undefined) return undefined;
    if (!this.vpcs.some((v) => v.id === id)) {
      r.err('InvalidVpcID.NotFound', keyPath(path, 'vpc'), n.pos, `The vpc ID '${id}' does not exist; VPCs: ${this.vpcs.map((v) => v.id).join(', ')}`);
      return undefined;
    }
    return id;
  }

  readPrefixLists(top: TMap): void {
    const r = this.r;
    for (const { node, path } of r.list(r.child(top, 'prefixLists'), 'prefixLists', 'prefixLists')) {
      const m = r.map(node, path, PL_KEYS, 'a prefix list');
      if (!m) continue;
      const idNode = r.need(m, 'id', path, 'a prefix list');
      const id = r.str(idNode, keyPath(path, 'id'), 'prefix list id');
      let ok = id !== undefined;
      if (id !== undefined && idNode && !PL_ID.test(id)) {
        r.err('InvalidParameterValue', keyPath(path, 'id'), idNode.pos, `prefix list id "${id}" must look like pl-<letters, digits, . _ ->, e.g. pl-office`);
        ok = false;
      } else if (id !== undefined && idNode && this.prefixLists.has(id)) {
        r.err('InvalidParameterValue', keyPath(path, 'id'), idNode.pos, `prefix list id "${id}" is defined twice`);
        ok = false;
      }
      const nameNode = r.child(m, 'name');
      const name = r.str(nameNode, keyPath(path, 'name'), 'prefix list name');
      const entries: PrefixList['entries'] = [];
      const entryNode = r.need(m, 'entries', path, 'a prefix list');
      const parsed: { c: ParsedCidr; path: string }[] = [];
      for (const e of r.list(entryNode, keyPath(path, 'entries'), 'prefix list entries')) {
        let cidrNode: TNode | undefined = e.node;
        let cidrPath = e.path;
        let description = '';
        if (e.node.kind === 'map') {
          const em = r.map(e.node, e.path, PL_ENTRY_KEYS, 'a prefix list entry');
          if (!em) continue;
          cidrPath = keyPath(e.path, 'cidr');
          cidrNode = r.need(em, 'cidr', e.path, 'a prefix list entry');
          const dn = r.child(em, 'description');
          const d = r.str(dn, keyPath(e.path, 'description'), 'entry description');
          if (d !== undefined && dn && checkAwsText(r, d, keyPath(e.path, 'description'), dn, 'entry description')) description = d;
        }
        const text = r.str(cidrNode, cidrPath, 'prefix list entry');
        if (text === undefined || !cidrNode) continue;
        const c = parseCidr(text);
        if (!c) { r.err('InvalidParameterValue', cidrPath, cidrNode.pos, cidrMessage(text)); continue; }
        const dup = parsed.find((p) => p.c.text === c.text);
        if (dup) { r.err('InvalidParameterValue', cidrPath, cidrNode.pos, `entry ${c.text} is already in the list at ${dup.path}`); continue; }
        parsed.push({ c, path: cidrPath });
        entries.push({ cidr: c.text, family: c.family, description });
      }
      const maxNode = r.child(m, 'maxEntries');
      const max = r.int(maxNode, keyPath(path, 'maxEntries'), 'maxEntries', 1, 1000);
      if (max !== undefined && maxNode && max < entries.length) {
        r.err('InvalidParameterValue', keyPath(path, 'maxEntries'), maxNode.pos, `maxEntries ${max} is below the ${entries.length} entries of the list; raise it to at least ${entries.length}`);
      }
      if (ok && id !== undefined) {
        this.prefixLists.set(id, { id, name: name ?? id, entries, maxEntries: Math.max(max ?? entries.length, entries.length), pos: r.sourcePos(path, m) });
      }
    }
  }

  readGroups(top: TMap): void {
    const r = this.r;
    const items = r.list(r.child(top, 'securityGroups'), 'securityGroups', 'securityGroups');
    // Pass 1: ids, names, VPCs, so rules may reference any group, before or after their own.
    for (const { node, path } of items) {
      const m = r.map(node, path, GROUP_KEYS, 'a security group');
      if (!m) continue;
      const isDefault = r.bool(r.child(m, 'default'), keyPath(path, 'default'), 'default') === true;
      const vpcId = this.vpcOf(m, path, 'a security group');
      const idNode = isDefault ? r.child(m, 'id') : r.need(m, 'id', path, 'a security group');
      const id = r.str(idNode, keyPath(path, 'id'), 'group id');
      const tags = this.readTags(m, path);
      const dn = r.child(m, 'description');
      let description = r.str(dn, keyPath(path, 'description'), 'group description') ?? '';
      if (dn && !checkAwsText(r, description, keyPath(path, 'description'), dn, 'group description')) description = '';
      if (isDefault) {
        // `default: true` gives the rules of the VPC's implicit default group (state files use it).
        if (vpcId === undefined) continue;
        const entry = this.defaultByVpc.get(vpcId);
        if (!entry) continue;
        if (id !== undefined && idNode && id !== entry.group.id) {
          r.err('InvalidParameterValue', keyPath(path, 'id'), idNode.pos, `the default group of ${vpcId} has the id ${entry.group.id}, not "${id}"; leave id out`);
        }
        const nn = r.child(m, 'name');
        if (nn) r.err('InvalidParameterValue', keyPath(path, 'name'), nn.pos, 'the default group is always named "default"; leave name out');
        if (dn) r.err('InvalidParameterValue', keyPath(path, 'description'), dn.pos, 'the default group\'s description is fixed ("default VPC security group"); leave description out');
        if (entry.node) {
          r.err('InvalidGroup.Duplicate', keyPath(path, 'default'), m.pos, `the default group of ${vpcId} is already given at ${entry.path}`);
          continue;
        }
        entry.node = m;
        entry.path = path;
        entry.group.tags = tags;
        entry.group.pos = r.sourcePos(path, m);
        continue;
      }
      if (id === undefined || !idNode) continue;
      if (!SG_ID.test(id)) {
        r.err('InvalidParameterValue', keyPath(path, 'id'), idNode.pos, `group id "${id}" must look like sg-<letters, digits, . _ ->, e.g. sg-web`);
        continue;
      }
      const prior = this.groupsById.get(id);
      if (prior) {
        r.err('InvalidGroup.Duplicate', keyPath(path, 'id'), idNode.pos,
          `The security group '${id}' already exists${prior.group.isDefault ? ` (it is the id of the default group of ${prior.group.vpcId})` : ` at ${prior.path}`}`);
        continue;
      }
      const nameNode = r.child(m, 'name');
      let name = id;
      if (nameNode) {
        const given = r.str(nameNode, keyPath(path, 'name'), 'group name');
        if (given === undefined) continue;
        const trimmed = given.replace(/\s+$/, '');
        if (trimmed.toLowerCase() === 'default') {
          r.err('InvalidGroup.Reserved', keyPath(path, 'name'), nameNode.pos,
            `The security group name 'default' is reserved for the VPC's implicit default group; pick another name, or use "default: true" to give the default group's rules`);
          continue;
        }
        if (trimmed === '') { r.err('InvalidParameterValue', keyPath(path, 'name'), nameNode.pos, 'group name is empty; leave it out to use the id'); continue; }
        if (/^sg-/i.test(trimmed)) {
          r.err('InvalidParameterValue', keyPath(path, 'name'), nameNode.pos, `group name "${trimmed}" may not start with sg- (AWS reserves it for ids); e.g. "${trimmed.slice(3) || 'web'}"`);
          continue;
        }
        if (!checkAwsText(r, trimmed, keyPath(path, 'name'), nameNode, 'group name')) continue;
        name = trimmed;
      }
      if (vpcId === undefined) continue;
      const nameKey = `${vpcId}\0${name.toLowerCase()}`;
      const same = this.groupsByName.get(nameKey);
      if (same) {
        r.err('InvalidGroup.Duplicate', keyPath(path, nameNode ? 'name' : 'id'), (nameNode ?? idNode).pos,
          `The security group name '${name}' already exists in ${vpcId} (${same.path || 'default group'}); names are unique per VPC, case-insensitively`);
        continue;
      }
      const g: SecurityGroup = {
        id, name, vpcId, description, ingress: [], egress: [], isDefault: false, tags, pos: r.sourcePos(path, m),
      };
      const entry: GroupEntry = { group: g, node: m, path };
      this.groups.push(entry);
      this.groupsById.set(id, entry);
      this.groupsByName.set(nameKey, entry);
    }
    // Pass 2: rules, for every group (implicit defaults included).
    for (const entry of this.groups) {
      const g = entry.group;
      const m = entry.node;
      if (g.isDefault) {
        const self: Peer = { kind: 'group', groupId: g.id };
        g.ingress = m && r.has(m, 'ingress')
          ? this.readRules(entry, INGRESS, m)
          : [this.makeRule(g.id, INGRESS, PROTO_ALL, -1, -1, self, '')];
      } else if (m) {
        g.ingress = this.readRules(entry, INGRESS, m);
      }
      g.egress = m && r.has(m, 'egress') ? this.readRules(entry, EGRESS, m) : this.defaultEgress(g.id);
      this.checkRuleQuota(entry, INGRESS);
      this.checkRuleQuota(entry, EGRESS);
    }
  }

  readTags(m: TMap, path: string): Record<string, string> {
    const r = this.r;
    const tags: Record<string, string> = {};
    const tn = r.child(m, 'tags');
    if (!tn) return tags;
    const tpath = keyPath(path, 'tags');
    if (tn.kind !== 'map') {
      r.err('InvalidParameterValue', tpath, tn.pos, 'tags must be a mapping of key: value');
      return tags;
    }
    for (const [k, { keyPos, node }] of tn.entries) {
      const p = keyPath(tpath, k);
      if (k.length === 0 || k.length > 128) { r.err('InvalidParameterValue', p, keyPos, `tag key "${k}" must be 1..128 characters`); continue; }
      const v = node.kind === 'scalar' && node.value === null ? '' : r.str(node, p, `tag ${k}`);
      if (v === undefined) continue;
      if (v.length > 256) { r.err('InvalidParameterValue', p, node.pos, `tag ${k} is ${v.length} characters; at most 256`); continue; }
      tags[k] = v;
    }
    return tags;
  }

  defaultEgress(groupId: string): Rule[] {
    // AWS gives a new group one all-traffic egress rule; we add ::/0 too so IPv6 instances can
    // reach out by default (AWS adds it in VPCs with an IPv6 CIDR; reference §1.6).
    return [
      this.makeRule(groupId, EGRESS, PROTO_ALL, -1, -1, { kind: 'cidr', cidr: '0.0.0.0/0', family: 4 }, ''),
      this.makeRule(groupId, EGRESS, PROTO_ALL, -1, -1, { kind: 'cidr', cidr: '::/0', family: 6 }, ''),
    ];
  }

  makeRule(groupId: string, direction: Direction, protocol: number, fromPort: number, toPort: number, peer: Peer, description: string, pos?: SourcePos, id?: string): Rule {
    const rule: Rule = {
      id: id ?? ruleId(groupId, { direction, protocol, fromPort, toPort, peer }),
      groupId, direction, protocol, fromPort, toPort, peer, description,
    };
    if (pos) rule.pos = pos;
    return rule;
  }

  readRules(entry: GroupEntry, direction: Direction, m: TMap): Rule[] {
    const r = this.r;
    const key = direction === INGRESS ? 'ingress' : 'egress';
    const listPath = keyPath(entry.path, key);
    const out: Rule[] = [];
    for (const { node, path } of r.list(r.child(m, key), listPath, key)) {
      out.push(...this.readRule(entry.group, direction, node, path));
    }
    return out;
  }

  readRule(g: SecurityGroup, direction: Direction, node: TNode, path: string): Rule[] {
    const r = this.r;
    const m = r.map(node, path, RULE_KEYS, 'a rule');
    if (!m) return [];
    const pos = r.sourcePos(path, m);
    const ports = this.readProtocolAndPorts(m, path);
    const dn = r.child(m, 'description');
    let description = r.str(dn, keyPath(path, 'description'), 'rule description') ?? '';
    if (dn && !checkAwsText(r, description, keyPath(path, 'description'), dn, 'rule description')) description = '';

    const peers: { peer: Peer; node: TNode; path: string }[] = [];
    const toward = direction === INGRESS ? 'source' : 'destination';
    for (const c of r.list(r.child(m, 'cidr'), keyPath(path, 'cidr'), 'cidr', true)) {
      const text = r.str(c.node, c.path, 'cidr');
      if (text === undefined) continue;
      const parsed = parseCidr(text);
      if (!parsed) { r.err('InvalidParameterValue', c.path, c.node.pos, cidrMessage(text)); continue; }
      peers.push({ peer: { kind: 'cidr', cidr: parsed.text, family: parsed.family }, node: c.node, path: c.path });
    }
    for (const c of r.list(r.child(m, 'groups'), keyPath(path, 'groups'), 'groups', true)) {
      const ref = r.str(c.node, c.path, 'group reference');
      if (ref === undefined) continue;
      const target = ref === 'self' && !this.groupsByName.has(`${g.vpcId}\0self`) ? g : this.resolveGroup(ref, g.vpcId, c.path, c.node, `a rule of ${g.id}`);
      if (target) peers.push({ peer: { kind: 'group', groupId: target.id }, node: c.node, path: c.path });
    }
    for (const c of r.list(r.child(m, 'prefixLists'), keyPath(path, 'prefixLists'), 'prefixLists', true)) {
      const ref = r.str(c.node, c.path, 'prefix list');
      if (ref === undefined) continue;
      if (!this.prefixLists.has(ref)) {
        const known = [...this.prefixLists.keys()];
        r.err('InvalidPrefixListID.NotFound', c.path, c.node.pos,
          `The prefix list ID '${ref}' does not exist; ${known.length ? `defined: ${known.join(', ')}` : 'define it under prefixLists:'}`);
        continue;
      }
      peers.push({ peer: { kind: 'prefixList', prefixListId: ref }, node: c.node, path: c.path });
    }
    if (peers.length === 0) {
      const given = ['cidr', 'groups', 'prefixLists'].some((k) => {
        const n = r.child(m, k);
        return n !== undefined && !(n.kind === 'seq' && n.items.length === 0);
      });
      if (!given) {
        r.err('MissingParameter', path, m.pos,
          `Missing ${toward} specification: a rule needs at least one of cidr, groups or prefixLists (e.g. cidr: 0.0.0.0/0)`);
      }
      return [];
    }
    const idNode = r.child(m, 'id');
    let givenId: string | undefined;
    if (idNode) {
      const id = r.str(idNode, keyPath(path, 'id'), 'rule id');
      if (id !== undefined && !SGR_ID.test(id)) r.err('InvalidParameterValue', keyPath(path, 'id'), idNode.pos, `rule id "${id}" must be sgr- and 17 hex digits`);
      else if (id !== undefined && peers.length !== 1) r.err('InvalidParameterValue', keyPath(path, 'id'), idNode.pos, 'a rule id may only be given on a rule with exactly one cidr, group or prefix list');
      else givenId = id;
    }
    if (!ports) return [];
    const rules: Rule[] = [];
    for (const p of peers) {
      const rule = this.makeRule(g.id, direction, ports.protocol, ports.from, ports.to, p.peer, description, pos, givenId);
      const k = ruleKey(g.id, rule);
      const first = this.ruleKeys.get(k);
      if (first !== undefined) {
        r.err('InvalidPermission.Duplicate', p.path, p.node.pos,
          `the specified rule "peer: ${peerText(p.peer)}, ${protocolName(rule.protocol).toUpperCase()}, ${portText(rule)}, ALLOW" already exists at ${first} (after normalisation)`);
        continue;
      }
      this.ruleKeys.set(k, p.path);
      rules.push(rule);
    }
    return rules;
  }

  /** protocol + ports / icmpType / icmpCode → the model's protocol, fromPort, toPort. */
  readProtocolAndPorts(m: TMap, path: string, what = 'a rule'): { protocol: number; from: number; to: number } | undefined {
    const r = this.r;
    const pn = r.need(m, 'protocol', path, what);
    if (!pn) return undefined;
    const protocol = parseProtocol(pn);
    const ppath = keyPath(path, 'protocol');
    if (protocol === undefined) {
      r.err('InvalidParameterValue', ppath, pn.pos, `protocol ${pn.kind === 'scalar' ? scalarText(pn) : kindName(pn)} is not valid; use tcp, udp, icmp, icmpv6, all, -1 or a protocol number 0..255`);
      return undefined;
    }
    const portsNode = r.child(m, 'ports');
    const typeNode = r.child(m, 'icmpType');
    const codeNode = r.child(m, 'icmpCode');
    const name = protocolName(protocol);
    if (protocol === PROTO_TCP || protocol === PROTO_UDP) {
      for (const [k, n] of [['icmpType', typeNode], ['icmpCode', codeNode]] as const) {
        if (n) r.err('InvalidParameterValue', keyPath(path, k), n.pos, `${k} applies to icmp and icmpv6 only; ${name} takes ports`);
      }
      if (!portsNode) {
        r.err('MissingParameter', keyPath(path, 'ports'), m.pos, `a ${name} rule needs ports: e.g. 443, "8000-8100" or all`);
        return undefined;
      }
      const range = this.readPorts(portsNode, keyPath(path, 'ports'));
      return range ? { protocol, from: range.from, to: range.to } : undefined;
    }
    if (protocol === PROTO_ICMP || protocol === PROTO_ICMPV6) {
      if (portsNode) {
        r.err('InvalidParameterValue', keyPath(path, 'ports'), portsNode.pos, `ports do not apply to ${name}; use icmpType and icmpCode (-1 = any)`);
        return undefined;
      }
      if (!typeNode) {
        if (protocol === PROTO_ICMPV6 && !codeNode) return { protocol, from: -1, to: -1 };
        r.err('MissingParameter', keyPath(path, 'icmpType'), m.pos, `a ${name} rule needs icmpType (0..255, or -1 for any type), e.g. icmpType: 8 for echo request`);
        return undefined;
      }
      const type = r.int(typeNode, keyPath(path, 'icmpType'), 'icmpType', -1, 255);
      const code = codeNode ? r.int(codeNode, keyPath(path, 'icmpCode'), 'icmpCode', -1, 255) : -1;
      if (type === undefined || code === undefined) return undefined;
      if (type === -1 && code !== -1) {
        r.err('InvalidParameterValue', keyPath(path, 'icmpCode'), codeNode?.pos ?? m.pos, `icmpType -1 (any type) needs icmpCode -1, not ${code}`);
        return undefined;
      }
      return { protocol, from: type, to: code };
    }
    // all (-1) and other protocol numbers: AWS ignores any ports; we tell the user.
    for (const [k, n] of [['ports', portsNode], ['icmpType', typeNode], ['icmpCode', codeNode]] as const) {
      if (n) {
        r.err('InvalidParameterValue', keyPath(path, k), n.pos, `${k} do not apply to protocol ${name}: it always covers every port (AWS ignores them); remove ${k}`);
        return undefined;
      }
    }
    return { protocol, from: -1, to: -1 };
  }

  readPorts(n: TNode, path: string): { from: number; to: number } | undefined {
    const r = this.r;
    let from: number | undefined, to: number | undefined;
    let text = '';
    if (n.kind === 'scalar' && typeof n.value === 'number' && Number.isInteger(n.value)) {
      from = to = n.value;
      text = String(n.value);
    } else if (n.kind === 'scalar' && typeof n.value === 'string') {
      text = n.value.trim();
      if (/^all$/i.test(text)) return { from: 0, to: 65535 };
      const single = /^-?\d+$/.exec(text);
      const range = /^(-?\d+)\s*-\s*(-?\d+)$/.exec(text);
      if (single) from = to = Number(text);
      else if (range) { from = Number(range[1]); to = Number(range[2]); }
    }
    if (from === undefined || to === undefined) {
      r.err('InvalidParameterValue', path, n.pos, `ports ${n.kind === 'scalar' ? scalarText(n) : kindName(n)} is not valid; use a port (8080), a range ("8000-8100") or all`);
      return undefined;
    }
    for (const p of [from, to]) {
      if (p < 0 || p > 65535) {
        // A port beyond a double's range is Infinity: name the value as written instead.
        const shown = Number.isSafeInteger(p) ? `(${p}) out of range in "${text}"` : `out of range in ${n.kind === 'scalar' ? scalarText(n) : text}`;
        r.err('InvalidPermission.Malformed', path, n.pos, `TCP/UDP port ${shown}; ports are 0..65535`);
        return undefined;
      }
    }
    if (from > to) {
      r.err('InvalidParameterValue', path, n.pos, `"${text}": start is above end; use "${to}-${from}"`);
      return undefined;
    }
    return { from, to };
  }

  /** A group id or name in `vpcId`; InvalidGroup.NotFound (error recorded) otherwise. */
  resolveGroup(ref: string, vpcId: string, path: string, n: TNode, user: string): SecurityGroup | undefined {
    const r = this.r;
    const byId = this.groupsById.get(ref);
    const byName = this.groupsByName.get(`${vpcId}\0${ref.toLowerCase()}`);
    const found = byId?.group.vpcId === vpcId ? byId : byName;
    if (found) return found.group;
    const elsewhere = byId ?? [...this.groupsByName.entries()].find(([k]) => k.endsWith(`\0${ref.toLowerCase()}`))?.[1];
    if (elsewhere) {
      r.err('InvalidGroup.NotFound', path, n.pos,
        `The security group '${ref}' is in another VPC (${elsewhere.group.vpcId}); ${user} is in ${vpcId}, and groups only apply within their own VPC`);
    } else {
      const names = this.groups.filter((e) => e.group.vpcId === vpcId).map((e) => e.group.isDefault ? 'default' : e.group.id);
      r.err('InvalidGroup.NotFound', path, n.pos, `The security group '${ref}' does not exist in ${vpcId}; groups there: ${names.join(', ')}`);
    }
    return undefined;
  }

  /**
   * AWS counts rules per group per direction per address family (amazon-vpc-limits): a CIDR
   * counts in its family, a group reference as 1 IPv4 + 1 IPv6, a prefix list as its maxEntries
   * in the family (or families) of its entries.
   */
  checkRuleQuota(entry: GroupEntry, direction: Direction): void {
    const g = entry.group;
    let v4 = 0, v6 = 0;
    for (const rule of direction === INGRESS ? g.ingress : g.egress) {
      const p = rule.peer;
      if (p.kind === 'cidr') { if (p.family === 4) v4++; else v6++; }
      else if (p.kind === 'group') { v4++; v6++; }
      else {
        const pl = this.prefixLists.get(p.prefixListId);
        if (!pl) continue;
        const has6 = pl.entries.some((e) => e.family === 6);
        const has4 = pl.entries.some((e) => e.family === 4) || !has6;
        if (has4) v4 += pl.maxEntries;
        if (has6) v6 += pl.maxEntries;
      }
    }
    const max = this.quotas.rulesPerGroupPerDirection;
    const key = direction === INGRESS ? 'ingress' : 'egress';
    for (const [fam, n] of [['IPv4', v4], ['IPv6', v6]] as const) {
      if (n > max) {
        const node = entry.node ? this.r.child(entry.node, key) : undefined;
        this.r.err('RulesPerSecurityGroupLimitExceeded', entry.path ? keyPath(entry.path, key) : key, node?.pos ?? entry.node?.pos,
          `The maximum number of rules per security group has been reached: ${g.id} has ${n} ${fam} ${key} rules (group references count 1 per family, prefix lists their maxEntries), over the quota of ${max}; raise quotas.rulesPerGroup or split the group`);
      }
    }
  }

  /**
   * networkAcls: each VPC's default NACL (AWS: rule 100 allows all, both directions; `default: true`
   * gives its entries instead, as state files do), then the NACLs defined here, which start with only
   * the final `*` deny (a new NACL in AWS) plus the entries listed.
   */
  readNetworkAcls(top: TMap): void {
    const r = this.r;
    for (const v of this.vpcs) this.networkAcls.set(defaultNetworkAclId(v.id), defaultNetworkAcl(v.id));
    for (const { node, path } of r.list(r.child(top, 'networkAcls'), 'networkAcls', 'networkAcls')) {
      const m = r.map(node, path, ACL_KEYS, 'a network ACL');
      if (!m) continue;
      const isDefault = r.bool(r.child(m, 'default'), keyPath(path, 'default'), 'default') === true;
      const vpcId = this.vpcOf(m, path, 'a network ACL');
      const idNode = isDefault ? r.child(m, 'id') : r.need(m, 'id', path, 'a network ACL');
      const id = r.str(idNode, keyPath(path, 'id'), 'network ACL id');
      const tags = this.readTags(m, path);
      if (vpcId === undefined) continue;
      let acl: NetworkAcl;
      if (isDefault) {
        const did = defaultNetworkAclId(vpcId);
        if (id !== undefined && idNode && id !== did) {
          r.err('InvalidParameterValue', keyPath(path, 'id'), idNode.pos, `the default network ACL of ${vpcId} has the id ${did}, not "${id}"; leave id out`);
          continue;
        }
        const cur = this.networkAcls.get(did);
        if (cur?.pos) { r.err('NetworkAclAlreadyExists', keyPath(path, 'default'), m.pos, `the default network ACL of ${vpcId} is already given at ${cur.pos.path}`); continue; }
        acl = { id: did, vpcId, isDefault: true, entries: [], tags, pos: r.sourcePos(path, m) };
      } else {
        if (id === undefined || !idNode) continue;
        if (!ACL_ID.test(id)) {
          r.err('InvalidParameterValue', keyPath(path, 'id'), idNode.pos, `network ACL id "${id}" must look like acl-<letters, digits, . _ ->, e.g. acl-app`);
          continue;
        }
        const prior = this.networkAcls.get(id);
        if (prior) {
          r.err('InvalidParameterValue', keyPath(path, 'id'), idNode.pos,
            `network ACL id "${id}" is already ${prior.isDefault ? `the default network ACL of ${prior.vpcId}` : `defined at ${prior.pos?.path ?? 'another entry'}`}`);
          continue;
        }
        acl = { id, vpcId, isDefault: false, entries: [], tags, pos: r.sourcePos(path, m) };
      }
      acl.entries = this.readNaclEntries(m, path, acl.id);
      this.networkAcls.set(acl.id, acl);
    }
  }

  readNaclEntries(m: TMap, path: string, aclId: string): NaclEntry[] {
    const r = this.r;
    const out: NaclEntry[] = [];
    const seen = new Map<string, string>();                 // direction|ruleNumber → path
    const en = r.child(m, 'entries');
    const epath = keyPath(path, 'entries');
    for (const { node, path: p } of r.list(en, epath, 'entries')) {
      const em = r.map(node, p, ACL_ENTRY_KEYS, 'a network ACL entry');
      if (!em) continue;
      const rnNode = r.need(em, 'ruleNumber', p, 'a network ACL entry');
      const ruleNumber = r.int(rnNode, keyPath(p, 'ruleNumber'), 'ruleNumber', NACL_RULE_MIN, NACL_RULE_MAX);
      const egNode = r.need(em, 'egress', p, 'a network ACL entry (true: outbound, false: inbound)');
      const egress = r.bool(egNode, keyPath(p, 'egress'), 'egress');
      const ports = this.readProtocolAndPorts(em, p, 'a network ACL entry');
      const cn = r.need(em, 'cidr', p, 'a network ACL entry');
      const ctext = r.str(cn, keyPath(p, 'cidr'), 'cidr');
      let cidr: ParsedCidr | null = null;
      if (ctext !== undefined && cn) {
        cidr = parseCidr(ctext);
        if (!cidr) r.err('InvalidParameterValue', keyPath(p, 'cidr'), cn.pos, cidrMessage(ctext));
      }
      const an = r.need(em, 'action', p, 'a network ACL entry (allow or deny)');
      const atext = r.str(an, keyPath(p, 'action'), 'action');
      let allow: boolean | undefined;
      if (atext !== undefined && an) {
        const a = atext.trim().toLowerCase();
        if (a === 'allow' || a === 'deny') allow = a === 'allow';
        else r.err('InvalidParameterValue', keyPath(p, 'action'), an.pos, `action "${atext}" is not valid; use allow or deny`);
      }
      if (ruleNumber === undefined || egress === undefined || !ports || !cidr || allow === undefined || !rnNode) continue;
      const k = `${egress ? 'egress' : 'ingress'}|${ruleNumber}`;
      const first = seen.get(k);
      if (first !== undefined) {
        r.err('NetworkAclEntryAlreadyExists', keyPath(p, 'ruleNumber'), rnNode.pos,
          `The network acl entry identified by ${ruleNumber} already exists in ${aclId} (${egress ? 'egress' : 'ingress'}, at ${first}); rule numbers are unique per direction`);
        continue;
      }
      seen.set(k, p);
      out.push({ ruleNumber, egress, protocol: ports.protocol, fromPort: ports.from, toPort: ports.to, cidr: cidr.text, family: cidr.family, allow, pos: r.sourcePos(p, em) });
    }
    // Quota: per direction, counted separately for IPv4 and IPv6 entries (amazon-vpc-limits).
    const max = this.quotas.naclEntriesPerDirection ?? DEFAULT_NACL_ENTRIES;
    for (const egress of [false, true]) {
      for (const fam of [4, 6] as const) {
        const n = out.filter((e) => e.egress === egress && e.family === fam).length;
        if (n > max) {
          r.err('NetworkAclEntryLimitExceeded', epath, en?.pos ?? m.pos,
            `The maximum number of network ACL entries has been reached: ${aclId} has ${n} IPv${fam} ${egress ? 'egress' : 'ingress'} entries, over the quota of ${max} per direction; raise quotas.networkAclEntries (up to 40)`);
        }
      }
    }
    return sortNaclEntries(out);
  }

}

/** tcp/udp/icmp/icmpv6/all/-1 or 0..255 (numbers or digit strings) → protocol number; 6/17/1/58 are those. */
export function parseProtocol(n: TNode): number | undefined {
  if (n.kind !== 'scalar' || (typeof n.value !== 'string' && typeof n.value !== 'number')) return undefined;
  return protocolNumber(n.value);
}

export function cidrMessage(text: string): string {
  if (parseIp(text)) return `CIDR block ${text} is malformed: add a prefix length, e.g. ${text}/${text.includes(':') ? 128 : 32}`;
  return `CIDR block ${text} is malformed; use an IPv4 or IPv6 CIDR such as 10.0.0.0/16 or 2001:db8::/32`;
}

function peerText(p: Peer): string {
  return p.kind === 'cidr' ? p.cidr : p.kind === 'group' ? p.groupId : p.prefixListId;
}

function portText(r: Rule): string {
  return r.fromPort === -1 ? 'all ports' : `from port: ${r.fromPort}, to port: ${r.toPort}`;
}
