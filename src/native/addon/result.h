/*
 * How every addon call reports: a number on success, or { errno, syscall } on failure, which
 * src/native/failure.ts turns into a NativeError. No call throws for a failed syscall.
 */
#ifndef SGEMU_RESULT_H
#define SGEMU_RESULT_H
#include <node_api.h>

#define CHECK(call) do { if ((call) != napi_ok) return NULL; } while (0)

static inline napi_value make_failure(napi_env env, int err, const char *syscall) {
  napi_value obj, e, s;
  CHECK(napi_create_object(env, &obj));
  CHECK(napi_create_int32(env, err, &e));
  CHECK(napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &s));
  CHECK(napi_set_named_property(env, obj, "errno", e));
  CHECK(napi_set_named_property(env, obj, "syscall", s));
  return obj;
}

#endif
