// What the TCP and UDP listeners share: their spec (derived from the model by control), the
// filter modes, and the interface the daemon drives them through.
//
// Filter modes per listener:
//   RULES      the policy's source ranges (normal)
//   DOWN       backend down and raw refusal available: drop every new flow; the Refuser sees it
//              through pcap and answers allowed ones (RST|ACK, ICMP port unreachable)
//   FULL       conntrack full: drop every new flow, as a full kernel table does (silent timeout)
//   CLOSED     outbound entry denied by egress or by the target's ingress: drop every new flow

import type { CompiledPolicy } from '../policy/types.js';

export const MODE_RULES = 0;
export const MODE_DOWN = 1;
export const MODE_FULL = 2;
export const MODE_CLOSED = 3;
export const MODE_NAMES = ['rules', 'backend-down', 'conntrack-full', 'denied'] as const;

export interface ListenerSpec {
  kind: 'service' | 'outbound';
  protocol: 6 | 17;
  instName: string;
  family: 4 | 6;
  address: string;          // listen address (the instance's)
  listenPort: number;
  rulePort: number;         // the port the rules see
  backendHost: string;      // where relayed flows go
  backendPort: number;
  /** Whose liveness decides refusal: the backend itself, or for an outbound entry to another
   * instance, that instance's service backend (its sgemu listener is always up). */
  probeHost: string;
  probePort: number;
  /** outbound: bind relayed flows to the instance's address so the target's rules see it. */
  localAddress: string | null;
  /** outbound: the destination the rules see, and the target instance (null for an outside host). */
  asAddress: string | null;
  targetInstName: string | null;
}

export interface Listener {
  readonly id: number;
  spec: ListenerSpec;
  mode: number;
  filterExact: boolean;
  backendKey: string;
  readonly nativeFilter: boolean;
  /** Live flows of this listener. */
  readonly flowCount: number;
  start(policy: CompiledPolicy): Promise<void>;
  applyPolicy(policy: CompiledPolicy, spec?: ListenerSpec): void;
  refreshFilter(force?: boolean): void;
  decide(remote: string): number;
  describe(): string;
  close(drainMs?: number): Promise<void>;
}

export function listenerKey(s: ListenerSpec): string {
  return `${s.protocol === 6 ? 'tcp' : 'udp'}|${s.address}|${s.listenPort}`;
}
