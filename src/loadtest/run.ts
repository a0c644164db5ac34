// The load generator: reads the daemon's listeners, asks the policy (explain, once per distinct
// question) what every (source, listener) flow must see, then drives TCP and UDP flows at a rate
// and a concurrency cap, classifies each on the wire and counts every difference as a mismatch.
// Always bounded: by --flows, or by --duration (and MAX_FLOWS in any case). Talks to the daemon
// only through its JSON API (a `fetchJson` function), never imports control or the data plane.
//
// Conntrack pressure (--hold N): before the measured flows, N allowed TCP flows are opened and
// held to the end of the run. Once the daemon's table is full (entries ≥ --conntrack-max, as
// /v1/status says) every new flow must time out, as with a full kernel table; the hold phase, the
// table's fill and the daemon's overflow counter are reported.
//
// Timers: one coarse launch tick (TICK_MS) fed by a token bucket, one 1 s tick for the timeline
// and the daemon's figures (GET /v1/status), one connect (or reply) timer per open flow.

import { Histogram } from './histogram.js';
import { TokenBucket, burstFor } from './rate.js';
import { runTcpFlow, runUdpFlow, holdTcpFlow, type FlowResult, type HeldFlow } from './flow.js';
import {
  explainKey, explainQuery, expectedOutcome, listenerKey, mixClass, needsPortAnswer, parseExplain, parseOutbound, parseStatus, sourceAddress, tableFull,
  WeightedPicker, MIX_CLASSES,
  type DaemonStatus, type ExplainAnswer, type ExplainQuery, type ListenerInfo, type MixClass, type Outcome, type OutboundInfo,
} from './expect.js';
import { UsageError } from '../model/errors.js';

export const MAX_FLOWS = 1_000_000;
export const MAX_MISMATCHES_LISTED = 1000;
export const MAX_HOLD = 1_000_000;
const TICK_MS = 10;
const PROGRESS_MS = 200;
const EXPLAIN_PARALLEL = 16;
/** Per-port explain answers kept (issue #14: flows whose expectation depends on their client port). */
const PORT_ANSWERS_MAX = 100_000;
/** Tries of a TCP flow bound to a chosen port that is in use (EADDRINUSE, or EADDRNOTAVAIL: a TIME_WAIT of the same 4-tuple). */
const PORT_TRIES = 5;

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
  /** A count of generated sources (127.77.0.1, …) or the addresses themselves (IPv4 loopback). */
  sources: number | readonly string[];
  mix: Record<MixClass, number> | null;
  /** Allowed TCP flows opened before the run and held to its end (conntrack pressure); 0: none. */
  hold?: number;
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
export interface DaemonSample { t: number; conntrackEntries: number; conntrackMax: number; overflows: number; rssBytes: number; cpuPercent: number }

