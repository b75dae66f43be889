/*
 * Pure helpers shared by the addon (counters.c) and its C unit test
 * (test_core.c). Nothing in here makes a syscall, so every line can be
 * exercised on a machine without a PMU.
 */
#ifndef ERGOMETER_COUNTERS_CORE_H
#define ERGOMETER_COUNTERS_CORE_H

#include <linux/perf_event.h>
#include <stdint.h>

/*
 * The PMC register is pmc_width bits wide (48 on most x86). The kernel
 * publishes `offset` such that offset + sign_extend(pmc) is the 64-bit
 * count; see the comment above struct perf_event_mmap_page in
 * include/uapi/linux/perf_event.h.
 */
static inline uint64_t ergo_compose_rdpmc(int64_t offset, uint64_t pmc, uint16_t pmc_width) {
  if (pmc_width == 0 || pmc_width > 64) return (uint64_t)offset;
  int shift = 64 - pmc_width;
  int64_t extended = (int64_t)(pmc << shift) >> shift;
  /* Unsigned addition: the count wraps modulo 2^64 like the kernel's u64,
   * where int64_t overflow would be undefined behaviour. */
  return (uint64_t)offset + (uint64_t)extended;
}

typedef uint64_t (*ergo_rdpmc_fn)(uint32_t counter);

enum ergo_mmap_result {
  ERGO_MMAP_OK = 0,
  /* The event is not on a PMU right now (index == 0) or the kernel does not
   * allow user-space rdpmc: the caller must use read(2) instead. */
  ERGO_MMAP_NEEDS_SYSCALL = 1,
};

/*
 * Reads the counter through the mmap'ed control page with the seqlock
 * protocol the kernel documents: retry while `lock` changes underneath us
 * (the task was scheduled out or the counter was rotated mid-read).
 */
static inline enum ergo_mmap_result ergo_read_mmap_page(volatile struct perf_event_mmap_page *page,
                                                        ergo_rdpmc_fn rdpmc, uint64_t *out) {
  uint32_t seq, idx;
  uint64_t count;
  uint16_t width;
  int usable;
  do {
    seq = page->lock;
    __sync_synchronize();
    idx = page->index;
    count = (uint64_t)page->offset;
    width = page->pmc_width;
    usable = page->cap_user_rdpmc && idx != 0;
    if (usable) count = ergo_compose_rdpmc((int64_t)count, rdpmc(idx - 1), width);
    __sync_synchronize();
  } while (page->lock != seq);
  if (!usable) return ERGO_MMAP_NEEDS_SYSCALL;
  *out = count;
  return ERGO_MMAP_OK;
}

#endif
