// `sgemu check` with subnets and network ACLs (issue 14): the summary counts them; errors are
// listed as CODE path line:col message with AWS's codes, exit 2.
import t, { type Test } from 'tap';
import { join } from 'node:path';

const check = (await import('../../src/cli/check.js')).default;

async function run(t: Test, argv: string[]): Promise<{ code: number; out: string }> {
  const original = process.stdout.write.bind(process.stdout);
  let out = '';
  const restore = (): void => { process.stdout.write = original; };
  t.teardown(restore);
  process.stdout.write = ((chunk: string | Uint8Array): boolean => {
    out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return true;
  }) as typeof process.stdout.write;
  try {
    return { code: await check.run(argv), out };
  } finally {
    restore();
  }
}

const GOOD = `networkAcls:
  - id: acl-app
    entries:
      - { ruleNumber: 100, egress: false, protocol: tcp, ports: 443, cidr: 0.0.0.0/0, action: allow }
subnets:
  - { id: subnet-app, networkAcl: acl-app }
instances:
  - { name: web, address: 127.0.0.10, subnet: subnet-app }
`;
const BAD = `networkAcls:
  - id: acl-app
    entries:
      - { ruleNumber: 100, egress: false, protocol: tcp, ports: 443, cidr: 0.0.0.0/0, action: allow }
      - { ruleNumber: 100, egress: false, protocol: udp, ports: 53, cidr: 0.0.0.0/0, action: allow }
subnets:
  - { id: subnet-app, networkAcl: acl-nope }
instances:
  - { name: web, address: 127.0.0.10, subnet: subnet-gone }
`;

t.test('valid: the summary counts subnets and network ACLs', async (t) => {
  const dir = t.testdir({ 'sgemu.yaml': GOOD });
  const r = await run(t, ['-c', join(dir, 'sgemu.yaml')]);
  t.equal(r.code, 0);
  t.match(r.out, /^ok: .*: 1 VPCs, 1 groups, \d+ rules, 1 instances, 1 subnets, 1 network ACLs\n$/);
});

t.test('invalid: every error as CODE path line:col, exit 2', async (t) => {
  const dir = t.testdir({ 'sgemu.yaml': BAD });
  const r = await run(t, ['-c', join(dir, 'sgemu.yaml')]);
  t.equal(r.code, 2);
  t.match(r.out, /^NetworkAclEntryAlreadyExists networkAcls\[0\]\.entries\[1\]\.ruleNumber 5:23 /m);
  t.match(r.out, /^InvalidNetworkAclID\.NotFound subnets\[0\]\.networkAcl 7:35 /m);
  t.match(r.out, /^InvalidSubnetID\.NotFound instances\[0\]\.subnet 9:47 /m);
  const j = await run(t, ['-c', join(dir, 'sgemu.yaml'), '--json']);
  const o = JSON.parse(j.out) as { valid: boolean; errors: { code: string }[] };
  t.equal(o.valid, false);
  t.same(o.errors.map((e) => e.code).sort(), ['InvalidNetworkAclID.NotFound', 'InvalidSubnetID.NotFound', 'NetworkAclEntryAlreadyExists']);
});
