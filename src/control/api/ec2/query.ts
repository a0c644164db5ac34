// EC2 Query protocol request parsing: an x-www-form-urlencoded body → a tree of named parameters.
// Owns: size and shape limits, flat list addressing (`Name.N`, N from 1; EC2 lists are never
// `.member.`, reference §4.1) and typed reads that throw AwsError with AWS's codes.
// Must not: know any operation; throw anything but AwsError.
//
//   "IpPermissions.1.IpRanges.2.CidrIp=10.0.0.0/8"
//     root ─ IpPermissions ─ 1 ─ IpRanges ─ 2 ─ CidrIp = "10.0.0.0/8"

import { AwsError } from '../../../model/errors.js';

export const MAX_BODY_BYTES = 1024 * 1024;
export const MAX_PARAMS = 10_000;
const MAX_KEY_CHARS = 256;
const MAX_DEPTH = 8;
/** Largest list index accepted in `Name.N`. */
export const MAX_INDEX = 1000;

export class QNode {
  value: string | undefined = undefined;
  readonly kids = new Map<string, QNode>();

  /** The node at a dotted path below this one, if any. */
  at(path: string): QNode | undefined {
    let n: QNode | undefined = this;
    for (const seg of path.split('.')) {
      n = n.kids.get(seg);
      if (!n) return undefined;
    }
    return n;
  }

  /** The string at `path`, or undefined. */
  str(path: string): string | undefined {
    return this.at(path)?.value;
  }

  /** The required string at `path`: MissingParameter when absent or empty. */
  need(path: string, where = ''): string {
    const v = this.str(path);
    if (v === undefined || v === '') {
      throw new AwsError('MissingParameter', `The request must contain the parameter ${where}${path}`);
    }
    return v;
  }

  /** `path.1`, `path.2`, …: the entries of a flat list in index order. */
  list(path: string): QNode[] {
    const n = this.at(path);
    if (!n) return [];
    const out: [number, QNode][] = [];
    for (const [k, v] of n.kids) if (/^[1-9]\d*$/.test(k)) out.push([Number(k), v]);
    return out.sort((a, b) => a[0] - b[0]).map((e) => e[1]);
  }

  /** A list of plain values (`GroupId.1=…`), empty strings dropped. */
  strings(path: string): string[] {
    return this.list(path).map((n) => n.value).filter((v): v is string => v !== undefined && v !== '');
  }

  /** An integer at `path` (undefined when absent); InvalidParameterValue when not an integer in range. */
  int(path: string, min: number, max: number, where = ''): number | undefined {
    const v = this.str(path);
    if (v === undefined || v === '') return undefined;
    const t = v.trim();
    if (!/^-?\d{1,10}$/.test(t) || Number(t) < min || Number(t) > max) {
      throw new AwsError('InvalidParameterValue', `Invalid value '${clip(v)}' for ${where}${path}: expected an integer from ${min} to ${max}`);
    }
    return Number(t);
  }

  /** `true` / `false` (case-insensitive); absent = false. */
  bool(path: string): boolean {
    const v = this.str(path);
    if (v === undefined || v === '') return false;
    const t = v.trim().toLowerCase();
    if (t === 'true') return true;
    if (t === 'false') return false;
    throw new AwsError('InvalidParameterValue', `Invalid value '${clip(v)}' for ${path}: expected true or false`);
  }
}

/** Parses a form body; AwsError InvalidRequest for bodies that are too large or malformed. */
export function parseQuery(body: string): QNode {
  if (Buffer.byteLength(body, 'utf8') > MAX_BODY_BYTES) {
    throw new AwsError('InvalidRequest', `The request body is over ${MAX_BODY_BYTES} bytes; send fewer parameters per call`);
  }
  const root = new QNode();
  let count = 0;
  for (const part of body.split('&')) {
    if (part === '') continue;
    if (++count > MAX_PARAMS) throw new AwsError('InvalidRequest', `The request has over ${MAX_PARAMS} parameters`);
    const eq = part.indexOf('=');
    const key = decode(eq < 0 ? part : part.slice(0, eq));
    const value = decode(eq < 0 ? '' : part.slice(eq + 1));
    if (key === '') throw new AwsError('InvalidRequest', `The request has a parameter with an empty name ('${clip(part)}')`);
    if (key.length > MAX_KEY_CHARS) throw new AwsError('InvalidRequest', `Parameter name '${clip(key)}' is over ${MAX_KEY_CHARS} characters`);
    const segs = key.split('.');
    if (segs.length > MAX_DEPTH) throw new AwsError('InvalidRequest', `Parameter name '${clip(key)}' is nested over ${MAX_DEPTH} levels`);
    let n = root;
    for (const seg of segs) {
      if (seg === '') throw new AwsError('InvalidRequest', `Parameter name '${clip(key)}' has an empty part; use Name.1.Field`);
      if (/^\d+$/.test(seg) && (!/^[1-9]\d*$/.test(seg) || Number(seg) > MAX_INDEX)) {
        throw new AwsError('InvalidParameterValue', `Parameter '${clip(key)}' has list index ${clip(seg)}; list indexes run from 1 to ${MAX_INDEX}`);
      }
      let next = n.kids.get(seg);
      if (!next) { next = new QNode(); n.kids.set(seg, next); }
      n = next;
    }
    if (n.value !== undefined) throw new AwsError('InvalidRequest', `Parameter '${clip(key)}' is given more than once`);
    n.value = value;
  }
  return root;
}

/** application/x-www-form-urlencoded decoding: `+` is a space; bad %-escapes are an error. */
function decode(s: string): string {
  const t = s.replace(/\+/g, ' ');
  try {
    return decodeURIComponent(t);
  } catch {
    throw new AwsError('InvalidRequest', `The request body is not valid x-www-form-urlencoded text near '${clip(s)}' (bad %-escape)`);
  }
}

/** Echoed input, bounded: messages name the offending value without repeating megabytes. */
export function clip(s: string, max = 80): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}
