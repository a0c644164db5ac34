/*
 * The daemon's end of the capability helper's channel (src/native/netd/sgemu-netd.c): socket
 * pairs to hand it, and one synchronous request/reply with an optional descriptor each way.
 * src/native/netd.ts builds and checks the messages; this file only moves bytes and fds.
 *
 * Synchronous on purpose: a filter swap or a listener open must be done when the call returns
 * (the daemon's swap relies on it), and a round trip to the helper costs tens of microseconds.
 * A helper that does not answer within the timeout fails the call (ETIMEDOUT), never hangs it.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "result.h"

#define REPLY_MAX 256

/* socketpair(AF_UNIX, type | SOCK_CLOEXEC) → [a, b]; type 1 = SOCK_STREAM, 5 = SOCK_SEQPACKET. */
static napi_value netd_socketpair(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out, v;
  int32_t type = 0;
  int sv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || napi_get_value_int32(env, argv[0], &type) != napi_ok || (type != SOCK_STREAM && type != SOCK_SEQPACKET)) {
    type_error(env, "sgemu_native: socketpair type must be SOCK_STREAM (1) or SOCK_SEQPACKET (5)");
    return NULL;
  }
  if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) != 0) return make_failure(env, errno, "socketpair");
  CHECK(napi_create_array_with_length(env, 2, &out));
  for (uint32_t i = 0; i < 2; i++) {
    CHECK(napi_create_int32(env, sv[i], &v));
    CHECK(napi_set_element(env, out, i, v));
  }
  return out;
}

/* netdCall(fd, request: Buffer, passFd (-1: none), timeoutMs) → { reply: Buffer, fd } | failure.
 * The received fd (if any) is O_CLOEXEC and owned by the caller. */
static napi_value netd_call(napi_env env, napi_callback_info info) {
  size_t argc = 4, len = 0;
  napi_value argv[4], out, v;
  int32_t fd = -1, pass = -1, timeout = 0;
  void *data = NULL;
  bool is_buf = false;
  unsigned char rbuf[REPLY_MAX];
  union { char b[CMSG_SPACE(sizeof(int) * 4)]; struct cmsghdr align; } c;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 ||
      napi_is_buffer(env, argv[1], &is_buf) != napi_ok || !is_buf ||
      napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok ||
      napi_get_value_int32(env, argv[2], &pass) != napi_ok || napi_get_value_int32(env, argv[3], &timeout) != napi_ok) {
    type_error(env, "sgemu_native: netdCall(fd, Buffer, passFd, timeoutMs)");
    return NULL;
  }

  struct iovec iov = { data, len };
  struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
  if (pass >= 0) {
    memset(&c, 0, sizeof(c));
    m.msg_control = c.b;
    m.msg_controllen = CMSG_SPACE(sizeof(int));
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET; h->cmsg_type = SCM_RIGHTS; h->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(h), &pass, sizeof(int));
  }
  ssize_t n;
  do n = sendmsg(fd, &m, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
  if (n < 0) return make_failure(env, errno, "sendmsg");

  struct pollfd p = { fd, POLLIN, 0 };
  int r;
  do r = poll(&p, 1, timeout); while (r < 0 && errno == EINTR);
  if (r < 0) return make_failure(env, errno, "poll");
  if (r == 0) return make_failure(env, ETIMEDOUT, "recvmsg");
  struct iovec riov = { rbuf, sizeof(rbuf) };
  struct msghdr rm = { .msg_iov = &riov, .msg_iovlen = 1, .msg_control = c.b, .msg_controllen = sizeof(c.b) };
  do n = recvmsg(fd, &rm, MSG_CMSG_CLOEXEC | MSG_DONTWAIT); while (n < 0 && errno == EINTR);
  if (n < 0) return make_failure(env, errno, "recvmsg");
  if (n == 0) return make_failure(env, EPIPE, "recvmsg");      /* the helper exited */
  int got = -1;
  for (struct cmsghdr *h = CMSG_FIRSTHDR(&rm); h; h = CMSG_NXTHDR(&rm, h)) {
    if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
    for (size_t i = 0; i < (h->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
      int x;
      memcpy(&x, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
      if (got < 0) got = x; else close(x);        /* one fd per reply at most */
    }
  }
  CHECK(napi_create_object(env, &out));
  CHECK(napi_create_buffer_copy(env, (size_t)n, rbuf, NULL, &v));
  CHECK(napi_set_named_property(env, out, "reply", v));
  CHECK(napi_create_int32(env, got, &v));
  CHECK(napi_set_named_property(env, out, "fd", v));
  return out;
}

napi_status sgemu_netd_client_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "socketpair", NULL, netd_socketpair, NULL, NULL, NULL, napi_enumerable, NULL },
    { "netdCall", NULL, netd_call, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  return napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
}
