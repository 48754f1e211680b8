/* test_selftest_counts.c - upstream's deterministic KSM count checks
 * (tools/testing/selftests/mm/ksm_tests.c of 6.12) run through the engine
 * over in-process buffers: the same workloads, the same expected figures,
 * so the engine is held to what the kernel's own selftest demands of ksmd.
 * ksm_merge_pages() waits two full scans after madvise; so do these. */
#include <string.h>

#include "check.h"

/* assert_ksm_pages_count(): n duplicate pages under max_page_sharing mps.
 * A remainder of 1 is a page left alone (one page cannot merge), so it
 * counts as the multiple below it. */
static void expected(long n, long mps, long *shared, long *sharing) {
  if (n % mps == 1 || n % mps == 0) {
    *shared = n / mps;
    *sharing = *shared * (mps - 1);
  } else {
    *shared = n / mps + 1;
    *sharing = n - *shared;
  }
}

/* allocate_memory() with data, then ksm_merge_pages(): two full scans. */
static sp_engine *merged(unsigned char **mem, long n, int use_zero_pages, uint32_t mps, int data) {
  sp_engine *e = sp_test_engine(use_zero_pages, mps, 1, 1);
  *mem = sp_test_pages((size_t)n);
  memset(*mem, data, (size_t)n * SP_PAGE_SIZE);
  uint32_t id;
  CHECK_OK(sp_add_memory(e, "selftest", *mem, (size_t)n * SP_PAGE_SIZE, &id));
  sp_test_passes(e, 2);
  return e;
}

static void check_counts(const sp_engine *e, long n, long mps) {
  long shared, sharing;
  expected(n, mps, &shared, &sharing);
  sp_counters c = sp_test_counters(e);
  CHECK_EQ((long)c.pages_shared, shared);
  CHECK_EQ((long)c.pages_sharing, sharing);
}

/* check_ksm_merge() (-M, the default test): page_count pages of '*'. */
static void merge_max_page_sharing(void) {
  static const long cases[][2] = {{10, 256}, {10, 10}, {11, 10}, {20, 10}, {25, 10}, {5, 2}, {7, 2}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    unsigned char *mem;
    sp_engine *e = merged(&mem, cases[i][0], 0, (uint32_t)cases[i][1], '*');
    check_counts(e, cases[i][0], cases[i][1]);
    sp_engine_destroy(e);
    sp_test_free_pages(mem, (size_t)cases[i][0]);
  }
}

/* check_ksm_zero_page_merge() (-Z): zero pages merge with the zero page
 * under use_zero_pages 1 (no KSM page: 0/0), as usual under 0. */
static void zero_page_merge(void) {
  for (int uzp = 0; uzp <= 1; uzp++) {
    unsigned char *mem;
    sp_engine *e = merged(&mem, 10, uzp, 256, 0);
    check_counts(e, uzp ? 0 : 10, 256);
    sp_engine_destroy(e);
    sp_test_free_pages(mem, 10);
  }
}

/* check_ksm_unmerge() (-U): two merged pages each written one byte, then
 * one scan: nothing merged. */
static void unmerge(void) {
  unsigned char *mem;
  sp_engine *e = merged(&mem, 2, 0, 256, '*');
  check_counts(e, 2, 256);
  memset(mem, '-', 1);
  memset(mem + SP_PAGE_SIZE, '+', 1);
  sp_test_passes(e, 1);
  check_counts(e, 0, 256);
  sp_engine_destroy(e);
  sp_test_free_pages(mem, 2);
}

int main(void) {
  sp_check_run("ksm_tests -M: check_ksm_merge counts", merge_max_page_sharing);
  sp_check_run("ksm_tests -Z: check_ksm_zero_page_merge counts", zero_page_merge);
  sp_check_run("ksm_tests -U: check_ksm_unmerge counts", unmerge);
  return sp_check_done();
}
