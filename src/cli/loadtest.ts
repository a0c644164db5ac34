// `sgemu loadtest`: drives real TCP and UDP traffic through a running daemon from many loopback
// source addresses and checks every outcome against the daemon's own policy answers (issue #7).
// Parses and prints only; the work is in src/loadtest/. Exit 0: every flow matched; 1: any
// mismatch; 2: bad input or no daemon at --api.

import { writeFileSync } from 'node:fs';
import { UsageError } from '../model/errors.js';
import { parseMix, parseSources } from '../loadtest/expect.js';
import { runLoadtest, MAX_FLOWS, MAX_HOLD } from '../loadtest/run.js';
import { formatText, renderHtml, resultJson } from '../loadtest/report.js';
import { ProgressLine } from '../loadtest/progress.js';
import {
  apiRequest, DEFAULT_API, EXIT_NEGATIVE, EXIT_OK, intOption, numberOption, parseCommandArgs, parseHostPort, printJson, type Command,
} from './command.js';

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  api: { type: 'string', default: DEFAULT_API },
  duration: { type: 'string' },
  flows: { type: 'string' },
  rate: { type: 'string' },
  concurrency: { type: 'string' },
  timeout: { type: 'string' },
  sources: { type: 'string' },
  mix: { type: 'string' },
  hold: { type: 'string' },
  'conntrack-max': { type: 'string' },
  report: { type: 'string' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

const loadtest: Command = {
  name: 'loadtest',
  summary: 'drive real traffic through a running daemon and check every outcome',
  usage: `Usage: sgemu loadtest [--api ADDR | -c FILE [--conntrack-max N]] [--duration S | --flows N] [--rate R]
                      [--concurrency C] [--timeout S] [--sources N|LIST] [--mix allowed=70,denied=20,refused=10]
                      [--hold N] [--json] [--report FILE.html]

Drives TCP and UDP flows through a running daemon (--api, default ${DEFAULT_API}) from many source
addresses (127.77.x.y, or --sources LIST; ::1 for IPv6 listeners) to every listener it has
(instance services and outbound entries), classifies each on the wire and compares it with the
policy: POST /v1/explain, once per distinct question, plus the listener's backend liveness, the
refusal mode and whether the conntrack table is full. Any difference is a mismatch, listed with
the flow and the explain answer; exit 1 if any, 0 if none, 2 on bad input or when no daemon answers.

Outcomes:  TCP  connected (connect completed, bytes written), refused (ECONNREFUSED), timeout (no
                connect within --timeout), reset (ECONNRESET after connect)
           UDP  connected (one datagram from a connected socket; the same bytes came back: UDP
                backends are expected to echo), refused (ICMP port unreachable: ECONNREFUSED),
                timeout (no reply within --timeout)

Options:
  --api ADDR          the daemon's API (default ${DEFAULT_API})
  -c, --config FILE   start a daemon on FILE in this process instead (API on a free loopback port,
                      no state file), load-test it, stop it; the figures then include the
                      daemon's own work on the same event loop
  --conntrack-max N   with -c: the daemon's conntrack table size (default 262144), e.g. to reach
                      it with --hold
  --duration S        run for S seconds (default 10; 0.1..86400)
  --flows N           run exactly N flows instead (1..${MAX_FLOWS})
  --rate R            start at most R flows per second (default: as fast as --concurrency allows)
  --concurrency C     flows open at once (default 64; 1..10000)
  --timeout S         connect timeout per flow (default 1; a denied flow takes this long)
  --sources N|LIST    distinct IPv4 source addresses: a count (default 64; 1..65000) of 127.77.x.y,
                      or a list of loopback addresses and blocks, e.g. 127.0.0.1,127.0.0.5,127.77.1.0/28
  --mix SPEC          share of flow classes, e.g. allowed=70,denied=20,refused=10 (default: every
                      (source, listener) pair in turn)
  --hold N            conntrack pressure: first open N allowed TCP flows and hold them to the end of
                      the run (0..${MAX_HOLD}). Once the daemon's table is full (--conntrack-max) every
                      new flow must time out, as with a full kernel table; the report shows the hold,
                      the table's fill and the daemon's overflow counter. Each held flow costs one
                      descriptor here and two in the daemon (ulimit -n)
  --json              print the result as one JSON object
  --report FILE.html  also write a self-contained HTML report (charts, tables, mismatches)`,
  async run(argv) {
    const { values } = parseCommandArgs(argv, OPTIONS);
    if (values.help) { process.stdout.write(this.usage + '\n'); return EXIT_OK; }
    if (values.config !== undefined && argv.some((a) => a === '--api' || a.startsWith('--api='))) {
      throw new UsageError('--config starts a daemon of its own; --api names a running one: give one of them');
    }
    if (values['conntrack-max'] !== undefined && values.config === undefined) {
      throw new UsageError(`--conntrack-max ${values['conntrack-max']} sizes the daemon that -c starts; a running daemon (--api) has its own (sgemu run --conntrack-max)`);
    }
    const conntrackMax = intOption('conntrack-max', values['conntrack-max'], 1, 16_777_216, 262_144);
    let api = values.api ?? DEFAULT_API;
    parseHostPort('api', api);
    runOptions(values);                            // bad input: exit 2 before a daemon starts
    let stopOwn: (() => Promise<void>) | null = null;
    if (values.config !== undefined) {
      const { Daemon } = await import('../control/daemon.js');
      const d = new Daemon({
        configPath: values.config, api: { host: '127.0.0.1', port: 0 }, flowLog: null, flowLogIntervalS: 60,
        statePath: null, resetState: false, watch: false, conntrackMax,
        log: (l) => { if (!values.json) process.stderr.write(`daemon: ${l}\n`); },
      });
      await d.start();                              // ConfigErrors → exit 2 with every error
      api = `127.0.0.1:${d.api!.port}`;
      stopOwn = () => d.stop(0);
    }
    try {
      return await drive(values, api);
    } finally {
      await stopOwn?.();
    }
  },
};

type Values = ReturnType<typeof parseCommandArgs<typeof OPTIONS>>['values'];

/** Checks every run option (before any daemon is started). */
function runOptions(values: Values) {
  if (values.duration !== undefined && values.flows !== undefined) {
    throw new UsageError(`--duration ${values.duration} and --flows ${values.flows} both given; a run is bounded by one of them`);
  }
  const flows = values.flows === undefined ? null : intOption('flows', values.flows, 1, MAX_FLOWS, 1);
  const durationS = numberOption('duration', values.duration, 0.1, 86400, 10);
  const ratePerS = numberOption('rate', values.rate, 0.1, 1e7, Infinity);
  const concurrency = intOption('concurrency', values.concurrency, 1, 10000, 64);
  const timeoutMs = Math.round(numberOption('timeout', values.timeout, 0.01, 60, 1) * 1000);
  const sources = parseSources(values.sources ?? '64');
  const mix = values.mix === undefined ? null : parseMix(values.mix);
  const hold = intOption('hold', values.hold, 0, MAX_HOLD, 0);

  return { flows, durationS, ratePerS, concurrency, timeoutMs, sources, mix, hold };
}

/** One load test against the daemon at `api`; returns the exit code. */
async function drive(values: Values, api: string): Promise<number> {
  const { flows, durationS, ratePerS, concurrency, timeoutMs, sources, mix, hold } = runOptions(values);
  const progress = new ProgressLine();
  let result;
  try {
    result = await runLoadtest({
      api, flows, durationS, ratePerS, concurrency, timeoutMs, sources, mix, hold,
      fetchJson: (path, body) => apiRequest(api, path, body),
      onProgress: progress.enabled ? (p) => progress.update(p) : undefined,
    });
  } finally {
    progress.clear();
  }
  if (values.report !== undefined) {
    try { writeFileSync(values.report, renderHtml(result)); } catch (e) {
      throw new UsageError(`--report "${values.report}": cannot write it (${(e as NodeJS.ErrnoException).code ?? String(e)}); give a writable path`);
    }
  }
  if (values.json) printJson(resultJson(result));
  else process.stdout.write(formatText(result) + '\n' + (values.report !== undefined ? `report: ${values.report}\n` : ''));
  return result.mismatchCount > 0 ? EXIT_NEGATIVE : EXIT_OK;
}
export default loadtest;
