// The shared half of the importers: a neutral form of security groups (what AWS, CloudFormation and
// Terraform all describe) and its rendering as an sgemu config (SPEC §2) on plain objects.
// Owns: the mapping of AWS protocol/port conventions to the config's `protocol`/`ports`/`icmpType`,
// one config rule per (protocol, ports, description), dropping peers the config could not resolve
// (with a warning), default groups (`default: true`), VPCs, prefix-list stubs, instances on loopback.
// Must not: do I/O; every importer builds ImportedGroup values and calls renderConfig.

import YAML from 'yaml';
import { UsageError } from '../model/errors.js';

/** One rule with one peer, in AWS's terms (IpProtocol, FromPort, ToPort). */
export interface ImportedRule {
  protocol: string;             // IpProtocol as given: tcp, udp, icmp, icmpv6, -1, a number
  fromPort?: number | null;
  toPort?: number | null;
  peer: { cidr: string } | { group: string } | { prefixList: string };
  description: string;
  id?: string;                  // sgr-… when the source knows it
}

export interface ImportedGroup {
  id: string;
  name: string;
  vpcId: string | null;
  description: string;
  tags: Record<string, string>;
  ingress: ImportedRule[];
  /** null: not given, the config default applies (all outbound). [] denies all outbound. */
  egress: ImportedRule[] | null;
  isDefault: boolean;
}

export interface ImportedInstance {
  name: string;
  id?: string;
  vpcId: string | null;
  groupIds: string[];
  privateAddress: string;       // for the comment only
  subnetId?: string | null;
}

/** One network ACL entry in AWS's terms (describe-network-acls, CFN, Terraform). */
export interface ImportedNaclEntry {
  ruleNumber: number;
  egress: boolean;
  protocol: string;             // -1, a number or a name
  fromPort?: number | null;     // PortRange.From
  toPort?: number | null;
  icmpType?: number | null;
  icmpCode?: number | null;
  cidr: string;
  action: string;               // allow | deny
}

export interface ImportedNacl {
  id: string;
  vpcId: string | null;
  isDefault: boolean;
  tags: Record<string, string>;
  entries: ImportedNaclEntry[];
}

export interface ImportedSubnet {
  id: string;
  vpcId: string | null;
  cidr: string | null;
  networkAclId: string | null;  // null: the VPC's default NACL
}

export interface ImportedNetwork {
  nacls: ImportedNacl[];
  subnets: ImportedSubnet[];
}

export interface ImportResult {
  config: Record<string, unknown>;
  warnings: string[];
  notes: string[];              // header comment lines (instance address map, ...)
}

export type ImportSource = 'aws' | 'cloudformation' | 'terraform';

const PROTO_NAMES: Record<string, string> = { '-1': 'all', all: 'all', '6': 'tcp', '17': 'udp', '1': 'icmp', '58': 'icmpv6' };

/** Reads a value that should be a whole number (JSON numbers, CFN strings such as "22"). */
export function toInt(v: unknown): number | null {
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'string' && /^-?\d+$/.test(v.trim())) return Number(v.trim());
  return null;
}

export function str(v: unknown): string | null {
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : null;
}

export function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/** [{Key, Value}] (AWS, CFN) or a mapping (Terraform) → tags. */
export function readTags(v: unknown): Record<string, string> {
  const tags: Record<string, string> = {};
  if (Array.isArray(v)) {
    for (const t of v) {
      if (!isObj(t)) continue;
      const k = str(t['Key']);
      const val = str(t['Value']);
      if (k !== null && val !== null) tags[k] = val;
    }
  } else if (isObj(v)) {
    for (const [k, val] of Object.entries(v)) {
      const s = str(val);
      if (s !== null) tags[k] = s;
    }
  }
  return tags;
}

