/*
 * test_exact_trees.c - exact_trees: the kernel's trees walked node by node
 * against the engine's default (hash indexes, and a stable tree walked only
 * for its chains).  The two give the same counters after every pass where
 * nothing changes mid-pass.  Within a pass only the exact walk is misled by
 * an indexed page written since, stopped by one that went, and drops a
 * merged page whose mappings all went as soon as a descent meets it (the
 * kernel oracle shows the kernel does the same: test_kernel_oracle,
 * "within a pass").
 */
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"

static sp_engine *engine(int use_zero_pages, uint32_t mps, int lookahead, bool exact) {
  sp_engine *e = sp_test_engine(use_zero_pages, mps, 1, lookahead);
  sp_settings s;
  sp_engine_settings(e, &s);
  s.exact_trees = exact;
  CHECK_OK(sp_engine_configure(e, &s));
  return e;
}

/* Writes between passes only (the unstable tree is rebuilt each pass, so
 * it is never inconsistent): the tree and the index agree after every
 * pass, with chains (max_page_sharing 2 to 4), zero pages and lookahead on
 * and off.  The tree costs more compares: one per level. */
static void agree_between_passes(void) {
  enum { PAGES = 400, SOURCES = 3 };
  uint64_t rng = 0x9e3779b97f4a7c15ull;
  unsigned char *mem[SOURCES];
  for (int s = 0; s < SOURCES; s++) mem[s] = sp_test_pages(PAGES);
  sp_test_fill_mix(mem, SOURCES, PAGES, &rng);
  for (uint32_t m = 2; m <= 4; m++) {
    int zero = (int)(m & 1), lookahead = m != 3;
    sp_engine *tree = engine(zero, m, lookahead, true), *index = engine(zero, m, lookahead, false);
    for (int s = 0; s < SOURCES; s++) {
      CHECK_OK(sp_add_memory(tree, NULL, mem[s], PAGES * SP_PAGE_SIZE, NULL));
      CHECK_OK(sp_add_memory(index, NULL, mem[s], PAGES * SP_PAGE_SIZE, NULL));
    }
    for (int pass = 0; pass < 30; pass++) {
      sp_test_churn(mem, SOURCES, PAGES, 25, &rng);
      CHECK_OK(sp_engine_pass(tree));
      CHECK_OK(sp_engine_pass(index));
      sp_test_same_counters(tree, index);
    }
    sp_counters t = sp_test_counters(tree), x = sp_test_counters(index);
    CHECK(t.pages_sharing > 100);
    CHECK(t.page_compares > x.page_compares);
    sp_engine_destroy(tree);
    sp_engine_destroy(index);
  }
  for (int s = 0; s < SOURCES; s++) sp_test_free_pages(mem[s], PAGES);
}

/* A page whose first byte is `first` and whose other bytes are 0x5a: the
 * first byte alone orders such pages for memcmp. */
static void ordered_page(unsigned char *page, unsigned char first) {
  memset(page, 0x5a, SP_PAGE_SIZE);
  page[0] = first;
}

/* The hand-checked cases' memory: pages "M", "h", "h" ("h" > "M"), seen by
 * an engine with exact_trees and one without, lookahead off. */
struct mhh {
  unsigned char *mem;
  sp_engine *tree, *index;
};

static struct mhh mhh_start(void) {
  struct mhh t = {sp_test_pages(3), engine(0, 256, 0, true), engine(0, 256, 0, false)};
  ordered_page(t.mem, 'M');
  ordered_page(t.mem + SP_PAGE_SIZE, 'h');
  ordered_page(t.mem + 2 * SP_PAGE_SIZE, 'h');
  CHECK_OK(sp_add_memory(t.tree, NULL, t.mem, 3 * SP_PAGE_SIZE, NULL));
  CHECK_OK(sp_add_memory(t.index, NULL, t.mem, 3 * SP_PAGE_SIZE, NULL));
  return t;
}

static void mhh_end(struct mhh *t) {
  sp_engine_destroy(t->tree);
  sp_engine_destroy(t->index);
  sp_test_free_pages(t->mem, 3);
}

