// Importer for `aws ec2 describe-security-groups` JSON (reference §5) and, optionally,
// `aws ec2 describe-instances` JSON for the instances. Each source of an IpPermission is one rule
// (AWS: one rule id per source); renderConfig joins peers back by protocol, ports and description.
// Must not: do I/O (the CLI reads the files).

import { UsageError } from '../model/errors.js';
import {
  arr, isObj, readTags, renderConfig, str, toInt,
  type ImportedGroup, type ImportedInstance, type ImportedNacl, type ImportedNetwork, type ImportedRule, type ImportedSubnet, type ImportResult,
} from './common.js';

function permissions(v: unknown, where: string): ImportedRule[] {
  const out: ImportedRule[] = [];
  for (const [i, p] of arr(v).entries()) {
    if (!isObj(p)) throw new UsageError(`${where}[${i}] is not an object; expected an IpPermission { IpProtocol, FromPort, ToPort, IpRanges, ... }`);
    const protocol = str(p['IpProtocol']);
    if (protocol === null) throw new UsageError(`${where}[${i}] has no IpProtocol; expected tcp, udp, icmp, icmpv6, -1 or a number`);
    const base = { protocol, fromPort: toInt(p['FromPort']), toPort: toInt(p['ToPort']) };
    const desc = (o: Record<string, unknown>): string => str(o['Description']) ?? '';
    for (const r of arr(p['IpRanges'])) if (isObj(r) && str(r['CidrIp'])) out.push({ ...base, peer: { cidr: str(r['CidrIp']) as string }, description: desc(r) });
    for (const r of arr(p['Ipv6Ranges'])) if (isObj(r) && str(r['CidrIpv6'])) out.push({ ...base, peer: { cidr: str(r['CidrIpv6']) as string }, description: desc(r) });
    for (const r of arr(p['PrefixListIds'])) if (isObj(r) && str(r['PrefixListId'])) out.push({ ...base, peer: { prefixList: str(r['PrefixListId']) as string }, description: desc(r) });
    for (const r of arr(p['UserIdGroupPairs'])) if (isObj(r) && str(r['GroupId'])) out.push({ ...base, peer: { group: str(r['GroupId']) as string }, description: desc(r) });
  }
  return out;
}

/** Parsed describe-security-groups JSON → groups. */
export function awsGroups(doc: unknown): ImportedGroup[] {
  if (!isObj(doc) || !Array.isArray(doc['SecurityGroups'])) {
    throw new UsageError('not aws ec2 describe-security-groups output: expected a JSON object with a "SecurityGroups" list');
  }
  return doc['SecurityGroups'].map((g, i): ImportedGroup => {
    const where = `SecurityGroups[${i}]`;
    if (!isObj(g)) throw new UsageError(`${where} is not an object`);
    const id = str(g['GroupId']);
    if (id === null) throw new UsageError(`${where} has no GroupId`);
    const name = str(g['GroupName']) ?? id;
    return {
      id, name,
      vpcId: str(g['VpcId']),
      description: str(g['Description']) ?? '',
      tags: readTags(g['Tags']),
      ingress: permissions(g['IpPermissions'], `${where}.IpPermissions`),
      // describe output always lists egress; a missing key means none (AWS prints []).
      egress: permissions(g['IpPermissionsEgress'], `${where}.IpPermissionsEgress`),
      isDefault: name === 'default',
    };
  });
}

/** Parsed describe-instances JSON → instances (Reservations[].Instances[]). */
export function awsInstances(doc: unknown): ImportedInstance[] {
  if (!isObj(doc) || !Array.isArray(doc['Reservations'])) {
    throw new UsageError('not aws ec2 describe-instances output: expected a JSON object with a "Reservations" list');
  }
  const out: ImportedInstance[] = [];
  for (const res of doc['Reservations']) {
    for (const inst of isObj(res) ? arr(res['Instances']) : []) {
      if (!isObj(inst)) continue;
      const id = str(inst['InstanceId']) ?? undefined;
      const tags = readTags(inst['Tags']);
      const groupIds = arr(inst['SecurityGroups']).map((g) => (isObj(g) ? str(g['GroupId']) : null)).filter((g): g is string => g !== null);
      out.push({
        name: tags['Name'] ?? id ?? `instance-${out.length + 1}`,
        ...(id !== undefined ? { id } : {}),
        vpcId: str(inst['VpcId']),
        groupIds,
        privateAddress: str(inst['PrivateIpAddress']) ?? '',
        subnetId: str(inst['SubnetId']),
      });
    }
  }
  return out;
}

