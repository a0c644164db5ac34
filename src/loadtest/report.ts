// What a load test prints: a text table per listener, the same data as one JSON object, and a
// self-contained HTML page (inline CSS and SVG; no script, no network resource of any kind).

import type { Histogram } from './histogram.js';
import type { HoldReport, LoadtestResult, TimelinePoint } from './run.js';
import { OUTCOMES, type Outcome } from './expect.js';

const ms = (us: number) => Math.round(us) / 1000;
function latencyJson(h: Histogram) {
  return { count: h.count, p50Ms: ms(h.percentile(0.5)), p99Ms: ms(h.percentile(0.99)), maxMs: ms(h.max), meanMs: ms(h.mean()) };
}

/** The JSON form (`--json`): plain numbers, histograms reduced to their percentiles. */
export function resultJson(r: LoadtestResult): Record<string, unknown> {
  return {
    api: r.api, startedAt: r.startedAt, elapsedS: r.elapsedS, flows: r.flows, throughputPerS: r.throughputPerS,
    outcomes: r.outcomes, mismatchCount: r.mismatchCount, connectLatency: latencyJson(r.latency),
    listeners: r.listeners.map((l) => ({
      listener: l.key, kind: l.kind, instance: l.instance, protocol: l.protocol, address: l.address, listenPort: l.listenPort,
      rulePort: l.rulePort, flows: l.flows, outcomes: l.outcomes, mismatches: l.mismatches, connectLatency: latencyJson(l.latency),
      answerLatency: latencyJson(l.answerLatency),
    })),
    mismatches: r.mismatches, timeline: r.timeline, daemon: r.daemon, daemonSummary: daemonSummary(r), hold: r.hold, notes: r.notes, settings: r.settings,
  };
}

function daemonSummary(r: LoadtestResult) {
  const d = r.daemon;
  if (d.length === 0) return null;
  const cpu = d.slice(1).map((x) => x.cpuPercent);
  return {
    samples: d.length,
    conntrackMax: Math.max(...d.map((x) => x.conntrackEntries)),
    conntrackLimit: d[d.length - 1]!.conntrackMax,
    overflowsDuringRun: d[d.length - 1]!.overflows - d[0]!.overflows,
    rssMaxBytes: Math.max(...d.map((x) => x.rssBytes)),
    cpuMeanPercent: cpu.length ? Math.round((cpu.reduce((a, b) => a + b, 0) / cpu.length) * 10) / 10 : 0,
    cpuMaxPercent: cpu.length ? Math.round(Math.max(...cpu) * 10) / 10 : 0,
  };
}

function grid(head: string[], rows: string[][], right: Set<number>): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows].map((r) => r.map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n');
}

const fmtMs = (us: number, n: number) => (n === 0 ? '-' : (us / 1000).toFixed(2));
const mib = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;

/** The text report printed at the end of a run. */
export function formatText(r: LoadtestResult): string {
  const head = ['LISTENER', 'INSTANCE', 'KIND', 'RULE', 'FLOWS', ...OUTCOMES.map((o) => o.toUpperCase()), 'MISMATCH', 'P50ms', 'P99ms', 'MAXms'];
  const rows = r.listeners.map((l) => [l.key, l.instance, l.kind, `${l.protocol}/${l.rulePort}`, String(l.flows),
    ...OUTCOMES.map((o) => String(l.outcomes[o])), String(l.mismatches),
    fmtMs(l.latency.percentile(0.5), l.latency.count), fmtMs(l.latency.percentile(0.99), l.latency.count), fmtMs(l.latency.max, l.latency.count)]);
  rows.push(['total', '', '', '', String(r.flows), ...OUTCOMES.map((o) => String(r.outcomes[o])), String(r.mismatchCount),
    fmtMs(r.latency.percentile(0.5), r.latency.count), fmtMs(r.latency.percentile(0.99), r.latency.count), fmtMs(r.latency.max, r.latency.count)]);
  const out = [grid(head, rows, new Set([4, 5, 6, 7, 8, 9, 10, 11, 12, 13]))];
  out.push(`\n${r.flows} flows in ${r.elapsedS.toFixed(2)} s: ${r.throughputPerS.toFixed(1)} flows/s (latency: connect time of connected flows)`);
  const d = daemonSummary(r);
  if (d) out.push(`daemon: conntrack up to ${d.conntrackMax}${d.conntrackLimit ? ` of ${d.conntrackLimit}` : ''} entries, RSS up to ${mib(d.rssMaxBytes)}, CPU mean ${d.cpuMeanPercent}% max ${d.cpuMaxPercent}% (${d.samples} samples)`);
  if (r.hold) out.push(holdText(r.hold));
  for (const n of r.notes) out.push(`note: ${n}`);
  if (r.mismatchCount > 0) {
    out.push(`\n${r.mismatchCount} mismatch(es)${r.mismatchCount > r.mismatches.length ? ` (first ${r.mismatches.length} listed)` : ''}:`);
    for (const m of r.mismatches.slice(0, 50)) {
      out.push(`  ${m.atS.toFixed(2)}s ${m.source} → ${m.listener} (${m.instance} ${m.kind} ${m.query.protocol}/${m.rulePort}): expected ${m.expected}, got ${m.actual}${m.code ? ` (${m.code})` : ''}; explain --from ${m.query.from} --to ${m.query.to} --protocol ${m.query.protocol} --port ${m.query.port}: ${m.decision}${m.reason ? ` — ${m.reason}` : ''}`);
    }
    if (r.mismatches.length > 50) out.push(`  … ${r.mismatchCount - 50} more (see --json or --report)`);
  } else {
    out.push('no mismatches: every flow matched the policy');
  }
  return out.join('\n');
}

