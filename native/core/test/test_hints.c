/* test_hints.c - page-flag hints changed while a pass is inside the range
 * they describe.  Hinted ranges are swept twice (page-cache pages, then the
 * others); hints swapped mid-sweep would move pages between the sweeps, so
 * a page could be visited twice in one pass or not at all.  New hints take
 * effect when the cursor reaches the next range. */
#include <errno.h>
#include <string.h>

#include "check.h"

#define PAGES 8

static void mid_sweep_change_waits_for_next_range(void) {
  unsigned char *mem = sp_test_pages(PAGES);
  for (int i = 0; i < PAGES; i++) sp_test_fill(mem + (size_t)i * SP_PAGE_SIZE, 100 + (uint64_t)i);
  sp_engine *e = sp_test_engine(0, 256, 0, 0);
  uint32_t id;
  CHECK_OK(sp_add_memory(e, "guest", mem, PAGES * SP_PAGE_SIZE, &id));
  /* Pages 0-3 hold page cache: the first sweep visits them, the second
   * the other four. */
  uint8_t first[PAGES] = {SP_HINT_PAGECACHE, SP_HINT_PAGECACHE, SP_HINT_PAGECACHE, SP_HINT_PAGECACHE};
  CHECK_OK(sp_source_set_hints(e, id, first, PAGES));
  CHECK_EQ(sp_engine_step(e, 2), 2); /* pages 0 and 1, inside the first sweep */

  /* The guest drops its page cache and frees page 7. */
  uint8_t second[PAGES] = {0, 0, 0, 0, 0, 0, 0, SP_HINT_FREE};
  CHECK_OK(sp_source_set_hints(e, id, second, PAGES));
  /* The pass ends with the hints it started the range with: every page
   * once (with the new hints at once, 0 and 1 would come again in the
   * second sweep and 7 would be missed). */
  CHECK_EQ(sp_engine_pass(e), PAGES - 2);
  sp_counters c = sp_test_counters(e);
  CHECK_EQ(c.pages_scanned, PAGES);
  CHECK_EQ(c.rmap_items, PAGES);
  CHECK_EQ(c.full_scans, 1);

  /* From the next pass on, the new hints hold: page 7 is free. */
  CHECK_EQ(sp_engine_pass(e), PAGES - 1);
  c = sp_test_counters(e);
  CHECK_EQ(c.pages_scanned, PAGES + PAGES - 1);
  CHECK_EQ(c.rmap_items, PAGES - 1);
  sp_engine_destroy(e);
  sp_test_free_pages(mem, PAGES);
}

/* Between passes, or while the cursor is elsewhere, hints apply at once;
 * clearing them mid-sweep waits the same way. */
static void clear_mid_sweep_waits_too(void) {
  unsigned char *mem = sp_test_pages(PAGES);
  for (int i = 0; i < PAGES; i++) sp_test_fill(mem + (size_t)i * SP_PAGE_SIZE, 200 + (uint64_t)i);
  sp_engine *e = sp_test_engine(0, 256, 0, 0);
  uint32_t id;
  CHECK_OK(sp_add_memory(e, "guest", mem, PAGES * SP_PAGE_SIZE, &id));
  uint8_t free_half[PAGES] = {0, 0, 0, 0, SP_HINT_FREE, SP_HINT_FREE, SP_HINT_FREE, SP_HINT_FREE};
  CHECK_OK(sp_source_set_hints(e, id, free_half, PAGES));
  CHECK_EQ(sp_engine_pass(e), PAGES / 2); /* applied at once */
  CHECK_EQ(sp_engine_step(e, 2), 2);      /* inside the second sweep */
  CHECK_OK(sp_source_set_hints(e, id, NULL, 0));
  CHECK_EQ(sp_engine_pass(e), PAGES / 2 - 2);
  CHECK_EQ(sp_test_counters(e).pages_scanned, PAGES);
  CHECK_EQ(sp_engine_pass(e), PAGES);
  CHECK_EQ(sp_test_counters(e).pages_scanned, 2 * PAGES);
  sp_engine_destroy(e);
  sp_test_free_pages(mem, PAGES);
}

int main(void) {
  sp_check_run("hints changed mid-sweep take effect at the next range",
               mid_sweep_change_waits_for_next_range);
  sp_check_run("hints cleared mid-sweep take effect at the next range", clear_mid_sweep_waits_too);
  return sp_check_done();
}
