/* test_lookahead.c - lookahead changes the work, never the result. */
#include <string.h>

#include "check.h"

/* Guests booted from the same image share long runs of identical pages. */
static void runs_across_sources(void) {
  enum { PAGES = 2000, COPIES = 3 };
  unsigned char *mem[COPIES];
  for (int c = 0; c < COPIES; c++) {
    mem[c] = sp_test_pages(PAGES);
    for (int i = 0; i < PAGES; i++) {
      /* 90% of the pages are the shared image, in runs; the rest differ. */
      uint64_t seed = (i % 50) < 45 ? (uint64_t)i + 1 : ((uint64_t)(c + 1) << 32) + (uint64_t)i;
      sp_test_fill(mem[c] + (size_t)i * SP_PAGE_SIZE, seed);
    }
  }
  sp_engine *on = sp_test_engine(0, 256, 1, 1), *off = sp_test_engine(0, 256, 1, 0);
  for (int c = 0; c < COPIES; c++) {
    CHECK_OK(sp_add_memory(on, NULL, mem[c], PAGES * SP_PAGE_SIZE, NULL));
    CHECK_OK(sp_add_memory(off, NULL, mem[c], PAGES * SP_PAGE_SIZE, NULL));
  }
  for (int pass = 0; pass < 4; pass++) {
    CHECK_OK(sp_engine_pass(on));
    CHECK_OK(sp_engine_pass(off));
    sp_test_same_counters(on, off);
  }
  sp_counters x = sp_test_counters(on), y = sp_test_counters(off);
  CHECK_EQ(x.pages_shared, 1800);
  CHECK_EQ(x.pages_sharing, 3600);
  CHECK_EQ(y.lookahead_hits + y.lookahead_misses, 0);
  /* All merging is in pass 2 (pass 1 records checksums).  The second copy
   * matches the first through the unstable index, the third through the
   * stable one; in each of the 40 runs of 45 shared pages per copy only the
   * first page searches, and the page after the run's last is the one miss
   * (pages 45..49 of every 50 differ). */
  CHECK_EQ(x.lookahead_hits, 2 * 40 * 44);
  CHECK_EQ(x.lookahead_misses, 2 * 40);
  CHECK(x.page_compares < y.page_compares);
  CHECK(x.page_compares * 10 < y.page_compares * 8);
  sp_engine_destroy(on);
  sp_engine_destroy(off);
  for (int c = 0; c < COPIES; c++) sp_test_free_pages(mem[c], PAGES);
}

/* Lockstep under churn with tiny max_page_sharing: merged pages are
 * written (groups shrink, full merged pages get room again), pages come
 * and go; the two engines must agree after every pass. */
static void churn_lockstep(void) {
  enum { PAGES = 400, SOURCES = 3 };
  uint64_t rng = 88172645463325252ull;
  unsigned char *mem[SOURCES];
  for (int s = 0; s < SOURCES; s++) mem[s] = sp_test_pages(PAGES);
  sp_test_fill_mix(mem, SOURCES, PAGES, &rng);
  for (uint32_t m = 2; m <= 4; m++) {
    sp_engine *on = sp_test_engine((int)(m & 1), m, 1, 1), *off = sp_test_engine((int)(m & 1), m, 1, 0);
    for (int s = 0; s < SOURCES; s++) {
      CHECK_OK(sp_add_memory(on, NULL, mem[s], PAGES * SP_PAGE_SIZE, NULL));
      CHECK_OK(sp_add_memory(off, NULL, mem[s], PAGES * SP_PAGE_SIZE, NULL));
    }
    for (int pass = 0; pass < 30; pass++) {
      sp_test_churn(mem, SOURCES, PAGES, 25, &rng);
      CHECK_OK(sp_engine_pass(on));
      CHECK_OK(sp_engine_pass(off));
      sp_test_same_counters(on, off);
    }
    CHECK(sp_test_counters(on).lookahead_hits > 0);
    sp_engine_destroy(on);
    sp_engine_destroy(off);
  }
  for (int s = 0; s < SOURCES; s++) sp_test_free_pages(mem[s], PAGES);
}

int main(void) {
  sp_check_run("runs across sources: same result, fewer compares", runs_across_sources);
  sp_check_run("lockstep under churn with chains", churn_lockstep);
  return sp_check_done();
}
