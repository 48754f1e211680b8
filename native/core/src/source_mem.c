/*
 * source_mem.c - caller memory, read in place (never copied, never
 * written).  Every page counts as present: the caller gives us memory it
 * uses.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "sources.h"

struct mem_impl {
  uintptr_t start, end; /* page-aligned part of the caller's buffer */
};

static int mem_ranges(struct sp_source *src, struct sp_range_spec **out,
                      size_t *n) {
  const struct mem_impl *m = src->impl;
  *n = 0;
  *out = NULL;
  if (m->end <= m->start) return 0;
  *out = malloc(sizeof **out);
  if (!*out) return -ENOMEM;
  **out = (struct sp_range_spec){.start = m->start,
                                 .npages = (m->end - m->start) / SP_PAGE_SIZE};
  *n = 1;
  return 0;
}

static int mem_read(struct sp_source *src, const struct sp_range *range,
                    uint64_t first, size_t npages, const uint8_t *want,
                    uint8_t *buf, const void **ptrs) {
  (void)src;
  (void)buf;
  for (size_t i = 0; i < npages; i++)
    if (want[i])
      ptrs[i] = (const void *)(uintptr_t)(range->start + (first + i) * SP_PAGE_SIZE);
  return 0;
}

static void mem_destroy(struct sp_source *src) { free(src->impl); }

static const struct sp_source_ops mem_ops = {
    .ranges = mem_ranges, .read = mem_read, .destroy = mem_destroy};

int sp__source_memory_open(const char *name, const void *addr, size_t len,
                           struct sp_source **out) {
  if (!addr && len) return -EINVAL;
  uintptr_t a = (uintptr_t)addr;
  if (len > UINTPTR_MAX - a) return -EINVAL;
  struct sp_source *src = sp__source_new(SP_SOURCE_MEMORY, name, "memory");
  struct mem_impl *m = calloc(1, sizeof *m);
  if (!src || !m) {
    free(src);
    free(m);
    return -ENOMEM;
  }
  /* Only whole pages: the partial pages at either end are not pages KSM
   * could merge. */
  m->start = (a + SP_PAGE_SIZE - 1) & ~(uintptr_t)(SP_PAGE_SIZE - 1);
  m->end = (a + len) & ~(uintptr_t)(SP_PAGE_SIZE - 1);
  src->ops = &mem_ops;
  src->impl = m;
  *out = src;
  return 0;
}