/** What --hold did and what the daemon's table and overflow counter showed. */
export interface HoldReport {
  requested: number;
  /** Hold flows that connected, and how many are still open at the end of the run. */
  held: number;
  openAtEnd: number;
  /** Hold flows that did not connect, by outcome (with a full table: timeout). */
  failed: Record<Outcome, number>;
  /** The first errno seen by a failed hold flow that is not a plain outcome (e.g. EMFILE). */
  firstErrorCode: string;
  holdS: number;
  conntrackMax: number;
  /** Entries after the hold phase, and whether the table was full then. */
  entriesAfterHold: number;
  fullAfterHold: boolean;
  /** The daemon's overflow counter at the start, after the hold phase and at the end. */
  overflowsStart: number;
  overflowsAfterHold: number;
  overflowsEnd: number;
  /** Measured flows launched while the table was full, and how many of them timed out. */
  flowsWhileFull: number;
  timeoutsWhileFull: number;
}

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
  hold: HoldReport | null;
  notes: string[];
  settings: {
    flows: number | null; durationS: number; ratePerS: number | null; concurrency: number; timeoutMs: number; sources: number;
    mix: Record<MixClass, number> | null; hold: number;
  };
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
  const listeners = status.listeners;
  if (listeners.length === 0) {
    throw new UsageError(`the daemon at ${o.api} has no listeners to drive; add an instance service or outbound entry to its config`, 'NothingToTest');
  }
  if (listeners.some((l) => l.protocol === 'udp')) {
    notes.push('UDP flows expect an echo: an allowed flow to a live backend counts as connected only when the same bytes come back');
  }
  let outbound: OutboundInfo[] = [];
  if (listeners.some((l) => l.kind === 'outbound')) {
    try { outbound = parseOutbound(await o.fetchJson('/v1/instances')); } catch (e) {
      notes.push(`GET /v1/instances failed (${e instanceof Error ? e.message : String(e)}): outbound targets taken from the listener's backend`);
    }
  }

  // Every (source, listener) pair; IPv6 listeners have the one IPv6 loopback source.
  const sources = typeof o.sources === 'number' ? Array.from({ length: o.sources }, (_, i) => sourceAddress(i)) : [...o.sources];
  if (sources.length === 0) throw new UsageError('--sources: no source address given; give a count or a list such as 127.0.0.1,127.77.1.0/28');
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

  const startedAt = new Date().toISOString();
  const holdN = Math.min(o.hold ?? 0, MAX_HOLD);
  const held: HeldFlow[] = [];
  let hold: HoldReport | null = null;
  try {
    if (holdN > 0) {
      const h = await holdPhase(o, holdN, pairs, listeners, cache, status, held);
      status = h.status;
      hold = h.report;
      if (!hold.fullAfterHold) {
        notes.push(`--hold ${holdN}: the table was not full after the hold phase (${hold.entriesAfterHold} of ${hold.conntrackMax} entries); new flows are not dropped — hold at least --conntrack-max flows to see a full table`);
      }
    }
    const r = await measure(o, { notes, status, listeners, pick, cache, startedAt, hold });
    if (hold) {
      hold.openAtEnd = held.filter((h) => h.open).length;
      if (hold.flowsWhileFull > 0 && hold.overflowsEnd === hold.overflowsStart) {
        notes.push(`--hold: ${hold.flowsWhileFull} new flows met a full table but the daemon's overflow counter did not rise: its drop-all filter ` +
          'drops them in the kernel before the daemon sees them (it counts only flows that slipped in before the filter swap)');
      }
      if (hold.openAtEnd < hold.held) notes.push(`--hold: ${hold.held - hold.openAtEnd} held flow(s) were closed by the other side during the run`);
    }
    return r;
  } finally {
    for (const h of held) h.release();
  }
}

/** Opens `n` allowed TCP flows (round robin over the pairs expected to connect) and keeps them open in `held`. */
async function holdPhase(o: LoadtestOptions, n: number, pairs: readonly Pair[], listeners: readonly ListenerInfo[], cache: Map<string, ExplainAnswer>,
  status: DaemonStatus, held: HeldFlow[]): Promise<{ report: HoldReport; status: DaemonStatus }> {
  const holdPairs = pairs.filter((p) => {
    const l = listeners[p.li]!;
    return l.protocol === 'tcp' && expectedOutcome(l, status.refusal, cache.get(p.key)!.decision, tableFull(status)) === 'connected';
  });
  if (holdPairs.length === 0) {
    throw new UsageError(`--hold ${n}: the daemon at ${o.api} has no allowed TCP flow to a live backend to hold open (for these sources); ` +
      'add one to its config or give --sources that its rules allow', 'NothingToTest');
  }
  const h0 = performance.now();
  const before = status.conntrackEntries, overflowsStart = status.conntrackOverflows;
  const failed = zeroOutcomes();
  let firstErrorCode = '', next = 0;
  const worker = async () => {
    while (next < n) {
      const p = holdPairs[next++ % holdPairs.length]!;
      const l = listeners[p.li]!;
      const h = await holdTcpFlow(p.source, l.address, l.listenPort, o.timeoutMs);
      if (h.outcome === 'connected') held.push(h);
      else {
        failed[h.outcome]++;
        if (h.outcome === 'error' && firstErrorCode === '') firstErrorCode = h.code;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency, n) }, worker));
  // The client's connect completes in the kernel before the daemon accepts: give its table up to
  // 1 s (20 polls) to show the held flows.
  for (let i = 0; i < 20; i++) {
    status = parseStatus(await o.fetchJson('/v1/status'));
    if (tableFull(status) || status.conntrackEntries >= before + held.length) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    status,
    report: {
      requested: n, held: held.length, openAtEnd: 0, failed, firstErrorCode, holdS: round3((performance.now() - h0) / 1000),
      conntrackMax: status.conntrackMax, entriesAfterHold: status.conntrackEntries, fullAfterHold: tableFull(status),
      overflowsStart, overflowsAfterHold: status.conntrackOverflows, overflowsEnd: status.conntrackOverflows, flowsWhileFull: 0, timeoutsWhileFull: 0,
    },
  };
}

