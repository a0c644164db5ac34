// YAML/JSON text → a small positioned tree (map / seq / scalar, each with 1-based line:column).
// Owns: the `yaml` parser call, syntax errors, aliases, and the size/depth/encoding guards that keep
// hostile input from becoming anything but a ConfigError.
// Must not: interpret the schema (load.ts does). Never throws: problems are returned as errors.
// Invariants: a tree has at most MAX_DEPTH levels and MAX_NODES nodes (aliases expanded count).

import { LineCounter, parseDocument, isAlias, isMap, isNode, isPair, isScalar, isSeq, type Document } from 'yaml';
import { ConfigError } from '../model/errors.js';

export interface Pos { line: number; column: number }

export type TNode = TMap | TSeq | TScalar;
export interface TMap { kind: 'map'; pos: Pos; entries: Map<string, { keyPos: Pos; node: TNode }> }
export interface TSeq { kind: 'seq'; pos: Pos; items: TNode[] }
export interface TScalar {
  kind: 'scalar';
  pos: Pos;
  value: string | number | boolean | null;
  source: string | null;      // the text as written (plain scalars), e.g. `000000000000` that YAML reads as 0
}

export const MAX_CONFIG_BYTES = 8 * 1024 * 1024;
export const MAX_DEPTH = 64;
export const MAX_NODES = 1_000_000;

class TooDeep extends Error {}
class TooMany extends Error {}

/** Parses text; returns the tree (null for an empty document) or the errors that stopped it. */
export function parseTree(text: string, fileName: string): { tree: TNode | null; errors: ConfigError[] } {
  const lc = new LineCounter();
  const at = (offset: number): Pos => {
    const p = lc.linePos(offset);
    return { line: p.line, column: p.col };
  };
  if (text.length > MAX_CONFIG_BYTES) {
    return { tree: null, errors: [new ConfigError('ConfigTooLarge', '', 0, 0, `${fileName}: ${text.length} characters is over the 8 MiB limit for a config file`)] };
  }
  // Binary input: YAML would happily read NUL bytes into a scalar; a config never holds them.
  const bad = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\ufffd]/.exec(text);
  if (bad) {
    let line = 1, col = 1;
    for (let i = 0; i < bad.index; i++) { if (text.charCodeAt(i) === 10) { line++; col = 1; } else col++; }
    const code = bad[0].charCodeAt(0).toString(16).padStart(4, '0');
    return { tree: null, errors: [new ConfigError('ConfigNotText', '', line, col,
      `${fileName} is not a text config: control character U+${code.toUpperCase()} (or invalid UTF-8) at ${line}:${col}; expected YAML or JSON text`)] };
  }
  let doc: Document.Parsed;
  try {
    doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true, strict: true });
  } catch (e) {
    if (e instanceof RangeError) return { tree: null, errors: [tooDeepError()] };
    return { tree: null, errors: [new ConfigError('InvalidYaml', '', 0, 0, `${fileName}: cannot parse: ${e instanceof Error ? e.message : String(e)}`)] };
  }
  if (doc.errors.some((e) => e.code === 'RESOURCE_EXHAUSTION' || /call stack/i.test(e.message))) {
    const first = doc.errors.find((e) => e.code === 'RESOURCE_EXHAUSTION' || /call stack/i.test(e.message));
    return { tree: null, errors: [tooDeepError(first ? at(first.pos[0]) : undefined)] };
  }
  if (doc.errors.length > 0) {
    return {
      tree: null,
      errors: doc.errors.map((e) => {
        const p = at(e.pos[0]);
        const msg = e.message.split('\n')[0] ?? e.message;
        return new ConfigError('InvalidYaml', '', p.line, p.column, `${fileName}: YAML syntax error (${e.code}): ${msg}`);
      }),
    };
  }
  if (doc.contents === null) return { tree: null, errors: [] };
  let count = 0;
  const convert = (n: unknown, depth: number, fallback: Pos): TNode => {
    if (++count > MAX_NODES) throw new TooMany();
    if (depth > MAX_DEPTH) throw new TooDeep();
    if (isAlias(n)) {
      const target = n.resolve(doc);
      const p = n.range ? at(n.range[0]) : fallback;
      return convert(target ?? null, depth + 1, p);
    }
    const node = n;
    const pos = isNode(node) && node.range ? at(node.range[0]) : fallback;
    if (isMap(node)) {
      const entries = new Map<string, { keyPos: Pos; node: TNode }>();
      for (const item of node.items) {
        if (!isPair(item)) continue;
        const key: unknown = item.key;
        const keyPos = isNode(key) && key.range ? at(key.range[0]) : pos;
        let keyText: string;
        if (isScalar(key)) keyText = String(key.value);
        else if (key === null) keyText = '';
        else keyText = '[complex key]';
        entries.set(keyText, { keyPos, node: convert(item.value, depth + 1, keyPos) });
      }
      return { kind: 'map', pos, entries };
    }
    if (isSeq(node)) {
      return { kind: 'seq', pos, items: node.items.map((it) => convert(it, depth + 1, pos)) };
    }
    if (isScalar(node)) {
      const v = node.value;
      const value = typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' || v === null ? v
        : typeof v === 'bigint' ? Number(v) : String(v);
      return { kind: 'scalar', pos, value, source: typeof node.source === 'string' ? node.source : null };
    }
    return { kind: 'scalar', pos, value: null, source: null };
  };
  try {
    return { tree: convert(doc.contents, 0, { line: 1, column: 1 }), errors: [] };
  } catch (e) {
    if (e instanceof TooDeep || e instanceof RangeError) return { tree: null, errors: [tooDeepError()] };
    if (e instanceof TooMany) {
      return { tree: null, errors: [new ConfigError('ConfigTooLarge', '', 0, 0, `${fileName}: more than ${MAX_NODES} nodes once aliases are expanded; a config is far smaller`)] };
    }
    return { tree: null, errors: [new ConfigError('InvalidYaml', '', 0, 0, `${fileName}: cannot read: ${e instanceof Error ? e.message : String(e)}`)] };
  }
}

function tooDeepError(p: Pos = { line: 0, column: 0 }): ConfigError {
  return new ConfigError('ConfigTooDeep', '', p.line, p.column, `nesting is deeper than ${MAX_DEPTH} levels; an sgemu config needs fewer than 10`);
}

/** Human name of a node's type for messages. */
export function kindName(n: TNode): string {
  if (n.kind === 'map') return 'a mapping';
  if (n.kind === 'seq') return 'a list';
  if (n.value === null) return 'nothing (null)';
  return typeof n.value === 'string' ? `the string ${scalarText(n)}` : `${typeof n.value} ${scalarText(n)}`;
}

/** Longest value an error message repeats in full; longer ones are cut and their length given. */
export const SHOWN_MAX = 40;

/**
 * A scalar as the user wrote it, for error messages: the source text of a plain scalar (a number
 * too large for a double, `1` and 400 zeros, reads as Infinity, which JSON shows as `null`), a
 * quoted string otherwise; cut after SHOWN_MAX characters with the full length named
 * (issue 17: `ports null is not valid` for a 401-digit port).
 */
export function scalarText(n: TScalar): string {
  const text = typeof n.value === 'string' ? JSON.stringify(n.value)
    : n.source !== null ? n.source : String(n.value);
  if (text.length <= SHOWN_MAX) return text;
  return `${text.slice(0, SHOWN_MAX)}… (${text.length} characters)`;
}
