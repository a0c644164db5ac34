// Wires the Toxiproxy-compatible API into a daemon: the daemon lays the proxy table over its base
// model at every swap (Daemon.overlay), the table asks it to swap again after each change
// (Daemon.reapplyOverlay). The one place that knows both sides.

import type { Daemon } from '../daemon.js';
import { ToxiproxyServer } from './server.js';

/** Serves the Toxiproxy API at host:port for `d` (started, so that its base model exists). */
export async function startToxiproxy(d: Daemon, addr: { host: string; port: number }): Promise<ToxiproxyServer> {
  const server = new ToxiproxyServer({
    baseModel: () => d.baseModel,
    reapply: () => d.reapplyOverlay(),
    anyAddress: d.opts.namespace === true,
    log: d.opts.log,
  });
  await server.listen(addr.host, addr.port);
  d.overlay = (base) => server.table.overlay(base);
  const h = addr.host.includes(':') ? `[${addr.host}]` : addr.host;
  d.opts.log(`toxiproxy: http://${h}:${server.port}/ (Toxiproxy 2.x HTTP API: /version, /proxies, /populate, /reset; proxies and toxics are kept in memory only)`);
  return server;
}
