// Config loading, part two: the instance side of the file — subnets, instances (their groups,
// subnet, connection tracking), services, outbound entries and address mappings — resolved
// against the rules side read first (load-rules.ts: VPCs, groups, NACLs).
// Must not: throw (errors are recorded on the Reader). Owns the process-wide address scope.

import { readFaults } from './faults.js';
import {
  DEFAULT_CONNECTION_TRACKING, PROTO_TCP, PROTO_UDP, hostPort, protocolName, type Instance, type Outbound,
  type Service, type SourcePos, defaultNetworkAclId,
} from '../model/types.js';
import { cidrsOverlap, parseCidr, parseIp, type ParsedCidr } from './cidr.js';
import { defaultGroupId, instanceId } from './ids.js';
import { indexPath, keyPath } from './read.js';
import { kindName, scalarText, type TMap, type TNode } from './yaml-tree.js';
import { CONFIG_OBJECTS, PATTERNS, fieldsOf } from './schema.js';
import { RulesLoader, cidrMessage, parseProtocol, range } from './load-rules.js';

const INSTANCE_KEYS = fieldsOf('instance');
const CT_KEYS = fieldsOf('connectionTracking');
const SERVICE_KEYS = fieldsOf('service');
const OUTBOUND_KEYS = fieldsOf('outbound');
const SUBNET_KEYS = fieldsOf('subnet');

const INSTANCE_ID = new RegExp(PATTERNS.instanceId);
const INSTANCE_NAME = new RegExp(PATTERNS.instanceName);
const SUBNET_ID = new RegExp(PATTERNS.subnetId);
const CT = CONFIG_OBJECTS.connectionTracking.properties;

/**
 * Where instances may live: 'loopback' (127.0.0.0/8, the default) or 'any', inside `sgemu exec`'s
 * private network namespace, where they keep their AWS addresses. One per process (the daemon sets
 * it before loading), so the config file, the state file and the EC2 API validate alike.
 */
let addressScope: 'loopback' | 'any' = 'loopback';
export function setAddressScope(scope: 'loopback' | 'any'): void { addressScope = scope; }

