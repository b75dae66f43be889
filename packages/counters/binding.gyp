{
  "targets": [
    {
      "target_name": "ergometer_counters",
      "sources": ["native/counters.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-std=gnu11"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
