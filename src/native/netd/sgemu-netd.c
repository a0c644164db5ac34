/*
 * sgemu-netd: the capability helper. The only part of sgemu that ever holds privilege: file
 * capabilities cap_net_admin,cap_net_raw+ep, given by `sudo sgemu setup` (native-notes/capability-helper.md).
 * The daemon runs as the user, starts this program with a SOCK_SEQPACKET socket on fd 3 (requests,
 * one reply each) and a SOCK_STREAM socket on fd 4 (events it reports), and this program:
 *   OPEN    creates a TCP listening or UDP bound socket on a loopback address, filter attached
 *           before bind, and passes the fd back (SCM_RIGHTS);
 *   ATTACH  replaces the filter on a socket it created, passed back by the daemon;
 *   RST     sends RST|ACK from one of its TCP listeners to a loopback client;
 *   UNREACH sends ICMP port unreachable from one of its UDP sockets to a loopback client;
 *   WATCH   watches lo (packet socket, filter built here and locked) for SYNs and datagrams to
 *           its own listeners, and reports their addresses, ports and headers (never payload);
 *   PROBE   reports which privileged calls work; CLOSE forgets a listener.
 * It exits when the daemon's end of fd 3 closes (and on the daemon's death: PR_SET_PDEATHSIG).
 *
 * Threat model: any local user may run this file and drive it directly. They can then do no more
 * than sgemu does: filtered listeners on 127.0.0.0/8 and ::1 (unprivileged ports unless they are
 * root anyway), RST and ICMP unreachable only from those listeners' own address and port to a
 * loopback peer (they can refuse connections made to their own listener, nothing else), and the
 * 5-tuples and headers of connection attempts to their own listeners. They cannot: bind outside
 * loopback, attach a filter to any other socket, send any other packet, read any payload, or
 * keep a capability: the effective set is raised around each privileged syscall only, nothing is
 * inherited (no exec, PR_SET_NO_NEW_PRIVS), and every request is checked field by field before use.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>

#include "netd.h"

#ifndef SO_LOCK_FILTER
#define SO_LOCK_FILTER 44
#endif
#ifndef IPV6_HDRINCL
#define IPV6_HDRINCL 36
#endif

/* Wire format (host byte order; both ends on this machine). Mirrored in src/native/netd.ts.
 *   request:  0 magic u32 | 4 version u16 | 6 type u16 | 8 seq u32 | 12 family u8 | 13 proto u8 |
 *             14 port u16 | 16 addr[16] | 32 peer[16] | 48 peer_port u16 | 50 backlog u16 |
 *             52 ack u32 | 56 count u16 | 58 reserved[6] = 0 | 64 tail
 *             tail: OPEN/ATTACH count struct sock_filter; WATCH count targets of 20 bytes
 *             (proto u8, family u8, port u16, addr[16]); UNREACH count bytes of quoted IP header.
 *   reply:    0 magic | 4 version | 6 type | 8 seq | 12 err i32 (errno, 0 = ok) | 16 value u32 (+ fd)
 *   event:    0 kind u8 (1 SYN, 2 UDP) | 1 family u8 | 2 sport u16 | 4 dport u16 | 6 quote_len u16 |
 *             8 seq u32 | 12 src[16] | 28 dst[16] | 44 quote[72] | 116 reserved u32   (120 bytes)
 * Addresses are network-order bytes (IPv4 in the first 4). */
#define MAGIC 0x31444e53u          /* "SND1" */
#define VERSION 1
enum { T_PROBE = 1, T_OPEN = 2, T_ATTACH = 3, T_CLOSE = 4, T_RST = 5, T_UNREACH = 6, T_WATCH = 7,
       T_ADDR = 8, T_EXEC = 9, T_SIGNAL = 10 };      /* 8-10: --namespace only (namespace.c) */
#define HDR 64
#define MAX_INSNS 4096
#define MAX_TARGETS 256
#define MAX_QUOTE 72
#define MAX_REQ (HDR + MAX_INSNS * 8)
#define MAX_EXEC (256 * 1024)      /* EXEC: cwd, argv and environment */
#define MAX_LISTENERS 4096
#define CTL_FD 3
#define EV_FD 4
#define EV_SIZE 120
#define EVQ_BYTES (EV_SIZE * 4096)

struct req {
  uint32_t magic; uint16_t version, type; uint32_t seq;
  uint8_t family, proto; uint16_t port; uint8_t addr[16], peer[16];
  uint16_t peer_port, backlog; uint32_t ack; uint16_t count; uint8_t reserved[6];
};
struct reply { uint32_t magic; uint16_t version, type; uint32_t seq; int32_t err; uint32_t value; };
struct event {
  uint8_t kind, family; uint16_t sport, dport, quote_len; uint32_t seq;
  uint8_t src[16], dst[16], quote[MAX_QUOTE]; uint32_t reserved;
};
struct target { uint8_t proto, family; uint16_t port; uint8_t addr[16]; };
struct listener { ino_t ino; struct target t; };

