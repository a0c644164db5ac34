// `sgemu run`: the daemon in the foreground. SIGHUP reloads (an invalid config is rejected and the
// running rules stay), SIGTERM / SIGINT drain open flows (up to --drain seconds) and exit 0.

import { createHash } from 'node:crypto';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { Daemon, defaultConntrackMax, type DaemonOptions } from '../control/daemon.js';
import { isLoopbackHost, parseCredentials } from '../control/api/sigv4.js';
import { UsageError } from '../model/errors.js';
import { availableParallelism } from 'node:os';
import { RELAY_BUSY_POLL_MAX_US, RELAY_THREADS_MAX, defaultRelayThreads } from '../native/tcp-relay.js';
import { COMMON_OPTIONS, DEFAULT_API, EXIT_OK, intOption, numberOption, parseCommandArgs, parseHostPort, type Command } from './command.js';

export const RUN_OPTIONS = {
  ...COMMON_OPTIONS,
  api: { type: 'string', default: DEFAULT_API },
  'api-credentials': { type: 'string' },
  'flow-log': { type: 'string' },
  'flow-log-interval': { type: 'string' },
  state: { type: 'string' },
  'reset-state': { type: 'boolean', default: false },
  watch: { type: 'boolean', default: false },
  'conntrack-max': { type: 'string' },
  drain: { type: 'string' },
  fallback: { type: 'boolean', default: false },
  ui: { type: 'boolean', default: false },
  toxiproxy: { type: 'string' },
  threads: { type: 'string' },
  'busy-poll': { type: 'string' },
} as const;

/** `--toxiproxy` without a value: the Toxiproxy API at Toxiproxy's own default address. */
export const DEFAULT_TOXIPROXY = '127.0.0.1:8474';

export function daemonOptions(values: ReturnType<typeof parseCommandArgs<typeof RUN_OPTIONS>>['values'], log: (l: string) => void): DaemonOptions {
  const api = values.api === 'off' || values.api === 'none' ? null : parseHostPort('api', values.api ?? DEFAULT_API);
  const credText = values['api-credentials'] ?? process.env.SGEMU_API_CREDENTIALS;
  const apiCredentials = parseCredentials(credText);
  if (credText && !apiCredentials) throw new UsageError('--api-credentials must be ACCESS_KEY_ID:SECRET_ACCESS_KEY');
  if (api && !isLoopbackHost(api.host) && !apiCredentials) {
    throw new UsageError(`--api ${api.host}:${api.port} is reachable beyond this machine: give --api-credentials KEY:SECRET ` +
      '(or SGEMU_API_CREDENTIALS) so that EC2 API calls must be SigV4-signed with them, or keep the API on loopback');
  }
  const toxiproxy = values.toxiproxy === undefined ? null : parseHostPort('toxiproxy', values.toxiproxy);
  if (toxiproxy && !isLoopbackHost(toxiproxy.host)) {
    throw new UsageError(`--toxiproxy ${values.toxiproxy}: the Toxiproxy API has no authentication (as Toxiproxy's); keep it on loopback, e.g. ${DEFAULT_TOXIPROXY}`);
  }
  return {
    toxiproxy,
    apiCredentials,
    configPath: values.config ?? './sgemu.yaml',
    api,
    flowLog: values['flow-log'] ?? null,
    flowLogIntervalS: intOption('flow-log-interval', values['flow-log-interval'], 1, 3600, 60),
    statePath: values.state === 'off' ? null : values.state ?? defaultStatePath(values.config ?? './sgemu.yaml'),
    resetState: values['reset-state'] ?? false,
    watch: values.watch ?? false,
    conntrackMax: intOption('conntrack-max', values['conntrack-max'], 1, 16_000_000, defaultConntrackMax()),
    fallback: values.fallback ?? false,
    ui: values.ui ?? false,
    relayThreads: intOption('threads', values.threads ?? process.env.SGEMU_RELAY_THREADS, 1, RELAY_THREADS_MAX, defaultRelayThreads(availableParallelism())),
    relayBusyPollUs: intOption('busy-poll', values['busy-poll'], 0, RELAY_BUSY_POLL_MAX_US, 0),
    log,
  };
}

/** $XDG_STATE_HOME/sgemu/<config name>-<hash of its absolute path>.json (one state per config file). */
export function defaultStatePath(configPath: string): string {
  const abs = resolve(configPath);
  const base = process.env.XDG_STATE_HOME || join(homedir(), '.local', 'state');
  const name = abs.split('/').pop()!.replace(/\.(ya?ml|json)$/, '');
  return join(base, 'sgemu', `${name}-${createHash('sha256').update(abs).digest('hex').slice(0, 12)}.json`);
}

