/*
 * ccache.h - a bounded LRU cache of page contents (private leaf module).
 *
 * Knows nothing of the engine: an entry belongs to an owner named by a u32
 * (the stable index uses its content node id).  When a put has to evict the
 * least recently used entry it says whose entry went, and the owner forgets
 * it: the cache never writes into its owners' state.
 */
#ifndef SP_CCACHE_H
#define SP_CCACHE_H

#include <stdint.h>

#pragma GCC visibility push(hidden)

#define SP__CCACHE_NONE UINT32_MAX

struct sp__ccache_entry {
  uint32_t owner;        /* SP__CCACHE_NONE when free */
  uint32_t prev, next;   /* LRU list */
};

struct sp__ccache {
  uint8_t *pages;        /* cap pages */
  struct sp__ccache_entry *entries;
  uint32_t cap, used;
  uint32_t lru_head, lru_tail, free_head;
};

/* An empty, disabled cache (no allocation). */
void sp__ccache_init(struct sp__ccache *c);
/* Drops every entry and makes room for bytes / 4096 pages (0: disabled).
 * -ENOMEM leaves the cache disabled. */
int sp__ccache_configure(struct sp__ccache *c, uint64_t bytes);
void sp__ccache_free(struct sp__ccache *c);
/* Copies a page in for owner and returns its entry, or SP__CCACHE_NONE when
 * the cache is disabled.  When the least recently used entry had to go,
 * *evicted receives its owner (else SP__CCACHE_NONE): that owner must stop
 * using its entry. */
uint32_t sp__ccache_put(struct sp__ccache *c, uint32_t owner, const void *page,
                        uint32_t *evicted);
/* The page of an entry, which becomes the most recently used. */
const void *sp__ccache_get(struct sp__ccache *c, uint32_t entry);
void sp__ccache_drop(struct sp__ccache *c, uint32_t entry);
/* Hands an entry to another owner (the same content, re-keyed). */
void sp__ccache_rebind(struct sp__ccache *c, uint32_t entry, uint32_t owner);
/* Bytes of cached pages in use. */
uint64_t sp__ccache_bytes(const struct sp__ccache *c);

#pragma GCC visibility pop

#endif
