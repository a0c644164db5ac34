// What the daemon must listen on, derived from the model: one listener per instance service (per
// address family the instance has) and per outbound entry, TCP and UDP. Pure; the daemon diffs
// the result against its running listeners on reload, keyed by protocol + listen address + port.

import { isIP } from 'node:net';
import type { Model } from '../model/types.js';
import type { ListenerSpec } from '../dataplane/listener.js';

/**
 * `namespace` (`sgemu exec`): listeners live in the namespace but the relay connects from the host,
 * where instance addresses do not exist: an outbound entry to another instance goes straight to
 * that instance's backend (its egress and the target's ingress are both decided at our listener,
 * see ListenerBase.decideOutbound), and relayed flows are not bound to the instance's address.
 */
export function listenerSpecs(model: Model, opts: { namespace?: boolean; names?: NameTable } = {}): ListenerSpec[] {
  const out: ListenerSpec[] = [];
  // A host that is a name carries its addresses (BackendNames); one never resolved has none.
  const addrsOf = (host: string): readonly string[] | undefined => isIP(host) !== 0 ? undefined : opts.names?.get(host) ?? [];
  const byName = new Map(model.instances.map((i) => [i.name, i]));
  for (const inst of model.instances) {
    for (const s of inst.services) {
      const addrs: [4 | 6, string][] = [[4, inst.address]];
      if (inst.address6) addrs.push([6, inst.address6]);
      for (const [family, address] of addrs) {
        out.push({
          kind: 'service', protocol: s.protocol, instName: inst.name, family, address, listenPort: s.listenPort, rulePort: s.port,
          backendHost: s.backend.host, backendPort: s.backend.port, probeHost: s.backend.host, probePort: s.backend.port,
          backendAddrs: addrsOf(s.backend.host), probeAddrs: addrsOf(s.backend.host),
          localAddress: null, asAddress: null, targetInstName: null, faults: s.faults ?? [],
        });
      }
    }
    for (const o of inst.outbound) {
      let backendHost = o.toHost, backendPort = o.toPort, probeHost = o.toHost, probePort = o.toPort;
      if (o.toInstance !== null) {
        // Relay to the target instance's sgemu listener (its rules see us); refusal follows the
        // liveness of the service behind it.
        const target = byName.get(o.toInstance);
        const svc = target?.services.find((x) => x.protocol === o.protocol && x.port === o.toPort);
        if (!target || !svc) continue;       // config validation rejects this; stay total anyway
        backendHost = opts.namespace ? svc.backend.host : target.address;
        backendPort = opts.namespace ? svc.backend.port : svc.listenPort;
        probeHost = svc.backend.host; probePort = svc.backend.port;
      }
      out.push({
        kind: 'outbound', protocol: o.protocol, instName: inst.name, family: 4, address: inst.address, listenPort: o.port,
        rulePort: o.asPort, backendHost, backendPort, probeHost, probePort, backendAddrs: addrsOf(backendHost), probeAddrs: addrsOf(probeHost),
        localAddress: opts.namespace ? null : inst.address, asAddress: o.asAddress, targetInstName: o.toInstance,
        faults: o.faults ?? [],
      });
    }
  }
  return out;
}

/** Names to their addresses (src/control/backend-names.ts). */
export interface NameTable { get(name: string): readonly string[] | undefined }
