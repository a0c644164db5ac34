// `lint`: risky or untidy rule sets, each finding with a stable id (SPEC §3). Pure, over the Model.
// Owns: the catalogue of checks below and their severities. Ids never change meaning; new checks
// get new ids.
//   SG001 high    admin port (22 SSH, 3389 RDP) open to the world (0.0.0.0/0 or ::/0), inbound
//   SG002 high    database/cache port open to the world (3306 5432 1433 1521 6379 9200 27017 11211)
//   SG003 high    all ports or all protocols open to the world, inbound
//   SG004 low     rule shadowed by a broader rule of the same group (same direction)
//   SG005 low     the same rule in two groups attached to one instance
//   SG006 medium  SSH (22) mixed into a group that also allows application ports
//   SG007 info    group attached to no instance (implicit default groups skipped)
//   SG008 info    rule or group without a description
//   NACL001 high  the ephemeral-port pitfall: a NACL lets a service's requests in (or an outbound
//                 entry's out) but not the replies to the clients' ports (Linux 32768-60999):
//                 the client times out although the security groups allow the flow
//   NACL002 medium a NACL entry that never decides because earlier (lower-numbered) entries with
//                 the other action cover it: a deny shadowed by an allow, or the reverse
//   NACL003 low   a NACL entry that never decides, covered by earlier entries with its own action
//   NACL004 info  a network ACL associated with no subnet (each VPC's default one skipped)
// NACL checks read the compiled policy's NACL tables (src/policy/nacl.ts: which entry decides
// where), the same matcher the data plane and explain use.
// A port range that contains the port counts; protocol -1 (all) contains every port (SG002 leaves
// all-port rules to SG003). SG005 and SG008 skip implicit rules (default egress, the default group's self rule).
// Must not: do I/O.

import ipaddr from 'ipaddr.js';
import {
  DIRECTION_NAMES, EGRESS, INGRESS, PROTO_ALL, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP,
  type Model, type Rule, type SecurityGroup, type SourcePos,
} from '../model/types.js';
import { describeRule, ruleTraffic } from './explain.js';
import { compilePolicy } from './compile.js';
import { naclMatch4, naclMatch6, naclPortRange, portsAllowed4, portsAllowed6, type CompiledNacl } from './nacl.js';
import { bigIntToIpv6, cidrToRange4, cidrToRange6, formatIpv4, formatIpv6, parseIpv4, parseIpv6Words } from './addr.js';
import { usesNetworkAcls, type NaclEntry } from '../model/types.js';

export type Severity = 'high' | 'medium' | 'low' | 'info';

export interface Finding {
  id: string;
  severity: Severity;
  groupId?: string;
  ruleId?: string;
  instance?: string;
  path?: string;
  line?: number;
  column?: number;
  message: string;
}

export const LINT_CHECKS: Readonly<Record<string, { severity: Severity; title: string }>> = Object.freeze({
  SG001: { severity: 'high', title: 'admin port (22 SSH, 3389 RDP) open to the world' },
  SG002: { severity: 'high', title: 'database/cache port open to the world' },
  SG003: { severity: 'high', title: 'all ports or all protocols open to the world inbound' },
  SG004: { severity: 'low', title: 'rule shadowed by a broader rule in the same group' },
  SG005: { severity: 'low', title: 'duplicate rule across groups attached to the same instance' },
  SG006: { severity: 'medium', title: 'SSH mixed into a group that also allows application ports' },
  SG007: { severity: 'info', title: 'group attached to no instance' },
  SG008: { severity: 'info', title: 'rule or group without a description' },
  NACL001: { severity: 'high', title: 'NACL lets requests through but not the replies to the clients\' ephemeral ports' },
  NACL002: { severity: 'medium', title: 'NACL entry shadowed by earlier entries with the other action' },
  NACL003: { severity: 'low', title: 'NACL entry made redundant by earlier entries with the same action' },
  NACL004: { severity: 'info', title: 'network ACL associated with no subnet' },
});

