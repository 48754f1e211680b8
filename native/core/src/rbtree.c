/*
 * rbtree.c - the red-black tree of rbtree.h.  The textbook algorithm
 * (insert fix-up by uncle colour; erase by the in-order successor, which
 * takes the erased node's place and colour, then the four fix-up cases):
 * every choice that decides the shape is the one lib/rbtree.c makes.
 */
#include "rbtree.h"

#define NIL SP__RB_NIL

static inline struct sp__rb_links *at(const struct sp__rbtree *t, uint32_t id) {
  return sp__rb_at(t, id);
}

static inline bool is_red(const struct sp__rbtree *t, uint32_t id) {
  return id != NIL && sp__rb_red(at(t, id));
}

static inline uint32_t parent_of(const struct sp__rbtree *t, uint32_t id) {
  return sp__rb_parent(at(t, id));
}

static inline void set_parent(const struct sp__rbtree *t, uint32_t id, uint32_t parent) {
  struct sp__rb_links *l = at(t, id);
  l->parent_red = (l->parent_red & SP__RB_RED) | (parent == NIL ? SP__RB_NO_PARENT : parent);
}

static inline void set_red(const struct sp__rbtree *t, uint32_t id, bool red) {
  struct sp__rb_links *l = at(t, id);
  l->parent_red = (l->parent_red & ~SP__RB_RED) | (red ? SP__RB_RED : 0);
}

void sp__rb_init(struct sp__rbtree *t, void *const *base, size_t stride, size_t offset) {
  *t = (struct sp__rbtree){.root = NIL, .base = base, .stride = stride, .offset = offset};
}

/* parent's child `from` becomes `to` (parent NIL: the root). */
static void change_child(struct sp__rbtree *t, uint32_t parent, uint32_t from, uint32_t to) {
  if (parent == NIL) t->root = to;
  else if (at(t, parent)->left == from) at(t, parent)->left = to;
  else at(t, parent)->right = to;
}

/* x's right child y takes x's place; x becomes y's left child. */
static void rotate_left(struct sp__rbtree *t, uint32_t x) {
  uint32_t y = at(t, x)->right, moved = at(t, y)->left;
  at(t, x)->right = moved;
  if (moved != NIL) set_parent(t, moved, x);
  uint32_t above = parent_of(t, x);
  set_parent(t, y, above);
  change_child(t, above, x, y);
  at(t, y)->left = x;
  set_parent(t, x, y);
}

/* x's left child y takes x's place; x becomes y's right child. */
static void rotate_right(struct sp__rbtree *t, uint32_t x) {
  uint32_t y = at(t, x)->left, moved = at(t, y)->right;
  at(t, x)->left = moved;
  if (moved != NIL) set_parent(t, moved, x);
  uint32_t above = parent_of(t, x);
  set_parent(t, y, above);
  change_child(t, above, x, y);
  at(t, y)->right = x;
  set_parent(t, x, y);
}

void sp__rb_link(struct sp__rbtree *t, uint32_t node, uint32_t parent, bool left) {
  *at(t, node) = (struct sp__rb_links){.left = NIL, .right = NIL};
  set_parent(t, node, parent);
  set_red(t, node, 1);
  if (parent == NIL) t->root = node;
  else if (left) at(t, parent)->left = node;
  else at(t, parent)->right = node;

  uint32_t z = node, p;
  while ((p = parent_of(t, z)) != NIL && is_red(t, p)) {
    uint32_t g = parent_of(t, p); /* a red node is never the root */
    bool p_left = at(t, g)->left == p;
    uint32_t uncle = p_left ? at(t, g)->right : at(t, g)->left;
    if (is_red(t, uncle)) {
      /* Recolour and carry the red up to the grandparent. */
      set_red(t, p, 0);
      set_red(t, uncle, 0);
      set_red(t, g, 1);
      z = g;
      continue;
    }
    if (p_left) {
      if (z == at(t, p)->right) {
        rotate_left(t, p);
        z = p;
        p = parent_of(t, z);
      }
      set_red(t, p, 0);
      set_red(t, g, 1);
      rotate_right(t, g);
    } else {
      if (z == at(t, p)->left) {
        rotate_right(t, p);
        z = p;
        p = parent_of(t, z);
      }
      set_red(t, p, 0);
      set_red(t, g, 1);
      rotate_left(t, g);
    }
    break;
  }
  set_red(t, t->root, 0);
}

