/*
 * TCP relay of established flows (splice through a pipe on a native thread).
 * Registers its functions on the addon's exports; see src/native/tcp-relay.ts.
 */
#include <node_api.h>

napi_status sgemu_tcp_relay_init(napi_env env, napi_value exports) {
  (void)env;
  (void)exports;
  return napi_ok;
}