/** The config's protocol + ports for an AWS-style rule, or a reason it cannot be expressed. */
function protoPorts(r: ImportedRule): { key: string; fields: Record<string, unknown> } | string {
  const raw = r.protocol.trim().toLowerCase();
  const proto = PROTO_NAMES[raw] ?? raw;
  if (!/^(tcp|udp|icmp|icmpv6|all|\d{1,3})$/.test(proto) || (/^\d+$/.test(proto) && Number(proto) > 255)) {
    return `protocol "${r.protocol}" is not tcp, udp, icmp, icmpv6, -1 or 0..255`;
  }
  const from = r.fromPort ?? null;
  const to = r.toPort ?? null;
  if (proto === 'tcp' || proto === 'udp') {
    let ports: string | number;
    if (from === null || to === null || from === -1 || (from === 0 && to === 65535)) ports = 'all';
    else if (from === to) ports = from;
    else ports = `${from}-${to}`;
    return { key: `${proto}|${ports}`, fields: { protocol: proto, ports } };
  }
  if (proto === 'icmp' || proto === 'icmpv6') {
    if (from === null && to === null && proto === 'icmpv6') return { key: 'icmpv6', fields: { protocol: proto } };
    const type = from ?? -1;
    const code = type === -1 ? -1 : to ?? -1;
    return { key: `${proto}|${type}|${code}`, fields: { protocol: proto, icmpType: type, ...(code !== -1 ? { icmpCode: code } : {}) } };
  }
  return { key: proto, fields: { protocol: proto } };
}

function peerKey(p: ImportedRule['peer']): string {
  return 'cidr' in p ? `c:${p.cidr}` : 'group' in p ? `g:${p.group}` : `p:${p.prefixList}`;
}

/**
 * Renders groups (and instances) as a config object. Group references are rewritten to the
 * config's spelling (a default group is "default"); peers naming groups not in the input are
 * dropped with a warning, prefix lists not defined get an empty stub and a warning.
 */
