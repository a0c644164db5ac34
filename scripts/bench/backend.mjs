// Benchmark backends, run in their own process so that they do not share a core with the client:
//   tcp sink   reads everything, and at the client's FIN answers the byte count (8 bytes, BE) and closes
//   tcp echo   writes back whatever it reads; ends when the client ends
//   udp echo   sends every datagram back to its sender
// Prints one JSON line {"tcpSink":port,"tcpEcho":port,"udpEcho":port} once all three listen on
// 127.0.0.1, then runs until its parent closes stdin or sends SIGTERM.
//
//   node scripts/bench/backend.mjs

import net from 'node:net';
import dgram from 'node:dgram';

const HOST = '127.0.0.1';

const sink = net.createServer({ noDelay: true }, (s) => {
  let n = 0;
  s.on('data', (b) => { n += b.length; });
  s.on('end', () => {
    const out = Buffer.alloc(8);
    out.writeBigUInt64BE(BigInt(n));
    s.end(out);
  });
  s.on('error', () => s.destroy());
});

const echo = net.createServer({ noDelay: true }, (s) => {
  s.on('data', (b) => { s.write(b); });
  s.on('end', () => s.end());
  s.on('error', () => s.destroy());
});
sink.maxConnections = echo.maxConnections = 100_000;

const udp = dgram.createSocket('udp4');
udp.on('message', (m, r) => { udp.send(m, r.port, r.address); });
udp.on('error', () => {});

const listen = (srv) => new Promise((res, rej) => {
  srv.once('error', rej);
  srv.listen({ host: HOST, port: 0, backlog: 4096 }, () => res(srv.address().port));
});
const tcpSink = await listen(sink);
const tcpEcho = await listen(echo);
const udpEcho = await new Promise((res) => udp.bind(0, HOST, () => res(udp.address().port)));
process.stdout.write(JSON.stringify({ tcpSink, tcpEcho, udpEcho }) + '\n');

const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