/** The instance side's passes, over the state and lookups of RulesLoader. */
export class InstancesLoader extends RulesLoader {
  readInstances(top: TMap): void {
    const r = this.r;
    const items = r.list(r.child(top, 'instances'), 'instances', 'instances');
    const names = new Map<string, string>();
    const ids = new Map<string, string>();
    const addrs = new Map<string, string>();
    const pendingOutbound: { inst: Instance; m: TMap; path: string }[] = [];
    for (const { node, path } of items) {
      const m = r.map(node, path, INSTANCE_KEYS, 'an instance');
      if (!m) continue;
      let ok = true;
      const nameNode = r.need(m, 'name', path, 'an instance');
      const name = r.str(nameNode, keyPath(path, 'name'), 'instance name');
      if (name === undefined || !nameNode) ok = false;
      else if (!INSTANCE_NAME.test(name)) {
        r.err('InvalidParameterValue', keyPath(path, 'name'), nameNode.pos, `instance name "${name}" must be letters, digits, . _ - (up to 63), starting with a letter or digit`);
        ok = false;
      } else if (names.has(name)) {
        r.err('InvalidParameterValue', keyPath(path, 'name'), nameNode.pos, `instance name "${name}" is already used at ${names.get(name)}; names are unique`);
        ok = false;
      } else names.set(name, path);

      const idNode = r.child(m, 'id');
      let id = name !== undefined ? instanceId(name) : '';
      if (idNode) {
        const given = r.str(idNode, keyPath(path, 'id'), 'instance id');
        if (given !== undefined && !INSTANCE_ID.test(given)) { r.err('InvalidParameterValue', keyPath(path, 'id'), idNode.pos, `instance id "${given}" must be i- and lowercase hex digits, e.g. i-0123456789abcdef0`); ok = false; }
        else if (given !== undefined && ids.has(given)) { r.err('InvalidParameterValue', keyPath(path, 'id'), idNode.pos, `instance id "${given}" is already used at ${ids.get(given)}`); ok = false; }
        else if (given !== undefined) id = given;
      }
      if (id) ids.set(id, path);

      const addrNode = r.need(m, 'address', path, 'an instance');
      const addrText = r.str(addrNode, keyPath(path, 'address'), 'address');
      let address = '';
      if (addrText !== undefined && addrNode) {
        const ip = parseIp(addrText);
        if (!ip || ip.family !== 4) {
          r.err('InvalidParameterValue', keyPath(path, 'address'), addrNode.pos, `address "${addrText}" is not an IPv4 address; use a loopback address such as 127.0.0.10 (IPv6 goes in address6)`);
          ok = false;
        } else if (ip.bytes[0] !== 127 && addressScope !== 'any') {
          r.err('InvalidParameterValue', keyPath(path, 'address'), addrNode.pos, `address ${ip.text}: instances live on loopback addresses (127.0.0.0/8), e.g. 127.0.0.10; to make rules see another address use addresses:, or run inside \`sgemu exec\`, where instances keep any address`);
          ok = false;
        } else if (addrs.has(ip.text)) {
          r.err('InvalidParameterValue', keyPath(path, 'address'), addrNode.pos, `address ${ip.text} is already used by ${addrs.get(ip.text)}; each instance needs its own`);
          ok = false;
        } else { address = ip.text; addrs.set(address, path); }
      } else ok = false;

      const a6Node = r.child(m, 'address6');
      let address6: string | null = null;
      const a6Text = r.str(a6Node, keyPath(path, 'address6'), 'address6');
      if (a6Text !== undefined && a6Node) {
        const ip = parseIp(a6Text);
        if (!ip || ip.family !== 6) { r.err('InvalidParameterValue', keyPath(path, 'address6'), a6Node.pos, `address6 "${a6Text}" is not an IPv6 address (e.g. ::1)`); ok = false; }
        else if (addrs.has(ip.text)) { r.err('InvalidParameterValue', keyPath(path, 'address6'), a6Node.pos, `address6 ${ip.text} is already used by ${addrs.get(ip.text)}; each instance needs its own`); ok = false; }
        else { address6 = ip.text; addrs.set(address6, path); }
      }

      const { vpcId, groupIds } = this.readInstanceGroups(m, path, name);
      if (vpcId === undefined) ok = false;
      const subnetId = vpcId === undefined ? null : this.readInstanceSubnet(m, path, vpcId);
      if (subnetId === undefined) ok = false;
      const connectionTracking = this.readConnectionTracking(m, path);
      const services = this.readServices(m, path);
      if (!ok || vpcId === undefined || name === undefined) continue;
      const inst: Instance = {
        name, id, vpcId, address, address6, groupIds, connectionTracking, services, outbound: [], pos: r.sourcePos(path, m),
      };
      if (subnetId) inst.subnetId = subnetId;
      this.instances.push(inst);
      pendingOutbound.push({ inst, m, path });
    }
    // Outbound targets may name instances listed later.
    for (const p of pendingOutbound) {
      p.inst.outbound = this.readOutbound(p.inst, p.m, p.path);
      this.checkListenCollisions(p.inst, p.path);
    }
    if (addressScope === 'loopback') this.checkRelayLoops();
  }

