// What the dashboard (issue 15) adds to the API, without a browser:
//   - GET /ui only with --ui (else 404 naming the flag); page, script and style with a
//     same-origin CSP, ETag revalidation; under the API's access rules (signAll: 401 unsigned,
//     served when signed);
//   - GET /v1/conntrack unchanged without parameters (a JSON array), one sorted page with them,
//     400 InvalidParameterValue for bad ones;
//   - /v1/status listeners carry accepted/rejected/refused and bytes;
//   - a denied SYN shows up on /v1/events as a reject while someone watches, with no flow log
//     (the capture follows the watchers; needs CAP_NET_RAW for libpcap).

import t from 'tap';
import net from 'node:net';
import { echoServer, freePort, freshAddr, probe, startDaemon } from '../e2e/helpers.js';
import { signSigV4 } from '../../src/control/api/sigv4.js';
import { ApiServer } from '../../src/control/api/server.js';

t.test('GET /ui: off without --ui; page, script and style with a CSP; ETag; same access rules as the API', async (t) => {
  const yaml = `instances:\n  - { name: a, address: ${freshAddr()} }\n`;
  const off = await startDaemon(t, yaml, { api: { host: '127.0.0.1', port: 0 } });
  const r404 = await fetch(`http://127.0.0.1:${off.daemon.api!.port}/ui`);
  t.equal(r404.status, 404);
  t.match(await r404.json(), { error: 'NotFound', message: /--ui/ });
  t.equal(off.daemon.uiUrl(), null);

  const creds = { accessKeyId: 'AKIDSGEMUUI', secretAccessKey: 'ui-secret' };
  const { daemon } = await startDaemon(t, yaml, { api: { host: '127.0.0.1', port: 0 }, ui: true, apiCredentials: creds });
  const base = `http://127.0.0.1:${daemon.api!.port}`;
  const page = await fetch(`${base}/ui/`);
  t.equal(page.status, 200, 'on loopback the page is open, as the JSON routes are');
  t.match(page.headers.get('content-type'), /^text\/html/);
  t.match(page.headers.get('content-security-policy'), /default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'/);
  const html = await page.text();
  t.match(html, /<script src="\/ui\/app\.js" defer><\/script>/);
  t.notMatch(html, /https?:\/\/(?!127\.)/, 'no absolute URL in the page');
  for (const [path, type] of [['/ui/app.js', /^text\/javascript/], ['/ui/app.css', /^text\/css/]] as const) {
    const r = await fetch(base + path);
    t.equal(r.status, 200, path);
    t.match(r.headers.get('content-type'), type);
    const body = await r.text();
    t.notMatch(body, /https?:\/\/(?!127\.|www\.w3\.org\/2000\/svg)/, `${path}: no URL but the SVG namespace`);
    const again = await fetch(base + path, { headers: { 'if-none-match': r.headers.get('etag')! } });
    t.equal(again.status, 304, `${path}: revalidated by ETag`);
  }

  const api = new ApiServer(daemon, creds, { signAll: true, ui: true });
  await api.listen('127.0.0.1', 0);
  t.teardown(() => api.close());
  const host = `127.0.0.1:${api.port}`;
  const unsigned = await fetch(`http://${host}/ui`);
  t.equal(unsigned.status, 401, 'beyond loopback (signAll) an unsigned GET /ui is refused');
  t.match(await unsigned.json(), { error: 'AuthFailure' });
  const signed = await fetch(`http://${host}/ui`, { headers: signSigV4({ method: 'GET', url: '/ui', host }, creds) });
  t.equal(signed.status, 200, 'and a signed one served');
});

t.test('GET /v1/conntrack: the array without parameters, a sorted page with them, 400 for bad ones', async (t) => {
  const web = freshAddr();
  const port = await freePort(web);
  const echo = await echoServer(t);
  const { daemon } = await startDaemon(t, `
securityGroups:
  - { id: sg-web, ingress: [{ protocol: tcp, ports: ${port}, cidr: 127.0.0.0/8 }] }
instances:
  - { name: web, address: ${web}, securityGroups: [sg-web], services: [{ protocol: tcp, port: ${port}, backend: "127.0.0.1:${echo.port}" }] }
`, { api: { host: '127.0.0.1', port: 0 } });
  const base = `http://127.0.0.1:${daemon.api!.port}`;
  const held: net.Socket[] = [];
  t.teardown(() => { for (const s of held) s.destroy(); });
  for (let i = 0; i < 5; i++) {
    const s = net.connect({ host: web, port });
    await new Promise((r) => s.once('connect', r));
    s.write('x'.repeat(i + 1));
    await new Promise((r) => s.once('data', r));
    held.push(s);
  }
  const all = await (await fetch(`${base}/v1/conntrack`)).json() as unknown[];
  t.ok(Array.isArray(all), 'no parameters: the JSON array, as before');
  t.equal(all.length, 5);

  const page = await (await fetch(`${base}/v1/conntrack?limit=2&offset=1&sort=srcPort&order=desc`)).json() as
    { total: number; offset: number; limit: number; sort: string; order: string; entries: { srcPort: number }[] };
  t.match(page, { total: 5, offset: 1, limit: 2, sort: 'srcPort', order: 'desc' });
  const ports = held.map((s) => s.localPort!).sort((a, b) => b - a);
  t.same(page.entries.map((e) => e.srcPort), ports.slice(1, 3), 'the 2nd and 3rd highest source ports');
  const one = await (await fetch(`${base}/v1/conntrack?q=${ports[0]}`)).json() as { total: number };
  t.equal(one.total, 1, 'q filters on the address:port text');
  const none = await (await fetch(`${base}/v1/conntrack?instance=nope`)).json() as { total: number; entries: unknown[] };
  t.same([none.total, none.entries], [0, []], 'instance filters by name');

  for (const bad of ['limit=0', 'limit=1001', 'offset=-1', 'sort=nope', 'order=up', 'limit=1.5']) {
    const r = await fetch(`${base}/v1/conntrack?${bad}`);
    t.equal(r.status, 400, bad);
    t.match(await r.json(), { error: 'InvalidParameterValue', message: new RegExp(`^${bad.split('=')[0]}=`) });
  }

  const st = await (await fetch(`${base}/v1/status`)).json() as { listeners: Record<string, unknown>[] };
  t.match(st.listeners[0], { accepted: 5, rejected: 0, refused: 0, flows: 5, bytesIn: Number, bytesOut: Number }, 'per-listener counters in /v1/status');
});

t.test('a denied SYN is a reject event while someone watches /v1/events, with no flow log', async (t) => {
  const web = freshAddr();
  const port = await freePort(web);
  const echo = await echoServer(t);
  const allowed = freshAddr(), denied = freshAddr();
  const { daemon } = await startDaemon(t, `
securityGroups:
  - { id: sg-web, ingress: [{ protocol: tcp, ports: ${port}, cidr: ${allowed}/32 }] }
instances:
  - { name: web, address: ${web}, securityGroups: [sg-web], services: [{ protocol: tcp, port: ${port}, backend: "127.0.0.1:${echo.port}" }] }
`, { api: { host: '127.0.0.1', port: 0 } });
  if (daemon.refuser.mode !== 'raw') { t.skip(`no libpcap capture here (${daemon.refuser.reason}): the kernel's drops are invisible to userland`, () => {}); return; }
  const ac = new AbortController();
  t.teardown(() => ac.abort());
  const res = await fetch(`http://127.0.0.1:${daemon.api!.port}/v1/events`, { signal: ac.signal });
  const reader = res.body!.getReader();
  let text = '';
  const until = async (re: RegExp, ms: number) => {
    const end = Date.now() + ms;
    while (!re.test(text) && Date.now() < end) {
      const r = await Promise.race([reader.read(), new Promise<null>((r) => setTimeout(() => r(null), end - Date.now()))]);
      if (r === null || r.done) break;
      text += new TextDecoder().decode(r.value);
    }
    return re.test(text);
  };
  await until(/sgemu flow events/, 2000);
  t.equal(await probe(denied, web, port, 400), 'timeout', 'denied: timeout');
  t.ok(await until(new RegExp(`"type":"reject".*"src":"${denied.replace(/\./g, '\\.')}".*"reason":"kernel-filter"`), 2000), 'its reject event arrived');
  t.equal(await probe(allowed, web, port, 1000), 'allowed', 'the twin: allowed');
  t.ok(await until(new RegExp(`"type":"open".*"src":"${allowed.replace(/\./g, '\\.')}"`), 2000), 'its open event arrived');
  ac.abort();
  await reader.cancel().catch(() => {});
  // The capture follows the watchers: with nobody watching, it closes again.
  for (let i = 0; i < 40 && daemon.refuser.captureAll; i++) await new Promise((r) => setTimeout(r, 50));
  t.equal(daemon.refuser.captureAll, false, 'no watcher, no capture of every listener');
});
