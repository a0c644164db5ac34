// `sgemu import`: reads the fixture files, prints a config `sgemu check` accepts, exit codes.
import t from 'tap';
import { join } from 'node:path';
import { runCommand } from '../import/cli-capture.js';
import { loadConfigText } from '../../src/config/load.js';

const importCmd = (await import('../../src/cli/import.js')).default;
const FIX = new URL('../import/fixtures/', import.meta.url).pathname;

t.test('each source prints a loadable config, exit 0', async (t) => {
  for (const [from, file, extra] of [['aws', 'aws-sgs.json', ['--instances', FIX + 'aws-instances.json']], ['cloudformation', 'cfn.yaml', []], ['terraform', 'terraform.json', []]] as const) {
    const r = await runCommand(t, importCmd, ['--from', from, FIX + file, ...extra]);
    t.equal(r.code, 0, from);
    t.match(r.out, /^# yaml-language-server: \$schema=\S+sgemu\.schema\.json\n# sgemu config imported from /, from);
    if (from !== 'terraform') t.match(r.err, /warning/, from);
    const m = loadConfigText(r.out, `${from}.yaml`);
    t.ok(m.groups.length > 1, from);
  }
  const j = await runCommand(t, importCmd, ['--from', 'terraform', FIX + 'terraform.json', '--json']);
  t.ok(Array.isArray((JSON.parse(j.out) as { securityGroups: unknown[] }).securityGroups));
});

t.test('bad input: exit 2 through UsageError', async (t) => {
  const dir = t.testdir({ 'bad.json': '{ not json', 'other.json': '{"a": 1}' });
  await t.rejects(runCommand(t, importCmd, ['--from', 'aws', join(dir, 'bad.json')]), { code: 'Usage' });
  await t.rejects(runCommand(t, importCmd, ['--from', 'aws', join(dir, 'other.json')]), { code: 'Usage' });
  await t.rejects(runCommand(t, importCmd, ['--from', 'gcp', join(dir, 'other.json')]), { code: 'Usage' });
  await t.rejects(runCommand(t, importCmd, ['--from', 'aws', join(dir, 'missing.json')]), { code: 'Usage' });
  await t.rejects(runCommand(t, importCmd, ['--from', 'aws']), { code: 'Usage' });
  await t.rejects(runCommand(t, importCmd, ['--from', 'terraform', FIX + 'terraform.json', '--instances', FIX + 'aws-instances.json']), { code: 'Usage' });
});
