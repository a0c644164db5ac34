{
  "targets": [
    {
      "target_name": "sgemu_native",
      "sources": [
        "src/native/addon/sock_filter.c",
        "src/native/addon/sock_diag.c",
        "src/native/addon/netd_client.c",
        "src/native/addon/tcp_relay.c",
        "src/native/addon/fault_chain.c",
        "src/native/addon/udp_relay.c"
      ],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-O2", "-pthread"],
      "ldflags": ["-pthread"],
      "defines": ["NAPI_VERSION=8"]
    },
    {
      "target_name": "sgemu-netd",
      "type": "executable",
      "sources": ["src/native/netd/sgemu-netd.c", "src/native/netd/namespace.c"],
      "cflags": ["-Wall", "-Wextra", "-O2", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2"],
      "ldflags": ["-Wl,-z,relro,-z,now"]
    }
  ]
}
