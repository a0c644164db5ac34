// Prometheus text exposition of the daemon's counters and gauges. Reading is the only cost:
// counters are plain numbers incremented on the hot path (src/dataplane/counters.ts).

import type { Counters } from '../dataplane/counters.js';

export interface Gauges {
  conntrackEntries: number;
  conntrackMax: number;
  listeners: number;
  policyVersion: number;
  reloads: number;
  reloadFailures: number;
  lastReloadSeconds: number;
  apiRequests: number;
  refusalRaw: boolean;
}

/** One listener's outcomes, labelled as users name the flow: instance, protocol, rule port. */
export interface ListenerMetrics {
  instance: string; protocol: 'tcp' | 'udp'; port: number; direction: 'ingress' | 'egress';
  accepted: number; rejected: number; refused: number; flows: number;
}

const label = (v: string) => v.replace(/["\\\n]/g, (c) => (c === '\n' ? '\\n' : '\\' + c));

export function renderMetrics(c: Counters, g: Gauges, listeners: ListenerMetrics[] = []): string {
  const lines: string[] = [];
  const metric = (name: string, type: 'counter' | 'gauge', help: string, value: number, labels = '') => {
    lines.push(`# HELP sgemu_${name} ${help}`, `# TYPE sgemu_${name} ${type}`, `sgemu_${name}${labels} ${value}`);
  };
  metric('flows_accepted_total', 'counter', 'Flows allowed and relayed to a backend.', c.accepted);
  lines.push('# HELP sgemu_flows_rejected_total Flows denied by the rules.', '# TYPE sgemu_flows_rejected_total counter',
    `sgemu_flows_rejected_total{where="kernel"} ${c.rejectedKernel}`, `sgemu_flows_rejected_total{where="userland"} ${c.rejectedUser}`);
  lines.push('# HELP sgemu_flows_refused_total Allowed flows to a backend that is not listening.', '# TYPE sgemu_flows_refused_total counter',
    `sgemu_flows_refused_total{how="raw"} ${c.refusedRaw}`, `sgemu_flows_refused_total{how="reset"} ${c.refusedReset}`);
  metric('conntrack_overflow_total', 'counter', 'New flows dropped because the conntrack table was full.', c.overflowDropped);
  metric('conntrack_entries', 'gauge', 'Live connection-tracking entries.', g.conntrackEntries);
  metric('conntrack_max', 'gauge', 'Connection-tracking table size (--conntrack-max).', g.conntrackMax);
  metric('conntrack_idle_expired_total', 'counter', 'Flows expired by idle timeout.', c.idleExpired);
  metric('untracked_cut_total', 'counter', 'Untracked flows cut by a rule change.', c.untrackedCut);
  metric('relay_resets_total', 'counter', 'Resets and broken pipes seen on relayed sockets.', c.resets);
  lines.push('# HELP sgemu_bytes_total Bytes relayed by closed flows.', '# TYPE sgemu_bytes_total counter',
    `sgemu_bytes_total{direction="in"} ${c.bytesIn}`, `sgemu_bytes_total{direction="out"} ${c.bytesOut}`);
  metric('policy_version', 'gauge', 'Version of the live compiled policy.', g.policyVersion);
  metric('policy_reloads_total', 'counter', 'Successful policy reloads.', g.reloads);
  metric('policy_reload_failures_total', 'counter', 'Rejected reloads (the running rules stayed).', g.reloadFailures);
  metric('policy_last_reload_seconds', 'gauge', 'Duration of the last reload (load + compile + swap).', g.lastReloadSeconds);
  metric('filter_attaches_total', 'counter', 'Socket filter programs attached.', c.filterAttaches);
  metric('listeners', 'gauge', 'Listening sockets.', g.listeners);
  metric('api_requests_total', 'counter', 'API requests served.', g.apiRequests);
  metric('refusal_raw', 'gauge', '1 when refusals are exact (RST / ICMP), 0 in accept-then-reset fallback.', g.refusalRaw ? 1 : 0);
  if (listeners.length > 0) {
    lines.push('# HELP sgemu_listener_flows_total Flows per listener and outcome (rejected counts what the kernel filter dropped only while libpcap watches that listener).',
      '# TYPE sgemu_listener_flows_total counter');
    for (const l of listeners) {
      const base = `instance="${label(l.instance)}",protocol="${l.protocol}",port="${l.port}",direction="${l.direction}"`;
      lines.push(`sgemu_listener_flows_total{${base},outcome="accepted"} ${l.accepted}`,
        `sgemu_listener_flows_total{${base},outcome="rejected"} ${l.rejected}`,
        `sgemu_listener_flows_total{${base},outcome="refused"} ${l.refused}`);
    }
    lines.push('# HELP sgemu_listener_open_flows Flows open now per listener.', '# TYPE sgemu_listener_open_flows gauge');
    for (const l of listeners) {
      lines.push(`sgemu_listener_open_flows{instance="${label(l.instance)}",protocol="${l.protocol}",port="${l.port}",direction="${l.direction}"} ${l.flows}`);
    }
  }
  return lines.join('\n') + '\n';
}
