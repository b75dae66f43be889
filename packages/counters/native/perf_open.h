/*
 * How a counter is opened and read in user space, shared by the addon
 * (counters.c) and the benchmark's physical floor (bench/native/floor.c), so
 * that the floor times exactly the event the addon uses.
 */
#ifndef ERGOMETER_PERF_OPEN_H
#define ERGOMETER_PERF_OPEN_H

#include <linux/perf_event.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Opens a counter of the calling thread on any CPU; returns the fd or -1 with errno set. */
static inline int ergo_open_perf(uint32_t type, uint64_t config) {
  struct perf_event_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.size = sizeof attr;
  attr.type = type;
  attr.config = config;
  /* User-space only: works at perf_event_paranoid 2 (the default) and makes
   * instruction counts independent of kernel work done on our behalf. */
  attr.exclude_kernel = 1;
  attr.exclude_hv = 1;
  attr.disabled = 0;
  return (int)syscall(SYS_perf_event_open, &attr, 0 /* this thread */, -1 /* any CPU */, -1, PERF_FLAG_FD_CLOEXEC);
}

#if defined(__x86_64__) || defined(__i386__)
static inline uint64_t ergo_rdpmc(uint32_t counter) {
  uint32_t low, high;
  __asm__ volatile("rdpmc" : "=a"(low), "=d"(high) : "c"(counter));
  return ((uint64_t)high << 32) | low;
}
#define ERGO_HAVE_RDPMC 1
#else
static inline uint64_t ergo_rdpmc(uint32_t counter) {
  (void)counter;
  return 0;
}
#define ERGO_HAVE_RDPMC 0
#endif

#endif