_Static_assert(sizeof(struct req) == HDR, "request header is 64 bytes");
_Static_assert(sizeof(struct event) == EV_SIZE, "event is 120 bytes");
_Static_assert(sizeof(struct target) == 20, "target is 20 bytes");

static struct listener listeners[MAX_LISTENERS];
static int nlisteners;
static struct target watched[MAX_TARGETS];
static int nwatched;
static int pkt_fd = -1, raw4 = -1, raw6 = -1;
static uint32_t capmask;          /* CAP_NET_ADMIN | CAP_NET_RAW, as far as we were given them */
static unsigned char evq[EVQ_BYTES];
static size_t evq_len;
static unsigned long ev_dropped;
/* --namespace: in a user + network + PID namespace of our own (namespace.c); every address is
 * ours there (the namespace has lo only), and the host sees no capability of ours. */
static int ns_mode, ns_err;

/* --- capabilities: permitted kept, effective raised around one syscall ------------------- */
static int capset_eff(int on) {
  struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
  struct __user_cap_data_struct d[2];
  memset(d, 0, sizeof(d));
  d[0].permitted = capmask;
  d[0].effective = on ? capmask : 0;
  return (int)syscall(SYS_capset, &h, d);
}
static void caps_init(void) {
  struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
  struct __user_cap_data_struct d[2];
  memset(d, 0, sizeof(d));
  /* In our own namespace, ports below 1024 too (the instances' 53, 443, …): it is ours alone. */
  uint32_t keep = (1u << CAP_NET_ADMIN) | (1u << CAP_NET_RAW) | (ns_mode ? 1u << CAP_NET_BIND_SERVICE : 0);
  if (syscall(SYS_capget, &h, d) == 0) capmask = d[0].permitted & keep;
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  capset_eff(0);                  /* drops every other capability from permitted too */
}
#define PRIVILEGED(call) ({ capset_eff(1); int r_ = (call); int e_ = errno; capset_eff(0); errno = e_; r_; })

/* --- checks ---------------------------------------------------------------------------- */
static const uint8_t V6_LOOPBACK[16] = { 0,0,0,0, 0,0,0,0, 0,0,0,0, 0,0,0,1 };
static int is_loopback(int family, const uint8_t *a) {
  if (ns_mode) return family == 4 || family == 6;
  if (family == 4) return a[0] == 127;
  return family == 6 && memcmp(a, V6_LOOPBACK, 16) == 0;
}
static int addr_len(int family) { return family == 4 ? 4 : 16; }
static int same_target(const struct target *t, int proto, int family, const uint8_t *addr, int port) {
  return t->proto == proto && t->family == family && t->port == port && memcmp(t->addr, addr, (size_t)addr_len(family)) == 0;
}
static struct listener *find_listener(int proto, int family, const uint8_t *addr, int port) {
  for (int i = 0; i < nlisteners; i++)
    if (same_target(&listeners[i].t, proto, family, addr, port)) return &listeners[i];
  return NULL;
}
static void forget(struct listener *l) { *l = listeners[--nlisteners]; }

/* --- replies and events ---------------------------------------------------------------- */
static void reply(const struct req *q, int err, uint32_t value, int fd) {
  struct reply r = { MAGIC, VERSION, q ? q->type : 0, q ? q->seq : 0, err, value };
  struct iovec iov = { &r, sizeof(r) };
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } c;
  struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
  if (fd >= 0) {
    memset(&c, 0, sizeof(c));
    m.msg_control = c.buf;
    m.msg_controllen = sizeof(c.buf);
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET; h->cmsg_type = SCM_RIGHTS; h->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(h), &fd, sizeof(int));
  }
  while (sendmsg(CTL_FD, &m, MSG_NOSIGNAL) < 0 && errno == EINTR) {}
}

/* Events queue here and are written as the daemon reads (a stream: partial writes resume);
 * a full queue drops whole events, so the daemon is never blocked by us or we by it. */
static void ev_flush(void) {
  while (evq_len > 0) {
    ssize_t n = write(EV_FD, evq, evq_len);
    if (n <= 0) return;
    memmove(evq, evq + n, evq_len - (size_t)n);
    evq_len -= (size_t)n;
  }
}
static void ev_push(const struct event *e) {
  if (evq_len + sizeof(*e) > sizeof(evq)) { ev_dropped++; return; }
  memcpy(evq + evq_len, e, sizeof(*e));
  evq_len += sizeof(*e);
  ev_flush();
}

