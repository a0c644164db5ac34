// `sgemu demo`: the embedded default. Writes the bundled config to a temp dir (so the tour's
// explain/lint commands can name it), starts the demo backends and a daemon, prints the tour.

import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Daemon } from '../control/daemon.js';
import { DEMO_CONFIG, demoTour, startDemoBackends } from '../control/demo.js';
import { nativeStatus } from '../native/sock-filter.js';
import { DEFAULT_API, parseCommandArgs, type Command } from './command.js';
import { RUN_OPTIONS, daemonOptions, stderrLog } from './run.js';

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
  --flow-log FILE|- also write VPC flow log records`,
  async run(argv) {
    const { values } = parseCommandArgs(argv, { ...RUN_OPTIONS, 'print-config': { type: 'boolean', default: false } });
    if (values['print-config']) { process.stdout.write(DEMO_CONFIG); return 0; }
    const dir = join(tmpdir(), `sgemu-demo-${process.getuid?.() ?? 'user'}`);
    mkdirSync(dir, { recursive: true });
    const configPath = join(dir, 'sgemu.yaml');
    writeFileSync(configPath, DEMO_CONFIG);
    const stopBackends = await startDemoBackends();
    const opts = { ...daemonOptions({ ...values, config: configPath, state: values.state ?? join(dir, 'state.json'), 'reset-state': values.state === undefined || values['reset-state'] }, stderrLog), ui: true };
    const d = new Daemon(opts);
    await d.start();
    process.stdout.write(demoTour(configPath, values.api ?? DEFAULT_API, d.refuser.mode === 'raw', nativeStatus().loaded, d.uiUrl()) + '\n');
    const code = await new Promise<number>((resolve) => {
      const stop = (sig: string) => {
        stderrLog(`${sig}: stopping the demo`);
        d.stop(500).then(stopBackends).then(() => resolve(0), () => resolve(0));
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGHUP', () => { stderrLog('SIGHUP: reloading the config'); void d.reload(); });
    });
    return code;
  },
};
export default demo;
