// Model → a plain config object that loadConfigText accepts and turns back into the same model
// (positions aside). Used by `import` and by state files: YAML- or JSON-stringify the result.
// Must not: emit anything the loader would reject or normalise differently; it emits every rule
// as its own entry (one peer), egress explicitly (so no default is re-added), and a rule `id`
// only when it is not the content-derived one.

import { faultToJson } from './faults.js';
import {
  DEFAULT_CONNECTION_TRACKING, DEFAULT_QUOTAS, EGRESS, INGRESS, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, protocolName, hostPort,
  DEFAULT_NACL_ENTRIES, defaultNaclEntries, naclEntryKey, type Model, type NaclEntry, type Rule, type SecurityGroup,
} from '../model/types.js';
import { defaultGroupId, instanceId, ruleId } from './ids.js';

export function modelToConfigObject(model: Model): unknown {
  const out: Record<string, unknown> = {
    region: model.region,
    accountId: model.accountId,
    vpcs: model.vpcs.map((v) => ({ id: v.id })),
  };
  const q = model.quotas;
  const nae = q.naclEntriesPerDirection ?? DEFAULT_NACL_ENTRIES;
  if (q.groupsPerInstance !== DEFAULT_QUOTAS.groupsPerInstance || q.rulesPerGroupPerDirection !== DEFAULT_QUOTAS.rulesPerGroupPerDirection
    || nae !== DEFAULT_NACL_ENTRIES) {
    out.quotas = {
      groupsPerInstance: q.groupsPerInstance, rulesPerGroup: q.rulesPerGroupPerDirection,
      ...(nae !== DEFAULT_NACL_ENTRIES ? { networkAclEntries: nae } : {}),
    };
  }
  if (model.prefixLists.length > 0) {
    out.prefixLists = model.prefixLists.map((pl) => ({
      id: pl.id,
      ...(pl.name !== pl.id ? { name: pl.name } : {}),
      // An empty list given without maxEntries has 0, which the loader refuses (1..1000): leave it out.
      ...(pl.maxEntries >= 1 ? { maxEntries: pl.maxEntries } : {}),
      entries: pl.entries.map((e) => (e.description ? { cidr: e.cidr, description: e.description } : e.cidr)),
    }));
  }
  const std = defaultNaclEntries().map(naclEntryKey).join(',');
  const acls: Record<string, unknown>[] = [];
  for (const a of model.networkAcls ?? []) {
    const entries = a.entries.map(naclEntryToObject);
    const tags = Object.keys(a.tags).length ? { tags: { ...a.tags } } : {};
    if (a.isDefault) {
      if (a.entries.map(naclEntryKey).join(',') === std && !tags.tags) continue;
      acls.push({ default: true, vpc: a.vpcId, ...tags, entries });
    } else acls.push({ id: a.id, vpc: a.vpcId, ...tags, entries });
  }
  if (acls.length > 0) out.networkAcls = acls;
  if ((model.subnets ?? []).length > 0) {
    out.subnets = (model.subnets ?? []).map((sn) => ({
      id: sn.id, vpc: sn.vpcId, ...(sn.cidr ? { cidr: sn.cidr } : {}), networkAcl: sn.networkAclId,
    }));
  }
  const groups: Record<string, unknown>[] = [];
  for (const g of model.groups) {
    if (g.isDefault) {
      if (isStandardDefault(g)) continue;
      groups.push({
        default: true, vpc: g.vpcId,
        ...(Object.keys(g.tags).length ? { tags: { ...g.tags } } : {}),
        ingress: g.ingress.map(ruleToObject), egress: g.egress.map(ruleToObject),
      });
      continue;
    }
    groups.push({
      id: g.id,
      ...(g.name !== g.id ? { name: g.name } : {}),
      vpc: g.vpcId,
      ...(g.description ? { description: g.description } : {}),
      ...(Object.keys(g.tags).length ? { tags: { ...g.tags } } : {}),
      ingress: g.ingress.map(ruleToObject),
      egress: g.egress.map(ruleToObject),
    });
  }
  if (groups.length > 0) out.securityGroups = groups;
  if (model.instances.length > 0) {
    out.instances = model.instances.map((i) => {
      const ct = i.connectionTracking;
      const o: Record<string, unknown> = { name: i.name };
      if (i.id !== instanceId(i.name)) o.id = i.id;
      o.vpc = i.vpcId;
      if (i.subnetId) o.subnet = i.subnetId;
      o.address = i.address;
      if (i.address6) o.address6 = i.address6;
      if (!(i.groupIds.length === 1 && i.groupIds[0] === defaultGroupId(i.vpcId))) o.securityGroups = [...i.groupIds];
      if (ct.tcpEstablishedTimeoutS !== DEFAULT_CONNECTION_TRACKING.tcpEstablishedTimeoutS
        || ct.udpTimeoutS !== DEFAULT_CONNECTION_TRACKING.udpTimeoutS
        || ct.udpStreamTimeoutS !== DEFAULT_CONNECTION_TRACKING.udpStreamTimeoutS) {
        o.connectionTracking = { tcpEstablishedTimeout: ct.tcpEstablishedTimeoutS, udpTimeout: ct.udpTimeoutS, udpStreamTimeout: ct.udpStreamTimeoutS };
      }
      if (i.services.length > 0) {
        o.services = i.services.map((s) => ({
          protocol: protocolName(s.protocol), port: s.port,
          ...(s.listenPort !== s.port ? { listenPort: s.listenPort } : {}),
          backend: hostPort(s.backend.host, s.backend.port),
          ...(s.faults?.length ? { faults: s.faults.map(faultToJson) } : {}),
        }));
      }
      if (i.outbound.length > 0) {
        o.outbound = i.outbound.map((b) => {
          const faults = b.faults?.length ? { faults: b.faults.map(faultToJson) } : {};
          if (b.toInstance !== null) return { protocol: protocolName(b.protocol), port: b.port, to: `${b.toInstance}:${b.toPort}`, ...faults };
          const as = b.asAddress !== b.toHost || b.asPort !== b.toPort ? { as: hostPort(b.asAddress, b.asPort) } : {};
          return { protocol: protocolName(b.protocol), port: b.port, to: hostPort(b.toHost, b.toPort), ...as, ...faults };
        });
      }
      return o;
    });
  }
  if (model.addresses.length > 0) {
    const map: Record<string, string> = {};
    for (const a of model.addresses) map[bareIfHost(a.local)] = bareIfHost(a.appearsAs);
    out.addresses = map;
  }
  return out;
}

