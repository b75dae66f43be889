/*
 * Unit test of the pure rdpmc helpers in counters_core.h, with a fake
 * perf_event_mmap_page and a fake rdpmc instruction: this is how the hardware
 * fast path is tested on a machine (or VM) without a PMU.
 *
 * Built and run by test/native-core.test.ts:
 *   cc -std=gnu11 -Wall -Wextra -Werror -I native native/test_core.c
 * Prints one "ok"/"not ok" line per check and a summary; exits 1 on failure.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "counters_core.h"

static int failures = 0;
static int checks = 0;

static void check_u64(const char *name, uint64_t got, uint64_t want) {
  checks++;
  if (got == want) {
    printf("ok %d - %s\n", checks, name);
  } else {
    failures++;
    printf("not ok %d - %s: got %" PRIu64 " (0x%" PRIx64 "), want %" PRIu64 " (0x%" PRIx64 ")\n", checks, name,
           got, got, want, want);
  }
}

/* ---- ergo_compose_rdpmc ---- */

static void test_compose(void) {
  const uint64_t mask48 = (UINT64_C(1) << 48) - 1;

  check_u64("compose: positive pmc below bit 47 is added as is", ergo_compose_rdpmc(1000, 234, 48), 1234);
  check_u64("compose: all-ones 48-bit pmc is -1", ergo_compose_rdpmc(1000, mask48, 48), 999);
  check_u64("compose: bit 47 set sign-extends to -2^47", ergo_compose_rdpmc(INT64_C(1) << 47, UINT64_C(1) << 47, 48),
            0);
  check_u64("compose: garbage above the width is ignored", ergo_compose_rdpmc(10, UINT64_C(0xFFFF000000000005), 48),
            15);
  check_u64("compose: garbage above the width is ignored for negative pmc",
            ergo_compose_rdpmc(10, UINT64_C(0x1234000000000000) | mask48, 48), 9);
  /* The kernel programs the counter at -period and publishes offset so that
   * offset + sext(pmc) is the running count: 5 events after a reload at
   * -(2^20) with a count of 7,000,000 before it. */
  check_u64("compose: counter armed at a negative value",
            ergo_compose_rdpmc(7000000 + (INT64_C(1) << 20), (mask48 + 1 - (UINT64_C(1) << 20) + 5) & mask48, 48),
            7000005);
  /* The 64-bit result wraps modulo 2^64 like the kernel's u64 count. */
  check_u64("compose: wraps past INT64_MAX without overflow", ergo_compose_rdpmc(INT64_MAX, 1, 48),
            UINT64_C(1) << 63);
  check_u64("compose: negative total wraps to the top of u64", ergo_compose_rdpmc(0, mask48, 48), UINT64_MAX);
  check_u64("compose: width 64 takes pmc as a full signed value", ergo_compose_rdpmc(5, UINT64_MAX, 64), 4);
  check_u64("compose: width 64 positive", ergo_compose_rdpmc(5, UINT64_C(1) << 62, 64), (UINT64_C(1) << 62) + 5);
  check_u64("compose: width 0 (no rdpmc) returns offset", ergo_compose_rdpmc(42, 12345, 0), 42);
  check_u64("compose: width above 64 returns offset", ergo_compose_rdpmc(42, 12345, 65), 42);
  check_u64("compose: width 1, pmc 1 is -1", ergo_compose_rdpmc(42, 1, 1), 41);
  check_u64("compose: width 32 sign-extends bit 31", ergo_compose_rdpmc(100, UINT64_C(0xFFFFFFFF), 32), 99);
}

/* ---- ergo_read_mmap_page ---- */

/* The fake hardware: rdpmc returns fake_pmc; optionally, on its first call,
 * plays the kernel rescheduling the task mid-read (new offset, lock bumped)
 * and returns a value that belongs to neither state. */
static volatile struct perf_event_mmap_page *fake_page;
static uint64_t fake_pmc;
static uint32_t last_counter;
static int rdpmc_calls;
static int bump_lock_on_first_call;
static int64_t offset_after_bump;

static uint64_t fake_rdpmc(uint32_t counter) {
  rdpmc_calls++;
  last_counter = counter;
  if (bump_lock_on_first_call && rdpmc_calls == 1) {
    fake_page->lock++;
    fake_page->offset = offset_after_bump;
    fake_page->lock++;
    return UINT64_C(0xDEAD);
  }
  return fake_pmc;
}

static void reset_fake(struct perf_event_mmap_page *page) {
  memset(page, 0, sizeof *page);
  fake_page = page;
  page->lock = 4;
  page->index = 3; /* hardware counter 2, the kernel publishes index + 1 */
  page->offset = 1000000;
  page->pmc_width = 48;
  page->cap_user_rdpmc = 1;
  fake_pmc = 234;
  last_counter = UINT32_MAX;
  rdpmc_calls = 0;
  bump_lock_on_first_call = 0;
  offset_after_bump = 0;
}

static void test_mmap_page(void) {
  struct perf_event_mmap_page page;
  uint64_t out;

  reset_fake(&page);
  out = 77;
  check_u64("mmap: normal read returns OK", ergo_read_mmap_page(&page, fake_rdpmc, &out), ERGO_MMAP_OK);
  check_u64("mmap: normal read is offset + pmc", out, 1000234);
  check_u64("mmap: rdpmc is given index - 1", last_counter, 2);
  check_u64("mmap: normal read calls rdpmc once", (uint64_t)rdpmc_calls, 1);

  reset_fake(&page);
  page.offset = 500;
  fake_pmc = (UINT64_C(1) << 48) - 100; /* -100 in 48 bits */
  ergo_read_mmap_page(&page, fake_rdpmc, &out);
  check_u64("mmap: pmc is sign-extended with pmc_width", out, 400);

  reset_fake(&page);
  page.cap_user_rdpmc = 0;
  out = 77;
  check_u64("mmap: cap_user_rdpmc=0 needs the syscall", ergo_read_mmap_page(&page, fake_rdpmc, &out),
            ERGO_MMAP_NEEDS_SYSCALL);
  check_u64("mmap: cap_user_rdpmc=0 does not execute rdpmc", (uint64_t)rdpmc_calls, 0);
  check_u64("mmap: cap_user_rdpmc=0 leaves out untouched", out, 77);

  reset_fake(&page);
  page.index = 0;
  out = 77;
  check_u64("mmap: index=0 (event not on a PMU) needs the syscall", ergo_read_mmap_page(&page, fake_rdpmc, &out),
            ERGO_MMAP_NEEDS_SYSCALL);
  check_u64("mmap: index=0 does not execute rdpmc", (uint64_t)rdpmc_calls, 0);
  check_u64("mmap: index=0 leaves out untouched", out, 77);

  reset_fake(&page);
  bump_lock_on_first_call = 1;
  offset_after_bump = 2000000;
  check_u64("mmap: seqlock change mid-read still succeeds", ergo_read_mmap_page(&page, fake_rdpmc, &out),
            ERGO_MMAP_OK);
  check_u64("mmap: seqlock change mid-read is retried", (uint64_t)rdpmc_calls, 2);
  /* Without the retry this would be 1000000 + 0xDEAD, a mix of two states. */
  check_u64("mmap: seqlock retry returns the consistent new state", out, 2000234);
}

int main(void) {
  test_compose();
  test_mmap_page();
  printf("# %d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
