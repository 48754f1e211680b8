/* test_property.c - random sources with planted duplicates and mutations:
 * once the data stops changing, the engine settles exactly where a
 * brute-force grouping by full contents says KSM settles; with lookahead
 * on and off the counters agree after every single pass. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "oracle.h"

#define MAX_SOURCES 5

static uint64_t rng_state;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}
static uint64_t below(uint64_t n) { return rnd() % n; }

struct scenario {
  size_t nsrc;
  unsigned char *mem[MAX_SOURCES];
  size_t npages[MAX_SOURCES];
  uint64_t pool[24]; /* seeds of planted contents; seed 0 = zero page */
  size_t npool;
  uint32_t max_page_sharing;
  int use_zero_pages;
  int growth_only; /* mutations only turn unique pages into planted ones */
};

static uint64_t unique_seed(void) { return (rnd() | 1) << 8; }

static void set_page(unsigned char *page, uint64_t seed) {
  if (seed == 0) memset(page, 0, SP_PAGE_SIZE);
  else sp_test_fill(page, seed);
}

/* Planted seeds are small numbers, unique ones large: tell them apart. */
static int is_planted(const unsigned char *page, const struct scenario *sc) {
  unsigned char tmp[SP_PAGE_SIZE];
  for (size_t i = 0; i < sc->npool; i++) {
    set_page(tmp, sc->pool[i]);
    if (!memcmp(tmp, page, SP_PAGE_SIZE)) return 1;
  }
  return 0;
}

static void build(struct scenario *sc, int small_m) {
  memset(sc, 0, sizeof *sc);
  sc->nsrc = 1 + below(MAX_SOURCES);
  sc->npool = 2 + below(small_m ? 5 : 20);
  for (size_t i = 0; i < sc->npool; i++) sc->pool[i] = i == 0 ? 0 : 1 + i;
  sc->max_page_sharing = small_m ? 2 + (uint32_t)below(4) : 256;
  sc->use_zero_pages = (int)below(2);
  sc->growth_only = small_m;
  for (size_t s = 0; s < sc->nsrc; s++) {
    size_t n = 20 + below(small_m ? 60 : 200);
    sc->npages[s] = n;
    sc->mem[s] = sp_test_pages(n);
    for (size_t i = 0; i < n; i++) {
      uint64_t roll = below(100);
      /* Runs of planted pages (what lookahead is for), single planted
       * pages, and unique pages. */
      if (roll < 15 && i + 8 < n) {
        size_t run = 2 + below(6);
        for (size_t k = 0; k < run; k++, i++) set_page(sc->mem[s] + i * SP_PAGE_SIZE, sc->pool[k % sc->npool]);
        i--;
      } else if (roll < 55) {
        set_page(sc->mem[s] + i * SP_PAGE_SIZE, sc->pool[below(sc->npool)]);
      } else {
        set_page(sc->mem[s] + i * SP_PAGE_SIZE, unique_seed());
      }
    }
  }
}

/* Addresses of pages the engine has merged: a merged page that changes
 * leaves its merged page behind with one mapping fewer, and a merged page
 * left with a single mapping stays merged (as in the kernel), which a
 * grouping by contents cannot know.  Mutations avoid merged pages. */
struct merged_set {
  uintptr_t addr[4096];
  size_t n;
};

static int collect_merged(void *ctx, const sp_group *g, const sp_group_member *m,
                          size_t count) {
  struct merged_set *set = ctx;
  (void)g;
  for (size_t i = 0; i < count && set->n < 4096; i++) set->addr[set->n++] = (uintptr_t)m[i].address;
  return 0;
}

static int collect_hashes(void *ctx, const sp_group *g, const sp_group_member *m, size_t count) {
  struct merged_set *set = ctx;
  (void)m;
  (void)count;
  if (set->n < 4096) set->addr[set->n++] = (uintptr_t)g->hash;
  return 0;
}

static int by_value(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return x < y ? -1 : x > y;
}

static size_t distinct(uintptr_t *v, size_t n) {
  qsort(v, n, sizeof *v, by_value);
  size_t d = 0;
  for (size_t i = 0; i < n; i++)
    if (!i || v[i] != v[i - 1]) d++;
  return d;
}

static int is_merged(const struct merged_set *set, const unsigned char *page) {
  for (size_t i = 0; i < set->n; i++)
    if (set->addr[i] == (uintptr_t)page) return 1;
  return 0;
}

