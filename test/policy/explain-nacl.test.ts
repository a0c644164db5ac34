// explain with network ACLs (issue 14, SPEC §7): NACL checks of both paths with the deciding rule
// number and action, near misses ("egress rule 100 allows tcp/80, but the reply goes to port
// 51034: allow 1024-65535"), the JSON shape, no NACL checks without subnets/NACLs or inside one
// subnet, and agreement with the data plane's decision (the same compiled tables).
import t from 'tap';
import { loadConfigText } from '../../src/config/load.js';
import { explainFlow } from '../../src/policy/explain.js';
import { compilePolicy } from '../../src/policy/compile.js';
import { parseIpv4 } from '../../src/policy/addr.js';
import { formatExplain } from '../../src/cli/explain.js';

const CFG = (egress: string, extraIngress = '') => `
networkAcls:
  - id: acl-app
    entries:
${extraIngress}      - { ruleNumber: 100, egress: false, protocol: tcp, ports: 443, cidr: 0.0.0.0/0, action: allow }
${egress}
subnets:
  - { id: subnet-app, cidr: 10.0.1.0/24, networkAcl: acl-app }
  - { id: subnet-db }
securityGroups:
  - id: sg-web
    ingress:
      - { protocol: tcp, ports: 443, cidr: 0.0.0.0/0 }
instances:
  - { name: web, address: 127.0.0.10, subnet: subnet-app, securityGroups: [sg-web] }
  - { name: web2, address: 127.0.0.12, subnet: subnet-app, securityGroups: [sg-web] }
  - { name: db, address: 127.0.0.11, subnet: subnet-db, securityGroups: [sg-web] }
`;
const EG80 = '      - { ruleNumber: 100, egress: true, protocol: tcp, ports: 80, cidr: 0.0.0.0/0, action: allow }';
const EGEPH = EG80 + '\n      - { ruleNumber: 110, egress: true, protocol: tcp, ports: 1024-65535, cidr: 0.0.0.0/0, action: allow }';

t.test('the ephemeral-port pitfall: SG allows, the reply is denied by rule *, with the near miss', async (t) => {
  const m = loadConfigText(CFG(EG80), 'x.yaml');
  const r = explainFlow(m, { from: '127.0.0.1:51034', to: 'web', protocol: 'tcp', port: 443 });
  t.equal(r.decision, 'deny');
  t.equal(r.sourcePort, 51034);
  t.notOk(r.sourcePortAssumed);
  t.match(r.checks, [
    { layer: 'sg', instance: 'web', direction: 'ingress', decision: 'allow' },
    { layer: 'nacl', path: 'request', subnet: 'subnet-app', networkAclId: 'acl-app', direction: 'ingress', ruleNumber: 100, action: 'allow', decision: 'allow' },
    { layer: 'nacl', path: 'reply', subnet: 'subnet-app', networkAclId: 'acl-app', direction: 'egress', ruleNumber: '*', action: 'deny', decision: 'deny', packetPort: 51034 },
  ]);
  t.equal(r.checks.length, 3);
  const near = r.checks[2]?.nearMisses[0];
  t.match(near, { respect: 'port', groupId: 'acl-app', ruleId: '100' });
  t.equal(near?.rule, 'egress rule 100 allows tcp/80 to 0.0.0.0/0, but the reply goes to port 51034: allow 1024-65535 (the clients\' ephemeral ports)');
  t.match(r.reason, /network ACL acl-app \(subnet-app\) egress rule \* \(no entry matched\) denies the reply to port 51034: the client times out/);
  const text = formatExplain(r);
  t.match(text, /nacl reply acl-app \(subnet-app, web\) egress: deny by rule \* \(reply to 51034\)/);
  // JSON round trip keeps the SPEC §7 keys.
  const j = JSON.parse(JSON.stringify(r)) as { checks: Record<string, unknown>[] };
  t.same(Object.keys(j.checks[2]!).filter((k) => ['layer', 'path', 'subnet', 'networkAclId', 'ruleNumber', 'action'].includes(k)).sort(),
    ['action', 'layer', 'networkAclId', 'path', 'ruleNumber', 'subnet']);
});

