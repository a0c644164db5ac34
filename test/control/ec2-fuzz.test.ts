// Bounded fuzz of the query parser and handlers (issue #6): 20k random and mutated bodies, seeded.
// A share (2k, < 6 s) goes over HTTP through the daemon's real ApiServer, with oversized bodies and
// stray routes mixed in; the rest (18k) drive the service in-process, within 24 s for both parts
// (a loaded machine runs fewer: the count is printed).
// Every answer is 200, 400 or 412 (HTTP adds 404 and 413): never a throw, never a 5xx (the only
// documented 5xx, InternalError on a failed disk or apply, cannot happen here); a rejected request
// leaves the live model, the apply count and the state file exactly as they were; the state file
// always loads back to the live model.
import t, { type Test } from 'tap';
import http from 'node:http';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigText } from '../../src/config/load.js';
import { loadState } from '../../src/control/state.js';
import type { Model } from '../../src/model/types.js';
import { setup, WORLD } from './ec2-helpers.js';
import { mulberry32 } from '../prng.js';
import { startDaemon } from '../e2e/helpers.js';

const N_HTTP = 2_000;
const BUDGET_HTTP_MS = 6_000;
const N_INPROC = 18_000;
/** Both parts together: the in-process part gets what the HTTP part left. */
const BUDGET_TOTAL_MS = 24_000;
const fileStarted = Date.now();
/** A deep model comparison (JSON of the whole model) every DEEP-th rejected request; identity,
 *  apply count and the state file's inode/size/mtime on every one. */
const DEEP = 8;

const rng = mulberry32;

const TEMPLATES: Record<string, string>[] = [
  { Action: 'CreateSecurityGroup', GroupName: 'fz', GroupDescription: 'fuzz' },
  { Action: 'DeleteSecurityGroup', GroupId: 'sg-spare' },
  { Action: 'DescribeSecurityGroups', 'GroupId.1': 'sg-web', 'Filter.1.Name': 'ip-permission.cidr', 'Filter.1.Value.1': '*', MaxResults: '5' },
  { Action: 'DescribeSecurityGroupRules', 'Filter.1.Name': 'group-id', 'Filter.1.Value.1': 'sg-db' },
  { Action: 'AuthorizeSecurityGroupIngress', GroupId: 'sg-spare', 'IpPermissions.1.IpProtocol': 'tcp', 'IpPermissions.1.FromPort': '22', 'IpPermissions.1.ToPort': '22', 'IpPermissions.1.IpRanges.1.CidrIp': '10.0.0.0/8', 'IpPermissions.1.Ipv6Ranges.1.CidrIpv6': '::/0', 'IpPermissions.1.Groups.1.GroupId': 'sg-web', 'IpPermissions.1.PrefixListIds.1.PrefixListId': 'pl-office' },
  { Action: 'AuthorizeSecurityGroupEgress', GroupId: 'sg-db', 'IpPermissions.1.IpProtocol': 'icmp', 'IpPermissions.1.FromPort': '8', 'IpPermissions.1.ToPort': '-1', 'IpPermissions.1.IpRanges.1.CidrIp': '0.0.0.0/0' },
  { Action: 'RevokeSecurityGroupIngress', GroupId: 'sg-web', 'IpPermissions.1.IpProtocol': 'tcp', 'IpPermissions.1.FromPort': '8080', 'IpPermissions.1.ToPort': '8080', 'IpPermissions.1.IpRanges.1.CidrIp': '0.0.0.0/0' },
  { Action: 'RevokeSecurityGroupEgress', GroupId: 'sg-db', 'SecurityGroupRuleId.1': 'sgr-0123456789abcdef0' },
  { Action: 'ModifySecurityGroupRules', GroupId: 'sg-web', 'SecurityGroupRule.1.SecurityGroupRuleId': 'sgr-0123456789abcdef0', 'SecurityGroupRule.1.SecurityGroupRule.IpProtocol': 'udp', 'SecurityGroupRule.1.SecurityGroupRule.FromPort': '53', 'SecurityGroupRule.1.SecurityGroupRule.ToPort': '53' },
  { Action: 'UpdateSecurityGroupRuleDescriptionsIngress', GroupId: 'sg-web', 'IpPermissions.1.IpProtocol': 'tcp', 'IpPermissions.1.FromPort': '8080', 'IpPermissions.1.ToPort': '8080', 'IpPermissions.1.IpRanges.1.CidrIp': '0.0.0.0/0', 'IpPermissions.1.IpRanges.1.Description': 'd' },
  { Action: 'ModifyInstanceAttribute', InstanceId: 'web', 'GroupId.1': 'sg-web', 'GroupId.2': 'sg-spare' },
  { Action: 'DescribeInstances', 'Filter.1.Name': 'vpc-id', 'Filter.1.Value.1': 'vpc-*' },
  { Action: 'CreateTags', 'ResourceId.1': 'sg-web', 'Tag.1.Key': 'k', 'Tag.1.Value': 'v' },
  { Action: 'DescribeTags' },
  { Action: 'DeleteTags', 'ResourceId.1': 'sg-web' },
];

