// `sgemu check`: output formats and exit codes, run in-process with stdout captured.
import t, { type Test } from 'tap';
import { join } from 'node:path';

const FIXTURES = new URL('../config/fixtures/', import.meta.url).pathname;
const check = (await import('../../src/cli/check.js')).default;

/** Runs the command with process.stdout.write captured; restores it even on failure. */
async function run(t: Test, argv: string[]): Promise<{ code: number; out: string }> {
  const original = process.stdout.write.bind(process.stdout);
  let out = '';
  const restore = (): void => { process.stdout.write = original; };
  t.teardown(restore);
  process.stdout.write = ((chunk: string | Uint8Array): boolean => {
    out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return true;
  }) as typeof process.stdout.write;
  try {
    const code = await check.run(argv);
    return { code, out };
  } finally {
    restore();
  }
}

const BAD = `securityGroups:
  - id: sg-x
    ingress:
      - { protocol: tcp, ports: "90-80", cidr: 0.0.0.0/0 }
      - { protocol: tcp, ports: 22, cidr: 300.1.1.1/8 }
`;

t.test('valid config: summary line, exit 0', async (t) => {
  const file = FIXTURES + 'rich.yaml';
  const r = await run(t, ['-c', file]);
  t.equal(r.code, 0);
  t.match(r.out, /^ok: .*rich\.yaml: 2 VPCs, 7 groups, \d+ rules, 5 instances\n$/);
});

t.test('valid config --json: { valid: true, errors: [] }', async (t) => {
  const r = await run(t, ['--config', FIXTURES + 'rich.json', '--json']);
  t.equal(r.code, 0);
  t.same(JSON.parse(r.out), { valid: true, errors: [] });
});

t.test('invalid config: every error as CODE path line:col message, exit 2', async (t) => {
  const dir = t.testdir({ 'bad.yaml': BAD });
  const r = await run(t, ['-c', join(dir, 'bad.yaml')]);
  t.equal(r.code, 2);
  const lines = r.out.trimEnd().split('\n');
  t.equal(lines.length, 2);
  t.match(lines[0], /^InvalidParameterValue securityGroups\[0\]\.ingress\[0\]\.ports 4:33 "90-80": start is above end; use "80-90"$/);
  t.match(lines[1], /^InvalidParameterValue securityGroups\[0\]\.ingress\[1\]\.cidr 5:43 .*300\.1\.1\.1\/8/);
});

t.test('invalid config --json: { valid: false, errors: [{code, path, line, column, message}] }, exit 2', async (t) => {
  const dir = t.testdir({ 'bad.yaml': BAD });
  const r = await run(t, ['-c', join(dir, 'bad.yaml'), '--json']);
  t.equal(r.code, 2);
  const j = JSON.parse(r.out) as { valid: boolean; errors: Record<string, unknown>[] };
  t.equal(j.valid, false);
  t.equal(j.errors.length, 2);
  t.same(Object.keys(j.errors[0] ?? {}).sort(), ['code', 'column', 'line', 'message', 'path']);
  t.match(j.errors[0], { code: 'InvalidParameterValue', path: 'securityGroups[0].ingress[0].ports', line: 4, column: 33 });
});

t.test('missing file: FileNotFound line, exit 2, no stack trace', async (t) => {
  const dir = t.testdir({});
  const r = await run(t, ['-c', join(dir, 'nope.yaml')]);
  t.equal(r.code, 2);
  t.match(r.out, /^FileNotFound \. 0:0 config file .*nope\.yaml does not exist/);
  t.notMatch(r.out, /\n\s+at .+:\d+:\d+/);
  const j = await run(t, ['-c', join(dir, 'nope.yaml'), '--json']);
  t.equal(j.code, 2);
  t.match(JSON.parse(j.out), { valid: false, errors: [{ code: 'FileNotFound', path: '', line: 0, column: 0 }] });
});

t.test('bad usage is a UsageError (main maps it to exit 2); usage text documents the command', async (t) => {
  await t.rejects(check.run(['--nope']), { code: 'Usage' });
  t.match(check.usage, /sgemu check \[-c FILE\] \[--json\]/);
  t.match(check.usage, /CODE path line:col message/);
  t.equal(check.name, 'check');
});