/* --- sockets --------------------------------------------------------------------------- */
static socklen_t sockaddr_of(int family, const uint8_t *a, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof(*ss));
  if (family == 4) {
    struct sockaddr_in *s = (struct sockaddr_in *)ss;
    s->sin_family = AF_INET; s->sin_port = htons((uint16_t)port); memcpy(&s->sin_addr, a, 4);
    return sizeof(*s);
  }
  struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
  s->sin6_family = AF_INET6; s->sin6_port = htons((uint16_t)port); memcpy(&s->sin6_addr, a, 16);
  return sizeof(*s);
}

static int attach(int fd, const struct sock_filter *prog, int n, int proto) {
  struct sock_fprog p = { (unsigned short)n, (struct sock_filter *)prog };
  /* TCP needs CAP_NET_ADMIN since Linux 5d39580f68e6; UDP does not: no privilege for it. */
  if (proto == IPPROTO_TCP) return PRIVILEGED(setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &p, sizeof(p)));
  return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &p, sizeof(p));
}

/* socket, options, filter before bind (no packet ever passes unfiltered), bind, listen. */
static void do_open(const struct req *q, const unsigned char *tail) {
  int one = 1, tcp = q->proto == IPPROTO_TCP, fd, err;
  struct sockaddr_storage ss;
  struct stat st;
  if (tcp && q->count == 0) { reply(q, EINVAL, 0, -1); return; }
  struct listener *old = find_listener(q->proto, q->family, q->addr, q->port);
  if (!old && nlisteners >= MAX_LISTENERS) { reply(q, ENOSPC, 0, -1); return; }
  fd = socket(q->family == 4 ? AF_INET : AF_INET6, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) { reply(q, errno, 0, -1); return; }
  /* SO_REUSEADDR on TCP only: on UDP it would let a second daemon bind the same address. */
  if ((tcp && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) ||
      (q->family == 6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) ||
      (q->count > 0 && attach(fd, (const struct sock_filter *)tail, q->count, q->proto) != 0) ||
      (ns_mode ? PRIVILEGED(bind(fd, (struct sockaddr *)&ss, sockaddr_of(q->family, q->addr, q->port, &ss)))   /* ports < 1024 inside */
               : bind(fd, (struct sockaddr *)&ss, sockaddr_of(q->family, q->addr, q->port, &ss))) != 0 ||
      (tcp && listen(fd, q->backlog > 0 ? q->backlog : 511) != 0) ||
      fstat(fd, &st) != 0) {
    err = errno; close(fd); reply(q, err, 0, -1); return;
  }
  struct listener *l = old ? old : &listeners[nlisteners++];
  l->ino = st.st_ino;
  l->t.proto = q->proto; l->t.family = q->family; l->t.port = q->port;
  memset(l->t.addr, 0, 16); memcpy(l->t.addr, q->addr, (size_t)addr_len(q->family));
  if (q->port == 0) {             /* record the port the kernel chose */
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
      l->t.port = ntohs(q->family == 4 ? ((struct sockaddr_in *)&ss)->sin_port : ((struct sockaddr_in6 *)&ss)->sin6_port);
  }
  reply(q, 0, l->t.port, fd);
  close(fd);
}

/* The fd must be a socket this helper created (same inode), of the protocol it was created as. */
static void do_attach(const struct req *q, const unsigned char *tail, int fd) {
  struct stat st;
  int type = 0;
  socklen_t tl = sizeof(type);
  if (fd < 0) { reply(q, EBADF, 0, -1); return; }
  if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) { reply(q, ENOTSOCK, 0, -1); return; }
  struct listener *l = NULL;
  for (int i = 0; i < nlisteners && !l; i++) if (listeners[i].ino == st.st_ino) l = &listeners[i];
  if (!l || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 ||
      type != (l->t.proto == IPPROTO_TCP ? SOCK_STREAM : SOCK_DGRAM)) { reply(q, EPERM, 0, -1); return; }
  if (q->count == 0) { reply(q, EINVAL, 0, -1); return; }
  reply(q, attach(fd, (const struct sock_filter *)tail, q->count, l->t.proto) == 0 ? 0 : errno, 0, -1);
}

