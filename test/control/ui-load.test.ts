// The dashboard under load (issue 15, "done when"): while about 2000 flows/s stream in, the page
// has no task longer than 200 ms, measured in the page with PerformanceObserver('longtask')
// (installed before the page's own script), less the time the renderer waited for a CPU inside
// the task (its /proc schedstat, RendererWatch in ui-helpers.ts; both figures are printed). The daemon runs as `sgemu run --ui` from dist/ in its
// own process, so that its work, the load generator (this process) and the page (Chromium's
// renderer) each have their own event loop; the flows are real TCP connections on loopback from
// eight allowed sources and, one in twenty, from a denied one (a reject). The test reports the
// rates it reached; it asserts the page kept up with most of what the daemon sent.
// Second: a table of 100k conntrack entries (booked directly in an in-process daemon's table, no
// sockets) pages and sorts on the server without a long task in the page.
// Skips, with the reason, when no Chromium is installed or dist/ is not built.

import t, { type Test } from 'tap';
import type { Page } from 'playwright-core';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpus, loadavg } from 'node:os';
import { echoServer, freePort, freshAddr, startDaemon } from '../e2e/helpers.js';
import { CHROMIUM, CHROMIUM_ARGS, RendererWatch, sleep, takeBrowserTurn } from './ui-helpers.js';
import { FlowEntry } from '../../src/dataplane/conntrack/table.js';

const CLI = new URL('../../dist/cli/main.js', import.meta.url).pathname;
const GENERATOR = new URL('./ui-load.fixture.ts', import.meta.url).pathname;
const EXEC_ARGV = process.execArgv.filter((a) => !/processinfo|mock/.test(a));
const skip = !existsSync(CHROMIUM) ? `no browser at ${CHROMIUM} (apt-get install chromium, or set SGEMU_CHROMIUM)`
  : !existsSync(CLI) ? 'dist/ is not built (npm run build)' : false;

/** A backend that reads and closes with its peer, and on teardown destroys whatever is still
 * open (server.close alone waits for every connection). */
async function sinkServer(t: Test): Promise<{ port: number }> {
  const open = new Set<net.Socket>();
  const server = net.createServer((c) => {
    open.add(c);
    c.on('error', () => {});
    c.on('close', () => open.delete(c));
    c.resume();
    c.on('end', () => c.end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => { for (const c of open) c.destroy(); server.close(() => r()); }));
  return { port: (server.address() as net.AddressInfo).port };
}

interface PageWindow { __longtasks: [number, number][]; __loadStart: number }
declare const performance: { now(): number; timeOrigin: number };
declare const window: PageWindow & { PerformanceObserver: new (cb: (l: { getEntries(): { startTime: number; duration: number }[] }) => void) => { observe(o: object): void } };
declare const document: { querySelector(sel: string): { textContent: string | null } | null };

/** Installed before the page's script: every long task's duration (> 50 ms by definition). */
function observeLongTasks(): void {
  window.__longtasks = [];
  new window.PerformanceObserver((l) => { for (const e of l.getEntries()) window.__longtasks.push([e.startTime, e.duration]); }).observe({ type: 'longtask', buffered: true });
}

async function openPage(t: Test, url: string, shots: string | null) {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 20_000 });
  // Bounded: one run of this file once spent minutes in teardown on a machine at load 20.
  t.teardown(() => Promise.race([browser.close(), sleep(15_000)]));
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.addInitScript(observeLongTasks);
  await page.goto(url, { waitUntil: 'load', timeout: 15_000 });
  if (shots) mkdirSync(shots, { recursive: true });
  return { page, errors };
}

/**
 * The longest task in the page, in wall time and in the page's own time: a task's time is its own
 * work plus the time its renderer waited, runnable, for a CPU, and on a machine running other
 * tests that wait is the machine's, not the page's (RendererWatch, from /proc schedstat).
 */
async function longestTask(page: Page, watch: RendererWatch, sinceLoad: boolean) {
  watch.stop();
  const { origin, start, tasks } = await page.evaluate((since) => ({
    origin: performance.timeOrigin,
    start: since ? window.__loadStart : 0,
    tasks: window.__longtasks.filter(([at]) => !since || at >= window.__loadStart),
  }), sinceLoad);
  const wall = Math.max(0, ...tasks.map(([, d]) => d));
  const own = Math.max(0, ...tasks.map(([s, d]) => watch.own(origin + s, d)));
  const { runMs, waitMs } = watch.totals(origin + start, Date.now());
  const text = `longest ${wall.toFixed(0)} ms of wall time, ${tasks.length} over 50 ms; ` + (watch.available
    ? `≈ ${own.toFixed(0)} ms of it the page's own (its renderer ran ${runMs.toFixed(0)} ms and waited ${waitMs.toFixed(0)} ms for a CPU meanwhile)`
    : 'no schedstat here: all of it counted as the page\'s own');
  return { own: watch.available ? own : wall, text };
}

// The two files that drive Chromium under load take turns (ui-helpers.ts).
if (!skip) await takeBrowserTurn(t);