const WEIRD = ['', '-1', '0', '65536', '99999999999', 'all', 'ALL', 'sg-', 'sg-web', 'sg-db', 'sgr-', 'pl-office', 'default', '::/0', '10.0.0.1/8',
  '0.0.0.0/0', '1.2.3.4/33', 'true', 'false', '*', '\u0000', '\uffff', 'é', '<x>&', '%', '+', '..', '1e3', ' 22 ', 'tcp', 'icmpv6', '58', 'x'.repeat(300)];
const KEYS = ['Action', 'GroupId', 'GroupName', 'DryRun', 'MaxResults', 'NextToken', 'IpPermissions.1.IpProtocol', 'IpPermissions.2.IpRanges.1.CidrIp',
  'IpPermissions.1.Groups.1.GroupName', 'Filter.1.Name', 'Filter.1.Value.1', 'Filter.2.Value.3', 'SecurityGroupRuleId.1', 'GroupId.1', 'IpProtocol',
  'CidrIp', 'FromPort', 'ToPort', 'SourceSecurityGroupName', 'TagSpecification.1.ResourceType', 'TagSpecification.1.Tag.1.Key', 'a.b', 'A.0', '.', 'Version',
  'X-Amz-Date', 'Foo', 'IpPermissions.1.Bogus', 'IpPermissions.1.IpRanges.1.CidrIpv6', 'Filter.1.Values.1', 'GroupId.1.x', 'Description'];

function body(r: () => number): string {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
  const mode = r();
  if (mode < 0.08) {
    // raw garbage
    const len = Math.floor(r() * 200);
    let s = '';
    for (let i = 0; i < len; i++) s += String.fromCharCode(Math.floor(r() * 128));
    return s;
  }
  const params = new Map(Object.entries(pick(TEMPLATES)));
  const edits = Math.floor(r() * 4);
  for (let i = 0; i < edits; i++) {
    const e = r();
    const keys = [...params.keys()];
    if (e < 0.3 && keys.length) params.delete(pick(keys));
    else if (e < 0.7 && keys.length) params.set(pick(keys), pick(WEIRD));
    else params.set(pick(KEYS), pick(WEIRD));
  }
  let s = [...params].map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
  if (r() < 0.05) s = s.replace(/%[0-9A-F]{2}/, '%G'); // a bad escape
  if (r() < 0.05) s += '&' + s;                          // duplicated parameters
  return s;
}

const snapshot = (m: Model): string => JSON.stringify(m, (k, v: unknown) => (k === 'pos' ? undefined : v));

/** The state file's identity: saveState renames a new file over it, so any write changes this. */
function fileId(path: string): string {
  if (!existsSync(path)) return 'none';
  const st = statSync(path);
  return `${st.ino}:${st.size}:${st.mtimeMs}`;
}

/**
 * A directory for the state file, on tmpfs when there is one: every accepted change fsyncs it,
 * and this test is about what is written, not how fast the disk syncs.
 */
