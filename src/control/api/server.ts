// The control-plane HTTP server (SPEC §4), loopback by default.
//   GET  /v1/conntrack        conntrack entries (SPEC §5), a JSON array; with any of limit, offset,
//                             sort, order, instance, q: one page {total, offset, limit, sort,
//                             order, entries} (the dashboard's view of a 100k-entry table)
//   GET  /v1/instances        instances, their groups, addresses, services and listeners
//   GET  /v1/security-groups  groups and rules (ids as in explain)
//   GET  /v1/status           mode, listeners, counters, RSS, CPU (for doctor and loadtest)
//   GET  /v1/events           server-sent events of flow decisions (open, close, reject, refuse, cut)
//   POST /v1/explain          body {from, to, protocol, port?} → the `sgemu explain --json` object
//   GET  /ui                  the web dashboard (`sgemu run --ui`; ui.ts), and its /ui/app.js, /ui/app.css
//   GET  /metrics             Prometheus text (prom-client, a registry per daemon: observe/metrics.ts)
//   POST /                    EC2 Query API (src/control/api/ec2/service.ts)
// Authentication (sigv4.ts): with credentials, POST / must be SigV4-signed. Beyond loopback
// (credentials are then mandatory) every other route must be signed too, and is refused with a
// JSON {error, message} (401 AuthFailure, 403 SignatureDoesNotMatch) otherwise; on loopback the
// JSON routes and /metrics stay open, as on any loopback-only tool.
// Must not: block the data plane (every handler is O(table) at worst and runs on demand only).

import http from 'node:http';
import { AwsError, SgemuError, UsageError } from '../../model/errors.js';
import { isLoopbackHost, verifySigV4, type Credentials } from './sigv4.js';
import { SORT_FIELDS, type PageQuery, type SortField } from '../../dataplane/conntrack/view.js';
import { UI_ROUTES, serveUi } from './ui.js';
import { FAULT_ROUTES, faultsRoute, type FaultsHost } from './faults.js';
import { DaemonMetrics, type MetricsSource } from '../../observe/metrics.js';
import { DIRECTION_NAMES, protocolName, type Model, type Rule } from '../../model/types.js';
import type { ConntrackJson } from '../../dataplane/conntrack/view.js';
import type { Ec2Response } from './ec2/service.js';

const MAX_BODY = 1 << 20;

/** JSON routes by "METHOD /path": also the `action` label of sgemu_api_requests_total. */
const ROUTES = new Set(['GET /v1/conntrack', 'GET /v1/status', 'GET /v1/events', 'GET /v1/instances', 'GET /v1/security-groups',
  'GET /metrics', 'POST /v1/explain', ...UI_ROUTES, ...FAULT_ROUTES]);

/** Bytes an event stream may have queued for a slow reader before events are dropped (and
 * counted, then announced as `event: lost`): a stalled browser tab must not grow the daemon. */
const MAX_EVENT_BACKLOG = 1 << 20;

export interface ApiServerOptions {
  /**
   * Require SigV4 on every route, not only on POST /. Default: when credentials are set and the
   * server listens beyond loopback (decided in listen()).
   */
  signAll?: boolean;
  /** Serve the web dashboard at GET /ui (ui.ts). Off: /ui answers 404 naming --ui. */
  ui?: boolean;
}

/**
 * What the server serves from (the daemon, seen only through what the routes need: no import of
 * control/daemon.ts, so neither imports the other).
 */
export interface ApiHost extends FaultsHost {
  /** The live model. */
  readonly model: Model;
  /** The EC2 Query API (POST /); null until the daemon has started it. */
  readonly ec2: { handle(body: string): Promise<Ec2Response> } | null;
  /** Told the duration of every policy swap (the server's reload histogram). */
  onPolicySwap: ((seconds: number) => void) | null;
  conntrack(): ConntrackJson[];
  conntrackPage(q: PageQuery): { total: number; entries: ConntrackJson[] };
  status(): Record<string, unknown>;
  watchFlows(on: (msg: unknown) => void): () => void;
  /** Books what the data plane has not reported yet, so the next read is exact. */
  settle(): void;
  /** The numbers /metrics reads at scrape time; `apiRequests` counts this server's requests. */
  metricsSource(apiRequests: () => number): MetricsSource;
}

