// The Toxiproxy-compatible API's proxies as a model overlay: the daemon's live model is the base
// model (config + state file + EC2 API changes) with every proxy laid over it as a TCP service.
//
// Owns: the synthetic VPC, groups and instances that carry proxies by default, and where each
// proxy's service goes. Pure: no I/O, no daemon.
// Must not: change the base model's objects (arrays are copied where proxies are added), or throw
// (the daemon lays the overlay over every reload; a proxy that no longer fits is left out and
// reported, the config wins).
// Invariants:
//   - everything synthetic lives in TOXI_VPC, so no config group can reference it and no config
//     instance can carry its groups; the base model, which the state file and the EC2 API see,
//     never holds any of it;
//   - one synthetic instance per listen address and kind: `toxiproxy-127-0-0-1` (group
//     TOXI_OPEN_GROUP: all TCP in, IPv4 and IPv6, as Toxiproxy lets anyone connect) and
//     `toxiproxy-closed-127-0-0-1` (TOXI_CLOSED_GROUP: nothing in, so every SYN is dropped: the
//     `"disabled": "timeout"` extension). A synthetic instance may share its address with a
//     config instance: listeners decide by the instance they belong to, and the config instance,
//     listed first, keeps the address for group references and attribution;
//   - a proxy never takes a listen address:port that a base listener or an earlier proxy holds.

import { defaultGroupId, instanceId, ruleId } from '../../config/ids.js';
import { DEFAULT_CONNECTION_TRACKING, EGRESS, INGRESS, PROTO_ALL, PROTO_TCP, type Fault, type Instance, type Model, type Peer, type Rule, type SecurityGroup, type Service } from '../../model/types.js';
import { listenerSpecs } from '../listeners.js';

export const TOXI_VPC = 'vpc-toxiproxy';
export const TOXI_OPEN_GROUP = 'sg-toxiproxy-open';
export const TOXI_CLOSED_GROUP = 'sg-toxiproxy-closed';
/** Instance names starting so are the overlay's (the README reserves the prefix). */
export const TOXI_INSTANCE_PREFIX = 'toxiproxy-';

/**
 * What the overlay needs of one proxy. `state`:
 *   open     listening, on `instance` (a config instance) or on the synthetic open instance;
 *   closed   disabled with "timeout": listening on the synthetic closed instance (SYNs dropped);
 *   off      disabled with "refuse" (Toxiproxy's own behaviour): no listener at all.
 */
export interface OverlayProxy {
  name: string;
  state: 'open' | 'closed' | 'off';
  /** IPv4 listen address (for `instance`: that instance's address) and the real port (never 0). */
  address: string;
  port: number;
  /** The config instance it lives on (extension `sgemu.instance`), or null: synthetic. */
  instance: string | null;
  backend: { host: string; port: number };
  faults: Fault[];
}

/** `toxiproxy-127-0-0-1`, `toxiproxy-closed-127-0-0-1`. */
export function syntheticInstanceName(address: string, closed: boolean): string {
  return `${TOXI_INSTANCE_PREFIX}${closed ? 'closed-' : ''}${address.replace(/[.:]/g, '-')}`;
}

function cidrRule(groupId: string, direction: 0 | 1, protocol: number, fromPort: number, toPort: number, cidr: string, family: 4 | 6, description: string): Rule {
  const peer: Peer = { kind: 'cidr', cidr, family };
  return { id: ruleId(groupId, { direction, protocol, fromPort, toPort, peer }), groupId, direction, protocol, fromPort, toPort, peer, description };
}

function syntheticGroups(): SecurityGroup[] {
  const egress = (gid: string) => [cidrRule(gid, EGRESS, PROTO_ALL, -1, -1, '0.0.0.0/0', 4, 'AWS default egress')];
  const group = (id: string, name: string, description: string, ingress: Rule[]): SecurityGroup =>
    ({ id, name, vpcId: TOXI_VPC, description, ingress, egress: egress(id), isDefault: false, tags: {} });
  return [
    { id: defaultGroupId(TOXI_VPC), name: 'default', vpcId: TOXI_VPC, description: 'default VPC security group', ingress: [], egress: egress(defaultGroupId(TOXI_VPC)), isDefault: true, tags: {} },
    group(TOXI_OPEN_GROUP, 'toxiproxy-open', 'Toxiproxy API proxies: any TCP in, as Toxiproxy', [
      cidrRule(TOXI_OPEN_GROUP, INGRESS, PROTO_TCP, 0, 65535, '0.0.0.0/0', 4, 'any TCP (IPv4)'),
      cidrRule(TOXI_OPEN_GROUP, INGRESS, PROTO_TCP, 0, 65535, '::/0', 6, 'any TCP (IPv6)'),
    ]),
    group(TOXI_CLOSED_GROUP, 'toxiproxy-closed', 'Toxiproxy API proxies disabled with "timeout": nothing in', []),
  ];
}

