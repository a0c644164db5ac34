// Importer for `terraform show -json` (state, or a plan's planned_values), reference §6:
// aws_security_group (inline ingress/egress blocks), aws_vpc_security_group_ingress_rule /
// _egress_rule (one rule each, with its sgr- id), and the legacy aws_security_group_rule.
// Modules are walked recursively (child_modules). Groups without a known id (a plan before apply)
// get `sg-` + their resource address made safe.
// Terraform removes AWS's default egress rule unless declared, so a group's egress is exactly its
// blocks plus its standalone egress rules (an empty list denies all outbound, as in AWS).
// Must not: do I/O.

import { UsageError } from '../model/errors.js';
import {
  arr, isObj, readTags, renderConfig, str, toInt,
  type ImportedGroup, type ImportedNacl, type ImportedNaclEntry, type ImportedRule, type ImportedSubnet, type ImportResult,
} from './common.js';

/** aws_network_acl ingress/egress blocks and aws_network_acl_rule → an entry. */
function tfEntry(v: Record<string, unknown>, egress: boolean, numberKey: string, actionKey: string): ImportedNaclEntry | null {
  const ruleNumber = toInt(v[numberKey]);
  const cidr = str(v['cidr_block']) || str(v['ipv6_cidr_block']);
  if (ruleNumber === null || !cidr) return null;
  const protocol = str(v['protocol']) ?? '-1';
  const icmp = /^(1|58|icmp|icmpv6)$/i.test(protocol);
  return {
    ruleNumber, egress, protocol, cidr, action: str(v[actionKey]) ?? 'deny',
    fromPort: icmp ? null : toInt(v['from_port']), toPort: icmp ? null : toInt(v['to_port']),
    icmpType: icmp ? toInt(v['icmp_type']) ?? -1 : null, icmpCode: icmp ? toInt(v['icmp_code']) ?? -1 : null,
  };
}

interface TfResource { address: string; type: string; values: Record<string, unknown> }

function collect(mod: unknown, out: TfResource[], depth = 0): void {
  if (!isObj(mod) || depth > 64) return;
  for (const r of arr(mod['resources'])) {
    if (!isObj(r) || r['mode'] === 'data') continue;
    const type = str(r['type']);
    if (type === null) continue;
    out.push({ address: str(r['address']) ?? type, type, values: isObj(r['values']) ? r['values'] : {} });
  }
  for (const c of arr(mod['child_modules'])) collect(c, out, depth + 1);
}

const strings = (v: unknown): string[] => arr(v).map(str).filter((s): s is string => s !== null && s !== '');

/** One inline block / legacy rule → rules, one per peer. */
function blockRules(b: Record<string, unknown>, selfId: string, peerGroupKey: string): ImportedRule[] {
  const protocol = str(b['protocol']) ?? str(b['ip_protocol']) ?? '';
  const base = {
    protocol,
    fromPort: toInt(b['from_port']),
    toPort: toInt(b['to_port']),
    description: str(b['description']) ?? '',
  };
  const out: ImportedRule[] = [];
  for (const c of [...strings(b['cidr_blocks']), ...strings(b['ipv6_cidr_blocks'])]) out.push({ ...base, peer: { cidr: c } });
  for (const p of strings(b['prefix_list_ids'])) out.push({ ...base, peer: { prefixList: p } });
  const sgs = peerGroupKey === 'security_groups' ? strings(b['security_groups']) : strings([b[peerGroupKey]]);
  for (const g of sgs) out.push({ ...base, peer: { group: g } });
  if (b['self'] === true) out.push({ ...base, peer: { group: selfId } });
  return out;
}

