// The web dashboard's static assets (`sgemu run --ui`, always on in `sgemu demo`; SPEC §10).
// Owns: serving src/control/ui/{index.html,app.js,app.css} (copied to dist/control/ui by
// scripts/post-build.mjs, shipped in the package) at GET /ui, /ui/app.js, /ui/app.css.
// The page is plain JS and CSS, no framework and nothing fetched from elsewhere: everything it
// shows comes from this API (/v1/*, POST / for the EC2 calls). The Content-Security-Policy says
// so to the browser, which then refuses any other origin even if a value shown on the page
// carried markup. Access: the server applies the API's rules before calling here.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type http from 'node:http';

export const UI_ROUTES = ['GET /ui', 'GET /ui/app.js', 'GET /ui/app.css'] as const;

const FILES: Record<string, { file: string; type: string }> = {
  '': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
};

/** Same-origin only: scripts, styles, fetches; no frames, no forms posting elsewhere. */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const cache = new Map<string, { body: Buffer; etag: string }>();

/** Read once per process (the assets do not change under a running daemon). */
function asset(file: string): { body: Buffer; etag: string } {
  let a = cache.get(file);
  if (!a) {
    const body = readFileSync(new URL(`../ui/${file}`, import.meta.url));
    a = { body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` };
    cache.set(file, a);
  }
  return a;
}

/** `sub` is the path after /ui: '', '/app.js' or '/app.css'. */
export function serveUi(sub: string, req: http.IncomingMessage, res: http.ServerResponse): void {
  const f = FILES[sub];
  if (!f) { res.writeHead(404).end(); return; }
  const a = asset(f.file);
  const headers = {
    'content-type': f.type, etag: a.etag, 'cache-control': 'no-cache', 'content-security-policy': CSP,
    'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'x-frame-options': 'DENY',
  };
  if (req.headers['if-none-match'] === a.etag) { res.writeHead(304, headers).end(); return; }
  res.writeHead(200, { ...headers, 'content-length': a.body.length });
  res.end(a.body);
}
