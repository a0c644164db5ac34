// A plain reference evaluator of network ACL semantics (SPEC §7), written to be obviously right:
// loop over the entries in ascending rule number, first match decides, none = `*` deny; the
// request against the source subnet's egress and the destination subnet's ingress, the replies
// (to the client's port) against the destination's egress and the source's ingress; one subnet
// crosses no NACL. Addresses through ipaddr.js (reference.ts), not src/policy/addr.ts.

import type { Model, NaclEntry, NetworkAcl } from '../../src/model/types.js';
import { defaultNaclEntries } from '../../src/model/types.js';
import { refAddr, refAppear, refDecide, refInCidr } from './reference.js';

function aclOf(model: Model, subnet: string): NetworkAcl {
  const sn = (model.subnets ?? []).find((s) => s.id === subnet);
  const vpc = sn ? sn.vpcId : subnet.slice('implicit:'.length);
  const id = sn ? sn.networkAclId : `acl-default-${vpc}`;
  return (model.networkAcls ?? []).find((a) => a.id === id)
    ?? { id, vpcId: vpc, isDefault: true, entries: defaultNaclEntries(), tags: {} };
}

export function refSubnet(model: Model, instName: string): string {
  const i = model.instances.find((x) => x.name === instName)!;
  return i.subnetId ?? `implicit:${i.vpcId}`;
}

function portOk(e: NaclEntry, proto: number, port: number): boolean {
  if (e.protocol === -1) return true;
  if (e.protocol !== proto) return false;
  if (proto === 6 || proto === 17) return e.fromPort <= port && port <= e.toPort;
  if (proto === 1 || proto === 58) {
    const type = port >> 8, code = port & 255;
    return e.fromPort === -1 || (e.fromPort === type && (e.toPort === -1 || e.toPort === code));
  }
  return true;
}

/** The deciding entry (or null for `*`) of one NACL direction. */
export function refNaclEntry(acl: NetworkAcl, egress: boolean, proto: number, addr: string, port: number): NaclEntry | null {
  const a = refAddr(addr);
  const list = acl.entries.filter((e) => e.egress === egress).sort((x, y) => x.ruleNumber - y.ruleNumber);
  for (const e of list) if (portOk(e, proto, port) && refInCidr(a, e.cidr)) return e;
  return null;
}

function allows(acl: NetworkAcl, egress: boolean, proto: number, addr: string, port: number): boolean {
  return refNaclEntry(acl, egress, proto, addr, port)?.allow === true;
}

/** NACLs for src → dst (appearance addresses as text); srcInst/dstInst names or null; srcPort -1 = no reply. */
export function refNaclFlow(model: Model, srcInst: string | null, dstInst: string | null, proto: number,
  src: string, dst: string, srcPort: number, dstPort: number): boolean {
  const ss = srcInst ? refSubnet(model, srcInst) : null;
  const ds = dstInst ? refSubnet(model, dstInst) : null;
  if (ss === ds) return true;
  if (ss) {
    const acl = aclOf(model, ss);
    if (!allows(acl, true, proto, dst, dstPort)) return false;
    if (srcPort >= 0 && !allows(acl, false, proto, dst, srcPort)) return false;
  }
  if (ds) {
    const acl = aclOf(model, ds);
    if (!allows(acl, false, proto, src, dstPort)) return false;
    if (srcPort >= 0 && !allows(acl, true, proto, src, srcPort)) return false;
  }
  return true;
}

function fmt(v: bigint, family: 4 | 6): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 255n)).join('.');
  const g: string[] = [];
  for (let i = 7; i >= 0; i--) g.push(((v >> BigInt(i * 16)) & 0xffffn).toString(16));
  return g.join(':');
}

/** The listener's whole decision for a new inbound flow from a local peer: SG ingress, then NACLs
 * (both paths for an outside peer; the request only for another instance, see below). */
export function refDecideIngress(model: Model, instName: string, proto: number, peerLocal: string, peerPort: number, port: number): number {
  const fam = refAddr(peerLocal).family;
  const app = fmt(refAppear(model, peerLocal), fam);
  const sg = refDecide(model, instName, 0, proto, app, port);
  const a = refAddr(peerLocal);
  const srcInst = model.instances.find((i) => {
    const t = fam === 4 ? i.address : i.address6;
    return t !== null && refAddr(t).value === a.value && refAddr(t).family === fam;
  }) ?? null;
  const inst = model.instances.find((i) => i.name === instName)!;
  const dst = fam === 4 ? inst.address : inst.address6;
  if (dst === null) return sg;
  // From another instance: its outbound entry checked the replies with the app's port (the port
  // here is the relay's), so the listener checks the request only.
  return refNaclFlow(model, srcInst?.name ?? null, instName, proto, app, dst, srcInst ? -1 : peerPort, port) ? sg : 4;
}
