// The --report page in a real browser (issue #7, "done when"): headless Chromium through
// playwright-core loads the file:// page with every request watched and every non-file one
// aborted; the page must make no request beyond itself, render its SVG charts and the mismatch
// list, and log no console error. The report comes from a real run (a daemon on loopback, a stale
// policy answer so that there are mismatches, two held flows). Skips, with the reason, when no
// Chromium is installed (Debian: apt-get install chromium).

import t from 'tap';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { freshAddr, freePort, echoServer, startDaemon } from '../e2e/helpers.js';
import { runLoadtest } from '../../src/loadtest/run.js';
import { renderHtml } from '../../src/loadtest/report.js';
import { explainKey, sourceAddress, type ExplainAnswer } from '../../src/loadtest/expect.js';
import { apiRequest } from '../../src/cli/command.js';

const CHROMIUM = process.env.SGEMU_CHROMIUM ?? '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

t.test('the HTML report in headless Chromium: no external request, charts and mismatches render, no console error',
  { skip: existsSync(CHROMIUM) ? false : `no browser at ${CHROMIUM} (apt-get install chromium, or set SGEMU_CHROMIUM)` }, async (t) => {
  const web = freshAddr();
  const webPort = await freePort(web);
  const echo = await echoServer(t);
  const { daemon } = await startDaemon(t, `
securityGroups:
  - { id: sg-web, description: web, ingress: [{ protocol: tcp, ports: ${webPort}, cidr: 127.77.0.0/29 }] }
instances:
  - { name: web, address: ${web}, securityGroups: [sg-web], services: [{ protocol: tcp, port: ${webPort}, backend: "127.0.0.1:${echo.port}" }] }
`, { api: { host: '127.0.0.1', port: 0 } });
  const api = `127.0.0.1:${daemon.api!.port}`;
  // A stale answer: everyone allowed, so the sources above 127.77.0.6 time out against it.
  const stale = new Map<string, ExplainAnswer>();
  for (let i = 0; i < 12; i++) {
    stale.set(explainKey({ from: sourceAddress(i), to: 'web', protocol: 'tcp', port: webPort }),
      { decision: 'allow', reason: 'stale <img src="https://cdn.example.com/x.png"> answer' });
  }
  const r = await runLoadtest({
    api, flows: null, durationS: 1.6, ratePerS: 200, concurrency: 8, timeoutMs: 200, sources: 12, mix: null, hold: 2,
    fetchJson: (p, b) => apiRequest(api, p, b), sampleMs: 400, explainCache: stale,
  });
  t.ok(r.mismatchCount > 0, `the run has mismatches to show (${r.mismatchCount})`);
  t.ok(r.timeline.length >= 3, `${r.timeline.length} timeline points`);
  const file = join(t.testdir({}), 'report.html');
  writeFileSync(file, renderHtml(r));

  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true, timeout: 20_000 });
  t.teardown(() => browser.close());
  const page = await browser.newPage();
  const url = pathToFileURL(file).href;
  const requests: string[] = [];
  const consoleErrors: string[] = [];
  page.on('request', (q) => requests.push(q.url()));
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(e.message));
  await page.route('**', (route) => (route.request().url() === url ? route.continue() : route.abort()));
  await page.goto(url, { waitUntil: 'load', timeout: 15_000 });

  t.same(requests.filter((u) => u !== url), [], 'no request beyond the page itself');
  t.same(consoleErrors, [], 'no console error');
  const charts = await page.$$eval('svg', (ss) => ss.map((s) => {
    const box = s.getBoundingClientRect();
    const paths = [...s.querySelectorAll('path')].map((p) => (p as unknown as { getBBox(): { width: number; height: number } }).getBBox());
    return { w: box.width, h: box.height, paths: paths.length, drawn: paths.filter((b) => b.width > 0 || b.height > 0).length, label: s.getAttribute('aria-label') };
  }));
  t.ok(charts.length >= 4, `${charts.length} charts: flows, latency, conntrack, RSS/CPU`);
  for (const c of charts) t.ok(c.w > 100 && c.h > 50 && c.drawn > 0, `chart "${c.label}" laid out ${c.w}x${c.h} with ${c.drawn} drawn series`);
  const rows = await page.$$eval('h2', (hs) => {
    const h = hs.find((x) => x.textContent === 'Mismatches');
    const table = h?.nextElementSibling;
    return table?.tagName === 'TABLE' ? table.querySelectorAll('tr').length - 1 : -1;
  });
  t.equal(rows, Math.min(r.mismatches.length, r.mismatchCount), 'the mismatch list has one row per listed mismatch');
  t.match(await page.textContent('body'), /stale <img src="https:\/\/cdn\.example\.com\/x\.png"> answer/, 'markup in a reason is shown as text');
  t.equal(await page.$$eval('img', (x) => x.length), 0, 'and never becomes an element');
  t.match(await page.textContent('body'), /Conntrack pressure \(--hold 2\)/);
});
