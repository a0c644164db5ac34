#!/usr/bin/env node
// After tsc: make the CLI executable, copy non-TS assets (the demo config, the web dashboard's
// page, script and style in control/ui) next to the JS, and write sgemu.schema.json (the JSON
// Schema of sgemu.yaml, generated from src/config/schema.ts, shipped in the package root; see
// src/cli/schema-line.ts).
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
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
const { version } = JSON.parse(readFileSync(root + 'package.json', 'utf8'));
const { configJsonSchema } = await import(root + 'dist/config/schema.js');
writeFileSync(root + 'sgemu.schema.json', JSON.stringify(configJsonSchema(version), null, 2) + '\n');