export function stderrLog(line: string): void {
  process.stderr.write(`${new Date().toISOString()} ${line}\n`);
}

/** Runs a daemon until SIGTERM/SIGINT; SIGHUP reloads. Resolves with the exit code. */
export async function runUntilSignal(d: Daemon, drainS: number, log: (l: string) => void): Promise<number> {
  await d.start();
  return new Promise((resolve) => {
    let stopping = false;
    const stop = (sig: string) => {
      if (stopping) { log(`${sig} again: exiting now`); process.exit(0); }
      stopping = true;
      log(`${sig}: draining open flows (up to ${drainS}s), then exiting`);
      d.stop(drainS * 1000).then(() => resolve(EXIT_OK), (e) => { log(`stop failed: ${String(e)}`); resolve(EXIT_OK); });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => { log('SIGHUP: reloading the config'); void d.reload(); });
  });
}

/** `--flag` given without a value (last, or followed by another option): `--flag=dflt`. */
export function optionalValue(argv: string[], flag: string, dflt: string): string[] {
  return argv.map((a, i) => (a === flag && (i === argv.length - 1 || argv[i + 1]!.startsWith('-')) ? `${flag}=${dflt}` : a));
}

const run: Command = {
  name: 'run',
  summary: 'run the daemon in the foreground',
  usage: `Usage: sgemu run [-c FILE] [options]

Runs the daemon in the foreground: one listener per instance service and outbound entry, each
with a kernel socket filter compiled from the rules. Denied clients time out, allowed clients
reach the backend, allowed clients of a stopped backend are refused.

Options:
  -c, --config FILE         config file (default ./sgemu.yaml)
  --api ADDR                control API address (default ${DEFAULT_API}; 'off' disables it)
  --api-credentials K:S     require AWS SigV4 with these credentials on every API request when
                            --api is not a loopback address (mandatory there; on loopback only
                            the EC2 API checks them) (env SGEMU_API_CREDENTIALS)
  --flow-log FILE|-         write VPC Flow Logs v2 records to FILE (or stdout)
  --flow-log-interval S     aggregation interval in seconds (default 60)
  --state FILE|off          where API changes are kept across restarts (default
                            $XDG_STATE_HOME/sgemu/<config>-<hash>.json; 'off' keeps none)
  --reset-state             ignore the state file and start from the config alone
  --watch                   reload when the config file changes
  --conntrack-max N         connection-tracking table size (default 262144, or what the
                            open-files limit can hold); when full, new flows time out, as
                            with a full kernel table
  --drain S                 on SIGTERM, wait up to S seconds for open flows (default 5)
  --threads N               native TCP relay threads, 1-${RELAY_THREADS_MAX} (default: one per core up to 4;
                            1 on machines with 2 cores or fewer, where a second one costs more
                            than it gives) (env SGEMU_RELAY_THREADS)
  --busy-poll US             each relay thread polls up to US µs (0-${RELAY_BUSY_POLL_MAX_US}) for the next
                            segment before it sleeps: lower added latency on request/response
                            traffic for more CPU per connection (default 0: it sleeps at once)
  --fallback                run even without the privilege exact behaviour needs, degraded:
                            denied TCP is accepted then reset instead of timing out, refusals
                            are resets, UDP refusals are silent (without it: exit 2 and the
                            one command that fixes it; see 'sgemu doctor' and 'sgemu setup')
  --toxiproxy [ADDR]        serve Toxiproxy 2.x's HTTP API (default ${DEFAULT_TOXIPROXY}) so its
                            clients work unchanged: each proxy becomes a service that lets any
                            TCP in, toxics become its faults; proxies live in memory only
                            (README "Toxiproxy-compatible API" for the sgemu extension fields)
  --ui                      serve the web dashboard at http://API/ui: instances, listeners, live
                            flow decisions with their explanation, conntrack, rule editing
                            (same access rules as the API; needs --api)

Signals: SIGHUP reloads the config (an invalid config is rejected, the running rules stay);
SIGTERM and SIGINT drain and exit.`,
  async run(argv) {
    const { values } = parseCommandArgs(optionalValue(argv, '--toxiproxy', DEFAULT_TOXIPROXY), RUN_OPTIONS);
    const drainS = numberOption('drain', values.drain, 0, 3600, 5);
    if (values.ui && (values.api === 'off' || values.api === 'none')) throw new UsageError('--ui is served on the API listener: drop --api off, or drop --ui');
    const d = new Daemon(daemonOptions(values, stderrLog));
    return runUntilSignal(d, drainS, stderrLog);
  },
};
export default run;
