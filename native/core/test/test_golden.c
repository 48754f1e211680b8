/* test_golden.c - hand-checked cases of the KSM rules (mm/ksm.c 6.12). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "hash.h"

/* Two identical pages: merged on the second pass (a new page needs one
 * visit to record its checksum).  general_profit = 4096 - 2 * 64. */
static void two_identical_pages(void) {
  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  unsigned char *mem = sp_test_pages(2);
  sp_test_fill(mem, 7);
  memcpy(mem + SP_PAGE_SIZE, mem, SP_PAGE_SIZE);
  CHECK_OK(sp_add_memory(e, "two", mem, 2 * SP_PAGE_SIZE, NULL));

  CHECK_EQ(sp_engine_pass(e), 2);
  sp_counters c = sp_test_counters(e);
  CHECK_EQ(c.pages_shared, 0);
  CHECK_EQ(c.pages_volatile, 2);
  CHECK_EQ(c.rmap_items, 2);
  CHECK_EQ(c.full_scans, 1);

  sp_test_passes(e, 1);
  c = sp_test_counters(e);
  CHECK_EQ(c.pages_shared, 1);
  CHECK_EQ(c.pages_sharing, 1);
  CHECK_EQ(c.pages_unshared, 0);
  CHECK_EQ(c.pages_volatile, 0);
  CHECK_EQ(c.general_profit, 3968);
  CHECK_EQ(c.full_scans, 2);
  CHECK_EQ(c.pages_scanned, 4);

  sp_source_info info;
  CHECK_OK(sp_source_get(e, 0, &info));
  CHECK_EQ(info.merging_pages, 2);
  CHECK_EQ(info.rmap_items, 2);
  CHECK_EQ(info.profit, 2 * 4096 - 2 * 64);
  sp_engine_destroy(e);
  sp_test_free_pages(mem, 2);
}

/* 300 copies, max_page_sharing 256: a chain with two merged pages of 256
 * and 44 mappings. */
static void chain_of_two_dups(void) {
  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  unsigned char *mem = sp_test_pages(300);
  for (int i = 0; i < 300; i++) sp_test_fill(mem + i * SP_PAGE_SIZE, 42);
  CHECK_OK(sp_add_memory(e, "many", mem, 300 * SP_PAGE_SIZE, NULL));
  sp_test_passes(e, 2);
  sp_counters c = sp_test_counters(e);
  CHECK_EQ(c.pages_shared, 2);
  CHECK_EQ(c.pages_sharing, 298);
  CHECK_EQ(c.stable_node_chains, 1);
  CHECK_EQ(c.stable_node_dups, 2);
  /* Steady: more passes change nothing. */
  sp_test_passes(e, 3);
  sp_counters d = sp_test_counters(e);
  CHECK_EQ(d.pages_shared, 2);
  CHECK_EQ(d.pages_sharing, 298);
  CHECK_EQ(d.stable_node_chains, 1);
  CHECK_EQ(d.stable_node_dups, 2);
  sp_engine_destroy(e);
  sp_test_free_pages(mem, 300);
}

/* A chain whose dups all empty stays, as the kernel's does, until a
 * search passes its node: 4 copies at max_page_sharing 2 make a chain of
 * two dups; all four rewritten, the dups go in the next pass but the chain
 * stays (no longer a merged content); a pass later the four pages, stable
 * now, search the tree, whose only node the chain is, and free it. */
static void emptied_chain_waits_for_a_search(void) {
  sp_engine *e = sp_test_engine(0, 2, 0, 0);
  unsigned char *mem = sp_test_pages(4);
  for (int i = 0; i < 4; i++) sp_test_fill(mem + i * SP_PAGE_SIZE, 17);
  CHECK_OK(sp_add_memory(e, "four", mem, 4 * SP_PAGE_SIZE, NULL));
  sp_test_passes(e, 2);
  sp_counters c = sp_test_counters(e);
  CHECK_EQ(c.stable_node_chains, 1);
  CHECK_EQ(c.stable_node_dups, 2);
  CHECK_EQ(c.merged_contents, 1);
  for (int i = 0; i < 4; i++) sp_test_fill(mem + i * SP_PAGE_SIZE, 900 + (uint64_t)i);
  sp_test_passes(e, 1);
  c = sp_test_counters(e);
  CHECK_EQ(c.pages_shared + c.pages_sharing, 0);
  CHECK_EQ(c.stable_node_dups, 0);
  CHECK_EQ(c.stable_node_chains, 1);
  CHECK_EQ(c.merged_contents, 0);
  sp_test_passes(e, 1);
  c = sp_test_counters(e);
  CHECK_EQ(c.stable_node_chains, 0);
  CHECK_EQ(c.merged_contents, 0);
  CHECK_EQ(c.pages_unshared, 4);
  sp_engine_destroy(e);
  sp_test_free_pages(mem, 4);
}

