// The load generator: reads the daemon's listeners, asks the policy (explain, once per distinct
// question) what every (source, listener) flow must see, then drives TCP flows at a rate and a
// concurrency cap, classifies each on the wire and counts every difference as a mismatch.
// Always bounded: by --flows, or by --duration (and MAX_FLOWS in any case). Talks to the daemon
// only through its JSON API (a `fetchJson` function), never imports control or the data plane.
//
// Timers: one coarse launch tick (TICK_MS) fed by a token bucket, one 1 s tick for the timeline
// and the daemon's figures (GET /v1/status), one connect timer per open flow.

import { Histogram } from './histogram.js';
import { TokenBucket, burstFor } from './rate.js';
import { runTcpFlow, type FlowResult } from './flow.js';
import {
  explainKey, explainQuery, expectedOutcome, listenerKey, mixClass, parseExplain, parseOutbound, parseStatus, sourceAddress,
  WeightedPicker, MIX_CLASSES,
  type DaemonStatus, type ExplainAnswer, type ExplainQuery, type ListenerInfo, type MixClass, type Outcome, type OutboundInfo,
} from './expect.js';
import { UsageError } from '../model/errors.js';

export const MAX_FLOWS = 1_000_000;
export const MAX_MISMATCHES_LISTED = 1000;
const TICK_MS = 10;
const PROGRESS_MS = 200;
const EXPLAIN_PARALLEL = 16;

export type FetchJson = (path: string, body?: unknown) => Promise<unknown>;

export interface LoadtestOptions {
  api: string;
  /** Stop after this many flows; null: run for durationS. */
  flows: number | null;
  durationS: number;
  /** Flows started per second; Infinity: only the concurrency cap limits. */
  ratePerS: number;
  concurrency: number;
  timeoutMs: number;
  sources: number;
  mix: Record<MixClass, number> | null;
  fetchJson: FetchJson;
  /** The daemon's figures are sampled this often (ms). */
  sampleMs?: number;
  /** Answers already known (a pre-filled cache is trusted as is: tests use a stale one). */
  explainCache?: Map<string, ExplainAnswer>;
  onProgress?: (p: Progress) => void;
}

export interface Progress { elapsedS: number; started: number; done: number; inFlight: number; mismatches: number; ratePerS: number; limit: number | null }

export interface ListenerStats {
  key: string;
  kind: ListenerInfo['kind'];
  instance: string;
  protocol: ListenerInfo['protocol'];
  address: string;
  listenPort: number;
  rulePort: number;
  flows: number;
  outcomes: Record<Outcome, number>;
  mismatches: number;
  /** Connect latency of connected flows (µs). */
  latency: Histogram;
  /** Time to the answer of refused and reset flows (µs): how fast "nobody home" is said. */
  answerLatency: Histogram;
}

export interface Mismatch {
  atS: number;
  source: string;
  listener: string;
  instance: string;
  kind: ListenerInfo['kind'];
  rulePort: number;
  expected: Outcome;
  actual: Outcome;
  code: string;
  query: ExplainQuery;
  decision: ExplainAnswer['decision'];
  reason: string;
}

export interface TimelinePoint { t: number; started: number; done: number; mismatches: number; p50Ms: number; p99Ms: number; maxMs: number }
export interface DaemonSample { t: number; conntrackEntries: number; conntrackMax: number; rssBytes: number; cpuPercent: number }

export interface LoadtestResult {
  api: string;
  startedAt: string;
  elapsedS: number;
  flows: number;
  throughputPerS: number;
  outcomes: Record<Outcome, number>;
  mismatchCount: number;
  mismatches: Mismatch[];
  listeners: ListenerStats[];
  latency: Histogram;
  timeline: TimelinePoint[];
  daemon: DaemonSample[];
  notes: string[];
  settings: { flows: number | null; durationS: number; ratePerS: number | null; concurrency: number; timeoutMs: number; sources: number; mix: Record<MixClass, number> | null };
}

interface Pair { source: string; li: number; query: ExplainQuery; key: string }