/* Pass 2 (the first whose pages pass the checksum gate): page 0 ("M")
 * becomes the root, page 1 ("h" > "M") its right child.  Then, mid-pass,
 * page 0 is written.  To "L" (< "h"), the root still sends page 2, another
 * "h", right, where it meets its twin and merges.  To "{" (> "h"), the root
 * sends it left, where nothing is: page 2 is indexed beside its twin,
 * unmerged, as in the kernel.  The hash index merges it either way.  Pass
 * 3 rebuilds the tree from scratch: merged. */
static void written_root_misleads(void) {
  const unsigned char rewrites[2] = {'L', '{'};
  for (int r = 0; r < 2; r++) {
    struct mhh m = mhh_start();
    CHECK_OK(sp_engine_pass(m.tree));
    CHECK_OK(sp_engine_pass(m.index));
    CHECK_EQ(sp_engine_step(m.tree, 2), 2);
    CHECK_EQ(sp_engine_step(m.index, 2), 2);
    CHECK_EQ(sp_test_counters(m.tree).pages_unshared, 2);
    m.mem[0] = rewrites[r];
    CHECK_EQ(sp_engine_step(m.tree, 100), 1);
    CHECK_EQ(sp_engine_step(m.index, 100), 1);
    sp_counters t = sp_test_counters(m.tree), x = sp_test_counters(m.index);
    CHECK_EQ(x.pages_shared, 1);
    CHECK_EQ(x.pages_sharing, 1);
    CHECK_EQ(x.pages_unshared, 1);
    if (r == 0) {
      sp_test_same_counters(m.tree, m.index);
    } else {
      CHECK_EQ(t.pages_shared, 0);
      CHECK_EQ(t.pages_sharing, 0);
      CHECK_EQ(t.pages_unshared, 3);
      CHECK_EQ(t.pages_volatile, 0);
    }
    /* Pass 3: page 0 changed (volatile); pages 1 and 2 merge, or stay. */
    CHECK_OK(sp_engine_pass(m.tree));
    CHECK_OK(sp_engine_pass(m.index));
    sp_test_same_counters(m.tree, m.index);
    t = sp_test_counters(m.tree);
    CHECK_EQ(t.pages_shared, 1);
    CHECK_EQ(t.pages_sharing, 1);
    CHECK_EQ(t.pages_volatile, 1);
    mhh_end(&m);
  }
}

/* Page 0 ("M", unique), then pages 1 and 2 ("h", merged in pass 2: the
 * stable tree's only node).  Both merged pages are written before pass 3.
 * Page 0's stable search in pass 3 meets the node, whose merged page has
 * no mapping left: the exact walk drops it there and then (pages_shared 0
 * after one page); the default one when the scan reaches page 1 (the
 * kernel's remove_rmap_item_from_tree() finds it so too), page 2 with it.
 * After the pass both agree. */
static void stale_node_dropped_by_a_search(void) {
  struct mhh m = mhh_start();
  sp_test_passes(m.tree, 2);
  sp_test_passes(m.index, 2);
  CHECK_EQ(sp_test_counters(m.tree).pages_shared, 1);
  CHECK_EQ(sp_test_counters(m.tree).pages_sharing, 1);
  m.mem[SP_PAGE_SIZE] = 'i';
  m.mem[2 * SP_PAGE_SIZE] = 'j';
  CHECK_EQ(sp_engine_step(m.tree, 1), 1);
  CHECK_EQ(sp_engine_step(m.index, 1), 1);
  sp_counters t = sp_test_counters(m.tree), x = sp_test_counters(m.index);
  CHECK_EQ(t.pages_shared, 0);
  CHECK_EQ(t.pages_sharing, 0);
  CHECK_EQ(t.pages_unshared, 1); /* page 0, indexed again */
  CHECK_EQ(t.pages_volatile, 2); /* pages 1 and 2, out with their node */
  CHECK_EQ(x.pages_shared, 1);
  CHECK_EQ(x.pages_sharing, 1);
  sp_source_info info;
  CHECK_OK(sp_source_get(m.tree, 0, &info));
  CHECK_EQ(info.merging_pages, 0);
  CHECK_EQ(info.rmap_items, 3);
  /* Page 1's visit: the default walk drops the whole node there. */
  CHECK_EQ(sp_engine_step(m.index, 1), 1);
  x = sp_test_counters(m.index);
  CHECK_EQ(x.pages_shared, 0);
  CHECK_EQ(x.pages_sharing, 0);
  CHECK_EQ(x.pages_volatile, 2);
  CHECK_EQ(sp_engine_step(m.tree, 100), 2);
  CHECK_EQ(sp_engine_step(m.index, 100), 1);
  sp_test_same_counters(m.tree, m.index);
  mhh_end(&m);
}

