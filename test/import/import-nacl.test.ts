// Importing network ACLs (issue 14): aws describe-network-acls (+ describe-subnets), CloudFormation
// (NetworkAcl, NetworkAclEntry, SubnetNetworkAclAssociation, Subnet), Terraform (aws_network_acl,
// aws_network_acl_rule, aws_network_acl_association, aws_subnet). The rendered config loads, and
// the loaded NACLs hold the entries (the * entries implicit, the default NACL as default: true).
import t from 'tap';
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { importAws } from '../../src/import/aws.js';
import { importCloudFormation, parseTemplate } from '../../src/import/cloudformation.js';
import { importTerraform } from '../../src/import/terraform.js';
import { renderText, type ImportResult } from '../../src/import/common.js';
import { loadConfigText } from '../../src/config/load.js';
import type { Model } from '../../src/model/types.js';

const FIX = new URL('./fixtures/', import.meta.url).pathname;
const json = (f: string): unknown => JSON.parse(readFileSync(FIX + f, 'utf8'));
const load = (r: ImportResult, src: 'aws' | 'cloudformation' | 'terraform'): Model => loadConfigText(renderText(r, src, 'x'), 'x.yaml');
const entries = (m: Model, id: string) => m.networkAcls!.find((a) => a.id === id)!.entries.map((e) => [e.egress, e.ruleNumber, e.protocol, e.fromPort, e.toPort, e.cidr, e.allow]);

t.test('aws describe-security-groups + describe-network-acls + describe-subnets', async (t) => {
  const r = importAws(json('aws-sgs.json'), undefined, json('aws-nacls.json'), json('aws-subnets.json'));
  const m = load(r, 'aws');
  t.same(entries(m, 'acl-0a0a0a0a0a0a0a0a0'), [
    [false, 90, -1, -1, -1, '198.51.100.7/32', false],
    [false, 100, 6, 443, 443, '0.0.0.0/0', true],
    [false, 120, 58, 128, -1, '::/0', true],
    [true, 110, 6, 1024, 65535, '0.0.0.0/0', true],
  ]);
  t.same(m.subnets!.map((s) => [s.id, s.vpcId, s.cidr, s.networkAclId]), [
    ['subnet-0a1a1a1a1a1a1a1a1', 'vpc-0aaa1111', '10.0.1.0/24', 'acl-0a0a0a0a0a0a0a0a0'],
    ['subnet-0b1b1b1b1b1b1b1b1', 'vpc-0aaa1111', '10.0.2.0/24', 'acl-default-vpc-0aaa1111'],
  ]);
  t.same(entries(m, 'acl-default-vpc-0aaa1111').map((e) => e.slice(0, 2)), [[false, 100], [true, 100]], 'the default NACL as imported');
  t.ok(m.groups.length > 0, 'the groups are there too');
  // describe-network-acls alone as the main file.
  const alone = load(importAws(json('aws-nacls.json')), 'aws');
  t.equal(alone.networkAcls!.find((a) => a.id === 'acl-0a0a0a0a0a0a0a0a0')!.entries.length, 4);
  t.same(alone.subnets!.map((s) => s.cidr), [null, null], 'without describe-subnets: no CIDRs');
});

t.test('CloudFormation NetworkAcl, NetworkAclEntry, SubnetNetworkAclAssociation, Subnet', async (t) => {
  const r = importCloudFormation(parseTemplate(readFileSync(FIX + 'cfn-nacl.yaml', 'utf8'), 'cfn-nacl.yaml'));
  const m = load(r, 'cloudformation');
  t.same(entries(m, 'acl-appacl'), [
    [false, 100, 6, 443, 443, '0.0.0.0/0', true],
    [false, 120, 1, 8, -1, '10.0.0.0/8', true],
    [true, 110, 6, 1024, 65535, '0.0.0.0/0', true],
  ]);
  t.same(m.networkAcls!.find((a) => a.id === 'acl-appacl')!.tags, { Name: 'app' });
  t.same(m.subnets!.map((s) => [s.id, s.cidr, s.networkAclId]), [['subnet-appsubnet', '10.0.1.0/24', 'acl-appacl']]);
});

t.test('Terraform aws_network_acl (inline), aws_network_acl_rule, aws_network_acl_association, aws_subnet', async (t) => {
  const r = importTerraform(json('terraform-nacl.json'));
  const m = load(r, 'terraform');
  t.same(entries(m, 'acl-0a0a0a0a0a0a0a0a0'), [
    [false, 90, -1, -1, -1, '198.51.100.7/32', false],
    [false, 100, 6, 443, 443, '0.0.0.0/0', true],
    [true, 110, 6, 1024, 65535, '0.0.0.0/0', true],
  ]);
  t.same(m.subnets!.map((s) => [s.id, s.cidr, s.networkAclId]), [['subnet-0a1a1a1a1a1a1a1a1', '10.0.1.0/24', 'acl-0a0a0a0a0a0a0a0a0']]);
  t.ok(YAML.stringify(r.config).includes('networkAcls'));
});
