// Typed readers over the positioned tree: every read either returns a checked value or records a
// located ConfigError and returns undefined, so one pass collects all the errors of a file.
// Must not: throw for bad input, or cast unchecked values into model types.

import { ConfigError } from '../model/errors.js';
import type { SourcePos } from '../model/types.js';
import { kindName, type Pos, type TMap, type TNode } from './yaml-tree.js';

/** `a.b`, `a[2]`, `a["127.0.0.1"]`: the path format of ConfigError. */
export function keyPath(parent: string, key: string): string {
  if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(key)) return parent ? `${parent}.${key}` : key;
  return `${parent}[${JSON.stringify(key)}]`;
}
export function indexPath(parent: string, i: number): string {
  return `${parent}[${i}]`;
}

export class Reader {
  readonly errors: ConfigError[] = [];
  constructor(readonly fileName: string) {}

  err(code: string, path: string, pos: Pos | null | undefined, message: string): void {
    this.errors.push(new ConfigError(code, path, pos?.line ?? 0, pos?.column ?? 0, message));
  }

  sourcePos(path: string, n: TNode): SourcePos {
    return { path, line: n.pos.line, column: n.pos.column };
  }

  /** A mapping with only `keys`; unknown keys are reported (UnknownField) and skipped. */
  map(n: TNode, path: string, keys: readonly string[], what: string): TMap | undefined {
    if (n.kind !== 'map') {
      this.err('InvalidParameterValue', path, n.pos, `${what || 'the config'} must be a mapping (key: value), found ${kindName(n)}`);
      return undefined;
    }
    for (const [k, { keyPos }] of n.entries) {
      if (!keys.includes(k)) {
        const near = keys.find((v) => v.toLowerCase() === k.toLowerCase());
        this.err('UnknownField', keyPath(path, k), keyPos,
          `unknown field "${k}" in ${what || 'the top level'}${near ? ` (did you mean "${near}"?)` : ''}; valid fields: ${keys.join(', ')}`);
      }
    }
    return n;
  }

  /** A present, non-null child node of a mapping, or undefined. */
  child(m: TMap, key: string): TNode | undefined {
    const e = m.entries.get(key);
    if (!e) return undefined;
    if (e.node.kind === 'scalar' && e.node.value === null) return undefined;
    return e.node;
  }

  has(m: TMap, key: string): boolean {
    return m.entries.has(key);
  }

  /** A required child; MissingParameter located at the parent mapping when absent. */
  need(m: TMap, key: string, path: string, what: string): TNode | undefined {
    const n = this.child(m, key);
    if (!n) this.err('MissingParameter', keyPath(path, key), m.pos, `${what} needs "${key}"`);
    return n;
  }

  /** A string; numbers are taken as their text (YAML reads `name: 2024` as a number). */
  str(n: TNode | undefined, path: string, what: string): string | undefined {
    if (!n) return undefined;
    if (n.kind === 'scalar' && typeof n.value === 'string') return n.value;
    if (n.kind === 'scalar' && typeof n.value === 'number') return n.source ?? String(n.value);
    this.err('InvalidParameterValue', path, n.pos, `${what} must be a string, found ${kindName(n)}`);
    return undefined;
  }

  /** A whole number in min..max; digit strings are accepted. */
  int(n: TNode | undefined, path: string, what: string, min: number, max: number, code = 'InvalidParameterValue'): number | undefined {
    if (!n) return undefined;
    let v: number | undefined;
    if (n.kind === 'scalar' && typeof n.value === 'number' && Number.isInteger(n.value)) v = n.value;
    else if (n.kind === 'scalar' && typeof n.value === 'string' && /^\s*-?\d{1,12}\s*$/.test(n.value)) v = Number(n.value);
    if (v === undefined) {
      this.err('InvalidParameterValue', path, n.pos, `${what} must be a whole number (${min}..${max}), found ${kindName(n)}`);
      return undefined;
    }
    if (v < min || v > max) {
      this.err(code, path, n.pos, `${what} ${v} is out of range; valid: ${min}..${max}`);
      return undefined;
    }
    return v;
  }

  bool(n: TNode | undefined, path: string, what: string): boolean | undefined {
    if (!n) return undefined;
    if (n.kind === 'scalar' && typeof n.value === 'boolean') return n.value;
    this.err('InvalidParameterValue', path, n.pos, `${what} must be true or false, found ${kindName(n)}`);
    return undefined;
  }

  /** A list; with `scalarOk` a single scalar stands for a one-item list. */
  list(n: TNode | undefined, path: string, what: string, scalarOk = false): { node: TNode; path: string }[] {
    if (!n) return [];
    if (n.kind === 'seq') return n.items.map((node, i) => ({ node, path: indexPath(path, i) }));
    if (scalarOk && n.kind === 'scalar') return [{ node: n, path }];
    this.err('InvalidParameterValue', path, n.pos, `${what} must be a list${scalarOk ? ' or a single value' : ''}, found ${kindName(n)}`);
    return [];
  }
}

/** AWS's character set for group names, group and rule descriptions (BOTOCORE; VPC-RULES). */
export const AWS_TEXT = /^[a-zA-Z0-9 ._\-:/()#,@[\]+=&;{}!$*]*$/;

export function checkAwsText(r: Reader, text: string, path: string, n: TNode, what: string): boolean {
  if (text.length > 255) {
    r.err('InvalidParameterValue', path, n.pos, `${what} is ${text.length} characters; at most 255`);
    return false;
  }
  if (!AWS_TEXT.test(text)) {
    const bad = [...text].find((c) => !AWS_TEXT.test(c)) ?? '';
    r.err('InvalidParameterValue', path, n.pos,
      `${what} "${text}" has the character ${JSON.stringify(bad)}, which AWS does not allow; valid: a-z A-Z 0-9 space and ._-:/()#,@[]+=&;{}!$*`);
    return false;
  }
  return true;
}
