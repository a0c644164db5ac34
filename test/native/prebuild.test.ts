// scripts/prebuild.mjs (npm's prepack): what goes into prebuilds/linux-x64/ of the package.
// Every .node addon of build/Release (tagged NAME.napi.glibc.node for node-gyp-build) and the
// executable sgemu-netd (the capability helper, when binding.gyp builds it); nothing else.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const script = join(process.cwd(), 'scripts', 'prebuild.mjs');
const addon = join(process.cwd(), 'build', 'Release', 'sgemu_native.node');

t.test('copies addons and sgemu-netd, nothing else', { skip: !existsSync(addon) && 'needs a source build' }, async (t) => {
  const dir = t.testdir({ scripts: {}, build: { Release: { 'obj.target': {}, 'sgemu_native.node': '', 'sgemu-netd': '#!/bin/sh\n', 'other-tool': '#!/bin/sh\n', 'x.o': '' } } });
  copyFileSync(script, join(dir, 'scripts', 'prebuild.mjs'));
  copyFileSync(addon, join(dir, 'build', 'Release', 'sgemu_native.node'));
  chmodSync(join(dir, 'build', 'Release', 'sgemu-netd'), 0o755);
  chmodSync(join(dir, 'build', 'Release', 'other-tool'), 0o755);
  const r = spawnSync(process.execPath, [join(dir, 'scripts', 'prebuild.mjs')], { encoding: 'utf8', timeout: 30_000 });
  t.equal(r.status, 0, r.stderr);
  const out = join(dir, 'prebuilds', `${process.platform}-${process.arch}`);
  t.same(readdirSync(out).sort(), ['sgemu-netd', 'sgemu_native.napi.glibc.node']);
  t.equal(statSync(join(out, 'sgemu-netd')).mode & 0o777, 0o755, 'the helper stays executable');
  t.match(r.stdout, /sgemu_native\.napi\.glibc\.node \(\d+ bytes\)/);
  t.match(r.stdout, /sgemu-netd \(\d+ bytes\)/);
  // A non-executable sgemu-netd is not an artifact; a rerun replaces the directory.
  chmodSync(join(dir, 'build', 'Release', 'sgemu-netd'), 0o644);
  spawnSync(process.execPath, [join(dir, 'scripts', 'prebuild.mjs')], { encoding: 'utf8', timeout: 30_000 });
  t.same(readdirSync(out), ['sgemu_native.napi.glibc.node']);
});

t.test('no addon to ship: exit 1 unless SGEMU_PACK_WITHOUT_PREBUILDS=1', async (t) => {
  const dir = t.testdir({ scripts: {}, build: { Release: {} } });
  copyFileSync(script, join(dir, 'scripts', 'prebuild.mjs'));
  // build-addon.mjs is missing in this copy, so the build attempt fails fast.
  const env = { ...process.env, SGEMU_PACK_WITHOUT_PREBUILDS: '' };
  const r = spawnSync(process.execPath, [join(dir, 'scripts', 'prebuild.mjs')], { encoding: 'utf8', env, timeout: 30_000 });
  t.equal(r.status, 1);
  t.match(r.stderr, /no addon in .* after node-gyp rebuild/);
  const ok = spawnSync(process.execPath, [join(dir, 'scripts', 'prebuild.mjs')], { encoding: 'utf8', env: { ...env, SGEMU_PACK_WITHOUT_PREBUILDS: '1' }, timeout: 30_000 });
  t.equal(ok.status, 0);
});
