/* test_source_errors.c - how the scan treats a source's errors: a source
 * that is gone (-ESRCH) is forgotten, but a transient error reading page
 * presence (pagemap: -EIO, -EINTR, -ENOMEM) costs only the window it hit,
 * never the merges of the whole VM.  A fake source stands in for a process:
 * its pages are caller memory, its presence op fails on demand. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "engine.h"

#define PAGES 8

struct flaky {
  unsigned char *mem;
  int fail_next; /* presence calls still to fail */
  int fail_with; /* negative errno */
  size_t npages; /* 0: PAGES */
  bool fail_single; /* one-page reads (a tree page re-read) find nothing */
};

static int flaky_ranges(struct sp_source *src, struct sp_range_spec **out, size_t *n) {
  struct flaky *f = src->impl;
  *out = malloc(sizeof **out);
  if (!*out) return -ENOMEM;
  **out = (struct sp_range_spec){.start = (uintptr_t)f->mem, .npages = f->npages ? f->npages : PAGES};
  *n = 1;
  return 0;
}

static int flaky_presence(struct sp_source *src, uint64_t addr, size_t npages, uint8_t *flags) {
  struct flaky *f = src->impl;
  if (f->fail_next) {
    f->fail_next--;
    return f->fail_with;
  }
  memset(flags, PAGE_PRESENT, npages);
  return 0;
}

static int flaky_read(struct sp_source *src, const struct sp_range *range, uint64_t first,
                      size_t npages, const uint8_t *want, uint8_t *buf, const void **ptrs) {
  struct flaky *f = src->impl;
  if (npages == 1 && f->fail_single) return 0;
  for (size_t i = 0; i < npages; i++)
    if (want[i]) ptrs[i] = (const void *)(uintptr_t)(range->start + (first + i) * SP_PAGE_SIZE);
  return 0;
}

static void flaky_destroy(struct sp_source *src) { free(src->impl); }

static const struct sp_source_ops flaky_ops = {.ranges = flaky_ranges,
                                               .presence = flaky_presence,
                                               .read = flaky_read,
                                               .destroy = flaky_destroy};

static struct flaky *add_flaky(sp_engine *e, unsigned char *mem, uint32_t *id) {
  struct sp_source *src = sp__source_new(SP_SOURCE_PROCESS, "flaky", "flaky");
  struct flaky *f = calloc(1, sizeof *f);
  if (!src || !f) abort();
  f->mem = mem;
  src->ops = &flaky_ops;
  src->impl = f;
  if (sp__source_attach(e, src, id)) abort();
  return f;
}

static void transient_error(int err) {
  unsigned char *mem = sp_test_pages(PAGES);
  for (int i = 0; i < PAGES; i++) sp_test_fill(mem + (size_t)i * SP_PAGE_SIZE, (uint64_t)(i % 2) + 1);
  sp_engine *e = sp_test_engine(0, 256, 0, 0);
  uint32_t id;
  struct flaky *f = add_flaky(e, mem, &id);
  sp_test_passes(e, 2);
  sp_counters before = sp_test_counters(e);
  CHECK_EQ(before.pages_sharing, 6);

  f->fail_next = 1;
  f->fail_with = err;
  CHECK_OK(sp_engine_pass(e));
  sp_source_info info;
  CHECK_OK(sp_source_get(e, 0, &info));
  CHECK_EQ(info.error, 0);
  CHECK_EQ(info.ranges, 1);
  sp_counters c = sp_test_counters(e);
  CHECK_EQ(c.pages_shared, before.pages_shared);
  CHECK_EQ(c.pages_sharing, before.pages_sharing);
  CHECK_EQ(c.rmap_items, before.rmap_items);
  CHECK_EQ(c.pages_lost, 0);
  CHECK_EQ(c.full_scans, before.full_scans + 1);

  /* The next pass reads the window again. */
  uint64_t scanned = c.pages_scanned;
  CHECK_OK(sp_engine_pass(e));
  c = sp_test_counters(e);
  CHECK_EQ(c.pages_scanned, scanned + PAGES);
  CHECK_EQ(c.pages_sharing, 6);
  sp_engine_destroy(e);
  sp_test_free_pages(mem, PAGES);
}

static void transient_eio(void) { transient_error(-EIO); }
static void transient_enomem(void) { transient_error(-ENOMEM); }

/* -ESRCH is not transient: the process is gone, and so are its pages. */
static void gone_is_gone(void) {
  unsigned char *mem = sp_test_pages(PAGES);
  for (int i = 0; i < PAGES; i++) sp_test_fill(mem + (size_t)i * SP_PAGE_SIZE, 1);
  sp_engine *e = sp_test_engine(0, 256, 0, 0);
  uint32_t id;
  struct flaky *f = add_flaky(e, mem, &id);
  sp_test_passes(e, 2);
  CHECK_EQ(sp_test_counters(e).pages_sharing, PAGES - 1);
  f->fail_next = 1;
  f->fail_with = -ESRCH;
  CHECK_OK(sp_engine_pass(e));
  sp_source_info info;
  CHECK_OK(sp_source_get(e, 0, &info));
  CHECK_EQ(info.error, -ESRCH);
  CHECK_EQ(sp_test_counters(e).pages_sharing, 0);
  CHECK_EQ(sp_test_counters(e).rmap_items, 0);
  sp_engine_destroy(e);
  sp_test_free_pages(mem, PAGES);
}

/* 6.12 unstable_tree_search_insert(): when get_mergeable_page() fails on
 * a tree page the search ends, and the page is not inserted either (it is
 * looked at again next pass).  Page X of source A is in the unstable tree;
 * page Y of source B, same contents, finds it but cannot re-read it. */
static void unreadable_tree_page_no_insert(void) {
  unsigned char *a = sp_test_pages(2), *b = sp_test_pages(2);
  sp_test_fill(a, 1);
  sp_test_fill(a + SP_PAGE_SIZE, 3);
  sp_test_fill(b, 1);
  sp_test_fill(b + SP_PAGE_SIZE, 4);
  sp_engine *e = sp_test_engine(0, 256, 0, 0);
  uint32_t ia, ib;
  struct flaky *fa = add_flaky(e, a, &ia);
  fa->npages = 2;
  struct flaky *fb = add_flaky(e, b, &ib);
  fb->npages = 2;
  CHECK_OK(sp_engine_pass(e)); /* checksums only */
  fa->fail_single = true;
  CHECK_OK(sp_engine_pass(e));
  sp_counters c = sp_test_counters(e);
  CHECK_EQ(c.pages_sharing, 0);
  /* X, A's filler and B's filler are in the tree; Y is not. */
  CHECK_EQ(c.pages_unshared, 3);
  fa->fail_single = false;
  CHECK_OK(sp_engine_pass(e));
  CHECK_EQ(sp_test_counters(e).pages_sharing, 1);
  sp_engine_destroy(e);
  sp_test_free_pages(a, 2);
  sp_test_free_pages(b, 2);
}

int main(void) {
  sp_check_run("an unreadable unstable tree page: the page is not inserted",
               unreadable_tree_page_no_insert);
  sp_check_run("a transient pagemap EIO skips one window only", transient_eio);
  sp_check_run("a transient pagemap ENOMEM skips one window only", transient_enomem);
  sp_check_run("a gone process is forgotten", gone_is_gone);
  return sp_check_done();
}
