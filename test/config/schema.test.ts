// The JSON Schema of sgemu.yaml (src/config/schema.ts → sgemu.schema.json) against the loader, the
// authority: every config the loader accepts validates against the schema (fixtures, the demo,
// import outputs, what the EC2 API writes to state files); configs that are wrong in a way a
// schema can tell (unknown field, wrong type, pattern, range, missing field) are rejected by both.
// Semantics a schema cannot see (references, quotas, duplicates, CIDR text) are the loader's
// alone and are not tested here.

import t from 'tap';
import { readdirSync, readFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import YAML from 'yaml';
import { Ajv } from 'ajv';
import { configJsonSchema, CONFIG_OBJECTS, fieldsOf } from '../../src/config/schema.js';
import { loadConfigText, modelToConfigObject } from '../../src/config/load.js';
import { DEMO_CONFIG } from '../../src/control/demo.js';
import { importFile } from '../../src/cli/import.js';
import { renderText } from '../../src/import/common.js';
import { ConfigErrors } from '../../src/model/errors.js';

const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false, allowUnionTypes: true });
const validate = ajv.compile(configJsonSchema('test'));
const root = process.cwd();

function loaderAccepts(text: string, name: string): boolean {
  try { loadConfigText(text, name); return true; } catch (e) { if (e instanceof ConfigErrors) return false; throw e; }
}
function schemaAccepts(text: string): { ok: boolean; errors: string } {
  const ok = validate(YAML.parse(text) ?? {}) as boolean;
  return { ok, errors: ajv.errorsText(validate.errors) };
}

/** Every config file under test/**‍/fixtures, the demo, import outputs, state-file objects. */
function acceptedConfigs(): { name: string; text: string }[] {
  const out: { name: string; text: string }[] = [{ name: 'demo', text: DEMO_CONFIG }];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(ya?ml|json)$/.test(e.name) && p.includes('/fixtures/')) out.push({ name: p.slice(root.length + 1), text: readFileSync(p, 'utf8') });
    }
  };
  walk(join(root, 'test'));
  const imp = join(root, 'test', 'import', 'fixtures');
  out.push({ name: 'import aws', text: renderText(importFile('aws', join(imp, 'aws-sgs.json'), join(imp, 'aws-instances.json')), 'aws', 'aws-sgs.json') });
  out.push({ name: 'import cloudformation', text: renderText(importFile('cloudformation', join(imp, 'cfn.yaml')), 'cloudformation', 'cfn.yaml') });
  out.push({ name: 'import terraform', text: renderText(importFile('terraform', join(imp, 'terraform.json')), 'terraform', 'terraform.json') });
  return out;
}

t.test('every config the loader accepts validates against the schema', async (t) => {
  let n = 0;
  for (const { name, text } of acceptedConfigs()) {
    if (!loaderAccepts(text, name)) continue;
    n++;
    const r = schemaAccepts(text);
    t.ok(r.ok, `${name}: ${r.errors}`);
    // The config object the EC2 API writes to its state file (explicit rule ids, default groups).
    const obj = modelToConfigObject(loadConfigText(text, name));
    t.ok(validate(obj), `${name} as a state-file object: ${ajv.errorsText(validate.errors)}`);
    t.ok(loaderAccepts(JSON.stringify(obj), name), `${name}: the state-file object loads again`);
  }
  t.ok(n >= 6, `${n} accepted configs checked`);
});

const BASE = `securityGroups:
  - id: sg-a
    ingress: [ { protocol: tcp, ports: 80, cidr: 0.0.0.0/0 } ]
instances:
  - { name: a, address: 127.0.0.10, securityGroups: [sg-a], services: [ { protocol: tcp, port: 80, backend: "127.0.0.1:3000" } ] }
`;

