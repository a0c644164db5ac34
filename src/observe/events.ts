// Flow decisions as events, for GET /v1/events (server-sent events) and anyone else listening.
// Free when unused (STYLE.md): publishers check `flowEvents.hasSubscribers` before building an
// object, so the hot path does one property read when nobody listens.

import diagnostics_channel from 'node:diagnostics_channel';

export interface FlowEvent {
  type: 'open' | 'close' | 'reject' | 'refuse' | 'cut' | 'expire';
  protocol: 'tcp' | 'udp';
  instance: string;
  direction: 'ingress' | 'egress';
  src: string;
  srcPort: number;
  dst: string;
  dstPort: number;
  tracked?: boolean;
  bytesIn?: number;
  bytesOut?: number;
  /** why, for reject/refuse/cut/expire: e.g. 'userland-reset', 'backend-down', 'untracked-revoked', 'idle' */
  reason?: string;
  time: string;
}

export const flowEvents = diagnostics_channel.channel('sgemu:flow');

export function publishFlow(e: Omit<FlowEvent, 'time'>): void {
  flowEvents.publish({ ...e, time: new Date().toISOString() });
}
