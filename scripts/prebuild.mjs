#!/usr/bin/env node
// `prepack`: puts the native artifacts the npm package ships into prebuilds/<platform>-<arch>/, so
// that `npm i sgemu` on linux-x64 (glibc) needs no compiler (src/native/artifacts.ts loads them
// when there is no build/Release).
// Copies from build/Release (building it with node-gyp first when the addon is missing):
//   - every .node addon, renamed NAME.napi.glibc.node: node-gyp-build's tags, so that it is
//     loaded by any Node with N-API 8 on glibc, and skipped on musl (Alpine builds from source);
//   - every executable named sgemu-netd (the capability helper), under its own name.
// Fails (exit 1) when there is no addon to ship: a package without it installs, but silently
// needs a compiler, which is what this step exists to avoid. SGEMU_PACK_WITHOUT_PREBUILDS=1
// packs anyway (e.g. on another platform).
import { spawnSync } from 'node:child_process';
import { accessSync, constants, copyFileSync, chmodSync, existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const release = join(root, 'build', 'Release');
const target = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
const EXECUTABLES = new Set(['sgemu-netd']);

function fail(why) {
  if (process.env.SGEMU_PACK_WITHOUT_PREBUILDS === '1') {
    console.warn(`sgemu prebuild: ${why}; packing without prebuilt binaries (SGEMU_PACK_WITHOUT_PREBUILDS=1)`);
    process.exit(0);
  }
  console.error(`sgemu prebuild: ${why}. Set SGEMU_PACK_WITHOUT_PREBUILDS=1 to pack without prebuilt binaries.`);
  process.exit(1);
}

if (process.platform !== 'linux') fail(`platform ${process.platform}: prebuilt binaries are built on linux`);
const addons = () => (existsSync(release) ? readdirSync(release).filter((f) => f.endsWith('.node')) : []);
if (addons().length === 0) {
  // No source build yet: the install hook's builder (never fails; prints why).
  spawnSync(process.execPath, [join(root, 'scripts', 'build-addon.mjs')], { cwd: root, stdio: 'inherit', env: { ...process.env, SGEMU_BUILD_FROM_SOURCE: '1' } });
  if (addons().length === 0) fail(`no addon in ${release} after node-gyp rebuild`);
}

rmSync(target, { recursive: true, force: true });
mkdirSync(target, { recursive: true });
const shipped = [];
for (const f of readdirSync(release)) {
  const src = join(release, f);
  if (!statSync(src).isFile()) continue;
  let name = null;
  if (f.endsWith('.node')) name = f.replace(/\.node$/, '.napi.glibc.node');
  else if (EXECUTABLES.has(f)) {
    try { accessSync(src, constants.X_OK); name = f; } catch { /* not executable: not an artifact */ }
  }
  if (!name) continue;
  copyFileSync(src, join(target, name));
  if (!name.endsWith('.node')) chmodSync(join(target, name), 0o755);
  shipped.push(`${name} (${statSync(src).size} bytes)`);
}
// The oldest glibc the binaries need (GLIBC_x.y symbol versions), when binutils is here.
let glibc = '';
const od = spawnSync('objdump', ['-T', ...readdirSync(target).map((f) => join(target, f))], { encoding: 'utf8' });
if (od.status === 0) {
  const versions = [...od.stdout.matchAll(/GLIBC_(\d+)\.(\d+)(?:\.(\d+))?/g)].map((m) => [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)]);
  versions.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]);
  const max = versions.at(-1);
  if (max) glibc = `; needs glibc >= ${max[0]}.${max[1]}${max[2] ? '.' + max[2] : ''}`;
}
console.log(`sgemu prebuild: ${target.slice(root.length + 1)}: ${shipped.join(', ')}${glibc}`);