  /**
   * A service whose backend is an sgemu listener relays into sgemu; when that chain comes back to
   * where it started (the commonest: an instance on 127.0.0.1 whose service's backend is its own
   * address and port) each connection opens the next one until the conntrack table is full, and
   * the client gets nothing. Rejected here with the chain. Only on the host: inside `sgemu exec`
   * listeners live in the namespace and the relay connects from the host, so none is reachable.
   * A backend given by a name other than localhost cannot be followed before it is resolved.
   */
  checkRelayLoops(): void {
    interface Node { label: string; next: string | null; svc: Service | null; path: string }
    const nodes = new Map<string, Node>();
    const key = (proto: number, addr: string, port: number): string => `${proto}/${addr}/${port}`;
    const hostsOf = (host: string): string[] => host === 'localhost' ? ['127.0.0.1', '::1']
      : host === '0.0.0.0' ? ['127.0.0.1'] : host === '::' ? ['::1'] : [host];
    const targetOf = (proto: number, host: string, port: number): string | null => {
      for (const h of hostsOf(host)) if (nodes.has(key(proto, h, port))) return key(proto, h, port);
      return null;
    };
    const addrsOf = (inst: Instance): string[] => inst.address6 ? [inst.address, inst.address6] : [inst.address];
    const byName = new Map(this.instances.map((i) => [i.name, i]));
    this.instances.forEach((inst, ii) => {
      inst.services.forEach((svc, si) => {
        const path = svc.pos?.path ?? indexPath(keyPath(indexPath('instances', ii), 'services'), si);
        for (const a of addrsOf(inst)) {
          nodes.set(key(svc.protocol, a, svc.listenPort), { label: `${inst.name} ${protocolName(svc.protocol)} ${hostPort(a, svc.listenPort)}`, next: null, svc, path });
        }
      });
      inst.outbound.forEach((o, oi) => {
        const path = o.pos?.path ?? indexPath(keyPath(indexPath('instances', ii), 'outbound'), oi);
        nodes.set(key(o.protocol, inst.address, o.port), { label: `${inst.name} outbound ${protocolName(o.protocol)} ${hostPort(inst.address, o.port)}`, next: null, svc: null, path });
      });
    });
    for (const inst of this.instances) {
      for (const svc of inst.services) {
        const next = targetOf(svc.protocol, svc.backend.host, svc.backend.port);
        for (const a of addrsOf(inst)) nodes.get(key(svc.protocol, a, svc.listenPort))!.next = next;
      }
      for (const o of inst.outbound) {
        // To an instance: its service's listener (listeners.ts); to an address: whatever is there.
        const target = o.toInstance !== null ? byName.get(o.toInstance) : undefined;
        const svc = target?.services.find((x) => x.protocol === o.protocol && x.port === o.toPort);
        const next = target && svc ? key(o.protocol, target.address, svc.listenPort) : targetOf(o.protocol, o.toHost, o.toPort);
        nodes.get(key(o.protocol, inst.address, o.port))!.next = next;
      }
    }
    // Each listener relays to at most one other: walk from each, a revisited node closes a loop.
    const reported = new Set<string>();
    for (const start of nodes.keys()) {
      const chain: string[] = [];
      const at = new Map<string, number>();
      let k: string | null = start;
      while (k !== null && !at.has(k)) { at.set(k, chain.length); chain.push(k); k = nodes.get(k)!.next; }
      if (k === null) continue;
      const loop = chain.slice(at.get(k)!);
      if (loop.some((x) => reported.has(x))) continue;
      for (const x of loop) reported.add(x);
      // Reported at the first service of the loop in config order (a loop always has one: an
      // outbound entry's target is a service or an outside address).
      const first = [...nodes.keys()].find((x) => loop.includes(x) && nodes.get(x)!.svc !== null) ?? loop[0]!;
      const n = nodes.get(first)!;
      const from = loop.indexOf(first);
      const ordered = [...loop.slice(from), ...loop.slice(0, from), first].map((x) => nodes.get(x)!.label);
      const b = n.svc?.backend;
      this.r.err('InvalidParameterValue', n.svc ? keyPath(n.path, 'backend') : n.path, n.svc?.pos ?? undefined,
        (loop.length === 1 && b ? `backend ${hostPort(b.host, b.port)} is this service's own listener` : 'these listeners relay to each other in a loop') +
        `: ${ordered.join(' -> ')}; every connection would open the next one until the connection table is full. ` +
        'Point the backend at the server behind sgemu (e.g. 127.0.0.1:3000), or give the instance another address');
    }
  }