t.test('2000 flows/s into the page: no task over 200 ms', { skip }, async (t) => {
  const web = freshAddr();
  const sources = Array.from({ length: 8 }, () => freshAddr());
  const stranger = freshAddr();
  const port = await freePort(web);
  const apiPort = await freePort();
  const backend = await sinkServer(t);
  const dir = t.testdir({});
  const cfg = join(dir, 'sgemu.yaml');
  writeFileSync(cfg, `
securityGroups:
  - { id: sg-web, ingress: [${sources.map((s) => `{ protocol: tcp, ports: ${port}, cidr: ${s}/32 }`).join(', ')}] }
instances:
  - { name: web, address: ${web}, securityGroups: [sg-web], services: [{ protocol: tcp, port: ${port}, backend: "127.0.0.1:${backend.port}" }] }
`);
  const proc = spawn(process.execPath, [CLI, 'run', '-c', cfg, '--api', `127.0.0.1:${apiPort}`, '--ui', '--state', 'off', '--conntrack-max', '50000'],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr!.on('data', (c: Buffer) => { log += c.toString(); });
  t.teardown(() => { proc.kill('SIGKILL'); });
  for (let i = 0; i < 100 && !/ready:/.test(log); i++) await sleep(100);     // ≤ 10 s
  t.match(log, /ready: 1 listeners/, 'the daemon is up');

  const shots = process.env.SGEMU_UI_SHOTS ?? null;
  const { page, errors } = await openPage(t, `http://127.0.0.1:${apiPort}/ui`, shots);
  await page.waitForSelector('#stream-state >> text=live', { timeout: 5000 });

  // The load, from its own process (ui-load.fixture.ts): 2000 flows/s for 6 s.
  const watch = new RendererWatch().start();
  t.teardown(() => watch.stop());
  await page.evaluate(() => { window.__loadStart = performance.now(); });
  const readCount = async () => Number(/^(\d+) events/.exec((await page.textContent('#flow-count')) ?? '')?.[1] ?? 0);
  const eventsBefore = await readCount();
  const gen = spawn(process.execPath, [...EXEC_ARGV, GENERATOR, web, String(port), '2000', '6', stranger, ...sources], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => { gen.kill('SIGKILL'); });
  let out = '';
  gen.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
  await new Promise<void>((r) => gen.once('exit', () => r()));
  const load = JSON.parse(out) as { started: number; connected: number; timedOut: number; failed: number; failures: Record<string, number>; loadS: number;
    denied: { started: number; connected: number; timedOut: number } };
  const { started, connected, timedOut, failed, failures, loadS, denied } = load;
  // Events still on their way (the daemon's write queue, the socket, a starved renderer) arrive
  // after the load: wait until the page's count holds still for a second (≤ 15 s).
  let last = -1, eventsSeen = 0;
  for (let i = 0; i < 30; i++) {
    eventsSeen = (await readCount()) - eventsBefore;
    if (eventsSeen === last) break;
    last = eventsSeen;
    await sleep(500);
  }
  await sleep(600);                                  // the page's last redraw and status poll
  const lost = Number(/(\d+) dropped by the daemon/.exec((await page.textContent('#flow-count')) ?? '')?.[1] ?? 0);
  if (shots) await page.screenshot({ path: join(shots, 'ui-load.png') });
  // The tasks that started while the load ran (and the second after it); the page's start-up
  // (building the instance cards) is not "while 2000 flows/s stream in".
  const longest = await longestTask(page, watch, true);
  const flowRate = started / loadS;
  t.comment(`load: ${started} flows in ${loadS.toFixed(1)} s = ${flowRate.toFixed(0)} flows/s (${connected} connected, ${timedOut} timed out, ${failed} failed ${JSON.stringify(failures)}); ` +
    `the page received ${eventsSeen} events (${(eventsSeen / loadS).toFixed(0)}/s; the daemon dropped ${lost} for a slow reader); ${longest.text}`);
  // The generator asks for 2000/s; an oversubscribed machine (other work, load average far above
  // the cores) gives it less. Then the 200 ms criterion below was checked at the rate reached,
  // and this says so instead of failing or passing silently.
  if (flowRate >= 1500) t.pass(`the generator reached ${flowRate.toFixed(0)} flows/s (≥ 1500 of the 2000 asked)`);
  else t.skip(`the generator reached only ${flowRate.toFixed(0)} flows/s of the 2000 asked (load average ${loadavg()[0]!.toFixed(1)} on ${cpus().length} cores): the page was measured at that rate`, () => {});
  // open + close per connected flow, a reject per denied one (each ± the few in flight at the ends).
  t.ok(eventsSeen + lost >= connected * 2 * 0.9, `the page received ${eventsSeen} events and was told of ${lost} dropped, for ${connected} connected flows (≥ 90% of open + close)`);
  t.ok(longest.own < 200, `no task in the page over 200 ms of its own time (${longest.text})`);
  // The stranger's flows, counted apart: on an oversubscribed machine some allowed flows time out
  // too (the daemon accepts late), which says nothing about the filter.
  t.ok(denied.timedOut > 0 && denied.connected === 0, `the stranger's flows timed out (${denied.timedOut} of ${denied.started}, none connected; ` +
    `${timedOut - denied.timedOut} allowed flows timed out as well)`);
  if (flowRate >= 1500) t.ok(timedOut - denied.timedOut <= 5, `at the rate asked, allowed flows connect (${timedOut - denied.timedOut} timed out)`);
  const rejects = Number(/(\d+) rejected/.exec((await page.textContent('article.card')) ?? '')?.[1] ?? -1);
  t.ok(rejects > 0, `the listener's card counts rejects (${rejects} of the ${denied.timedOut} SYNs the kernel dropped; libpcap may miss some under load)`);
  t.same(errors, [], 'no page error');
});

t.test('100k conntrack entries: paged and sorted by the server, no task over 200 ms in the page', { skip }, async (t) => {
  const web = freshAddr();
  const port = await freePort(web);
  const backend = await echoServer(t);
  const { daemon } = await startDaemon(t, `
securityGroups:
  - { id: sg-web, ingress: [{ protocol: tcp, ports: ${port}, cidr: 127.0.0.0/8 }] }
instances:
  - { name: web, address: ${web}, securityGroups: [sg-web], services: [{ protocol: tcp, port: ${port}, backend: "127.0.0.1:${backend.port}" }] }
`, { api: { host: '127.0.0.1', port: 0 }, ui: true, conntrackMax: 120_000 });
  // Book 100k flows directly in the table (no sockets): the page and the API see them as any.
  const N = 100_000;
  for (let i = 0; i < N; i++) {
    const e = daemon.table.open({
      proto: 6, family: 4, inst: 0, dir: 0, listener: -1, tracked: true, state: 1,
      src: `127.250.${(i >> 8) & 255}.${i & 255}`, srcPort: 1024 + (i * 7919) % 60000, dst: web, dstPort: port, rulePort: port,
      timeoutMs: 3_600_000,
    }, new FlowEntry());
    if (!e) throw new Error(`table full at ${i}`);
    e.bytesIn = (i * 2654435761) % 100_000;
  }
  t.equal(daemon.table.count, N);
  const base = `http://127.0.0.1:${daemon.api!.port}`;
  // The API's cost, in this process (which is also the daemon): one sorted page.
  const t0 = performance.now();
  const page1 = await (await fetch(`${base}/v1/conntrack?limit=50&sort=bytesIn&order=desc`)).json() as { total: number; entries: { bytesIn: number }[] };
  const apiMs = performance.now() - t0;
  t.equal(page1.total, N);
  t.equal(page1.entries.length, 50);
  t.ok(page1.entries.every((e, i) => i === 0 || page1.entries[i - 1]!.bytesIn >= e.bytesIn), 'sorted by bytesIn, descending');
  t.comment(`GET /v1/conntrack?limit=50&sort=bytesIn&order=desc over ${N} entries: ${apiMs.toFixed(0)} ms`);

  const shots = process.env.SGEMU_UI_SHOTS ?? null;
  const watch = new RendererWatch().start();
  t.teardown(() => watch.stop());
  const { page, errors } = await openPage(t, `${base}/ui`, shots);
  await page.waitForFunction(() => /· 100000 entries/.test(document.querySelector('#ct-page')?.textContent ?? ''), undefined, { timeout: 10_000 });
  await page.click('#ct-table th >> text="in"');
  await page.waitForSelector('#ct-table th[aria-sort=ascending] >> text="in"', { timeout: 3000 });
  await page.click('#ct-table th >> text="in"');
  await page.waitForSelector('#ct-table th[aria-sort=descending] >> text="in"', { timeout: 3000 });
  await page.click('#ct-last');
  await page.waitForFunction(() => /page 2000 of 2000/.test(document.querySelector('#ct-page')?.textContent ?? ''), undefined, { timeout: 10_000 })
    .catch(async (e: Error) => { throw new Error(`${e.message}; #ct-page says ${await page.textContent('#ct-page')}`); });
  // Sources 127.250.(i >> 8 & 255).(i & 255): "127.250.3." is i = 768..1023 and 66304..66559.
  await page.fill('#ct-filter', '127.250.3.');
  await page.waitForFunction(() => /· 512 entries/.test(document.querySelector('#ct-page')?.textContent ?? ''), undefined, { timeout: 10_000 })
    .catch(async (e: Error) => { throw new Error(`${e.message}; #ct-page says ${await page.textContent('#ct-page')}`); });
  await sleep(2500);                                  // one auto-refresh of the page at 100k
  if (shots) { await page.locator('#conntrack').scrollIntoViewIfNeeded(); await page.screenshot({ path: join(shots, 'ui-conntrack-100k.png') }); }
  const longest = await longestTask(page, watch, false);
  t.ok(longest.own < 200, `no task in the page over 200 ms of its own time, start-up included (${longest.text})`);
  t.same(errors, [], 'no page error');
});
