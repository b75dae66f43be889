/*
 * @ergometer/counters native part: opens one CPU-cost counter for the calling
 * thread and reads it. Thin on purpose: the syscalls live here, the policy
 * (which source to prefer, how to report fallbacks) lives in TypeScript.
 *
 * Sources, in the order "auto" tries them:
 *   instructions   perf_event_open(PERF_COUNT_HW_INSTRUCTIONS), user space only;
 *                  read with rdpmc from the mmap page when the kernel allows it
 *                  (cap_user_rdpmc), else with read(2).
 *   task-clock     perf_event_open(PERF_COUNT_SW_TASK_CLOCK): nanoseconds this
 *                  thread was on a CPU; read(2).
 *   thread-cputime clock_gettime(CLOCK_THREAD_CPUTIME_ID), nanoseconds.
 *
 * Each successful tryOpen owns its own state (file descriptor, mmap page),
 * bound as the data of the `read` and `close` functions it returns: two
 * counters opened in one thread never disturb each other. perf_event_open(pid
 * 0) and CLOCK_THREAD_CPUTIME_ID both measure the thread that opened the
 * counter, and a JS function never leaves its thread, so a counter opened in a
 * worker measures that worker.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/perf_event.h>
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "counters_core.h"
#include "perf_open.h"

enum source {
  SRC_NONE = 0,
  SRC_INSTRUCTIONS = 1,
  SRC_TASK_CLOCK = 2,
  SRC_THREAD_CPUTIME = 3,
};

typedef struct {
  enum source source;
  int fd;
  struct perf_event_mmap_page *page; /* instructions only; NULL when not mapped */
  size_t page_len;
  int rdpmc; /* 1 when the mmap page allows user-space reads */
  int js_refs; /* JS functions (read, close) still holding this state; freed at 0 */
} counter_state;

static void close_state(counter_state *st) {
  if (st->page) munmap(st->page, st->page_len);
  if (st->fd >= 0) close(st->fd);
  st->page = NULL;
  st->fd = -1;
  st->rdpmc = 0;
  st->source = SRC_NONE;
}

/* Opens `src` into a fresh `st`. Returns 0 on success, else the errno of the
 * failed step (st is then left closed). */
static int try_open(counter_state *st, enum source src) {
  if (src == SRC_THREAD_CPUTIME) {
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return errno;
    st->source = src;
    return 0;
  }
  int fd = src == SRC_INSTRUCTIONS ? ergo_open_perf(PERF_TYPE_HARDWARE, PERF_COUNT_HW_INSTRUCTIONS)
                                   : ergo_open_perf(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_TASK_CLOCK);
  if (fd < 0) return errno;
  uint64_t probe;
  if (read(fd, &probe, sizeof probe) != (ssize_t)sizeof probe) {
    int err = errno ? errno : EIO;
    close(fd);
    return err;
  }
  st->fd = fd;
  st->source = src;
  if (src == SRC_INSTRUCTIONS && ERGO_HAVE_RDPMC) {
    size_t len = (size_t)sysconf(_SC_PAGESIZE);
    void *page = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    if (page != MAP_FAILED) {
      st->page = (struct perf_event_mmap_page *)page;
      st->page_len = len;
      st->rdpmc = st->page->cap_user_rdpmc ? 1 : 0;
    }
  }
  return 0;
}

/* Hot path. Returns the counter as a double: exact up to 2^53, i.e. ~104 days
 * of CPU time in ns or ~9e15 instructions. */
static inline double read_state(counter_state *st) {
  switch (st->source) {
    case SRC_THREAD_CPUTIME: {
      struct timespec ts;
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
      return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
    }
    case SRC_INSTRUCTIONS:
      if (st->rdpmc) {
        uint64_t value;
        if (ergo_read_mmap_page(st->page, ergo_rdpmc, &value) == ERGO_MMAP_OK) return (double)value;
      }
      __attribute__((fallthrough)); /* to read(2) */
    case SRC_TASK_CLOCK: {
      uint64_t value = 0;
      if (read(st->fd, &value, sizeof value) != (ssize_t)sizeof value) return -1;
      return (double)value;
    }
    default:
      return -1;
  }
}

static const char *source_name(enum source src) {
  switch (src) {
    case SRC_INSTRUCTIONS: return "instructions";
    case SRC_TASK_CLOCK: return "task-clock";
    case SRC_THREAD_CPUTIME: return "thread-cputime";
    default: return "none";
  }
}