const ADMIN_PORTS: Record<number, string> = { 22: 'SSH', 3389: 'RDP' };
const DB_PORTS: Record<number, string> = {
  3306: 'MySQL', 5432: 'PostgreSQL', 1433: 'SQL Server', 1521: 'Oracle', 6379: 'Redis',
  9200: 'Elasticsearch', 27017: 'MongoDB', 11211: 'Memcached',
};

const SEVERITY_ORDER: Record<Severity, number> = { high: 0, medium: 1, low: 2, info: 3 };

function isWorld(r: Rule): boolean {
  return r.peer.kind === 'cidr' && (r.peer.cidr === '0.0.0.0/0' || r.peer.cidr === '::/0');
}

/** Whether a rule covers TCP (or UDP) port `port`. */
function coversPort(r: Rule, port: number, protos: number[] = [PROTO_TCP]): boolean {
  if (r.protocol === PROTO_ALL) return true;
  return protos.includes(r.protocol) && r.fromPort <= port && port <= r.toPort;
}

function allPorts(r: Rule): boolean {
  return r.protocol === PROTO_ALL
    || ((r.protocol === PROTO_TCP || r.protocol === PROTO_UDP) && r.fromPort === 0 && r.toPort === 65535)
    || ((r.protocol === PROTO_ICMP || r.protocol === PROTO_ICMPV6) && r.fromPort === -1)
    || (r.protocol !== PROTO_TCP && r.protocol !== PROTO_UDP && r.protocol !== PROTO_ICMP && r.protocol !== PROTO_ICMPV6);
}

/** The rules a group gets without the file saying so: default egress, the default group's self rule. */
function isImplicit(g: SecurityGroup, r: Rule): boolean {
  if (r.pos) return false;
  if (r.direction === EGRESS) return r.protocol === PROTO_ALL && isWorld(r);
  return g.isDefault && r.direction === INGRESS && r.protocol === PROTO_ALL && r.peer.kind === 'group' && r.peer.groupId === g.id;
}

function where(pos: SourcePos | undefined): Pick<Finding, 'path' | 'line' | 'column'> {
  return pos ? { path: pos.path, line: pos.line, column: pos.column } : {};
}

function finding(id: string, message: string, at: { group?: SecurityGroup; rule?: Rule; instance?: string }): Finding {
  const f: Finding = { id, severity: LINT_CHECKS[id]?.severity ?? 'info', message };
  const groupId = at.rule?.groupId ?? at.group?.id;
  if (groupId !== undefined) f.groupId = groupId;
  if (at.rule) f.ruleId = at.rule.id;
  if (at.instance !== undefined) f.instance = at.instance;
  Object.assign(f, where(at.rule?.pos ?? at.group?.pos));
  return f;
}

/** Protocol a covers protocol b (as a rule). */
function protoCovers(a: Rule, b: Rule): boolean {
  return a.protocol === PROTO_ALL || a.protocol === b.protocol;
}

function portsCover(a: Rule, b: Rule): boolean {
  if (a.protocol === PROTO_ALL) return true;
  if (a.protocol === PROTO_TCP || a.protocol === PROTO_UDP) return a.fromPort <= b.fromPort && b.toPort <= a.toPort;
  if (a.protocol === PROTO_ICMP || a.protocol === PROTO_ICMPV6) {
    if (a.fromPort === -1) return true;
    if (a.fromPort !== b.fromPort) return false;
    return a.toPort === -1 || a.toPort === b.toPort;
  }
  return true;
}

function cidrContains(outer: string, inner: string): boolean {
  try {
    const o = ipaddr.parseCIDR(outer);
    const i = ipaddr.parseCIDR(inner);
    return o[0].kind() === i[0].kind() && o[1] <= i[1] && i[0].match(o);
  } catch {
    return false;
  }
}

function peerCovers(a: Rule, b: Rule): boolean {
  if (a.peer.kind === 'cidr' && b.peer.kind === 'cidr') return cidrContains(a.peer.cidr, b.peer.cidr);
  if (a.peer.kind === 'group' && b.peer.kind === 'group') return a.peer.groupId === b.peer.groupId;
  if (a.peer.kind === 'prefixList' && b.peer.kind === 'prefixList') return a.peer.prefixListId === b.peer.prefixListId;
  return false;
}

