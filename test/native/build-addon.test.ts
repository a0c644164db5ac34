// scripts/build-addon.mjs must never fail `npm install`: a failing node-gyp gives one warning and exit 0.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const script = join(process.cwd(), 'scripts', 'build-addon.mjs');

t.test('a failing node-gyp: warning, exit 0', async (t) => {
  const dir = t.testdir({});
  const fake = join(dir, 'node-gyp.js');
  writeFileSync(fake, 'process.stderr.write("fake node-gyp: no compiler\\n"); process.exit(1);\n');
  const r = spawnSync(process.execPath, [script], { env: { ...process.env, npm_config_node_gyp: fake, SGEMU_BUILD_FROM_SOURCE: '1' }, encoding: 'utf8', timeout: 20_000 });
  t.equal(r.status, 0, 'install never fails');
  t.match(r.stderr, /sgemu: native addon not built \(node-gyp rebuild exited with 1\); kernel socket filters disabled; see `sgemu doctor`/);
  t.equal(r.stderr.match(/sgemu: native addon not built/g)?.length, 1, 'one warning');
});

// Issue 13: a prebuilt addon the package ships is used when it loads (no compiler needed);
// one that does not load (wrong platform, corrupt) falls back to the source build.
t.test('a loadable prebuilt addon: no build, one line saying so', { skip: !existsSync('build/Release/sgemu_native.node') && 'needs a source build to copy' }, async (t) => {
  const dir = t.testdir({ scripts: {}, prebuilds: { [`${process.platform}-${process.arch}`]: {} } });
  copyFileSync(script, join(dir, 'scripts', 'build-addon.mjs'));
  const pre = join(dir, 'prebuilds', `${process.platform}-${process.arch}`, 'sgemu_native.napi.glibc.node');
  copyFileSync('build/Release/sgemu_native.node', pre);
  const fake = join(dir, 'node-gyp.js');
  writeFileSync(fake, 'process.stderr.write("fake node-gyp ran\\n"); process.exit(1);\n');
  const env = { ...process.env, npm_config_node_gyp: fake, SGEMU_BUILD_FROM_SOURCE: '' };
  const r = spawnSync(process.execPath, [join(dir, 'scripts', 'build-addon.mjs')], { env, encoding: 'utf8', timeout: 20_000 });
  t.equal(r.status, 0);
  t.match(r.stdout, /sgemu: using the prebuilt native addon prebuilds\/linux-x64\/sgemu_native\.napi\.glibc\.node/);
  t.notMatch(r.stderr, /fake node-gyp ran/, 'node-gyp not run');
  // Corrupt: not loadable → the source build is tried (and fails here: warning, exit 0).
  writeFileSync(pre, 'not an ELF file');
  const bad = spawnSync(process.execPath, [join(dir, 'scripts', 'build-addon.mjs')], { env, encoding: 'utf8', timeout: 20_000 });
  t.equal(bad.status, 0);
  t.match(bad.stderr, /fake node-gyp ran/);
  t.match(bad.stderr, /sgemu: native addon not built/);
  // SGEMU_BUILD_FROM_SOURCE=1 builds even with a good prebuilt.
  copyFileSync('build/Release/sgemu_native.node', pre);
  const forced = spawnSync(process.execPath, [join(dir, 'scripts', 'build-addon.mjs')], { env: { ...env, SGEMU_BUILD_FROM_SOURCE: '1' }, encoding: 'utf8', timeout: 20_000 });
  t.match(forced.stderr, /fake node-gyp ran/);
});
