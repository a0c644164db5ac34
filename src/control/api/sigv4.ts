// AWS Signature Version 4 verification for the control API when it listens beyond loopback.
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
//
// Owns: checking one request's `Authorization: AWS4-HMAC-SHA256 …` header against the
// credentials the user gave (`--api-credentials KEY:SECRET` or SGEMU_API_CREDENTIALS).
// Must not: trust anything it has not recomputed; compare signatures in constant time.
// Scope: header-signed requests (what the AWS CLI and SDKs send for EC2's POST Query API);
// presigned URLs (X-Amz-Signature in the query) are rejected as unsupported.

import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { AwsError } from '../../model/errors.js';

export interface Credentials { accessKeyId: string; secretAccessKey: string }

/** Requests older or newer than this are refused (AWS allows 15 minutes of clock skew). */
const MAX_SKEW_MS = 15 * 60 * 1000;

const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data, 'utf8').digest();
const sha256hex = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

/** RFC 3986 encoding as SigV4 wants it (unreserved characters kept). */
function uriEncode(s: string, keepSlash: boolean): string {
  let out = '';
  for (const ch of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(ch);
    if (/[A-Za-z0-9\-._~]/.test(c) || (keepSlash && c === '/')) out += c;
    else out += '%' + ch.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

function canonicalQuery(search: URLSearchParams): string {
  return [...search.entries()]
    .map(([k, v]) => [uriEncode(k, false), uriEncode(v, false)] as const)
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`).join('&');
}

export interface SignedRequest {
  method: string;
  url: string;                                   // path and query as received
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/**
 * Throws AwsError (AuthFailure 401 when unsigned or for unknown keys or stale dates,
 * SignatureDoesNotMatch 403 when the signature is wrong); returns when the request is authentic.
 */
export function verifySigV4(req: SignedRequest, creds: Credentials, nowMs = Date.now()): void {
  const header = (name: string): string | undefined => {
    const v = req.headers[name];
    return Array.isArray(v) ? v.join(',') : v;
  };
  const auth = header('authorization');
  if (!auth) throw new AwsError('AuthFailure', 'AWS was not able to validate the provided access credentials: the request is not signed (SigV4 is required when the API listens beyond loopback)', 401);
  const m = /^AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request,\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$/.exec(auth.trim());
  if (!m) throw new AwsError('AuthFailure', 'AWS was not able to validate the provided access credentials: malformed Authorization header', 401);
  const [, keyId, day, region, service, signedHeaders, signature] = m as unknown as string[];
  if (keyId !== creds.accessKeyId) throw new AwsError('AuthFailure', 'AWS was not able to validate the provided access credentials', 401);
  const amzDate = header('x-amz-date') ?? '';
  const dm = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
  if (!dm || amzDate.slice(0, 8) !== day) throw new AwsError('AuthFailure', 'AWS was not able to validate the provided access credentials: missing or malformed X-Amz-Date', 401);
  const at = Date.UTC(+dm[1]!, +dm[2]! - 1, +dm[3]!, +dm[4]!, +dm[5]!, +dm[6]!);
  if (Math.abs(nowMs - at) > MAX_SKEW_MS) throw new AwsError('AuthFailure', `Signature expired: ${amzDate} is more than 15 minutes from the server time`, 401);

  const names = signedHeaders!.split(';');
  if (!names.includes('host')) throw new AwsError('AuthFailure', 'the signed headers must include host', 401);
  const payloadHash = header('x-amz-content-sha256') && header('x-amz-content-sha256') !== 'UNSIGNED-PAYLOAD'
    ? header('x-amz-content-sha256')! : sha256hex(req.body);
  if (payloadHash !== sha256hex(req.body)) throw new AwsError('SignatureDoesNotMatch', 'The request body does not match its x-amz-content-sha256', 403);
  let expected: Buffer;
  try {
    expected = signature4(req.method, req.url, names, header, payloadHash, amzDate, region!, service!, creds.secretAccessKey);
  } catch {
    throw new AwsError('SignatureDoesNotMatch', 'The request path is not valid percent-encoding', 403);
  }
  const given = Buffer.from(signature!, 'hex');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new AwsError('SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.', 403);
  }
}

/** The SigV4 signature of a request (canonical request → string to sign → HMAC chain). */
function signature4(method: string, url: string, names: string[], header: (n: string) => string | undefined, payloadHash: string,
  amzDate: string, region: string, service: string, secret: string): Buffer {
  const day = amzDate.slice(0, 8);
  const canonicalHeaders = names.map((n) => `${n}:${(header(n) ?? '').trim().replace(/\s+/g, ' ')}\n`).join('');
  const u = new URL(url, 'http://localhost');
  const canonicalRequest = [method, uriEncode(decodeURIComponent(u.pathname), true), canonicalQuery(u.searchParams),
    canonicalHeaders, names.join(';'), payloadHash].join('\n');
  const scope = `${day}/${region}/${service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256hex(canonicalRequest)].join('\n');
  const key = hmac(hmac(hmac(hmac('AWS4' + secret, day), region), service), 'aws4_request');
  return hmac(key, toSign);
}

export interface SignOptions {
  region?: string;     // default us-east-1 (sgemu checks the signature, not the region)
  service?: string;    // default ec2
  nowMs?: number;
}

/**
 * Signs a request as the AWS SDKs do (header-signed, payload hashed), for our own clients of the
 * API beyond loopback (`sgemu conntrack`, `loadtest`, tests). `host` is the Host header the
 * request will carry (`127.0.0.1:4510`). Returns the headers to send: host, x-amz-date,
 * x-amz-content-sha256, authorization.
 */
export function signSigV4(req: { method: string; url: string; host: string; body?: Buffer | string }, creds: Credentials,
  opts: SignOptions = {}): Record<string, string> {
  const amzDate = new Date(opts.nowMs ?? Date.now()).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  const region = opts.region ?? 'us-east-1';
  const service = opts.service ?? 'ec2';
  const headers: Record<string, string> = {
    host: req.host, 'x-amz-content-sha256': sha256hex(req.body ?? ''), 'x-amz-date': amzDate,
  };
  const names = Object.keys(headers).sort();
  const sig = signature4(req.method, req.url, names, (n) => headers[n], headers['x-amz-content-sha256']!, amzDate, region, service, creds.secretAccessKey);
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${creds.accessKeyId}/${amzDate.slice(0, 8)}/${region}/${service}/aws4_request, `
    + `SignedHeaders=${names.join(';')}, Signature=${sig.toString('hex')}`;
  return headers;
}

/** `KEY:SECRET` → Credentials; null for undefined/empty. */
export function parseCredentials(text: string | undefined): Credentials | null {
  if (!text) return null;
  const i = text.indexOf(':');
  if (i <= 0 || i === text.length - 1) return null;
  return { accessKeyId: text.slice(0, i), secretAccessKey: text.slice(i + 1) };
}

export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
