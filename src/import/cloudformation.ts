// Importer for CloudFormation templates (JSON or YAML with short-form tags such as !Ref), reference §6:
// AWS::EC2::SecurityGroup (SecurityGroupIngress / SecurityGroupEgress) and the standalone
// AWS::EC2::SecurityGroupIngress / SecurityGroupEgress resources.
// Ids: a group defined in the template gets `sg-` + its logical id in lower case; Ref / Fn::GetAtt
// GroupId to it resolve to that id; `Fn::GetAtt [Vpc, DefaultSecurityGroup]` is that VPC's default
// group. A VPC resource becomes `vpc-` + logical id. Ref to a Parameter uses its Default. Anything
// else that is not a literal (Fn::ImportValue, Fn::Sub, ...) cannot be resolved offline: the rule
// peer is dropped with a warning.
// Must not: do I/O.

import YAML from 'yaml';
import { UsageError } from '../model/errors.js';
import {
  arr, isObj, readTags, renderConfig, str, toInt, type ImportedGroup, type ImportedNacl, type ImportedRule, type ImportedSubnet, type ImportResult,
} from './common.js';

const INTRINSICS = ['Ref', 'GetAtt', 'Sub', 'Join', 'Select', 'Split', 'FindInMap', 'ImportValue', 'If', 'Equals', 'Not',
  'And', 'Or', 'Base64', 'Cidr', 'GetAZs', 'Condition', 'Transform', 'ToJsonString', 'Length'];

/** The yaml package's custom tags for CloudFormation's short forms: `!Ref X` → { Ref: X }, `!Sub` → { 'Fn::Sub': … }. */
export const CFN_TAGS: YAML.Tags = INTRINSICS.flatMap((name) => {
  const key = name === 'Ref' || name === 'Condition' ? name : `Fn::${name}`;
  const scalar = (s: string): unknown => (name === 'GetAtt' ? { [key]: s.split('.') } : { [key]: s });
  return [
    { tag: `!${name}`, resolve: scalar },
    { tag: `!${name}`, collection: 'seq' as const, resolve: (seq: YAML.YAMLSeq) => ({ [key]: seq.toJSON() }) },
    { tag: `!${name}`, collection: 'map' as const, resolve: (map: YAML.YAMLMap) => ({ [key]: map.toJSON() }) },
  ] as YAML.Tags;
});

