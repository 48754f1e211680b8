/* check.h - a small test harness for the C core: checks that print both
 * values, continue with the next test on failure, and count results. */
#ifndef SP_CHECK_H
#define SP_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "samepage.h"

void sp_check_fail(const char *file, int line, const char *expr);
void sp_check_fail_eq(const char *file, int line, const char *a, const char *b,
                      long long va, long long vb);

#define CHECK(c)                                                    \
  do {                                                              \
    if (!(c)) sp_check_fail(__FILE__, __LINE__, #c);                \
  } while (0)
#define CHECK_EQ(a, b)                                              \
  do {                                                              \
    long long va_ = (long long)(a), vb_ = (long long)(b);           \
    if (va_ != vb_) sp_check_fail_eq(__FILE__, __LINE__, #a, #b, va_, vb_); \
  } while (0)
/* A call returning a negative errno must succeed. */
#define CHECK_OK(call)                                              \
  do {                                                              \
    long long r_ = (long long)(call);                               \
    if (r_ < 0) sp_check_fail_eq(__FILE__, __LINE__, #call, "0", r_, 0); \
  } while (0)

/* Runs one test function; a failed check ends that test only. */
void sp_check_run(const char *name, void (*fn)(void));
/* A test that cannot run here, and why: "ok N # SKIP name: reason". */
void sp_check_skip(const char *name, const char *reason);
/* Prints "N passed, N failed" and returns the exit status. */
int sp_check_done(void);

/* ---- helpers shared by tests and the benchmark ---- */

/* Page-aligned anonymous memory (MAP_PRIVATE|MAP_ANONYMOUS), zeroed. */
void *sp_test_pages(size_t npages);
void sp_test_free_pages(void *p, size_t npages);
/* Fills a page with pseudo-random bytes from a 64-bit seed. */
void sp_test_fill(void *page, uint64_t seed);
/* xorshift64: reproducible randomness for a test (state not 0). */
uint64_t sp_test_rand(uint64_t *state);
/* A VM-like mix in `sources` buffers of `pages` pages: one page in four
 * unique, the others 40 contents in turn. */
void sp_test_fill_mix(unsigned char **mem, int sources, int pages, uint64_t *rng);
/* `writes` pages picked at random get one of 60 shared contents, zeros,
 * or a content of their own: churn between passes. */
void sp_test_churn(unsigned char **mem, int sources, int pages, int writes, uint64_t *rng);
/* An engine with default settings changed by the arguments. */
sp_engine *sp_test_engine(int use_zero_pages, uint32_t max_page_sharing,
                          int smart_scan, int lookahead);
/* A child process that holds memory for a test.  body runs in the child,
 * fills its memory, returns the hello it sends (hello_len bytes: e.g. an
 * address); the child then waits until the parent ends it. */
struct sp_test_child {
  pid_t pid;
  int release_fd; /* closing it lets the child exit */
};
typedef void (*sp_test_child_body)(void *hello);
struct sp_test_child sp_test_fork(sp_test_child_body body, void *hello, size_t hello_len);
/* Ends the child (SIGKILL) and reaps it; idempotent. */
void sp_test_end(struct sp_test_child *child);

/* Two engines over the same sources show the same kernel counters
 * (pages, pages scanned, chains, dups, zero pages, profit, rmap items) and
 * per-source merged and zero pages. */
void sp_test_same_counters(const sp_engine *a, const sp_engine *b);

/* Runs n full passes. */
void sp_test_passes(sp_engine *e, int n);
sp_counters sp_test_counters(const sp_engine *e);

#endif
