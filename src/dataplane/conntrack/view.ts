// The conntrack entry as users and scripts see it (SPEC §5): `sgemu conntrack --json` and
// GET /v1/conntrack. Slow path: builds objects.

import { DIRECTION_NAMES, protocolName } from '../../model/types.js';
import { STATE_NAMES, type FlowEntry } from './table.js';

export interface ConntrackJson {
  protocol: string; instance: string; direction: string; state: string; tracked: boolean;
  src: string; srcPort: number; dst: string; dstPort: number;
  bytesIn: number; bytesOut: number; ageSeconds: number; idleSeconds: number; expiresInSeconds: number;
}

const round1 = (x: number) => Math.round(x * 10) / 10;

export function entryToJson(e: FlowEntry, instance: string, nowMs: number): ConntrackJson {
  const idleMs = Math.max(0, nowMs - e.lastSeenMs);
  return {
    protocol: protocolName(e.proto),
    instance,
    direction: DIRECTION_NAMES[e.dir] ?? String(e.dir),
    state: STATE_NAMES[e.state] ?? String(e.state),
    tracked: e.tracked,
    src: e.src, srcPort: e.srcPort, dst: e.dst, dstPort: e.dstPort,
    bytesIn: e.bytesIn, bytesOut: e.bytesOut,
    ageSeconds: round1(Math.max(0, nowMs - e.createdMs) / 1000),
    idleSeconds: round1(idleMs / 1000),
    expiresInSeconds: round1(Math.max(0, e.timeoutMs - idleMs) / 1000),
  };
}
