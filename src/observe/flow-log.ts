// VPC Flow Logs version 2 records (reference §7): one record per flow, per direction, per
// aggregation interval, space-separated in the fixed default order:
//   version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status
// Records are built per interval from aggregates, never per packet. Packets are not visible to a
// userland proxy: for relayed TCP they are estimated from bytes (one per 1448-byte segment, plus
// the handshake and teardown), which the README says.

import { createWriteStream, type WriteStream } from 'node:fs';

export const ACCEPT = 'ACCEPT';
export const REJECT = 'REJECT';

interface Agg {
  iface: string; src: string; dst: string; srcPort: number; dstPort: number; proto: number;
  packets: number; bytes: number; start: number; end: number; action: string;
}

export class FlowLog {
  private aggs = new Map<string, Agg>();
  private timer: NodeJS.Timeout | null = null;
  private readonly out: NodeJS.WritableStream;
  private readonly owned: WriteStream | null;
  private intervalStart = Math.floor(Date.now() / 1000);
  records = 0;
  /** Called at each interval end before the records are written (the daemon adds live flows). */
  beforeFlush: (() => void) | null = null;

  constructor(target: string, private readonly accountId: string, private readonly intervalS = 60) {
    if (target === '-') { this.out = process.stdout; this.owned = null; }
    else { this.owned = createWriteStream(target, { flags: 'a' }); this.out = this.owned; }
  }

  start(): this {
    this.timer = setInterval(() => this.flush(), this.intervalS * 1000);
    this.timer.unref();
    return this;
  }

  add(action: string, iface: string, src: string, dst: string, srcPort: number, dstPort: number,
      proto: number, packets: number, bytes: number, nowS = Math.floor(Date.now() / 1000)): void {
    const key = `${action}|${iface}|${src}|${dst}|${srcPort}|${dstPort}|${proto}`;
    const a = this.aggs.get(key);
    if (a) { a.packets += packets; a.bytes += bytes; a.end = nowS; return; }
    this.aggs.set(key, { iface, src, dst, srcPort, dstPort, proto, packets, bytes, start: nowS, end: nowS, action });
  }

  flush(): void {
    this.beforeFlush?.();
    const now = Math.floor(Date.now() / 1000);
    let text = '';
    for (const a of this.aggs.values()) {
      text += `2 ${this.accountId} ${a.iface} ${a.src} ${a.dst} ${a.srcPort} ${a.dstPort} ${a.proto} ` +
        `${a.packets} ${a.bytes} ${Math.min(a.start, this.intervalStart)} ${Math.max(a.end, now)} ${a.action} OK\n`;
      this.records++;
    }
    this.aggs.clear();
    this.intervalStart = now;
    if (text) this.out.write(text);
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.flush();
    if (this.owned) await new Promise<void>((r) => this.owned!.end(() => r()));
  }
}

/** Estimated packets for a relayed TCP byte count in one direction (see the module comment). */
export function estimateTcpPackets(bytes: number): number {
  return 3 + Math.ceil(bytes / 1448);
}

/** A stable ENI id for an instance: `eni-` + the instance id's hex. */
export function interfaceId(instanceId: string): string {
  return 'eni-' + instanceId.replace(/^i-/, '');
}