/* 257 copies: the 257th finds every merged page full and no twin in the
 * unstable index, so it stays unshared (it cannot start a dup alone). */
static void one_over_the_limit(void) {
  sp_engine *e = sp_test_engine(0, 256, 0, 1);
  unsigned char *mem = sp_test_pages(257);
  for (int i = 0; i < 257; i++) sp_test_fill(mem + i * SP_PAGE_SIZE, 3);
  CHECK_OK(sp_add_memory(e, "257", mem, 257 * SP_PAGE_SIZE, NULL));
  sp_test_passes(e, 4);
  sp_counters c = sp_test_counters(e);
  CHECK_EQ(c.pages_shared, 1);
  CHECK_EQ(c.pages_sharing, 255);
  CHECK_EQ(c.pages_unshared, 1);
  CHECK_EQ(c.stable_node_chains, 0);
  sp_engine_destroy(e);
  sp_test_free_pages(mem, 257);
}

/* A page that changes between every two passes never merges. */
static void changing_page_never_merges(void) {
  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  unsigned char *mem = sp_test_pages(3);
  sp_test_fill(mem, 1);
  memcpy(mem + SP_PAGE_SIZE, mem, SP_PAGE_SIZE);
  CHECK_OK(sp_add_memory(e, "churn", mem, 3 * SP_PAGE_SIZE, NULL));
  for (int pass = 0; pass < 12; pass++) {
    /* The third page alternates between the others' content and noise. */
    if (pass % 2) memcpy(mem + 2 * SP_PAGE_SIZE, mem, SP_PAGE_SIZE);
    else sp_test_fill(mem + 2 * SP_PAGE_SIZE, 1000 + (uint64_t)pass);
    CHECK_OK(sp_engine_pass(e));
  }
  sp_counters c = sp_test_counters(e);
  CHECK_EQ(c.pages_shared, 1);
  CHECK_EQ(c.pages_sharing, 1); /* only the two stable pages */
  sp_engine_destroy(e);
  sp_test_free_pages(mem, 3);
}

/* A merged page that is written leaves its merged page on its next visit
 * (copy-on-write), and the merged page goes when its last mapping does. */
static void written_page_leaves_group(void) {
  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  unsigned char *mem = sp_test_pages(3);
  for (int i = 0; i < 3; i++) sp_test_fill(mem + i * SP_PAGE_SIZE, 5);
  CHECK_OK(sp_add_memory(e, "cow", mem, 3 * SP_PAGE_SIZE, NULL));
  sp_test_passes(e, 2);
  CHECK_EQ(sp_test_counters(e).pages_sharing, 2);
  mem[2 * SP_PAGE_SIZE + 100] ^= 0xff;
  sp_test_passes(e, 1);
  sp_counters c = sp_test_counters(e);
  CHECK_EQ(c.pages_shared, 1);
  CHECK_EQ(c.pages_sharing, 1);
  CHECK_EQ(c.pages_volatile, 1);
  mem[SP_PAGE_SIZE + 7] ^= 0x1;
  sp_test_passes(e, 1);
  c = sp_test_counters(e);
  /* The first page still maps the merged page alone: one shared page. */
  CHECK_EQ(c.pages_shared, 1);
  CHECK_EQ(c.pages_sharing, 0);
  mem[7] ^= 0x1;
  sp_test_passes(e, 1);
  c = sp_test_counters(e);
  CHECK_EQ(c.pages_shared, 0);
  CHECK_EQ(c.pages_sharing, 0);
  CHECK_EQ(c.merged_contents, 0);
  sp_engine_destroy(e);
  sp_test_free_pages(mem, 3);
}

/* Zero pages: merged like any content with use_zero_pages=0, into the
 * zero page with use_zero_pages=1 (ksm_zero_pages; the rmap_items go on
 * the pass after). */