export function renderConfig(groups: ImportedGroup[], instances: ImportedInstance[] = [], prefixLists: { id: string; entries: string[] }[] = [],
  network: ImportedNetwork = { nacls: [], subnets: [] }): ImportResult {
  const warnings: string[] = [];
  const notes: string[] = [];
  const byId = new Map(groups.map((g) => [g.id, g]));
  const vpcs = [...new Set(groups.map((g) => g.vpcId).concat(instances.map((i) => i.vpcId))
    .concat(network.nacls.map((a) => a.vpcId), network.subnets.map((s) => s.vpcId)).filter((v): v is string => v !== null))];
  const several = vpcs.length > 1;
  const homeless = groups.filter((g) => g.vpcId === null);
  if (vpcs.length > 0 && homeless.length > 0) {
    warnings.push(`${homeless.map((g) => g.id).join(', ')} name no VPC while others do; placed in ${vpcs[0]}`);
    for (const g of homeless) g.vpcId = vpcs[0] ?? null;
  }
  const definedPl = new Set(prefixLists.map((p) => p.id));
  const stubPl = new Set<string>();
  const ref = (gid: string): string => (byId.get(gid)?.isDefault ? 'default' : gid);

  const renderRules = (g: ImportedGroup, rules: ImportedRule[], dir: string): unknown[] => {
    const out: Record<string, unknown>[] = [];
    const bucket = new Map<string, Record<string, unknown>>();
    const seen = new Set<string>();
    for (const r of rules) {
      const pp = protoPorts(r);
      if (typeof pp === 'string') { warnings.push(`${g.id} ${dir}: rule dropped: ${pp}`); continue; }
      const pk = peerKey(r.peer);
      if (seen.has(`${pp.key}|${pk}`)) continue;     // the same rule given twice (inline + standalone)
      seen.add(`${pp.key}|${pk}`);
      let field: 'cidr' | 'groups' | 'prefixLists';
      let value: string;
      if ('cidr' in r.peer) { field = 'cidr'; value = r.peer.cidr; }
      else if ('group' in r.peer) {
        const target = byId.get(r.peer.group);
        if (!target) { warnings.push(`${g.id} ${dir}: peer group ${r.peer.group} is not in the input; that peer is dropped`); continue; }
        field = 'groups';
        value = target.id === g.id && !g.isDefault ? g.id : ref(target.id);
      } else {
        field = 'prefixLists';
        value = r.peer.prefixList;
        if (!definedPl.has(value) && !stubPl.has(value)) {
          stubPl.add(value);
          warnings.push(`prefix list ${value} (used by ${g.id}) is not defined in the input; emitted with no entries: fill them in`);
        }
      }
      if (r.id !== undefined && /^sgr-[0-9a-f]{17}$/.test(r.id)) {
        out.push({ ...pp.fields, [field]: value, ...(r.description ? { description: r.description } : {}), id: r.id });
        continue;
      }
      const key = `${pp.key}|${r.description}`;
      let rule = bucket.get(key);
      if (!rule) {
        rule = { ...pp.fields };
        bucket.set(key, rule);
        out.push(rule);
      }
      const list = (rule[field] as string[] | undefined) ?? [];
      list.push(value);
      rule[field] = list;
      if (r.description) rule['description'] = r.description;   // after the peers, for reading
    }
    // Put description last in every rule, and single peers as scalars for cidr.
    return out.map((rule) => {
      const { description, ...rest } = rule;
      return description === undefined ? rest : { ...rest, description };
    });
  };

  const securityGroups = groups.map((g) => {
    const o: Record<string, unknown> = {};
    if (g.isDefault) {
      o['default'] = true;
      notes.push(`${g.id} is the default group of ${g.vpcId ?? 'the VPC'}: written as "default: true", referenced as "default"`);
    } else {
      o['id'] = g.id;
      if (g.name && g.name !== g.id) {
        if (/^sg-/i.test(g.name) || g.name.toLowerCase() === 'default') warnings.push(`${g.id}: name "${g.name}" is not allowed in sgemu; left out`);
        else o['name'] = g.name;
      }
    }
    if (several && g.vpcId) o['vpc'] = g.vpcId;
    if (g.description && !g.isDefault) o['description'] = g.description;
    if (Object.keys(g.tags).length > 0) o['tags'] = g.tags;
    o['ingress'] = renderRules(g, g.ingress, 'ingress');
    if (g.egress !== null) o['egress'] = renderRules(g, g.egress, 'egress');
    return o;
  });

  const config: Record<string, unknown> = {};
  if (vpcs.length > 0) config['vpcs'] = vpcs.map((id) => ({ id }));
  const pls = [...prefixLists.map((p) => ({ id: p.id, entries: p.entries })), ...[...stubPl].map((id) => ({ id, entries: [] }))];
  if (pls.length > 0) config['prefixLists'] = pls;
  const net = renderNetwork(network, several, vpcs[0] ?? null, warnings, notes);
  if (net.networkAcls.length > 0) config['networkAcls'] = net.networkAcls;
  if (net.subnets.length > 0) config['subnets'] = net.subnets;
  if (securityGroups.length > 0 || network.nacls.length === 0) config['securityGroups'] = securityGroups;

  if (instances.length > 0) {
    const names = new Set<string>();
    config['instances'] = instances.map((inst, n) => {
      let name = inst.name.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 63) || `instance-${n + 1}`;
      if (names.has(name)) name = `${name.slice(0, 58)}-${n + 1}`;
      names.add(name);
      const address = `127.0.0.${10 + n}`;
      if (10 + n > 254) throw new UsageError(`too many instances (${instances.length}): loopback addresses 127.0.0.10..254 hold 245`);
      notes.push(`instance ${name}${inst.id ? ` (${inst.id})` : ''}: private ${inst.privateAddress || 'unknown'} → ${address}`);
      const sgs: string[] = [];
      for (const gid of inst.groupIds) {
        if (!byId.has(gid)) { warnings.push(`instance ${name}: group ${gid} is not in the groups input; left out`); continue; }
        sgs.push(ref(gid));
      }
      const o: Record<string, unknown> = { name };
      if (inst.id && /^i-[0-9a-f]{1,32}$/.test(inst.id)) o['id'] = inst.id;
      if (several && inst.vpcId) o['vpc'] = inst.vpcId;
      if (inst.subnetId && net.subnetIds.has(inst.subnetId)) o['subnet'] = inst.subnetId;
      o['address'] = address;
      if (sgs.length > 0) o['securityGroups'] = sgs;
      return o;
    });
  }
  return { config, warnings, notes };
}