/* ---- a page on the path goes (a live process) ------------------------- */

static unsigned char *gone_region;
static int gone_ack_fd = -1;

static void gone_drop(int sig) {
  (void)sig;
  /* The root's page: the next read fault would map the zero page. */
  madvise(gone_region, SP_PAGE_SIZE, MADV_DONTNEED);
  char ok = 'k';
  if (write(gone_ack_fd, &ok, 1) != 1) _exit(7);
}

static void gone_body(void *hello) {
  gone_region = sp_test_pages(3);
  ordered_page(gone_region, 'M');
  ordered_page(gone_region + SP_PAGE_SIZE, 'h');
  ordered_page(gone_region + 2 * SP_PAGE_SIZE, 'h');
  if (madvise(gone_region, 3 * SP_PAGE_SIZE, MADV_MERGEABLE)) _exit(3);
  signal(SIGUSR1, gone_drop);
  memcpy(hello, &gone_region, sizeof gone_region);
}

/* The root's page is dropped (MADV_DONTNEED) after pages 0 and 1 were
 * indexed: page 2's search meets no page at the root and gives up, so page
 * 2 stays out of the tree (volatile) and unmerged, as the kernel's
 * get_mergeable_page() makes it.  The hash index, which never passes the
 * root, merges page 2 with page 1.  In pass 3 page 0 is gone (its record
 * too) and both merge. */
static void gone_root_stops_search(void) {
  int ack[2];
  CHECK_EQ(pipe(ack), 0);
  gone_ack_fd = ack[1];
  unsigned char *addr = NULL;
  struct sp_test_child child = sp_test_fork(gone_body, &addr, sizeof addr);
  close(ack[1]);
  sp_engine *tree = engine(0, 256, 0, true), *index = engine(0, 256, 0, false);
  CHECK_OK(sp_add_process(tree, NULL, child.pid, 0, NULL));
  CHECK_OK(sp_add_process(index, NULL, child.pid, 0, NULL));
  CHECK_OK(sp_engine_pass(tree));
  CHECK_OK(sp_engine_pass(index));
  CHECK_EQ(sp_test_counters(tree).rmap_items, 3);
  CHECK_EQ(sp_engine_step(tree, 2), 2);
  CHECK_EQ(sp_engine_step(index, 2), 2);
  CHECK_EQ(kill(child.pid, SIGUSR1), 0);
  char ok;
  CHECK_EQ(read(ack[0], &ok, 1), 1);
  CHECK_EQ(sp_engine_step(tree, 100), 1);
  CHECK_EQ(sp_engine_step(index, 100), 1);
  sp_counters t = sp_test_counters(tree), x = sp_test_counters(index);
  CHECK_EQ(x.pages_shared, 1);
  CHECK_EQ(x.pages_sharing, 1);
  CHECK_EQ(t.pages_shared, 0);
  CHECK_EQ(t.pages_sharing, 0);
  CHECK_EQ(t.pages_unshared, 2); /* pages 0 (gone, not yet visited) and 1 */
  CHECK_EQ(t.pages_volatile, 1);
  CHECK_OK(sp_engine_pass(tree));
  CHECK_OK(sp_engine_pass(index));
  sp_test_same_counters(tree, index);
  t = sp_test_counters(tree);
  CHECK_EQ(t.pages_shared, 1);
  CHECK_EQ(t.pages_sharing, 1);
  CHECK_EQ(t.rmap_items, 2);
  sp_engine_destroy(tree);
  sp_engine_destroy(index);
  sp_test_end(&child);
  close(ack[0]);
}

int main(void) {
  sp_check_run("between passes the tree and the hash index agree", agree_between_passes);
  sp_check_run("a root written mid-pass misleads a search, as in the kernel", written_root_misleads);
  sp_check_run("a root dropped mid-pass stops a search, as in the kernel", gone_root_stops_search);
  sp_check_run("a merged page whose mappings all went is dropped by the first search to meet it",
               stale_node_dropped_by_a_search);
  return sp_check_done();
}
