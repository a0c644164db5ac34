// npm "install" hook: uses the prebuilt addon the package ships when it loads here, else builds
// build/Release/sgemu_native.node with node-gyp.
// Must never fail the install: without the addon sgemu runs with userland checks instead of kernel
// socket filters (see native-notes/fallbacks.md). On any failure print one warning and exit 0.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function which(cmd) {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (!dir) continue;
    const p = join(dir, cmd);
    if (existsSync(p)) return p;
  }
  return null;
}

/** How to run node-gyp: [executable, leading args]. npm puts it on PATH in scripts; else find npm's copy. */
function findNodeGyp() {
  const candidates = [];
  // npm sets npm_config_node_gyp to its bundled node-gyp.js when it runs scripts.
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return fromNpm.endsWith('.js') ? [process.execPath, [fromNpm]] : [fromNpm, []];
  const onPath = which('node-gyp');
  if (onPath) return [onPath, []];
  const npm = which('npm');
  if (npm) {
    let real = npm;
    try { real = realpathSync(npm); } catch { /* keep the link */ }
    // npm's bin is either <prefix>/bin/npm (a link) or <prefix>/lib/node_modules/npm/bin/npm-cli.js.
    candidates.push(join(dirname(real), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
    candidates.push(join(dirname(npm), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  }
  const execDir = dirname(process.execPath);
  candidates.push(join(execDir, '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  candidates.push('/usr/share/nodejs/node-gyp/bin/node-gyp.js', '/usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js');
  for (const c of candidates) if (existsSync(c)) return [process.execPath, [c]];
  return null;
}

function warn(why) {
  console.warn(`sgemu: native addon not built (${why}); kernel socket filters disabled; see \`sgemu doctor\``);
}

/**
 * The prebuilt addon the package ships for this platform (scripts/prebuild.mjs), when it loads
 * here (and this is an installed package, not a git checkout): then there is nothing to compile.
 * SGEMU_BUILD_FROM_SOURCE=1 (or npm's --build-from-source) builds anyway; a source build in
 * build/Release takes precedence at load.
 */
function usablePrebuild() {
  if (process.env.SGEMU_BUILD_FROM_SOURCE === '1' || process.env.npm_config_build_from_source === 'true') return null;
  // A git checkout builds its own sources: prebuilds/ there is a leftover of `npm pack`.
  if (existsSync(join(root, '.git'))) return null;
  const dir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  if (!existsSync(dir)) return null;
  for (const f of readdirSync(dir)) {
    if (!f.endsWith('.node')) continue;
    if (f.split('.').includes('glibc') && process.report?.getReport?.().header?.glibcVersionRuntime === undefined) continue;
    try { createRequire(import.meta.url)(join(dir, f)); return join(dir, f); } catch { /* does not load here: build */ }
  }
  return null;
}

try {
  const pre = usablePrebuild();
  if (pre) {
    console.log(`sgemu: using the prebuilt native addon ${pre.slice(root.length + 1)} (no compiler needed; \`sgemu doctor\` shows which addon is loaded)`);
    process.exit(0);
  }
  if (process.platform !== 'linux') {
    warn(`platform ${process.platform} is not linux`);
  } else {
    const gyp = findNodeGyp();
    if (!gyp) {
      warn('node-gyp not found on PATH or next to npm');
    } else {
      const [exe, pre] = gyp;
      // Use the headers installed beside node (distro packages ship them) instead of downloading.
      const args = [...pre, 'rebuild'];
      const prefix = resolve(dirname(process.execPath), '..');
      if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
      const r = spawnSync(exe, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], timeout: 300_000 });
      if (r.error) warn(`node-gyp: ${r.error.message}`);
      else if (r.status !== 0) warn(`node-gyp rebuild exited with ${r.status ?? r.signal}`);
      else if (!existsSync(join(root, 'build', 'Release', 'sgemu_native.node'))) warn('build/Release/sgemu_native.node missing after node-gyp rebuild');
    }
  }
} catch (e) {
  warn(e instanceof Error ? e.message : String(e));
}
process.exit(0);
