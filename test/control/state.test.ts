// The durable state file: atomic save, round-trip through loadConfigText (same rule ids), the
// merge over the config file, the .bak fallback, and clear errors for corrupt files.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfigText, modelToConfigObject } from '../../src/config/load.js';
import { loadState, readStateFile, removeStaleTemps, saveState } from '../../src/control/state.js';
import { ConfigErrors } from '../../src/model/errors.js';
import type { Model } from '../../src/model/types.js';
import { one, setup, WORLD } from './ec2-helpers.js';

function codeOf(fn: () => unknown): string | undefined {
  try { fn(); } catch (e) { return e instanceof ConfigErrors ? e.errors[0]?.code : 'not ConfigErrors'; }
  return undefined;
}

const ids = (m: Model): string[] => m.groups.flatMap((g) => [g.id, ...g.ingress.map((r) => r.id), ...g.egress.map((r) => r.id)]);

t.test('no state file → null', async (t) => {
  const dir = t.testdir({});
  t.equal(loadState(join(dir, 'state.json'), loadConfigText(WORLD, 'w.yaml')), null);
});

t.test('API changes survive a restart with the same ids', async (t) => {
  const dir = t.testdir({});
  const statePath = join(dir, 'state.json');
  const { host, call } = setup(statePath);
  const c = await call({ Action: 'CreateSecurityGroup', GroupName: 'new', GroupDescription: 'x' });
  const id = one(c.body, 'groupId') ?? '';
  await call({ Action: 'AuthorizeSecurityGroupIngress', GroupId: id, 'IpPermissions.1.IpProtocol': 'tcp', 'IpPermissions.1.FromPort': 1, 'IpPermissions.1.ToPort': 2, 'IpPermissions.1.IpRanges.1.CidrIp': '10.0.0.9/8' });
  const rid = host.model.groups.find((g) => g.isDefault)?.ingress[0]?.id ?? '';
  await call({ Action: 'ModifySecurityGroupRules', GroupId: host.model.groups.find((g) => g.isDefault)?.id ?? '', 'SecurityGroupRule.1.SecurityGroupRuleId': rid, 'SecurityGroupRule.1.SecurityGroupRule.IpProtocol': 'tcp', 'SecurityGroupRule.1.SecurityGroupRule.FromPort': 22, 'SecurityGroupRule.1.SecurityGroupRule.ToPort': 22 });
  await call({ Action: 'ModifyInstanceAttribute', InstanceId: 'db', 'GroupId.1': id, 'GroupId.2': 'sg-db' });
  await call({ Action: 'RevokeSecurityGroupIngress', GroupId: 'sg-web', 'IpPermissions.1.IpProtocol': 'tcp', 'IpPermissions.1.FromPort': 8080, 'IpPermissions.1.ToPort': 8080, 'IpPermissions.1.IpRanges.1.CidrIp': '0.0.0.0/0' });
  await call({ Action: 'DeleteSecurityGroup', GroupId: 'sg-spare' });
  await call({ Action: 'CreateTags', 'ResourceId.1': rid, 'Tag.1.Key': 'k', 'Tag.1.Value': 'v' });
  const loaded = loadState(statePath, loadConfigText(WORLD, 'w.yaml'));
  t.ok(loaded);
  t.same(ids(loaded as Model), ids(host.model), 'same groups and rule ids after reload');
  t.same(loaded?.instances.find((i) => i.name === 'db')?.groupIds, [id, 'sg-db']);
  t.equal(loaded?.groups.find((g) => g.isDefault)?.ingress[0]?.id, rid, 'a modified rule keeps its id across restarts');
  t.same(readStateFile(statePath)?.extras.ruleTags[rid], { k: 'v' });
  t.same(readStateFile(statePath)?.extras.deletedGroupIds, ['sg-spare']);
  t.same(readdirSync(dir).sort(), ['state.json', 'state.json.bak'], 'no temp files left behind');

  // The config file grows a group and an instance: both appear; the deleted group stays deleted.
  const grown = WORLD.replace('instances:', `  - { id: sg-extra, name: extra }\ninstances:`) + '  - { name: cache, address: 127.0.0.12 }\n';
  const merged = loadState(statePath, loadConfigText(grown, 'w.yaml'));
  t.ok(merged?.groups.some((g) => g.id === 'sg-extra'));
  t.notOk(merged?.groups.some((g) => g.id === 'sg-spare'));
  t.ok(merged?.instances.some((i) => i.name === 'cache'));
});

t.test('atomic save; corrupt main file falls back to .bak; both corrupt → StateCorrupt', async (t) => {
  const dir = t.testdir({});
  const statePath = join(dir, 'deep', 'state.json');
  const base = loadConfigText(WORLD, 'w.yaml');
  const obj = modelToConfigObject(base);
  saveState(statePath, obj);
  saveState(statePath, obj);
  t.ok(existsSync(`${statePath}.bak`));
  writeFileSync(statePath, '{"sgemuState": 1, "config": {"securityGr');   // torn by hand
  t.same(ids(loadState(statePath, base) as Model), ids(base), 'the last good copy is used');
  writeFileSync(`${statePath}.bak`, 'garbage');
  t.equal(codeOf(() => loadState(statePath, base)), 'StateCorrupt');
  // A well-formed state that does not fit the config is an error, not a silent fallback.
  saveState(statePath, { securityGroups: [{ id: 'sg-x', ingress: [{ protocol: 'tcp', ports: 1, prefixLists: ['pl-gone'] }] }] });
  t.equal(codeOf(() => loadState(statePath, base)), 'InvalidPrefixListID.NotFound');
});

t.test('issue 17: temp files of writers killed mid-save are removed when the writer starts, only those', async (t) => {
  const dir = t.testdir({});
  const statePath = join(dir, 'state.json');
  // A pid that surely ran and is gone: a child that exited (spawnSync reaps it).
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
  t.ok(dead > 0);
  const files = {
    [`state.json.tmp-${dead}`]: '{"sgemuState": 1, "conf',      // truncated, as kill -9 leaves it
    [`state.json.tmp-${process.pid}`]: '',                       // this process, before its first save
    [`state.json.tmp-${process.ppid}`]: 'a live writer',         // another process that runs: kept
    [`state.json.tmp-1x`]: 'not a pid', [`other.json.tmp-${dead}`]: 'another file', [`state.json.bak`]: 'kept',
  };
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  t.same(removeStaleTemps(statePath).sort(), [`state.json.tmp-${dead}`, `state.json.tmp-${process.pid}`].sort());
  t.same(readdirSync(dir).sort(), [`other.json.tmp-${dead}`, 'state.json.bak', 'state.json.tmp-1x', `state.json.tmp-${process.ppid}`].sort());
  t.same(removeStaleTemps(join(dir, 'missing', 'state.json')), [], 'no directory: nothing to do');

  // The EC2 service, the file's only writer, cleans at start; its saves leave no temp behind.
  writeFileSync(join(dir, `state.json.tmp-${dead}`), 'x');
  const { svc, call } = setup(statePath);
  t.same(svc.removedTemps, [`state.json.tmp-${dead}`]);
  t.equal((await call({ Action: 'CreateSecurityGroup', GroupName: 'tmp', GroupDescription: 'd' })).status, 200);
  t.ok(existsSync(statePath), 'saved');
  t.notOk(readdirSync(dir).some((n) => n === `state.json.tmp-${dead}` || n === `state.json.tmp-${process.pid}`));
});
