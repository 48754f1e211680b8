/*
 * stable.c - the stable index: merged pages, with chains and dups.
 *
 * Mirrors the kernel's stable tree (mm/ksm.c, 6.12): a content is found by
 * hash, confirmed by a full compare.  Up to max_page_sharing mappings share
 * one merged page (a regular node).  When a content has more, it becomes a
 * chain whose dups are the merged pages of that content, each capped at
 * max_page_sharing; stable_node_chains and stable_node_dups count them as
 * the kernel does.  A merged page whose mappings all went (written,
 * unmapped) is freed by the kernel, but its node stays until
 * ksm_get_folio() meets it: the search that finds it, a chain walk, the
 * scan of one of those mappings; the node then goes with all their counts
 * (drop_stale()).  With exact_trees every node a descent passes is checked
 * so (exact_descent()), as the kernel's descent does.
 *
 * A chain is different: the kernel walks its dups (stable_node_dup()) only
 * when a stable tree search or insertion passes its node, and only then
 * collapses a chain left with one dup into a regular node, or frees one
 * left with none; until then both count.  Which searches pass a node is the
 * tree's shape, so the content nodes are also kept in the kernel's tree
 * (rbtree.c, ordered by memcmp, the same insertions and erasures): a search
 * first walks every chain it passes, shallowest first, as the kernel's
 * descent meets them.  Which dup takes a merge follows the kernel's clock
 * rule (stable_node_chains_prune_millisecs).
 */
#include <errno.h>
#include <stddef.h>
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
  sp__rb_init(&st->tree, (void *const *)&st->nodes, sizeof(struct sp_snode),
              offsetof(struct sp_snode, rb));
  st->chains = NULL;
  st->walk = NULL;
  st->nchains = st->chains_cap = st->nwalk = 0;
  st->shape_seq = 1;
  st->walk_seq = 0;
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
  free(e->stable.chains);
  free(e->stable.walk);
  e->stable.chains = NULL;
  e->stable.walk = NULL;
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