/** What one request is counted as in sgemu_api_requests_total (a fixed set of values). */
interface RequestInfo { action: string }

export class ApiServer {
  private readonly server: http.Server;
  /** Further listening sockets served alike (inside `sgemu exec`'s namespace). */
  private readonly extra: http.Server[] = [];
  readonly metrics: DaemonMetrics;
  private signAll: boolean | undefined;
  private readonly ui: boolean;
  requests = 0;
  port = 0;

  constructor(private readonly daemon: ApiHost, private readonly credentials: Credentials | null = null, opts: ApiServerOptions = {}) {
    this.signAll = opts.signAll;
    this.ui = opts.ui ?? false;
    if (this.signAll && !credentials) throw new UsageError('ApiServer: signAll needs credentials (--api-credentials KEY:SECRET)');
    this.metrics = new DaemonMetrics(daemon.metricsSource(() => this.requests));
    daemon.onPolicySwap = (seconds) => this.metrics.observeReload(seconds);
    this.server = http.createServer((req, res) => {
      this.requests++;
      const info: RequestInfo = { action: 'other' };
      res.once('close', () => this.metrics.countRequest(info.action, res.headersSent ? res.statusCode : 0));
      this.handle(req, res, info).catch((e) => {
        if (res.headersSent) { res.destroy(); return; }
        sendJson(res, 500, { error: 'InternalError', message: e instanceof Error ? e.message : String(e) });
      });
    });
    this.server.keepAliveTimeout = 1000;
  }

  /** Binds; beyond loopback only with credentials (the CLI checks first: exit 2). */
  listen(host: string, port: number): Promise<void> {
    const loopback = isLoopbackHost(host);
    if (!loopback && !this.credentials) {
      return Promise.reject(new UsageError(`--api ${host}:${port} is beyond loopback: give --api-credentials KEY:SECRET (or SGEMU_API_CREDENTIALS) so that requests must be SigV4-signed, or listen on 127.0.0.1`));
    }
    this.signAll ??= !loopback;
    return listenHttp(this.server, host, port, (e) => apiListenError(host, port, e)).then((p) => { this.port = p; });
  }

  /** Also serves on a listening socket made elsewhere (`sgemu exec`: one inside the namespace,
   * from the helper; loopback there, so the same access rules as a loopback --api). */
  listenFd(fd: number): Promise<void> {
    const s = http.createServer(this.server.listeners('request')[0] as http.RequestListener);
    s.keepAliveTimeout = 1000;
    this.extra.push(s);
    this.signAll ??= false;
    return new Promise((resolve, reject) => {
      s.once('error', reject);
      s.listen({ fd }, () => { s.off('error', reject); resolve(); });
    });
  }