static uint16_t csum(uint32_t sum, const void *data, size_t len) {
  const uint8_t *p = data;
  for (; len > 1; p += 2, len -= 2) sum += (uint32_t)(p[0] << 8 | p[1]);
  if (len) sum += (uint32_t)(p[0] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}
/* Sum of the pseudo-header (RFC 793 / RFC 8200 §8.1), not yet folded. */
static uint32_t pseudo_sum(int family, const uint8_t *src, const uint8_t *dst, int proto, int len) {
  uint32_t s = 0;
  int n = addr_len(family);
  for (int i = 0; i < n; i += 2) s += (uint32_t)(src[i] << 8 | src[i + 1]) + (uint32_t)(dst[i] << 8 | dst[i + 1]);
  return s + (uint32_t)proto + (uint32_t)len;
}
/* IP header for IP_HDRINCL / IPV6_HDRINCL; returns its length. The kernel fills the IPv4 checksum. */
static int ip_header(uint8_t *b, int family, const uint8_t *src, const uint8_t *dst, int proto, int payload) {
  if (family == 4) {
    memset(b, 0, 20);
    b[0] = 0x45; b[2] = (uint8_t)((20 + payload) >> 8); b[3] = (uint8_t)(20 + payload); b[6] = 0x40; b[8] = 64; b[9] = (uint8_t)proto;
    memcpy(b + 12, src, 4); memcpy(b + 16, dst, 4);
    return 20;
  }
  memset(b, 0, 40);
  b[0] = 0x60; b[4] = (uint8_t)(payload >> 8); b[5] = (uint8_t)payload; b[6] = (uint8_t)proto; b[7] = 64;
  memcpy(b + 8, src, 16); memcpy(b + 24, dst, 16);
  return 40;
}
static int raw_send(int family, const uint8_t *pkt, int len, const uint8_t *dst) {
  int *fd = family == 4 ? &raw4 : &raw6;
  if (*fd < 0) {
    int one = 1;
    *fd = PRIVILEGED(socket(family == 4 ? AF_INET : AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW));
    if (*fd < 0) return -1;
    if (family == 6) setsockopt(*fd, IPPROTO_IPV6, IPV6_HDRINCL, &one, sizeof(one));
    shutdown(*fd, SHUT_RD);
  }
  struct sockaddr_storage ss;
  return sendto(*fd, pkt, (size_t)len, MSG_DONTWAIT, (struct sockaddr *)&ss, sockaddr_of(family, dst, 0, &ss)) == len ? 0 : -1;
}

/* RST|ACK from our listener addr:port to the loopback peer: seq 0, ack = peer ISN + 1, window 0. */
static void do_rst(const struct req *q) {
  uint8_t pkt[60], *tcp;
  if (!find_listener(IPPROTO_TCP, q->family, q->addr, q->port)) { reply(q, EPERM, 0, -1); return; }
  if (!is_loopback(q->family, q->peer)) { reply(q, EPERM, 0, -1); return; }
  tcp = pkt + ip_header(pkt, q->family, q->addr, q->peer, IPPROTO_TCP, 20);
  memset(tcp, 0, 20);
  tcp[0] = (uint8_t)(q->port >> 8); tcp[1] = (uint8_t)q->port; tcp[2] = (uint8_t)(q->peer_port >> 8); tcp[3] = (uint8_t)q->peer_port;
  tcp[8] = (uint8_t)(q->ack >> 24); tcp[9] = (uint8_t)(q->ack >> 16); tcp[10] = (uint8_t)(q->ack >> 8); tcp[11] = (uint8_t)q->ack;
  tcp[12] = 5 << 4; tcp[13] = 0x14;
  uint16_t c = csum(pseudo_sum(q->family, q->addr, q->peer, IPPROTO_TCP, 20), tcp, 20);
  tcp[16] = (uint8_t)(c >> 8); tcp[17] = (uint8_t)c;
  reply(q, raw_send(q->family, pkt, (int)(tcp - pkt) + 20, q->peer) == 0 ? 0 : errno, 0, -1);
}

/* ICMP 3/3 (RFC 792) or ICMPv6 1/4 (RFC 4443) from our UDP socket, quoting the datagram's IP
 * header + 8 bytes, sent to the quoted source. The quote must be a UDP datagram from a loopback
 * address to this very socket. */
static void do_unreach(const struct req *q, const uint8_t *quote) {
  uint8_t pkt[40 + 8 + MAX_QUOTE], *icmp;
  const uint8_t *src, *dst, *udp;
  int n = q->count, proto, hl;
  if (q->family == 4) {
    hl = (quote[0] & 0x0f) * 4;
    if ((quote[0] >> 4) != 4 || hl < 20 || n < hl + 8) { reply(q, EINVAL, 0, -1); return; }
    proto = quote[9]; src = quote + 12; dst = quote + 16; udp = quote + hl;
  } else {
    if ((quote[0] >> 4) != 6 || n < 48) { reply(q, EINVAL, 0, -1); return; }
    proto = quote[6]; src = quote + 8; dst = quote + 24; udp = quote + 40;
  }
  if (proto != IPPROTO_UDP || memcmp(dst, q->addr, (size_t)addr_len(q->family)) != 0 ||
      (udp[2] << 8 | udp[3]) != q->port || !is_loopback(q->family, src) ||
      !find_listener(IPPROTO_UDP, q->family, q->addr, q->port)) { reply(q, EPERM, 0, -1); return; }
  icmp = pkt + ip_header(pkt, q->family, q->addr, src, q->family == 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6, 8 + n);
  memset(icmp, 0, 8);
  icmp[0] = q->family == 4 ? 3 : 1; icmp[1] = q->family == 4 ? 3 : 4;
  memcpy(icmp + 8, quote, (size_t)n);
  uint16_t c = csum(q->family == 4 ? 0 : pseudo_sum(6, q->addr, src, IPPROTO_ICMPV6, 8 + n), icmp, (size_t)(8 + n));
  icmp[2] = (uint8_t)(c >> 8); icmp[3] = (uint8_t)c;
  reply(q, raw_send(q->family, pkt, (int)(icmp - pkt) + 8 + n, src) == 0 ? 0 : errno, 0, -1);
}

/* --- watching lo ----------------------------------------------------------------------- */
/* The packet socket's filter, built here from the targets (never taken from the daemon) and
 * locked. Frames on lo: 14-byte Ethernet header of zeros, type at 12.
 *   M[0] = protocol, M[1] = destination port, M[2..5] = destination address words
 *   v4: TCP with SYN and no ACK, or UDP → load; v6 the same without extension headers
 *   then one block per target: protocol, address word(s), port → accept 128 bytes; else next */
static struct sock_filter prog[MAX_INSNS];
static int plen;
#define EMIT(c, t, f, kk) (prog[plen++] = (struct sock_filter){ (uint16_t)(c), (uint8_t)(t), (uint8_t)(f), (uint32_t)(kk) })
static void emit_targets(int family) {
  for (int i = 0; i < nwatched; i++) {
    const struct target *t = &watched[i];
    int words = family == 4 ? 1 : 4, left = 2 * words + 3;   /* insns after the first jeq */
    if (t->family != family) continue;
    EMIT(BPF_LD | BPF_MEM, 0, 0, 0);
    EMIT(BPF_JMP | BPF_JEQ | BPF_K, 0, left, t->proto);
    for (int w = 0; w < words; w++, left -= 2) {
      uint32_t k = (uint32_t)t->addr[4 * w] << 24 | (uint32_t)t->addr[4 * w + 1] << 16 | (uint32_t)t->addr[4 * w + 2] << 8 | t->addr[4 * w + 3];
      EMIT(BPF_LD | BPF_MEM, 0, 0, 2 + w);
      EMIT(BPF_JMP | BPF_JEQ | BPF_K, 0, left - 2, k);
    }
    EMIT(BPF_LD | BPF_MEM, 0, 0, 1);
    EMIT(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, t->port);
    EMIT(BPF_RET | BPF_K, 0, 0, 128);
  }
  EMIT(BPF_RET | BPF_K, 0, 0, 0);
}
static int build_watch_filter(void) {
  int v6_at, j;
  plen = 0;
  if (nwatched * 13 + 48 > MAX_INSNS) return -1;
  EMIT(BPF_LD | BPF_H | BPF_ABS, 0, 0, 12);
  EMIT(BPF_JMP | BPF_JEQ | BPF_K, 1, 0, ETH_P_IP);
  EMIT(BPF_JMP | BPF_JA, 0, 0, 0);                                  /* k patched: to the v6 part */
  j = plen - 1;
  EMIT(BPF_LD | BPF_B | BPF_ABS, 0, 0, 23);  EMIT(BPF_ST, 0, 0, 0);   /* protocol */
  EMIT(BPF_LDX | BPF_B | BPF_MSH, 0, 0, 14);                          /* X = IPv4 header length */
  EMIT(BPF_LD | BPF_H | BPF_IND, 0, 0, 16);  EMIT(BPF_ST, 0, 0, 1);   /* destination port */
  EMIT(BPF_LD | BPF_MEM, 0, 0, 0);
  EMIT(BPF_JMP | BPF_JEQ | BPF_K, 5, 0, IPPROTO_UDP);
  EMIT(BPF_JMP | BPF_JEQ | BPF_K, 0, 3, IPPROTO_TCP);
  EMIT(BPF_LD | BPF_B | BPF_IND, 0, 0, 27);  EMIT(BPF_ALU | BPF_AND | BPF_K, 0, 0, 0x12);
  EMIT(BPF_JMP | BPF_JEQ | BPF_K, 1, 0, 0x02);
  EMIT(BPF_RET | BPF_K, 0, 0, 0);
  EMIT(BPF_LD | BPF_W | BPF_ABS, 0, 0, 30);  EMIT(BPF_ST, 0, 0, 2);
  emit_targets(4);
  v6_at = plen;
  prog[j].k = (uint32_t)(v6_at - j - 1);
  EMIT(BPF_JMP | BPF_JEQ | BPF_K, 1, 0, ETH_P_IPV6);
  EMIT(BPF_RET | BPF_K, 0, 0, 0);
  EMIT(BPF_LD | BPF_B | BPF_ABS, 0, 0, 20);  EMIT(BPF_ST, 0, 0, 0);
  EMIT(BPF_LD | BPF_H | BPF_ABS, 0, 0, 56);  EMIT(BPF_ST, 0, 0, 1);
  EMIT(BPF_LD | BPF_MEM, 0, 0, 0);
  EMIT(BPF_JMP | BPF_JEQ | BPF_K, 5, 0, IPPROTO_UDP);
  EMIT(BPF_JMP | BPF_JEQ | BPF_K, 0, 3, IPPROTO_TCP);
  EMIT(BPF_LD | BPF_B | BPF_ABS, 0, 0, 67);  EMIT(BPF_ALU | BPF_AND | BPF_K, 0, 0, 0x12);
  EMIT(BPF_JMP | BPF_JEQ | BPF_K, 1, 0, 0x02);
  EMIT(BPF_RET | BPF_K, 0, 0, 0);
  for (int w = 0; w < 4; w++) { EMIT(BPF_LD | BPF_W | BPF_ABS, 0, 0, 38 + 4 * w); EMIT(BPF_ST, 0, 0, 2 + w); }
  emit_targets(6);
  return 0;
}

/* Replaces the watch set. The new packet socket opens (filtered, locked) before the old one
 * closes, so nothing is missed; with no targets none stays open (an open packet socket on lo
 * costs a clone of every loopback packet). */
static void do_watch(const struct req *q, const unsigned char *tail) {
  const struct target *t = (const struct target *)tail;
  int fd = -1, one = 1;
  if (q->count > MAX_TARGETS) { reply(q, E2BIG, 0, -1); return; }
  for (int i = 0; i < q->count; i++) {
    uint8_t a[16] = { 0 };
    memcpy(a, t[i].addr, (size_t)addr_len(t[i].family == 6 ? 6 : 4));
    if ((t[i].family != 4 && t[i].family != 6) || !find_listener(t[i].proto, t[i].family, a, t[i].port)) { reply(q, EPERM, 0, -1); return; }
  }
  nwatched = 0;
  for (int i = 0; i < q->count; i++) {
    watched[nwatched] = t[i];
    if (t[i].family == 4) memset(watched[nwatched].addr + 4, 0, 12);
    nwatched++;
  }
  if (nwatched > 0) {
    struct sockaddr_ll ll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)if_nametoindex("lo") };
    struct sock_fprog p = { 0, prog };
    if (build_watch_filter() != 0) { nwatched = 0; reply(q, E2BIG, 0, -1); return; }
    p.len = (unsigned short)plen;
    fd = PRIVILEGED(socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL)));
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &p, sizeof(p)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_LOCK_FILTER, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&ll, sizeof(ll)) != 0) {
      int err = errno;
      if (fd >= 0) close(fd);
      nwatched = 0;
      reply(q, err, 0, -1);
      return;
    }
  }
  if (pkt_fd >= 0) close(pkt_fd);
  pkt_fd = fd;
  reply(q, 0, (uint32_t)nwatched, -1);
}