interface MeasureInput {
  notes: string[];
  status: DaemonStatus;
  listeners: readonly ListenerInfo[];
  pick: () => Pair;
  cache: Map<string, ExplainAnswer>;
  startedAt: string;
  hold: HoldReport | null;
}

/** The measured run: flows at the rate and concurrency asked, each compared with its expectation. */
async function measure(o: LoadtestOptions, m: MeasureInput): Promise<LoadtestResult> {
  const { notes, listeners, pick, cache, startedAt, hold } = m;
  let status = m.status;
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
  const t0 = performance.now();
  const deadline = o.flows === null ? t0 + o.durationS * 1000 : Infinity;
  const bucket = new TokenBucket(o.ratePerS, o.ratePerS === Infinity ? 1 : burstFor(o.ratePerS, TICK_MS), t0);
  // How long a connected flow to a silent backend is watched for a reset (an echo ends it early):
  // a daemon without an exact filter resets denied flows right after accept, but its event loop
  // may lag under load; 250 ms held ~60 ms of lag with room to spare in tests on a busy machine.
  const settleMs = Math.min(250, o.timeoutMs);
  let started = 0, done = 0, inFlight = 0, edgeFlows = 0;
  const elapsedS = () => (performance.now() - t0) / 1000;

  // The latest status decides backend liveness and filter exactness at the time a flow ends.
  const current = (l: ListenerInfo): ListenerInfo => status.listeners.find((x) => x.protocol === l.protocol && x.address === l.address && x.listenPort === l.listenPort) ?? l;

  let lastCpu = { at: performance.now(), us: status.cpuUs };
  const sample = (s: DaemonStatus) => {
    const at = performance.now();
    const cpuPercent = at > lastCpu.at ? Math.max(0, ((s.cpuUs - lastCpu.us) / 1000 / (at - lastCpu.at)) * 100) : 0;
    lastCpu = { at, us: s.cpuUs };
    daemon.push({
      t: round3((at - t0) / 1000), conntrackEntries: s.conntrackEntries, conntrackMax: s.conntrackMax, overflows: s.conntrackOverflows,
      rssBytes: s.rssBytes, cpuPercent: round3(cpuPercent),
    });
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

  // Network ACLs check the replies to the client's own port: where the cached answer assumed a
  // range of ports and may not hold for this flow's (needsPortAnswer), the flow is judged by the
  // answer for its real port, asked once per (question, port).
  const portAnswers = new Map<string, Promise<ExplainAnswer>>();
  let portAnswerFailures = 0;
  const portAnswer = (q: ExplainQuery, fallback: ExplainAnswer): Promise<ExplainAnswer> => {
    const k = explainKey(q);
    let a = portAnswers.get(k);
    if (a === undefined) {
      if (portAnswers.size >= PORT_ANSWERS_MAX) portAnswers.clear();
      a = o.fetchJson('/v1/explain', q).then(parseExplain, () => { portAnswerFailures++; return fallback; });
      portAnswers.set(k, a);
    }
    return a;
  };

  // A flow launched while the table was full must time out; one during which the table filled or
  // emptied (the two status samples differ) may see either answer; and one launched while the
  // table was within --concurrency entries of full may time out, as this run's own flows can fill
  // it between two samples, or be reset: the daemon resets a flow whose handshake the kernel
  // completed just before the table filled (src/dataplane/tcp.ts; a kernel table would drop it).
  const nearFull = (s: DaemonStatus) => s.conntrackMax > 0 && s.conntrackEntries + o.concurrency >= s.conntrackMax;
  const record = (p: Pair, r: FlowResult, answer: ExplainAnswer, query: ExplainQuery, fullAtLaunch: boolean, nearAtLaunch: boolean) => {
    const l = listeners[p.li]!;
    const st = stats[p.li]!;
    const fullNow = tableFull(status);
    const expected = expectedOutcome(current(l), status.refusal, answer.decision, fullNow);
    const alsoOk = fullNow === fullAtLaunch ? expected : expectedOutcome(current(l), status.refusal, answer.decision, fullAtLaunch);
    st.flows++; st.outcomes[r.outcome]++; outcomes[r.outcome]++;
    if (fullAtLaunch && hold) { hold.flowsWhileFull++; if (r.outcome === 'timeout') hold.timeoutsWhileFull++; }
    if (r.outcome === 'connected') { st.latency.record(r.latencyUs); total.record(r.latencyUs); second.record(r.latencyUs); }
    else if (r.outcome === 'refused' || r.outcome === 'reset') st.answerLatency.record(r.latencyUs);
    const atEdge = r.outcome !== expected && r.outcome !== alsoOk && (r.outcome === 'timeout' || r.outcome === 'reset') && (nearAtLaunch || nearFull(status));
    if (atEdge) edgeFlows++;
    if (r.outcome !== expected && r.outcome !== alsoOk && !atEdge) {
      st.mismatches++; mismatchCount++; secMismatch++;
      if (mismatches.length < MAX_MISMATCHES_LISTED) {
        mismatches.push({
          atS: round3(elapsedS()), source: p.source, listener: st.key, instance: l.instance, kind: l.kind, rulePort: l.rulePort,
          expected, actual: r.outcome, code: r.code, query, decision: answer.decision, reason: answer.reason,
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
        const fullAtLaunch = tableFull(status), nearAtLaunch = nearFull(status);
        started++; inFlight++; secStarted++;
        const a0 = cache.get(p.key)!;
        const flow = l.protocol === 'udp' ? runUdpFlow(p.source, l.address, l.listenPort, o.timeoutMs)
          : a0.portsAssumed ? tcpFromPort(p.source, l.address, l.listenPort, o.timeoutMs, settleMs, a0.portsAssumed)
            : runTcpFlow(p.source, l.address, l.listenPort, o.timeoutMs, settleMs);
        flow.then(async (r) => {
          if (!needsPortAnswer(a0, r.localPort)) return { r, answer: a0, query: p.query };
          const query = { ...p.query, sourcePort: r.localPort };
          return { r, answer: await portAnswer(query, a0), query };
        }).then(({ r, answer, query }) => {
          inFlight--; done++; secDone++;
          record(p, r, answer, query, fullAtLaunch, nearAtLaunch);
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
  if (hold) hold.overflowsEnd = status.conntrackOverflows;
  if (portAnswers.size > 0) {
    notes.push(`${portAnswers.size} flow(s) judged by explain for their own client port: network ACLs decide their replies by it (issue #14)` +
      (portAnswerFailures > 0 ? `; ${portAnswerFailures} of those questions failed and the range's answer was used` : ''));
  }
  if (edgeFlows > 0) {
    notes.push(`${edgeFlows} flow(s) launched with the conntrack table within --concurrency (${o.concurrency}) entries of full timed out or were reset ` +
      '(this run\'s own flows filled it; the daemon resets a flow whose handshake completed just before); not counted as mismatches');
  }

  return {
    api: o.api, startedAt, elapsedS: round3(elapsed), flows: done, throughputPerS: round3(done / Math.max(elapsed, 1e-3)),
    outcomes, mismatchCount, mismatches, listeners: stats, latency: total, timeline, daemon, hold, notes,
    settings: {
      flows: o.flows, durationS: o.durationS, ratePerS: o.ratePerS === Infinity ? null : o.ratePerS, concurrency: o.concurrency,
      timeoutMs: o.timeoutMs, sources: typeof o.sources === 'number' ? o.sources : o.sources.length, mix: o.mix, hold: o.hold ?? 0,
    },
  };
}

function round3(n: number): number { return Math.round(n * 1000) / 1000; }

/**
 * A TCP flow bound to a port picked at random in `range` (the ephemeral range explain assumed), so
 * its port is known whatever the outcome; a port in use is swapped for another (PORT_TRIES).
 */
async function tcpFromPort(source: string, host: string, port: number, timeoutMs: number, settleMs: number, range: [number, number]): Promise<FlowResult> {
  let r: FlowResult | null = null;
  for (let i = 0; i < PORT_TRIES; i++) {
    const local = range[0] + Math.floor(Math.random() * (range[1] - range[0] + 1));
    r = await runTcpFlow(source, host, port, timeoutMs, settleMs, local);
    if (r.outcome !== 'error' || (r.code !== 'EADDRINUSE' && r.code !== 'EADDRNOTAVAIL')) return r;
  }
  return r!;
}

