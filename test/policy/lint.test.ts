// lintModel on hand-built models: each id fires on its case and stays quiet on the twin.
import t from 'tap';
import { formatFinding, lintModel, type Finding } from '../../src/policy/lint.js';
import { PROTO_ALL, PROTO_TCP, PROTO_UDP } from '../../src/model/types.js';
import { group, instance, model } from './model-fixture.js';

const ids = (fs: Finding[]): string[] => fs.map((f) => f.id);
const only = (fs: Finding[], id: string): Finding[] => fs.filter((f) => f.id === id);

t.test('SG001 world SSH/RDP (v4, v6, ranges); narrow twin is clean', async (t) => {
  const m = model([
    group('sg-a', [[PROTO_TCP, 22, '0.0.0.0/0'], [PROTO_TCP, [3000, 4000], '::/0'], [PROTO_TCP, 22, '10.0.0.0/8']]),
  ], [instance('i1', '127.0.0.10', ['sg-a'])]);
  const f = only(lintModel(m), 'SG001');
  t.equal(f.length, 2);
  t.match(f[0], { severity: 'high', groupId: 'sg-a', message: /SSH/ });
  t.match(f[1], { message: /RDP/ });
  t.match(f[0]?.ruleId, /^sgr-/);
});

t.test('SG002 databases, SG003 all open', async (t) => {
  const m = model([
    group('sg-db', [[PROTO_TCP, 5432, '0.0.0.0/0'], [PROTO_TCP, [6000, 6500], '0.0.0.0/0'], [PROTO_TCP, 3306, '10.0.0.0/8']]),
    group('sg-open', [[PROTO_ALL, -1, '0.0.0.0/0']]),
    group('sg-ports', [[PROTO_UDP, [0, 65535], '::/0']]),
  ], [instance('i1', '127.0.0.10', ['sg-db', 'sg-open', 'sg-ports'])]);
  const fs = lintModel(m);
  t.same(only(fs, 'SG002').map((f) => f.message.split(' ')[0]), ['PostgreSQL', 'Redis']);
  t.same(only(fs, 'SG003').map((f) => f.groupId), ['sg-open', 'sg-ports']);
  t.ok(only(fs, 'SG001').some((f) => f.groupId === 'sg-open'));
});

t.test('SG004 shadowed rule; SG005 duplicate across groups; SG006 ssh mixed', async (t) => {
  const m = model([
    group('sg-a', [[PROTO_TCP, [80, 90], '10.0.0.0/8'], [PROTO_TCP, 85, '10.1.0.0/16'], [PROTO_TCP, 443, '10.0.0.0/8']]),
    group('sg-b', [[PROTO_TCP, 443, '10.0.0.0/8'], [PROTO_TCP, 22, '10.0.0.1/32']]),
  ], [instance('i1', '127.0.0.10', ['sg-a', 'sg-b'])]);
  const fs = lintModel(m);
  const s4 = only(fs, 'SG004');
  t.equal(s4.length, 1);
  t.match(s4[0]?.message, /tcp\/85 from 10\.1\.0\.0\/16" is shadowed by "sg-a allows tcp\/80-90 from 10\.0\.0\.0\/8"/);
  const s5 = only(fs, 'SG005');
  t.equal(s5.length, 1);
  t.match(s5[0], { severity: 'low', instance: 'i1', groupId: 'sg-b' });
  const s6 = only(fs, 'SG006');
  t.match(s6, [{ severity: 'medium', groupId: 'sg-b' }]);
  t.notOk(ids(fs).includes('SG001'));
});

t.test('SG007 unattached, SG008 descriptions; implicit rules and default groups skipped', async (t) => {
  const m = model([
    group('sg-used', [[PROTO_TCP, 80, '10.0.0.0/8', '']]),
    group('sg-spare', [], null, { description: '' }),
    group('sg-default', [], null, { isDefault: true, name: 'default', description: 'default VPC security group' }),
  ], [instance('i1', '127.0.0.10', ['sg-used'])]);
  const fs = lintModel(m);
  t.same(only(fs, 'SG007').map((f) => f.groupId), ['sg-spare']);
  t.same(only(fs, 'SG008').map((f) => f.groupId).sort(), ['sg-spare', 'sg-used']);
  t.ok(fs.every((f) => f.severity === 'info'));
});

t.test('clean model: no findings; format', async (t) => {
  const m = model([group('sg-a', [[PROTO_TCP, 443, '10.0.0.0/8']])], [instance('i1', '127.0.0.10', ['sg-a'])]);
  t.same(lintModel(m), []);
  t.equal(formatFinding({ id: 'SG001', severity: 'high', path: 'securityGroups[0].ingress[0]', line: 3, column: 9, message: 'm' }),
    'HIGH SG001 securityGroups[0].ingress[0] 3:9 m');
  t.equal(formatFinding({ id: 'SG007', severity: 'info', groupId: 'sg-x', message: 'm' }), 'INFO SG007 sg-x m');
});
