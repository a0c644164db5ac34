import t from 'tap';
import { ConfigError, ConfigErrors } from '../../src/model/errors.js';

t.test('ConfigError formats as CODE path line:col message', async (t) => {
  const e = new ConfigError('InvalidParameterValue', 'securityGroups[0].ingress[0].cidr', 4, 7, 'bad');
  t.equal(e.format(), 'InvalidParameterValue securityGroups[0].ingress[0].cidr 4:7 bad');
  t.same(e.toJSON(), { code: 'InvalidParameterValue', path: 'securityGroups[0].ingress[0].cidr', line: 4, column: 7, message: 'bad' });
  const all = new ConfigErrors([e]);
  t.equal(all.code, 'InvalidParameterValue');
  t.equal(all.errors.length, 1);
});