/** [why, config]: wrong in a way a schema can tell. */
const INVALID: [string, string][] = [
  ['unknown top-level field', BASE + 'subnetz: []\n'],
  ['unknown rule field', BASE.replace('ports: 80,', 'port: 80,')],
  ['group id pattern', BASE.replace(/sg-a/g, 'web')],
  ['ports text', BASE.replace('ports: 80', 'ports: "80-x"')],
  ['ports range', BASE.replace('ports: 80', 'ports: 70000')],
  ['protocol name', BASE.replace('protocol: tcp, ports', 'protocol: tcpp, ports')],
  ['protocol number', BASE.replace('protocol: tcp, ports', 'protocol: 256, ports')],
  ['service port range', BASE.replace('port: 80, backend', 'port: 0, backend')],
  ['service protocol', BASE.replace('{ protocol: tcp, port: 80', '{ protocol: icmp, port: 80')],
  ['missing service backend', BASE.replace(', backend: "127.0.0.1:3000"', '')],
  ['missing instance address', BASE.replace(' address: 127.0.0.10,', '')],
  ['instance name pattern', BASE.replace('name: a,', 'name: "-a",')],
  ['instance id pattern', BASE.replace('name: a,', 'name: a, id: i-XYZ,')],
  ['group without id', BASE.replace('  - id: sg-a\n', '  - name: a\n').replace('securityGroups: [sg-a]', 'securityGroups: [a]')],
  ['udpTimeout range', BASE.replace('name: a,', 'name: a, connectionTracking: { udpTimeout: 10 },')],
  ['tcpEstablishedTimeout range', BASE.replace('name: a,', 'name: a, connectionTracking: { tcpEstablishedTimeout: 500000 },')],
  ['quota range', BASE + 'quotas: { groupsPerInstance: 17 }\n'],
  ['icmpType range', BASE.replace('{ protocol: tcp, ports: 80, cidr: 0.0.0.0/0 }', '{ protocol: icmp, icmpType: 300, cidr: 0.0.0.0/0 }')],
  ['rule id pattern', BASE.replace('cidr: 0.0.0.0/0 }', 'cidr: 0.0.0.0/0, id: sgr-1 }')],
  ['region pattern', BASE + 'region: mars\n'],
  ['vpc id pattern', BASE + 'vpcs: [ { id: net-1 } ]\n'],
  ['prefix list id pattern', BASE + 'prefixLists: [ { id: office, entries: [10.0.0.0/8] } ]\n'],
  ['prefix list without entries', BASE + 'prefixLists: [ { id: pl-a } ]\n'],
  ['securityGroups not a list', BASE.replace('securityGroups:\n  - id: sg-a\n    ingress: [ { protocol: tcp, ports: 80, cidr: 0.0.0.0/0 } ]\n', 'securityGroups: { id: sg-a }\n')],
  ['ingress not a list', BASE.replace('ingress: [ { protocol: tcp, ports: 80, cidr: 0.0.0.0/0 } ]', 'ingress: { protocol: tcp }')],
  ['default not a boolean', BASE.replace('  - id: sg-a\n', '  - id: sg-a\n    default: yes\n')],
  ['addresses value not a string', BASE + 'addresses: { 127.0.0.1: [1] }\n'],
  ['top level a list', '- 1\n'],
];

t.test('invalid configs: the loader and the schema both reject them', async (t) => {
  t.ok(loaderAccepts(BASE, 'base') && schemaAccepts(BASE).ok, 'the base config is valid for both');
  for (const [why, text] of INVALID) {
    t.notOk(loaderAccepts(text, why), `loader rejects: ${why}`);
    t.notOk(schemaAccepts(text).ok, `schema rejects: ${why}`);
  }
});

t.test('the loader reads its field lists from the schema', async (t) => {
  // A field the schema lists is known to the loader (no UnknownField), for every object.
  t.same(fieldsOf('rule'), Object.keys(CONFIG_OBJECTS.rule.properties));
  const e = (() => { try { loadConfigText(BASE.replace('ports: 80,', 'portz: 80,'), 'x'); return null; } catch (err) { return err as ConfigErrors; } })();
  t.match(e?.errors[0]?.message ?? '', new RegExp(`valid fields: ${fieldsOf('rule').join(', ')}`));
});

t.test('print-config and import start with the yaml-language-server line; the schema ships', { skip: !existsSync(join(root, 'dist', 'cli', 'main.js')) && 'needs npm run build' }, async (t) => {
  const cli = join(root, 'dist', 'cli', 'main.js');
  const demo = spawnSync(process.execPath, [cli, 'demo', '--print-config'], { encoding: 'utf8', cwd: root, timeout: 20_000 });
  t.equal(demo.status, 0);
  t.equal(demo.stdout.split('\n')[0], '# yaml-language-server: $schema=./sgemu.schema.json');
  const imp = spawnSync(process.execPath, [cli, 'import', '--from', 'aws', join('test', 'import', 'fixtures', 'aws-sgs.json')], { encoding: 'utf8', cwd: root, timeout: 20_000 });
  t.equal(imp.status, 0, imp.stderr);
  t.equal(imp.stdout.split('\n')[0], '# yaml-language-server: $schema=./sgemu.schema.json');
  // A fresh directory beside the others in tmpdir: never an ancestor of the package, even when the
  // repository itself was cloned under tmpdir (as CI may).
  const outside = mkdtempSync(join(tmpdir(), 'sgemu-schema-'));
  t.teardown(() => rmSync(outside, { recursive: true, force: true }));
  const elsewhere = spawnSync(process.execPath, [cli, 'demo', '--print-config'], { encoding: 'utf8', cwd: outside, timeout: 20_000 });
  t.equal(elsewhere.stdout.split('\n')[0], `# yaml-language-server: $schema=${join(root, 'sgemu.schema.json')}`, 'absolute outside the package');
  const shipped = JSON.parse(readFileSync(join(root, 'sgemu.schema.json'), 'utf8')) as Record<string, unknown>;
  const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  t.same(shipped, configJsonSchema(version), 'the shipped file is the generated schema');
  // The printed config validates against the file it names.
  t.ok(ajv.compile(shipped)(YAML.parse(demo.stdout)), 'print-config output validates');
});