/** Parses a template text (JSON is YAML). */
export function parseTemplate(text: string, file: string): unknown {
  try {
    return YAML.parse(text, { customTags: CFN_TAGS, uniqueKeys: false, maxAliasCount: 1000 });
  } catch (e) {
    throw new UsageError(`${file}: not a CloudFormation template (YAML/JSON): ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
  }
}

const logicalToSg = (id: string): string => `sg-${id.toLowerCase()}`.slice(0, 66);
const logicalToVpc = (id: string): string => `vpc-${id.toLowerCase()}`.slice(0, 67);
const logicalToAcl = (id: string): string => `acl-${id.toLowerCase()}`.slice(0, 67);
const logicalToSubnet = (id: string): string => `subnet-${id.toLowerCase()}`.slice(0, 70);

export function importCloudFormation(doc: unknown): ImportResult {
  if (!isObj(doc) || !isObj(doc['Resources'])) {
    throw new UsageError('not a CloudFormation template: expected a "Resources" mapping');
  }
  const resources = doc['Resources'];
  const params = isObj(doc['Parameters']) ? doc['Parameters'] : {};
  const warnings: string[] = [];
  const typeOf = (id: string): string | null => {
    const r = resources[id];
    return isObj(r) ? str(r['Type']) : null;
  };

  /** A literal string, or the resolution of Ref / GetAtt; null (with a warning) when it cannot be resolved. */
  const resolve = (v: unknown, what: string, kind: 'group' | 'vpc' | 'value'): string | null => {
    if (typeof v === 'string' || typeof v === 'number') return String(v);
    if (isObj(v) && typeof v['Ref'] === 'string') {
      const target = v['Ref'];
      const t = typeOf(target);
      if (t === 'AWS::EC2::SecurityGroup') return logicalToSg(target);
      if (t === 'AWS::EC2::VPC') return logicalToVpc(target);
      if (t === 'AWS::EC2::NetworkAcl') return logicalToAcl(target);
      if (t === 'AWS::EC2::Subnet') return logicalToSubnet(target);
      const p = params[target];
      if (isObj(p) && (typeof p['Default'] === 'string' || typeof p['Default'] === 'number')) return String(p['Default']);
      warnings.push(`${what}: Ref ${target} cannot be resolved offline (no such resource, or a parameter without Default); left out`);
      return null;
    }
    if (isObj(v) && Array.isArray(v['Fn::GetAtt'])) {
      const [target, attr] = v['Fn::GetAtt'].map((x) => String(x));
      const t = target !== undefined ? typeOf(target) : null;
      if (target !== undefined && t === 'AWS::EC2::SecurityGroup' && attr === 'GroupId') return logicalToSg(target);
      if (target !== undefined && t === 'AWS::EC2::SecurityGroup' && attr === 'VpcId') return null;
      if (target !== undefined && t === 'AWS::EC2::VPC' && attr === 'DefaultSecurityGroup' && kind === 'group') return `default:${logicalToVpc(target)}`;
      warnings.push(`${what}: Fn::GetAtt ${target}.${attr} cannot be resolved offline; left out`);
      return null;
    }
    warnings.push(`${what}: ${JSON.stringify(v).slice(0, 80)} cannot be resolved offline; left out`);
    return null;
  };

  const groups = new Map<string, ImportedGroup>();
  const defaults = new Map<string, ImportedGroup>();   // vpc id → its default group, when referenced
  const nameToId = new Map<string, string>();

  const defaultGroup = (vpcId: string | null): ImportedGroup => {
    const key = vpcId ?? '';
    let g = defaults.get(key);
    if (!g) {
      g = { id: `sg-default-${(vpcId ?? 'local').replace(/^vpc-/, '')}`, name: 'default', vpcId, description: '', tags: {}, ingress: [], egress: null, isDefault: true };
      defaults.set(key, g);
    }
    return g;
  };
  const groupRef = (v: unknown, what: string): string | null => {
    const id = resolve(v, what, 'group');
    if (id === null) return null;
    if (id.startsWith('default:')) return defaultGroup(id.slice(8)).id;
    return id;
  };

  const readRule = (item: unknown, dir: 'ingress' | 'egress', where: string): ImportedRule | null => {
    if (!isObj(item)) throw new UsageError(`${where} is not a mapping; expected { IpProtocol, FromPort, ToPort, CidrIp, ... }`);
    const protocol = resolve(item['IpProtocol'], `${where}.IpProtocol`, 'value');
    if (protocol === null) return null;
    const fromPort = item['FromPort'] === undefined ? null : toInt(resolve(item['FromPort'], `${where}.FromPort`, 'value'));
    const toPort = item['ToPort'] === undefined ? null : toInt(resolve(item['ToPort'], `${where}.ToPort`, 'value'));
    const description = item['Description'] === undefined ? '' : resolve(item['Description'], `${where}.Description`, 'value') ?? '';
    const base = { protocol, fromPort, toPort, description };
    const pfx = dir === 'ingress' ? 'Source' : 'Destination';
    if (item['CidrIp'] !== undefined) { const c = resolve(item['CidrIp'], `${where}.CidrIp`, 'value'); return c === null ? null : { ...base, peer: { cidr: c } }; }
    if (item['CidrIpv6'] !== undefined) { const c = resolve(item['CidrIpv6'], `${where}.CidrIpv6`, 'value'); return c === null ? null : { ...base, peer: { cidr: c } }; }
    const pl = item[`${pfx}PrefixListId`];
    if (pl !== undefined) { const p = resolve(pl, `${where}.${pfx}PrefixListId`, 'value'); return p === null ? null : { ...base, peer: { prefixList: p } }; }
    const sg = item[`${pfx}SecurityGroupId`];
    if (sg !== undefined) { const g = groupRef(sg, `${where}.${pfx}SecurityGroupId`); return g === null ? null : { ...base, peer: { group: g } }; }
    if (dir === 'ingress' && item['SourceSecurityGroupName'] !== undefined) {
      const n = resolve(item['SourceSecurityGroupName'], `${where}.SourceSecurityGroupName`, 'value');
      return n === null ? null : { ...base, peer: { group: `name:${n}` } };
    }
    throw new UsageError(`${where} names no ${dir === 'ingress' ? 'source' : 'destination'}: give one of CidrIp, CidrIpv6, ${pfx}PrefixListId, ${pfx}SecurityGroupId`);
  };

  // Groups first, so standalone rules and references find them.
  for (const [logical, res] of Object.entries(resources)) {
    if (!isObj(res) || res['Type'] !== 'AWS::EC2::SecurityGroup') continue;
    const props = isObj(res['Properties']) ? res['Properties'] : {};
    const where = `Resources.${logical}.Properties`;
    const id = logicalToSg(logical);
    const name = props['GroupName'] !== undefined ? resolve(props['GroupName'], `${where}.GroupName`, 'value') ?? logical : logical;
    const vpcId = props['VpcId'] !== undefined ? resolve(props['VpcId'], `${where}.VpcId`, 'vpc') : null;
    const g: ImportedGroup = {
      id, name, vpcId,
      description: props['GroupDescription'] !== undefined ? resolve(props['GroupDescription'], `${where}.GroupDescription`, 'value') ?? '' : '',
      tags: readTags(props['Tags']), ingress: [], egress: null, isDefault: false,
    };
    groups.set(id, g);
    nameToId.set(name.toLowerCase(), id);
  }
  for (const [logical, res] of Object.entries(resources)) {
    if (!isObj(res)) continue;
    const props = isObj(res['Properties']) ? res['Properties'] : {};
    const where = `Resources.${logical}.Properties`;
    if (res['Type'] === 'AWS::EC2::SecurityGroup') {
      const g = groups.get(logicalToSg(logical)) as ImportedGroup;
      for (const [i, item] of arr(props['SecurityGroupIngress']).entries()) {
        const r = readRule(item, 'ingress', `${where}.SecurityGroupIngress[${i}]`);
        if (r) g.ingress.push(r);
      }
      if (props['SecurityGroupEgress'] !== undefined) {
        g.egress = [];
        for (const [i, item] of arr(props['SecurityGroupEgress']).entries()) {
          const r = readRule(item, 'egress', `${where}.SecurityGroupEgress[${i}]`);
          if (r) g.egress.push(r);
        }
      }
    } else if (res['Type'] === 'AWS::EC2::SecurityGroupIngress' || res['Type'] === 'AWS::EC2::SecurityGroupEgress') {
      const dir = res['Type'] === 'AWS::EC2::SecurityGroupIngress' ? 'ingress' : 'egress';
      let gid: string | null = null;
      if (props['GroupId'] !== undefined) gid = groupRef(props['GroupId'], `${where}.GroupId`);
      else if (props['GroupName'] !== undefined) {
        const n = resolve(props['GroupName'], `${where}.GroupName`, 'value');
        gid = n === null ? null : nameToId.get(n.toLowerCase()) ?? null;
      }
      const g = gid === null ? undefined : groups.get(gid) ?? [...defaults.values()].find((d) => d.id === gid);
      if (!g) { warnings.push(`${where}: the group it adds to is not in the template; rule left out`); continue; }
      const r = readRule(props, dir, where);
      if (!r) continue;
      if (dir === 'ingress') g.ingress.push(r);
      else {
        // CFN: a group declared without egress has the default allow-all egress, and a standalone
        // egress rule is added to it (it does not replace it).
        if (g.egress === null) {
          g.egress = g.isDefault ? [] : [
            { protocol: '-1', peer: { cidr: '0.0.0.0/0' }, description: '' },
            { protocol: '-1', peer: { cidr: '::/0' }, description: '' },
          ];
        }
        g.egress.push(r);
      }
    }
  }
  // SourceSecurityGroupName → id.
  const all = [...groups.values(), ...defaults.values()];
  for (const g of all) {
    for (const r of [...g.ingress, ...(g.egress ?? [])]) {
      if ('group' in r.peer && r.peer.group.startsWith('name:')) {
        const n = r.peer.group.slice(5);
        r.peer = { group: n.toLowerCase() === 'default' ? defaultGroup(g.vpcId).id : nameToId.get(n.toLowerCase()) ?? n };
      }
    }
  }
  // Network ACLs (AWS::EC2::NetworkAcl + NetworkAclEntry), subnets and their associations.
  const nacls = new Map<string, ImportedNacl>();
  const subnets = new Map<string, ImportedSubnet>();
  for (const [logical, res] of Object.entries(resources)) {
    if (!isObj(res)) continue;
    const props = isObj(res['Properties']) ? res['Properties'] : {};
    const where = `Resources.${logical}.Properties`;
    if (res['Type'] === 'AWS::EC2::NetworkAcl') {
      nacls.set(logicalToAcl(logical), {
        id: logicalToAcl(logical), vpcId: props['VpcId'] !== undefined ? resolve(props['VpcId'], `${where}.VpcId`, 'vpc') : null,
        isDefault: false, tags: readTags(props['Tags']), entries: [],
      });
    } else if (res['Type'] === 'AWS::EC2::Subnet') {
      subnets.set(logicalToSubnet(logical), {
        id: logicalToSubnet(logical), vpcId: props['VpcId'] !== undefined ? resolve(props['VpcId'], `${where}.VpcId`, 'vpc') : null,
        cidr: props['CidrBlock'] !== undefined ? resolve(props['CidrBlock'], `${where}.CidrBlock`, 'value') : null, networkAclId: null,
      });
    }
  }
  for (const [logical, res] of Object.entries(resources)) {
    if (!isObj(res)) continue;
    const props = isObj(res['Properties']) ? res['Properties'] : {};
    const where = `Resources.${logical}.Properties`;
    if (res['Type'] === 'AWS::EC2::NetworkAclEntry') {
      const aclId = resolve(props['NetworkAclId'], `${where}.NetworkAclId`, 'value');
      const acl = aclId === null ? undefined : nacls.get(aclId);
      if (!acl) { warnings.push(`${where}: the network ACL it adds to is not in the template; entry left out`); continue; }
      const val = (k: string): string | null => (props[k] === undefined ? null : resolve(props[k], `${where}.${k}`, 'value'));
      const pr = isObj(props['PortRange']) ? props['PortRange'] : {};
      const ic = isObj(props['Icmp']) ? props['Icmp'] : null;
      const egress = props['Egress'] === true || String(val('Egress')).toLowerCase() === 'true';
      const cidr = val('CidrBlock') ?? val('Ipv6CidrBlock');
      const ruleNumber = toInt(val('RuleNumber'));
      if (cidr === null || ruleNumber === null) { warnings.push(`${where}: no CidrBlock/Ipv6CidrBlock or RuleNumber; entry left out`); continue; }
      acl.entries.push({
        ruleNumber, egress, protocol: val('Protocol') ?? '-1', cidr, action: val('RuleAction') ?? 'deny',
        fromPort: toInt(pr['From'] ?? null), toPort: toInt(pr['To'] ?? null),
        icmpType: ic ? toInt(ic['Type'] ?? null) : null, icmpCode: ic ? toInt(ic['Code'] ?? null) : null,
      });
    } else if (res['Type'] === 'AWS::EC2::SubnetNetworkAclAssociation') {
      const sid = props['SubnetId'] === undefined ? null : resolve(props['SubnetId'], `${where}.SubnetId`, 'value');
      const aid = props['NetworkAclId'] === undefined ? null : resolve(props['NetworkAclId'], `${where}.NetworkAclId`, 'value');
      if (sid === null || aid === null) continue;
      let sn = subnets.get(sid);
      if (!sn) subnets.set(sid, sn = { id: sid, vpcId: nacls.get(aid)?.vpcId ?? null, cidr: null, networkAclId: null });
      sn.networkAclId = aid;
    }
  }
  if (all.length === 0 && nacls.size === 0) throw new UsageError('the template defines no AWS::EC2::SecurityGroup or AWS::EC2::NetworkAcl');
  const res = renderConfig(all, [], [], { nacls: [...nacls.values()], subnets: [...subnets.values()] });
  res.warnings.unshift(...warnings);
  return res;
}
