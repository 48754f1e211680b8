/*
 * ccache.c - a bounded LRU cache of merged contents.
 *
 * The kernel compares against a merged page that nobody can write.  Our
 * "merged" pages are still live memory in their processes, so comparing
 * against a member means reading it (a syscall for another process) and
 * checking it was not written since.  Keeping a copy of recently used
 * merged contents avoids that on the hot path; the cache is bounded by
 * content_cache_bytes and is only an accelerator: on a miss the contents
 * are read from a member again.
 */
#include "ccache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 4096u

void sp__ccache_init(struct sp__ccache *c) {
  memset(c, 0, sizeof *c);
  c->lru_head = c->lru_tail = c->free_head = SP__CCACHE_NONE;
}

void sp__ccache_free(struct sp__ccache *c) {
  free(c->pages);
  free(c->entries);
  sp__ccache_init(c);
}

int sp__ccache_configure(struct sp__ccache *c, uint64_t bytes) {
  sp__ccache_free(c);
  uint64_t cap = bytes / PAGE;
  if (cap > UINT32_MAX - 1) cap = UINT32_MAX - 1;
  if (!cap) return 0;
  /* Pages are allocated lazily by the kernel: reserving the whole cap
   * costs address space only until entries are used. */
  c->pages = malloc((size_t)cap * PAGE);
  c->entries = malloc((size_t)cap * sizeof *c->entries);
  if (!c->pages || !c->entries) {
    sp__ccache_free(c);
    return -ENOMEM;
  }
  c->cap = (uint32_t)cap;
  return 0;
}

static void unlink_entry(struct sp__ccache *c, uint32_t i) {
  struct sp__ccache_entry *en = &c->entries[i];
  if (en->prev != SP__CCACHE_NONE) c->entries[en->prev].next = en->next;
  else c->lru_head = en->next;
  if (en->next != SP__CCACHE_NONE) c->entries[en->next].prev = en->prev;
  else c->lru_tail = en->prev;
}

static void push_front(struct sp__ccache *c, uint32_t i) {
  struct sp__ccache_entry *en = &c->entries[i];
  en->prev = SP__CCACHE_NONE;
  en->next = c->lru_head;
  if (c->lru_head != SP__CCACHE_NONE) c->entries[c->lru_head].prev = i;
  c->lru_head = i;
  if (c->lru_tail == SP__CCACHE_NONE) c->lru_tail = i;
}

uint32_t sp__ccache_put(struct sp__ccache *c, uint32_t owner, const void *page,
                        uint32_t *evicted) {
  *evicted = SP__CCACHE_NONE;
  if (!c->cap) return SP__CCACHE_NONE;
  uint32_t i;
  if (c->free_head != SP__CCACHE_NONE) {
    i = c->free_head;
    c->free_head = c->entries[i].next;
  } else if (c->used < c->cap) {
    i = c->used++;
  } else {
    i = c->lru_tail;
    unlink_entry(c, i);
    *evicted = c->entries[i].owner;
  }
  c->entries[i].owner = owner;
  memcpy(c->pages + (size_t)i * PAGE, page, PAGE);
  push_front(c, i);
  return i;
}

const void *sp__ccache_get(struct sp__ccache *c, uint32_t i) {
  if (c->lru_head != i) {
    unlink_entry(c, i);
    push_front(c, i);
  }
  return c->pages + (size_t)i * PAGE;
}

void sp__ccache_drop(struct sp__ccache *c, uint32_t i) {
  unlink_entry(c, i);
  c->entries[i].owner = SP__CCACHE_NONE;
  c->entries[i].next = c->free_head;
  c->free_head = i;
}

void sp__ccache_rebind(struct sp__ccache *c, uint32_t i, uint32_t owner) {
  c->entries[i].owner = owner;
}

uint64_t sp__ccache_bytes(const struct sp__ccache *c) { return (uint64_t)c->used * PAGE; }
