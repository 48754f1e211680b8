/* test_settings.c - engine settings accepted and refused as the kernel's
 * sysfs files accept and refuse them (mm/ksm.c 6.12). */
#include <errno.h>
#include <string.h>

#include "check.h"

/* pages_to_scan_store() takes any unsigned int, 0 included; ksmd then
 * scans nothing per batch (ksm_do_scan(0) never looks at a page), so no
 * pass starts and no page is charged or tracked. */
static void pages_to_scan_zero(void) {
  sp_settings s;
  sp_settings_default(&s);
  s.pages_to_scan = 0;
  sp_engine *e = NULL;
  CHECK_OK(sp_engine_create(&s, &e));
  if (!e) return;
  sp_settings got;
  sp_engine_settings(e, &got);
  CHECK_EQ(got.pages_to_scan, 0);

  unsigned char *mem = sp_test_pages(4);
  for (int i = 0; i < 4; i++) sp_test_fill(mem + i * SP_PAGE_SIZE, 9);
  CHECK_OK(sp_add_memory(e, "idle", mem, 4 * SP_PAGE_SIZE, NULL));
  CHECK_EQ(sp_engine_step(e, 0), 0);
  sp_counters c = sp_test_counters(e);
  CHECK_EQ(c.pages_scanned, 0);
  CHECK_EQ(c.rmap_items, 0);
  sp_progress p;
  sp_engine_progress(e, &p);
  CHECK_EQ(p.pass_pages, 0);
  /* An explicit count and a whole pass still scan. */
  CHECK_EQ(sp_engine_step(e, 2), 2);
  CHECK_EQ(sp_engine_pass(e), 2);
  CHECK_EQ(sp_test_counters(e).full_scans, 1);

  /* Back to 0 through configure, and from 0 to a count. */
  s.pages_to_scan = 3;
  CHECK_OK(sp_engine_configure(e, &s));
  CHECK_EQ(sp_engine_step(e, 0), 3);
  s.pages_to_scan = 0;
  CHECK_OK(sp_engine_configure(e, &s));
  uint64_t scanned = sp_test_counters(e).pages_scanned;
  CHECK_EQ(sp_engine_step(e, 0), 0);
  CHECK_EQ(sp_test_counters(e).pages_scanned, scanned);
  sp_engine_destroy(e);
  sp_test_free_pages(mem, 4);
}

/* max_page_sharing_store() refuses values below 2, and so does the engine,
 * without changing what it had. */
static void max_page_sharing_below_two(void) {
  sp_settings s;
  sp_settings_default(&s);
  s.max_page_sharing = 1;
  sp_engine *e = NULL;
  CHECK_EQ(sp_engine_create(&s, &e), -EINVAL);
  CHECK(e == NULL);
  e = sp_test_engine(0, 256, 1, 1);
  CHECK_EQ(sp_engine_configure(e, &s), -EINVAL);
  sp_settings got;
  sp_engine_settings(e, &got);
  CHECK_EQ(got.max_page_sharing, 256);
  sp_engine_destroy(e);
}

/* stable_node_chains_prune_millisecs decides which dup of a chain takes a
 * merge, as stable_node_dup() does: a walk that is due takes the fullest dup
 * with room, any other the first one.  With max_page_sharing 4, twelve equal
 * pages make a chain of three full dups, listed newest first: {8..11},
 * {4..7}, {0..3}.  Pages 9-11 and 7 are rewritten (the dups hold 1 and 3),
 * page 11 is written back (two passes later it merges into one of them: the
 * stable search comes after the checksum gate in 6.12), then page 8 is
 * rewritten: the first dup empties, and goes, only if page 11 went to the
 * other one. */
static int dups_after_page_11(uint32_t prune_millisecs, uint64_t *sharing, uint64_t *merged) {
  sp_settings s;
  sp_settings_default(&s);
  s.max_page_sharing = 4;
  s.smart_scan = false;
  s.lookahead = false;
  s.stable_node_chains_prune_millisecs = prune_millisecs;
  sp_engine *e = NULL;
  CHECK_OK(sp_engine_create(&s, &e));
  if (!e) return -1;
  unsigned char *mem = sp_test_pages(12);
  for (int i = 0; i < 12; i++) sp_test_fill(mem + i * SP_PAGE_SIZE, 7);
  CHECK_OK(sp_add_memory(e, "chain", mem, 12 * SP_PAGE_SIZE, NULL));
  sp_test_passes(e, 2);
  sp_counters c = sp_test_counters(e);
  CHECK_EQ(c.stable_node_chains, 1);
  CHECK_EQ(c.stable_node_dups, 3);
  CHECK_EQ(c.pages_sharing, 9);
  const int rewritten[] = {7, 9, 10, 11};
  for (int i = 0; i < 4; i++) sp_test_fill(mem + rewritten[i] * SP_PAGE_SIZE, 100 + (uint64_t)i);
  sp_test_passes(e, 1);
  CHECK_EQ(sp_test_counters(e).pages_sharing, 5);
  sp_test_fill(mem + 11 * SP_PAGE_SIZE, 7);
  sp_test_passes(e, 2); /* the first finds its checksum changed */
  CHECK_EQ(sp_test_counters(e).pages_sharing, 6);
  sp_test_fill(mem + 8 * SP_PAGE_SIZE, 200);
  sp_test_passes(e, 1);
  c = sp_test_counters(e);
  CHECK_EQ(c.stable_node_chains, 1);
  *sharing = c.pages_sharing;
  *merged = c.pages_shared + c.pages_sharing;
  sp_engine_destroy(e);
  sp_test_free_pages(mem, 12);
  return (int)c.stable_node_dups;
}

static void chains_prune_millisecs(void) {
  uint64_t sharing_walked = 0, sharing_first = 0, merged_walked = 0, merged_first = 0;
  /* 0: every lookup walks; page 11 joins the fullest dup, {4,5,6}, and
   * {8} goes with page 8: two dups of 4, 6 pages sharing. */
  CHECK_EQ(dups_after_page_11(0, &sharing_walked, &merged_walked), 2);
  CHECK_EQ(sharing_walked, 6);
  /* An hour: no walk is due in this test; page 11 joins {8}, the first,
   * which is left with page 11 alone: one more merged page, one less
   * sharing. */
  CHECK_EQ(dups_after_page_11(3600 * 1000, &sharing_first, &merged_first), 3);
  CHECK_EQ(sharing_first, 5);
  /* The same pages merged either way; only where differs. */
  CHECK_EQ(merged_walked, merged_first);
  sp_settings d;
  sp_settings_default(&d);
  CHECK_EQ(d.stable_node_chains_prune_millisecs, 2000);
}

int main(void) {
  sp_check_run("pages_to_scan 0 is accepted and scans nothing per step", pages_to_scan_zero);
  sp_check_run("max_page_sharing below 2 is refused", max_page_sharing_below_two);
  sp_check_run("stable_node_chains_prune_millisecs picks the dup a merge joins", chains_prune_millisecs);
  return sp_check_done();
}