t.test('no client port given: the ephemeral range is checked, the first denied port reported', async (t) => {
  const m = loadConfigText(CFG(EG80 + '\n      - { ruleNumber: 110, egress: true, protocol: tcp, ports: 1024-40000, cidr: 0.0.0.0/0, action: allow }'), 'x.yaml');
  const r = explainFlow(m, { from: '127.0.0.1', to: 'web', protocol: 'tcp', port: 443 });
  t.equal(r.decision, 'deny');
  t.equal(r.sourcePort, 40001, 'the first port of 32768-60999 the NACL denies');
  t.equal(r.sourcePortAssumed, '32768-60999');
  const ok = explainFlow(loadConfigText(CFG(EGEPH), 'x.yaml'), { from: '127.0.0.1', to: 'web', protocol: 'tcp', port: 443 });
  t.equal(ok.decision, 'allow');
  t.match(ok.reason, /the network ACLs pass the request and the replies to port 32768 \(every port of 32768-60999\)/);
  t.match(ok.checks[2], { path: 'reply', ruleNumber: 110, action: 'allow' });
});

t.test('a deny numbered before an allow: the deny decides, the allow is an "order" near miss', async (t) => {
  const m = loadConfigText(CFG(EGEPH, '      - { ruleNumber: 50, egress: false, protocol: all, cidr: 127.0.0.5/32, action: deny }\n'), 'x.yaml');
  const r = explainFlow(m, { from: '127.0.0.5', to: 'web', protocol: 'tcp', port: 443, sourcePort: 40000 });
  t.equal(r.decision, 'deny');
  t.match(r.checks[1], { path: 'request', direction: 'ingress', ruleNumber: 50, action: 'deny' });
  t.match(r.checks[1]?.nearMisses, [{ respect: 'order', ruleId: '100' }]);
  t.match(r.checks[1]?.nearMisses[0]?.rule, /ingress rule 100 allows tcp\/443 from 0\.0\.0\.0\/0, but ingress rule 50 denies first/);
});

t.test('between instances: both subnets\' NACLs on both paths; one subnet: none', async (t) => {
  const m = loadConfigText(CFG(EGEPH), 'x.yaml');
  const cross = explainFlow(m, { from: 'db', to: 'web', protocol: 'tcp', port: 443, sourcePort: 45000 });
  t.same(cross.checks.filter((c) => c.layer === 'nacl').map((c) => [c.path, c.instance, c.direction, c.networkAclId, c.ruleNumber]), [
    ['request', 'db', 'egress', 'acl-default-vpc-local', 100],
    ['request', 'web', 'ingress', 'acl-app', 100],
    ['reply', 'web', 'egress', 'acl-app', 110],
    ['reply', 'db', 'ingress', 'acl-default-vpc-local', 100],
  ]);
  const same = explainFlow(m, { from: 'web2', to: 'web', protocol: 'tcp', port: 443 });
  t.equal(same.checks.filter((c) => c.layer === 'nacl').length, 0, 'one subnet crosses no NACL');
});

t.test('no subnets or NACLs in the config: SG checks only, as before', async (t) => {
  const m = loadConfigText('securityGroups:\n  - id: sg-a\n    ingress: [{ protocol: tcp, ports: 22, cidr: 0.0.0.0/0 }]\ninstances:\n  - { name: a, address: 127.0.0.2, securityGroups: [sg-a] }\n', 'x.yaml');
  const r = explainFlow(m, { from: '127.0.0.1', to: 'a', protocol: 'tcp', port: 22 });
  t.equal(r.checks.length, 1);
  t.equal(r.checks[0]?.layer, 'sg');
  t.notOk('sourcePort' in r);
});

t.test('explain agrees with the data plane decision on random client ports', async (t) => {
  const m = loadConfigText(CFG(EG80 + '\n      - { ruleNumber: 105, egress: true, protocol: tcp, ports: 40000-50000, cidr: 127.0.0.0/24, action: deny }\n      - { ruleNumber: 110, egress: true, protocol: tcp, ports: 1024-65535, cidr: 0.0.0.0/0, action: allow }'), 'x.yaml');
  const p = compilePolicy(m);
  const web = p.instanceIndex.get('web')!;
  let n = 0;
  for (let i = 0; i < 2000; i++) {
    const sp = Math.floor(Math.random() * 65536);
    const from = i % 2 ? '127.0.0.1' : '127.0.1.1';
    const e = explainFlow(m, { from, to: 'web', protocol: 'tcp', port: 443, sourcePort: sp }, p);
    const d = p.decideIngress4(web, 6, parseIpv4(from), sp, 443);
    if ((e.decision === 'allow') !== ((d & 1) === 1)) { t.fail(`port ${sp} from ${from}: explain ${e.decision}, decide ${d}`); break; }
    n++;
  }
  t.equal(n, 2000, 'explain and decideIngress4 agree');
});
