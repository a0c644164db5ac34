// `sgemu loadtest -c` on the demo config itself (src/control/demo.ts DEMO_CONFIG, with its demo
// backends), for a few seconds (issue #7, "done when"): flows of every outcome class — allowed
// (web from the laptop and the office, web's outbound to db), refused (SSH allowed, nothing
// behind it), timeout (the stranger, the 127.77 sources, db from outside its group) — and no
// mismatch, exit 0.
// The demo's ports and addresses are fixed, and test/e2e/cli.test.ts runs `sgemu demo` on them:
// when they are taken the test waits for them (bounded), then skips with the reason.

import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import { DEMO_CONFIG, DEMO_PORTS, startDemoBackends } from '../../src/control/demo.js';
import loadtest from '../../src/cli/loadtest.js';
import { sleep } from '../helpers.js';

async function runCli(argv: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const orig = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array) => { out += String(chunk); return true; }) as typeof process.stdout.write;
  try { return { code: await loadtest.run(argv), out }; } finally { process.stdout.write = orig; }
}

const inUse = (e: unknown) => /DemoPortInUse|EADDRINUSE/.test(`${(e as { code?: string }).code ?? ''} ${e instanceof Error ? e.message : String(e)}`);

/** Whether the demo backends' ports are free now. Checked first because startDemoBackends leaves
 * its HTTP server open when the echo port is the taken one. */
async function backendPortsFree(): Promise<boolean> {
  for (const port of [DEMO_PORTS.http, DEMO_PORTS.echo]) {
    const s = net.createServer();
    const ok = await new Promise<boolean>((r) => { s.once('error', () => r(false)); s.listen(port, '127.0.0.1', () => r(true)); });
    if (!ok) return false;
    await new Promise<void>((r) => s.close(() => r()));
  }
  return true;
}

interface Json {
  flows: number; mismatchCount: number; mismatches: unknown[];
  outcomes: Record<string, number>;
  listeners: { listener: string; instance: string; kind: string; outcomes: Record<string, number>; flows: number }[];
}

t.test('loadtest on the demo config: every outcome class, zero mismatches, exit 0', async (t) => {
  const dir = t.testdir({});
  const configPath = join(dir, 'sgemu.yaml');
  writeFileSync(configPath, DEMO_CONFIG);
  // The laptop (allowed everywhere it has rules), a stranger, the office, and six 127.77 sources.
  const argv = ['-c', configPath, '--duration', '3', '--concurrency', '16', '--timeout', '0.3',
    '--sources', '127.0.0.1,127.0.0.5,127.0.0.7,127.77.0.0/29', '--json'];
  let res: { code: number; out: string } | null = null;
  let lastBusy = '';
  for (let attempt = 0; attempt < 10 && res === null; attempt++) {     // ≤ ~20 s of waiting
    let stopBackends: (() => Promise<void>) | null = null;
    try {
      if (!(await backendPortsFree())) throw Object.assign(new Error(`demo backend ports ${DEMO_PORTS.http}/${DEMO_PORTS.echo} are taken`), { code: 'DemoPortInUse' });
      stopBackends = await startDemoBackends();
      res = await runCli(argv);
    } catch (e) {
      if (!inUse(e)) throw e;
      lastBusy = e instanceof Error ? e.message : String(e);
      await sleep(2000);
    } finally {
      await stopBackends?.();
    }
  }
  if (res === null) { t.skip(`the demo's fixed ports stayed taken (another test runs sgemu demo?): ${lastBusy}`, () => {}); return; }

  t.equal(res.code, 0, 'exit 0');
  const j = JSON.parse(res.out) as Json;
  t.equal(j.mismatchCount, 0, JSON.stringify(j.mismatches.slice(0, 3)));
  t.ok(j.flows > 20, `${j.flows} flows`);
  t.ok(j.outcomes.connected! > 0, `connected: ${JSON.stringify(j.outcomes)}`);
  t.ok(j.outcomes.timeout! > 0, `timeout: ${JSON.stringify(j.outcomes)}`);
  t.ok(j.outcomes.refused! + j.outcomes.reset! > 0, `refused (reset without CAP_NET_RAW): ${JSON.stringify(j.outcomes)}`);
  if (process.getuid?.() === 0) t.ok(j.outcomes.refused! > 0, 'as root: exact refusal');
  const by = (kind: string, port: string) => j.listeners.find((l) => l.kind === kind && l.listener.endsWith(`:${port}`))!;
  t.ok(by('service', '8080').outcomes.connected! > 0 && by('service', '8080').outcomes.timeout! > 0, 'web: the laptop and office connect, strangers time out');
  t.equal(by('service', '2222').outcomes.connected, 0, 'ssh: nothing behind it');
  t.equal(by('service', '15432').outcomes.timeout, by('service', '15432').flows, 'db: only the web tier may connect');
  t.equal(by('outbound', '25432').outcomes.connected, by('outbound', '25432').flows, "web's outbound to db connects");
  t.comment(`demo: ${j.flows} flows ${JSON.stringify(j.outcomes)}`);
});
