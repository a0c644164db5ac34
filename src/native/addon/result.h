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

/* A number for JS (int32 or double: both read as a JS number). NULL if N-API fails. */
static inline napi_value make_number(napi_env env, double v) {
  napi_value out;
  CHECK(napi_create_double(env, v, &out));
  return out;
}

/* A wrong argument: throws TypeError ERR_INVALID_ARG_TYPE with the call's usage; returns NULL. */
static inline napi_value type_error(napi_env env, const char *usage) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", usage);
  return NULL;
}

/* A uint32 argument → 0, or -1 when it is not one. */
static inline int get_u32(napi_env env, napi_value v, uint32_t *out) {
  return napi_get_value_uint32(env, v, out) == napi_ok ? 0 : -1;
}

#endif