static void on_packet(void) {
  uint8_t f[128];
  struct sockaddr_ll from;
  for (int i = 0; i < 64; i++) {
    socklen_t fl = sizeof(from);
    ssize_t n = recvfrom(pkt_fd, f, sizeof(f), MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&from, &fl);
    if (n < 0) return;
    if (from.sll_pkttype == PACKET_OUTGOING) continue;     /* lo shows each packet twice */
    size_t got = (size_t)n < sizeof(f) ? (size_t)n : sizeof(f);
    struct event e;
    memset(&e, 0, sizeof(e));
    int proto, l4, hl;
    if (got >= 34 && f[12] == 0x08 && f[13] == 0x00) {
      hl = (f[14] & 0x0f) * 4; proto = f[23]; l4 = 14 + hl;
      e.family = 4; memcpy(e.src, f + 26, 4); memcpy(e.dst, f + 30, 4);
    } else if (got >= 54 && f[12] == 0x86 && f[13] == 0xdd) {
      hl = 40; proto = f[20]; l4 = 54;
      e.family = 6; memcpy(e.src, f + 22, 16); memcpy(e.dst, f + 38, 16);
    } else continue;
    if ((size_t)l4 + 8 > got) continue;
    e.sport = (uint16_t)(f[l4] << 8 | f[l4 + 1]);
    e.dport = (uint16_t)(f[l4 + 2] << 8 | f[l4 + 3]);
    int ok = 0;
    for (int k = 0; k < nwatched && !ok; k++) ok = same_target(&watched[k], proto, e.family, e.dst, e.dport);
    if (!ok) continue;               /* the kernel filter said so already; trust nothing */
    if (proto == IPPROTO_TCP) {
      e.kind = 1;
      e.seq = (uint32_t)f[l4 + 4] << 24 | (uint32_t)f[l4 + 5] << 16 | (uint32_t)f[l4 + 6] << 8 | f[l4 + 7];
    } else {
      e.kind = 2;
      e.quote_len = (uint16_t)(hl + 8);
      if (e.quote_len > MAX_QUOTE) continue;
      memcpy(e.quote, f + 14, e.quote_len);
    }
    ev_push(&e);
  }
}

