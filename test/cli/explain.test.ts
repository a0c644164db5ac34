// `sgemu explain` on a YAML config: JSON shape (SPEC §3), text output, exit codes 0/1/2.
import t from 'tap';
import { join } from 'node:path';
import { runCommand } from '../import/cli-capture.js';

const explain = (await import('../../src/cli/explain.js')).default;

const CONFIG = `securityGroups:
  - id: sg-ssh
    description: admin
    ingress:
      - { protocol: tcp, ports: 22, cidr: 127.0.0.1/32, description: ssh from me }
  - id: sg-web
    description: web
    ingress:
      - { protocol: tcp, ports: 8080, cidr: 127.0.0.1/32 }
instances:
  - name: web
    address: 127.0.0.10
    securityGroups: [sg-ssh, sg-web]
`;

t.test('allow --json: SPEC §3 object, exit 0', async (t) => {
  const dir = t.testdir({ 'sgemu.yaml': CONFIG });
  const r = await runCommand(t, explain, ['-c', join(dir, 'sgemu.yaml'), '--from', '127.0.0.1', '--to', 'web', '--protocol', 'tcp', '--port', '22', '--json']);
  t.equal(r.code, 0);
  const j = JSON.parse(r.out) as Record<string, unknown>;
  t.match(j, {
    decision: 'allow', protocol: 'tcp', port: 22, source: '127.0.0.1', destination: '127.0.0.10',
    checks: [{ instance: 'web', direction: 'ingress', decision: 'allow', matched: [{ groupId: 'sg-ssh', ruleId: /^sgr-[0-9a-f]{17}$/, via: 'cidr 127.0.0.1/32' }], nearMisses: [] }],
    reason: 'sg-ssh allows tcp/22 from 127.0.0.1/32',
  });
});

t.test('deny text output with a near miss, exit 1', async (t) => {
  const dir = t.testdir({ 'sgemu.yaml': CONFIG });
  const r = await runCommand(t, explain, ['-c', join(dir, 'sgemu.yaml'), '--from', '127.0.0.2', '--to', '127.0.0.10:8080', '--protocol', 'tcp']);
  t.equal(r.code, 1);
  t.match(r.out, /^DENY tcp\/8080 from 127\.0\.0\.2 to 127\.0\.0\.10 \(web\)/);
  t.match(r.out, /near miss \(source\): sg-web allows tcp\/8080 from 127\.0\.0\.1\/32/);
  t.match(r.out, /reason: no rule of sg-ssh, sg-web on web allows tcp\/8080 from 127\.0\.0\.2 \(ingress\)/);
});

t.test('bad input: exit 2 through UsageError', async (t) => {
  const dir = t.testdir({ 'sgemu.yaml': CONFIG });
  const c = join(dir, 'sgemu.yaml');
  const cases = [
    ['--from', 'not-an-address', '--to', 'web', '--protocol', 'tcp', '--port', '22'],
    ['--from', '127.0.0.1', '--to', 'web', '--protocol', 'tcp'],
    ['--from', '127.0.0.1', '--to', 'web', '--protocol', 'bogus', '--port', '1'],
    ['--from', '127.0.0.1', '--to', 'web', '--protocol', 'tcp', '--port', '70000'],
    ['--to', 'web', '--protocol', 'tcp', '--port', '1'],
  ];
  for (const argv of cases) await t.rejects(runCommand(t, explain, ['-c', c, ...argv]), { code: 'Usage' }, argv.join(' '));
});
