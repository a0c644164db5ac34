#!/usr/bin/env node
// After tsc: make the CLI executable and copy non-TS assets (the demo config, the web dashboard's
// page, script and style in control/ui) next to the JS.
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
const root = new URL('..', import.meta.url).pathname;
if (existsSync(root + 'dist/cli/main.js')) chmodSync(root + 'dist/cli/main.js', 0o755);
for (const dir of ['config', 'control', 'control/ui']) {
  if (!existsSync(root + 'src/' + dir)) continue;
  for (const f of readdirSync(root + 'src/' + dir)) {
    if (/\.(ya?ml|json|html|css)$/.test(f) || (dir === 'control/ui' && f.endsWith('.js'))) {
      mkdirSync(root + 'dist/' + dir, { recursive: true });
      copyFileSync(root + 'src/' + dir + '/' + f, root + 'dist/' + dir + '/' + f);
    }
  }
}
