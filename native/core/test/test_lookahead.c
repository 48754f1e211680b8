/* test_lookahead.c - lookahead changes the work, never the result; with
 * lookahead_early (research, not the kernel) runs of new copies merge a
 * pass sooner. */
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

/* One source settled, the other's copy of a run written after its
 * previous visit: the run's first page merges through the gate, and with
 * lookahead_early the pages after it merge on lookahead hits in the same
 * pass instead of the next.  A page no partner matches still waits. */
static void early_merges_runs_a_pass_sooner(void) {
  enum { PAGES = 300, FIRST = 99, RUN = 100 };
  unsigned char *a = sp_test_pages(PAGES), *b = sp_test_pages(PAGES);
  for (int i = 0; i < PAGES; i++) {
    sp_test_fill(a + (size_t)i * SP_PAGE_SIZE, 1000 + (uint64_t)i);
    sp_test_fill(b + (size_t)i * SP_PAGE_SIZE, 5000 + (uint64_t)i);
  }
  sp_settings s;
  sp_settings_default(&s);
  sp_engine *kernel_like, *early;
  CHECK_OK(sp_engine_create(&s, &kernel_like));
  s.lookahead_early = true;
  CHECK_OK(sp_engine_create(&s, &early));
  sp_engine *both[2] = {kernel_like, early};
  for (int k = 0; k < 2; k++) {
    CHECK_OK(sp_add_memory(both[k], NULL, a, PAGES * SP_PAGE_SIZE, NULL));
    CHECK_OK(sp_add_memory(both[k], NULL, b, PAGES * SP_PAGE_SIZE, NULL));
  }
  for (int k = 0; k < 2; k++) CHECK_OK(sp_engine_pass(both[k]));
  /* Pass 2 sees the run's first page equal in both; the rest of b's copy
   * (and one page past it that matches nothing) is written after it. */
  sp_test_fill(b + (size_t)FIRST * SP_PAGE_SIZE, 1000 + FIRST);
  for (int k = 0; k < 2; k++) CHECK_OK(sp_engine_pass(both[k]));
  for (int i = FIRST + 1; i <= FIRST + RUN; i++)
    sp_test_fill(b + (size_t)i * SP_PAGE_SIZE, 1000 + (uint64_t)i);
  sp_test_fill(b + (size_t)(FIRST + RUN + 1) * SP_PAGE_SIZE, 9999);
  for (int k = 0; k < 2; k++) CHECK_OK(sp_engine_pass(both[k]));
  sp_counters x = sp_test_counters(kernel_like), y = sp_test_counters(early);
  CHECK_EQ(x.pages_shared, 1);
  CHECK_EQ(y.pages_shared, 1 + RUN);
  CHECK_EQ(y.lookahead_early, RUN);
  CHECK_EQ(x.lookahead_early, 0);
  /* The miss at the run's end entered no index in either engine. */
  CHECK_EQ(y.pages_unshared, x.pages_unshared - RUN);
  /* A pass later the gate lets the kernel's way catch up: the same result. */
  for (int k = 0; k < 2; k++) CHECK_OK(sp_engine_pass(both[k]));
  sp_test_same_counters(kernel_like, early);
  CHECK_EQ(sp_test_counters(early).pages_shared, 1 + RUN);
  sp_engine_destroy(kernel_like);
  sp_engine_destroy(early);
  sp_test_free_pages(a, PAGES);
  sp_test_free_pages(b, PAGES);
}

/* lookahead_early needs lookahead: with it off, the kernel's counters. */
static void early_without_lookahead_is_the_kernel(void) {
  enum { PAGES = 300 };
  uint64_t rng = 7;
  unsigned char *mem[2] = {sp_test_pages(PAGES), sp_test_pages(PAGES)};
  sp_test_fill_mix(mem, 2, PAGES, &rng);
  sp_settings s;
  sp_settings_default(&s);
  s.lookahead = false;
  sp_engine *plain, *early;
  CHECK_OK(sp_engine_create(&s, &plain));
  s.lookahead_early = true;
  CHECK_OK(sp_engine_create(&s, &early));
  for (int m = 0; m < 2; m++) {
    CHECK_OK(sp_add_memory(plain, NULL, mem[m], PAGES * SP_PAGE_SIZE, NULL));
    CHECK_OK(sp_add_memory(early, NULL, mem[m], PAGES * SP_PAGE_SIZE, NULL));
  }
  for (int pass = 0; pass < 10; pass++) {
    sp_test_churn(mem, 2, PAGES, 25, &rng);
    CHECK_OK(sp_engine_pass(plain));
    CHECK_OK(sp_engine_pass(early));
    sp_test_same_counters(plain, early);
  }
  CHECK_EQ(sp_test_counters(early).lookahead_early, 0);
  sp_engine_destroy(plain);
  sp_engine_destroy(early);
  for (int m = 0; m < 2; m++) sp_test_free_pages(mem[m], PAGES);
}

int main(void) {
  sp_check_run("runs across sources: same result, fewer compares", runs_across_sources);
  sp_check_run("lockstep under churn with chains", churn_lockstep);
  sp_check_run("lookahead_early: a run of new copies merges a pass sooner", early_merges_runs_a_pass_sooner);
  sp_check_run("lookahead_early without lookahead: the kernel's counters", early_without_lookahead_is_the_kernel);
  return sp_check_done();
}
