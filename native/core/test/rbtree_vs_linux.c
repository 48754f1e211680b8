/* rbtree_vs_linux.c - the engine's red-black tree (native/core/src/rbtree.c)
 * against the kernel's own (tools/lib/rbtree.c of the 6.12 tree, the
 * userspace build of lib/rbtree.c), built by test:kernel: the same random
 * inserts and erasures on both, and after each, the two trees must have
 * the same shape and the same colours.  The engine models which stable
 * tree nodes a search passes (stable.c); that holds only if its tree is
 * the kernel's, node for node.  Exit 0 and one line when they agree. */
#include <linux/rbtree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rbtree.h"

enum { NODES = 4000, STEPS = 200000, SEEDS = 5 };

struct kernel_node {
  struct rb_node rb;
  int key;
};
struct engine_node {
  struct sp__rb_links rb;
  int key;
};

static struct kernel_node kn[NODES];
static struct engine_node en[NODES];
static bool in_tree[NODES];
static struct rb_root kernel_root;
static struct sp__rbtree engine_tree;

static void kernel_insert(int i) {
  struct rb_node **link = &kernel_root.rb_node, *parent = NULL;
  while (*link) {
    parent = *link;
    link = kn[i].key < rb_entry(parent, struct kernel_node, rb)->key ? &parent->rb_left : &parent->rb_right;
  }
  rb_link_node(&kn[i].rb, parent, link);
  rb_insert_color(&kn[i].rb, &kernel_root);
}

static void engine_insert(int i) {
  uint32_t cur = engine_tree.root, parent = SP__RB_NIL;
  bool left = false;
  while (cur != SP__RB_NIL) {
    parent = cur;
    left = en[i].key < en[cur].key;
    cur = left ? en[cur].rb.left : en[cur].rb.right;
  }
  sp__rb_link(&engine_tree, (uint32_t)i, parent, left);
}

/* Pre-order, "(key colour left right)", "." for an empty child. */
static size_t kernel_shape(const struct rb_node *n, char *out) {
  if (!n) return (size_t)sprintf(out, ".");
  size_t k = (size_t)sprintf(out, "(%d%c", rb_entry(n, struct kernel_node, rb)->key,
                             (n->__rb_parent_color & 1) ? 'b' : 'r');
  k += kernel_shape(n->rb_left, out + k);
  k += kernel_shape(n->rb_right, out + k);
  return k + (size_t)sprintf(out + k, ")");
}

static size_t engine_shape(uint32_t n, char *out) {
  if (n == SP__RB_NIL) return (size_t)sprintf(out, ".");
  size_t k = (size_t)sprintf(out, "(%d%c", en[n].key, sp__rb_red(&en[n].rb) ? 'r' : 'b');
  k += engine_shape(en[n].rb.left, out + k);
  k += engine_shape(en[n].rb.right, out + k);
  return k + (size_t)sprintf(out + k, ")");
}

static char kernel_text[1 << 20], engine_text[1 << 20];

int main(void) {
  long compared = 0;
  for (unsigned seed = 1; seed <= SEEDS; seed++) {
    srand(seed);
    kernel_root = RB_ROOT;
    void *base = en;
    sp__rb_init(&engine_tree, (void *const *)&base, sizeof *en, 0);
    memset(in_tree, 0, sizeof in_tree);
    for (int i = 0; i < NODES; i++) kn[i].key = en[i].key = rand() % (NODES * 25);
    for (int step = 0; step < STEPS; step++) {
      int i = rand() % NODES;
      if (in_tree[i]) {
        rb_erase(&kn[i].rb, &kernel_root);
        sp__rb_erase(&engine_tree, (uint32_t)i);
      } else {
        kernel_insert(i);
        engine_insert(i);
      }
      in_tree[i] = !in_tree[i];
      if (step < 2000 || step % 97 == 0 || step == STEPS - 1) {
        kernel_shape(kernel_root.rb_node, kernel_text);
        engine_shape(engine_tree.root, engine_text);
        if (strcmp(kernel_text, engine_text)) {
          printf("seed %u step %d: the trees differ\n", seed, step);
          return 1;
        }
        compared++;
      }
    }
  }
  printf("same shape and colours at all %ld comparisons (%d seeds x %d random inserts and erasures over %d keys)\n",
         compared, SEEDS, STEPS, NODES);
  return 0;
}
