// Bounded fuzz of the query parser and handlers: 3000 random and mutated bodies (seeded, < 10 s).
// Every answer is 200, 400 or 412 (never a throw, never a 5xx); a rejected request leaves the
// live model, the apply count and the state file exactly as they were; the state file always
// loads back to the live model.
import t from 'tap';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfigText } from '../../src/config/load.js';
import { loadState } from '../../src/control/state.js';
import type { Model } from '../../src/model/types.js';
import { setup, WORLD } from './ec2-helpers.js';
import { mulberry32 } from '../prng.js';

const N = 3000;
const BUDGET_MS = 10_000;

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
  'CidrIp', 'FromPort', 'ToPort', 'SourceSecurityGroupName', 'TagSpecification.1.ResourceType', 'TagSpecification.1.Tag.1.Key', 'a.b', 'A.0', '.', 'Version'];

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

t.test(`fuzz: ${N} bodies`, async (t) => {
  const dir = t.testdir({});
  const statePath = join(dir, 'state.json');
  const { host, svc } = setup(statePath);
  const r = rng(20261125);
  const started = Date.now();
  const statuses = new Map<number, number>();
  let failures = 0;
  let i = 0;
  for (; i < N && Date.now() - started < BUDGET_MS; i++) {
    const b = body(r);
    const before = snapshot(host.model);
    const applied = host.applied;
    const file = existsSync(statePath) ? readFileSync(statePath, 'utf8') : null;
    let res: { status: number; body: string };
    try {
      res = await svc.handle(b);
    } catch (e) {
      t.fail(`threw on ${JSON.stringify(b).slice(0, 200)}: ${String(e)}`);
      if (++failures > 5) break;
      continue;
    }
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    if (![200, 400, 412].includes(res.status) || !res.body.startsWith('<?xml')) {
      t.fail(`status ${res.status} for ${JSON.stringify(b).slice(0, 200)}: ${res.body.slice(0, 300)}`);
      if (++failures > 5) break;
    }
    if (res.status !== 200) {
      const after = existsSync(statePath) ? readFileSync(statePath, 'utf8') : null;
      if (snapshot(host.model) !== before || host.applied !== applied || after !== file) {
        t.fail(`rejected request changed state: ${JSON.stringify(b).slice(0, 200)} → ${res.body.slice(0, 300)}`);
        if (++failures > 5) break;
      }
    }
  }
  t.ok(i >= N || Date.now() - started >= BUDGET_MS, `ran ${i} bodies in ${Date.now() - started} ms`);
  t.ok((statuses.get(200) ?? 0) > 50, `some requests succeed: ${JSON.stringify([...statuses])}`);
  t.ok((statuses.get(400) ?? 0) > 50, 'many are rejected');
  if (existsSync(statePath)) {
    const loaded = loadState(statePath, loadConfigText(WORLD, 'w.yaml'));
    t.equal(snapshot(loaded as Model), snapshot(host.model), 'the state file loads back to the live model');
  }
});