  close(): Promise<void> {
    const all = [this.server, ...this.extra];
    return Promise.all(all.map((s) => new Promise<void>((r) => {
      if (!s.listening) { r(); return; }
      s.close(() => r()); s.closeAllConnections();
    }))).then(() => {});
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse, info: RequestInfo): Promise<void> {
    const d = this.daemon;
    const route = `${req.method} ${routePath(req.url ?? '/')}`;
    const ec2 = route === 'POST /';
    if (ROUTES.has(route)) info.action = route;
    else if (ec2) info.action = 'ec2:unknown';

    // A browser page of another origin may POST to a loopback API (a "simple" form request needs
    // no preflight): without credentials that would change the rules from any web site the user
    // visits. Browsers always send Origin on such requests; the CLI, the SDKs and curl send none,
    // and the dashboard's own page sends this server's origin.
    if (req.method === 'POST' && !sameOrigin(req)) {
      res.shouldKeepAlive = false;
      return sendJson(res, 403, { error: 'CrossOriginRequest', message: `POST from origin ${String(req.headers.origin)} refused: only this API's own page may call it from a browser` });
    }

    // The body first (bounded): the signature covers it.
    let raw: Buffer;
    try { raw = await readRaw(req); }
    catch (e) {
      const msg = e instanceof Error ? e.message : 'too large';
      res.shouldKeepAlive = false;
      if (!ec2) return sendJson(res, 413, { error: 'RequestEntityTooLarge', message: msg });
      res.writeHead(413, { 'content-type': 'text/xml;charset=UTF-8' });
      res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>RequestEntityTooLarge</Code><Message>${escapeXml(msg)}</Message></Error></Errors><RequestID>${crypto.randomUUID()}</RequestID></Response>`);
      return;
    }
    if (this.credentials && (ec2 || this.signAll)) {
      try { verifySigV4({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, body: raw }, this.credentials); }
      catch (e) {
        if (!(e instanceof AwsError)) throw e;
        if (!ec2) return sendJson(res, e.status, { error: e.code, message: e.message });
        res.writeHead(e.status, { 'content-type': 'text/xml;charset=UTF-8' });
        res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${e.code}</Code><Message>${escapeXml(e.message)}</Message></Error></Errors><RequestID>${crypto.randomUUID()}</RequestID></Response>`);
        return;
      }
    }

    switch (route) {
      case 'GET /v1/conntrack': {
        const params = queryParams(req.url ?? '');
        if (![...PAGE_PARAMS].some((k) => params.has(k))) return sendJson(res, 200, d.conntrack());
        const q = pageQuery(params);
        if (typeof q === 'string') return sendJson(res, 400, { error: 'InvalidParameterValue', message: q });
        const page = d.conntrackPage(q);
        return sendJson(res, 200, { total: page.total, offset: q.offset, limit: q.limit, sort: q.sort, order: q.desc ? 'desc' : 'asc', entries: page.entries });
      }
      case 'GET /v1/status': return sendJson(res, 200, d.status());
      case 'GET /v1/events': {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
        res.write(': sgemu flow events\n\n');
        let lost = 0;
        const on = (msg: unknown) => {
          if (res.writableLength > MAX_EVENT_BACKLOG) { lost++; return; }
          if (lost > 0) { res.write(`event: lost\ndata: {"count":${lost}}\n\n`); lost = 0; }
          res.write(`event: flow\ndata: ${JSON.stringify(msg)}\n\n`);
        };
        const stop = d.watchFlows(on);
        req.on('close', stop);
        res.on('close', stop);
        return;
      }
      case 'GET /v1/instances': return sendJson(res, 200, instancesJson(d));
      case 'GET /v1/security-groups': return sendJson(res, 200, groupsJson(d.model));
      case 'GET /metrics': {
        d.settle();
        const text = await this.metrics.text();
        res.writeHead(200, { 'content-type': this.metrics.contentType, 'content-length': Buffer.byteLength(text) });
        res.end(text);
        return;
      }
      case 'POST /v1/explain': {
        let q: unknown;
        try { q = JSON.parse(raw.toString('utf8')); } catch { return sendJson(res, 400, { error: 'InvalidJson', message: 'body must be JSON: {"from","to","protocol","port"}' }); }
        if (typeof q !== 'object' || q === null) return sendJson(res, 400, { error: 'InvalidJson', message: 'body must be a JSON object' });
        const o = q as Record<string, unknown>;
        const str = (k: string) => (typeof o[k] === 'string' ? o[k] as string : typeof o[k] === 'number' ? String(o[k]) : undefined);
        try {
          const port = o.port === undefined ? undefined : Number(o.port);
          const sourcePort = o.sourcePort === undefined ? undefined : Number(o.sourcePort);
          // Loaded on first use: explain is a slow path the data plane never needs.
          const { explainFlow } = await import('../../policy/explain.js');
          const r = explainFlow(d.model, { from: str('from') ?? '', to: str('to') ?? '', protocol: str('protocol') ?? '', port,
            ...(sourcePort !== undefined ? { sourcePort } : {}) });
          return sendJson(res, 200, r);
        } catch (e) {
          if (e instanceof UsageError || e instanceof SgemuError) return sendJson(res, 400, { error: e.code, message: e.message });
          throw e;
        }
      }
      case 'POST /': {
        const r = await d.ec2!.handle(raw.toString('utf8'));
        info.action = r.action ? `ec2:${r.action}` : 'ec2:unknown';
        res.writeHead(r.status, { 'content-type': r.contentType, 'content-length': Buffer.byteLength(r.body) });
        res.end(r.body);
        return;
      }
      case 'GET /v1/faults': case 'POST /v1/faults': case 'DELETE /v1/faults': {
        const [status, body] = faultsRoute(d, route, queryParams(req.url ?? ''), raw);
        return sendJson(res, status, body);
      }
      case 'GET /ui': case 'GET /ui/app.js': case 'GET /ui/app.css':
        if (!this.ui) return sendJson(res, 404, { error: 'NotFound', message: 'the web dashboard is off: start the daemon with sgemu run --ui (sgemu demo always serves it)' });
        return serveUi(route.slice('GET /ui'.length), req, res);
      default:
        return sendJson(res, 404, { error: 'NotFound', message: `no route ${route.slice(0, 200)}; see GET /v1/status, /v1/conntrack, /v1/instances, /v1/security-groups, /v1/events, /metrics, /v1/faults, POST /v1/explain, POST / (EC2 Query API)` });
    }
  }
}

