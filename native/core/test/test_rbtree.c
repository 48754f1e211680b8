/* test_rbtree.c - the engine's red-black tree (rbtree.c) against a sorted
 * array, with the red-black rules checked after every change.  That its
 * shapes are the kernel's own is checked by test:kernel, against the
 * kernel tree's tools/lib/rbtree.c (native/core/test/rbtree_vs_linux.c). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "rbtree.h"

enum { NODES = 3000, STEPS = 60000 };

struct node {
  struct sp__rb_links rb;
  uint32_t key;
  bool in;
};

static struct node *nodes;
static struct sp__rbtree tree;

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng % n);
}

static void insert(uint32_t id) {
  uint32_t cur = tree.root, parent = SP__RB_NIL;
  bool left = false;
  while (cur != SP__RB_NIL) {
    parent = cur;
    left = nodes[id].key < nodes[cur].key;
    cur = left ? nodes[cur].rb.left : nodes[cur].rb.right;
  }
  sp__rb_link(&tree, id, parent, left);
}

/* Black height of the subtree, or -1 when a rule is broken; appends the
 * keys in order. */
static int check_subtree(uint32_t n, uint32_t parent, uint32_t *keys, size_t *nkeys) {
  if (n == SP__RB_NIL) return 1;
  const struct sp__rb_links *l = &nodes[n].rb;
  if (sp__rb_parent(l) != parent) return -1;
  if (sp__rb_red(l) && ((l->left != SP__RB_NIL && sp__rb_red(&nodes[l->left].rb)) ||
                        (l->right != SP__RB_NIL && sp__rb_red(&nodes[l->right].rb))))
    return -1;
  int hl = check_subtree(l->left, n, keys, nkeys);
  keys[(*nkeys)++] = nodes[n].key;
  int hr = check_subtree(l->right, n, keys, nkeys);
  if (hl < 0 || hr < 0 || hl != hr) return -1;
  return hl + !sp__rb_red(l);
}

static int by_value(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

/* The tree holds exactly the keys of the nodes marked in, in order, and
 * keeps every red-black rule. */
static void check_tree(void) {
  static uint32_t got[NODES + 1], want[NODES + 1];
  size_t ngot = 0, nwant = 0;
  for (uint32_t i = 0; i <= NODES; i++)
    if (nodes[i].in) want[nwant++] = nodes[i].key;
  qsort(want, nwant, sizeof *want, by_value);
  CHECK(tree.root == SP__RB_NIL || !sp__rb_red(&nodes[tree.root].rb));
  CHECK(check_subtree(tree.root, SP__RB_NIL, got, &ngot) > 0);
  CHECK_EQ(ngot, nwant);
  CHECK(memcmp(got, want, nwant * sizeof *got) == 0);
}

static void random_inserts_and_erasures(void) {
  nodes = calloc(NODES + 1, sizeof *nodes);
  void *base = nodes;
  sp__rb_init(&tree, (void *const *)&base, sizeof *nodes, 0);
  for (uint32_t i = 0; i < NODES; i++) nodes[i].key = rnd(NODES * 4); /* repeats too */
  for (int step = 0; step < STEPS; step++) {
    uint32_t id = rnd(NODES);
    if (nodes[id].in) sp__rb_erase(&tree, id);
    else insert(id);
    nodes[id].in = !nodes[id].in;
    if (step % 101 == 0) check_tree();
  }
  check_tree();
  /* A node put in another's place takes its shape and colour. */
  uint32_t from = tree.root, to = NODES;
  nodes[to].key = nodes[from].key;
  struct sp__rb_links before = nodes[from].rb;
  sp__rb_replace(&tree, from, to);
  nodes[from].in = false;
  nodes[to].in = true;
  CHECK_EQ(tree.root, to);
  CHECK_EQ(nodes[to].rb.left, before.left);
  CHECK_EQ(nodes[to].rb.right, before.right);
  CHECK_EQ(sp__rb_red(&nodes[to].rb), sp__rb_red(&before));
  check_tree();
  /* Everything out again, in a random order. */
  for (uint32_t left = 1; left;) {
    left = 0;
    for (uint32_t i = 0; i <= NODES; i++)
      if (nodes[i].in && rnd(2)) {
        sp__rb_erase(&tree, i);
        nodes[i].in = false;
      } else if (nodes[i].in) {
        left++;
      }
    check_tree();
  }
  CHECK_EQ(tree.root, SP__RB_NIL);
  free(nodes);
}

int main(void) {
  sp_check_run("random inserts and erasures keep order and the red-black rules",
               random_inserts_and_erasures);
  return sp_check_done();
}
