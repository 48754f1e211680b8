/*
 * stable.h - the stable index: merged pages, with chains and dups, and the
 * content cache that keeps copies of merged contents.  Changes e->stable
 * only (pages_shared, pages_sharing, chains, dups, contents, its compares)
 * and each source's merging_pages.
 */
#ifndef SP_STABLE_H
#define SP_STABLE_H

#include "internal.h"

#pragma GCC visibility push(hidden)

/* An empty index with a content cache of cache_bytes; -ENOMEM. */
int sp__stable_init(struct sp_engine *e, uint64_t cache_bytes);
void sp__stable_free(struct sp_engine *e);
/* Resizes the content cache (every entry goes); -ENOMEM leaves none. */
int sp__stable_configure_cache(struct sp_engine *e, uint64_t cache_bytes);
/* Forgets every merged page (their members must be forgotten first). */
void sp__stable_clear(struct sp_engine *e);

/* The content node (REGULAR or CHAIN) holding content equal to page, or
 * SP_NIL.  Counts compares.  A lookup only: nothing changes. */
uint32_t sp__stable_find(struct sp_engine *e, const void *page, uint64_t hash);
/* The kernel's stable tree search for page (cmp_and_merge_page()): every
 * chain the descent passes is walked first, then as sp__stable_find(). */
uint32_t sp__stable_search(struct sp_engine *e, const void *page, uint64_t hash);
/* The regular node or dup of content node *content that can take one more
 * mapping, chosen as the kernel's stable_node_dup(), or SP_NIL.  The walk
 * may collapse a chain (*content becomes its dup) or free one without dups
 * (*content becomes SP_NIL). */
uint32_t sp__stable_pick(struct sp_engine *e, uint32_t *content);
/* Adds a new merged page with content `page`; content_hint is the content
 * node already found equal (or SP_NIL to look it up).  Returns the new
 * regular node or dup, SP_NIL on ENOMEM. */
uint32_t sp__stable_insert(struct sp_engine *e, const void *page, uint64_t hash,
                           uint32_t content_hint);
/* Member management with the kernel's counting rules: append makes the
 * record REC_STABLE, remove makes it REC_VOLATILE. */
void sp__stable_append(struct sp_engine *e, uint32_t node, uint32_t ref);
void sp__stable_remove(struct sp_engine *e, uint32_t ref);
/* A member's record is about to move from ref `from` to ref `to`
 * (sp__track_move()): its node's member list names `to` instead.  No
 * counter changes: the mapping is the same. */
void sp__stable_rekey(struct sp_engine *e, uint32_t from, uint32_t to);
/* Whether content node `content` is a chain. */
bool sp__stable_is_chain(const struct sp_engine *e, uint32_t content);
/* The content node of a regular node or dup. */
uint32_t sp__stable_content_of(const struct sp_engine *e, uint32_t node);
/* Contents of a content node: from the cache or a member still holding
 * them; NULL when none can be found.  Uses e->acc.page_buf2. */
const void *sp__stable_contents(struct sp_engine *e, uint32_t content);
/* The first member of a merged page (the partner lookahead follows). */
uint32_t sp__stable_first_member(const struct sp_engine *e, uint32_t node);
/* The content hash of a regular node, dup or chain. */
uint64_t sp__stable_hash(const struct sp_engine *e, uint32_t node);
/* Memory of the index and its nodes (not the cache). */
size_t sp__stable_bytes(const struct sp_engine *e);

#pragma GCC visibility pop

#endif
