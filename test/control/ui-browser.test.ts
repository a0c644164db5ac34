// The web dashboard in a real browser (issue 15, "done when"): headless Chromium through
// playwright-core (Debian's chromium, as test/loadtest/report-browser.test.ts) opens /ui of a
// daemon running the demo config (src/control/demo.ts) with its demo backends, every request
// watched and any that leaves the daemon's origin aborted and failed. What the user sees:
//   - the demo's instances, addresses, groups and listeners;
//   - a real TCP connection appears as an 'open' row within 1 s;
//   - a denied one (the stranger, 127.0.0.5) times out and appears as a 'reject' row within 1 s,
//     and its row expands (keyboard) into the explanation: deny, with the near miss;
//   - authorizing 127.0.0.5 from the page's rule form turns the next connection from timeout to
//     allowed; the same rule again shows AWS's InvalidPermission.Duplicate inline; revoking it
//     from the page turns the next one back into a timeout (the twin);
//   - the conntrack view pages and sorts on the server.
// Second: with --api-credentials on loopback, the page signs its EC2 calls (SigV4 computed in the
// browser with crypto.subtle) once given the key, and the rule it adds takes effect.
// Screenshots go to the test's directory (kept with SGEMU_UI_SHOTS=DIR).
// The demo's addresses and ports are fixed (test/e2e/cli.test.ts and test/loadtest/demo.test.ts
// use them too): the test waits for them (bounded), then skips with the reason.

import t from 'tap';
import net from 'node:net';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Daemon } from '../../src/control/daemon.js';
import { DEMO_CONFIG, DEMO_PORTS, startDemoBackends } from '../../src/control/demo.js';
import { CHROMIUM, CHROMIUM_ARGS, connectOutcome, portsFree, sleep, takeBrowserTurn } from './ui-helpers.js';
import { echoServer, freePort, freshAddr, startDaemon } from '../e2e/helpers.js';

/** The little of the DOM the functions run in the page use (they are serialized, not run here). */
interface DomEl { textContent: string | null; children: ArrayLike<DomEl>; tagName: string; className: string; parentElement: DomEl | null }
type Element = DomEl;
declare const document: { querySelectorAll(sel: string): Iterable<DomEl>; querySelector(sel: string): DomEl | null };
declare function getComputedStyle(el: DomEl): { color: string; backgroundColor: string };

// The files that drive Chromium under load take turns (ui-helpers.ts).
if (existsSync(CHROMIUM)) await takeBrowserTurn(t);

