/*
 * unstable.c - the unstable index: pages not merged yet whose checksum was
 * stable since their previous visit.  Their contents may change at any
 * time, so the index is emptied at the start of every full pass and rebuilt
 * (the kernel resets its unstable tree roots the same way).
 *
 * Two forms.  By default a hash index: a search compares the page with the
 * indexed pages of the same hash, as they are now, so it finds what the
 * kernel's tree finds while indexed pages stay as they were indexed.  With
 * exact_trees, the kernel's own tree (unstable_tree_search_insert()):
 * a red-black tree walked by memcmp against each node's page as it is at
 * that moment, giving up when a node has no page.  A page written after it
 * was indexed then misleads later searches exactly as in the kernel, at the
 * price of a page read per level.
 */
#include "unstable.h"

#include <stddef.h>
#include <stdlib.h>

#include "access.h"

static uint32_t record_low(void *ctx, uint32_t ref) {
  return sp__rec_get((struct sp_engine *)ctx, ref)->csum;
}

void sp__unstable_init(struct sp_engine *e) {
  struct sp_unstable *u = &e->unstable;
  sp__index_init(&u->index, record_low, e);
  sp__rb_init(&u->tree, (void *const *)&u->nodes, sizeof(struct sp_unode),
              offsetof(struct sp_unode, links));
  u->free_node = SP_NIL;
}

void sp__unstable_free(struct sp_engine *e) {
  sp__index_free(&e->unstable.index);
  free(e->unstable.nodes);
  e->unstable.nodes = NULL;
  e->unstable.nnodes = e->unstable.cap_nodes = 0;
}

/* The tree emptied (root_unstable_tree = RB_ROOT); its nodes array is kept. */
static void tree_reset(struct sp_unstable *u) {
  u->tree.root = SP__RB_NIL;
  u->nnodes = 0;
  u->free_node = SP_NIL;
}

int sp__unstable_new_pass(struct sp_engine *e) {
  struct sp_unstable *u = &e->unstable;
  tree_reset(u);
  u->exact = e->settings.exact_trees;
  /* Size for every record that could be indexed this pass. */
  return sp__index_reset(&u->index, u->exact ? 0 : (size_t)(e->tr.rmap_items / 2 + 1));
}

void sp__unstable_clear(struct sp_engine *e) {
  tree_reset(&e->unstable);
  sp__index_reset(&e->unstable.index, 0);
}

/* ---- the kernel's tree (exact_trees) ---------------------------- */

static uint32_t node_alloc(struct sp_unstable *u, uint32_t ref) {
  uint32_t id = u->free_node;
  if (id != SP_NIL) {
    u->free_node = u->nodes[id].ref;
  } else {
    if (u->nnodes == u->cap_nodes) {
      uint32_t ncap = u->cap_nodes ? u->cap_nodes * 2 : 1024;
      if (ncap >= SP__RB_NO_PARENT) return SP_NIL;
      struct sp_unode *n = realloc(u->nodes, (size_t)ncap * sizeof *n);
      if (!n) return SP_NIL;
      u->nodes = n;
      u->cap_nodes = ncap;
    }
    id = u->nnodes++;
  }
  u->nodes[id].ref = ref;
  return id;
}

/* A free node's left link; a node in the tree has a real one or SP__RB_NIL. */
#define NODE_FREE (SP__RB_NIL - 1)

static void node_free(struct sp_unstable *u, uint32_t id) {
  u->nodes[id].ref = u->free_node;
  u->nodes[id].links.left = NODE_FREE;
  u->free_node = id;
}

/* Whether ref's record has a node in this pass's tree: its seq says so,
 * unless it was indexed 256 passes ago and never visited since (the seq
 * is 8 bits), so the node is checked to be its own. */
static bool tree_holds(const struct sp_unstable *u, const struct sp_rec *rec, uint32_t ref) {
  return rec->node < u->nnodes && u->nodes[rec->node].links.left != NODE_FREE &&
         u->nodes[rec->node].ref == ref;
}

/*
 * unstable_tree_search_insert() as 6.12 walks it: at each node, the node's
 * page as it is now (get_mergeable_page(): none, and the search gives up),
 * then memcmp_pages() picks the way.  The kernel asks whether the two are
 * one physical page before comparing; only equal pages can be, so the
 * engine asks on equality.  Where page would be linked goes to parent and
 * left.  Returns the equal node's ref, or SP_NIL with *gave_up set when it gave up.
 */
static uint32_t tree_walk(struct sp_engine *e, uint32_t ref, const void *page,
                          const void **partner_page, uint32_t *parent, bool *left,
                          bool *gave_up) {
  struct sp_unstable *u = &e->unstable;
  *parent = SP__RB_NIL;
  *left = false;
  *gave_up = false;
  for (uint32_t at = u->tree.root; at != SP__RB_NIL;) {
    uint32_t other = u->nodes[at].ref;
    const void *contents = sp__read_ref(e, other, e->acc.page_buf);
    if (!contents) {
      *gave_up = true;
      return SP_NIL;
    }
    u->compares++;
    int c = sp__pages_cmp(e, page, contents);
    if (!c) {
      uint64_t frame = ref == SP_NIL ? 0 : sp__frame_of(e, other);
      if (frame && frame == sp__frame_of(e, ref)) {
        *gave_up = true;
        return SP_NIL;
      }
      *partner_page = contents;
      return other;
    }
    *parent = at;
    *left = c < 0;
    struct sp__rb_links *l = sp__rb_at(&u->tree, at);
    at = c < 0 ? l->left : l->right;
  }
  return SP_NIL;
}

