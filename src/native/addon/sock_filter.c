/*
 * sgemu_native: the syscalls behind src/native/sock-filter.ts, and nothing else.
 *
 * TypeScript builds and checks every cBPF program (src/policy/bpf.ts); this file only creates
 * sockets, attaches the bytes it is handed (struct sock_filter[], host layout) and reports errno.
 * No function throws: each returns a number (fd or 0) on success, or an object
 * { errno, syscall } on failure, and src/native/failure.ts turns that into a NativeError.
 *
 * Order in tcpListener matters (linux-techniques.md §1): SO_ATTACH_FILTER before bind+listen, so
 * no SYN is ever accepted unfiltered. IPv6 sockets are V6ONLY so the filter only ever sees IPv6
 * network headers.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <linux/filter.h>

#include "result.h"
#include "sockaddr.h"

#define make_int(env, v) make_number((env), (double)(v))

/* Reads a Buffer of struct sock_filter into prog; NULL/undefined leaves prog->len = 0. */
static int get_program(napi_env env, napi_value v, struct sock_fprog *prog, int *present) {
  napi_valuetype t;
  bool is_buf = false;
  void *data = NULL;
  size_t len = 0;
  *present = 0;
  prog->len = 0;
  prog->filter = NULL;
  if (napi_typeof(env, v, &t) != napi_ok) return -1;
  if (t == napi_null || t == napi_undefined) return 0;
  if (napi_is_buffer(env, v, &is_buf) != napi_ok || !is_buf) return -1;
  if (napi_get_buffer_info(env, v, &data, &len) != napi_ok) return -1;
  if (len == 0 || len % sizeof(struct sock_filter) != 0 ||
      len / sizeof(struct sock_filter) > BPF_MAXINSNS) return -1;
  prog->len = (unsigned short)(len / sizeof(struct sock_filter));
  prog->filter = (struct sock_filter *)data;
  *present = 1;
  return 0;
}

/* open(type, family, address, port, backlog, program|null): socket, options, filter, bind, [listen]. */
static napi_value open_socket(napi_env env, napi_callback_info info, int type) {
  size_t argc = 5;
  napi_value argv[5];
  int32_t family = 0, port = 0, backlog = 0;
  char address[64];
  size_t alen = 0;
  struct sock_fprog prog;
  int present = 0, one = 1, fd, err;
  struct sockaddr_storage ss;
  socklen_t sl;

  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) return type_error(env, "sgemu_native: expected (family, address, port, backlog, program)");
  if (napi_get_value_int32(env, argv[0], &family) != napi_ok || (family != 4 && family != 6))
    return type_error(env, "sgemu_native: family must be 4 or 6");
  if (napi_get_value_string_utf8(env, argv[1], address, sizeof(address), &alen) != napi_ok)
    return type_error(env, "sgemu_native: address must be a string");
  if (napi_get_value_int32(env, argv[2], &port) != napi_ok || port < 0 || port > 65535)
    return type_error(env, "sgemu_native: port must be 0..65535");
  if (napi_get_value_int32(env, argv[3], &backlog) != napi_ok)
    return type_error(env, "sgemu_native: backlog must be a number");
  if (get_program(env, argv[4], &prog, &present) != 0)
    return type_error(env, "sgemu_native: program must be null or a Buffer of 1..4096 struct sock_filter");
  sl = make_addr(family, address, port, &ss);
  if (sl == 0) return make_failure(env, EINVAL, "inet_pton");

  fd = socket(family == 4 ? AF_INET : AF_INET6, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return make_failure(env, errno, "socket");
  /* SO_REUSEADDR on TCP only (TIME_WAIT after a restart); on UDP it would let a second daemon
   * bind the same address and take the datagrams. */
  if (type == SOCK_STREAM && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) goto fail_setsockopt;
  if (family == 6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) goto fail_setsockopt;
  if (present && setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) != 0) goto fail_setsockopt;
  if (bind(fd, (struct sockaddr *)&ss, sl) != 0) {
    err = errno; close(fd);
    return make_failure(env, err, "bind");
  }
  if (type == SOCK_STREAM && listen(fd, backlog > 0 ? backlog : 511) != 0) {
    err = errno; close(fd);
    return make_failure(env, err, "listen");
  }
  return make_int(env, fd);