static void zero_pages(void) {
  unsigned char *mem = sp_test_pages(12);
  sp_test_fill(mem + 10 * SP_PAGE_SIZE, 9);
  sp_test_fill(mem + 11 * SP_PAGE_SIZE, 10);

  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  CHECK_OK(sp_add_memory(e, "z", mem, 12 * SP_PAGE_SIZE, NULL));
  sp_test_passes(e, 2);
  sp_counters c = sp_test_counters(e);
  CHECK_EQ(c.pages_shared, 1);
  CHECK_EQ(c.pages_sharing, 9);
  CHECK_EQ(c.ksm_zero_pages, 0);
  CHECK_EQ(c.pages_unshared, 2);
  sp_engine_destroy(e);

  e = sp_test_engine(1, 256, 1, 1);
  CHECK_OK(sp_add_memory(e, "z", mem, 12 * SP_PAGE_SIZE, NULL));
  sp_test_passes(e, 2);
  c = sp_test_counters(e);
  CHECK_EQ(c.pages_shared, 0);
  CHECK_EQ(c.pages_sharing, 0);
  CHECK_EQ(c.ksm_zero_pages, 10);
  CHECK_EQ(c.rmap_items, 12);
  CHECK_EQ(c.general_profit, 10 * 4096 - 12 * 64);
  sp_test_passes(e, 1);
  c = sp_test_counters(e);
  CHECK_EQ(c.ksm_zero_pages, 10);
  CHECK_EQ(c.rmap_items, 2);
  CHECK_EQ(c.general_profit, 10 * 4096 - 2 * 64);
  sp_source_info info;
  CHECK_OK(sp_source_get(e, 0, &info));
  CHECK_EQ(info.zero_pages, 10);
  /* Writing a zero-merged page makes it a new page again. */
  mem[3 * SP_PAGE_SIZE] = 1;
  sp_test_passes(e, 1);
  c = sp_test_counters(e);
  CHECK_EQ(c.ksm_zero_pages, 9);
  CHECK_EQ(c.rmap_items, 3);
  sp_engine_destroy(e);
  sp_test_free_pages(mem, 12);
}

/* max_page_sharing changes only while nothing is merged, as in sysfs. */
static void max_page_sharing_busy(void) {
  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  unsigned char *mem = sp_test_pages(2);
  sp_test_fill(mem, 11);
  memcpy(mem + SP_PAGE_SIZE, mem, SP_PAGE_SIZE);
  CHECK_OK(sp_add_memory(e, "busy", mem, 2 * SP_PAGE_SIZE, NULL));
  sp_test_passes(e, 2);
  sp_settings s;
  sp_engine_settings(e, &s);
  s.max_page_sharing = 2;
  CHECK_EQ(sp_engine_configure(e, &s), -EBUSY);
  sp_engine_unmerge_all(e);
  sp_counters c = sp_test_counters(e);
  CHECK_EQ(c.pages_shared, 0);
  CHECK_EQ(c.full_scans, 0);
  CHECK_EQ(c.rmap_items, 0);
  CHECK_OK(sp_engine_configure(e, &s));
  s.max_page_sharing = 1;
  CHECK_EQ(sp_engine_configure(e, &s), -EINVAL);
  sp_engine_destroy(e);
  sp_test_free_pages(mem, 2);
}

/* ksmd's batches: pages_to_scan pages per step, a step ends at the end of
 * a pass, and smart-scan skips are not charged. */
static void steps_like_ksmd(void) {
  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  unsigned char *mem = sp_test_pages(250);
  for (int i = 0; i < 250; i++) sp_test_fill(mem + i * SP_PAGE_SIZE, (uint64_t)i + 100);
  CHECK_OK(sp_add_memory(e, "steps", mem, 250 * SP_PAGE_SIZE, NULL));
  CHECK_EQ(sp_engine_step(e, 100), 100);
  CHECK_EQ(sp_engine_step(e, 100), 100);
  CHECK_EQ(sp_engine_step(e, 100), 50); /* the pass ends */
  CHECK_EQ(sp_test_counters(e).full_scans, 1);
  /* Unique pages get skipped after their third visit: passes become
   * cheaper, and skipped pages are counted. */
  sp_test_passes(e, 10);
  sp_counters c = sp_test_counters(e);
  CHECK(c.pages_skipped > 0);
  CHECK_EQ(c.pages_scanned + c.pages_skipped, 250 * 11);
  CHECK_EQ(sp_engine_step(e, 0) <= 100, 1);
  sp_engine_destroy(e);
  sp_test_free_pages(mem, 250);
}