  readInstanceGroups(m: TMap, path: string, name: string | undefined): { vpcId: string | undefined; groupIds: string[] } {
    const r = this.r;
    const gpath = keyPath(path, 'securityGroups');
    const gn = r.child(m, 'securityGroups');
    const refs = r.list(gn, gpath, 'securityGroups', true);
    let vpcId: string | undefined;
    if (r.child(m, 'vpc') || this.vpcs.length === 1) vpcId = this.vpcOf(m, path, 'an instance');
    else {
      // Several VPCs and no vpc: the first listed group decides.
      const first = refs[0];
      const ref = first ? r.str(first.node, first.path, 'group') : undefined;
      vpcId = ref !== undefined ? this.groupsById.get(ref)?.group.vpcId : undefined;
      if (vpcId === undefined) vpcId = this.vpcOf(m, path, 'an instance');
    }
    if (vpcId === undefined) return { vpcId, groupIds: [] };
    if (gn && refs.length === 0) {
      r.err('MissingParameter', gpath, gn.pos, 'securityGroups is empty; an instance needs at least one group (leave securityGroups out for the VPC\'s default group)');
      return { vpcId, groupIds: [] };
    }
    if (!gn) return { vpcId, groupIds: [defaultGroupId(vpcId)] };
    const groupIds: string[] = [];
    for (const ref of refs) {
      const text = r.str(ref.node, ref.path, 'group');
      if (text === undefined) continue;
      const g = this.resolveGroup(text, vpcId, ref.path, ref.node, name === undefined ? 'the instance' : `instance ${name}`);
      if (!g) continue;
      if (groupIds.includes(g.id)) {
        r.err('InvalidParameterValue', ref.path, ref.node.pos, `group ${g.id} is attached twice; list each group once`);
        continue;
      }
      groupIds.push(g.id);
    }
    if (refs.length > this.quotas.groupsPerInstance && gn) {
      r.err('SecurityGroupsPerInstanceLimitExceeded', gpath, gn.pos,
        `The maximum number of security groups per instance has been reached: ${refs.length} groups, quota ${this.quotas.groupsPerInstance} (raise quotas.groupsPerInstance, up to 16)`);
    }
    return { vpcId, groupIds };
  }

  /** The instance's `subnet` (null: the implicit one); undefined when it is wrong (error recorded). */
  readInstanceSubnet(m: TMap, path: string, vpcId: string): string | null | undefined {
    const r = this.r;
    const n = r.child(m, 'subnet');
    if (!n) return null;
    const id = r.str(n, keyPath(path, 'subnet'), 'subnet');
    if (id === undefined) return undefined;
    const sn = this.subnets.get(id);
    if (!sn) {
      const known = [...this.subnets.keys()];
      r.err('InvalidSubnetID.NotFound', keyPath(path, 'subnet'), n.pos,
        `The subnet ID '${id}' does not exist; ${known.length ? `subnets: ${known.join(', ')}` : 'define it under subnets:'}`);
      return undefined;
    }
    if (sn.vpcId !== vpcId) {
      r.err('InvalidParameterValue', keyPath(path, 'subnet'), n.pos, `subnet ${id} is in ${sn.vpcId} but the instance is in ${vpcId}; an instance's subnet must be in its VPC`);
      return undefined;
    }
    return id;
  }

  /** subnets: id, VPC, CIDR (informational, IPv4 /16../28, no overlap within a VPC), network ACL. */
  readSubnets(top: TMap): void {
    const r = this.r;
    const cidrs: { c: ParsedCidr; vpcId: string; path: string }[] = [];
    for (const { node, path } of r.list(r.child(top, 'subnets'), 'subnets', 'subnets')) {
      const m = r.map(node, path, SUBNET_KEYS, 'a subnet');
      if (!m) continue;
      const idNode = r.need(m, 'id', path, 'a subnet');
      const id = r.str(idNode, keyPath(path, 'id'), 'subnet id');
      const vpcId = this.vpcOf(m, path, 'a subnet');
      if (id === undefined || !idNode || vpcId === undefined) continue;
      if (!SUBNET_ID.test(id)) {
        r.err('InvalidParameterValue', keyPath(path, 'id'), idNode.pos, `subnet id "${id}" must look like subnet-<letters, digits, . _ ->, e.g. subnet-app`);
        continue;
      }
      if (this.subnets.has(id)) {
        r.err('InvalidParameterValue', keyPath(path, 'id'), idNode.pos, `subnet id "${id}" is defined twice (first at ${this.subnets.get(id)?.pos?.path})`);
        continue;
      }
      let cidr: string | null = null;
      const cn = r.child(m, 'cidr');
      const ctext = r.str(cn, keyPath(path, 'cidr'), 'cidr');
      if (cn && ctext !== undefined) {
        const c = parseCidr(ctext);
        if (!c) { r.err('InvalidParameterValue', keyPath(path, 'cidr'), cn.pos, cidrMessage(ctext)); continue; }
        if (c.family !== 4 || c.prefix < 16 || c.prefix > 28) {
          r.err('InvalidSubnet.Range', keyPath(path, 'cidr'), cn.pos, `The CIDR '${c.text}' is invalid: a subnet's CIDR is IPv4, /16 to /28`);
          continue;
        }
        const clash = cidrs.find((o) => o.vpcId === vpcId && cidrsOverlap(o.c, c));
        if (clash) {
          r.err('InvalidSubnet.Conflict', keyPath(path, 'cidr'), cn.pos, `The CIDR '${c.text}' conflicts with another subnet (${clash.c.text} at ${clash.path})`);
          continue;
        }
        cidrs.push({ c, vpcId, path: keyPath(path, 'cidr') });
        cidr = c.text;
      }
      let networkAclId = defaultNetworkAclId(vpcId);
      const an = r.child(m, 'networkAcl');
      const atext = r.str(an, keyPath(path, 'networkAcl'), 'networkAcl');
      if (an && atext !== undefined) {
        const acl = this.networkAcls.get(atext);
        if (!acl) {
          r.err('InvalidNetworkAclID.NotFound', keyPath(path, 'networkAcl'), an.pos,
            `The network ACL ID '${atext}' does not exist; network ACLs: ${[...this.networkAcls.keys()].join(', ')}`);
          continue;
        }
        if (acl.vpcId !== vpcId) {
          r.err('InvalidParameterValue', keyPath(path, 'networkAcl'), an.pos, `network ACL ${atext} is in ${acl.vpcId} but subnet ${id} is in ${vpcId}; a subnet's NACL must be in its VPC`);
          continue;
        }
        networkAclId = acl.id;
      }
      this.subnets.set(id, { id, vpcId, cidr, networkAclId, pos: r.sourcePos(path, m) });
    }
  }

