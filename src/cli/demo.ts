// `sgemu demo`: the embedded default. Writes the bundled config to a temp dir (so the tour's
// explain/lint commands can name it), starts the demo backends and a daemon, prints the tour.

import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Daemon } from '../control/daemon.js';
import { DEMO_CONFIG, demoTour, startDemoBackends } from '../control/demo.js';
import { DEFAULT_API, parseCommandArgs, type Command } from './command.js';
import { RUN_OPTIONS, daemonOptions, stderrLog } from './run.js';
import { schemaLine } from './schema-line.js';
import { PrivilegeError } from '../dataplane/privilege.js';
import type { DaemonOptions } from '../control/daemon.js';
import { NAMESPACE_API_URL, runInside } from './exec.js';

/**
 * The demo inside `sgemu exec`'s namespace: the backends stay on the host, the daemon's listeners
 * live in the namespace, and the tour (src/control/demo-tour.ts) runs there and prints what each
 * step really got. --interactive: a shell inside instead, to try the steps by hand.
 */
async function namespaceDemo(opts: DaemonOptions, interactive: boolean, stopBackends: () => Promise<void>): Promise<number> {
  const lines: string[] = [];
  const d = new Daemon({ ...opts, namespace: true, fallback: false, log: (l) => lines.push(l) });
  try {
    await d.start();
  } catch (e) {
    await d.stop(0).catch(() => {});
    throw e;
  }
  process.stderr.write('sgemu demo: no privilege here for exact behaviour on the host network, so the demo runs in a private\n' +
    "network namespace (as 'sgemu exec' does), where every outcome is exact. For the host itself: 'sudo npx sgemu setup'.\n");
  const tour = fileURLToPath(new URL('../control/demo-tour.js', import.meta.url));
  const argv = interactive ? [process.env.SHELL || '/bin/sh'] : [process.execPath, tour];
  if (interactive) process.stdout.write(demoTour(opts.configPath, NAMESPACE_API_URL, true, true) + '\n(a shell inside the namespace; exit it to stop the demo)\n');
  let status: number;
  try {
    status = await runInside(d, argv);
  } catch (e) {
    await d.stop(0);
    throw e;
  }
  await d.stop(0);
  await stopBackends();
  return status;
}

const demo: Command = {
  name: 'demo',
  summary: 'run the embedded demo',
  usage: `Usage: sgemu demo [--api ADDR] [--print-config]

Runs the embedded default: a bundled config (a web tier, a database, SSH with nothing behind it,
an outside stranger), built-in demo backends and a printed tour of commands that show allowed,
refused and timed-out connections. The web dashboard is served at http://API/ui. Ctrl-C stops
everything.

Options:
  --api ADDR        control API address (default ${DEFAULT_API})
  --print-config    print the embedded config and exit (a starting point for your own sgemu.yaml)
  --interactive     without privilege: a shell inside the demo's private namespace, to try the
                    tour's commands by hand (by default the tour is played for you there)
  --flow-log FILE|- also write VPC flow log records
  --fallback        run even without the privilege exact behaviour needs (the tour then says
                    which steps look different); without it, such a machine gets exit 2 and
                    the one command that fixes it`,
  async run(argv) {
    const { values } = parseCommandArgs(argv, { ...RUN_OPTIONS, 'print-config': { type: 'boolean', default: false }, interactive: { type: 'boolean', default: false } });
    if (values['print-config']) { process.stdout.write(schemaLine() + '\n' + DEMO_CONFIG); return 0; }
    const dir = join(tmpdir(), `sgemu-demo-${process.getuid?.() ?? 'user'}`);
    mkdirSync(dir, { recursive: true });
    const configPath = join(dir, 'sgemu.yaml');
    writeFileSync(configPath, DEMO_CONFIG);
    const stopBackends = await startDemoBackends();
    const opts = { ...daemonOptions({ ...values, config: configPath, state: values.state ?? join(dir, 'state.json'), 'reset-state': values.state === undefined || values['reset-state'] }, stderrLog), ui: true };
    const d = new Daemon(opts);
    try {
      if (values.interactive) throw new PrivilegeError('--interactive: the namespace demo');
      await d.start();
    } catch (e) {
      // Without privilege (and no --fallback): the same demo inside a private namespace, where any
      // user gets every outcome exact; its tour is played, not printed (issue #12).
      if (e instanceof PrivilegeError && !values.fallback) {
        try {
          return await namespaceDemo(opts, values.interactive ?? false, stopBackends);
        } catch (e2) {
          await stopBackends();
          if (e2 instanceof PrivilegeError && !values.interactive) throw new PrivilegeError(`${e.message}\n\nand the namespace demo cannot run either:\n${e2.message}`);
          throw e2;
        }
      }
      await stopBackends();      // the demo backends must not keep the process alive
      throw e;
    }
    // The handlers before the tour: whoever reads it may stop the demo at once, and a signal that
    // met Node's default action would skip stopping the daemon and the backends.
    const code = new Promise<number>((resolve) => {
      const stop = (sig: string) => {
        stderrLog(`${sig}: stopping the demo`);
        d.stop(500).then(stopBackends).then(() => resolve(0), () => resolve(0));
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGHUP', () => { stderrLog('SIGHUP: reloading the config'); void d.reload(); });
    });
    process.stdout.write(demoTour(configPath, values.api ?? DEFAULT_API, d.refuser.mode === 'raw', d.privilege?.tcpFilter != null, d.uiUrl()) + '\n');
    return await code;
  },
};
export default demo;
