// Hostile and broken input: nothing but ConfigErrors ever comes out, each with a clear code.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfigFile, loadConfigText } from '../../src/config/load.js';
import { ConfigErrors } from '../../src/model/errors.js';

/** Runs fn; returns the ConfigErrors codes, failing the test on any other throw or on success. */
function codesOf(t: Test, fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigErrors) {
      t.ok(e.errors.length > 0, 'at least one error');
      for (const err of e.errors) t.ok(err.message.length > 0 && !/\n\s+at /.test(err.message), 'no stack trace in the message');
      return e.errors.map((x) => x.code);
    }
    t.fail(`threw ${e instanceof Error ? e.constructor.name + ': ' + e.message : String(e)}`);
    return [];
  }
  t.fail('loaded without an error');
  return [];
}

t.test('missing file → FileNotFound, a directory → FileUnreadable; path "", line 0, col 0', async (t) => {
  const dir = t.testdir({});
  let e: unknown;
  try { loadConfigFile(join(dir, 'nope.yaml')); } catch (x) { e = x; }
  t.ok(e instanceof ConfigErrors);
  if (e instanceof ConfigErrors) t.same(e.errors.map((x) => [x.code, x.path, x.line, x.column]), [['FileNotFound', '', 0, 0]]);
  t.same(codesOf(t, () => loadConfigFile(dir)), ['FileUnreadable']);
  t.same(codesOf(t, () => loadConfigFile(join(dir, 'nope.yaml', 'deeper'))), ['FileNotFound']);
});

t.test('garbage bytes → ConfigNotText (from a file and from text)', async (t) => {
  const dir = t.testdir({});
  const bin = join(dir, 'garbage.yaml');
  // Deterministic enough: random bytes almost surely hold a NUL or invalid UTF-8; force both.
  writeFileSync(bin, Buffer.concat([Buffer.from([0xff, 0xfe, 0x00]), randomBytes(4096)]));
  t.same(codesOf(t, () => loadConfigFile(bin)), ['ConfigNotText']);
  t.same(codesOf(t, () => loadConfigText('region: us-east-1\nx: "\u0000\u0001"\n', 'x.yaml')), ['ConfigNotText']);
  for (let i = 0; i < 20; i++) {
    const codes = codesOf(t, () => loadConfigText(randomBytes(512).toString('latin1'), 'r.yaml'));
    t.ok(codes.length > 0);
  }
});

t.test('a file over 8 MiB → ConfigTooLarge, without parsing it', async (t) => {
  const dir = t.testdir({});
  const big = join(dir, 'big.yaml');
  writeFileSync(big, '# ' + 'x'.repeat(9 * 1024 * 1024) + '\n');
  const start = Date.now();
  t.same(codesOf(t, () => loadConfigFile(big)), ['ConfigTooLarge']);
  t.same(codesOf(t, () => loadConfigText('#'.repeat(9 * 1024 * 1024), 'big.yaml')), ['ConfigTooLarge']);
  t.ok(Date.now() - start < 5000, 'fast');
});

t.test('10000-deep nesting → ConfigTooDeep (flow, block and JSON)', async (t) => {
  const n = 10000;
  t.same(codesOf(t, () => loadConfigText('['.repeat(n) + ']'.repeat(n), 'deep.yaml')), ['ConfigTooDeep']);
  t.same(codesOf(t, () => loadConfigText('a: ' + '{b: '.repeat(n) + '1' + '}'.repeat(n), 'deep.yaml')), ['ConfigTooDeep']);
  t.same(codesOf(t, () => loadConfigText('{"a":' + '['.repeat(n) + ']'.repeat(n) + '}', 'deep.json')), ['ConfigTooDeep']);
  let block = '';
  for (let i = 0; i < 200; i++) block += ' '.repeat(i) + `k${i}:\n`;
  t.same(codesOf(t, () => loadConfigText(block, 'deep.yaml')), ['ConfigTooDeep']);
});

t.test('alias expansion bombs stay bounded', async (t) => {
  let text = 'a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n';
  for (let i = 1; i < 9; i++) text += `a${i}: &a${i} [${Array.from({ length: 10 }, () => `*a${i - 1}`).join(', ')}]\n`;
  const start = Date.now();
  const codes = codesOf(t, () => loadConfigText(text, 'bomb.yaml'));
  t.ok(codes.includes('ConfigTooLarge') || codes.includes('InvalidYaml') || codes.includes('UnknownField'), codes.join(','));
  t.ok(Date.now() - start < 30000, "bounded time (generous: the suite runs files in parallel on 2 cores)");
});

t.test('odd but harmless YAML: anchors, comments, multiple spellings', async (t) => {
  const m = loadConfigText(`
base: &rule { protocol: tcp, ports: 22 }
`.replace('base: &rule { protocol: tcp, ports: 22 }\n', '') + `securityGroups:
  - id: sg-a
    ingress:
      - &ssh { protocol: tcp, ports: 22, cidr: 10.0.0.0/8 }
  - id: sg-b
    ingress:
      - *ssh
`, 'x.yaml');
  t.equal(m.groups.length, 3);
  t.same(codesOf(t, () => loadConfigText('a: 1\n---\nb: 2\n', 'multi.yaml')), ['InvalidYaml']);
  t.same(codesOf(t, () => loadConfigText('[1, 2]', 'x.json')), ['InvalidConfig']);
  // JSON is read as YAML (a superset), so a trailing comma in a flow mapping is accepted.
  t.equal(loadConfigText('{"region": "eu-west-1",}', 'x.json').region, 'eu-west-1');
});

t.test('wrong types anywhere never crash the loader', async (t) => {
  const shapes = ['null', '1', '"s"', 'true', '[]', '[1, "x", null, [], {}]', '{}', '{a: 1}', '[{}]', '[[1]]', '[{ id: 1, ingress: 5, egress: "x" }]'];
  const keys = ['region', 'accountId', 'vpcs', 'prefixLists', 'securityGroups', 'instances', 'addresses', 'quotas'];
  for (const k of keys) {
    for (const s of shapes) {
      try {
        loadConfigText(`${k}: ${s}\n`, 'x.yaml');
      } catch (e) {
        if (!(e instanceof ConfigErrors)) t.fail(`${k}: ${s} threw ${String(e)}`);
        else if (e.errors.some((x) => x.code === 'InternalError')) t.fail(`${k}: ${s}: ${e.message}`);
      }
    }
  }
  const nested = ['protocol', 'ports', 'cidr', 'groups', 'prefixLists', 'icmpType', 'description'];
  for (const k of nested) {
    for (const s of shapes) {
      try {
        loadConfigText(`securityGroups:\n  - id: sg-a\n    ingress:\n      - { protocol: tcp, ports: 1, cidr: 0.0.0.0/0, ${k}: ${s} }\n`, 'x.yaml');
      } catch (e) {
        if (!(e instanceof ConfigErrors) || e.errors.some((x) => x.code === 'InternalError')) t.fail(`${k}: ${s} threw ${String(e)}`);
      }
    }
  }
  for (const k of ['name', 'id', 'address', 'address6', 'securityGroups', 'connectionTracking', 'services', 'outbound', 'vpc']) {
    for (const s of shapes) {
      try {
        loadConfigText(`instances:\n  - { name: a, address: 127.0.0.2, ${k}: ${s} }\n`, 'x.yaml');
      } catch (e) {
        if (!(e instanceof ConfigErrors) || e.errors.some((x) => x.code === 'InternalError')) t.fail(`${k}: ${s} threw ${String(e)}`);
      }
    }
  }
  t.pass('done');
});
