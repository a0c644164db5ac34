// VPC Flow Logs v2 records: field order, aggregation per interval, both directions.

import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FlowLog, ACCEPT, REJECT, estimateTcpPackets, interfaceId } from '../../src/observe/flow-log.js';

t.test('records are aggregated per flow and written in the v2 default format', async (t) => {
  const dir = t.testdir({});
  const file = join(dir, 'flows.log');
  const log = new FlowLog(file, '123456789012', 60);
  log.add(ACCEPT, 'eni-abc', '127.0.0.1', '127.0.0.10', 50000, 8080, 6, 3, 100, 1000);
  log.add(ACCEPT, 'eni-abc', '127.0.0.1', '127.0.0.10', 50000, 8080, 6, 2, 50, 1010);
  log.add(REJECT, 'eni-abc', '127.0.0.2', '127.0.0.10', 50001, 8080, 6, 1, 60, 1005);
  await log.close();
  const lines = readFileSync(file, 'utf8').trim().split('\n');
  t.equal(lines.length, 2, 'one record per flow and action');
  const f = lines[0]!.split(' ');
  t.equal(f.length, 14, '14 fields');
  t.same(f.slice(0, 10), ['2', '123456789012', 'eni-abc', '127.0.0.1', '127.0.0.10', '50000', '8080', '6', '5', '150']);
  t.equal(f[12], 'ACCEPT');
  t.equal(f[13], 'OK');
  t.ok(Number(f[10]) <= 1000 && Number(f[11]) >= 1010, 'start/end cover the interval');
  t.match(lines[1], / REJECT OK$/);
});

t.test('helpers', async (t) => {
  t.equal(interfaceId('i-0123456789abcdef0'), 'eni-0123456789abcdef0');
  t.equal(estimateTcpPackets(0), 3);
  t.equal(estimateTcpPackets(1449), 5);
});
