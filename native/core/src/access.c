/*
 * access.c - reading and comparing pages.  A window of up to 1 MiB is read
 * from a source in one go; while it is visited, compares with its pages
 * (lookahead partners, unstable twins) use what was read instead of reading
 * again.
 */
#include "access.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tracking.h"

int sp__access_init(struct sp_engine *e) {
  struct sp_access *a = &e->acc;
  a->batch_buf = malloc((size_t)SP_BATCH_PAGES * SP_PAGE_SIZE);
  a->page_buf = malloc(SP_PAGE_SIZE);
  a->page_buf2 = malloc(SP_PAGE_SIZE);
  return a->batch_buf && a->page_buf && a->page_buf2 ? 0 : -ENOMEM;
}

void sp__access_free(struct sp_engine *e) {
  free(e->acc.batch_buf);
  free(e->acc.page_buf);
  free(e->acc.page_buf2);
  e->acc.batch_buf = e->acc.page_buf = e->acc.page_buf2 = NULL;
}

bool sp__pages_equal(struct sp_engine *e, const void *a, const void *b) {
  e->acc.full_compares++;
  return memcmp(a, b, SP_PAGE_SIZE) == 0;
}

int sp__pages_cmp(struct sp_engine *e, const void *a, const void *b) {
  int c = memcmp(a, b, SP_PAGE_SIZE);
  if (!c) e->acc.full_compares++;
  return c;
}

int sp__window_read(struct sp_engine *e, struct sp_source *src, uint32_t range_id,
                    uint64_t first, size_t n, const uint8_t *want) {
  struct sp_window *w = &e->acc.win;
  w->range = range_id;
  w->first = first;
  w->n = 0; /* not usable by sp__read_ref() until read */
  memset(w->ptrs, 0, sizeof w->ptrs);
  int err = src->ops->read(src, &e->tr.ranges[range_id], first, n, want, e->acc.batch_buf,
                           w->ptrs);
  if (err < 0) return err;
  w->n = n;
  for (size_t i = 0; i < n; i++)
    if (want[i] && w->ptrs[i]) e->acc.bytes_read += SP_PAGE_SIZE;
  e->acc.window = w;
  return 0;
}

void sp__window_end(struct sp_engine *e) { e->acc.window = NULL; }

uint64_t sp__frame_of(struct sp_engine *e, uint32_t ref) {
  uint32_t range_id;
  uint64_t page;
  sp__track_locate(e, ref, &range_id, &page);
  struct sp_range *range = &e->tr.ranges[range_id];
  struct sp_source *src = e->sources[range->source];
  if (src->error || !src->ops->frame) return 0;
  return src->ops->frame(src, range, page);
}

/* The window's page was present when the window was read, in this step. */
static bool in_window(const struct sp_engine *e, uint32_t range_id, uint64_t page) {
  const struct sp_window *w = e->acc.window;
  return w && w->range == range_id && page >= w->first && page < w->first + w->n &&
         w->ptrs[page - w->first];
}

const void *sp__read_ref(struct sp_engine *e, uint32_t ref, uint8_t *buf) {
  uint32_t range_id;
  uint64_t page;
  sp__track_locate(e, ref, &range_id, &page);
  if (in_window(e, range_id, page)) return e->acc.window->ptrs[page - e->acc.window->first];
  struct sp_range *range = &e->tr.ranges[range_id];
  struct sp_source *src = e->sources[range->source];
  if (src->error) return NULL;
  /* A page that went is not read: through /proc/PID/mem that would fault
   * a new page into the process. */
  if (src->ops->mapped && !src->ops->mapped(src, range, page)) return NULL;
  const void *ptr = NULL;
  static const uint8_t want = 1;
  if (src->ops->read(src, range, page, 1, &want, buf, &ptr) < 0 || !ptr)
    return NULL;
  e->acc.bytes_read += SP_PAGE_SIZE;
  return ptr;
}
