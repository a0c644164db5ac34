/*
 * sock_diag: which local address:port pairs have a listening TCP socket (or a bound UDP socket),
 * asked of the kernel over NETLINK_SOCK_DIAG (sock_diag(7), linux/inet_diag.h).
 *
 * Why not /proc/net/tcp: to print the file the kernel walks every bucket of the established hash
 * even when the reader only wants the LISTEN lines (established_get_first), about 1-2 ms per read
 * on a large-memory machine. A dump with idiag_states = 1 << TCP_LISTEN walks only the listening
 * hash. No privilege is needed; no packet is sent.
 *
 * Returns an array of strings "ADDRHEX:port" in the exact format of /proc/net/{tcp,udp}{,6}
 * (each 32-bit word printed as the host-order value of its network-order bytes), or
 * { errno, syscall } on failure.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/inet_diag.h>

#include "result.h"

/* listening(family 4|6, protocol 6|17) */
napi_value sgemu_listening(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], out;
  int32_t family = 0, proto = 0;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || napi_get_value_int32(env, argv[0], &family) != napi_ok || napi_get_value_int32(env, argv[1], &proto) != napi_ok)
    return make_failure(env, EINVAL, "listening");

  int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return make_failure(env, errno, "socket");

  struct {
    struct nlmsghdr nlh;
    struct inet_diag_req_v2 req;
  } msg;
  memset(&msg, 0, sizeof msg);
  msg.nlh.nlmsg_len = sizeof msg;
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.req.sdiag_family = family == 6 ? AF_INET6 : AF_INET;
  msg.req.sdiag_protocol = proto == 17 ? IPPROTO_UDP : IPPROTO_TCP;
  /* TCP: LISTEN (10). UDP: unconnected bound sockets are TCP_CLOSE (7), connected ones ESTABLISHED (1). */
  msg.req.idiag_states = proto == 17 ? ((1u << 7) | (1u << 1)) : (1u << 10);

  struct sockaddr_nl nladdr = { .nl_family = AF_NETLINK };
  if (sendto(fd, &msg, sizeof msg, 0, (struct sockaddr *)&nladdr, sizeof nladdr) < 0) {
    int e = errno; close(fd); return make_failure(env, e, "sendto");
  }

  CHECK(napi_create_array(env, &out));
  uint32_t n = 0;
  static char buf[32768];
  for (;;) {
    ssize_t len = recv(fd, buf, sizeof buf, 0);
    if (len < 0) { if (errno == EINTR) continue; int e = errno; close(fd); return make_failure(env, e, "recv"); }
    if (len == 0) break;
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    int done = 0;
    for (; NLMSG_OK(h, (size_t)len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type == NLMSG_DONE) { done = 1; break; }
      if (h->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr *err = (struct nlmsgerr *)NLMSG_DATA(h);
        close(fd);
        return make_failure(env, err->error < 0 ? -err->error : EIO, "sock_diag");
      }
      struct inet_diag_msg *d = (struct inet_diag_msg *)NLMSG_DATA(h);
      char text[48];
      int words = family == 6 ? 4 : 1;
      int off = 0;
      for (int i = 0; i < words; i++) off += snprintf(text + off, sizeof text - off, "%08X", (unsigned)d->id.idiag_src[i]);
      snprintf(text + off, sizeof text - off, ":%u", (unsigned)ntohs(d->id.idiag_sport));
      napi_value s;
      CHECK(napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &s));
      CHECK(napi_set_element(env, out, n++, s));
    }
    if (done) break;
  }
  close(fd);
  return out;
}
