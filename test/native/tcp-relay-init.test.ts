// relayInit failing part-way (issue 17): it opened the epoll fd and the eventfd, then returned
// when creating the threadsafe function failed, leaking both. Now it closes what it opened and
// reports { errno, syscall }. Its own file: the relay must not be running yet in this process
// (relayInit returns early when it is), and the first call with a bad callback must not break
// the next, good one.
import t from 'tap';
import { readdirSync } from 'node:fs';
import { addonHandle, nativeStatus } from '../../src/native/sock-filter.js';
import { relayStats, relayStop, tcpRelayStatus } from '../../src/native/tcp-relay.js';

const addon = addonHandle();
const skip = !nativeStatus().loaded ? `native addon not loaded: ${nativeStatus().error}`
  : typeof addon?.['relayInit'] !== 'function' ? 'the addon has no TCP relay' : '';
if (skip) t.plan(0, skip);
else {
  t.test('a relayInit whose threadsafe function cannot be made leaks no fd and reports the failure', async (t) => {
    const init = addon!['relayInit'] as (cb: unknown, counters: Float64Array, events: Float64Array) => unknown;
    const maxFlows = 1 << 17;
    const counters = new Float64Array(2 * maxFlows), events = new Float64Array(6 * 64);
    const fds = () => readdirSync('/proc/self/fd').length;
    t.equal(relayStats(), null, 'the relay is not running in this process yet');
    const before = fds();
    for (let i = 0; i < 5; i++) {
      t.match(init(42, counters, events), { syscall: 'napi_create_threadsafe_function' }, `call ${i + 1}: failure reported`);
    }
    t.equal(fds(), before, `no fd left behind (${before} before, ${fds()} after 5 failed calls)`);
    t.ok(tcpRelayStatus().available, 'the relay still starts afterwards', { skip: process.env['SGEMU_RELAY'] === 'node' ? 'SGEMU_RELAY=node switches the relay off' : false });
    t.equal(init(() => {}, counters, events), maxFlows, 'a good call starts it');
    (addon!['relayStop'] as () => number)();
    t.equal(fds(), before, 'and stopping it closes everything');
    relayStop();
  });
}