fail_setsockopt:
  err = errno;
  close(fd);
  return make_failure(env, err, "setsockopt");
}

static napi_value tcp_listener(napi_env env, napi_callback_info info) { return open_socket(env, info, SOCK_STREAM); }
static napi_value udp_socket(napi_env env, napi_callback_info info) { return open_socket(env, info, SOCK_DGRAM); }

static int get_fd(napi_env env, napi_value v, int *fd) {
  int32_t x;
  if (napi_get_value_int32(env, v, &x) != napi_ok || x < 0) return -1;
  *fd = x;
  return 0;
}

/* attachFilter(fd, program): SO_ATTACH_FILTER replaces any previous program atomically. */
static napi_value attach_filter(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int fd, present = 0;
  struct sock_fprog prog;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || get_fd(env, argv[0], &fd) != 0) return type_error(env, "sgemu_native: fd must be a non-negative integer");
  if (get_program(env, argv[1], &prog, &present) != 0 || !present)
    return type_error(env, "sgemu_native: program must be a Buffer of 1..4096 struct sock_filter");
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) != 0) return make_failure(env, errno, "setsockopt");
  return make_int(env, 0);
}

static napi_value detach_filter(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int fd, dummy = 0;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || get_fd(env, argv[0], &fd) != 0) return type_error(env, "sgemu_native: fd must be a non-negative integer");
  if (setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, &dummy, sizeof(dummy)) != 0) return make_failure(env, errno, "setsockopt");
  return make_int(env, 0);
}

/* filterLength(fd): number of instructions attached (getsockopt SO_GET_FILTER with len 0), 0 if none. */
static napi_value filter_length(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int fd;
  socklen_t len = 0;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || get_fd(env, argv[0], &fd) != 0) return type_error(env, "sgemu_native: fd must be a non-negative integer");
  if (getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, NULL, &len) != 0) return make_failure(env, errno, "getsockopt");
  return make_int(env, (int)len);
}

static napi_value close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int fd;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || get_fd(env, argv[0], &fd) != 0) return type_error(env, "sgemu_native: fd must be a non-negative integer");
  if (close(fd) != 0) return make_failure(env, errno, "close");
  return make_int(env, 0);
}

napi_value sgemu_listening(napi_env env, napi_callback_info info);   /* sock_diag.c */
napi_status sgemu_tcp_relay_init(napi_env env, napi_value exports);  /* tcp_relay.c */
napi_status sgemu_udp_relay_init(napi_env env, napi_value exports);  /* udp_relay.c */
napi_status sgemu_netd_client_init(napi_env env, napi_value exports); /* netd_client.c */

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "tcpListener", NULL, tcp_listener, NULL, NULL, NULL, napi_enumerable, NULL },
    { "udpSocket", NULL, udp_socket, NULL, NULL, NULL, napi_enumerable, NULL },
    { "attachFilter", NULL, attach_filter, NULL, NULL, NULL, napi_enumerable, NULL },
    { "detachFilter", NULL, detach_filter, NULL, NULL, NULL, napi_enumerable, NULL },
    { "filterLength", NULL, filter_length, NULL, NULL, NULL, napi_enumerable, NULL },
    { "closeFd", NULL, close_fd, NULL, NULL, NULL, napi_enumerable, NULL },
    { "listening", NULL, sgemu_listening, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  CHECK(napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props));
  CHECK(sgemu_tcp_relay_init(env, exports));
  CHECK(sgemu_udp_relay_init(env, exports));
  CHECK(sgemu_netd_client_init(env, exports));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
