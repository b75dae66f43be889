/*
 * The physical floor of a counter read: the same syscall (or instruction) the
 * @ergometer/counters addon makes, timed in a C loop with nothing around it.
 * bench/src/counter-read.ts compiles this at bench time and sets it beside the
 * ns/read measured from JavaScript; the difference is what N-API and V8 add.
 *
 *   cc -O2 -std=gnu11 -I packages/counters/native bench/native/floor.c -o floor
 *   ./floor [iterations] [rounds]     -> one line of JSON, ns per read (best round)
 *
 * Each read is opened exactly as native/counters.c opens it (same perf_event
 * attributes, same mmap-page helper for rdpmc). A source that does not work
 * here is reported as null with the reason under "unavailable".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/perf_event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "counters_core.h"
#include "perf_open.h"

/* Every read's result goes here, so the compiler cannot drop the loop. */
static volatile uint64_t sink;

static uint64_t monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Best (lowest) ns per iteration of `body` over `rounds` rounds of `n` iterations:
 * the least-disturbed round is the closest to the cost of the operation itself. */
#define BEST_NS_PER_OP(out, n, rounds, body)                  \
  do {                                                        \
    double best_ = 1e300;                                     \
    for (int r_ = 0; r_ < (rounds); r_++) {                   \
      uint64_t t0_ = monotonic_ns();                          \
      for (long i_ = 0; i_ < (n); i_++) {                     \
        body;                                                 \
      }                                                       \
      double per_ = (double)(monotonic_ns() - t0_) / (double)(n); \
      if (per_ < best_) best_ = per_;                         \
    }                                                         \
    (out) = best_;                                            \
  } while (0)

#define RESULTS 6
static const char *names[RESULTS] = {"task_clock_read",   "thread_cputime", "instructions_read",
                                     "instructions_rdpmc", "getrusage",      "monotonic"};
static double ns_per_read[RESULTS];
static char unavailable[RESULTS][160];

static void mark_unavailable(int which, const char *what, int err) {
  snprintf(unavailable[which], sizeof unavailable[which], "%s: %s (errno %d)", what, strerror(err), err);
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000000;
  int rounds = argc > 2 ? atoi(argv[2]) : 5;
  if (n <= 0 || rounds <= 0) {
    fprintf(stderr, "usage: floor [iterations>0] [rounds>0]\n");
    return 2;
  }
  for (int i = 0; i < RESULTS; i++) ns_per_read[i] = -1;

  /* read(2) on a software task-clock event: the addon's `task-clock` source. */
  int task_fd = ergo_open_perf(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_TASK_CLOCK);
  if (task_fd < 0) {
    mark_unavailable(0, "perf_event_open(task-clock)", errno);
  } else {
    uint64_t value;
    BEST_NS_PER_OP(ns_per_read[0], n, rounds, {
      if (read(task_fd, &value, sizeof value) == (ssize_t)sizeof value) sink += value;
    });
    close(task_fd);
  }

  /* clock_gettime(CLOCK_THREAD_CPUTIME_ID): the `thread-cputime` source. */
  {
    struct timespec ts;
    BEST_NS_PER_OP(ns_per_read[1], n, rounds, {
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
      sink += (uint64_t)ts.tv_nsec;
    });
  }

  /* Hardware instructions: read(2), then rdpmc from the mmap page when the kernel allows it. */
  int insn_fd = ergo_open_perf(PERF_TYPE_HARDWARE, PERF_COUNT_HW_INSTRUCTIONS);
  if (insn_fd < 0) {
    int err = errno;
    mark_unavailable(2, "perf_event_open(instructions)", err);
    mark_unavailable(3, "perf_event_open(instructions)", err);
  } else {
    uint64_t value;
    BEST_NS_PER_OP(ns_per_read[2], n, rounds, {
      if (read(insn_fd, &value, sizeof value) == (ssize_t)sizeof value) sink += value;
    });
    size_t len = (size_t)sysconf(_SC_PAGESIZE);
    void *page = mmap(NULL, len, PROT_READ, MAP_SHARED, insn_fd, 0);
    if (page == MAP_FAILED) {
      mark_unavailable(3, "mmap(perf page)", errno);
    } else if (!ERGO_HAVE_RDPMC || !((struct perf_event_mmap_page *)page)->cap_user_rdpmc) {
      snprintf(unavailable[3], sizeof unavailable[3], "%s",
               ERGO_HAVE_RDPMC ? "cap_user_rdpmc is 0 (see /sys/bus/event_source/devices/cpu/rdpmc)"
                          : "rdpmc is x86-only");
    } else {
      volatile struct perf_event_mmap_page *control = (volatile struct perf_event_mmap_page *)page;
      BEST_NS_PER_OP(ns_per_read[3], n, rounds, {
        if (ergo_read_mmap_page(control, ergo_rdpmc, &value) == ERGO_MMAP_OK) sink += value;
      });
    }
    if (page != MAP_FAILED) munmap(page, len);
    close(insn_fd);
  }

  /* getrusage(RUSAGE_SELF): what process.cpuUsage() calls through libuv. */
  {
    struct rusage usage;
    BEST_NS_PER_OP(ns_per_read[4], n, rounds, {
      getrusage(RUSAGE_SELF, &usage);
      sink += (uint64_t)usage.ru_utime.tv_usec;
    });
  }

  /* clock_gettime(CLOCK_MONOTONIC), vDSO: what process.hrtime.bigint() calls through libuv. */
  {
    struct timespec ts;
    BEST_NS_PER_OP(ns_per_read[5], n, rounds, {
      clock_gettime(CLOCK_MONOTONIC, &ts);
      sink += (uint64_t)ts.tv_nsec;
    });
  }

  printf("{\"iterations\":%ld,\"rounds\":%d,\"nsPerRead\":{", n, rounds);
  for (int i = 0; i < RESULTS; i++) {
    if (ns_per_read[i] < 0) printf("%s\"%s\":null", i ? "," : "", names[i]);
    else printf("%s\"%s\":%.2f", i ? "," : "", names[i], ns_per_read[i]);
  }
  printf("},\"unavailable\":{");
  int first = 1;
  for (int i = 0; i < RESULTS; i++) {
    if (unavailable[i][0] == '\0') continue;
    /* strerror() and our own messages contain no quotes or backslashes. */
    printf("%s\"%s\":\"%s\"", first ? "" : ",", names[i], unavailable[i]);
    first = 0;
  }
  printf("}}\n");
  return 0;
}
