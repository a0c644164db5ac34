// Data-plane counters: plain numbers incremented on the hot path, read by metrics and `doctor`.
// Observability is free when unused: nothing here allocates or formats.

export class Counters {
  accepted = 0;            // flows proxied (TCP connections, UDP flows)
  rejectedKernel = 0;      // denied SYNs/datagrams seen through pcap (the kernel filter dropped them)
  rejectedUser = 0;        // denied flows caught in userland (no native filter, or a coarsened one): reset
  refusedRaw = 0;          // allowed, backend down, answered with RST / ICMP port unreachable
  refusalsAvoided = 0;     // a SYN or datagram to a "down" backend that listened when asked at that moment: not refused
  refusedReset = 0;        // allowed, backend down, fallback accept-then-reset
  overflowDropped = 0;     // new flows dropped because conntrack was full
  untrackedCut = 0;        // untracked flows cut by a rule change
  naclCut = 0;             // flows (tracked or not) stopped because a network ACL now drops their packets
  idleExpired = 0;
  resets = 0;              // ECONNRESET / EPIPE seen on relayed sockets (counted, not logged)
  bytesIn = 0;             // closed flows' bytes, client → backend
  bytesOut = 0;
  policySwaps = 0;
  filterAttaches = 0;
  udpDatagramsIn = 0;
  udpDatagramsOut = 0;
}
