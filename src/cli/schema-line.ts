// The first line of every config sgemu prints (`demo --print-config`, `import`): tells editors
// with yaml-language-server (VS Code's YAML extension, Neovim, Helix…) where the JSON Schema is,
// for validation and completion. The schema is generated at build time from src/config/schema.ts
// into the package root (sgemu.schema.json, shipped in the npm package).
// The reference is relative to the working directory when the schema is below it (the usual
// `npm i -D sgemu` then `npx sgemu demo --print-config > sgemu.yaml`:
// ./node_modules/sgemu/sgemu.schema.json; yaml-language-server resolves it from the YAML file),
// else absolute.

import { isAbsolute, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The shipped schema: <package root>/sgemu.schema.json (the same from src/cli and dist/cli). */
export const SCHEMA_FILE = fileURLToPath(new URL('../../sgemu.schema.json', import.meta.url));

export function schemaLine(cwd = process.cwd()): string {
  const rel = relative(cwd, SCHEMA_FILE);
  const ref = rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? './' + rel : SCHEMA_FILE;
  return `# yaml-language-server: $schema=${ref}`;
}
