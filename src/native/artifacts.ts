// Where sgemu's native artifacts are: the N-API addon and the executables built by binding.gyp
// (the capability helper sgemu-netd).
// Owns: the lookup order, the same for every artifact:
//   1. build/Release/     a source build (npm's install hook ran node-gyp, or a developer did);
//   2. prebuilds/linux-x64/  what the npm package ships (scripts/prebuild.mjs copies it there
//      before `npm pack`): built on linux-x64 with glibc, loaded where no compiler is needed.
// The addon is resolved by node-gyp-build (the loader of the prebuildify ecosystem: same order,
// plus the platform/arch/libc/napi tags in the file name, and SGEMU_PREBUILD=DIR to point
// elsewhere); executables by name in the same two directories.
// Must not: load anything (sock-filter.ts loads the addon) or throw (answers null and why).

import { createRequire } from 'node:module';
import { accessSync, constants, existsSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The platform directory of prebuilds/ this machine would use (node-gyp-build's naming). */
export const PREBUILD_DIR = `${process.platform}-${process.arch}`;

/** The package root: the first ancestor of this file holding binding.gyp (src/ or dist/ layouts). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'binding.gyp'))) return dir;
    dir = dirname(dir);
  }
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..');
}

export type ArtifactOrigin = 'source build' | 'prebuilt';

export interface AddonLocation {
  path: string | null;
  /** 'source build' (build/Release), 'prebuilt' (prebuilds/<platform>-<arch>) or null. */
  origin: ArtifactOrigin | null;
  /** Why nothing was found (null when found). */
  error: string | null;
}

function originOf(path: string, root: string): ArtifactOrigin {
  const rel = relative(root, path).split(sep);
  return rel[0] === 'prebuilds' ? 'prebuilt' : 'source build';
}

/** The addon node-gyp-build would load (build/Release first, then prebuilds/linux-x64). */
export function addonLocation(): AddonLocation {
  const root = packageRoot();
  try {
    const ngb = createRequire(import.meta.url)('node-gyp-build') as { resolve(dir: string): string };
    const path = ngb.resolve(root);
    return { path, origin: originOf(path, root), error: null };
  } catch (e) {
    const msg = e instanceof Error ? e.message.split('\n')[0] ?? e.message : String(e);
    return {
      path: null, origin: null,
      error: `${msg} (looked in ${join(root, 'build', 'Release')} and ${join(root, 'prebuilds', PREBUILD_DIR)}); run \`npm rebuild sgemu\` with a C compiler`,
    };
  }
}

/**
 * The path of a native executable built by binding.gyp (e.g. 'sgemu-netd'): build/Release/NAME,
 * else prebuilds/<platform>-<arch>/NAME; null when neither exists and is executable.
 */
export function nativeArtifactPath(name: string): string | null {
  if (name === '' || name.includes('/') || name.includes('\0') || name === '.' || name === '..') return null;
  const root = packageRoot();
  for (const dir of [join(root, 'build', 'Release'), join(root, 'prebuilds', PREBUILD_DIR)]) {
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch { /* next */ }
  }
  return null;
}

/** Where a found artifact came from, for doctor: 'source build' or 'prebuilt'. */
export function artifactOrigin(path: string): ArtifactOrigin {
  return originOf(path, packageRoot());
}
