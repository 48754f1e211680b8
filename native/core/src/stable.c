/*
 * stable.c - the stable index: merged pages, with chains and dups.
 *
 * Mirrors the kernel's stable tree (mm/ksm.c, 6.12): a content is found by
 * hash, confirmed by a full compare.  Up to max_page_sharing mappings share
 * one merged page (a regular node).  When a content has more, it becomes a
 * chain whose dups are the merged pages of that content, each capped at
 * max_page_sharing; stable_node_chains and stable_node_dups count them as
 * the kernel does.  A merged page whose last mapping goes away is freed at
 * once (the kernel notices its stale node lazily; the counters of a settled
 * system are the same), and a chain left with one dup collapses back into a
 * regular node, as stable_node_dup() does.  Which dup takes a merge follows
 * the kernel's clock rule (stable_node_chains_prune_millisecs).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stable.h"

#include "access.h"
#include "hash.h"
#include "tracking.h"

static uint32_t node_low(void *ctx, uint32_t id) {
  return (uint32_t)((struct sp_engine *)ctx)->stable.nodes[id].hash;
}

/* An empty index; keeps the content cache and the counters that outlive
 * a clear (compares, room_opened_seq). */
static void index_init(struct sp_engine *e) {
  struct sp_stable *st = &e->stable;
  st->nodes = NULL;
  st->cap = st->nused = 0;
  st->free_head = SP_NIL;
  st->pages_shared = st->pages_sharing = 0;
  st->stable_node_chains = st->stable_node_dups = 0;
  st->contents = 0;
  sp__index_init(&st->index, node_low, e);
}

static void index_free(struct sp_engine *e) {
  sp__index_free(&e->stable.index);
  free(e->stable.nodes);
  e->stable.nodes = NULL;
}

int sp__stable_init(struct sp_engine *e, uint64_t cache_bytes) {
  memset(&e->stable, 0, sizeof e->stable);
  index_init(e);
  sp__ccache_init(&e->stable.cache);
  return sp__ccache_configure(&e->stable.cache, cache_bytes);
}

void sp__stable_free(struct sp_engine *e) {
  index_free(e);
  sp__ccache_free(&e->stable.cache);
}

int sp__stable_configure_cache(struct sp_engine *e, uint64_t cache_bytes) {
  for (size_t i = 0; i < e->stable.nused; i++) e->stable.nodes[i].cache = SP_NIL;
  return sp__ccache_configure(&e->stable.cache, cache_bytes);
}

/* Copies a content into the cache for content node `content`; the node
 * whose entry was evicted for it forgets that entry. */
static void cache_put(struct sp_engine *e, uint32_t content, const void *page) {
  uint32_t evicted;
  uint32_t entry = sp__ccache_put(&e->stable.cache, content, page, &evicted);
  if (evicted != SP__CCACHE_NONE) e->stable.nodes[evicted].cache = SP_NIL;
  e->stable.nodes[content].cache = entry == SP__CCACHE_NONE ? SP_NIL : entry;
}

static uint32_t node_alloc(struct sp_engine *e, uint8_t kind, uint64_t hash) {
  struct sp_stable *st = &e->stable;
  uint32_t id = st->free_head;
  if (id != SP_NIL) {
    st->free_head = st->nodes[id].next;
  } else {
    if (st->nused == st->cap) {
      size_t ncap = st->cap ? st->cap * 2 : 256;
      struct sp_snode *n = realloc(st->nodes, ncap * sizeof *n);
      if (!n) return SP_NIL;
      st->nodes = n;
      st->cap = ncap;
    }
    id = (uint32_t)st->nused++;
  }
  if (kind == SN_REGULAR || kind == SN_CHAIN) st->contents++;
  st->nodes[id] = (struct sp_snode){.hash = hash,
                                    .members = SP_NIL,
                                    .link = SP_NIL,
                                    .next = SP_NIL,
                                    .cache = SP_NIL,
                                    .kind = kind};
  return id;
}

static void node_free(struct sp_engine *e, uint32_t id) {
  struct sp_snode *n = &e->stable.nodes[id];
  if (n->cache != SP_NIL) sp__ccache_drop(&e->stable.cache, n->cache);
  if (n->kind == SN_REGULAR || n->kind == SN_CHAIN) e->stable.contents--;
  n->kind = SN_FREE;
  n->next = e->stable.free_head;
  e->stable.free_head = id;
}

static inline struct sp_snode *N(struct sp_engine *e, uint32_t id) {
  return &e->stable.nodes[id];
}

uint32_t sp__stable_content_of(const struct sp_engine *e, uint32_t node) {
  const struct sp_snode *n = &e->stable.nodes[node];
  return n->kind == SN_DUP ? n->link : node;
}

/* Tries each member of a merged page until one still holds the content
 * (members are live memory: one may have been written since it merged). */