static uint32_t tree_search_insert(struct sp_engine *e, uint32_t ref, const void *page,
                                   const void **partner_page) {
  struct sp_unstable *u = &e->unstable;
  uint32_t parent;
  bool left, gave_up;
  uint32_t other = tree_walk(e, ref, page, partner_page, &parent, &left, &gave_up);
  if (other != SP_NIL || gave_up) return other;
  uint32_t id = node_alloc(u, ref);
  if (id == SP_NIL) return SP_NIL; /* ENOMEM: stays volatile */
  sp__rb_link(&u->tree, id, parent, left);
  struct sp_rec *rec = sp__rec_get(e, ref);
  rec->node = id;
  sp__rec_set_state(rec, REC_UNSTABLE);
  rec->seq = (uint8_t)e->scan.seqnr;
  u->pages_unshared++;
  return SP_NIL;
}

bool sp__unstable_current(const struct sp_engine *e, const struct sp_rec *rec) {
  return rec->seq == (uint8_t)e->scan.seqnr;
}

void sp__unstable_remove(struct sp_engine *e, uint32_t ref) {
  struct sp_rec *rec = sp__rec_get(e, ref);
  /* Only an entry of this pass is still in the index; older ones went
   * with the reset (the kernel's "age" test in remove_rmap_item_from_tree). */
  if (sp__unstable_current(e, rec)) {
    if (e->unstable.exact) {
      if (tree_holds(&e->unstable, rec, ref)) {
        sp__rb_erase(&e->unstable.tree, rec->node);
        node_free(&e->unstable, rec->node);
      }
    } else {
      sp__index_remove(&e->unstable.index, rec->csum, ref);
    }
  }
  rec->node = SP_NIL;
  sp__rec_set_state(rec, REC_VOLATILE);
  e->unstable.pages_unshared--;
}

void sp__unstable_rekey(struct sp_engine *e, uint32_t from, uint32_t to) {
  const struct sp_rec *rec = sp__rec_get(e, from);
  if (!sp__unstable_current(e, rec)) return;
  if (e->unstable.exact) {
    if (tree_holds(&e->unstable, rec, from)) e->unstable.nodes[rec->node].ref = to;
  }
  else sp__index_replace(&e->unstable.index, rec->csum, from, to);
}

uint32_t sp__unstable_search_insert(struct sp_engine *e, uint32_t ref, const void *page,
                                    uint64_t hash, const void **partner_page) {
  if (e->unstable.exact) return tree_search_insert(e, ref, page, partner_page);
  struct sp_index_probe probe;
  sp__index_probe_init(&e->unstable.index, hash, &probe);
  for (;;) {
    uint32_t other = sp__index_probe_next(&e->unstable.index, &probe, &e->unstable.compares);
    if (other == SP_NIL) break;
    if (sp__rec_get(e, other)->csum != (uint32_t)hash) continue;
    /* Like get_mergeable_page(): compare with the page as it is now.  When
     * it cannot be read, 6.12 unstable_tree_search_insert() returns NULL
     * without inserting: the page is tried again next pass, not indexed
     * against a partner the search never got past. */
    const void *contents = sp__read_ref(e, other, e->acc.page_buf);
    if (!contents) return SP_NIL;
    if (sp__pages_equal(e, page, contents)) {
      /* The same physical page on both sides (a process and its forked
       * child, copy-on-write): 6.12 unstable_tree_search_insert() gives up
       * there ("Don't substitute a ksm page for a forked page") without
       * inserting, so the page stays volatile and they never merge.  Only
       * asked on a match; only a live process source knows frames, and
       * only of ordinary pages (not KSM ones, see proc_frame()). */
      uint64_t frame = sp__frame_of(e, other);
      if (frame && frame == sp__frame_of(e, ref)) return SP_NIL;
      *partner_page = contents;
      return other;
    }
  }
  struct sp_rec *rec = sp__rec_get(e, ref);
  if (sp__index_insert(&e->unstable.index, hash, ref)) return SP_NIL; /* ENOMEM: stays volatile */
  sp__rec_set_state(rec, REC_UNSTABLE);
  rec->seq = (uint8_t)e->scan.seqnr;
  e->unstable.pages_unshared++;
  return SP_NIL;
}

/* In the unstable index as it stands: of this pass while one runs, of the
 * pass just completed between passes (the index is emptied when the next
 * one starts). */
static bool indexed_now(const struct sp_engine *e, const struct sp_rec *rec) {
  return rec->seq == (uint8_t)(e->scan.cur.in_pass ? e->scan.seqnr : e->scan.seqnr - 1);
}

bool sp__unstable_holds(struct sp_engine *e, const void *page, uint64_t hash) {
  if (e->unstable.exact) {
    /* The tree is emptied when the next pass begins, as indexed_now() says. */
    const void *partner;
    uint32_t parent;
    bool left, gave_up;
    return tree_walk(e, SP_NIL, page, &partner, &parent, &left, &gave_up) != SP_NIL;
  }
  struct sp_index_probe probe;
  sp__index_probe_init(&e->unstable.index, hash, &probe);
  for (;;) {
    uint32_t ref = sp__index_probe_next(&e->unstable.index, &probe, &e->unstable.compares);
    if (ref == SP_NIL) return false;
    struct sp_rec *rec = sp__rec_get(e, ref);
    if (rec->csum != (uint32_t)hash || sp__rec_state(rec) != REC_UNSTABLE || !indexed_now(e, rec))
      continue;
    const void *guest = sp__read_ref(e, ref, e->acc.page_buf);
    if (guest && sp__pages_equal(e, page, guest)) return true;
  }
}

size_t sp__unstable_bytes(const struct sp_engine *e) {
  return sp__index_bytes(&e->unstable.index) +
         (size_t)e->unstable.cap_nodes * sizeof(struct sp_unode);
}
