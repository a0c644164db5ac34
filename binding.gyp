{
  "targets": [
    {
      "target_name": "sgemu_native",
      "sources": [
        "src/native/addon/sock_filter.c",
        "src/native/addon/sock_diag.c",
        "src/native/addon/tcp_relay.c",
        "src/native/addon/udp_relay.c"
      ],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-O2", "-pthread"],
      "ldflags": ["-pthread"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