  readConnectionTracking(m: TMap, path: string): Instance['connectionTracking'] {
    const r = this.r;
    const ct = { ...DEFAULT_CONNECTION_TRACKING };
    const n = r.child(m, 'connectionTracking');
    if (!n) return ct;
    const cpath = keyPath(path, 'connectionTracking');
    const cm = r.map(n, cpath, CT_KEYS, 'connectionTracking');
    if (!cm) return ct;
    // Ranges of ConnectionTrackingSpecificationRequest (reference §3.3).
    const tcp = r.int(r.child(cm, 'tcpEstablishedTimeout'), keyPath(cpath, 'tcpEstablishedTimeout'), 'tcpEstablishedTimeout (seconds)', ...range(CT.tcpEstablishedTimeout));
    const udp = r.int(r.child(cm, 'udpTimeout'), keyPath(cpath, 'udpTimeout'), 'udpTimeout (seconds)', ...range(CT.udpTimeout));
    const stream = r.int(r.child(cm, 'udpStreamTimeout'), keyPath(cpath, 'udpStreamTimeout'), 'udpStreamTimeout (seconds)', ...range(CT.udpStreamTimeout));
    if (tcp !== undefined) ct.tcpEstablishedTimeoutS = tcp;
    if (udp !== undefined) ct.udpTimeoutS = udp;
    if (stream !== undefined) ct.udpStreamTimeoutS = stream;
    return ct;
  }

  readL4(n: TNode | undefined, path: string, m: TMap, parentPath: string, what: string): typeof PROTO_TCP | typeof PROTO_UDP | undefined {
    const r = this.r;
    if (!n) { r.need(m, 'protocol', parentPath, what); return undefined; }
    const p = parseProtocol(n);
    if (p === PROTO_TCP || p === PROTO_UDP) return p;
    r.err('InvalidParameterValue', path, n.pos, `${what} protocol must be tcp or udp, found ${n.kind === 'scalar' ? scalarText(n) : kindName(n)}`);
    return undefined;
  }