static void mutate(struct scenario *sc, sp_engine *e) {
  static struct merged_set merged;
  merged.n = 0;
  CHECK_OK(sp_engine_groups(e, collect_merged, &merged));
  size_t changes = 1 + below(12);
  for (size_t k = 0; k < changes; k++) {
    size_t s = below(sc->nsrc);
    size_t i = below(sc->npages[s]);
    unsigned char *page = sc->mem[s] + i * SP_PAGE_SIZE;
    if (is_merged(&merged, page)) continue;
    if (sc->growth_only) {
      if (!is_planted(page, sc)) set_page(page, sc->pool[below(sc->npool)]);
      continue;
    }
    switch (below(4)) {
    case 0: set_page(page, unique_seed()); break;           /* fresh content */
    case 1: set_page(page, sc->pool[below(sc->npool)]); break; /* joins a group */
    case 2: page[below(SP_PAGE_SIZE)] ^= 0x5a; break;       /* small write */
    default: { /* copy of another page */
      size_t t = below(sc->nsrc);
      memcpy(page, sc->mem[t] + below(sc->npages[t]) * SP_PAGE_SIZE, SP_PAGE_SIZE);
    }
    }
  }
}

static void run_scenario(int small_m, uint64_t seed) {
  rng_state = seed * 0x9e3779b97f4a7c15ull + 1;
  struct scenario sc;
  build(&sc, small_m);
  sp_engine *on = sp_test_engine(sc.use_zero_pages, sc.max_page_sharing, 0, 1);
  sp_engine *off = sp_test_engine(sc.use_zero_pages, sc.max_page_sharing, 0, 0);
  for (size_t s = 0; s < sc.nsrc; s++) {
    CHECK_OK(sp_add_memory(on, NULL, sc.mem[s], sc.npages[s] * SP_PAGE_SIZE, NULL));
    CHECK_OK(sp_add_memory(off, NULL, sc.mem[s], sc.npages[s] * SP_PAGE_SIZE, NULL));
  }
  int mutating = 3 + (int)below(6);
  for (int pass = 0; pass < mutating + 4; pass++) {
    if (pass < mutating && pass > 0) mutate(&sc, on);
    CHECK_OK(sp_engine_pass(on));
    CHECK_OK(sp_engine_pass(off));
    sp_test_same_counters(on, off);
  }

  struct oracle_source os[MAX_SOURCES];
  for (size_t s = 0; s < sc.nsrc; s++) os[s] = (struct oracle_source){sc.mem[s], sc.npages[s]};
  struct oracle_result want;
  oracle_compute(os, sc.nsrc, sc.max_page_sharing, sc.use_zero_pages, &want);
  sp_counters got = sp_test_counters(on);
  CHECK_EQ(got.pages_shared, want.pages_shared);
  CHECK_EQ(got.pages_sharing, want.pages_sharing);
  CHECK_EQ(got.ksm_zero_pages, want.ksm_zero_pages);
  CHECK_EQ(got.stable_node_chains, want.stable_node_chains);
  CHECK_EQ(got.stable_node_dups, want.stable_node_dups);
  /* Four passes after the last write, every page left out is in the
   * unstable tree, none volatile, and every page not on the zero page has
   * its rmap item. */
  CHECK_EQ(got.pages_unshared, want.pages_unshared);
  CHECK_EQ(got.pages_volatile, 0);
  CHECK_EQ(got.rmap_items, want.rmap_items);
  /* The counters kept incrementally agree with a recount. */
  static struct merged_set groups;
  groups.n = 0;
  CHECK_OK(sp_engine_groups(on, collect_hashes, &groups));
  CHECK_EQ(got.merged_contents, distinct(groups.addr, groups.n));
  size_t pages = 0;
  for (size_t s = 0; s < sc.nsrc; s++) pages += sc.npages[s];
  CHECK(got.tracked_pages >= got.rmap_items && got.tracked_pages <= pages);
  if (!want.pages_unshared_singletons) {
    for (size_t s = 0; s < sc.nsrc; s++) {
      sp_source_info info;
      CHECK_OK(sp_source_get(on, s, &info));
      CHECK_EQ(info.merging_pages, want.merging[s]);
      CHECK_EQ(info.zero_pages, want.zero[s]);
    }
  }
  sp_engine_destroy(on);
  sp_engine_destroy(off);
  for (size_t s = 0; s < sc.nsrc; s++) sp_test_free_pages(sc.mem[s], sc.npages[s]);
}

static uint64_t current_seed;
static void scenario_large_m(void) { run_scenario(0, current_seed); }
static void scenario_small_m(void) { run_scenario(1, current_seed); }

int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 40;
  char name[96];
  for (int r = 0; r < rounds; r++) {
    current_seed = (uint64_t)r + 1;
    snprintf(name, sizeof name, "random scenario %d, max_page_sharing 256", r + 1);
    sp_check_run(name, scenario_large_m);
    current_seed = (uint64_t)r + 1001;
    snprintf(name, sizeof name, "random scenario %d, max_page_sharing 2..5", r + 1);
    sp_check_run(name, scenario_small_m);
  }
  return sp_check_done();
}