/** The --hold summary: what was held, whether the table filled, what new flows saw, the overflow counter. */
export function holdText(h: HoldReport): string {
  const failed = OUTCOMES.filter((o) => h.failed[o] > 0).map((o) => `${h.failed[o]} ${o}`).join(', ');
  return `hold: ${h.held} of ${h.requested} flows held open in ${h.holdS.toFixed(2)} s${failed ? ` (${failed}${h.firstErrorCode ? `, first error ${h.firstErrorCode}` : ''})` : ''}, ` +
    `${h.openAtEnd} still open at the end; conntrack ${h.entriesAfterHold} of ${h.conntrackMax} entries after the hold: ${h.fullAfterHold ? 'FULL' : 'not full'}; ` +
    `${h.flowsWhileFull} new flows launched while full, ${h.timeoutsWhileFull} timed out; ` +
    `daemon overflow counter ${h.overflowsStart} → ${h.overflowsAfterHold} after the hold → ${h.overflowsEnd} at the end (+${h.overflowsEnd - h.overflowsStart})`;
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

interface Series { name: string; color: string; points: [number, number][] }

/** One inline SVG line chart; x and y scaled to the data, 4 y grid lines with labels. */
export function svgChart(title: string, yUnit: string, series: Series[], width = 640, height = 200): string {
  const pad = { l: 56, r: 12, t: 24, b: 28 };
  const all = series.flatMap((s) => s.points);
  const xMax = Math.max(1, ...all.map((p) => p[0]));
  const yMax = Math.max(1e-9, ...all.map((p) => p[1])) * 1.1;
  const x = (v: number) => pad.l + (v / xMax) * (width - pad.l - pad.r);
  const y = (v: number) => height - pad.b - (v / yMax) * (height - pad.t - pad.b);
  const parts = [`<svg viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${escapeHtml(title)}">`,
    `<text x="${pad.l}" y="16" class="t">${escapeHtml(title)} (${escapeHtml(yUnit)})</text>`];
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    parts.push(`<line x1="${pad.l}" x2="${width - pad.r}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" class="g"/>`,
      `<text x="${pad.l - 4}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end" class="l">${fmtNum(v)}</text>`);
  }
  parts.push(`<text x="${width - pad.r}" y="${height - 8}" text-anchor="end" class="l">${fmtNum(xMax)} s</text>`);
  series.forEach((s, i) => {
    if (s.points.length === 0) return;
    const d = s.points.map((p, j) => `${j === 0 ? 'M' : 'L'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' ');
    parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"/>`,
      `<text x="${width - pad.r - 120 * (series.length - i)}" y="16" class="k" fill="${s.color}">■ ${escapeHtml(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('');
}

function fmtNum(v: number): string {
  return v >= 100 ? String(Math.round(v)) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

/** The `--report FILE.html` page. Self-contained: no script, no external stylesheet, image or font. */
export function renderHtml(r: LoadtestResult): string {
  const tl = r.timeline;
  const pts = (f: (p: TimelinePoint) => number, only = (_: TimelinePoint) => true): [number, number][] => tl.filter(only).map((p) => [p.t, f(p)]);
  const hasLat = (p: TimelinePoint) => p.maxMs > 0;
  const charts = [
    svgChart('flows per second', 'flows/s', [
      { name: 'done', color: '#1f77b4', points: pts((p) => p.done) },
      { name: 'mismatches', color: '#d62728', points: pts((p) => p.mismatches) },
    ]),
    svgChart('connect latency', 'ms', [
      { name: 'p50', color: '#2ca02c', points: pts((p) => p.p50Ms, hasLat) },
      { name: 'p99', color: '#ff7f0e', points: pts((p) => p.p99Ms, hasLat) },
      { name: 'max', color: '#9467bd', points: pts((p) => p.maxMs, hasLat) },
    ]),
  ];
  if (r.daemon.length > 0) {
    charts.push(
      svgChart('daemon conntrack entries', 'entries', [
        { name: 'entries', color: '#8c564b', points: r.daemon.map((d) => [d.t, d.conntrackEntries]) },
        ...(r.hold ? [{ name: 'max', color: '#7f7f7f', points: r.daemon.map((d): [number, number] => [d.t, d.conntrackMax]) },
          { name: 'overflows', color: '#d62728', points: r.daemon.map((d): [number, number] => [d.t, d.overflows - r.daemon[0]!.overflows]) }] : []),
      ]),
      svgChart('daemon RSS and CPU', 'MiB / %', [
        { name: 'RSS MiB', color: '#17becf', points: r.daemon.map((d) => [d.t, d.rssBytes / 1048576]) },
        { name: 'CPU %', color: '#e377c2', points: r.daemon.slice(1).map((d) => [d.t, d.cpuPercent]) },
      ]),
    );
  }
  const th = (cells: string[]) => `<tr>${cells.map((c) => `<th>${escapeHtml(c)}</th>`).join('')}</tr>`;
  const td = (cells: (string | number)[]) => `<tr>${cells.map((c) => `<td>${escapeHtml(String(c))}</td>`).join('')}</tr>`;
  const lat = (h: Histogram) => (h.count === 0 ? ['-', '-', '-'] : [(h.percentile(0.5) / 1000).toFixed(2), (h.percentile(0.99) / 1000).toFixed(2), (h.max / 1000).toFixed(2)]);
  const listenerRows = r.listeners.map((l) => td([l.key, l.instance, l.kind, `${l.protocol}/${l.rulePort}`, l.flows, ...OUTCOMES.map((o: Outcome) => l.outcomes[o]), l.mismatches, ...lat(l.latency)]));
  listenerRows.push(td(['total', '', '', '', r.flows, ...OUTCOMES.map((o) => r.outcomes[o]), r.mismatchCount, ...lat(r.latency)]));
  const mm = r.mismatches.map((m) => td([m.atS.toFixed(2), m.source, m.listener, m.instance, m.expected, m.actual + (m.code ? ` (${m.code})` : ''),
    `${m.query.from} → ${m.query.to} ${m.query.protocol}/${m.query.port}`, m.decision, m.reason]));
  const verdict = r.mismatchCount === 0 ? '<p class="ok">No mismatches: every flow matched the policy.</p>'
    : `<p class="bad">${r.mismatchCount} mismatch(es)${r.mismatchCount > r.mismatches.length ? ` (first ${r.mismatches.length} listed)` : ''}.</p>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sgemu loadtest ${escapeHtml(r.startedAt)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0 24px}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.ok{color:#2a7d2a;font-weight:bold}.bad{color:#b22;font-weight:bold}
svg{display:block;margin:8px 0 16px;background:#fafafa;border:1px solid #ddd}
svg .g{stroke:#e3e3e3}svg .l{font-size:11px;fill:#666}svg .k{font-size:11px}svg .t{font-size:13px;font-weight:bold}
</style></head><body>
<h1>sgemu loadtest</h1>
<p>Daemon ${escapeHtml(r.api)}, started ${escapeHtml(r.startedAt)}: ${r.flows} flows in ${r.elapsedS.toFixed(2)} s
(${r.throughputPerS.toFixed(1)} flows/s), concurrency ${r.settings.concurrency}, rate ${r.settings.ratePerS ?? 'unlimited'},
timeout ${r.settings.timeoutMs} ms, ${r.settings.sources} sources${r.settings.hold ? `, ${r.settings.hold} flows held` : ''}.</p>
${verdict}
<h2>Per listener</h2>
<table>${th(['listener', 'instance', 'kind', 'rule', 'flows', ...OUTCOMES, 'mismatches', 'p50 ms', 'p99 ms', 'max ms'])}${listenerRows.join('')}</table>
${r.hold ? `<h2>Conntrack pressure (--hold ${r.hold.requested})</h2>
<p class="${r.hold.fullAfterHold ? 'ok' : 'bad'}">${escapeHtml(holdText(r.hold))}</p>
<table>${th(['held', 'open at end', 'entries after hold', 'max', 'full', 'new flows while full', 'of them timed out', 'overflows +'])}${td([r.hold.held, r.hold.openAtEnd,
  r.hold.entriesAfterHold, r.hold.conntrackMax, r.hold.fullAfterHold ? 'yes' : 'no', r.hold.flowsWhileFull, r.hold.timeoutsWhileFull, r.hold.overflowsEnd - r.hold.overflowsStart])}</table>` : ''}
<h2>Over time</h2>
${charts.join('\n')}
<h2>Mismatches</h2>
${mm.length ? `<table>${th(['at s', 'source', 'listener', 'instance', 'expected', 'actual', 'explain', 'decision', 'reason'])}${mm.join('')}</table>` : '<p>None.</p>'}
${r.notes.length ? `<h2>Notes</h2><ul>${r.notes.map((n) => `<li>${escapeHtml(n)}</li>`).join('')}</ul>` : ''}
</body></html>
`;
}