/** Parsed `aws ec2 describe-network-acls` JSON → NACLs (entries as listed, * included) and the
 * subnets their associations name. */
export function awsNetworkAcls(doc: unknown): { nacls: ImportedNacl[]; assoc: Map<string, { aclId: string; vpcId: string | null }> } {
  if (!isObj(doc) || !Array.isArray(doc['NetworkAcls'])) {
    throw new UsageError('not aws ec2 describe-network-acls output: expected a JSON object with a "NetworkAcls" list');
  }
  const assoc = new Map<string, { aclId: string; vpcId: string | null }>();
  const nacls = doc['NetworkAcls'].map((a, i): ImportedNacl => {
    if (!isObj(a)) throw new UsageError(`NetworkAcls[${i}] is not an object`);
    const id = str(a['NetworkAclId']);
    if (id === null) throw new UsageError(`NetworkAcls[${i}] has no NetworkAclId`);
    const vpcId = str(a['VpcId']);
    for (const s of arr(a['Associations'])) if (isObj(s) && str(s['SubnetId'])) assoc.set(str(s['SubnetId']) as string, { aclId: id, vpcId });
    const entries = arr(a['Entries']).filter(isObj).map((e) => {
      const pr = isObj(e['PortRange']) ? e['PortRange'] : {};
      const ic = isObj(e['IcmpTypeCode']) ? e['IcmpTypeCode'] : null;
      return {
        ruleNumber: toInt(e['RuleNumber']) ?? 0, egress: e['Egress'] === true, protocol: str(e['Protocol']) ?? '-1',
        fromPort: toInt(pr['From']), toPort: toInt(pr['To']),
        icmpType: ic ? toInt(ic['Type']) : null, icmpCode: ic ? toInt(ic['Code']) : null,
        cidr: str(e['CidrBlock']) ?? str(e['Ipv6CidrBlock']) ?? '', action: str(e['RuleAction']) ?? 'deny',
      };
    });
    return { id, vpcId, isDefault: a['IsDefault'] === true, tags: readTags(a['Tags']), entries };
  });
  return { nacls, assoc };
}

/** describe-network-acls (+ optional describe-subnets for the CIDRs) → NACLs and subnets. */
export function awsNetwork(naclsDoc: unknown, subnetsDoc?: unknown): ImportedNetwork {
  const { nacls, assoc } = awsNetworkAcls(naclsDoc);
  const subnets: ImportedSubnet[] = [];
  if (subnetsDoc !== undefined) {
    if (!isObj(subnetsDoc) || !Array.isArray(subnetsDoc['Subnets'])) {
      throw new UsageError('not aws ec2 describe-subnets output: expected a JSON object with a "Subnets" list');
    }
    for (const sn of subnetsDoc['Subnets']) {
      if (!isObj(sn) || str(sn['SubnetId']) === null) continue;
      const id = str(sn['SubnetId']) as string;
      subnets.push({ id, vpcId: str(sn['VpcId']), cidr: str(sn['CidrBlock']), networkAclId: assoc.get(id)?.aclId ?? null });
    }
  }
  for (const [id, a] of assoc) if (!subnets.some((s) => s.id === id)) subnets.push({ id, vpcId: a.vpcId, cidr: null, networkAclId: a.aclId });
  return { nacls, subnets };
}

export function importAws(groupsDoc: unknown, instancesDoc?: unknown, naclsDoc?: unknown, subnetsDoc?: unknown): ImportResult {
  // describe-network-acls output alone is accepted as the main file too.
  if (isObj(groupsDoc) && !('SecurityGroups' in groupsDoc) && Array.isArray(groupsDoc['NetworkAcls']) && naclsDoc === undefined) {
    return renderConfig([], instancesDoc === undefined ? [] : awsInstances(instancesDoc), [], awsNetwork(groupsDoc, subnetsDoc));
  }
  const network = naclsDoc === undefined ? undefined : awsNetwork(naclsDoc, subnetsDoc);
  return renderConfig(awsGroups(groupsDoc), instancesDoc === undefined ? [] : awsInstances(instancesDoc), [], network);
}
