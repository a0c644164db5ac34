// `sgemu fault add|list|remove`: faults on the allowed flows of a running daemon (SPEC.md §9),
// through its JSON API (/v1/faults). Changes last until removed or the daemon stops; faults meant
// to stay go in the config (`faults:` on a service or outbound entry).

import { TCP_FAULTS, UDP_FAULTS } from '../config/faults.js';
import { UsageError } from '../model/errors.js';
import { apiFetch, COMMON_OPTIONS, DEFAULT_API, EXIT_OK, parseCommandArgs, printJson, type Command } from './command.js';

interface FaultJson { target: string; origin: string; name: string; type: string; stream: string; toxicity: number; attributes: Record<string, number> }

function catalogue(): string {
  const fmt = (c: typeof TCP_FAULTS): string => Object.entries(c)
    .map(([type, attrs]) => `    ${type.padEnd(11)} ${Object.entries(attrs).map(([k, a]) => `${k} (${a.doc})`).join('; ')}`).join('\n');
  return `TCP faults (Toxiproxy's toxics):\n${fmt(TCP_FAULTS)}\n  UDP faults:\n${fmt(UDP_FAULTS)}`;
}

const USAGE = `Usage:
  sgemu fault list [TARGET] [--json] [--api ADDR]
  sgemu fault add TARGET --type TYPE [--stream upstream|downstream] [--toxicity P]
                  [--name NAME] [--attr KEY=VALUE]... [--json] [--api ADDR]
  sgemu fault remove TARGET [NAME] [--api ADDR]

Faults make allowed flows slow, lossy or cut, with Toxiproxy's names and semantics, in the
running daemon's relay. TARGET names a service by instance, protocol and the port the rules see
(web:tcp/8080), or an outbound entry by its port (app:out:tcp/5432). add applies to new flows
and to the live ones; remove without NAME removes every fault on TARGET (config ones too, until
the daemon restarts).

  --stream     upstream: client to backend; downstream (default): backend to client
  --toxicity   probability (0..1, default 1) that a new flow gets the fault
  --attr       an attribute, repeatable: --attr latency=200 --attr jitter=20

  ${catalogue()}

Examples:
  sgemu fault add web:tcp/8080 --type latency --attr latency=200 --attr jitter=20
  sgemu fault add web:tcp/8080 --type reset_peer --stream upstream --attr timeout=500 --toxicity 0.1
  sgemu fault list
  sgemu fault remove web:tcp/8080 latency_downstream`;

async function call(api: string, path: string, body?: unknown, method?: 'DELETE'): Promise<unknown> {
  const res = await apiFetch(api, path, body, undefined, method);
  const text = await res.text();
  let parsed: unknown;
  try { parsed = JSON.parse(text); } catch { parsed = undefined; }
  if (!res.ok) {
    const e = parsed as { error?: string; message?: string } | undefined;
    if (res.status === 404 && e?.error === 'NotFound') throw new UsageError(`the daemon at ${api} has no fault API (an older sgemu?)`, 'DaemonError');
    throw new UsageError(e?.message ? `${e.message}` : `daemon answered ${res.status}: ${text.slice(0, 300)}`, e?.error ?? 'DaemonError');
  }
  return parsed;
}

function table(rows: FaultJson[]): string {
  if (rows.length === 0) return 'no faults';
  const head = ['TARGET', 'NAME', 'TYPE', 'STREAM', 'TOXICITY', 'ATTRIBUTES', 'FROM'];
  const body = rows.map((r) => [r.target, r.name, r.type, r.stream, String(r.toxicity),
    Object.entries(r.attributes).map(([k, v]) => `${k}=${v}`).join(' '), r.origin]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  return [head, ...body].map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

function attrs(list: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const a of list) {
    const m = /^([a-z_]+)=(-?[0-9.]+(?:e[0-9]+)?)$/i.exec(a.trim());
    const v = m ? Number(m[2]) : NaN;
    // "1.2.3" or "." pass the pattern but are no number (JSON would send them as null)
    if (!m || !Number.isFinite(v)) throw new UsageError(`--attr "${a}" is not KEY=NUMBER (e.g. --attr latency=200)`);
    out[m[1]!] = v;
  }
  return out;
}

const fault: Command = {
  name: 'fault',
  summary: 'add, list or remove faults (latency, bandwidth, resets, loss...) on allowed flows',
  usage: USAGE,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(argv, {
      ...COMMON_OPTIONS, api: { type: 'string', default: DEFAULT_API }, type: { type: 'string' }, stream: { type: 'string' },
      toxicity: { type: 'string' }, name: { type: 'string' }, attr: { type: 'string', multiple: true },
    }, true);
    const api = values.api ?? DEFAULT_API;
    const [sub, target, name, ...extra] = positionals;
    if (extra.length > 0) throw new UsageError(`unexpected argument ${extra[0]}\n\n${USAGE}`);
    switch (sub) {
      case 'list': case 'ls': {
        const q = target ? `?target=${encodeURIComponent(target)}` : '';
        const { faults } = await call(api, `/v1/faults${q}`) as { faults: FaultJson[] };
        if (values.json) printJson(faults); else process.stdout.write(table(faults) + '\n');
        return EXIT_OK;
      }
      case 'add': {
        if (!target) throw new UsageError(`fault add needs a TARGET (e.g. web:tcp/8080)\n\n${USAGE}`);
        if (name) throw new UsageError(`fault add takes the name as --name ${name}`);
        if (!values.type) throw new UsageError(`fault add needs --type; ${catalogue()}`);
        let toxicity: number | undefined;
        if (values.toxicity !== undefined) {
          toxicity = Number(values.toxicity);
          if (!(toxicity >= 0 && toxicity <= 1) || values.toxicity.trim() === '') throw new UsageError(`--toxicity "${values.toxicity}" is not a number from 0 to 1`);
        }
        const body = {
          target, type: values.type, ...(values.stream ? { stream: values.stream } : {}), ...(toxicity !== undefined ? { toxicity } : {}),
          ...(values.name ? { name: values.name } : {}), attributes: attrs((values.attr as string[] | undefined) ?? []),
        };
        const row = await call(api, '/v1/faults', body) as FaultJson;
        if (values.json) printJson(row); else process.stdout.write(`added ${row.name} on ${row.target}\n${table([row])}\n`);
        return EXIT_OK;
      }
      case 'remove': case 'rm': {
        if (!target) throw new UsageError(`fault remove needs a TARGET (e.g. web:tcp/8080) and optionally a NAME\n\n${USAGE}`);
        const q = `?target=${encodeURIComponent(target)}${name ? `&name=${encodeURIComponent(name)}` : ''}`;
        const { removed } = await call(api, `/v1/faults${q}`, undefined, 'DELETE') as { removed: number };
        if (values.json) printJson({ removed }); else process.stdout.write(`removed ${removed} fault${removed === 1 ? '' : 's'} from ${target}\n`);
        return EXIT_OK;
      }
      default:
        throw new UsageError(sub ? `unknown fault subcommand ${sub}: add, list or remove\n\n${USAGE}` : USAGE);
    }
  },
};
export default fault;
