// Prometheus metrics of one daemon through prom-client, on a Registry of its own (never the
// global default registry: tests and `loadtest -c` run several daemons in one process).
//
// Owns: metric names, help texts, labels; the reload-duration histogram and the API request
// counter (both control-plane events, observed as they happen).
// Must not: be called from the data plane. Flow, byte and conntrack numbers stay plain
// increments on the hot path (src/dataplane/counters.ts, listener `stats`); they are read here
// only at scrape time, in collect() callbacks, so an unscraped daemon pays nothing.
// Invariants: label sets are bounded (instances × ports × directions of the config, API actions
// from a fixed list); a listener that went away in a reload takes its series with it.

import { Counter, Gauge, Histogram, Registry } from 'prom-client';
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
  /** Faults in force on the listener's flows (SPEC.md §9). */
  faults: number;
}

/** What a scrape reads from the daemon; each call is O(listeners) and allocates only here. */
export interface MetricsSource {
  readonly counters: Counters;
  gauges(): Gauges;
  listeners(): ListenerMetrics[];
  /** Per fault type: flows that got it since start (toxicity rolled per flow). */
  faultFlows?(): Record<string, number>;
  /** What UDP faults did to datagrams (lost, duplicated, reordered, delayed, over_cap) of live listeners. */
  faultDatagrams?(): Record<string, number>;
}

/** Reload durations (compile + swap, plus load for file reloads): 0.5 ms .. 5 s. */
export const RELOAD_BUCKETS_S = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

type LabelName = 'instance' | 'protocol' | 'port' | 'direction';

export class DaemonMetrics {
  readonly registry = new Registry();
  private readonly reloadSeconds: Histogram<never>;
  private readonly apiRequests: Counter<'action' | 'status'>;

