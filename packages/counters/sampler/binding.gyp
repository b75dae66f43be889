{
  "targets": [
    {
      "target_name": "ergometer_sampler",
      "sources": ["sampler.cc"],
      "cflags_cc": ["-O2", "-Wall", "-Wextra", "-Wno-cast-function-type"]
    }
  ]
}
