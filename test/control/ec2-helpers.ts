// Helpers for the EC2 API tests: a fake Ec2Host over a model loaded from YAML, a form-body
// builder, and tiny XML readers (tests assert element values, not whole documents).
import { loadConfigText } from '../../src/config/load.js';
import { Ec2Service, type Ec2Host } from '../../src/control/api/ec2/service.js';
import type { Model } from '../../src/model/types.js';

export const WORLD = `
prefixLists:
  - { id: pl-office, entries: [198.51.100.0/24, "2001:db8::/32"] }
securityGroups:
  - id: sg-web
    name: web
    description: public web tier
    tags: { team: blue }
    ingress:
      - { protocol: tcp, ports: 8080, cidr: 0.0.0.0/0, description: http }
  - id: sg-db
    name: db
    description: database
    ingress:
      - { protocol: tcp, ports: 5432, groups: [sg-web] }
  - id: sg-spare
    name: spare
    description: unused
instances:
  - name: web
    address: 127.0.0.10
    securityGroups: [sg-web]
    services: [{ protocol: tcp, port: 8080, backend: 127.0.0.1:3000 }]
  - name: db
    address: 127.0.0.11
    securityGroups: [sg-db]
`;

export class FakeHost implements Ec2Host {
  model: Model;
  applied = 0;
  failNext = false;
  constructor(yaml = WORLD) {
    this.model = loadConfigText(yaml, 'test.yaml');
  }
  getModel(): Model { return this.model; }
  async applyModel(model: Model): Promise<void> {
    if (this.failNext) { this.failNext = false; throw new Error('apply failed (test)'); }
    this.model = model;
    this.applied++;
  }
}

export function form(params: Record<string, string | number | boolean>): string {
  return new URLSearchParams(Object.entries({ Version: '2016-11-15', ...params }).map(([k, v]): [string, string] => [k, String(v)])).toString();
}

export function setup(statePath: string | null = null, yaml = WORLD): { host: FakeHost; svc: Ec2Service; call: (p: Record<string, string | number | boolean>) => Promise<{ status: number; body: string }> } {
  const host = new FakeHost(yaml);
  const svc = new Ec2Service(host, { statePath });
  return { host, svc, call: (p) => svc.handle(form(p)) };
}

/** Text of every `<name>…</name>` (no nesting of the same name assumed). */
export function all(xml: string, name: string): string[] {
  const out: string[] = [];
  const re = new RegExp(`<${name}>([\\s\\S]*?)</${name}>`, 'g');
  for (let m = re.exec(xml); m; m = re.exec(xml)) out.push(m[1] ?? '');
  return out;
}

export function one(xml: string, name: string): string | undefined {
  return all(xml, name)[0];
}

export function errorCode(xml: string): string | undefined {
  return one(xml, 'Code');
}

/** A tiny HTTP front for the service on 127.0.0.1:0 (the lead's server does this in the daemon). */
export async function serve(t: { teardown: (fn: () => unknown) => void }, svc: Ec2Service): Promise<number> {
  const { createServer } = await import('node:http');
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void svc.handle(Buffer.concat(chunks).toString('utf8')).then((r) => {
        res.writeHead(r.status, { 'content-type': r.contentType });
        res.end(r.body);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const a = server.address();
  return typeof a === 'object' && a ? a.port : 0;
}
