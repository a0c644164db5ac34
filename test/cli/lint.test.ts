// `sgemu lint` on YAML configs: text and JSON output, --ignore, exit codes.
import t from 'tap';
import { join } from 'node:path';
import { runCommand } from '../import/cli-capture.js';

const lint = (await import('../../src/cli/lint.js')).default;

const RISKY = `securityGroups:
  - id: sg-web
    description: web
    ingress:
      - { protocol: tcp, ports: 22, cidr: 0.0.0.0/0, description: ssh }
      - { protocol: tcp, ports: 443, cidr: 0.0.0.0/0, description: https }
  - id: sg-spare
    description: not used
instances:
  - { name: web, address: 127.0.0.10, securityGroups: [sg-web] }
`;
const CLEAN = `securityGroups:
  - id: sg-web
    description: web
    ingress:
      - { protocol: tcp, ports: 443, cidr: 10.0.0.0/8, description: https }
instances:
  - { name: web, address: 127.0.0.10, securityGroups: [sg-web] }
`;

t.test('findings as text lines with file positions, exit 1', async (t) => {
  const dir = t.testdir({ 'sgemu.yaml': RISKY });
  const r = await runCommand(t, lint, ['-c', join(dir, 'sgemu.yaml')]);
  t.equal(r.code, 1);
  const lines = r.out.trimEnd().split('\n');
  t.match(lines[0], /^HIGH SG001 securityGroups\[0\]\.ingress\[0\] 5:9 SSH \(tcp\/22\) open to the world/);
  t.ok(lines.some((l) => /^MEDIUM SG006 /.test(l)));
  t.ok(lines.some((l) => /^INFO SG007 securityGroups\[1\] \d+:\d+ sg-spare/.test(l)));
});

t.test('--json and --ignore; info-only is exit 0', async (t) => {
  const dir = t.testdir({ 'sgemu.yaml': RISKY });
  const r = await runCommand(t, lint, ['-c', join(dir, 'sgemu.yaml'), '--json', '--ignore', 'SG001,SG006']);
  t.equal(r.code, 0);
  const j = JSON.parse(r.out) as { findings: { id: string; severity: string }[] };
  t.same(j.findings.map((f) => f.id), ['SG007']);
  await t.rejects(runCommand(t, lint, ['-c', join(dir, 'sgemu.yaml'), '--ignore', 'SG999']), { code: 'Usage' });
});

t.test('clean config: exit 0', async (t) => {
  const dir = t.testdir({ 'sgemu.yaml': CLEAN });
  const r = await runCommand(t, lint, ['-c', join(dir, 'sgemu.yaml')]);
  t.equal(r.code, 0);
  t.match(r.out, /no findings/);
});

t.test('SG008 once per rule of the file, not per peer', async (t) => {
  const dir = t.testdir({ 'sgemu.yaml': `securityGroups:
  - id: sg-a
    description: a
    ingress:
      - { protocol: tcp, ports: 443, cidr: [10.0.0.0/8, 192.168.0.0/16] }
instances:
  - { name: a, address: 127.0.0.10, securityGroups: [sg-a] }
` });
  const r = await runCommand(t, lint, ['-c', join(dir, 'sgemu.yaml'), '--json']);
  t.equal(r.code, 0);
  const j = JSON.parse(r.out) as { findings: { id: string; line: number; column: number; path: string }[] };
  t.match(j.findings, [{ id: 'SG008', path: 'securityGroups[0].ingress[0]', line: 5, column: 9 }]);
  t.equal(j.findings.length, 1);
});