const NACL_ID = /^acl-[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const SUBNET_ID = /^subnet-[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/**
 * Network ACLs and subnets as config (SPEC §7). A VPC's default NACL becomes `default: true`
 * (its AWS id is not kept: sgemu names it acl-default-<vpc>), and subnets associated with it name
 * no NACL. The `*` entries (rule 32767) are implicit. Subnet CIDRs sgemu would reject are left out.
 */
function renderNetwork(net: ImportedNetwork, several: boolean, firstVpc: string | null, warnings: string[], notes: string[]):
  { networkAcls: Record<string, unknown>[]; subnets: Record<string, unknown>[]; subnetIds: Set<string> } {
  const defaults = new Set(net.nacls.filter((a) => a.isDefault).map((a) => a.id));
  const kept = new Set<string>();
  const networkAcls: Record<string, unknown>[] = [];
  for (const a of net.nacls) {
    if (!a.isDefault && !NACL_ID.test(a.id)) { warnings.push(`network ACL id "${a.id}" is not acl-...; left out`); continue; }
    const entries: Record<string, unknown>[] = [];
    for (const e of a.entries) {
      if (e.ruleNumber === 32767) continue;
      const pp = protoPorts({ protocol: e.protocol, fromPort: e.icmpType !== undefined && e.icmpType !== null ? e.icmpType : e.fromPort ?? null,
        toPort: e.icmpType !== undefined && e.icmpType !== null ? e.icmpCode ?? -1 : e.toPort ?? null, peer: { cidr: e.cidr }, description: '' });
      if (typeof pp === 'string') { warnings.push(`${a.id} entry ${e.ruleNumber}: left out: ${pp}`); continue; }
      entries.push({ ruleNumber: e.ruleNumber, egress: e.egress, ...pp.fields, cidr: e.cidr, action: e.action.toLowerCase() });
    }
    const o: Record<string, unknown> = a.isDefault ? { default: true } : { id: a.id };
    if ((several || a.isDefault) && (a.vpcId ?? firstVpc)) o['vpc'] = a.vpcId ?? firstVpc;
    if (Object.keys(a.tags).length > 0) o['tags'] = a.tags;
    o['entries'] = entries;
    networkAcls.push(o);
    if (a.isDefault) notes.push(`${a.id} is the default network ACL of ${a.vpcId ?? 'the VPC'}: written as "default: true"`);
    else kept.add(a.id);
  }
  const subnets: Record<string, unknown>[] = [];
  const subnetIds = new Set<string>();
  for (const sn of net.subnets) {
    if (!SUBNET_ID.test(sn.id)) { warnings.push(`subnet id "${sn.id}" is not subnet-...; left out`); continue; }
    const o: Record<string, unknown> = { id: sn.id };
    if (several && sn.vpcId) o['vpc'] = sn.vpcId;
    if (sn.cidr) {
      const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(sn.cidr);
      if (m && Number(m[2]) >= 16 && Number(m[2]) <= 28) o['cidr'] = sn.cidr;
      else warnings.push(`subnet ${sn.id}: cidr ${sn.cidr} left out (sgemu keeps IPv4 /16../28)`);
    }
    if (sn.networkAclId && !defaults.has(sn.networkAclId)) {
      if (kept.has(sn.networkAclId)) o['networkAcl'] = sn.networkAclId;
      else warnings.push(`subnet ${sn.id}: network ACL ${sn.networkAclId} is not in the input; the subnet uses its VPC's default NACL`);
    }
    subnets.push(o);
    subnetIds.add(sn.id);
  }
  return { networkAcls, subnets, subnetIds };
}

/** The config text: a header comment saying where it came from, then YAML. */
export function renderText(res: ImportResult, source: ImportSource, file: string): string {
  const head = [
    `# sgemu config imported from ${source === 'aws' ? 'aws ec2 describe-security-groups' : source === 'cloudformation' ? 'a CloudFormation template' : 'terraform show -json'}: ${file}`,
    `# by sgemu import. Check it with: sgemu check -c <this file>`,
    ...res.notes.map((n) => `# ${n}`),
    ...res.warnings.map((w) => `# warning: ${w}`),
  ];
  return head.join('\n') + '\n' + YAML.stringify(res.config, { lineWidth: 0 });
}