t.test('the dashboard on the demo: instances, live flows, explanations, rule changes from the page',
  { skip: existsSync(CHROMIUM) ? false : `no browser at ${CHROMIUM} (apt-get install chromium, or set SGEMU_CHROMIUM)` }, async (t) => {
  // The demo, bounded wait for its fixed ports (another test may be running `sgemu demo`).
  let daemon: Daemon | null = null;
  let stopBackends: (() => Promise<void>) | null = null;
  let busy = '';
  for (let attempt = 0; attempt < 10 && daemon === null; attempt++) {       // ≤ ~20 s of waiting
    if (!(await portsFree([[ '127.0.0.1', DEMO_PORTS.http], ['127.0.0.1', DEMO_PORTS.echo], ['127.0.0.10', 8080], ['127.0.0.10', 2222], ['127.0.0.10', 25432], ['127.0.0.20', 15432]]))) {
      busy = 'the demo ports are taken'; await sleep(2000); continue;
    }
    try { stopBackends = await startDemoBackends(); } catch (e) { busy = String(e); await sleep(2000); continue; }
    const logs: string[] = [];
    const d = new Daemon({
      configPath: 'demo.yaml', configText: DEMO_CONFIG, api: { host: '127.0.0.1', port: 0 }, flowLog: null, flowLogIntervalS: 60,
      statePath: null, resetState: false, watch: false, conntrackMax: 10000, ui: true, log: (l) => logs.push(l),
    });
    await d.start();
    if (d.listeners.size !== 4) {
      busy = `only ${d.listeners.size} of 4 listeners: ${logs.filter((l) => l.startsWith('cannot')).join('; ')}`;
      await d.stop(0); await stopBackends(); stopBackends = null; await sleep(2000); continue;
    }
    daemon = d;
  }
  if (daemon === null) { t.skip(`the demo's fixed addresses stayed taken: ${busy}`, () => {}); return; }
  const d = daemon;
  t.teardown(async () => { await d.stop(0); await stopBackends?.(); });
  const base = `http://127.0.0.1:${d.api!.port}`;
  t.equal(d.uiUrl(), `${base}/ui`);

  const shots = process.env.SGEMU_UI_SHOTS ?? t.testdir({});
  mkdirSync(shots, { recursive: true });
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 20_000 });
  t.teardown(() => Promise.race([browser.close(), sleep(15_000)]));
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const foreign: string[] = [];
  const consoleErrors: string[] = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(e.message));
  await page.route('**', (route) => {
    const u = route.request().url();
    if (u.startsWith(base + '/')) return route.continue();
    foreign.push(u);
    return route.abort();
  });
  await page.goto(`${base}/ui`, { waitUntil: 'load', timeout: 15_000 });

  // The demo's instances, with their addresses, groups and listeners' live state.
  await page.waitForSelector('article[aria-label="instance db"] td >> text=up', { timeout: 5000 });
  const cards = await page.$$eval('article.card', (as) => as.map((a) => a.textContent ?? ''));
  t.equal(cards.length, 2, 'two instances: web and db');
  t.match(cards[0], /web.*127\.0\.0\.10.*sg-web.*sg-ssh/s, 'web: address and groups');
  t.match(cards[0], /tcp 8080 → 127\.0\.0\.1:27080/, 'web: its http service and backend');
  t.match(cards[0], /tcp 22 \(listens :2222\) → 127\.0\.0\.1:27022\s*down/, 'web: ssh, nothing behind it: backend down');
  t.match(cards[0], /tcp :25432 → db:5432/, 'web: its outbound entry to db');
  t.match(cards[1], /db.*127\.0\.0\.20.*sg-db/s);
  t.match(await page.textContent('#summary'), /policy v1 · kernel filter on/);
  await page.waitForSelector('#stream-state >> text=live', { timeout: 5000 });
  await page.screenshot({ path: join(shots, 'ui-instances.png'), fullPage: false });

  // A real connection from the laptop: an 'open' row within 1 s.
  // A row: "<time> <decision badge> <proto> <instance> <dir> <source> <destination> <detail>".
  const rowWith = (type: string, src: string, timeoutMs: number) => page.waitForFunction(([ty, s]) =>
    [...document.querySelectorAll('#flow-list li.ev')].some((r) => r.children[0]?.textContent === ty && (r.textContent ?? '').includes(` ${s}`)),
  [type, src] as const, { timeout: Math.max(1, timeoutMs), polling: 50 });
  let t0 = Date.now();
  const ok = await connectOutcome('127.0.0.1', '127.0.0.10', 8080, 1000, true);
  t.equal(ok.outcome, 'connected', 'the laptop reaches web:8080');
  await rowWith('open', `127.0.0.1:${ok.localPort}`, 1000 - (Date.now() - t0));
  t.pass(`the open row appeared ${Date.now() - t0} ms after the connect began (≤ 1000)`);

  // A denied one: the stranger times out, and the page shows its reject within 1 s of the SYN.
  t0 = Date.now();
  const [denied] = await Promise.all([
    connectOutcome('127.0.0.5', '127.0.0.10', 8080, 1500),
    rowWith('reject', '127.0.0.5:', 1000).then(() => t.pass(`the reject row appeared ${Date.now() - t0} ms after the SYN (≤ 1000)`)),
  ]);
  t.equal(denied.outcome, 'timeout', 'the stranger times out (no answer in 1.5 s)');

  // Its explanation, from the keyboard: focus the row, Enter.
  const rejectRow = page.locator('#flow-list li.ev', { hasText: 'reject' }).filter({ hasText: ' 127.0.0.5:' }).first();
  await rejectRow.focus();
  await page.keyboard.press('Enter');
  await page.waitForSelector('#flow-list li.detail .explain', { timeout: 3000 });
  const detail = await page.textContent('#flow-list li.detail');
  t.match(detail, /deny/, 'the explanation says deny');
  t.match(detail, /near miss.*sg-web.*source/s, 'and names the near miss: sg-web allows 8080, but not from there');
  t.equal(await page.getAttribute('#flow-pause', 'aria-pressed'), 'true', 'the stream paused while the row is open');
  await page.screenshot({ path: join(shots, 'ui-flows-explained.png'), fullPage: false });
  await page.keyboard.press('Escape');
  await page.click('#flow-pause');

  // web's outbound connection to db: filter the stream to it, open its row: egress of web and
  // ingress of db (the group reference) both allow.
  const out = await connectOutcome('127.0.0.1', '127.0.0.10', 25432, 1000);
  t.equal(out.outcome, 'connected', "web's outbound entry to db:5432");
  await page.fill('#flow-filter', 'egress open');
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('#flow-list li.ev')];
    return rows.length > 0 && rows.every((r) => r.children[0]?.textContent === 'open' && / egress /.test(r.textContent ?? ''));
  }, undefined, { timeout: 2000 });
  t.pass('the filter keeps the egress opens only');
  await page.locator('#flow-list li.ev').first().press('Enter');
  await page.waitForSelector('#flow-list li.detail .explain', { timeout: 3000 });
  t.match(await page.textContent('#flow-list li.detail'), /allow.*web egress.*allow.*db ingress.*sg-db/s, 'explained: web egress and db ingress allow');
  await page.keyboard.press('Escape');
  await page.fill('#flow-filter', '');
  await page.click('#flow-pause');

  // Authorize the stranger from the page (the rules see 127.0.0.5 as 203.0.113.5, the demo's
  // `addresses`): the next connection is allowed.
  const form = page.locator('#group-sg-web form');
  await form.locator('select[name=protocol]').selectOption('tcp');
  await form.locator('input[name=ports]').fill('8080');
  await form.locator('input[name=peer]').fill('203.0.113.5/32');
  await form.locator('input[name=description]').fill('the stranger, from the dashboard');
  await form.locator('input[name=description]').press('Enter');
  await page.waitForSelector('#group-sg-web .msg .ok', { timeout: 3000 });
  t.match(await page.textContent('#group-sg-web .msg'), /authorized sgr-/);
  const after = await connectOutcome('127.0.0.5', '127.0.0.10', 8080, 1000);
  t.equal(after.outcome, 'connected', 'after authorize from the page: the stranger connects');
  await page.waitForSelector('#group-sg-web td >> text=203.0.113.5/32', { timeout: 3000 });
  // The status poll then sees the new policy version and reloads the model: the same model the
  // page already drew, so nothing is redrawn (a redraw replaced the group under the next click in a
  // CI run: issue 16's stop, "#group-sg-web detached").
  await page.evaluate(`window.__groupRedraws = 0;
    new MutationObserver(() => { window.__groupRedraws++; }).observe(document.querySelector('#group-list'), { childList: true });`);
  const { policyVersion } = await (await fetch(`${base}/v1/status`)).json() as { policyVersion: number };
  await page.waitForFunction((v) => (document.querySelector('#summary')?.textContent ?? '').includes(`policy v${v} `), policyVersion, { timeout: 3000 });
  await sleep(500);                                  // the reload's two GETs, on loopback
  t.equal(await page.evaluate('window.__groupRedraws'), 0, 'the status poll\'s reload of an unchanged model redraws nothing');

  // The same rule again (the form kept what was typed): AWS's error, inline.
  await form.locator('button[type=submit]').click();
  await page.waitForSelector('#group-sg-web .msg .error', { timeout: 3000 });
  t.match(await page.textContent('#group-sg-web .msg .error'), /^InvalidPermission\.Duplicate: /, 'the AWS error code and message, inline');
  await page.locator('#group-sg-web').scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(shots, 'ui-rules.png'), fullPage: false });

  // The twin: revoke it from the page, and the stranger times out again.
  await page.locator('#group-sg-web tr', { hasText: '203.0.113.5/32' }).getByRole('button', { name: /^revoke / }).click();
  await page.waitForSelector('#group-sg-web .msg .ok >> text=revoked', { timeout: 3000 });
  t.equal((await connectOutcome('127.0.0.5', '127.0.0.10', 8080, 600)).outcome, 'timeout', 'after revoke from the page: timeout again');

  // The explain form.
  await page.fill('#explain-form input[name=from]', 'web');
  await page.fill('#explain-form input[name=to]', 'db');
  await page.fill('#explain-form input[name=port]', '5432');
  await page.press('#explain-form input[name=port]', 'Enter');
  await page.waitForSelector('#explain-result .explain', { timeout: 3000 });
  t.match(await page.textContent('#explain-result'), /allow.*sg-db/s, 'web → db:5432 is allowed by sg-db (group reference)');

  // Conntrack: a few held connections, paged and sorted by the server.
  const held: net.Socket[] = [];
  t.teardown(() => { for (const s of held) s.destroy(); });
  for (let i = 0; i < 7; i++) {
    const r = await connectOutcome('127.0.0.1', '127.0.0.10', 8080, 1000, false);
    t.equal(r.outcome, 'connected');
    if (r.socket) held.push(r.socket);
  }
  await page.selectOption('#ct-limit', '25');
  await page.click('#ct-refresh');
  await page.waitForFunction(() => /· ([7-9]|\d\d+) entries/.test(document.querySelector('#ct-page')?.textContent ?? ''), undefined, { timeout: 3000 });
  await page.click('#ct-table th >> text=sport');
  await page.waitForSelector('#ct-table th[aria-sort=ascending] >> text=sport', { timeout: 3000 });
  await page.waitForFunction(() => {
    const ports = [...document.querySelectorAll('#ct-table tbody tr')].map((r) => Number(r.children[6]?.textContent));
    return ports.length >= 7 && ports.every((p, i) => i === 0 || ports[i - 1]! <= p);
  }, undefined, { timeout: 3000 });
  t.pass('conntrack sorted by source port');
  await page.locator('#conntrack').scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(shots, 'ui-conntrack.png'), fullPage: false });
  await page.screenshot({ path: join(shots, 'ui-full.png'), fullPage: true });

  // Readable contrast (WCAG AA, 4.5:1 for text) for every kind of text the page draws on a colour:
  // badges of each decision and state, muted hints, header, nav, errors and confirmations.
  const low = await page.evaluate(() => {
    const rgb = (c: string) => (/rgba?\(([^)]+)\)/.exec(c)?.[1] ?? '0,0,0').split(',').map((x) => Number(x.trim()));
    const lum = ([r, g, b]: number[]) => {
      const f = (v: number) => { const s = v / 255; return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4; };
      return 0.2126 * f(r!) + 0.7152 * f(g!) + 0.0722 * f(b!);
    };
    const bgOf = (el: Element | null): number[] => {
      for (let e = el; e; e = e.parentElement) {
        const c = rgb(getComputedStyle(e).backgroundColor);
        if (c.length < 4 || c[3]! > 0) return c;
      }
      return [255, 255, 255];
    };
    const out: string[] = [];
    let checked = 0;
    for (const el of document.querySelectorAll('.badge, .muted, .hint, .top, .nav a, .error, .ok, .flow-head, li.ev, .spark span, th, td, summary, label, button')) {
      if (!(el.textContent ?? '').trim()) continue;
      checked++;
      const fg = lum(rgb(getComputedStyle(el).color)), bg = lum(bgOf(el));
      const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
      if (ratio < 4.5) out.push(`${el.tagName.toLowerCase()}.${el.className} "${(el.textContent ?? '').trim().slice(0, 20)}" ${ratio.toFixed(2)}:1`);
    }
    return { checked, low: [...new Set(out)] };
  });
  t.ok(low.checked > 100, `${low.checked} texts checked`);
  t.same(low.low, [], 'every text on its background at 4.5:1 or more');

  t.same(foreign, [], 'no request beyond the daemon');
  // The browser logs the one failed EC2 call (400, the duplicate above) as a failed load.
  t.equal(consoleErrors.filter((m) => /status of 400/.test(m)).length, 1, 'one failed load: the duplicate rule');
  t.same(consoleErrors.filter((m) => !/status of 400/.test(m)), [], 'no other console error');
  t.comment(`screenshots in ${shots}`);
});