function sameContent(a: Rule, b: Rule): boolean {
  return a.direction === b.direction && a.protocol === b.protocol && a.fromPort === b.fromPort && a.toPort === b.toPort
    && peerCovers(a, b) && peerCovers(b, a);
}

/** Every finding of the model, sorted by severity then id then position. */
export function lintModel(model: Model): Finding[] {
  const out: Finding[] = [];
  const attached = new Set(model.instances.flatMap((i) => i.groupIds));
  for (const g of model.groups) {
    for (const r of g.ingress) {
      if (!isWorld(r)) continue;
      const fam = r.peer.kind === 'cidr' ? r.peer.cidr : '';
      for (const [p, name] of Object.entries(ADMIN_PORTS)) {
        if (coversPort(r, Number(p))) out.push(finding('SG001', `${name} (tcp/${p}) open to the world: ${describeRule(r)}; limit it to your address or use a bastion/SSM`, { rule: r }));
      }
      for (const [p, name] of Object.entries(DB_PORTS)) {
        if (r.protocol !== PROTO_ALL && !(r.fromPort === 0 && r.toPort === 65535) && coversPort(r, Number(p))) {
          out.push(finding('SG002', `${name} (tcp/${p}) open to the world: ${describeRule(r)}; allow only the application's group`, { rule: r }));
        }
      }
      if (allPorts(r)) {
        out.push(finding('SG003', `${r.protocol === PROTO_ALL ? 'all protocols' : 'all ports'} open to the world (${fam}) inbound: ${describeRule(r)}`, { rule: r }));
      }
    }
    // SG004: shadowed rules within one group and direction.
    for (const rules of [g.ingress, g.egress]) {
      for (const b of rules) {
        const by = rules.find((a) => a !== b && protoCovers(a, b) && portsCover(a, b) && peerCovers(a, b) && !sameContent(a, b));
        if (by) {
          out.push(finding('SG004', `${DIRECTION_NAMES[b.direction]} rule "${describeRule(b)}" is shadowed by "${describeRule(by)}" (${by.id}) in the same group; remove it or narrow the broader rule`, { rule: b }));
        }
      }
    }
    // SG006: SSH mixed with application ports.
    const ssh = g.ingress.find((r) => r.protocol === PROTO_TCP && r.fromPort <= 22 && 22 <= r.toPort && !(r.fromPort === 0 && r.toPort === 65535));
    if (ssh) {
      const app = g.ingress.filter((r) => r !== ssh && (r.protocol === PROTO_TCP || r.protocol === PROTO_UDP) && !(r.fromPort <= 22 && 22 <= r.toPort));
      if (app.length > 0) {
        const ports = [...new Set(app.map((r) => r.fromPort === r.toPort ? `${r.fromPort}` : `${r.fromPort}-${r.toPort}`))].join(', ');
        out.push(finding('SG006', `${g.id} mixes SSH (tcp/22) with application ports (${ports}); keep admin access in its own group`, { group: g, rule: ssh }));
      }
    }
    // SG007: unattached groups.
    if (!g.isDefault && !attached.has(g.id)) {
      out.push(finding('SG007', `${g.id} (${g.name}) is attached to no instance`, { group: g }));
    }
    // SG008: descriptions.
    if (!g.isDefault && g.description.trim() === '') out.push(finding('SG008', `group ${g.id} has no description`, { group: g }));
    const undescribed = new Set<string>();   // one finding per rule of the file, not per peer
    for (const r of [...g.ingress, ...g.egress]) {
      if (r.pos) {
        if (undescribed.has(r.pos.path)) continue;
        if (r.description.trim() === '') undescribed.add(r.pos.path);
      }
      if (r.description.trim() === '' && !isImplicit(g, r)) out.push(finding('SG008', `rule "${describeRule(r)}" (${DIRECTION_NAMES[r.direction]}) has no description`, { rule: r }));
    }
  }
  // SG005: the same rule in two groups of one instance (reported once per pair of groups and rule).
  const reported = new Set<string>();
  for (const inst of model.instances) {
    const groups = inst.groupIds.map((id) => model.groups.find((g) => g.id === id)).filter((g): g is SecurityGroup => g !== undefined);
    for (let i = 0; i < groups.length; i++) {
      for (let j = i + 1; j < groups.length; j++) {
        const gi = groups[i] as SecurityGroup, gj = groups[j] as SecurityGroup;
        for (const a of [...gi.ingress, ...gi.egress]) {
          if (isImplicit(gi, a)) continue;   // every group's default egress is the same rule
          const b = [...gj.ingress, ...gj.egress].find((x) => sameContent(a, x));
          if (!b) continue;
          const key = `${a.id}|${b.id}`;
          if (reported.has(key)) continue;
          reported.add(key);
          out.push(finding('SG005', `${DIRECTION_NAMES[a.direction]} rule ${a.id} of ${gi.id} duplicates ${b.id} of ${gj.id} ("${describeRule(b)}"), both on instance ${inst.name}; keep one`, { rule: b, instance: inst.name }));
        }
      }
    }
  }
  if (usesNetworkAcls(model)) out.push(...lintNacls(model));
  return out.sort((a, b) => SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity] || a.id.localeCompare(b.id)
    || (a.line ?? 0) - (b.line ?? 0) || (a.groupId ?? '').localeCompare(b.groupId ?? ''));
}