static const void *member_contents(struct sp_engine *e, uint32_t node,
                                   uint64_t hash) {
  for (uint32_t m = N(e, node)->members; m != SP_NIL;
       m = sp__rec_get(e, m)->next) {
    const void *p = sp__read_ref(e, m, e->acc.page_buf2);
    if (p && sp__hash_page(p) == hash) return p;
  }
  return NULL;
}

const void *sp__stable_contents(struct sp_engine *e, uint32_t content) {
  struct sp_snode *c = N(e, content);
  if (c->cache != SP_NIL) return sp__ccache_get(&e->stable.cache, c->cache);
  const void *p = NULL;
  if (c->kind == SN_CHAIN) {
    for (uint32_t d = c->link; d != SP_NIL && !p; d = N(e, d)->next)
      p = member_contents(e, d, c->hash);
  } else {
    p = member_contents(e, content, c->hash);
  }
  if (p) cache_put(e, content, p);
  return p;
}

uint32_t sp__stable_find(struct sp_engine *e, const void *page, uint64_t hash) {
  struct sp_index_probe probe;
  sp__index_probe_init(&e->stable.index, hash, &probe);
  for (;;) {
    uint32_t id = sp__index_probe_next(&e->stable.index, &probe, &e->stable.compares);
    if (id == SP_NIL) return SP_NIL;
    if (N(e, id)->hash != hash) continue;
    const void *contents = sp__stable_contents(e, id);
    if (contents && sp__pages_equal(e, page, contents)) return id;
  }
}

/* Milliseconds of CLOCK_MONOTONIC, wrapping like jiffies: intervals are
 * taken as uint32_t differences, good for 49 days. */
static uint32_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

/* stable_node_dup()'s test: a full walk is due when the knob's interval has
 * passed since the chain's last one (time_before() false); it starts a new
 * interval. */
static bool prune_due(struct sp_engine *e, struct sp_snode *chain) {
  uint32_t now = now_ms();
  if (now - chain->pruned_ms < e->settings.stable_node_chains_prune_millisecs) return false;
  chain->pruned_ms = now;
  return true;
}

/* __is_page_sharing_candidate(): has a mapping and room for offset more. */
static inline bool candidate(const struct sp_engine *e, const struct sp_snode *n,
                             uint32_t offset) {
  return n->count && n->count + offset < e->settings.max_page_sharing;
}

/* Replaces a chain that is down to one dup by that dup, as a regular node. */
static void collapse(struct sp_engine *e, uint32_t chain, uint32_t dup) {
  struct sp_snode *c = N(e, chain), *d = N(e, dup);
  d->kind = SN_REGULAR;
  e->stable.contents++; /* the chain goes below */
  d->link = d->next = SP_NIL;
  d->cache = c->cache;
  if (d->cache != SP_NIL) sp__ccache_rebind(&e->stable.cache, d->cache, dup);
  c->cache = SP_NIL;
  /* Same content, same hash: the chain's entry now names the dup. */
  sp__index_replace(&e->stable.index, (uint32_t)c->hash, chain, dup);
  node_free(e, chain);
  e->stable.stable_node_chains--;
  e->stable.stable_node_dups--;
}

uint32_t sp__stable_pick(struct sp_engine *e, uint32_t content) {
  struct sp_snode *c = N(e, content);
  if (c->kind == SN_REGULAR) return candidate(e, c, 0) ? content : SP_NIL;

  /* stable_node_dup(): the first dup that can take another mapping, or,
   * when a full walk is due, the fullest one that can. */
  bool prune = prune_due(e, c);
  uint32_t found = SP_NIL, prev_of_found = SP_NIL, prev = SP_NIL;
  for (uint32_t d = c->link; d != SP_NIL; prev = d, d = N(e, d)->next) {
    struct sp_snode *dn = N(e, d);
    if (found == SP_NIL ||
        (candidate(e, dn, 0) &&
         (!candidate(e, N(e, found), 0) || dn->count > N(e, found)->count))) {
      found = d;
      prev_of_found = prev;
      if (!prune && candidate(e, dn, 0)) break;
    }
  }
  if (found == SP_NIL) return SP_NIL;
  /* A dup that can take one more merge after this one moves to the head so
   * the next search finds it first. */
  if (prev_of_found != SP_NIL && candidate(e, N(e, found), 1)) {
    N(e, prev_of_found)->next = N(e, found)->next;
    N(e, found)->next = c->link;
    c->link = found;
  }
  return candidate(e, N(e, found), 0) ? found : SP_NIL;
}