  constructor(src: MetricsSource) {
    const r = this.registry;
    // A counter whose value lives in the daemon: collect() copies it at scrape time.
    const lazyCounter = (name: string, help: string, read: () => number): void => {
      new Counter({ name: `sgemu_${name}`, help, registers: [r], collect() { this.reset(); this.inc(read()); } });
    };
    const lazyGauge = (name: string, help: string, read: () => number): void => {
      new Gauge({ name: `sgemu_${name}`, help, registers: [r], collect() { this.set(read()); } });
    };
    const c = src.counters;
    // One gauges() snapshot per scrape would be nicer, but prom-client collects metric by
    // metric; gauges() is a handful of field reads, so each callback takes its own.
    const g = (): Gauges => src.gauges();

    lazyCounter('flows_accepted_total', 'Flows allowed and relayed to a backend.', () => c.accepted);
    new Counter({
      name: 'sgemu_flows_rejected_total', help: 'Flows denied by the rules (kernel: seen through libpcap after the socket filter dropped them).',
      labelNames: ['where'] as const, registers: [r],
      collect() { this.reset(); this.inc({ where: 'kernel' }, c.rejectedKernel); this.inc({ where: 'userland' }, c.rejectedUser); },
    });
    new Counter({
      name: 'sgemu_flows_refused_total', help: 'Allowed flows to a backend that is not listening.',
      labelNames: ['how'] as const, registers: [r],
      collect() { this.reset(); this.inc({ how: 'raw' }, c.refusedRaw); this.inc({ how: 'reset' }, c.refusedReset); },
    });
    lazyCounter('conntrack_overflow_total', 'New flows dropped because the conntrack table was full.', () => c.overflowDropped);
    lazyGauge('conntrack_entries', 'Live connection-tracking entries.', () => g().conntrackEntries);
    lazyGauge('conntrack_max', 'Connection-tracking table size (--conntrack-max).', () => g().conntrackMax);
    lazyCounter('conntrack_idle_expired_total', 'Flows expired by idle timeout.', () => c.idleExpired);
    lazyCounter('untracked_cut_total', 'Untracked flows cut by a rule change.', () => c.untrackedCut);
    lazyCounter('nacl_cut_total', 'Flows (tracked or not) stopped because a network ACL change now drops their packets.', () => c.naclCut);
    lazyCounter('relay_resets_total', 'Resets and broken pipes seen on relayed sockets.', () => c.resets);
    new Counter({
      name: 'sgemu_bytes_total', help: 'Bytes relayed by closed flows (in: client to backend, out: backend to client).',
      labelNames: ['direction'] as const, registers: [r],
      collect() { this.reset(); this.inc({ direction: 'in' }, c.bytesIn); this.inc({ direction: 'out' }, c.bytesOut); },
    });
    lazyCounter('udp_datagrams_total', 'UDP datagrams relayed (both directions).', () => c.udpDatagramsIn + c.udpDatagramsOut);
    lazyGauge('policy_version', 'Version of the live compiled policy.', () => g().policyVersion);
    lazyCounter('policy_reloads_total', 'Successful policy swaps (config reloads and API changes).', () => g().reloads);
    lazyCounter('policy_reload_failures_total', 'Rejected reloads (the running rules stayed).', () => g().reloadFailures);
    lazyGauge('policy_last_reload_seconds', 'Duration of the last config reload (load + compile + swap).', () => g().lastReloadSeconds);
    this.reloadSeconds = new Histogram({
      name: 'sgemu_policy_reload_duration_seconds', help: 'Duration of each policy swap (compile + swap; file reloads add the load).',
      buckets: RELOAD_BUCKETS_S, registers: [r],
    });
    lazyCounter('filter_attaches_total', 'Socket filter programs attached.', () => c.filterAttaches);
    lazyGauge('listeners', 'Listening sockets.', () => g().listeners);
    this.apiRequests = new Counter({
      name: 'sgemu_api_requests_total', help: 'API requests served, by EC2 action or JSON route, and HTTP status.',
      labelNames: ['action', 'status'] as const, registers: [r],
    });
    lazyGauge('refusal_raw', '1 when refusals are exact (RST / ICMP), 0 in accept-then-reset fallback.', () => (g().refusalRaw ? 1 : 0));

    // Per listener. Two listeners may share a label set (an IPv4 and an IPv6 socket of one
    // service): their numbers add up. reset() first, so listeners gone in a reload disappear.
    const perListener = (ls: ListenerMetrics[], each: (key: Record<LabelName, string>, l: ListenerMetrics) => void): void => {
      for (const l of ls) each({ instance: l.instance, protocol: l.protocol, port: String(l.port), direction: l.direction }, l);
    };
    new Counter({
      name: 'sgemu_listener_flows_total',
      help: 'Flows per listener and outcome (rejected counts what the kernel filter dropped only while libpcap watches that listener).',
      labelNames: ['instance', 'protocol', 'port', 'direction', 'outcome'] as const, registers: [r],
      collect() {
        this.reset();
        perListener(src.listeners(), (k, l) => {
          this.inc({ ...k, outcome: 'accepted' }, l.accepted);
          this.inc({ ...k, outcome: 'rejected' }, l.rejected);
          this.inc({ ...k, outcome: 'refused' }, l.refused);
        });
      },
    });
    new Gauge({
      name: 'sgemu_listener_open_flows', help: 'Flows open now per listener.',
      labelNames: ['instance', 'protocol', 'port', 'direction'] as const, registers: [r],
      collect() { this.reset(); perListener(src.listeners(), (k, l) => this.inc(k, l.flows)); },
    });
    new Gauge({
      name: 'sgemu_listener_faults', help: 'Faults in force on the allowed flows of a listener (config and sgemu fault / API).',
      labelNames: ['instance', 'protocol', 'port', 'direction'] as const, registers: [r],
      collect() { this.reset(); perListener(src.listeners(), (k, l) => this.set(k, l.faults)); },
    });
    new Counter({
      name: 'sgemu_fault_flows_total', help: 'Flows that got a fault, by fault type (each flow rolls each fault\'s toxicity once).',
      labelNames: ['type'] as const, registers: [r],
      collect() { this.reset(); for (const [type, n] of Object.entries(src.faultFlows?.() ?? {})) this.inc({ type }, n); },
    });
    new Gauge({
      name: 'sgemu_fault_datagrams', help: 'UDP datagrams a fault acted on, by effect, summed over the live UDP listeners (over_cap: dropped because 4 MiB were held).',
      labelNames: ['effect'] as const, registers: [r],
      collect() { this.reset(); for (const [effect, n] of Object.entries(src.faultDatagrams?.() ?? {})) this.set({ effect }, n); },
    });
  }

  /** One policy swap took `seconds` (control plane: called once per swap). */
  observeReload(seconds: number): void {
    this.reloadSeconds.observe(seconds);
  }

  /** One API request answered; `action` must come from a fixed set (label cardinality). */
  countRequest(action: string, status: number): void {
    this.apiRequests.inc({ action, status: String(status) });
  }

  /** Prometheus text exposition (format 0.0.4). */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