/** `SEVERITY ID where message`, where = path line:col, or the group/rule id. */
export function formatFinding(f: Finding): string {
  const at = f.path !== undefined ? `${f.path} ${f.line ?? 0}:${f.column ?? 0}` : (f.ruleId ?? f.groupId ?? f.instance ?? '.');
  return `${f.severity.toUpperCase()} ${f.id} ${at} ${f.message}`;
}

// ---- network ACLs ------------------------------------------------------------------------------

const EPH_LO = 32768, EPH_HI = 60999;

function naclFinding(id: string, message: string, aclId: string, e?: NaclEntry, instance?: string, pos?: SourcePos): Finding {
  const f: Finding = { id, severity: LINT_CHECKS[id]?.severity ?? 'info', message, groupId: aclId };
  if (e) f.ruleId = String(e.ruleNumber);
  if (instance !== undefined) f.instance = instance;
  Object.assign(f, where(e?.pos ?? pos));
  return f;
}

function covers(ports: readonly number[], lo: number, hi: number): boolean {
  for (let i = 0; i < ports.length; i += 2) if (ports[i]! <= lo && hi <= ports[i + 1]!) return true;
  return false;
}

function describeEntry(e: NaclEntry): string {
  return `${e.egress ? 'egress' : 'ingress'} rule ${e.ruleNumber} ${e.allow ? 'allows' : 'denies'} ${ruleTraffic(e)} ${e.egress ? 'to' : 'from'} ${e.cidr}`;
}

/** The ports an entry's direction lets through for `proto` and the peer address text. */
function portsFor(n: CompiledNacl, dir: 0 | 1, proto: number, addr: string): number[] {
  return addr.includes(':') ? portsAllowed6(n, dir, proto, parseIpv6Words(addr)) : portsAllowed4(n, dir, proto, parseIpv4(addr));
}

function firstAddr(cidr: string): string {
  return cidr.includes(':') ? formatIpv6(bigIntToIpv6(cidrToRange6(cidr)[0])) : formatIpv4(cidrToRange4(cidr)[0]);
}

