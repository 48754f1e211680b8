/*
 * index.c - the open-addressing hash index under both KSM indexes.
 *
 * The kernel keeps its stable and unstable trees ordered by memcmp() of
 * page contents, so a search costs log2(n) page compares, each one a
 * page-table walk and a memcmp.  Our pages live in other processes, where
 * one extra page read costs microseconds, so the indexes are keyed by the
 * page hash instead and a lookup costs one or two slot compares; a full
 * byte compare still decides equality.  The outcome of a search (which
 * indexed page, if any, has the same content) is the same as the kernel's.
 *
 * Linear probing at most half full, with tombstones for deletions: the
 * unstable index is emptied every pass, which clears them, and the stable
 * index is rebuilt when they pile up.
 */
#include "index.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define EMPTY UINT64_MAX
#define TOMB_VALUE (UINT32_MAX - 1)
#define TOMB ((uint64_t)UINT32_MAX << 32 | TOMB_VALUE)
#define MIN_CAP 64

static inline uint32_t slot_value(uint64_t s) { return (uint32_t)s; }
static inline uint32_t slot_tag(uint64_t s) { return (uint32_t)(s >> 32); }

/* Spread the low bits (records keep the plain checksum there) before the
 * multiply-shift range reduction, which favours the high bits. */
static inline size_t start_pos(const struct sp_index *ix, uint32_t low) {
  uint32_t m = low * 0x9e3779b1u;
  m ^= m >> 15;
  return (size_t)(((uint64_t)m * ix->cap) >> 32);
}

void sp__index_init(struct sp_index *ix, sp_index_low_fn low_of, void *ctx) {
  memset(ix, 0, sizeof *ix);
  ix->low_of = low_of;
  ix->ctx = ctx;
}

void sp__index_free(struct sp_index *ix) {
  free(ix->slots);
  ix->slots = NULL;
  ix->cap = ix->used = ix->tombs = 0;
}

static int alloc_slots(struct sp_index *ix, size_t cap) {
  uint64_t *slots = malloc(cap * sizeof *slots);
  if (!slots) return -ENOMEM;
  memset(slots, 0xff, cap * sizeof *slots);
  free(ix->slots);
  ix->slots = slots;
  ix->cap = cap;
  ix->used = ix->tombs = 0;
  return 0;
}

int sp__index_reset(struct sp_index *ix, size_t expect) {
  size_t want = expect * 2 < MIN_CAP ? MIN_CAP : expect * 2;
  /* Shrink too, so a quiet index gives memory back, but not for small
   * swings that would only cost a reallocation every pass. */
  if (!ix->slots || ix->cap < want || ix->cap > want * 4) {
    int err = alloc_slots(ix, want);
    if (!err || !ix->slots) return err;
    /* Without the new table, empty the old one: its entries name owners
     * that may be gone by now (the unstable index's records). */
    memset(ix->slots, 0xff, ix->cap * sizeof *ix->slots);
    ix->used = ix->tombs = 0;
    return err;
  }
  memset(ix->slots, 0xff, ix->cap * sizeof *ix->slots);
  ix->used = ix->tombs = 0;
  return 0;
}

static void place(struct sp_index *ix, uint64_t slot_word, uint32_t low) {
  size_t pos = start_pos(ix, low);
  while (ix->slots[pos] != EMPTY && ix->slots[pos] != TOMB)
    pos = pos + 1 == ix->cap ? 0 : pos + 1;
  if (ix->slots[pos] == TOMB) ix->tombs--;
  ix->slots[pos] = slot_word;
  ix->used++;
}

/* Rebuilds into cap slots; the low bits come from the owners. */
static int rehash(struct sp_index *ix, size_t cap) {
  uint64_t *old = ix->slots;
  size_t old_cap = ix->cap;
  uint64_t *slots = malloc(cap * sizeof *slots);
  if (!slots) return -ENOMEM;
  memset(slots, 0xff, cap * sizeof *slots);
  ix->slots = slots;
  ix->cap = cap;
  ix->used = ix->tombs = 0;
  for (size_t i = 0; i < old_cap; i++) {
    uint64_t s = old[i];
    if (s == EMPTY || s == TOMB) continue;
    place(ix, s, ix->low_of(ix->ctx, slot_value(s)));
  }
  free(old);
  return 0;
}

int sp__index_insert(struct sp_index *ix, uint64_t hash, uint32_t value) {
  if (!ix->slots || (ix->used + ix->tombs + 1) * 2 > ix->cap) {
    /* Grow to 40% load; when tombstones caused the crowding, rebuilding
     * at the same size is enough. */
    size_t need = (ix->used + 1) * 5 / 2;
    if (need < MIN_CAP) need = MIN_CAP;
    size_t cap = ix->cap > need ? ix->cap : need;
    int err = ix->slots ? rehash(ix, cap) : alloc_slots(ix, cap);
    if (err) return err;
  }
  place(ix, (uint64_t)(uint32_t)(hash >> 32) << 32 | value, (uint32_t)hash);
  return 0;
}

bool sp__index_remove(struct sp_index *ix, uint32_t low, uint32_t value) {
  if (!ix->slots) return false;
  size_t pos = start_pos(ix, low);
  for (size_t left = ix->cap; left; left--) {
    uint64_t s = ix->slots[pos];
    if (s == EMPTY) return false;
    if (s != TOMB && slot_value(s) == value) {
      ix->slots[pos] = TOMB;
      ix->used--;
      ix->tombs++;
      return true;
    }
    pos = pos + 1 == ix->cap ? 0 : pos + 1;
  }
  return false;
}

bool sp__index_replace(struct sp_index *ix, uint32_t low, uint32_t old_value,
                      uint32_t new_value) {
  if (!ix->slots) return false;
  size_t pos = start_pos(ix, low);
  for (size_t left = ix->cap; left; left--) {
    uint64_t s = ix->slots[pos];
    if (s == EMPTY) return false;
    if (s != TOMB && slot_value(s) == old_value) {
      ix->slots[pos] = (s & ~(uint64_t)UINT32_MAX) | new_value;
      return true;
    }
    pos = pos + 1 == ix->cap ? 0 : pos + 1;
  }
  return false;
}

void sp__index_probe_init(const struct sp_index *ix, uint64_t hash,
                         struct sp_index_probe *p) {
  p->tag = (uint32_t)(hash >> 32);
  p->left = ix->slots ? ix->cap : 0;
  p->pos = ix->slots ? start_pos(ix, (uint32_t)hash) : 0;
}

uint32_t sp__index_probe_next(const struct sp_index *ix,
                             struct sp_index_probe *p, uint64_t *examined) {
  while (p->left) {
    uint64_t s = ix->slots[p->pos];
    if (s == EMPTY) {
      p->left = 0;
      break;
    }
    p->left--;
    p->pos = p->pos + 1 == ix->cap ? 0 : p->pos + 1;
    if (s == TOMB) continue;
    (*examined)++;
    if (slot_tag(s) == p->tag) return slot_value(s);
  }
  return UINT32_MAX;
}

size_t sp__index_bytes(const struct sp_index *ix) {
  return ix->cap * sizeof *ix->slots;
}