export function importTerraform(doc: unknown): ImportResult {
  if (!isObj(doc)) throw new UsageError('not terraform show -json output: expected a JSON object');
  const root = isObj(doc['values']) ? doc['values'] : isObj(doc['planned_values']) ? doc['planned_values'] : null;
  if (!root || !isObj(root['root_module'])) {
    throw new UsageError('not terraform show -json output: expected values.root_module (state) or planned_values.root_module (plan)');
  }
  const resources: TfResource[] = [];
  collect(root['root_module'], resources);
  const warnings: string[] = [];
  const groups = new Map<string, ImportedGroup>();
  const addrToId = new Map<string, string>();
  for (const r of resources) {
    if (r.type !== 'aws_security_group') continue;
    const v = r.values;
    const id = str(v['id']) ?? `sg-${r.address.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '')}`.slice(0, 66);
    addrToId.set(r.address, id);
    const g: ImportedGroup = {
      id,
      name: str(v['name']) ?? r.address,
      vpcId: str(v['vpc_id']),
      description: str(v['description']) ?? '',
      tags: readTags(v['tags']),
      ingress: arr(v['ingress']).filter(isObj).flatMap((b) => blockRules(b, id, 'security_groups')),
      egress: arr(v['egress']).filter(isObj).flatMap((b) => blockRules(b, id, 'security_groups')),
      isDefault: false,
    };
    groups.set(id, g);
  }
  for (const r of resources) {
    const v = r.values;
    let dir: 'ingress' | 'egress';
    let rules: ImportedRule[];
    const gid = str(v['security_group_id']);
    if (r.type === 'aws_vpc_security_group_ingress_rule' || r.type === 'aws_vpc_security_group_egress_rule') {
      dir = r.type.endsWith('ingress_rule') ? 'ingress' : 'egress';
      const base = {
        protocol: str(v['ip_protocol']) ?? '',
        fromPort: toInt(v['from_port']),
        toPort: toInt(v['to_port']),
        description: str(v['description']) ?? '',
      };
      const ruleId = str(v['security_group_rule_id']) ?? str(v['id']);
      const withId = ruleId !== null ? { id: ruleId } : {};
      const peer = str(v['cidr_ipv4']) !== null ? { cidr: str(v['cidr_ipv4']) as string }
        : str(v['cidr_ipv6']) !== null ? { cidr: str(v['cidr_ipv6']) as string }
          : str(v['prefix_list_id']) !== null ? { prefixList: str(v['prefix_list_id']) as string }
            : str(v['referenced_security_group_id']) !== null ? { group: str(v['referenced_security_group_id']) as string } : null;
      if (peer === null) { warnings.push(`${r.address}: no cidr_ipv4, cidr_ipv6, prefix_list_id or referenced_security_group_id; left out`); continue; }
      rules = [{ ...base, ...withId, peer }];
    } else if (r.type === 'aws_security_group_rule') {
      dir = str(v['type']) === 'egress' ? 'egress' : 'ingress';
      rules = blockRules(v, gid ?? '', 'source_security_group_id');
    } else {
      continue;
    }
    const g = gid !== null ? groups.get(gid) : undefined;
    if (!g) { warnings.push(`${r.address}: security_group_id ${gid ?? '(unknown until apply)'} is not a group in this state; left out`); continue; }
    if (dir === 'ingress') g.ingress.push(...rules);
    else (g.egress ??= []).push(...rules);
  }
  // Network ACLs, their rules and associations, and subnets.
  const nacls = new Map<string, ImportedNacl>();
  const subnets = new Map<string, ImportedSubnet>();
  const aclId = (r: TfResource): string => str(r.values['id']) ?? `acl-${r.address.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '')}`.slice(0, 67);
  for (const r of resources) {
    const v = r.values;
    if (r.type === 'aws_subnet') {
      const id = str(v['id']) ?? `subnet-${r.address.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '')}`.slice(0, 70);
      subnets.set(id, { id, vpcId: str(v['vpc_id']), cidr: str(v['cidr_block']), networkAclId: null });
    } else if (r.type === 'aws_network_acl' || r.type === 'aws_default_network_acl') {
      const id = aclId(r);
      const entries: ImportedNaclEntry[] = [];
      for (const [key, egress] of [['ingress', false], ['egress', true]] as const) {
        for (const b of arr(v[key]).filter(isObj)) {
          const e = tfEntry(b, egress, 'rule_no', 'action');
          if (e) entries.push(e); else warnings.push(`${r.address}: a ${key} block without rule_no or cidr_block; left out`);
        }
      }
      nacls.set(id, { id, vpcId: str(v['vpc_id']), isDefault: r.type === 'aws_default_network_acl', tags: readTags(v['tags']), entries });
    }
  }
  for (const r of resources) {
    const v = r.values;
    if (r.type === 'aws_network_acl_rule') {
      const acl = nacls.get(str(v['network_acl_id']) ?? '');
      const e = tfEntry(v, v['egress'] === true, 'rule_number', 'rule_action');
      if (!acl || !e) { warnings.push(`${r.address}: network_acl_id ${str(v['network_acl_id']) ?? '(unknown until apply)'} is not a NACL in this state, or the rule has no number/CIDR; left out`); continue; }
      acl.entries.push(e);
    } else if (r.type === 'aws_network_acl' || r.type === 'aws_default_network_acl' || r.type === 'aws_network_acl_association') {
      const id = r.type === 'aws_network_acl_association' ? str(v['network_acl_id']) : aclId(r);
      const sids = r.type === 'aws_network_acl_association' ? [str(v['subnet_id'])] : strings(v['subnet_ids']);
      for (const sid of sids) {
        if (!sid || !id) continue;
        let sn = subnets.get(sid);
        if (!sn) subnets.set(sid, sn = { id: sid, vpcId: nacls.get(id)?.vpcId ?? null, cidr: null, networkAclId: null });
        sn.networkAclId = id;
      }
    }
  }
  if (groups.size === 0 && nacls.size === 0) throw new UsageError('the terraform output holds no aws_security_group or aws_network_acl resource');
  const res = renderConfig([...groups.values()], [], [], { nacls: [...nacls.values()], subnets: [...subnets.values()] });
  res.warnings.unshift(...warnings);
  return res;
}