function lintNacls(model: Model): Finding[] {
  const out: Finding[] = [];
  const p = compilePolicy(model);
  // NACL002/NACL003: entries that decide nowhere in the compiled tables.
  for (const n of p.nacls) {
    const decides = new Set<number>();
    for (const dir of n.dirs) for (const tb of dir.tables) { for (const x of tb.e4) decides.add(x); for (const x of tb.e6) decides.add(x); }
    n.acl.entries.forEach((e, i) => {
      if (decides.has(i)) return;
      // Who decides where this entry would: its first address and port.
      const [lo] = naclPortRange(e);
      const proto = e.protocol < 0 ? PROTO_TCP : e.protocol;
      const t = n.dirs[e.egress ? 1 : 0];
      const at = e.family === 4 ? naclMatch4(t, proto, cidrToRange4(e.cidr)[0], Math.max(0, lo))
        : (() => { const w = bigIntToIpv6(cidrToRange6(e.cidr)[0]); return naclMatch6(t, proto, w[0]!, w[1]!, w[2]!, w[3]!, Math.max(0, lo)); })();
      const by = at >= 0 ? n.acl.entries[at] : undefined;
      const other = by !== undefined && by.allow !== e.allow;
      const what = `${n.acl.id} ${describeEntry(e)} never decides: earlier entries${by ? ` (${describeEntry(by)})` : ''} match all of its traffic first`;
      out.push(naclFinding(other ? 'NACL002' : 'NACL003', other
        ? `${what}; it has the opposite action, so it is probably meant to come first: give it a lower rule number`
        : `${what}; remove it`, n.acl.id, e));
    });
  }
  // NACL004: NACLs on no subnet.
  const used = new Set((model.subnets ?? []).map((s) => s.networkAclId));
  for (const a of model.networkAcls ?? []) {
    if (!a.isDefault && !used.has(a.id)) out.push(naclFinding('NACL004', `${a.id} is associated with no subnet; it filters nothing`, a.id, undefined, undefined, a.pos));
  }
  // NACL001: requests let in (or out) whose replies cannot come back to the ephemeral ports.
  const seen = new Set<string>();
  for (const inst of model.instances) {
    const k = p.instanceIndex.get(inst.name);
    if (k === undefined) continue;
    const n = p.nacls[p.subnetAcl[p.instSubnet[k]!]!]!;
    if (n.open) continue;
    for (const svc of inst.services) {
      // Every ingress entry that allows the service's requests from some peer: the replies to
      // that peer must be allowed out to the ephemeral ports.
      for (const e of n.acl.entries) {
        if (e.egress || !e.allow) continue;
        const peer = firstAddr(e.cidr);
        const inOk = portsFor(n, 0, svc.protocol, peer);
        if (!covers(inOk, svc.port, svc.port)) continue;
        const outOk = portsFor(n, 1, svc.protocol, peer);
        if (covers(outOk, EPH_LO, EPH_HI)) continue;
        const key = `${n.acl.id}|in|${svc.protocol}|${svc.port}|${e.ruleNumber}`;
        if (seen.has(key)) continue;
        seen.add(key);
        out.push(naclFinding('NACL001', `${n.acl.id}: ingress rule ${e.ruleNumber} lets ${ruleTraffic({ protocol: svc.protocol, fromPort: svc.port, toPort: svc.port })} in to ${inst.name} from ${e.cidr}, but the egress entries do not allow the replies to the clients' ephemeral ports (${EPH_LO}-${EPH_HI}): the client times out although the security groups allow it; add an egress allow ${svc.protocol === PROTO_UDP ? 'udp' : 'tcp'} 1024-65535 to ${e.cidr}`, n.acl.id, e, inst.name));
      }
    }
    for (const o of inst.outbound) {
      const t = o.toInstance ? p.instanceIndex.get(o.toInstance) : undefined;
      if (t !== undefined && p.instSubnet[t] === p.instSubnet[k]) continue;     // one subnet: no NACL
      const outOk = portsFor(n, 1, o.protocol, o.asAddress);
      if (!covers(outOk, o.asPort, o.asPort)) continue;                          // the request itself is denied: explain says so
      const inOk = portsFor(n, 0, o.protocol, o.asAddress);
      if (covers(inOk, EPH_LO, EPH_HI)) continue;
      out.push(naclFinding('NACL001', `${n.acl.id}: ${inst.name} may connect out to ${o.asAddress}:${o.asPort} (${o.protocol === PROTO_UDP ? 'udp' : 'tcp'}), but the ingress entries do not allow the replies back to its ephemeral ports (${EPH_LO}-${EPH_HI}): the connection times out; add an ingress allow 1024-65535 from ${o.asAddress}`, n.acl.id, undefined, inst.name));
    }
  }
  return out;
}
