// The Toxiproxy-compatible HTTP API (`sgemu run --toxiproxy [ADDR]`, default 127.0.0.1:8474;
// SPEC §9): Toxiproxy 2.x's routes, JSON shapes, status codes, error messages and content types
// (Shopify/toxiproxy api.go), so that its clients work unchanged.
//   GET /version                                 200 {"version": "…"}\n, application/json;charset=utf-8
//   GET /proxies                                 200 {name: proxy, …}
//   POST /proxies                                201 proxy; 409 proxy already exists; 400 missing required field
//   POST /populate                               201 {"proxies": [...]}: create or replace
//   GET | POST,PATCH | DELETE /proxies/{p}       200 | 200 | 204; 404 proxy not found
//   GET | POST /proxies/{p}/toxics               200 [...] | 200 toxic
//   GET | POST,PATCH | DELETE /proxies/{p}/toxics/{t}   200 | 200 | 204; 404 toxic not found
//   POST /reset                                  204: every toxic removed, every proxy enabled
// Errors: {"error": msg, "status": code} with that status, sent as Go's http.Error sends them
// (text/plain; charset=utf-8, nosniff, a newline after the JSON). Unknown path: 404 "404 page not
// found"; known path, other method: 405, empty (gorilla/mux).
// Browsers: Toxiproxy refuses any User-Agent starting "Mozilla/" (403 "User agent not allowed");
// so do we, and, as our own API server does (api/server.ts sameOrigin), a change request with a
// foreign Origin header.
// Extension (README "Toxiproxy-compatible API"): a proxy body may carry
// `"sgemu": {"instance": NAME, "disabled": "refuse" | "timeout"}`; answers show it back only then.
// Must not: block the data plane; state lives in ProxyTable (proxies.ts), the model in the daemon.

import http from 'node:http';
import { listenHttp, sameOrigin } from '../api/server.js';
import type { Fault } from '../../model/types.js';
import { ERR, ProxyTable, ToxiproxyError, jsonKind, orderToxics, type ProxyExtension, type ProxyInput, type ProxyRecord, type ToxiproxyHost } from './proxies.js';

/** The Toxiproxy release whose API this serves (GET /version). */
export const TOXIPROXY_VERSION = '2.12.0';
const MAX_BODY = 1 << 20;

export class ToxiproxyServer {
  readonly table: ProxyTable;
  private readonly server: http.Server;
  port = 0;