/* PROBE: bit 0 TCP filter, bit 1 raw socket, bit 2 packet socket; err = the first failure. */
static void do_probe(const struct req *q) {
  struct sock_filter accept = BPF_STMT(BPF_RET | BPF_K, 0xffffffff);
  uint32_t ok = 0;
  int err = 0, fd;
  fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && attach(fd, &accept, 1, IPPROTO_TCP) == 0) ok |= 1; else err = errno;
  if (fd >= 0) close(fd);
  fd = PRIVILEGED(socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW));
  if (fd >= 0) { ok |= 2; close(fd); } else if (!err) err = errno;
  fd = PRIVILEGED(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
  if (fd >= 0) { ok |= 4; close(fd); } else if (!err) err = errno;
  if (ns_mode && ns_err == 0) ok |= 8;             /* bit 3: the namespace is ready */
  reply(q, ns_mode && ns_err ? ns_err : err, ok, -1);
}

/* --- the request loop ------------------------------------------------------------------ */
static unsigned char buf[MAX_EXEC + HDR + 1];

static void serve_one(short revents) {
  union { char b[CMSG_SPACE(sizeof(int) * 4)]; struct cmsghdr align; } c;
  struct iovec iov = { buf, sizeof(buf) };
  struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.b, .msg_controllen = sizeof(c.b) };
  int fd = -1, nfds = 0;
  ssize_t n = recvmsg(CTL_FD, &m, MSG_CMSG_CLOEXEC);
  /* 0 is the end of the channel only with POLLHUP: on SOCK_SEQPACKET it may be an empty message. */
  if ((n == 0 && (revents & POLLHUP)) || (n < 0 && errno != EINTR && errno != EAGAIN)) _exit(0);
  if (n < 0) return;
  for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
    if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
    for (size_t i = 0; i < (h->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
      int x;
      memcpy(&x, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
      if (nfds++ == 0) fd = x; else close(x);
    }
  }
  struct req q;
  if ((size_t)n < HDR) { if (fd >= 0) close(fd); reply(NULL, EPROTO, 0, -1); return; }
  memcpy(&q, buf, HDR);
  const unsigned char *tail = buf + HDR;
  size_t tail_len = (size_t)n - HDR, want;
  static const uint8_t zero[6];
  int bad = q.magic != MAGIC || q.version != VERSION || memcmp(q.reserved, zero, 6) != 0 ||
            (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || nfds > 1 || (fd >= 0 && q.type != T_ATTACH);
  switch (q.type) {
    case T_OPEN: case T_ATTACH: want = (size_t)q.count * 8; bad |= q.count > MAX_INSNS; break;
    case T_WATCH: want = (size_t)q.count * sizeof(struct target); break;
    case T_UNREACH: want = q.count; bad |= q.count > MAX_QUOTE || q.count < 28; break;
    case T_EXEC: want = tail_len; bad |= q.count != 0 || !ns_mode; break;
    default: want = 0;
  }
  bad |= tail_len != want;
  bad |= q.type != T_EXEC && tail_len > MAX_REQ - HDR;
  if (q.type == T_OPEN || q.type == T_RST || q.type == T_UNREACH || q.type == T_CLOSE)
    bad |= (q.family != 4 && q.family != 6) || (q.proto != IPPROTO_TCP && q.proto != IPPROTO_UDP);
  if (q.type == T_ADDR) bad |= q.family != 4 && q.family != 6;
  if (bad) { if (fd >= 0) close(fd); reply(&q, EPROTO, 0, -1); return; }
  if (q.type != T_ATTACH && fd >= 0) { close(fd); fd = -1; }
  if (q.family == 4) memset(q.addr + 4, 0, 12);
  switch (q.type) {
    case T_PROBE: do_probe(&q); break;
    case T_OPEN:
      if (!is_loopback(q.family, q.addr)) reply(&q, EPERM, 0, -1); else do_open(&q, tail);
      break;
    case T_ATTACH: do_attach(&q, tail, fd); break;
    case T_CLOSE: {
      struct listener *l = find_listener(q.proto, q.family, q.addr, q.port);
      if (l) forget(l);
      reply(&q, l ? 0 : ENOENT, 0, -1);
      break;
    }
    case T_RST: do_rst(&q); break;
    case T_UNREACH: do_unreach(&q, tail); break;
    case T_WATCH: do_watch(&q, tail); break;
    case T_ADDR: reply(&q, !ns_mode ? EPERM : PRIVILEGED(ns_addr(q.family, q.addr)) == 0 ? 0 : errno, 0, -1); break;
    case T_EXEC: {
      int pid = ns_exec((const char *)tail, tail_len);
      reply(&q, pid < 0 ? errno : 0, pid < 0 ? 0 : (uint32_t)pid, -1);
      break;
    }
    case T_SIGNAL: reply(&q, !ns_mode ? EPERM : ns_signal((int)q.ack) == 0 ? 0 : errno, 0, -1); break;
    default: reply(&q, EOPNOTSUPP, 0, -1);
  }
  if (fd >= 0) close(fd);
}

int main(int argc, char **argv) {
  int type = 0, pidfd = -1;
  socklen_t tl = sizeof(type);
  ns_mode = argc == 2 && strcmp(argv[1], "--namespace") == 0;
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  if (ns_mode) {
    /* Nothing of the host's privilege comes along: drop it all, then take the namespace's. Root
     * keeps CAP_SETFCAP through the unshare alone: since Linux 5.12 a namespace may map uid 0 of
     * its parent only when its creator held CAP_SETFCAP (commit db2e718a4798, parent_could_setfcap),
     * and a root caller's own uid is 0, so `sgemu exec` as root failed with EPERM at uid_map. An
     * ordinary user holds no CAP_SETFCAP and needs none (its own uid is not 0). */
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof(d));
    if (geteuid() == 0) d[0].permitted = d[0].effective = 1u << CAP_SETFCAP;
    syscall(SYS_capset, &h, d);
    ns_err = ns_enter() == 0 ? 0 : errno;   /* after unshare: every capability, in the namespace only */
  }
  caps_init();
  if ((argc > 1 && !ns_mode) || argc > 2 || getsockopt(CTL_FD, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_SEQPACKET ||
      getsockopt(EV_FD, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM) {
    fprintf(stderr, "sgemu-netd: the capability helper of sgemu; it is started by `sgemu run` (fd 3: requests, fd 4: events), not by hand\n");
    return 2;
  }
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (getppid() == 1) return 0;   /* the daemon died before the line above */
  signal(SIGPIPE, SIG_IGN);
  syscall(SYS_close_range, 5, ~0U, 0);    /* nothing else inherited stays open */
  fcntl(EV_FD, F_SETFL, fcntl(EV_FD, F_GETFL) | O_NONBLOCK);
  for (;;) {
    struct pollfd p[4] = { { CTL_FD, POLLIN, 0 }, { EV_FD, evq_len ? POLLOUT : 0, 0 }, { pkt_fd, POLLIN, 0 }, { pidfd, POLLIN, 0 } };
    if (pidfd < 0 && ns_init_pid() > 0) p[3].fd = pidfd = (int)syscall(SYS_pidfd_open, ns_init_pid(), 0);
    if (poll(p, 4, -1) < 0 && errno != EINTR) return 1;
    if (pidfd >= 0 && p[3].revents & POLLIN) {        /* the command ended: report its status */
      int status = ns_reap();
      if (status >= 0) {
        struct event e;
        memset(&e, 0, sizeof(e));
        e.kind = 3; e.seq = (uint32_t)status;
        ev_push(&e);
        close(pidfd);
        pidfd = -1;
      }
    }
    if (p[0].revents & (POLLHUP | POLLERR) && !(p[0].revents & POLLIN)) return 0;
    if (p[1].revents & (POLLHUP | POLLERR)) return 0;
    if (p[0].revents & POLLIN) serve_one(p[0].revents);
    if (pkt_fd >= 0 && p[2].revents & POLLIN) on_packet();
    if (evq_len) ev_flush();
  }
}
