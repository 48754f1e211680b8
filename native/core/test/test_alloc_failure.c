/* test_alloc_failure.c - allocation failures inside the indexes must not
 * lose what the indexes already hold.  Linked with -Wl,--wrap=malloc, so
 * every malloc of the engine goes through __wrap_malloc below, which fails
 * while `failing` is set. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "index.h"

void *__real_malloc(size_t size);
static bool failing;
void *__wrap_malloc(size_t size) {
  return failing ? NULL : __real_malloc(size);
}

/* ---- the stable index through the engine ------------------------------ */

#define PAIRS 31   /* contents held twice: 31 merged pages */
#define COPIES 5   /* copies of content X: a chain once max_page_sharing 3 is passed */
#define X_SEED 999
#define PAGES (PAIRS * 2 + COPIES + 1)
#define X0 (PAIRS * 2) /* first copy of X */
#define SPARE (PAGES - 1)

static unsigned char *page_at(unsigned char *mem, int i) { return mem + (size_t)i * SP_PAGE_SIZE; }

/* The stable index starts at 64 slots and grows past half full: with 32
 * merged contents in it, one more insert must grow it.  Turning X's merged
 * page into a chain (the fifth copy, with max_page_sharing 3) and
 * collapsing it back re-key the content's index
 * entry; done as remove + insert, that insert needed a larger table, and
 * when malloc failed the content silently left the index, so a later copy
 * of X started a second merged page of the same content. */
static void chain_rekey_survives_enomem(void) {
  sp_settings s;
  sp_settings_default(&s);
  s.max_page_sharing = 3;
  s.smart_scan = false;
  s.lookahead = false;
  s.content_cache_bytes = 0; /* contents come from the pages themselves */
  sp_engine *e;
  CHECK_OK(sp_engine_create(&s, &e));
  unsigned char *mem = sp_test_pages(PAGES);
  for (int i = 0; i < PAIRS * 2; i++) sp_test_fill(page_at(mem, i), (uint64_t)(i / 2) + 1);
  for (int i = X0; i < X0 + COPIES; i++) sp_test_fill(page_at(mem, i), X_SEED);
  sp_test_fill(page_at(mem, SPARE), 5000);
  CHECK_OK(sp_add_memory(e, "mem", mem, PAGES * SP_PAGE_SIZE, NULL));

  sp_test_passes(e, 1);
  /* Pass 2 up to the fourth copy of X: 31 + 1 merged pages, X full at 3
   * mappings, the fourth copy waiting in the unstable index. */
  CHECK_EQ(sp_engine_step(e, X0 + 4), X0 + 4);
  CHECK_EQ(sp_test_counters(e).merged_contents, PAIRS + 1);
  /* The fifth copy merges with the fourth into a second merged page of X:
   * X becomes a chain, with malloc failing throughout. */
  failing = true;
  int64_t got = sp_engine_step(e, 1);
  failing = false;
  CHECK_EQ(got, 1);
  CHECK_OK(sp_engine_pass(e));
  sp_counters c = sp_test_counters(e);
  CHECK_EQ(c.stable_node_chains, 1);
  CHECK_EQ(c.stable_node_dups, 2);
  CHECK_EQ(c.merged_contents, PAIRS + 1);

  /* The spare page becomes X too: it must find the chain and join its
   * second merged page, not wait in the unstable index. */
  memcpy(page_at(mem, SPARE), page_at(mem, X0), SP_PAGE_SIZE);
  sp_test_passes(e, 2);
  c = sp_test_counters(e);
  CHECK_EQ(c.pages_unshared, 0);
  CHECK_EQ(c.pages_shared, PAIRS + 2);
  CHECK_EQ(c.pages_sharing, PAIRS + 2 + 2);

  /* Copies 4 and 5 and the spare are written: the second merged page
   * loses every mapping, malloc failing while the last one goes.  The
   * chain stays, with one dup, as the kernel keeps it until a search
   * passes its node. */
  sp_test_fill(page_at(mem, X0 + 3), 7001);
  sp_test_fill(page_at(mem, X0 + 4), 7002);
  sp_test_fill(page_at(mem, SPARE), 7003);
  CHECK_EQ(sp_engine_step(e, SPARE), SPARE);
  failing = true;
  got = sp_engine_step(e, 1);
  failing = false;
  CHECK_EQ(got, 1);
  c = sp_test_counters(e);
  CHECK_EQ(c.stable_node_chains, 1);
  CHECK_EQ(c.stable_node_dups, 1);
  CHECK_EQ(c.merged_contents, PAIRS + 1);

  /* Copies 4 and 5 hold X again.  Copy 4's search (a pass after its
   * checksum changed) ends at X's chain and collapses it back into a
   * regular merged page, malloc failing meanwhile; it is full, so copy 4
   * waits in the unstable index. */
  memcpy(page_at(mem, X0 + 3), page_at(mem, X0), SP_PAGE_SIZE);
  memcpy(page_at(mem, X0 + 4), page_at(mem, X0), SP_PAGE_SIZE);
  sp_test_passes(e, 2); /* the end of the spare's pass, then the gate's */
  CHECK_EQ(sp_engine_step(e, X0 + 3), X0 + 3);
  failing = true;
  got = sp_engine_step(e, 1);
  failing = false;
  CHECK_EQ(got, 1);
  c = sp_test_counters(e);
  CHECK_EQ(c.stable_node_chains, 0);
  CHECK_EQ(c.stable_node_dups, 0);
  CHECK_EQ(c.merged_contents, PAIRS + 1);
  /* Copy 5 merges with it into a new dup of X's content, so X is a chain
   * again, and X has still one content node, not two. */
  sp_test_passes(e, 3);
  c = sp_test_counters(e);
  CHECK_EQ(c.merged_contents, PAIRS + 1);
  CHECK_EQ(c.stable_node_chains, 1);
  CHECK_EQ(c.stable_node_dups, 2);
  sp_engine_destroy(e);
  sp_test_free_pages(mem, PAGES);
}

