// `sgemu conntrack`: the running daemon's connection-tracking table (SPEC §5), read from its API.

import { setTimeout as sleep } from 'node:timers/promises';
import type { ConntrackJson } from '../dataplane/conntrack/view.js';
import { apiFetch, apiRequest, COMMON_OPTIONS, DEFAULT_API, EXIT_OK, numberOption, parseCommandArgs, printJson, type Command } from './command.js';

function table(rows: ConntrackJson[]): string {
  if (rows.length === 0) return 'no tracked flows';
  const head = ['PROTO', 'INSTANCE', 'DIR', 'STATE', 'TRACKED', 'SOURCE', 'DESTINATION', 'IN', 'OUT', 'AGE', 'IDLE', 'EXPIRES'];
  const fmtAddr = (a: string, p: number) => (a.includes(':') ? `[${a}]:${p}` : `${a}:${p}`);
  const body = rows.map((r) => [r.protocol, r.instance, r.direction, r.state, r.tracked ? 'yes' : 'no',
    fmtAddr(r.src, r.srcPort), fmtAddr(r.dst, r.dstPort), String(r.bytesIn), String(r.bytesOut),
    `${r.ageSeconds}s`, `${r.idleSeconds}s`, `${r.expiresInSeconds}s`]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  return [head, ...body].map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

/** Follows GET /v1/events (server-sent events) and prints each flow decision. */
async function streamEvents(api: string, json: boolean): Promise<number> {
  await apiRequest(api, '/v1/status');                 // a clear error when no daemon answers
  const res = await apiFetch(api, '/v1/events');
  if (!res.body) return EXIT_OK;
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (!data) continue;
      if (json) { process.stdout.write(data + '\n'); continue; }
      const e = JSON.parse(data) as { time: string; type: string; protocol: string; instance: string; direction: string; src: string; srcPort: number; dst: string; dstPort: number; reason?: string; bytesIn?: number; bytesOut?: number };
      const extra = e.reason ? ` (${e.reason})` : e.bytesIn !== undefined ? ` in=${e.bytesIn} out=${e.bytesOut}` : '';
      process.stdout.write(`${e.time} ${e.type.toUpperCase().padEnd(6)} ${e.protocol} ${e.instance} ${e.direction} ${e.src}:${e.srcPort} -> ${e.dst}:${e.dstPort}${extra}\n`);
    }
  }
  return EXIT_OK;
}

const conntrack: Command = {
  name: 'conntrack',
  summary: "the running daemon's connection-tracking table",
  usage: `Usage: sgemu conntrack [--api ADDR] [--json] [--watch [--interval S]] [--events]

Lists the flows the running daemon tracks: protocol, instance, direction, state, whether AWS
would track it, addresses, bytes each way, age, idle time and time left before idle expiry.

Options:
  --api ADDR      the daemon's API (default ${DEFAULT_API})
  --json          print the entries as a JSON array (SPEC §5 fields)
  --watch         redraw every --interval seconds (default 1) until Ctrl-C
  --events        stream flow decisions as they happen (open, close, reject, refuse, cut),
                  one line each (--json: one JSON object per line), until Ctrl-C`,
  async run(argv) {
    const { values } = parseCommandArgs(argv, { ...COMMON_OPTIONS, api: { type: 'string', default: DEFAULT_API }, watch: { type: 'boolean', default: false }, interval: { type: 'string' }, events: { type: 'boolean', default: false } });
    const api = values.api ?? DEFAULT_API;
    if (values.events) return streamEvents(api, values.json ?? false);
    const intervalS = numberOption('interval', values.interval, 0.1, 3600, 1);
    for (;;) {
      const rows = (await apiRequest(api, '/v1/conntrack')) as ConntrackJson[];
      if (values.json) printJson(rows);
      else {
        if (values.watch) process.stdout.write('\x1b[2J\x1b[H');
        process.stdout.write(table(rows) + '\n');
      }
      if (!values.watch) return EXIT_OK;
      await sleep(intervalS * 1000);
    }
  },
};
export default conntrack;