uint32_t sp__stable_insert(struct sp_engine *e, const void *page,
                          uint64_t hash, uint32_t content) {
  if (content == SP_NIL) content = sp__stable_find(e, page, hash);
  if (content == SP_NIL) {
    uint32_t id = node_alloc(e, SN_REGULAR, hash);
    if (id == SP_NIL) return SP_NIL;
    if (sp__index_insert(&e->stable.index, hash, id)) {
      node_free(e, id);
      return SP_NIL;
    }
    cache_put(e, id, page);
    return id;
  }

  /* The content is there but full: add a dup, turning a regular node into
   * a chain first (alloc_stable_node_chain() + stable_node_chain_add_dup()). */
  if (N(e, content)->kind == SN_REGULAR) {
    uint32_t chain = node_alloc(e, SN_CHAIN, hash);
    if (chain == SP_NIL) return SP_NIL;
    struct sp_snode *c = N(e, chain), *old = N(e, content);
    c->cache = old->cache;
    if (c->cache != SP_NIL) sp__ccache_rebind(&e->stable.cache, c->cache, chain);
    c->pruned_ms = now_ms(); /* alloc_stable_node_chain(): chain_prune_time = jiffies */
    old->cache = SP_NIL;
    old->kind = SN_DUP;
    e->stable.contents--; /* the chain took its place */
    old->link = chain;
    old->next = SP_NIL;
    c->link = content;
    /* The chain takes the regular node's entry (same hash). */
    sp__index_replace(&e->stable.index, (uint32_t)hash, content, chain);
    e->stable.stable_node_chains++;
    e->stable.stable_node_dups++;
    content = chain;
  }
  uint32_t dup = node_alloc(e, SN_DUP, hash);
  if (dup == SP_NIL) return SP_NIL;
  N(e, dup)->link = content;
  N(e, dup)->next = N(e, content)->link;
  N(e, content)->link = dup;
  e->stable.stable_node_dups++;
  return dup;
}

void sp__stable_append(struct sp_engine *e, uint32_t node, uint32_t ref) {
  struct sp_snode *n = N(e, node);
  struct sp_rec *rec = sp__rec_get(e, ref);
  struct sp_source *src = sp__rec_source(e, ref);
  /* stable_tree_append(): the first mapping of a merged page counts as
   * shared, every other one as sharing. */
  if (n->count) e->stable.pages_sharing++;
  else e->stable.pages_shared++;
  n->count++;
  rec->node = node;
  rec->next = n->members;
  n->members = ref;
  sp__rec_set_state(rec, REC_STABLE);
  src->merging_pages++;
}

void sp__stable_remove(struct sp_engine *e, uint32_t ref) {
  struct sp_rec *rec = sp__rec_get(e, ref);
  uint32_t node = rec->node;
  struct sp_snode *n = N(e, node);
  struct sp_source *src = sp__rec_source(e, ref);

  /* Unlink from the member list (singly linked: at most max_page_sharing
   * long, unlike a content's total mappings). */
  uint32_t *link = &n->members;
  while (*link != ref) link = &sp__rec_get(e, *link)->next;
  *link = rec->next;
  rec->next = SP_NIL;
  rec->node = SP_NIL;
  sp__rec_set_state(rec, REC_VOLATILE);
  src->merging_pages--;

  bool was_full = !candidate(e, n, 0) && n->count;
  n->count--;
  if (n->count) e->stable.pages_sharing--;
  else e->stable.pages_shared--;
  if (was_full && candidate(e, n, 0)) e->stable.room_opened_seq = e->scan.seqnr + 1;
  if (n->count) return;

  /* The merged page lost its last mapping: the kernel frees it. */
  if (n->kind == SN_REGULAR) {
    sp__index_remove(&e->stable.index, (uint32_t)n->hash, node);
    node_free(e, node);
    return;
  }
  uint32_t chain = n->link;
  struct sp_snode *c = N(e, chain);
  uint32_t *dl = &c->link;
  while (*dl != node) dl = &N(e, *dl)->next;
  *dl = n->next;
  node_free(e, node);
  e->stable.stable_node_dups--;
  c = N(e, chain);
  if (c->link == SP_NIL) {
    sp__index_remove(&e->stable.index, (uint32_t)c->hash, chain);
    node_free(e, chain);
    e->stable.stable_node_chains--;
  } else if (N(e, c->link)->next == SP_NIL) {
    collapse(e, chain, c->link);
  }
}

void sp__stable_rekey(struct sp_engine *e, uint32_t from, uint32_t to) {
  uint32_t *link = &N(e, sp__rec_get(e, from)->node)->members;
  while (*link != from) link = &sp__rec_get(e, *link)->next;
  *link = to;
}

void sp__stable_clear(struct sp_engine *e) {
  struct sp_stable *st = &e->stable;
  for (size_t i = 0; i < st->nused; i++)
    if (st->nodes[i].kind != SN_FREE && st->nodes[i].cache != SP_NIL)
      sp__ccache_drop(&st->cache, st->nodes[i].cache);
  index_free(e);
  index_init(e);
}

uint32_t sp__stable_first_member(const struct sp_engine *e, uint32_t node) {
  return e->stable.nodes[node].members;
}

uint64_t sp__stable_hash(const struct sp_engine *e, uint32_t node) {
  return e->stable.nodes[node].hash;
}

size_t sp__stable_bytes(const struct sp_engine *e) {
  return sp__index_bytes(&e->stable.index) + e->stable.cap * sizeof(struct sp_snode);
}