function scratchDir(t: Test): string {
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const dir = mkdtempSync(join(base, 'sgemu-fuzz-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs bodies through `send`; checks every answer and that rejected requests change nothing. */
async function drive(t: Test, opts: {
  n: number; budgetMs: number; seed: number; statePath: string; allowed: number[]; world: string;
  model: () => Model; applied: () => number; send: (b: string, r: () => number) => Promise<{ status: number; body: string }>;
}): Promise<Map<number, number>> {
  const r = rng(opts.seed);
  const started = Date.now();
  const statuses = new Map<number, number>();
  let failures = 0;
  let rejected = 0;
  let deep = snapshot(opts.model());
  let deepOf = opts.model();
  let i = 0;
  for (; i < opts.n && Date.now() - started < opts.budgetMs; i++) {
    const b = body(r);
    const model = opts.model();
    const applied = opts.applied();
    const file = fileId(opts.statePath);
    let res: { status: number; body: string };
    try {
      res = await opts.send(b, r);
    } catch (e) {
      t.fail(`threw on ${JSON.stringify(b).slice(0, 200)}: ${String(e)}`);
      if (++failures > 5) break;
      continue;
    }
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    if (!opts.allowed.includes(res.status) || !(res.body.startsWith('<?xml') || res.body.startsWith('{'))) {
      t.fail(`status ${res.status} for ${JSON.stringify(b).slice(0, 200)}: ${res.body.slice(0, 300)}`);
      if (++failures > 5) break;
    }
    if (res.status !== 200) {
      let changed = opts.model() !== model || opts.applied() !== applied || fileId(opts.statePath) !== file;
      if (!changed && ++rejected % DEEP === 0) {
        if (deepOf !== model) { deep = snapshot(model); deepOf = model; }   // taken lazily, once per live model
        changed = snapshot(opts.model()) !== deep;
      }
      if (changed) {
        t.fail(`rejected request changed state: ${JSON.stringify(b).slice(0, 200)} → ${res.body.slice(0, 300)}`);
        if (++failures > 5) break;
      }
    }
  }
  const ms = Date.now() - started;
  t.ok(i >= opts.n || ms >= opts.budgetMs, `ran ${i} bodies in ${ms} ms`);
  // Shares of what ran: on a loaded machine the time budget ends the run before opts.n bodies.
  t.ok((statuses.get(200) ?? 0) > i / 100, `some requests succeed: ${JSON.stringify([...statuses])}`);
  t.ok((statuses.get(400) ?? 0) > i / 10, `many are rejected (${statuses.get(400) ?? 0} of ${i})`);
  t.ok((statuses.get(400) ?? 0) > 0 && [...statuses.keys()].every((s) => s < 500), 'no 5xx');
  if (existsSync(opts.statePath)) {
    const loaded = loadState(opts.statePath, loadConfigText(opts.world, 'w.yaml'));
    t.equal(snapshot(loaded as Model), snapshot(opts.model()), 'the state file loads back to the live model');
  }
  return statuses;
}

t.test(`fuzz over HTTP through the daemon's ApiServer: ${N_HTTP} bodies`, async (t) => {
  const statePath = join(scratchDir(t), 'state.json');
  // The fuzz world without services: the daemon binds no listener, only its API on 127.0.0.1:0.
  const yaml = WORLD.replace(/^ {4}services:.*$/m, '');
  const { daemon } = await startDaemon(t, yaml, { api: { host: '127.0.0.1', port: 0 }, statePath });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const port = daemon.api!.port;
  const request = (method: string, path: string, payload: string | Buffer): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method, path, agent,
        headers: { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8', 'content-length': Buffer.byteLength(payload) } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(payload);
    });
  const big = Buffer.alloc((1 << 20) + 1, 'a');
  await drive(t, {
    n: N_HTTP, budgetMs: BUDGET_HTTP_MS, seed: 7, statePath, allowed: [200, 400, 404, 412, 413], world: yaml,
    model: () => daemon.model, applied: () => daemon.reloads,
    send: (b, r) => {
      const x = r();
      if (x < 0.002) return request('POST', '/', big);                       // over the 1 MiB limit: 413
      if (x < 0.02) return request(r() < 0.5 ? 'GET' : 'PUT', '/' + b.slice(0, 20).replace(/[^A-Za-z0-9]/g, ''), b);  // stray routes: 404
      return request('POST', '/', b);
    },
  });
});

t.test(`fuzz in-process: ${N_INPROC} bodies`, async (t) => {
  const statePath = join(scratchDir(t), 'state.json');
  const { host, svc } = setup(statePath);
  await drive(t, {
    n: N_INPROC, budgetMs: BUDGET_TOTAL_MS - (Date.now() - fileStarted), seed: 20261125, statePath, allowed: [200, 400, 412], world: WORLD,
    model: () => host.model, applied: () => host.applied, send: (b) => svc.handle(b),
  });
});