export interface OverlayResult {
  model: Model;
  /** Proxies left out, and why (a config change took their address or their instance). */
  skipped: { name: string; why: string }[];
}

/** The base model with `proxies` laid over it. Total: never throws. */
export function overlayModel(given: Model, proxies: readonly OverlayProxy[], opts: { namespace?: boolean } = {}): OverlayResult {
  const base = stripOverlay(given);
  const skipped: OverlayResult['skipped'] = [];
  const live = proxies.filter((p) => p.state !== 'off');
  if (live.length === 0) return { model: base, skipped };
  const taken = new Map<string, string>();
  for (const s of listenerSpecs(base, opts)) taken.set(`${s.protocol}|${s.address}|${s.listenPort}`, `instance ${s.instName}`);

  const instances = base.instances.slice();
  const copied = new Set<number>();         // base instances already copied (services array too)
  const synthetic = new Map<string, Instance>();
  for (const p of live) {
    let inst: Instance | undefined;
    if (p.instance !== null && p.state === 'open') {
      const k = instances.findIndex((i) => i.name === p.instance);
      if (k < 0 || k >= base.instances.length) { skipped.push({ name: p.name, why: `instance ${p.instance} is no longer in the config` }); continue; }
      if (!copied.has(k)) { instances[k] = { ...instances[k]!, services: instances[k]!.services.slice() }; copied.add(k); }
      inst = instances[k]!;
    }
    const address = inst ? inst.address : p.address;
    const key = `${PROTO_TCP}|${address}|${p.port}`;
    const holder = taken.get(key);
    if (holder !== undefined) { skipped.push({ name: p.name, why: `${address}:${p.port} is taken by ${holder}` }); continue; }
    if (!inst) {
      const closed = p.state === 'closed';
      const name = syntheticInstanceName(address, closed);
      if (base.instances.some((i) => i.name === name)) { skipped.push({ name: p.name, why: `the config has an instance named ${name}, a name the overlay reserves` }); continue; }
      inst = synthetic.get(name);
      if (!inst) {
        inst = {
          name, id: instanceId(name), vpcId: TOXI_VPC, subnetId: null, address, address6: null,
          groupIds: [closed ? TOXI_CLOSED_GROUP : TOXI_OPEN_GROUP], connectionTracking: { ...DEFAULT_CONNECTION_TRACKING },
          services: [], outbound: [],
        };
        synthetic.set(name, inst);
      }
    }
    taken.set(key, `proxy ${p.name}`);
    const svc: Service = { protocol: PROTO_TCP, port: p.port, listenPort: p.port, backend: { ...p.backend }, faults: p.faults.map((f) => ({ ...f, attributes: { ...f.attributes } })) };
    inst.services.push(svc);
  }
  if (synthetic.size === 0 && copied.size === 0) return { model: base, skipped };
  const model: Model = {
    ...base,
    instances: [...instances, ...synthetic.values()],
  };
  if (synthetic.size > 0) {
    model.vpcs = [...base.vpcs, { id: TOXI_VPC }];
    model.groups = [...base.groups, ...syntheticGroups()];
  }
  return { model, skipped };
}

/**
 * `model` without anything of TOXI_VPC: a model that already carries the overlay (a caller that
 * edited the live model rather than the base one) gets it once, not twice. Services the overlay
 * put on config instances cannot be told apart: edit Daemon.baseModel, never Daemon.model.
 */
export function stripOverlay(model: Model): Model {
  if (!model.vpcs.some((v) => v.id === TOXI_VPC)) return model;
  return {
    ...model,
    vpcs: model.vpcs.filter((v) => v.id !== TOXI_VPC),
    groups: model.groups.filter((g) => g.vpcId !== TOXI_VPC),
    instances: model.instances.filter((i) => i.vpcId !== TOXI_VPC),
  };
}