  readServices(m: TMap, path: string): Service[] {
    const r = this.r;
    const out: Service[] = [];
    for (const { node, path: sp } of r.list(r.child(m, 'services'), keyPath(path, 'services'), 'services')) {
      const sm = r.map(node, sp, SERVICE_KEYS, 'a service');
      if (!sm) continue;
      const protocol = this.readL4(r.child(sm, 'protocol'), keyPath(sp, 'protocol'), sm, sp, 'a service');
      const port = r.int(r.need(sm, 'port', sp, 'a service'), keyPath(sp, 'port'), 'port', 1, 65535);
      const lpNode = r.child(sm, 'listenPort');
      const listenPort = lpNode ? r.int(lpNode, keyPath(sp, 'listenPort'), 'listenPort', 1, 65535) : port;
      const bn = r.need(sm, 'backend', sp, 'a service');
      let backend: Service['backend'] | undefined;
      if (bn) {
        if (bn.kind === 'scalar' && typeof bn.value === 'number') {
          const bp = r.int(bn, keyPath(sp, 'backend'), 'backend port', 1, 65535);
          if (bp !== undefined) backend = { host: '127.0.0.1', port: bp };
        } else {
          const text = r.str(bn, keyPath(sp, 'backend'), 'backend');
          if (text !== undefined) {
            backend = /^\d+$/.test(text.trim()) && Number(text) >= 1 && Number(text) <= 65535
              ? { host: '127.0.0.1', port: Number(text) }
              : hostOnly(parseHostPort(text));
            if (!backend) {
              r.err('InvalidParameterValue', keyPath(sp, 'backend'), bn.pos, `backend "${text}" is not host:port, [ipv6]:port or a port number (e.g. 127.0.0.1:3000)`);
            }
          }
        }
      }
      const faults = protocol === undefined ? [] : readFaults(r.child(sm, 'faults'), keyPath(sp, 'faults'), protocol, (path, pos, msg) => r.err('InvalidParameterValue', path, pos, msg));
      if (protocol === undefined || port === undefined || listenPort === undefined || !backend) continue;
      out.push({ protocol, port, listenPort, backend, ...(faults.length ? { faults } : {}), pos: r.sourcePos(sp, sm) });
    }
    return out;
  }

  readOutbound(inst: Instance, m: TMap, path: string): Outbound[] {
    const r = this.r;
    const out: Outbound[] = [];
    for (const { node, path: op } of r.list(r.child(m, 'outbound'), keyPath(path, 'outbound'), 'outbound')) {
      const om = r.map(node, op, OUTBOUND_KEYS, 'an outbound entry');
      if (!om) continue;
      const protocol = this.readL4(r.child(om, 'protocol'), keyPath(op, 'protocol'), om, op, 'an outbound entry');
      const port = r.int(r.need(om, 'port', op, 'an outbound entry'), keyPath(op, 'port'), 'port', 1, 65535);
      const toNode = r.need(om, 'to', op, 'an outbound entry');
      const toText = r.str(toNode, keyPath(op, 'to'), 'to');
      const asNode = r.child(om, 'as');
      const asText = r.str(asNode, keyPath(op, 'as'), 'as');
      if (toText === undefined || !toNode || protocol === undefined || port === undefined) continue;
      const target = parseHostPort(toText);
      if (!target) {
        r.err('InvalidParameterValue', keyPath(op, 'to'), toNode.pos, `to "${toText}" is not instanceName:port, ipv4:port or [ipv6]:port (e.g. db:5432)`);
        continue;
      }
      const faults = readFaults(r.child(om, 'faults'), keyPath(op, 'faults'), protocol, (path, pos, msg) => r.err('InvalidParameterValue', path, pos, msg));
      const entry: Outbound = {
        protocol, port, toInstance: null, toHost: target.host, toPort: target.port, asAddress: target.host, asPort: target.port,
        ...(faults.length ? { faults } : {}), pos: r.sourcePos(op, om),
      };
      if (!target.isIp) {
        const peer = this.instances.find((i) => i.name === target.host);
        if (!peer) {
          r.err('InvalidInstanceID.NotFound', keyPath(op, 'to'), toNode.pos,
            `The instance '${target.host}' does not exist; to names an instance (${this.instances.map((i) => i.name).join(', ') || 'none defined'}) or an IP address`);
          continue;
        }
        const svc = peer.services.find((s) => s.protocol === protocol && s.port === target.port);
        if (!svc) {
          const have = peer.services.map((s) => `${protocolName(s.protocol)}/${s.port}`).join(', ') || 'none';
          r.err('InvalidParameterValue', keyPath(op, 'to'), toNode.pos,
            `instance ${peer.name} has no ${protocolName(protocol)} service on port ${target.port}; its services: ${have}`);
          continue;
        }
        if (asNode) {
          r.err('InvalidParameterValue', keyPath(op, 'as'), asNode.pos, `as applies to outside targets only; rules already see instance ${peer.name} as ${peer.address}:${target.port}`);
          continue;
        }
        entry.toInstance = peer.name;
        entry.toHost = peer.address;
        entry.asAddress = peer.address;
      } else if (asText !== undefined && asNode) {
        const as = parseHostPort(asText);
        if (!as || !as.isIp) {
          r.err('InvalidParameterValue', keyPath(op, 'as'), asNode.pos, `as "${asText}" is not ipv4:port or [ipv6]:port (e.g. 52.94.0.10:443)`);
          continue;
        }
        entry.asAddress = as.host;
        entry.asPort = as.port;
      }
      out.push(entry);
    }
    return out;
  }