t.test('with --api-credentials the page signs its EC2 calls (SigV4 in the browser): refused unsigned, then asks, then served',
  { skip: existsSync(CHROMIUM) ? false : `no browser at ${CHROMIUM} (apt-get install chromium, or set SGEMU_CHROMIUM)` }, async (t) => {
  const web = freshAddr(), client = freshAddr();
  const port = await freePort(web);
  const echo = await echoServer(t);
  const creds = { accessKeyId: 'AKIDSGEMUPAGE', secretAccessKey: 'page/secret+with=odd chars' };
  const { daemon } = await startDaemon(t, `
securityGroups:
  - { id: sg-web, ingress: [] }
instances:
  - { name: web, address: ${web}, securityGroups: [sg-web], services: [{ protocol: tcp, port: ${port}, backend: "127.0.0.1:${echo.port}" }] }
`, { api: { host: '127.0.0.1', port: 0 }, ui: true, apiCredentials: creds });
  const base = `http://127.0.0.1:${daemon.api!.port}`;
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 20_000 });
  t.teardown(() => Promise.race([browser.close(), sleep(15_000)]));
  const page = await browser.newPage();
  await page.goto(`${base}/ui`, { waitUntil: 'load', timeout: 15_000 });
  t.equal((await connectOutcome(client, web, port, 500)).outcome, 'timeout', 'no rule: timeout');

  const form = page.locator('#group-sg-web form');
  await form.locator('input[name=ports]').fill(String(port));
  await form.locator('input[name=peer]').fill(client);
  await form.locator('button[type=submit]').click();
  await page.waitForSelector('#group-sg-web .msg .error', { timeout: 3000 });
  t.match(await page.textContent('#group-sg-web .msg .error'), /^AuthFailure: /, 'unsigned: AWS AuthFailure, inline');
  await page.waitForSelector('#creds-dialog[open]', { timeout: 3000 });
  t.pass('and the page asks for the credentials');
  await page.fill('#creds-dialog input[name=accessKeyId]', creds.accessKeyId);
  await page.fill('#creds-dialog input[name=secretAccessKey]', creds.secretAccessKey);
  await page.click('#creds-dialog button[value=save]');
  await form.locator('button[type=submit]').click();
  await page.waitForSelector('#group-sg-web .msg .ok', { timeout: 3000 });
  t.match(await page.textContent('#group-sg-web .msg'), new RegExp(`authorized sgr-\\w+: tcp ${port} from ${client.replace(/\./g, '\\.')}/32`), 'signed: served');
  t.equal((await connectOutcome(client, web, port, 1000)).outcome, 'connected', 'and the next connection is allowed');
});
