// lint for network ACLs (issue 14): NACL001 the ephemeral-port pitfall (service in, replies not
// out; outbound out, replies not in), NACL002 a deny shadowed by an earlier allow (and the
// reverse), NACL003 a redundant entry, NACL004 a NACL on no subnet. Each with its clean twin.
import t from 'tap';
import { loadConfigText } from '../../src/config/load.js';
import { lintModel, formatFinding } from '../../src/policy/lint.js';

const cfg = (entries: string, extra = '') => `
networkAcls:
  - id: acl-app
    entries:
${entries}
  - id: acl-spare
subnets:
  - { id: subnet-app, networkAcl: acl-app }
${extra}instances:
  - name: web
    address: 127.0.0.10
    subnet: subnet-app
    services: [{ protocol: tcp, port: 443, backend: 127.0.0.1:3000 }]
`;
const IN443 = '      - { ruleNumber: 100, egress: false, protocol: tcp, ports: 443, cidr: 0.0.0.0/0, action: allow }\n';
const OUT80 = '      - { ruleNumber: 100, egress: true, protocol: tcp, ports: 80, cidr: 0.0.0.0/0, action: allow }\n';
const OUTEPH = '      - { ruleNumber: 110, egress: true, protocol: tcp, ports: 1024-65535, cidr: 0.0.0.0/0, action: allow }\n';
const only = (fs: ReturnType<typeof lintModel>, id: string) => fs.filter((f) => f.id === id);

t.test('NACL001: the service is let in, the replies to the ephemeral ports are not let out', async (t) => {
  const bad = lintModel(loadConfigText(cfg(IN443 + OUT80), 'x.yaml'));
  const f = only(bad, 'NACL001');
  t.equal(f.length, 1);
  t.match(f[0], { severity: 'high', groupId: 'acl-app', ruleId: '100', instance: 'web', path: 'networkAcls[0].entries[0]' });
  t.match(f[0]?.message, /lets tcp\/443 in to web from 0\.0\.0\.0\/0, but the egress entries do not allow the replies to the clients' ephemeral ports \(32768-60999\)/);
  t.match(formatFinding(f[0]!), /^HIGH NACL001 networkAcls\[0\]\.entries\[0\] \d+:\d+ /);
  t.same(only(lintModel(loadConfigText(cfg(IN443 + OUT80 + OUTEPH), 'x.yaml')), 'NACL001'), [], 'twin with egress 1024-65535: clean');
});

t.test('NACL001 for an outbound entry whose replies cannot come back in', async (t) => {
  const yaml = `
networkAcls:
  - id: acl-app
    entries:
      - { ruleNumber: 100, egress: true, protocol: tcp, ports: 443, cidr: 0.0.0.0/0, action: allow }
${'      - { ruleNumber: 100, egress: false, protocol: tcp, ports: 443, cidr: 0.0.0.0/0, action: allow }'}
subnets:
  - { id: subnet-app, networkAcl: acl-app }
instances:
  - name: web
    address: 127.0.0.10
    subnet: subnet-app
    outbound: [{ protocol: tcp, port: 18443, to: "127.0.0.1:9443", as: "52.94.0.10:443" }]
`;
  const f = only(lintModel(loadConfigText(yaml, 'x.yaml')), 'NACL001');
  t.equal(f.length, 1);
  t.match(f[0]?.message, /web may connect out to 52\.94\.0\.10:443 \(tcp\), but the ingress entries do not allow the replies back/);
  const fixed = yaml.replace('subnets:', '      - { ruleNumber: 110, egress: false, protocol: tcp, ports: 1024-65535, cidr: 0.0.0.0/0, action: allow }\nsubnets:');
  t.not(fixed, yaml);
  t.same(only(lintModel(loadConfigText(fixed, 'x.yaml')), 'NACL001'), [], 'twin: clean');
});

t.test('NACL002 a deny after an allow that covers it, and the reverse; NACL003 redundant; NACL004 unused', async (t) => {
  const entries = IN443 + OUTEPH
    + '      - { ruleNumber: 200, egress: false, protocol: tcp, ports: 443, cidr: 127.0.0.5/32, action: deny }\n'
    + '      - { ruleNumber: 50, egress: true, protocol: all, cidr: 10.0.0.0/8, action: deny }\n'
    + '      - { ruleNumber: 120, egress: true, protocol: tcp, ports: 2000-3000, cidr: 10.1.0.0/16, action: allow }\n'
    + '      - { ruleNumber: 130, egress: true, protocol: udp, ports: 53, cidr: 0.0.0.0/0, action: allow }\n';
  const fs = lintModel(loadConfigText(cfg(entries), 'x.yaml'));
  const n2 = only(fs, 'NACL002');
  t.same(n2.map((f) => f.ruleId).sort(), ['120', '200']);
  t.match(n2.find((f) => f.ruleId === '200')?.message, /ingress rule 200 denies tcp\/443 from 127\.0\.0\.5\/32 never decides: earlier entries \(ingress rule 100 allows tcp\/443 from 0\.0\.0\.0\/0\)/);
  t.match(n2.find((f) => f.ruleId === '120')?.message, /egress rule 50 denies all traffic to 10\.0\.0\.0\/8/);
  t.same(only(fs, 'NACL003'), [], 'no redundant entry yet');
  const red = lintModel(loadConfigText(cfg(IN443 + OUTEPH + '      - { ruleNumber: 150, egress: true, protocol: tcp, ports: 5000, cidr: 10.0.0.0/8, action: allow }\n'), 'x.yaml'));
  t.same(only(red, 'NACL003').map((f) => f.ruleId), ['150']);
  t.same(only(fs, 'NACL004').map((f) => f.groupId), ['acl-spare']);
  // Renumbered so the deny comes first: it decides, no finding.
  const fixed = lintModel(loadConfigText(cfg(IN443.replace('ruleNumber: 100', 'ruleNumber: 300') + OUTEPH
    + '      - { ruleNumber: 200, egress: false, protocol: tcp, ports: 443, cidr: 127.0.0.5/32, action: deny }\n'), 'x.yaml'));
  t.same(only(fixed, 'NACL002'), []);
});

t.test('a config without NACLs gets no NACL finding', async (t) => {
  const fs = lintModel(loadConfigText('instances:\n  - { name: a, address: 127.0.0.2 }\n', 'x.yaml'));
  t.same(fs.filter((f) => f.id.startsWith('NACL')), []);
});