  /** Services (address:listenPort) and outbound entries (address:port) share the instance's sockets. */
  checkListenCollisions(inst: Instance, path: string): void {
    const seen = new Map<string, string>();
    const check = (proto: number, port: number, where: string, pos: SourcePos | undefined): void => {
      const k = `${proto}/${port}`;
      const prior = seen.get(k);
      if (prior !== undefined) {
        this.r.err('InvalidParameterValue', where, pos, `${protocolName(proto)} ${inst.address}:${port} collides with ${prior}; give one of them another port (listenPort for a service)`);
      } else seen.set(k, where);
    };
    inst.services.forEach((s, i) => check(s.protocol, s.listenPort, s.pos?.path ?? indexPath(keyPath(path, 'services'), i), s.pos));
    inst.outbound.forEach((o, i) => check(o.protocol, o.port, o.pos?.path ?? indexPath(keyPath(path, 'outbound'), i), o.pos));
  }

  readAddresses(top: TMap): void {
    const r = this.r;
    const n = r.child(top, 'addresses');
    if (!n) return;
    if (n.kind !== 'map') {
      r.err('InvalidParameterValue', 'addresses', n.pos, 'addresses must be a mapping of local: appearsAs (e.g. 127.0.0.1: 198.51.100.7)');
      return;
    }
    const locals: { c: ParsedCidr; path: string }[] = [];
    const shown: { c: ParsedCidr; path: string }[] = [];
    for (const [k, { keyPos, node }] of n.entries) {
      const p = keyPath('addresses', k);
      const local = parseCidr(k, true);
      if (!local) { r.err('InvalidParameterValue', p, keyPos, `local side "${k}" is not an address or CIDR`); continue; }
      const asText = r.str(node, p, `addresses entry ${k}`);
      if (asText === undefined) continue;
      const as = parseCidr(asText, true);
      if (!as) { r.err('InvalidParameterValue', p, node.pos, `"${asText}" (what ${k} appears as) is not an address or CIDR`); continue; }
      if (as.family !== local.family || as.prefix !== local.prefix) {
        r.err('InvalidParameterValue', p, node.pos, `${local.text} and ${as.text} must be the same family and size (one-to-one): /${local.prefix} vs /${as.prefix}`);
        continue;
      }
      const l2 = locals.find((o) => cidrsOverlap(o.c, local));
      if (l2) { r.err('InvalidParameterValue', p, keyPos, `local ${local.text} overlaps ${l2.c.text} (${l2.path}); each local address may appear as one address only`); continue; }
      const s2 = shown.find((o) => cidrsOverlap(o.c, as));
      if (s2) { r.err('InvalidParameterValue', p, node.pos, `${as.text} overlaps ${s2.c.text} (${s2.path}); two local blocks may not appear as the same addresses`); continue; }
      locals.push({ c: local, path: p });
      shown.push({ c: as, path: p });
      this.addresses.push({ local: local.text, appearsAs: as.text, family: local.family, pos: { path: p, line: keyPos.line, column: keyPos.column } });
    }
  }
}

/** `host:port`, `[v6]:port`; host an IP literal (canonicalised) or a name (a hostname, or an instance). Ports 1..65535. */
function parseHostPort(text: string): { host: string; port: number; isIp: boolean } | null {
  const s = text.trim();
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(s) ?? /^([^:[\]]+):(\d{1,5})$/.exec(s);
  if (!m) return null;
  const host = m[1] ?? '';
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return null;
  const ip = parseIp(host);
  if (ip) return { host: ip.text, port, isIp: true };
  if (s.startsWith('[')) return null;
  if (!/^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$/.test(host) || /^[\d.]+$/.test(host)) return null;
  return { host, port, isIp: false };
}

function hostOnly(hp: { host: string; port: number } | null): { host: string; port: number } | undefined {
  return hp ? { host: hp.host, port: hp.port } : undefined;
}

