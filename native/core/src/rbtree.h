/*
 * rbtree.h - a red-black tree over nodes kept in an array, named by index.
 *
 * Why ours and not a hash: the kernel's stable tree is an rbtree ordered by
 * page contents, and what happens to a chain depends on whether a search
 * passes its node.  To know that, the engine keeps the same tree: the same
 * insertions and erasures give the same shape only if the balancing is the
 * kernel's (lib/rbtree.c: the textbook insert, and erase by the in-order
 * successor), which this is.  The caller walks the tree to find where a
 * node goes (it owns the order) and links it there.
 */
#ifndef SP_RBTREE_H
#define SP_RBTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#pragma GCC visibility push(hidden)

#define SP__RB_NIL UINT32_MAX

/* Twelve bytes: the colour is the top bit of the parent's index (indexes
 * stay below 2^31 - 1, which stands for no parent). */
struct sp__rb_links {
  uint32_t parent_red, left, right;
};

#define SP__RB_RED 0x80000000u
#define SP__RB_NO_PARENT 0x7fffffffu

static inline uint32_t sp__rb_parent(const struct sp__rb_links *l) {
  uint32_t p = l->parent_red & ~SP__RB_RED;
  return p == SP__RB_NO_PARENT ? SP__RB_NIL : p;
}

static inline bool sp__rb_red(const struct sp__rb_links *l) { return l->parent_red & SP__RB_RED; }

/* The links of node id are at (*base) + id * stride + offset: the array may
 * move (realloc), so the tree keeps where its pointer is. */
struct sp__rbtree {
  uint32_t root;
  void *const *base;
  size_t stride, offset;
};

void sp__rb_init(struct sp__rbtree *t, void *const *base, size_t stride, size_t offset);

static inline struct sp__rb_links *sp__rb_at(const struct sp__rbtree *t, uint32_t id) {
  return (struct sp__rb_links *)((char *)*t->base + (size_t)id * t->stride + t->offset);
}

/* Links node as the left (or right) child of parent, which has none there
 * (parent SP__RB_NIL: the tree is empty), and rebalances. */
void sp__rb_link(struct sp__rbtree *t, uint32_t node, uint32_t parent, bool left);
/* Takes node out and rebalances. */
void sp__rb_erase(struct sp__rbtree *t, uint32_t node);
/* Puts node `to` (not in the tree) where `from` is, same colour and shape;
 * the caller vouches that it sorts alike (rb_replace_node()). */
void sp__rb_replace(struct sp__rbtree *t, uint32_t from, uint32_t to);

#pragma GCC visibility pop

#endif
