{
  "targets": [
    {
      "target_name": "sgemu_native",
      "sources": ["src/native/addon/sock_filter.c", "src/native/addon/sock_diag.c"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