const zeroOutcomes = (): Record<Outcome, number> => ({ connected: 0, refused: 0, timeout: 0, reset: 0, error: 0 });

/** Asks every question not in the cache; returns the ones the daemon would not answer (key → message). */
async function explainAll(fetchJson: FetchJson, queries: Map<string, ExplainQuery>, cache: Map<string, ExplainAnswer>): Promise<Map<string, string>> {
  const todo = [...queries].filter(([k]) => !cache.has(k));
  const failed = new Map<string, string>();
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      const [k, q] = todo[next++]!;
      try {
        cache.set(k, parseExplain(await fetchJson('/v1/explain', q)));
      } catch (e) {
        // An unreachable daemon ends the run; a question it rejects only drops those flows.
        if ((e as { code?: string }).code === 'DaemonUnreachable') throw e;
        failed.set(k, e instanceof Error ? e.message : String(e));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(EXPLAIN_PARALLEL, todo.length) }, worker));
  return failed;
}

export async function runLoadtest(o: LoadtestOptions): Promise<LoadtestResult> {
  const notes: string[] = [];
  let status: DaemonStatus = parseStatus(await o.fetchJson('/v1/status'));
  const udp = status.listeners.filter((l) => l.protocol === 'udp');
  if (udp.length > 0) {
    notes.push(`${udp.length} UDP listener(s) skipped (${udp.map(listenerKey).join(', ')}): this build drives TCP only; a silent UDP backend cannot be told from a drop`);
  }
  const listeners = status.listeners.filter((l) => l.protocol === 'tcp');
  if (listeners.length === 0) {
    throw new UsageError(`the daemon at ${o.api} has no TCP listeners to drive (it has ${status.listeners.length} listener(s)); add an instance service or outbound entry to its config`, 'NothingToTest');
  }
  let outbound: OutboundInfo[] = [];
  if (listeners.some((l) => l.kind === 'outbound')) {
    try { outbound = parseOutbound(await o.fetchJson('/v1/instances')); } catch (e) {
      notes.push(`GET /v1/instances failed (${e instanceof Error ? e.message : String(e)}): outbound targets taken from the listener's backend`);
    }
  }

  // Every (source, listener) pair; IPv6 listeners have the one IPv6 loopback source.
  const sources = Array.from({ length: o.sources }, (_, i) => sourceAddress(i));
  const pairs: Pair[] = [];
  const queries = new Map<string, ExplainQuery>();
  for (let si = 0; si < sources.length; si++) {
    for (let li = 0; li < listeners.length; li++) {
      const l = listeners[li]!;
      const v6 = l.address.includes(':');
      if (v6 && si > 0) continue;
      const source = v6 ? '::1' : sources[si]!;
      const query = explainQuery(l, source, outbound);
      const key = explainKey(query);
      queries.set(key, query);
      pairs.push({ source, li, query, key });
    }
  }
  const cache = o.explainCache ?? new Map<string, ExplainAnswer>();
  const failed = await explainAll(o.fetchJson, queries, cache);
  if (failed.size > 0) {
    const [k, msg] = [...failed][0]!;
    const before = pairs.length;
    pairs.splice(0, pairs.length, ...pairs.filter((p) => !failed.has(p.key)));
    notes.push(`explain failed for ${failed.size} question(s), ${before - pairs.length} flow pair(s) skipped; first: ${k.replaceAll('|', ' ')}: ${msg}`);
    if (pairs.length === 0) throw new UsageError(`the daemon at ${o.api} answered no explain question; first: ${k.replaceAll('|', ' ')}: ${msg}`, 'DaemonError');
  }

  // Which pairs to run, in which order: round robin over all of them, or by --mix class.
  let pick: () => Pair;
  if (o.mix) {
    const byClass = new Map<MixClass, Pair[]>(MIX_CLASSES.map((c) => [c, []]));
    for (const p of pairs) byClass.get(mixClass(listeners[p.li]!, cache.get(p.key)!.decision))!.push(p);
    const classes: MixClass[] = [];
    for (const c of MIX_CLASSES) {
      if (o.mix[c] > 0 && byClass.get(c)!.length === 0) notes.push(`--mix asks for ${c} flows but no (source, listener) pair is ${c} here; its share is spread over the others`);
      else if (o.mix[c] > 0) classes.push(c);
    }
    if (classes.length === 0) throw new UsageError(`--mix: none of the classes it weighs (${MIX_CLASSES.filter((c) => o.mix![c] > 0).join(', ')}) has flows on this daemon; present: ${MIX_CLASSES.filter((c) => byClass.get(c)!.length > 0).join(', ') || 'none'}`, 'NothingToTest');
    const picker = new WeightedPicker(classes, classes.map((c) => o.mix![c]));
    const idx = new Map<MixClass, number>(classes.map((c) => [c, 0]));
    pick = () => {
      const c = picker.next();
      const list = byClass.get(c)!;
      const i = idx.get(c)!;
      idx.set(c, i + 1);
      return list[i % list.length]!;
    };
  } else {
    let i = 0;
    pick = () => pairs[i++ % pairs.length]!;
  }

  const stats: ListenerStats[] = listeners.map((l) => ({
    key: listenerKey(l), kind: l.kind, instance: l.instance, protocol: l.protocol, address: l.address,
    listenPort: l.listenPort, rulePort: l.rulePort, flows: 0, outcomes: zeroOutcomes(), mismatches: 0, latency: new Histogram(), answerLatency: new Histogram(),
  }));
  const total = new Histogram();
  const outcomes = zeroOutcomes();
  const mismatches: Mismatch[] = [];
  let mismatchCount = 0;
  const timeline: TimelinePoint[] = [];
  const daemon: DaemonSample[] = [];
  const second = new Histogram();
  let secStarted = 0, secDone = 0, secMismatch = 0;

  const limit = Math.min(o.flows ?? MAX_FLOWS, MAX_FLOWS);
  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  const deadline = o.flows === null ? t0 + o.durationS * 1000 : Infinity;
  const bucket = new TokenBucket(o.ratePerS, o.ratePerS === Infinity ? 1 : burstFor(o.ratePerS, TICK_MS), t0);
  // How long a connected flow to a silent backend is watched for a reset (an echo ends it early):
  // a daemon without an exact filter resets denied flows right after accept, but its event loop
  // may lag under load; 250 ms held ~60 ms of lag with room to spare in tests on a busy machine.
  const settleMs = Math.min(250, o.timeoutMs);
  let started = 0, done = 0, inFlight = 0;
  const elapsedS = () => (performance.now() - t0) / 1000;

  // The latest status decides backend liveness and filter exactness at the time a flow ends.
  const current = (l: ListenerInfo): ListenerInfo => status.listeners.find((x) => x.protocol === l.protocol && x.address === l.address && x.listenPort === l.listenPort) ?? l;

  let lastCpu = { at: performance.now(), us: status.cpuUs };
  const sample = (s: DaemonStatus) => {
    const at = performance.now();
    const cpuPercent = at > lastCpu.at ? Math.max(0, ((s.cpuUs - lastCpu.us) / 1000 / (at - lastCpu.at)) * 100) : 0;
    lastCpu = { at, us: s.cpuUs };
    daemon.push({ t: round3((at - t0) / 1000), conntrackEntries: s.conntrackEntries, conntrackMax: s.conntrackMax, rssBytes: s.rssBytes, cpuPercent: round3(cpuPercent) });
  };
  let sampling: Promise<void> | null = null;
  const fetchSample = () => {
    if (sampling) return;
    sampling = o.fetchJson('/v1/status').then((v) => { status = parseStatus(v); sample(status); }, (e: unknown) => {
      if (notes.length < 20) notes.push(`status sample at ${elapsedS().toFixed(1)}s failed: ${e instanceof Error ? e.message : String(e)}`);
    }).finally(() => { sampling = null; });
  };
  const rollSecond = () => {
    timeline.push({
      t: timeline.length + 1, started: secStarted, done: secDone, mismatches: secMismatch,
      p50Ms: round3(second.percentile(0.5) / 1000), p99Ms: round3(second.percentile(0.99) / 1000), maxMs: round3(second.max / 1000),
    });
    second.reset(); secStarted = 0; secDone = 0; secMismatch = 0;
  };

  const record = (p: Pair, r: FlowResult) => {
    const l = listeners[p.li]!;
    const st = stats[p.li]!;
    const answer = cache.get(p.key)!;
    const expected = expectedOutcome(current(l), status.refusal, answer.decision);
    st.flows++; st.outcomes[r.outcome]++; outcomes[r.outcome]++;
    if (r.outcome === 'connected') { st.latency.record(r.latencyUs); total.record(r.latencyUs); second.record(r.latencyUs); }
    else if (r.outcome === 'refused' || r.outcome === 'reset') st.answerLatency.record(r.latencyUs);
    if (r.outcome !== expected) {
      st.mismatches++; mismatchCount++; secMismatch++;
      if (mismatches.length < MAX_MISMATCHES_LISTED) {
        mismatches.push({
          atS: round3(elapsedS()), source: p.source, listener: st.key, instance: l.instance, kind: l.kind, rulePort: l.rulePort,
          expected, actual: r.outcome, code: r.code, query: p.query, decision: answer.decision, reason: answer.reason,
        });
      }
    }
  };

  await new Promise<void>((resolve) => {
    let lastProgress = 0, lastProgressDone = 0, lastProgressAt = t0;
    const finishedLaunching = () => started >= limit || performance.now() >= deadline;
    const pump = () => {
      const now = performance.now();
      while (inFlight < o.concurrency && started < limit && now < deadline && bucket.take(now)) {
        const p = pick();
        const l = listeners[p.li]!;
        started++; inFlight++; secStarted++;
        runTcpFlow(p.source, l.address, l.listenPort, o.timeoutMs, settleMs).then((r) => {
          inFlight--; done++; secDone++;
          record(p, r);
          if (finishedLaunching() && inFlight === 0) stop();
        }, () => { inFlight--; done++; });
      }
      if (finishedLaunching() && inFlight === 0) stop();
      if (o.onProgress && now - lastProgress >= PROGRESS_MS) {
        const rate = now > lastProgressAt ? ((done - lastProgressDone) * 1000) / (now - lastProgressAt) : 0;
        lastProgress = now; lastProgressDone = done; lastProgressAt = now;
        o.onProgress({ elapsedS: (now - t0) / 1000, started, done, inFlight, mismatches: mismatchCount, ratePerS: rate, limit: o.flows === null ? null : limit });
      }
    };
    const tick = setInterval(pump, TICK_MS);
    const secondTick = setInterval(() => { rollSecond(); fetchSample(); }, o.sampleMs ?? 1000);
    let stopped = false;
    const stop = () => {
      if (stopped) return;
      stopped = true;
      clearInterval(tick); clearInterval(secondTick);
      resolve();
    };
    sample(status);
    pump();
  });
  const elapsed = elapsedS();
  if (secDone > 0 || secStarted > 0) rollSecond();
  if (sampling) await sampling;
  try { status = parseStatus(await o.fetchJson('/v1/status')); sample(status); } catch { /* the run's figures stand */ }

  return {
    api: o.api, startedAt, elapsedS: round3(elapsed), flows: done, throughputPerS: round3(done / Math.max(elapsed, 1e-3)),
    outcomes, mismatchCount, mismatches, listeners: stats, latency: total, timeline, daemon, notes,
    settings: {
      flows: o.flows, durationS: o.durationS, ratePerS: o.ratePerS === Infinity ? null : o.ratePerS, concurrency: o.concurrency,
      timeoutMs: o.timeoutMs, sources: o.sources, mix: o.mix,
    },
  };
}

function round3(n: number): number { return Math.round(n * 1000) / 1000; }

