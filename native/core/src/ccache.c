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
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

void sp_ccache_free(struct sp_content_cache *c) {
  free(c->pages);
  free(c->entries);
  memset(c, 0, sizeof *c);
  c->lru_head = c->lru_tail = c->free_head = SP_NIL;
}

int sp_ccache_configure(struct sp_content_cache *c, uint64_t bytes) {
  sp_ccache_free(c);
  uint64_t cap = bytes / SP_PAGE_SIZE;
  if (cap > UINT32_MAX - 1) cap = UINT32_MAX - 1;
  if (!cap) return 0;
  /* Pages are allocated lazily by the kernel: reserving the whole cap
   * costs address space only until entries are used. */
  c->pages = malloc((size_t)cap * SP_PAGE_SIZE);
  c->entries = malloc((size_t)cap * sizeof *c->entries);
  if (!c->pages || !c->entries) {
    sp_ccache_free(c);
    return -ENOMEM;
  }
  c->cap = (uint32_t)cap;
  return 0;
}

static void unlink_entry(struct sp_content_cache *c, uint32_t i) {
  struct sp_cache_entry *en = &c->entries[i];
  if (en->prev != SP_NIL) c->entries[en->prev].next = en->next;
  else c->lru_head = en->next;
  if (en->next != SP_NIL) c->entries[en->next].prev = en->prev;
  else c->lru_tail = en->prev;
}

static void push_front(struct sp_content_cache *c, uint32_t i) {
  struct sp_cache_entry *en = &c->entries[i];
  en->prev = SP_NIL;
  en->next = c->lru_head;
  if (c->lru_head != SP_NIL) c->entries[c->lru_head].prev = i;
  c->lru_head = i;
  if (c->lru_tail == SP_NIL) c->lru_tail = i;
}

uint32_t sp_ccache_put(struct sp_engine *e, uint32_t node, const void *page) {
  struct sp_content_cache *c = &e->cache;
  if (!c->cap) return SP_NIL;
  uint32_t i;
  if (c->free_head != SP_NIL) {
    i = c->free_head;
    c->free_head = c->entries[i].next;
  } else if (c->used < c->cap) {
    i = c->used++;
  } else {
    i = c->lru_tail;
    unlink_entry(c, i);
    e->stable.nodes[c->entries[i].node].cache = SP_NIL;
  }
  c->entries[i].node = node;
  memcpy(c->pages + (size_t)i * SP_PAGE_SIZE, page, SP_PAGE_SIZE);
  push_front(c, i);
  return i;
}

const void *sp_ccache_get(struct sp_content_cache *c, uint32_t i) {
  if (c->lru_head != i) {
    unlink_entry(c, i);
    push_front(c, i);
  }
  return c->pages + (size_t)i * SP_PAGE_SIZE;
}

void sp_ccache_drop(struct sp_content_cache *c, uint32_t i) {
  unlink_entry(c, i);
  c->entries[i].node = SP_NIL;
  c->entries[i].next = c->free_head;
  c->free_head = i;
}

void sp_ccache_rebind(struct sp_content_cache *c, uint32_t i, uint32_t node) {
  c->entries[i].node = node;
}
