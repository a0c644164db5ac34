// The control-plane HTTP server (SPEC §4), loopback by default.
//   GET  /v1/conntrack        conntrack entries (SPEC §5), a JSON array
//   GET  /v1/instances        instances, their groups, addresses, services and listeners
//   GET  /v1/security-groups  groups and rules (ids as in explain)
//   GET  /v1/status           mode, listeners, counters, RSS, CPU (for doctor and loadtest)
//   GET  /v1/events           server-sent events of flow decisions (open, close, reject, refuse, cut)
//   POST /v1/explain          body {from, to, protocol, port?} → the `sgemu explain --json` object
//   GET  /metrics             Prometheus text
//   POST /                    EC2 Query API (src/control/api/ec2/service.ts); SigV4-verified
//                             when credentials are set (required beyond loopback: sigv4.ts)
// Must not: block the data plane (every handler is O(table) at worst and runs on demand only).

import http from 'node:http';
import { AwsError, SgemuError, UsageError } from '../../model/errors.js';
import { verifySigV4, type Credentials } from './sigv4.js';
import { flowEvents } from '../../observe/events.js';
import { DIRECTION_NAMES, protocolName, type Rule } from '../../model/types.js';
import type { Daemon } from '../daemon.js';

const MAX_BODY = 1 << 20;

export class ApiServer {
  private readonly server: http.Server;
  requests = 0;
  port = 0;

  constructor(private readonly daemon: Daemon, private readonly credentials: Credentials | null = null) {
    this.server = http.createServer((req, res) => {
      this.requests++;
      this.handle(req, res).catch((e) => sendJson(res, 500, { error: 'InternalError', message: e instanceof Error ? e.message : String(e) }));
    });
    this.server.keepAliveTimeout = 1000;
  }

  listen(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        const a = this.server.address();
        this.port = typeof a === 'object' && a ? a.port : port;
        resolve();
      });
    });
  }

  close(): Promise<void> {
    return new Promise((r) => { this.server.close(() => r()); this.server.closeAllConnections(); });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const d = this.daemon;
    const route = `${req.method} ${url.pathname.replace(/\/+$/, '') || '/'}`;
    switch (route) {
      case 'GET /v1/conntrack': return sendJson(res, 200, d.conntrack());
      case 'GET /v1/status': return sendJson(res, 200, d.status());
      case 'GET /v1/events': {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
        res.write(': sgemu flow events\n\n');
        const on = (msg: unknown) => { res.write(`event: flow\ndata: ${JSON.stringify(msg)}\n\n`); };
        flowEvents.subscribe(on);
        req.on('close', () => flowEvents.unsubscribe(on));
        return;
      }
      case 'GET /v1/instances': return sendJson(res, 200, instancesJson(d));
      case 'GET /v1/security-groups': return sendJson(res, 200, groupsJson(d));
      case 'GET /metrics': {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
        res.end(d.metrics());
        return;
      }
      case 'POST /v1/explain': {
        const body = await readBody(req);
        let q: unknown;
        try { q = JSON.parse(body); } catch { return sendJson(res, 400, { error: 'InvalidJson', message: 'body must be JSON: {"from","to","protocol","port"}' }); }
        if (typeof q !== 'object' || q === null) return sendJson(res, 400, { error: 'InvalidJson', message: 'body must be a JSON object' });
        const o = q as Record<string, unknown>;
        const str = (k: string) => (typeof o[k] === 'string' ? o[k] as string : typeof o[k] === 'number' ? String(o[k]) : undefined);
        try {
          const port = o.port === undefined ? undefined : Number(o.port);
          // Loaded on first use: explain is a slow path the data plane never needs.
          const { explainFlow } = await import('../../policy/explain.js');
          const r = explainFlow(d.model, { from: str('from') ?? '', to: str('to') ?? '', protocol: str('protocol') ?? '', port });
          return sendJson(res, 200, r);
        } catch (e) {
          if (e instanceof UsageError || e instanceof SgemuError) return sendJson(res, 400, { error: e.code, message: e.message });
          throw e;
        }
      }
      case 'POST /': {
        let raw: Buffer;
        try { raw = await readRaw(req); }
        catch (e) {
          res.writeHead(413, { 'content-type': 'text/xml;charset=UTF-8' });
          res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>RequestEntityTooLarge</Code><Message>${e instanceof Error ? e.message : 'too large'}</Message></Error></Errors><RequestID>${crypto.randomUUID()}</RequestID></Response>`);
          return;
        }
        if (this.credentials) {
          try { verifySigV4({ method: req.method ?? 'POST', url: req.url ?? '/', headers: req.headers, body: raw }, this.credentials); }
          catch (e) {
            if (!(e instanceof AwsError)) throw e;
            res.writeHead(e.status, { 'content-type': 'text/xml;charset=UTF-8' });
            res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${e.code}</Code><Message>${escapeXml(e.message)}</Message></Error></Errors><RequestID>${crypto.randomUUID()}</RequestID></Response>`);
            return;
          }
        }
        const r = await d.ec2!.handle(raw.toString('utf8'));
        res.writeHead(r.status, { 'content-type': r.contentType, 'content-length': Buffer.byteLength(r.body) });
        res.end(r.body);
        return;
      }
      default:
        return sendJson(res, 404, { error: 'NotFound', message: `no route ${route}; see GET /v1/status, /v1/conntrack, /v1/instances, /v1/security-groups, /metrics, POST /v1/explain` });
    }
  }
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function readBody(req: http.IncomingMessage): Promise<string> {
  return (await readRaw(req)).toString('utf8');
}

function readRaw(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) { reject(new UsageError(`request body over ${MAX_BODY} bytes`)); req.destroy(); return; }
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

function groupsJson(d: Daemon): unknown {
  return d.model.groups.map((g) => ({
    groupId: g.id, groupName: g.name, vpcId: g.vpcId, description: g.description, isDefault: g.isDefault,
    ingress: g.ingress.map(ruleJson), egress: g.egress.map(ruleJson),
  }));
}

function instancesJson(d: Daemon): unknown {
  const st = d.status() as { listeners: { instance: string }[] };
  return d.model.instances.map((i) => ({
    name: i.name, instanceId: i.id, vpcId: i.vpcId, address: i.address, address6: i.address6,
    securityGroups: i.groupIds, connectionTracking: i.connectionTracking,
    services: i.services.map((s) => ({ protocol: protocolName(s.protocol), port: s.port, listenPort: s.listenPort, backend: `${s.backend.host}:${s.backend.port}` })),
    outbound: i.outbound.map((o) => ({ protocol: protocolName(o.protocol), port: o.port, to: o.toInstance ?? `${o.toHost}:${o.toPort}`, as: `${o.asAddress}:${o.asPort}` })),
    listeners: st.listeners.filter((l) => l.instance === i.name),
  }));
}