static enum source source_from_name(const char *name) {
  if (strcmp(name, "instructions") == 0) return SRC_INSTRUCTIONS;
  if (strcmp(name, "task-clock") == 0) return SRC_TASK_CLOCK;
  if (strcmp(name, "thread-cputime") == 0) return SRC_THREAD_CPUTIME;
  return SRC_NONE;
}

/* Finalizer of the read and close functions: the state lives until both are
 * garbage collected, so a close() held after read() was dropped stays safe. */
static void release_state(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  counter_state *st = (counter_state *)data;
  if (--st->js_refs > 0) return;
  close_state(st);
  free(st);
}

static counter_state *state_of(napi_env env, napi_callback_info info) {
  void *data = NULL;
  napi_get_cb_info(env, info, NULL, NULL, NULL, &data);
  return (counter_state *)data;
}

static napi_value js_read(napi_env env, napi_callback_info info);
static napi_value js_close(napi_env env, napi_callback_info info);

/* Creates a JS function bound to st and registers it as an owner of st.
 * Returns NULL on failure (st is then not owned by it). */
static napi_value bound_function(napi_env env, const char *name, napi_callback cb, counter_state *st) {
  napi_value fn;
  if (napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, st, &fn) != napi_ok) return NULL;
  if (napi_add_finalizer(env, fn, st, release_state, NULL, NULL) != napi_ok) return NULL;
  st->js_refs++;
  return fn;
}

#define NAPI_OK_OR_NULL(call) \
  do {                        \
    if ((call) != napi_ok) return NULL; \
  } while (0)

/* tryOpen(source: string) -> { ok: true, source, rdpmc, read, close } | { ok: false, errno, error } */
static napi_value js_try_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_OK_OR_NULL(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[32] = {0};
  size_t len = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok) {
    napi_throw_type_error(env, "ERGOMETER_BAD_ARGUMENT", "tryOpen(source) needs a source name");
    return NULL;
  }
  enum source src = source_from_name(name);
  if (src == SRC_NONE) {
    napi_throw_range_error(env, "ERGOMETER_BAD_ARGUMENT", "unknown counter source");
    return NULL;
  }
  counter_state *st = (counter_state *)calloc(1, sizeof *st);
  if (st == NULL) {
    napi_throw_error(env, "ERGOMETER_COUNTERS_UNAVAILABLE", "out of memory");
    return NULL;
  }
  st->fd = -1;
  int err = try_open(st, src);
  if (err != 0) free(st);
  napi_value result, value;
  NAPI_OK_OR_NULL(napi_create_object(env, &result));
  NAPI_OK_OR_NULL(napi_get_boolean(env, err == 0, &value));
  NAPI_OK_OR_NULL(napi_set_named_property(env, result, "ok", value));
  if (err == 0) {
    napi_value read_fn = bound_function(env, "read", js_read, st);
    napi_value close_fn = read_fn ? bound_function(env, "close", js_close, st) : NULL;
    if (close_fn == NULL) {
      /* Not owned by any function yet: free here. Owned by read only: its
       * finalizer frees it; close the fd now so nothing leaks meanwhile. */
      close_state(st);
      if (st->js_refs == 0) free(st);
      return NULL;
    }
    NAPI_OK_OR_NULL(napi_set_named_property(env, result, "read", read_fn));
    NAPI_OK_OR_NULL(napi_set_named_property(env, result, "close", close_fn));
    NAPI_OK_OR_NULL(napi_create_string_utf8(env, source_name(st->source), NAPI_AUTO_LENGTH, &value));
    NAPI_OK_OR_NULL(napi_set_named_property(env, result, "source", value));
    NAPI_OK_OR_NULL(napi_get_boolean(env, st->rdpmc != 0, &value));
    NAPI_OK_OR_NULL(napi_set_named_property(env, result, "rdpmc", value));
  } else {
    NAPI_OK_OR_NULL(napi_create_int32(env, err, &value));
    NAPI_OK_OR_NULL(napi_set_named_property(env, result, "errno", value));
    NAPI_OK_OR_NULL(napi_create_string_utf8(env, strerror(err), NAPI_AUTO_LENGTH, &value));
    NAPI_OK_OR_NULL(napi_set_named_property(env, result, "error", value));
  }
  return result;
}

/* read() -> number (counter value, or -1 after close or when the read failed) */
static napi_value js_read(napi_env env, napi_callback_info info) {
  napi_value result;
  napi_create_double(env, read_state(state_of(env, info)), &result);
  return result;
}

/* close(): releases the fd and mmap page now; idempotent. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  close_state(state_of(env, info));
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"tryOpen", NULL, js_try_open, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
