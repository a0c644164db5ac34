// `sgemu exec -c FILE [run options] -- CMD [ARGS...]` (SPEC.md §8): CMD runs inside a private user
// + network + PID namespace where sgemu has full fidelity without any privilege, and where the
// instances have the addresses they have in AWS (10.0.1.15, …). The daemon stays on the host
// (backends there stay reachable through the relay) and gets the namespace's sockets from the
// helper (`sgemu-netd --namespace`), as with the capability helper. The exit status is CMD's;
// SIGTERM and SIGINT reach CMD, SIGHUP reloads the config; when CMD ends, so does everything it
// left running in the namespace, and the namespace itself.

import { Daemon, NAMESPACE_API } from '../control/daemon.js';
import { UsageError } from '../model/errors.js';
import { parseCommandArgs, type Command } from './command.js';
import { RUN_OPTIONS, daemonOptions, stderrLog } from './run.js';

/** The API inside the namespace, as the command sees it (also in $SGEMU_API, $AWS_ENDPOINT_URL_EC2). */
export const NAMESPACE_API_URL = `http://${NAMESPACE_API.host}:${NAMESPACE_API.port}`;

/**
 * Runs argv inside a started namespace daemon (`sgemu exec`, and `sgemu demo` without privilege):
 * this process's cwd and environment plus the API's address; SIGTERM and SIGINT forwarded to the
 * command, SIGHUP reloads the config. Resolves with the command's exit status; rejects when it
 * cannot be started.
 */
export async function runInside(d: Daemon, argv: string[]): Promise<number> {
  const netd = d.privilege!.netd!;
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  env.SGEMU_API = NAMESPACE_API_URL;
  env.AWS_ENDPOINT_URL_EC2 = NAMESPACE_API_URL;
  const onTerm = () => netd.signal(15);
  const onInt = () => netd.signal(2);
  const onHup = () => { void d.reload(); };
  try {
    return await new Promise<number>((resolve, reject) => {
      // The handlers go first: the command may run (and be signalled by whoever watches it) before
      // the helper's reply to exec reaches us; a signal in between would otherwise meet Node's
      // default action and end sgemu instead of reaching the command. Signal events run on the
      // event loop, so the ones that arrive during the (synchronous) exec call are forwarded after it.
      process.on('SIGTERM', onTerm);
      process.on('SIGINT', onInt);
      process.on('SIGHUP', onHup);
      try { netd.exec(process.cwd(), argv, env, resolve); } catch (e) { reject(e); }
    });
  } finally {
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onInt);
    process.off('SIGHUP', onHup);
  }
}

const EXEC_OPTIONS = { ...RUN_OPTIONS, api: { type: 'string' }, state: { type: 'string' }, verbose: { type: 'boolean', default: false } } as const;

const exec: Command = {
  name: 'exec',
  summary: 'run a command inside a private network where the rules apply, no privilege needed',
  usage: `Usage: sgemu exec -c FILE [run options] -- CMD [ARGS...]

Runs CMD inside a new user + network namespace of its own, where sgemu has full fidelity for any
user (denied connections time out, stopped backends refuse, ...) and instances keep the addresses
they have in AWS (e.g. 10.0.1.15): the app under test uses its production addresses and ports.
Backends stay where they are (a dev database on the host's 127.0.0.1:5432 is reached through the
relay). Inside, the EC2 API and the JSON API answer at http://${NAMESPACE_API.host}:${NAMESPACE_API.port}/ (also in
$SGEMU_API and $AWS_ENDPOINT_URL_EC2, so 'aws ec2 ...' and the SDKs find it); outside at --api.
The exit status is CMD's. SIGTERM and SIGINT are forwarded to CMD; SIGHUP reloads the config.
When CMD ends, everything it started inside ends with it and nothing is left behind.

Options (as 'sgemu run', plus):
  -c, --config FILE   config file (default ./sgemu.yaml); any instance addresses
  --api ADDR          also serve the API on the host at ADDR (default: inside only)
  --state FILE        keep API changes across runs (default: none; each exec starts from the config)
  --flow-log FILE|-   VPC flow log records
  --conntrack-max N   connection-tracking table size
  --verbose           print the daemon's log (default: only errors)

Needs unprivileged user namespaces (most distributions allow them; where a sysctl or AppArmor
forbids them, exec says which, and 'sudo sgemu setup' + 'sgemu run' is the alternative).`,
  async run(argv) {
    const dash = argv.indexOf('--');
    if (dash < 0 || dash === argv.length - 1) throw new UsageError('give the command after --: sgemu exec -c FILE -- CMD [ARGS...]');
    const cmd = argv.slice(dash + 1);
    const { values } = parseCommandArgs(argv.slice(0, dash), EXEC_OPTIONS);
    const lines: string[] = [];
    const log = values.verbose ? stderrLog : (l: string) => { lines.push(l); };
    const opts = daemonOptions({ ...values, api: values.api ?? 'off', state: values.state ?? 'off' }, log);
    const d = new Daemon({ ...opts, namespace: true, fallback: false });
    try {
      await d.start();
    } catch (e) {
      if (!values.verbose) for (const l of lines.slice(-20)) process.stderr.write(`${l}\n`);
      throw e;
    }
    let status: number;
    try {
      status = await runInside(d, cmd);
    } catch (e) {
      await d.stop(0);
      throw new UsageError(`cannot run ${cmd[0]}: ${e instanceof Error ? e.message : String(e)}`);
    }
    await d.stop(0);
    return status;
  },
};
export default exec;
