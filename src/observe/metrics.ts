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

export function renderMetrics(c: Counters, g: Gauges): string {
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
  return lines.join('\n') + '\n';
}