/**
 * The path a request names, for routing: the origin-form target up to `?` (taken as sent, never
 * resolved as a URL: `new URL('//', base)` reads `//` as an empty host and throws, and `//x` as
 * host x with path `/`, which sent `POST //x` to the EC2 API — issue 17), trailing slashes of a
 * longer path dropped (`/v1/status/`). The absolute form (`http://host/path`, RFC 9112 §3.2.2)
 * is accepted as servers must. Anything else (`*`, `//`, garbage) yields a path no route has: 404.
 */
export function routePath(target: string): string {
  let path: string;
  if (target.startsWith('/')) path = target;
  else if (/^https?:\/\//i.test(target)) {
    try { path = new URL(target).pathname; } catch { return '(unparsable)'; }
  } else return '(unparsable)';
  const end = path.search(/[?#]/);
  if (end >= 0) path = path.slice(0, end);
  if (path === '/') return path;
  const trimmed = path.replace(/\/+$/, '');
  return trimmed === '' ? path : trimmed;         // `//`: not `/`, no route
}

/** Binds an HTTP server → the port it got (port 0: one the kernel picked); a bind error is
 * rejected as `mapError` makes it. Shared by the API and the Toxiproxy-compatible API. */
export function listenHttp(server: http.Server, host: string, port: number,
  mapError: (e: NodeJS.ErrnoException) => Error = (e) => e): Promise<number> {
  return new Promise((resolve, reject) => {
    const failed = (e: NodeJS.ErrnoException): void => reject(mapError(e));
    server.once('error', failed);
    server.listen(port, host, () => {
      server.off('error', failed);
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : port);
    });
  });
}

/** No Origin header (not a browser), or the one this server is reached at (the dashboard). */
export function sameOrigin(req: http.IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  const host = req.headers.host;
  return host !== undefined && (origin === `http://${host}` || origin === `https://${host}`);
}

/** The query of a request target (origin or absolute form); empty when there is none. Never throws. */
export function queryParams(target: string): URLSearchParams {
  const q = target.indexOf('?');
  if (q < 0) return new URLSearchParams();
  const h = target.indexOf('#', q);
  return new URLSearchParams(target.slice(q + 1, h < 0 ? undefined : h));
}

/** Why --api cannot be served, in words a user can act on (exit 2 through the CLI). */
function apiListenError(host: string, port: number, e: NodeJS.ErrnoException): SgemuError {
  const where = `--api ${host.includes(':') ? `[${host}]` : host}:${port}`;
  const why = e.code === 'EADDRINUSE'
    ? 'the address is in use: another process listens there, or a recent connection still holds the port (a port inside the ephemeral range, /proc/sys/net/ipv4/ip_local_port_range, can be taken by any outgoing connection); pick another port'
    : e.code === 'EADDRNOTAVAIL' ? 'no interface of this machine has that address'
      : e.code === 'EACCES' ? 'ports below 1024 need root or CAP_NET_BIND_SERVICE'
        : e.message;
  return new SgemuError(e.code ?? 'ApiListenFailed', `cannot listen on ${where}: ${why}`);
}

const PAGE_PARAMS = new Set(['limit', 'offset', 'sort', 'order', 'instance', 'q']);

/** GET /v1/conntrack's paging parameters, checked; a string is the error message. */
function pageQuery(p: URLSearchParams): PageQuery | string {
  const int = (k: string, min: number, max: number, dflt: number): number | string => {
    const v = p.get(k);
    if (v === null || v === '') return dflt;
    const n = Number(v);
    return Number.isInteger(n) && n >= min && n <= max ? n : `${k}=${v.slice(0, 40)}: expected an integer from ${min} to ${max}`;
  };
  const limit = int('limit', 1, 1000, 100);
  if (typeof limit === 'string') return limit;
  const offset = int('offset', 0, 1e9, 0);
  if (typeof offset === 'string') return offset;
  const sortText = p.get('sort') ?? 'ageSeconds';
  const sort: SortField | undefined = SORT_FIELDS.find((f) => f === sortText);
  if (sort === undefined) return `sort=${sortText.slice(0, 40)}: expected one of ${SORT_FIELDS.join(', ')}`;
  const order = p.get('order') ?? 'asc';
  if (order !== 'asc' && order !== 'desc') return `order=${order.slice(0, 40)}: expected asc or desc`;
  const q = p.get('q');
  return { limit, offset, sort, desc: order === 'desc', instance: p.get('instance'), text: q === null || q === '' ? null : q.slice(0, 200) };
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

function readRaw(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      // Stop reading and answer 413 with `connection: close` (destroying the socket here would
      // leave the client without an answer).
      if (size > MAX_BODY) { req.pause(); req.removeAllListeners('data'); reject(new UsageError(`request body over ${MAX_BODY} bytes; send fewer parameters per call`)); return; }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export function ruleJson(r: Rule): Record<string, unknown> {
  const peer = r.peer.kind === 'cidr' ? { cidr: r.peer.cidr } : r.peer.kind === 'group' ? { groupId: r.peer.groupId } : { prefixListId: r.peer.prefixListId };
  return {
    ruleId: r.id, groupId: r.groupId, direction: DIRECTION_NAMES[r.direction], protocol: protocolName(r.protocol),
    fromPort: r.fromPort, toPort: r.toPort, ...peer, description: r.description,
  };
}

function groupsJson(model: Model): unknown {
  return model.groups.map((g) => ({
    groupId: g.id, groupName: g.name, vpcId: g.vpcId, description: g.description, isDefault: g.isDefault,
    ingress: g.ingress.map(ruleJson), egress: g.egress.map(ruleJson),
  }));
}

function instancesJson(d: ApiHost): unknown {
  const st = d.status() as { listeners: { instance: string }[] };
  return d.model.instances.map((i) => ({
    name: i.name, instanceId: i.id, vpcId: i.vpcId, address: i.address, address6: i.address6,
    securityGroups: i.groupIds, connectionTracking: i.connectionTracking,
    services: i.services.map((s) => ({ protocol: protocolName(s.protocol), port: s.port, listenPort: s.listenPort, backend: `${s.backend.host}:${s.backend.port}` })),
    outbound: i.outbound.map((o) => ({ protocol: protocolName(o.protocol), port: o.port, to: o.toInstance ?? `${o.toHost}:${o.toPort}`, as: `${o.asAddress}:${o.asPort}` })),
    listeners: st.listeners.filter((l) => l.instance === i.name),
  }));
}
