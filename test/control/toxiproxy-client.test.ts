// The real toxiproxy-node-client (npm, a dev dependency) against sgemu's Toxiproxy-compatible API,
// doing what its users do (issue 18): create a proxy, add a latency toxic and measure it on the
// wire, update it, remove it, disable the proxy, reset, list, populate, delete; real sockets on
// loopback, a real in-process daemon.
//
// The latency is applied by the native relay's faults (tcp_relay.c + fault_chain.c): the toxic
// becomes the proxy's service's `faults` and is measured on the wire against the base round trip.

import t from 'tap';
import net from 'node:net';
import { Toxiproxy, type ICreateToxicBody, type Latency } from 'toxiproxy-node-client';
import { echoServer, freshAddr, noWireFaults, probe, startDaemon } from '../e2e/helpers.js';


/** Median round trip (ms) of `n` one-line exchanges on one fresh connection from `src`. */
async function medianRttMs(src: string, host: string, port: number, n = 5): Promise<number> {
  const s = net.connect({ host, port, localAddress: src, noDelay: true });
  await new Promise<void>((resolve, reject) => { s.once('connect', () => resolve()); s.once('error', reject); });
  const times: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      s.write(`ping ${i}\n`);
      await new Promise<void>((resolve, reject) => { s.once('data', () => resolve()); s.once('error', reject); });
      times.push(performance.now() - t0);
    }
  } finally {
    s.destroy();
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

t.test('toxiproxy-node-client: create, latency toxic measured, update, remove, disable, reset, list, populate, delete', async (t) => {
  const echo = await echoServer(t);
  const { daemon } = await startDaemon(t, `instances:\n  - { name: base, address: ${freshAddr()} }\n`, { toxiproxy: { host: '127.0.0.1', port: 0 } });
  const toxiproxy = new Toxiproxy(`http://127.0.0.1:${daemon.toxiproxy!.port}`);
  const src = freshAddr(), host = freshAddr();

  t.match(await toxiproxy.getVersion(), /"version"/, 'getVersion');

  const proxy = await toxiproxy.createProxy({ name: 'redis', listen: `${host}:0`, upstream: `127.0.0.1:${echo.port}` });
  t.equal(proxy.name, 'redis');
  t.equal(proxy.enabled, true);
  t.match(proxy.listen, new RegExp(`^${host.replace(/\./g, '\\.')}:[1-9]\\d*$`), 'the real listen address');
  const port = Number(proxy.listen.split(':')[1]);
  t.equal(await probe(src, host, port), 'allowed', 'bytes pass through the proxy');

  await t.rejects(toxiproxy.createProxy({ name: 'redis', listen: `${host}:0`, upstream: `127.0.0.1:${echo.port}` }),
    { name: 'Error', message: /status code 409/ }, 'a second proxy of that name: 409, as the client reports it');

  const base = await medianRttMs(src, host, port);
  const body: ICreateToxicBody<Latency> = { name: 'lat', type: 'latency', stream: 'downstream', toxicity: 1, attributes: { latency: 100, jitter: 0 } };
  const toxic = await proxy.addToxic(body);
  t.same(toxic.toJson(), { attributes: { latency: 100, jitter: 0 }, name: 'lat', stream: 'downstream', toxicity: 1, type: 'latency' }, 'addToxic returns the toxic');
  t.same((await proxy.getToxic('lat')).toJson(), toxic.toJson(), 'getToxic');
  t.same(daemon.model.instances.flatMap((i) => i.services).find((s) => s.listenPort === port)?.faults?.map((f) => [f.name, f.type, f.attributes.latency]),
    [['lat', 'latency', 100]], 'the toxic is the fault of the proxy\'s service in the live model');

  // Downstream latency delays each reply by 100 ms: the round trip grows by that, within ±10%
  // (issue 18's bound), measured against the same path without the toxic.
  const slow = await medianRttMs(src, host, port);
  const added = slow - base;
  t.ok(added >= 90 && added <= 110, `latency on the wire: +${added.toFixed(1)} ms of 100 asked (base ${base.toFixed(2)} ms)`, { skip: noWireFaults() });

  const updated = await toxic.update({ ...body, attributes: { latency: 20, jitter: 5 } });
  t.same(updated.attributes, { latency: 20, jitter: 5 }, 'Toxic.update');

  await updated.remove();
  await t.rejects(proxy.getToxic('lat'), /status code 404/, 'removed: getToxic answers 404');
  t.same((await toxiproxy.getAll()).redis!.toJson(), { enabled: true, listen: proxy.listen, name: 'redis', upstream: `127.0.0.1:${echo.port}` });
  t.same(daemon.model.instances.flatMap((i) => i.services).find((s) => s.listenPort === port)?.faults, [], 'and gone from the service');
  const after = await medianRttMs(src, host, port);
  t.ok(after < base + 50, `without the toxic the round trip is back near the base (${after.toFixed(2)} ms, base ${base.toFixed(2)} ms)`);

  const down = await proxy.update({ enabled: false, listen: proxy.listen, upstream: proxy.upstream });
  t.equal(down.enabled, false, 'Proxy.update enabled: false ("down", as the client documents it)');
  t.equal(await probe(src, host, port), 'refused', 'down: connects are refused');

  await (await toxiproxy.get('redis')).addToxic({ name: 'cut', type: 'timeout', stream: 'upstream', toxicity: 1, attributes: { timeout: 0 } });
  await toxiproxy.reset();
  const reset = await toxiproxy.get('redis');
  t.equal(reset.enabled, true, 'reset enables the proxy');
  t.equal(await probe(src, host, port), 'allowed', 'and it passes again');
  await t.rejects(reset.getToxic('cut'), /status code 404/, 'reset removed the toxic');

  const populated = await toxiproxy.populate([
    { name: 'redis', listen: proxy.listen, upstream: `127.0.0.1:${echo.port}` },
    { name: 'pg', listen: `${freshAddr()}:0`, upstream: `127.0.0.1:${echo.port}` },
  ]);
  t.same(Object.keys(populated).sort(), ['pg', 'redis'], 'populate');
  t.same(Object.keys(await toxiproxy.getAll()).sort(), ['pg', 'redis'], 'getAll lists both');
  const pg = populated.pg!;
  const [pgHost, pgPort] = pg.listen.split(':');
  t.equal(await probe(src, pgHost!, Number(pgPort)), 'allowed');

  for (const p of Object.values(await toxiproxy.getAll())) await p.remove();
  t.same(await toxiproxy.getAll(), {}, 'every proxy removed');
  t.equal(await probe(src, host, port), 'refused', 'a removed proxy no longer listens');
  await t.rejects(toxiproxy.get('redis'), { message: /status code 404/ }, 'get of a removed proxy: 404');
});