/* ---- the index itself -------------------------------------------------- */

static uint32_t value_is_low(void *ctx, uint32_t value) { return value; }

static bool holds(const struct sp_index *ix, uint64_t hash, uint32_t value) {
  struct sp_index_probe p;
  uint64_t examined = 0;
  sp__index_probe_init(ix, hash, &p);
  for (uint32_t v; (v = sp__index_probe_next(ix, &p, &examined)) != UINT32_MAX;)
    if (v == value) return true;
  return false;
}

/* sp__index_reset() promises an empty index even when it cannot get the
 * larger table it wants: entries of the previous pass must not survive
 * (their records may be gone by now). */
static void reset_empties_on_enomem(void) {
  struct sp_index ix;
  sp__index_init(&ix, value_is_low, NULL);
  CHECK_OK(sp__index_reset(&ix, 10));
  for (uint32_t v = 1; v <= 10; v++) CHECK_OK(sp__index_insert(&ix, (uint64_t)v << 32 | v, v));
  failing = true;
  int err = sp__index_reset(&ix, 100000);
  failing = false;
  CHECK_EQ(err, -ENOMEM);
  CHECK_EQ(ix.used, 0);
  for (uint32_t v = 1; v <= 10; v++) CHECK(!holds(&ix, (uint64_t)v << 32 | v, v));
  /* Still usable. */
  CHECK_OK(sp__index_insert(&ix, (uint64_t)7 << 32 | 7, 7));
  CHECK(holds(&ix, (uint64_t)7 << 32 | 7, 7));
  sp__index_free(&ix);
}

int main(void) {
  sp_check_run("a chain made and collapsed under ENOMEM stays indexed", chain_rekey_survives_enomem);
  sp_check_run("an index reset under ENOMEM leaves it empty", reset_empties_on_enomem);
  return sp_check_done();
}
