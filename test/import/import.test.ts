// Importers: hand-written fixtures in the reference formats (§5, §6) → config objects, and the
// config loader accepts the rendered YAML.
import t from 'tap';
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { importAws } from '../../src/import/aws.js';
import { importCloudFormation, parseTemplate } from '../../src/import/cloudformation.js';
import { importTerraform } from '../../src/import/terraform.js';
import { renderText, type ImportResult } from '../../src/import/common.js';
import { loadConfigText } from '../../src/config/load.js';

const FIX = new URL('./fixtures/', import.meta.url).pathname;
const json = (f: string): unknown => JSON.parse(readFileSync(FIX + f, 'utf8'));

type G = Record<string, unknown> & { ingress: Record<string, unknown>[]; egress?: Record<string, unknown>[] };
const groupsOf = (r: ImportResult): G[] => r.config['securityGroups'] as G[];
const find = (r: ImportResult, id: string): G => {
  const g = groupsOf(r).find((x) => x['id'] === id);
  if (!g) throw new Error(`no group ${id}`);
  return g;
};

t.test('aws describe-security-groups + describe-instances', async (t) => {
  const r = importAws(json('aws-sgs.json'), json('aws-instances.json'));
  const text = renderText(r, 'aws', 'aws-sgs.json');
  if (process.env['SHOW']) t.comment(text);
  t.same(r.config['vpcs'], [{ id: 'vpc-0aaa1111' }, { id: 'vpc-0bbb2222' }]);
  const web = find(r, 'sg-0a0a0a0a0a0a0a0a0');
  t.match(web, { name: 'web', vpc: 'vpc-0aaa1111', description: 'public web tier', tags: { Name: 'web', env: 'prod' } });
  // One IpPermission split per description; descriptions kept; IPv6 joins its description's rule.
  t.same(web.ingress[0], { protocol: 'tcp', ports: 443, cidr: ['0.0.0.0/0', '203.0.113.0/24', '::/0'], description: 'https from anywhere' });
  t.same(web.ingress[1], { protocol: 'tcp', ports: 443, cidr: ['198.51.100.7/32'], description: 'office' });
  t.same(web.ingress[2], { protocol: 'tcp', ports: 22, prefixLists: ['pl-0f00f00f'], description: 'vpn' });
  t.same(web.ingress[3], { protocol: 'icmp', icmpType: 8, cidr: ['10.0.0.0/8'] });
  // The group of another account is dropped with a warning; the default group is "default".
  t.same(web.ingress[4], { protocol: 'tcp', ports: '8000-8100', groups: ['sg-0b0b0b0b0b0b0b0b0'], description: 'from lb' });
  t.equal(web.ingress.length, 5);
  t.same(web.egress, [{ protocol: 'tcp', ports: 5432, groups: ['default'] }]);
  t.ok(r.warnings.some((w) => w.includes('sg-0e0e0e0e0e0e0e0e0')));
  t.ok(r.warnings.some((w) => w.includes('pl-0f00f00f')));
  t.same(r.config['prefixLists'], [{ id: 'pl-0f00f00f', entries: [] }]);
  const def = groupsOf(r)[0];
  t.match(def, { default: true, vpc: 'vpc-0aaa1111', ingress: [{ protocol: 'all', groups: ['default'] }] });
  t.notOk(def && 'id' in def);
  const lb = find(r, 'sg-0b0b0b0b0b0b0b0b0');
  t.same(lb.ingress, [{ protocol: 'udp', ports: 'all', cidr: ['10.1.0.0/16'] }, { protocol: '50', cidr: ['10.2.0.0/16'] }]);
  t.same(lb.egress, []);
  t.same(r.config['instances'], [
    { name: 'web-server-1', id: 'i-0123456789abcdef0', vpc: 'vpc-0aaa1111', address: '127.0.0.10', securityGroups: ['sg-0a0a0a0a0a0a0a0a0', 'default'] },
    { name: 'i-0fedcba9876543210', id: 'i-0fedcba9876543210', vpc: 'vpc-0aaa1111', address: '127.0.0.11', securityGroups: ['sg-0b0b0b0b0b0b0b0b0'] },
    { name: 'i-0aaaabbbbccccdddd', id: 'i-0aaaabbbbccccdddd', vpc: 'vpc-0bbb2222', address: '127.0.0.12', securityGroups: ['sg-0c0c0c0c0c0c0c0c0'] },
  ]);
  t.match(text, /^# sgemu config imported from aws ec2 describe-security-groups: aws-sgs.json\n/);
  t.match(text, /# instance web-server-1 \(i-0123456789abcdef0\): private 10\.0\.1\.5 → 127\.0\.0\.10/);
  const m = loadConfigText(text, 'imported.yaml');
  t.equal(m.instances.length, 3);
  t.equal(m.groups.find((g) => g.id === 'sg-0a0a0a0a0a0a0a0a0')?.ingress.length, 7);
});

t.test('cloudformation YAML with short tags', async (t) => {
  const r = importCloudFormation(parseTemplate(readFileSync(FIX + 'cfn.yaml', 'utf8'), 'cfn.yaml'));
  const text = renderText(r, 'cloudformation', 'cfn.yaml');
  if (process.env['SHOW']) t.comment(text);
  t.same(r.config['vpcs'], [{ id: 'vpc-vpc' }]);
  const web = find(r, 'sg-websg');
  t.match(web, { name: 'web', description: 'web tier', tags: { team: 'blue' } });
  t.same(web.ingress, [
    { protocol: 'tcp', ports: 443, cidr: ['0.0.0.0/0'], description: 'https' },
    { protocol: 'tcp', ports: 22, cidr: ['198.51.100.0/24'], description: 'ssh from office' },
    { protocol: 'tcp', ports: 8080, groups: ['sg-lbsg'] },
  ]);
  // The standalone egress adds to CFN's default allow-all egress.
  t.same(web.egress, [
    { protocol: 'all', cidr: ['0.0.0.0/0', '::/0'] },
    { protocol: 'udp', ports: 53, prefixLists: ['pl-dns'] },
  ]);
  const lb = find(r, 'sg-lbsg');
  t.equal(lb['name'], 'LbSg');
  t.same(lb.ingress, [{ protocol: 'all', cidr: ['::/0'] }]);
  t.same(lb.egress, [{ protocol: 'tcp', ports: 8080, groups: ['sg-websg'] }]);
  t.ok(r.warnings.some((w) => /ExternalSg/.test(w)));
  t.ok(r.warnings.some((w) => /ImportValue/.test(w)));
  const m = loadConfigText(text, 'imported.yaml');
  t.equal(m.groups.filter((g) => !g.isDefault).length, 2);
});

t.test('terraform show -json with modules and standalone rules', async (t) => {
  const r = importTerraform(json('terraform.json'));
  const text = renderText(r, 'terraform', 'terraform.json');
  if (process.env['SHOW']) t.comment(text);
  const web = find(r, 'sg-0a0a0a0a0a0a0a0a0');
  t.same(web.ingress, [
    { protocol: 'tcp', ports: 443, cidr: ['0.0.0.0/0', '::/0'], description: 'https' },
    { protocol: 'all', groups: ['sg-0a0a0a0a0a0a0a0a0'] },
  ]);
  t.same(web.egress, [{ protocol: 'tcp', ports: 5432, groups: 'sg-0b0b0b0b0b0b0b0b0', description: 'to db', id: 'sgr-0123456789abcdef0' }]);
  const db = find(r, 'sg-0b0b0b0b0b0b0b0b0');
  t.same(db.ingress, [
    { protocol: 'tcp', ports: 5432, groups: ['sg-0a0a0a0a0a0a0a0a0'], description: 'pg from web' },
    { protocol: 'all', cidr: ['10.0.0.0/8'] },
  ]);
  t.same(db.egress, []);
  const m = loadConfigText(text, 'imported.yaml');
  t.equal(m.groups.find((g) => g.id === 'sg-0a0a0a0a0a0a0a0a0')?.egress[0]?.id, 'sgr-0123456789abcdef0');
});

t.test('bad input is a UsageError', async (t) => {
  t.throws(() => importAws({ nope: 1 }), { code: 'Usage' });
  t.throws(() => importAws({ SecurityGroups: [{ GroupName: 'x' }] }), { code: 'Usage' });
  t.throws(() => importAws({ SecurityGroups: [] }, { x: 1 }), { code: 'Usage' });
  t.throws(() => importCloudFormation({ AWSTemplateFormatVersion: 'x' }), { code: 'Usage' });
  t.throws(() => importCloudFormation({ Resources: {} }), { code: 'Usage' });
  t.throws(() => parseTemplate('a: [', 'x.yaml'), { code: 'Usage' });
  t.throws(() => importTerraform({ format_version: '1.0' }), { code: 'Usage' });
  t.throws(() => importTerraform({ values: { root_module: {} } }), { code: 'Usage' });
  t.equal(YAML.stringify({ a: 1 }), 'a: 1\n');
});
