/*
 * source.c - the source object the three kinds share: its name, its hints
 * and its lifetime.
 */
#include <stdlib.h>
#include <string.h>

#include "sources.h"

struct sp_source *sp__source_new(sp_source_kind kind, const char *name,
                                 const char *fallback) {
  struct sp_source *src = calloc(1, sizeof *src);
  if (!src) return NULL;
  src->kind = kind;
  const char *n = name && *name ? name : fallback;
  size_t len = strlen(n);
  if (len >= sizeof src->name) len = sizeof src->name - 1;
  memcpy(src->name, n, len);
  src->name[len] = '\0';
  return src;
}

void sp__source_apply_pending_hints(struct sp_source *src) {
  if (!src->hints_pending) return;
  free(src->hints);
  src->hints = src->next_hints;
  src->nhints = src->next_nhints;
  src->next_hints = NULL;
  src->next_nhints = 0;
  src->hints_pending = false;
}

void sp__source_free(struct sp_source *src) {
  if (!src) return;
  if (src->ops && src->ops->destroy) src->ops->destroy(src);
  free(src->ranges);
  free(src->hints);
  free(src->next_hints);
  free(src->thp_split);
  free(src);
}