export function naclEntryToObject(e: NaclEntry): Record<string, unknown> {
  const o: Record<string, unknown> = { ruleNumber: e.ruleNumber, egress: e.egress, protocol: protocolName(e.protocol) };
  if (e.protocol === PROTO_TCP || e.protocol === PROTO_UDP) {
    o.ports = e.fromPort === e.toPort ? e.fromPort : e.fromPort === 0 && e.toPort === 65535 ? 'all' : `${e.fromPort}-${e.toPort}`;
  } else if (e.protocol === PROTO_ICMP || e.protocol === PROTO_ICMPV6) {
    o.icmpType = e.fromPort;
    o.icmpCode = e.toPort;
  }
  o.cidr = e.cidr;
  o.action = e.allow ? 'allow' : 'deny';
  return o;
}

function ruleToObject(r: Rule): Record<string, unknown> {
  const o: Record<string, unknown> = { protocol: protocolName(r.protocol) };
  if (r.protocol === PROTO_TCP || r.protocol === PROTO_UDP) {
    o.ports = r.fromPort === r.toPort ? r.fromPort : r.fromPort === 0 && r.toPort === 65535 ? 'all' : `${r.fromPort}-${r.toPort}`;
  } else if (r.protocol === PROTO_ICMP || r.protocol === PROTO_ICMPV6) {
    o.icmpType = r.fromPort;
    o.icmpCode = r.toPort;
  }
  const p = r.peer;
  if (p.kind === 'cidr') o.cidr = p.cidr;
  else if (p.kind === 'group') o.groups = [p.groupId];
  else o.prefixLists = [p.prefixListId];
  if (r.description) o.description = r.description;
  const derived = ruleId(r.groupId, { direction: r.direction, protocol: r.protocol, fromPort: r.fromPort, toPort: r.toPort, peer: r.peer });
  if (r.id !== derived) o.id = r.id;
  return o;
}

/** The implicit default group with AWS's rules: in from itself, out to 0.0.0.0/0 and ::/0. */
function isStandardDefault(g: SecurityGroup): boolean {
  if (Object.keys(g.tags).length > 0) return false;
  const plain = (r: Rule): boolean => r.protocol === -1 && r.description === '' && r.id === ruleId(g.id, r);
  const [i0] = g.ingress;
  const ingressOk = g.ingress.length === 1 && i0 !== undefined && plain(i0) && i0.direction === INGRESS && i0.peer.kind === 'group' && i0.peer.groupId === g.id;
  const cidrs = g.egress.map((r) => (r.peer.kind === 'cidr' && plain(r) && r.direction === EGRESS ? r.peer.cidr : ''));
  return ingressOk && cidrs.length === 2 && cidrs[0] === '0.0.0.0/0' && cidrs[1] === '::/0';
}

function bareIfHost(cidr: string): string {
  return cidr.endsWith('/32') && !cidr.includes(':') ? cidr.slice(0, -3) : cidr.endsWith('/128') ? cidr.slice(0, -4) : cidr;
}

/** The array at `o[key]` of a config object, created empty when absent (the EC2 API's edits). */
export function objList(o: Record<string, unknown>, key: string): Record<string, unknown>[] {
  const v = o[key];
  if (Array.isArray(v)) return v as Record<string, unknown>[];
  const list: Record<string, unknown>[] = [];
  o[key] = list;
  return list;
}