/* Smart scan after a merged page is written (6.12 should_skip_rmap_item()):
 * the page is no longer KSM, so it is aged and may be skipped with the age
 * it merged at (an rmap_item's age stands still while its page is KSM and
 * is never reset).  Two unique pages age alike: visited in passes 1-4, 6,
 * 9 and 14 (skips of 1, 2, 4, then 8).  Page 0 takes page 1's content
 * after pass 6: the checksum gate sees it in pass 9, they merge in pass 14
 * at age 14 with 8 skips to go.  Page 0 written after that is skipped in
 * pass 15, leaving its merged page, and the skip is not charged. */
static void written_merged_page_skipped(void) {
  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  unsigned char *mem = sp_test_pages(2);
  sp_test_fill(mem, 41);
  sp_test_fill(mem + SP_PAGE_SIZE, 42);
  CHECK_OK(sp_add_memory(e, "aged", mem, 2 * SP_PAGE_SIZE, NULL));
  sp_test_passes(e, 6);
  memcpy(mem, mem + SP_PAGE_SIZE, SP_PAGE_SIZE);
  sp_test_passes(e, 7);
  sp_counters c = sp_test_counters(e);
  CHECK_EQ(c.pages_shared, 0);
  sp_test_passes(e, 1); /* pass 14 */
  c = sp_test_counters(e);
  CHECK_EQ(c.pages_shared, 1);
  CHECK_EQ(c.pages_sharing, 1);
  mem[100] ^= 1;
  /* Pass 15, one page per step: page 0 is skipped (not charged), page 1
   * is scanned; the next step ends the pass. */
  CHECK_EQ(sp_engine_step(e, 1), 1);
  sp_counters d = sp_test_counters(e);
  CHECK_EQ(d.pages_skipped - c.pages_skipped, 1);
  CHECK_EQ(d.pages_scanned - c.pages_scanned, 1);
  CHECK_EQ(d.full_scans, c.full_scans);
  CHECK_EQ(d.pages_shared, 1);
  CHECK_EQ(d.pages_sharing, 0);
  CHECK_EQ(sp_engine_step(e, 1), 0);
  CHECK_EQ(sp_test_counters(e).full_scans, c.full_scans + 1);
  sp_engine_destroy(e);
  sp_test_free_pages(mem, 2);
}

static void no_source_no_scan(void) {
  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  CHECK_EQ(sp_engine_pass(e), -ENODATA);
  CHECK_EQ(sp_remove_source(e, 5), -ENOENT);
  CHECK_EQ(sp_add_memory(e, "bad", NULL, 4096, NULL), -EINVAL);
  sp_engine_destroy(e);
}

/* Fixed pages and their hashes.  The values pin the hash itself: records,
 * sketches and tests compare hashes across processes and machines, so a
 * change to the hash shows here and must be made on purpose.  (Little
 * endian: the loops read 64-bit words in the machine's order.) */
static void golden_page(unsigned char *p, int which) {
  switch (which) {
  case 0: memset(p, 0, SP_PAGE_SIZE); break;
  case 1: memset(p, 0xff, SP_PAGE_SIZE); break;
  case 2: for (size_t i = 0; i < SP_PAGE_SIZE; i++) p[i] = (unsigned char)i; break;
  case 3: sp_test_fill(p, 1); break;
  default: sp_test_fill(p, 1), p[SP_PAGE_SIZE - 1] ^= 0x80; break; /* one bit from case 3 */
  }
}
static const uint64_t golden_hash[] = {0xaa4b5c1ed0f23972ull, 0x04bfa283a6ced8ccull, 0x4ccea8bce2ecfe17ull,
                                       0x480439b1f17efae9ull, 0xf485406fa02177f1ull};

/* Every loop this CPU runs gives the fixed values (none may agree with the
 * others on a wrong value); the one it lacks is named, not run (SIGILL). */