bool sp__stable_is_chain(const struct sp_engine *e, uint32_t content) {
  return e->stable.nodes[content].kind == SN_CHAIN;
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

/* keep: a copy goes into the cache when it was not there. */
static const void *contents_of(struct sp_engine *e, uint32_t content, bool keep) {
  struct sp_snode *c = N(e, content);
  if (c->cache != SP_NIL) return sp__ccache_get(&e->stable.cache, c->cache);
  const void *p = NULL;
  if (c->kind == SN_CHAIN) {
    for (uint32_t d = c->link; d != SP_NIL && !p; d = N(e, d)->next)
      p = member_contents(e, d, c->hash);
  } else {
    p = member_contents(e, content, c->hash);
  }
  if (p && keep) cache_put(e, content, p);
  return p;
}

const void *sp__stable_contents(struct sp_engine *e, uint32_t content) {
  return contents_of(e, content, true);
}

/* ---- the chains, and the tree that says when a search meets one ------- */

/* Room for one more chain in the list and in the walk cache: -ENOMEM. */
static int chains_reserve(struct sp_stable *st) {
  if (st->nchains < st->chains_cap) return 0;
  size_t ncap = st->chains_cap ? st->chains_cap * 2 : 16;
  uint32_t *chains = realloc(st->chains, ncap * sizeof *chains);
  if (!chains) return -ENOMEM;
  st->chains = chains;
  struct sp_chain_bounds *walk = realloc(st->walk, ncap * sizeof *walk);
  if (!walk) return -ENOMEM; /* the list stays grown: harmless */
  st->walk = walk;
  st->chains_cap = ncap;
  return 0;
}

/* The tree's changes, each one bumping shape_seq (the walk cache names
 * nodes and their places). */
static void tree_link(struct sp_engine *e, uint32_t node, uint32_t parent, bool left) {
  sp__rb_link(&e->stable.tree, node, parent, left);
  e->stable.shape_seq++;
}
static void tree_erase(struct sp_engine *e, uint32_t node) {
  sp__rb_erase(&e->stable.tree, node);
  e->stable.shape_seq++;
}
static void tree_replace(struct sp_engine *e, uint32_t from, uint32_t to) {
  sp__rb_replace(&e->stable.tree, from, to);
  e->stable.shape_seq++;
}

static void chains_remove(struct sp_stable *st, uint32_t chain) {
  for (size_t i = 0; i < st->nchains; i++)
    if (st->chains[i] == chain) {
      st->chains[i] = st->chains[--st->nchains];
      return;
    }
}

/* Where page sorts against content node `node`, as memcmp_pages() says.
 * Contents that can no longer be found (out of the cache, every member
 * written since) are ordered by hash: the kernel would find such a node
 * stale and erase it, which the engine does only when its members are
 * visited.  Not counted in the compares: the index finds contents, these
 * only keep the tree's shape for the chains. */
static int tree_cmp(struct sp_engine *e, const void *page, uint64_t hash, uint32_t node) {
  /* Not kept in the cache: a descent's deep nodes are seldom met again,
   * and would push out contents that lookups use. */
  const void *c = contents_of(e, node, false);
  if (c) return memcmp(page, c, SP_PAGE_SIZE);
  uint64_t h = N(e, node)->hash;
  return hash < h ? -1 : hash > h;
}

uint32_t sp__stable_find(struct sp_engine *e, const void *page, uint64_t hash) {
  struct sp_index_probe probe;
  sp__index_probe_init(&e->stable.index, hash, &probe);
  for (;;) {
    uint32_t id = sp__index_probe_next(&e->stable.index, &probe, &e->stable.compares);
    if (id == SP_NIL) return SP_NIL;
    /* A chain left without dups maps nothing: it waits for a search to
     * pass it and free it. */
    if (N(e, id)->hash != hash || (N(e, id)->kind == SN_CHAIN && N(e, id)->link == SP_NIL))
      continue;
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

/* Replaces a chain that is down to one dup by that dup, as a regular node,
 * in its place in the index and the tree. */
static void collapse(struct sp_engine *e, uint32_t chain, uint32_t dup) {
  struct sp_snode *c = N(e, chain), *d = N(e, dup);
  d->kind = SN_REGULAR;
  e->stable.contents++; /* the chain goes below */
  d->link = SP_NIL; /* its links in the tree come below, in the union with next */
  d->cache = c->cache;
  if (d->cache != SP_NIL) sp__ccache_rebind(&e->stable.cache, d->cache, dup);
  c->cache = SP_NIL;
  /* Same content, same hash: the chain's entry now names the dup. */
  sp__index_replace(&e->stable.index, (uint32_t)c->hash, chain, dup);
  tree_replace(e, chain, dup);
  chains_remove(&e->stable, chain);
  node_free(e, chain);
  e->stable.stable_node_chains--;
  e->stable.stable_node_dups--;
}

/* free_stable_node_chain(): a chain without dups leaves the tree. */
static void free_chain(struct sp_engine *e, uint32_t chain) {
  sp__index_remove(&e->stable.index, (uint32_t)N(e, chain)->hash, chain);
  tree_erase(e, chain);
  chains_remove(&e->stable, chain);
  e->stable.contents++; /* counted out already, when its last dup went */
  node_free(e, chain);
  e->stable.stable_node_chains--;
}

static void member_out(struct sp_engine *e, uint32_t ref);

/* remove_node_from_stable_tree(): a regular node or dup whose merged page
 * was freed (no mapping holds it) goes with all its mappings at once, when
 * ksm_get_folio() finds it stale; their records stay (rmap_items), volatile
 * now.  A mapping "holds" the page while it still reads as the content. */
static void drop_stale(struct sp_engine *e, uint32_t node) {
  for (uint32_t k = N(e, node)->count; k; k--) member_out(e, N(e, node)->members);
}

/* stable_node_dup(): walks a chain's dups for the one to merge into: the
 * first that can take another mapping, or, when a full walk is due (and
 * may_prune: a search, not an insertion), the fullest one that can; the
 * first dup when none can.  A chain with one dup left collapses into it
 * (*chain becomes the dup); one with none is freed (*chain SP_NIL). */
static uint32_t walk_dups(struct sp_engine *e, uint32_t *chain, bool may_prune) {
  uint32_t c = *chain;
  bool prune = may_prune && prune_due(e, N(e, c));
  uint32_t found = SP_NIL, prev_of_found = SP_NIL, prev = SP_NIL;
  for (uint32_t d = N(e, c)->link, next; d != SP_NIL; d = next) {
    struct sp_snode *dn = N(e, d);
    next = dn->next;
    if (!member_contents(e, d, dn->hash)) {
      /* ksm_get_folio() finds the dup's page freed (no mapping holds it):
       * it leaves the chain now, with its mappings' counts. */
      drop_stale(e, d);
      continue;
    }
    if (found == SP_NIL ||
        (candidate(e, dn, 0) &&
         (!candidate(e, N(e, found), 0) || dn->count > N(e, found)->count))) {
      found = d;
      prev_of_found = prev;
      if (!prune && candidate(e, dn, 0)) break;
    }
    prev = d;
  }
  if (found == SP_NIL) {
    free_chain(e, c);
    *chain = SP_NIL;
    return SP_NIL;
  }
  if (N(e, c)->link == found && N(e, found)->next == SP_NIL) {
    collapse(e, c, found);
    *chain = found;
    return found;
  }
  /* A dup that can take one more merge after this one moves to the head so
   * the next search finds it first. */
  if (prev_of_found != SP_NIL && candidate(e, N(e, found), 1)) {
    N(e, prev_of_found)->next = N(e, found)->next;
    N(e, found)->next = N(e, c)->link;
    N(e, c)->link = found;
  }
  return found;
}

uint32_t sp__stable_pick(struct sp_engine *e, uint32_t *content) {
  struct sp_snode *c = N(e, *content);
  if (c->kind == SN_REGULAR) {
    /* The search's ksm_get_folio() on the node it found: a merged page
     * none of whose mappings holds it was freed, and the node goes. */
    if (!member_contents(e, *content, c->hash)) {
      drop_stale(e, *content);
      *content = SP_NIL;
      return SP_NIL;
    }
    return candidate(e, c, 0) ? *content : SP_NIL;
  }
  uint32_t found = walk_dups(e, content, true);
  return found != SP_NIL && candidate(e, N(e, found), 0) ? found : SP_NIL;
}

static uint32_t depth_of(const struct sp__rbtree *t, uint32_t node) {
  uint32_t d = 0;
  for (uint32_t p = sp__rb_parent(sp__rb_at(t, node)); p != SP__RB_NIL;
       p = sp__rb_parent(sp__rb_at(t, p)))
    d++;
  return d;
}

/* The first 8 bytes of a page as a number that sorts as memcmp does. */
static uint64_t order_key(const void *page) {
  uint64_t k;
  memcpy(&k, page, sizeof k);
  return __builtin_bswap64(k);
}

static int by_depth(const void *a, const void *b) {
  uint32_t x = ((const struct sp_chain_bounds *)a)->depth, y = ((const struct sp_chain_bounds *)b)->depth;
  return (x > y) - (x < y);
}

/* Each chain's bounds: the nearest ancestors its path turns right (below)
 * and left (above) at; sorted shallowest first, as a descent meets them. */
static void walk_rebuild(struct sp_engine *e) {
  struct sp_stable *st = &e->stable;
  const struct sp__rbtree *t = &st->tree;
  for (size_t i = 0; i < st->nchains; i++) {
    uint32_t c = st->chains[i];
    struct sp_chain_bounds *w = &st->walk[i];
    *w = (struct sp_chain_bounds){.chain = c, .depth = depth_of(t, c), .below = SP_NIL, .above = SP_NIL};
    for (uint32_t child = c, p = sp__rb_parent(sp__rb_at(t, c));
         p != SP__RB_NIL && (w->below == SP_NIL || w->above == SP_NIL);
         child = p, p = sp__rb_parent(sp__rb_at(t, p))) {
      if (sp__rb_at(t, p)->left == child) {
        if (w->above == SP_NIL) w->above = p;
      } else if (w->below == SP_NIL) {
        w->below = p;
      }
    }
    const void *page;
    if (w->below != SP_NIL && (page = sp__stable_contents(e, w->below))) {
      w->below_key = order_key(page);
      w->below_keyed = true;
    }
    if (w->above != SP_NIL && (page = sp__stable_contents(e, w->above))) {
      w->above_key = order_key(page);
      w->above_keyed = true;
    }
  }
  qsort(st->walk, st->nchains, sizeof *st->walk, by_depth);
  st->nwalk = st->nchains;
  st->walk_seq = st->shape_seq;
}

/* Where page sorts against a bound: by key when the keys differ, else by
 * the contents. */
static int bound_cmp(struct sp_engine *e, const void *page, uint64_t hash, uint64_t key,
                     uint32_t bound, bool keyed, uint64_t bound_key) {
  if (keyed && key != bound_key) return key < bound_key ? -1 : 1;
  return tree_cmp(e, page, hash, bound);
}

/* Whether the kernel's descent for page reaches chain w->chain: page sorts
 * strictly between its bounds.  A bound that is a chain without dups (no
 * contents) was not passed: it is shallower, so a search that passed it
 * freed it first. */
static bool search_passes(struct sp_engine *e, const void *page, uint64_t hash, uint64_t key,
                          const struct sp_chain_bounds *w) {
  if (w->below != SP_NIL) {
    if (N(e, w->below)->kind == SN_CHAIN && N(e, w->below)->link == SP_NIL) return false;
    if (bound_cmp(e, page, hash, key, w->below, w->below_keyed, w->below_key) <= 0) return false;
  }
  if (w->above != SP_NIL) {
    if (N(e, w->above)->kind == SN_CHAIN && N(e, w->above)->link == SP_NIL) return false;
    if (bound_cmp(e, page, hash, key, w->above, w->above_keyed, w->above_key) >= 0) return false;
  }
  return true;
}

/* stable_tree_search()'s descent, for its effect on chains: every chain it
 * passes on the way to page's place is walked once (chain_prune()),
 * shallowest first.  Freeing one erases it from the tree and the kernel
 * starts the descent again; a collapse only puts the dup in its place.  A
 * chain of page's own content is left to sp__stable_pick(), the end of the
 * same descent.  Per search, a chain costs two key compares while the
 * tree's shape holds (walk_rebuild() otherwise). */
static void search_walks_chains(struct sp_engine *e, const void *page, uint64_t hash) {
  struct sp_stable *st = &e->stable;
  if (st->nchains == 0) return;
  uint64_t key = order_key(page);
descent:
  if (++st->search_serial == 0) st->search_serial = 1; /* 0: never walked */
rebuild:
  if (st->walk_seq != st->shape_seq || st->nwalk != st->nchains) walk_rebuild(e);
  for (size_t i = 0; i < st->nwalk; i++) {
    uint32_t c = st->walk[i].chain;
    if (N(e, c)->walked == st->search_serial || !search_passes(e, page, hash, key, &st->walk[i]))
      continue;
    if (N(e, c)->link != SP_NIL && N(e, c)->hash == hash && tree_cmp(e, page, hash, c) == 0)
      continue; /* page's own content: the descent ends here */
    N(e, c)->walked = st->search_serial;
    uint32_t walked = c;
    walk_dups(e, &walked, true);
    if (walked == SP_NIL) goto descent;
    if (st->walk_seq != st->shape_seq) goto rebuild; /* collapsed: bounds name other nodes */
  }
}

/* exact_trees: the kernel's descent node by node, for a search
 * (stable_tree_search()) or an insertion (stable_tree_insert()).  A chain
 * is walked (chain_prune(), or chain() for an insertion) unless it holds
 * page's content, which ends a search (sp__stable_pick() walks it); a
 * regular node whose merged page was freed is dropped (ksm_get_folio());
 * either erasure starts the descent again, as the kernel's "goto again".
 * Where page would be linked goes to parent and left. */
static void exact_descent(struct sp_engine *e, const void *page, uint64_t hash, bool search,
                          uint32_t *parent, bool *left) {
again:
  *parent = SP__RB_NIL;
  *left = false;
  for (uint32_t cur = e->stable.tree.root; cur != SP__RB_NIL;) {
    struct sp_snode *n = N(e, cur);
    if (n->kind == SN_CHAIN) {
      if (search && n->link != SP_NIL && n->hash == hash && tree_cmp(e, page, hash, cur) == 0)
        return;
      walk_dups(e, &cur, search);
      if (cur == SP_NIL) goto again;
    } else if (!member_contents(e, cur, n->hash)) {
      drop_stale(e, cur);
      goto again;
    }
    int r = tree_cmp(e, page, hash, cur);
    if (r == 0) return;
    *parent = cur;
    *left = r < 0;
    cur = r < 0 ? sp__rb_at(&e->stable.tree, cur)->left : sp__rb_at(&e->stable.tree, cur)->right;
  }
}

uint32_t sp__stable_search(struct sp_engine *e, const void *page, uint64_t hash) {
  if (e->settings.exact_trees) {
    uint32_t parent;
    bool left;
    exact_descent(e, page, hash, true, &parent, &left);
  } else {
    search_walks_chains(e, page, hash);
  }
  return sp__stable_find(e, page, hash);
}

/* stable_tree_insert()'s descent: where a new content node goes (parent,
 * and which side).  Chains on the way are walked as chain() does (never a
 * full walk): an empty one is freed and the descent starts again. */
static void tree_place(struct sp_engine *e, const void *page, uint64_t hash, uint32_t *parent,
                       bool *left) {
  if (e->settings.exact_trees) {
    exact_descent(e, page, hash, false, parent, left);
    return;
  }
again:
  *parent = SP__RB_NIL;
  *left = false;
  for (uint32_t cur = e->stable.tree.root; cur != SP__RB_NIL;) {
    if (N(e, cur)->kind == SN_CHAIN) {
      walk_dups(e, &cur, false);
      if (cur == SP_NIL) goto again;
    }
    int r = tree_cmp(e, page, hash, cur);
    *parent = cur;
    *left = r < 0;
    cur = r < 0 ? sp__rb_at(&e->stable.tree, cur)->left : sp__rb_at(&e->stable.tree, cur)->right;
  }
}

uint32_t sp__stable_insert(struct sp_engine *e, const void *page,
                          uint64_t hash, uint32_t content) {
  if (content == SP_NIL) content = sp__stable_find(e, page, hash);
  if (content == SP_NIL) {
    uint32_t parent;
    bool left;
    tree_place(e, page, hash, &parent, &left);
    uint32_t id = node_alloc(e, SN_REGULAR, hash);
    if (id == SP_NIL) return SP_NIL;
    if (sp__index_insert(&e->stable.index, hash, id)) {
      node_free(e, id);
      return SP_NIL;
    }
    tree_link(e, id, parent, left);
    cache_put(e, id, page);
    return id;
  }

  /* The content is there but full: add a dup, turning a regular node into
   * a chain first (alloc_stable_node_chain() + stable_node_chain_add_dup()). */
  if (N(e, content)->kind == SN_REGULAR) {
    if (chains_reserve(&e->stable)) return SP_NIL;
    uint32_t chain = node_alloc(e, SN_CHAIN, hash);
    if (chain == SP_NIL) return SP_NIL;
    /* The chain takes the regular node's place first: as a dup it will
     * keep its next dup where the tree's links were. */
    tree_replace(e, content, chain);
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
    e->stable.chains[e->stable.nchains++] = chain;
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
  /* remove_rmap_item_from_tree() asks ksm_get_folio() for the merged page
   * first: if none of the node's mappings holds it any more (this one
   * included), the whole node goes. */
  uint32_t node = sp__rec_get(e, ref)->node;
  if (!member_contents(e, node, N(e, node)->hash)) drop_stale(e, node);
  else member_out(e, ref);
}

static void member_out(struct sp_engine *e, uint32_t ref) {
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
    tree_erase(e, node);
    node_free(e, node);
    return;
  }
  /* A dup leaves its chain (__stable_node_dup_del()); the chain, even with
   * one dup or none left, stays until a search passes it. */
  uint32_t chain = n->link;
  uint32_t *dl = &N(e, chain)->link;
  while (*dl != node) dl = &N(e, *dl)->next;
  *dl = n->next;
  node_free(e, node);
  e->stable.stable_node_dups--;
  /* A chain without dups merges nothing: out of merged_contents now, out
   * of the kernel's counters when a search frees it. */
  if (N(e, chain)->link == SP_NIL) e->stable.contents--;
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