  constructor(host: ToxiproxyHost) {
    this.table = new ProxyTable(host);
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((e: unknown) => {
        if (res.headersSent) { res.destroy(); return; }
        sendError(res, e instanceof ToxiproxyError ? e : new ToxiproxyError(500, e instanceof Error ? e.message : String(e)));
      });
    });
    this.server.keepAliveTimeout = 1000;
  }

  listen(host: string, port: number): Promise<void> {
    return listenHttp(this.server, host, port).then((p) => { this.port = p; });
  }

  close(): Promise<void> {
    return new Promise((r) => {
      if (!this.server.listening) { r(); return; }
      this.server.close(() => r());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    if ((req.headers['user-agent'] ?? '').startsWith('Mozilla/')) return sendText(res, 403, 'User agent not allowed');
    if (method !== 'GET' && method !== 'HEAD' && !sameOrigin(req)) {
      res.shouldKeepAlive = false;
      return sendText(res, 403, `Origin ${String(req.headers.origin).slice(0, 200)} not allowed: the Toxiproxy API takes no requests from web pages`);
    }
    const route = matchRoute(req.url ?? '/');
    if (!route) return sendText(res, 404, '404 page not found');
    const allowed = ROUTE_METHODS[route.kind];
    if (!allowed.includes(method)) { res.writeHead(405); res.end(); return; }
    const raw = method === 'GET' || method === 'DELETE' ? '' : await readBody(req);
    const t = this.table;
    const [a, b] = route.args;
    switch (route.kind) {
      case 'version':
      {
        const body = `{"version": "${TOXIPROXY_VERSION}"}\n`;
        res.writeHead(200, { 'content-type': 'application/json;charset=utf-8', 'content-length': Buffer.byteLength(body) });
        res.end(body);
        return;
      }
      case 'reset':
        await t.reset();
        return sendEmpty(res);
      case 'proxies':
        if (method === 'GET') return sendJson(res, 200, Object.fromEntries(t.list().map((p) => [p.name, proxyJson(p)])));
        return sendJson(res, 201, proxyJson(await t.create(proxyInput(parseBody(raw, 'Proxy')))));
      case 'populate': return this.populate(raw, res);
      case 'proxy':
        if (method === 'GET') return sendJson(res, 200, proxyJson(t.get(a!)));
        if (method === 'DELETE') { await t.remove(a!); return sendEmpty(res); }
        return sendJson(res, 200, proxyJson(await t.update(a!, proxyPatch(parseBody(raw, 'Proxy'), t.get(a!)))));
      case 'toxics':
        if (method === 'GET') return sendJson(res, 200, t.toxics(a!).map(toxicJson));
        t.get(a!);                              // 404 proxy not found before the body is read
        return sendJson(res, 200, toxicJson(await t.addToxic(a!, parseBody(raw, 'toxics.ToxicWrapper'))));
      case 'toxic':
        if (method === 'GET') { t.get(a!); return sendJson(res, 200, toxicJson(t.toxic(a!, b!))); }
        if (method === 'DELETE') { await t.removeToxic(a!, b!); return sendEmpty(res); }
        t.get(a!);
        return sendJson(res, 200, toxicJson(await t.updateToxic(a!, b!, parseBody(raw, 'toxics.ToxicWrapper'))));
    }
  }

  /** POST /populate: 201 {"proxies": [...]}, or the error's status with {"error", "status", "proxies": null}
   * (api.go Populate: the error and the proxies in one object, sent as JSON). */
  private async populate(raw: string, res: http.ServerResponse): Promise<void> {
    try {
      const body = parseBody(raw, '[]toxiproxy.Proxy');
      if (!Array.isArray(body)) throw ERR.badBody(`json: cannot unmarshal ${jsonKind(body)} into Go value of type []struct { toxiproxy.Proxy; Enabled *bool "json:\\"enabled\\"" }`);
      const inputs: ProxyInput[] = body.map((x, i) => proxyInput(x, ` at proxy ${i + 1}`));
      const proxies = await this.table.populate(inputs);
      // Go marshals an empty result slice as null.
      return sendJson(res, 201, { proxies: proxies.length === 0 ? null : proxies.map(proxyJson) });
    } catch (e) {
      const err = e instanceof ToxiproxyError ? e : new ToxiproxyError(500, e instanceof Error ? e.message : String(e));
      return sendJson(res, err.status, { error: err.message, status: err.status, proxies: null });
    }
  }
}

type RouteKind = 'version' | 'reset' | 'proxies' | 'populate' | 'proxy' | 'toxics' | 'toxic';
const ROUTE_METHODS: Record<RouteKind, string[]> = {
  version: ['GET'], reset: ['POST'], proxies: ['GET', 'POST'], populate: ['POST'],
  proxy: ['GET', 'POST', 'PATCH', 'DELETE'], toxics: ['GET', 'POST'], toxic: ['GET', 'POST', 'PATCH', 'DELETE'],
};

/** The route a request target names (path only, segments percent-decoded), or null: 404. */
export function matchRoute(target: string): { kind: RouteKind; args: string[] } | null {
  if (!target.startsWith('/')) return null;
  const end = target.search(/[?#]/);
  const path = end >= 0 ? target.slice(0, end) : target;
  let seg: string[];
  try { seg = path.slice(1).split('/').map(decodeURIComponent); } catch { return null; }
  if (seg.some((s) => s === '')) return null;
  const [s0, s1, s2, s3] = seg;
  switch (seg.length) {
    case 1:
      if (s0 === 'version') return { kind: 'version', args: [] };
      if (s0 === 'reset') return { kind: 'reset', args: [] };
      if (s0 === 'proxies') return { kind: 'proxies', args: [] };
      if (s0 === 'populate') return { kind: 'populate', args: [] };
      return null;
    case 2: return s0 === 'proxies' ? { kind: 'proxy', args: [s1!] } : null;
    case 3: return s0 === 'proxies' && s2 === 'toxics' ? { kind: 'toxics', args: [s1!] } : null;
    case 4: return s0 === 'proxies' && s2 === 'toxics' ? { kind: 'toxic', args: [s1!, s3!] } : null;
    default: return null;
  }
}

// ---- bodies

function parseBody(raw: string, goType: string): unknown {
  if (raw.trim() === '') throw ERR.badBody('EOF');
  try { return JSON.parse(raw); } catch (e) {
    throw ERR.badBody(`invalid JSON for ${goType}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function field<T extends 'string' | 'boolean'>(o: Record<string, unknown>, k: string, type: T): (T extends 'string' ? string : boolean) | undefined {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== type) throw ERR.badBody(`json: cannot unmarshal ${jsonKind(v)} into Go struct field Proxy.${k} of type ${type === 'boolean' ? 'bool' : 'string'}`);
  return v as T extends 'string' ? string : boolean;
}

function proxyObject(body: unknown): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw ERR.badBody(`json: cannot unmarshal ${jsonKind(body)} into Go value of type toxiproxy.Proxy`);
  return body as Record<string, unknown>;
}

/** A create/populate body: name and upstream required (ProxyCreate, PopulateJson), enabled defaults to true. */
function proxyInput(body: unknown, where = ''): ProxyInput {
  const o = proxyObject(body);
  const name = field(o, 'name', 'string') ?? '';
  const upstream = field(o, 'upstream', 'string') ?? '';
  if (name === '') throw ERR.missing(`name${where}`);
  if (upstream === '') throw ERR.missing(`upstream${where}`);
  const ext = extension(o.sgemu);
  return {
    name, upstream, listen: field(o, 'listen', 'string') ?? '', enabled: field(o, 'enabled', 'boolean') ?? true,
    ext: ext === undefined ? undefined : { instance: ext.instance ?? null, disabled: ext.disabled ?? 'refuse' },
  };
}

/** An update body: every field defaults to the proxy's current one (ProxyUpdate). */
function proxyPatch(body: unknown, cur: ProxyRecord): { listen?: string; upstream?: string; enabled?: boolean; ext?: Partial<ProxyExtension> } {
  const o = proxyObject(body);
  const out: { listen?: string; upstream?: string; enabled?: boolean; ext?: Partial<ProxyExtension> } = {};
  const listen = field(o, 'listen', 'string'), upstream = field(o, 'upstream', 'string'), enabled = field(o, 'enabled', 'boolean');
  if (listen !== undefined && listen !== cur.listen) out.listen = listen;
  if (upstream !== undefined) out.upstream = upstream;
  if (enabled !== undefined) out.enabled = enabled;
  const ext = extension(o.sgemu);
  if (ext !== undefined) out.ext = ext;
  return out;
}

/** The `sgemu` extension object, checked. */
function extension(v: unknown): Partial<ProxyExtension> | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw ERR.badBody('sgemu must be an object: {"instance": NAME, "disabled": "refuse" | "timeout"}');
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (k !== 'instance' && k !== 'disabled') throw ERR.badBody(`sgemu.${k} is not an extension field; valid: instance (a config instance to put the proxy on), disabled ("refuse" or "timeout")`);
  }
  const out: Partial<ProxyExtension> = {};
  if (o.instance !== undefined) {
    if (o.instance !== null && (typeof o.instance !== 'string' || o.instance === '')) throw ERR.badBody(`sgemu.instance ${JSON.stringify(o.instance)} is not valid; valid: the name of a config instance, or null`);
    out.instance = o.instance;
  }
  if (o.disabled !== undefined) {
    if (o.disabled !== 'refuse' && o.disabled !== 'timeout') throw ERR.badBody(`sgemu.disabled ${JSON.stringify(o.disabled)} is not valid; valid: "refuse" (new connects refused, as Toxiproxy) or "timeout" (new connects time out)`);
    out.disabled = o.disabled;
  }
  return out;
}

// ---- answers

/** A proxy as Toxiproxy marshals it: name, listen, upstream, enabled, toxics. */
export function proxyJson(p: ProxyRecord): Record<string, unknown> {
  const o: Record<string, unknown> = { name: p.name, listen: p.listen, upstream: p.upstream, enabled: p.enabled, toxics: orderToxics(p.toxics).map(toxicJson) };
  if (p.extGiven) o.sgemu = { instance: p.ext.instance, disabled: p.ext.disabled };
  return o;
}

/** A toxic as Toxiproxy marshals its ToxicWrapper: attributes, name, type, stream, toxicity. */
export function toxicJson(f: Fault): Record<string, unknown> {
  return { attributes: { ...f.attributes }, name: f.name, type: f.type, stream: f.stream, toxicity: f.toxicity };
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendEmpty(res: http.ServerResponse): void {
  res.writeHead(204);
  res.end();
}

/** As Go's http.Error: text/plain, nosniff, the text and a newline. */
function sendText(res: http.ServerResponse, status: number, text: string): void {
  const body = text + '\n';
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'x-content-type-options': 'nosniff', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function sendError(res: http.ServerResponse, e: ToxiproxyError): void {
  sendText(res, e.status, JSON.stringify({ error: e.message, status: e.status }));
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) { req.pause(); req.removeAllListeners('data'); reject(new ToxiproxyError(413, `request body over ${MAX_BODY} bytes`)); return; }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