static void hash_implementations_agree(void) {
  static const char *const names[] = {"scalar", "sse2", "avx2"};
  unsigned char *p = sp_test_pages(1);
  int checked = 0;
  for (enum sp_hash_impl impl = SP_HASH_SCALAR; impl <= SP_HASH_AVX2; impl++) {
    for (int which = 0; which < (int)(sizeof golden_hash / sizeof golden_hash[0]); which++) {
      golden_page(p, which);
      uint64_t h = 0;
      int err = sp__hash_page_with(p, impl, &h);
      if (err == -EOPNOTSUPP) {
        if (which == 0) printf("  %s: not on this CPU or build, not run\n", names[impl]);
        continue;
      }
      CHECK_OK(err);
      if (h != golden_hash[which]) printf("  %s page %d: 0x%016llxull\n", names[impl], which, (unsigned long long)h);
      CHECK_EQ(h, golden_hash[which]);
      checked++;
      /* The public hash, with the loop this process picked. */
      CHECK_EQ(sp_page_hash(p), golden_hash[which]);
    }
  }
  printf("  %d hashes checked; in use: %s\n", checked, names[sp__hash_impl_in_use()]);
  CHECK(checked >= 5); /* the scalar loop at least */
  memset(p, 0, SP_PAGE_SIZE);
  CHECK_EQ(sp__hash_zero_page(), golden_hash[0]);
  /* A one-bit change anywhere moves the hash. */
  for (uint64_t seed = 0; seed < 200; seed++) {
    sp_test_fill(p, seed);
    uint64_t h = sp__hash_page(p);
    p[seed * 13 % SP_PAGE_SIZE] ^= (unsigned char)(1u << (seed % 8));
    CHECK(sp__hash_page(p) != h);
  }
  sp_test_free_pages(p, 1);
}

/* Guest page-flag hints: pages reported free are not scanned (their
 * duplicates do not merge, and an earlier merge dissolves); page-cache
 * pages are visited first. */
static void page_flag_hints(void) {
  unsigned char *mem = sp_test_pages(8);
  for (int i = 0; i < 8; i++) sp_test_fill(mem + i * SP_PAGE_SIZE, (uint64_t)(i % 2) + 1);
  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  uint32_t id;
  CHECK_OK(sp_add_memory(e, "guest", mem, 8 * SP_PAGE_SIZE, &id));
  sp_test_passes(e, 2);
  CHECK_EQ(sp_test_counters(e).pages_sharing, 6);
  /* Pages 0 and 2 (content 1) are free now; 5 and 7 hold page cache. */
  uint8_t hints[8] = {SP_HINT_FREE, 0, SP_HINT_FREE, 0, 0, SP_HINT_PAGECACHE, 0, SP_HINT_PAGECACHE};
  CHECK_OK(sp_source_set_hints(e, id, hints, 8));
  CHECK_EQ(sp_source_set_hints(e, id + 100, hints, 8), -ENOENT);
  /* The scan visits 5 and 7 first: a 2-page step covers exactly them, so
   * the change of page 5 (copy-on-write in reality) is seen at once, and
   * free pages 0 and 2 are not reached yet (in address order they would
   * leave first and the count would be 4). */
  mem[5 * SP_PAGE_SIZE] ^= 1;
  CHECK_EQ(sp_engine_step(e, 2), 2);
  sp_progress p;
  sp_engine_progress(e, &p);
  CHECK_EQ(p.pass_pages, 2);
  CHECK_EQ(sp_test_counters(e).pages_sharing, 5);
  mem[5 * SP_PAGE_SIZE] ^= 1;
  /* Page 5, written after it merged at age 2, is aged by smart scan from
   * then on: it is skipped in pass 5 and merges back in pass 6. */
  sp_test_passes(e, 3);
  CHECK_EQ(sp_test_counters(e).pages_sharing, 3);
  sp_test_passes(e, 1);
  sp_counters c = sp_test_counters(e);
  CHECK_EQ(c.rmap_items, 6);
  CHECK_EQ(c.pages_shared, 2);
  CHECK_EQ(c.pages_sharing, 4);
  CHECK_OK(sp_source_set_hints(e, id, NULL, 0));
  sp_test_passes(e, 3);
  CHECK_EQ(sp_test_counters(e).pages_sharing, 6);
  sp_engine_destroy(e);
  sp_test_free_pages(mem, 8);
}

int main(void) {
  sp_check_run("page-flag hints", page_flag_hints);
  sp_check_run("hash implementations agree", hash_implementations_agree);
  sp_check_run("two identical pages", two_identical_pages);
  sp_check_run("300 copies make a chain of two dups", chain_of_two_dups);
  sp_check_run("a chain whose dups empty waits for a search", emptied_chain_waits_for_a_search);
  sp_check_run("257 copies leave one unshared", one_over_the_limit);
  sp_check_run("a changing page never merges", changing_page_never_merges);
  sp_check_run("a written page leaves its group", written_page_leaves_group);
  sp_check_run("zero pages with use_zero_pages 0 and 1", zero_pages);
  sp_check_run("max_page_sharing is busy while merged", max_page_sharing_busy);
  sp_check_run("steps like ksmd", steps_like_ksmd);
  sp_check_run("a merged page written is aged and skipped", written_merged_page_skipped);
  sp_check_run("errors without sources", no_source_no_scan);
  return sp_check_done();
}
