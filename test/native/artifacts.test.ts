// src/native/artifacts.ts: where the addon and native executables are found (issue 13):
// build/Release first, prebuilds/<platform>-<arch> second; doctor names which.
import t from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { addonLocation, nativeArtifactPath, packageRoot, artifactOrigin } from '../../src/native/artifacts.js';
import { nativeStatus } from '../../src/native/sock-filter.js';

const root = packageRoot();

t.test('the package root holds binding.gyp', async (t) => {
  t.ok(existsSync(join(root, 'binding.gyp')));
});

t.test('a source build wins over the prebuilt copy', { skip: !existsSync(join(root, 'build/Release/sgemu_native.node')) && 'no source build' }, async (t) => {
  const a = addonLocation();
  t.equal(a.path, join(root, 'build', 'Release', 'sgemu_native.node'));
  t.equal(a.origin, 'source build');
  const s = nativeStatus();
  t.equal(s.loaded, true);
  t.equal(s.origin, 'source build');
  t.equal(nativeArtifactPath('sgemu_native.node'), join(root, 'build', 'Release', 'sgemu_native.node'), 'executables are looked up by name, build/Release first');
});

t.test('origins and refused names', async (t) => {
  t.equal(artifactOrigin(join(root, 'prebuilds', 'linux-x64', 'sgemu-netd')), 'prebuilt');
  t.equal(artifactOrigin(join(root, 'build', 'Release', 'sgemu-netd')), 'source build');
  for (const bad of ['', '.', '..', '../package.json', 'a/b', 'x\0y']) t.equal(nativeArtifactPath(bad), null, JSON.stringify(bad));
  t.equal(nativeArtifactPath('no-such-helper'), null);
});