/* A black node went from under parent on one side (x there, NIL or not):
 * restore the black heights. */
static void erase_fixup(struct sp__rbtree *t, uint32_t x, uint32_t parent) {
  while (parent != NIL && !is_red(t, x)) {
    if (x == at(t, parent)->left) {
      uint32_t w = at(t, parent)->right;
      if (is_red(t, w)) {
        set_red(t, w, 0);
        set_red(t, parent, 1);
        rotate_left(t, parent);
        w = at(t, parent)->right;
      }
      if (!is_red(t, at(t, w)->left) && !is_red(t, at(t, w)->right)) {
        set_red(t, w, 1);
        x = parent;
        parent = parent_of(t, x);
        continue;
      }
      if (!is_red(t, at(t, w)->right)) {
        set_red(t, at(t, w)->left, 0);
        set_red(t, w, 1);
        rotate_right(t, w);
        w = at(t, parent)->right;
      }
      set_red(t, w, is_red(t, parent));
      set_red(t, parent, 0);
      set_red(t, at(t, w)->right, 0);
      rotate_left(t, parent);
    } else {
      uint32_t w = at(t, parent)->left;
      if (is_red(t, w)) {
        set_red(t, w, 0);
        set_red(t, parent, 1);
        rotate_right(t, parent);
        w = at(t, parent)->left;
      }
      if (!is_red(t, at(t, w)->left) && !is_red(t, at(t, w)->right)) {
        set_red(t, w, 1);
        x = parent;
        parent = parent_of(t, x);
        continue;
      }
      if (!is_red(t, at(t, w)->left)) {
        set_red(t, at(t, w)->right, 0);
        set_red(t, w, 1);
        rotate_left(t, w);
        w = at(t, parent)->left;
      }
      set_red(t, w, is_red(t, parent));
      set_red(t, parent, 0);
      set_red(t, at(t, w)->left, 0);
      rotate_right(t, parent);
    }
    x = t->root;
    break;
  }
  if (x != NIL) set_red(t, x, 0);
}

void sp__rb_erase(struct sp__rbtree *t, uint32_t node) {
  struct sp__rb_links *n = at(t, node);
  uint32_t n_parent = sp__rb_parent(n), x, x_parent;
  bool removed_black;
  if (n->left == NIL || n->right == NIL) {
    /* At most one child: it takes the node's place. */
    x = n->left == NIL ? n->right : n->left;
    x_parent = n_parent;
    removed_black = !sp__rb_red(n);
    if (x != NIL) set_parent(t, x, n_parent);
    change_child(t, n_parent, node, x);
  } else {
    /* Two children: the in-order successor (leftmost of the right
     * subtree) takes the node's place and colour; its own right child
     * takes the successor's old place. */
    uint32_t s = n->right;
    while (at(t, s)->left != NIL) s = at(t, s)->left;
    removed_black = !is_red(t, s);
    x = at(t, s)->right;
    if (s == n->right) {
      x_parent = s;
    } else {
      x_parent = parent_of(t, s);
      at(t, x_parent)->left = x;
      if (x != NIL) set_parent(t, x, x_parent);
      at(t, s)->right = n->right;
      set_parent(t, n->right, s);
    }
    at(t, s)->left = n->left;
    set_parent(t, n->left, s);
    at(t, s)->parent_red = n->parent_red; /* the node's parent and colour */
    change_child(t, n_parent, node, s);
  }
  if (removed_black) erase_fixup(t, x, x_parent);
}

void sp__rb_replace(struct sp__rbtree *t, uint32_t from, uint32_t to) {
  struct sp__rb_links f = *at(t, from);
  *at(t, to) = f;
  change_child(t, sp__rb_parent(&f), from, to);
  if (f.left != NIL) set_parent(t, f.left, to);
  if (f.right != NIL) set_parent(t, f.right, to);
}
