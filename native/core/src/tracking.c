/*
 * tracking.c - tracking records (the kernel's rmap_items), grouped in
 * chunks of 64 pages that belong to a range of a source.
 *
 * The kernel keeps a sorted list of rmap_items per mm and frees the items of
 * pages that vanished as its cursor passes them.  We keep a chunk table per
 * range instead: lookups by address are O(1), a ref names a record in 32
 * bits, and the page after a record's page (what lookahead needs) is the
 * next slot.
 */
#include "tracking.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static inline size_t chunk_count(uint64_t npages) {
  return (size_t)((npages + SP_CHUNK_PAGES - 1) >> SP_CHUNK_SHIFT);
}
static inline size_t dir_count(uint64_t npages) {
  return (chunk_count(npages) + SP_DIR_CHUNKS - 1) >> SP_DIR_SHIFT;
}

static inline uint32_t chunk_id(const struct sp_range *r, size_t ci) {
  const uint32_t *block = r->dir[ci >> SP_DIR_SHIFT];
  return block ? block[ci & (SP_DIR_CHUNKS - 1)] : SP_NIL;
}

/* Sets a chunk id, allocating its directory block; -ENOMEM. */
static int set_chunk_id(struct sp_engine *e, struct sp_range *r, size_t ci, uint32_t id) {
  uint32_t **slot = &r->dir[ci >> SP_DIR_SHIFT];
  if (!*slot) {
    if (id == SP_NIL) return 0;
    *slot = malloc(SP_DIR_CHUNKS * sizeof **slot);
    if (!*slot) return -ENOMEM;
    memset(*slot, 0xff, SP_DIR_CHUNKS * sizeof **slot);
    e->tr.dir_bytes += SP_DIR_CHUNKS * sizeof **slot;
  }
  (*slot)[ci & (SP_DIR_CHUNKS - 1)] = id;
  return 0;
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return 0;
  size_t ncap = *cap ? *cap * 2 : 16;
  while (ncap < need) ncap *= 2;
  void *p = realloc(*arr, ncap * elem);
  if (!p) return -ENOMEM;
  *arr = p;
  *cap = ncap;
  return 0;
}

static uint32_t chunk_alloc(struct sp_engine *e, uint32_t range, uint32_t first) {
  struct sp_tracking *t = &e->tr;
  struct sp_chunk *c = calloc(1, sizeof *c);
  if (!c) return SP_NIL;
  t->live_chunks++;
  c->range = range;
  c->first = first;
  uint32_t id;
  if (t->nfree_chunks) {
    id = t->free_chunks[--t->nfree_chunks];
  } else {
    /* Refs are chunk id * 64 + slot in 32 bits, and SP_NIL is reserved. */
    if (t->nchunks >= (UINT32_MAX >> SP_CHUNK_SHIFT) ||
        grow((void **)&t->chunks, &t->chunks_cap, t->nchunks + 1, sizeof *t->chunks)) {
      free(c);
      t->live_chunks--;
      return SP_NIL;
    }
    id = (uint32_t)t->nchunks++;
  }
  t->chunks[id] = c;
  return id;
}

static void chunk_free(struct sp_engine *e, uint32_t id) {
  struct sp_tracking *t = &e->tr;
  free(t->chunks[id]);
  t->live_chunks--;
  t->chunks[id] = NULL;
  /* free_chunks can only grow to the number of chunks, so this cannot
   * fail for lack of an earlier allocation... but realloc may still fail;
   * then the id is simply not reused. */
  if (!grow((void **)&t->free_chunks, &t->free_chunks_cap, t->nfree_chunks + 1,
            sizeof *t->free_chunks))
    t->free_chunks[t->nfree_chunks++] = id;
}

uint32_t sp__track_lookup(const struct sp_engine *e, uint32_t range_id, uint64_t page) {
  const struct sp_range *r = &e->tr.ranges[range_id];
  if (page >= r->npages) return SP_NIL;
  uint32_t cid = chunk_id(r, (size_t)(page >> SP_CHUNK_SHIFT));
  if (cid == SP_NIL) return SP_NIL;
  return cid << SP_CHUNK_SHIFT | (uint32_t)(page & (SP_CHUNK_PAGES - 1));
}

uint32_t sp__track_get_or_create(struct sp_engine *e, uint32_t range_id, uint64_t page) {
  size_t ci = (size_t)(page >> SP_CHUNK_SHIFT);
  uint32_t cid = chunk_id(&e->tr.ranges[range_id], ci);
  if (cid == SP_NIL) {
    cid = chunk_alloc(e, range_id, (uint32_t)(ci << SP_CHUNK_SHIFT));
    if (cid == SP_NIL) return SP_NIL;
    if (set_chunk_id(e, &e->tr.ranges[range_id], ci, cid)) {
      chunk_free(e, cid);
      return SP_NIL;
    }
  }
  return cid << SP_CHUNK_SHIFT | (uint32_t)(page & (SP_CHUNK_PAGES - 1));
}

void sp__track_start(struct sp_engine *e, uint32_t ref) {
  struct sp_rec *rec = sp__rec_get(e, ref);
  e->tr.chunks[ref >> SP_CHUNK_SHIFT]->live++;
  e->tr.tracked++;
  *rec = (struct sp_rec){.state = REC_VOLATILE | REC_F_ITEM, .node = SP_NIL, .next = SP_NIL};
  e->tr.rmap_items++;
  sp__rec_source(e, ref)->rmap_items++;
}

void sp__track_item_drop(struct sp_engine *e, uint32_t ref) {
  struct sp_rec *rec = sp__rec_get(e, ref);
  if (!(rec->state & REC_F_ITEM)) return;
  rec->state &= (uint8_t)~REC_F_ITEM;
  e->tr.rmap_items--;
  sp__rec_source(e, ref)->rmap_items--;
}

void sp__track_item_add(struct sp_engine *e, uint32_t ref) {
  struct sp_rec *rec = sp__rec_get(e, ref);
  if (rec->state & REC_F_ITEM) return;
  rec->state |= REC_F_ITEM;
  e->tr.rmap_items++;
  sp__rec_source(e, ref)->rmap_items++;
}

void sp__track_release(struct sp_engine *e, uint32_t ref) {
  sp__track_item_drop(e, ref);
  memset(sp__rec_get(e, ref), 0, sizeof(struct sp_rec));
  uint32_t cid = ref >> SP_CHUNK_SHIFT;
  struct sp_chunk *c = e->tr.chunks[cid];
  e->tr.tracked--;
  if (--c->live) return;
  set_chunk_id(e, &e->tr.ranges[c->range], c->first >> SP_CHUNK_SHIFT, SP_NIL);
  chunk_free(e, cid);
}

void sp__track_move(struct sp_engine *e, uint32_t from, uint32_t to) {
  *sp__rec_get(e, to) = *sp__rec_get(e, from);
  e->tr.chunks[to >> SP_CHUNK_SHIFT]->live++;
  /* Same source, same rmap_item: only the slot changes, so rmap_items and
   * tracked stay; the old slot is released as sp__track_release() would
   * without counting an item dropped. */
  memset(sp__rec_get(e, from), 0, sizeof(struct sp_rec));
  uint32_t cid = from >> SP_CHUNK_SHIFT;
  struct sp_chunk *c = e->tr.chunks[cid];
  if (--c->live) return;
  set_chunk_id(e, &e->tr.ranges[c->range], c->first >> SP_CHUNK_SHIFT, SP_NIL);
  chunk_free(e, cid);
}

void sp__track_locate(const struct sp_engine *e, uint32_t ref, uint32_t *range_id,
                      uint64_t *page) {
  const struct sp_chunk *c = e->tr.chunks[ref >> SP_CHUNK_SHIFT];
  *range_id = c->range;
  *page = (uint64_t)c->first + (ref & (SP_CHUNK_PAGES - 1));
}

uint64_t sp__track_address(const struct sp_engine *e, uint32_t ref) {
  uint32_t range;
  uint64_t page;
  sp__track_locate(e, ref, &range, &page);
  return e->tr.ranges[range].start + page * SP_PAGE_SIZE;
}

uint32_t sp__track_next_page(const struct sp_engine *e, uint32_t ref) {
  uint32_t range;
  uint64_t page;
  sp__track_locate(e, ref, &range, &page);
  return sp__track_lookup(e, range, page + 1);
}

uint32_t sp__track_next_live(const struct sp_engine *e, uint32_t range_id, uint64_t *from,
                             uint64_t to) {
  const struct sp_range *r = &e->tr.ranges[range_id];
  if (to > r->npages) to = r->npages;
  uint64_t p = *from;
  while (p < to) {
    size_t ci = (size_t)(p >> SP_CHUNK_SHIFT);
    if (!r->dir[ci >> SP_DIR_SHIFT]) { /* a whole empty block */
      p = (uint64_t)(((ci >> SP_DIR_SHIFT) + 1) << SP_DIR_SHIFT) << SP_CHUNK_SHIFT;
      continue;
    }
    uint32_t cid = chunk_id(r, ci);
    uint64_t chunk_end = ((uint64_t)ci + 1) << SP_CHUNK_SHIFT;
    if (cid == SP_NIL) {
      p = chunk_end;
      continue;
    }
    for (; p < to && p < chunk_end; p++) {
      uint32_t ref = cid << SP_CHUNK_SHIFT | (uint32_t)(p & (SP_CHUNK_PAGES - 1));
      if (sp__rec_state(sp__rec_get(e, ref)) != REC_NONE) {
        *from = p;
        return ref;
      }
    }
  }
  *from = to;
  return SP_NIL;
}

int sp__range_create(struct sp_engine *e, uint32_t source_slot,
                     const struct sp_range_spec *spec, uint32_t *id_out) {
  struct sp_tracking *t = &e->tr;
  if (spec->npages > SP_RANGE_MAX_PAGES) return -E2BIG;
  uint32_t id = SP_NIL;
  for (size_t i = 0; i < t->nranges; i++)
    if (!t->ranges[i].in_use) {
      id = (uint32_t)i;
      break;
    }
  if (id == SP_NIL) {
    if (grow((void **)&t->ranges, &t->ranges_cap, t->nranges + 1, sizeof *t->ranges))
      return -ENOMEM;
    id = (uint32_t)t->nranges++;
  }
  struct sp_range *r = &t->ranges[id];
  size_t nd = dir_count(spec->npages);
  uint32_t **dir = calloc(nd ? nd : 1, sizeof *dir);
  if (!dir) return -ENOMEM;
  t->dir_bytes += nd * sizeof *dir;
  *r = (struct sp_range){.source = source_slot,
                         .flags = spec->flags,
                         .start = spec->start,
                         .npages = spec->npages,
                         .file_offset = spec->file_offset,
                         .dir = dir,
                         .ndir = nd,
                         .in_use = true};
  *id_out = id;
  return 0;
}

int sp__range_resize(struct sp_engine *e, uint32_t range_id, uint64_t npages) {
  if (npages > SP_RANGE_MAX_PAGES) return -E2BIG;
  struct sp_range *r = &e->tr.ranges[range_id];
  size_t oldn = r->ndir, n = dir_count(npages);
  if (n > oldn) {
    uint32_t **dir = realloc(r->dir, n * sizeof *dir);
    if (!dir) return -ENOMEM;
    memset(dir + oldn, 0, (n - oldn) * sizeof *dir);
    r->dir = dir;
  } else {
    for (size_t i = n; i < oldn; i++) {
      if (r->dir[i]) e->tr.dir_bytes -= SP_DIR_CHUNKS * sizeof(uint32_t);
      free(r->dir[i]);
    }
  }
  e->tr.dir_bytes += n * sizeof *r->dir;
  e->tr.dir_bytes -= oldn * sizeof *r->dir;
  r->ndir = n;
  r->npages = npages;
  return 0;
}

void sp__range_destroy(struct sp_engine *e, uint32_t range_id) {
  struct sp_range *r = &e->tr.ranges[range_id];
  for (size_t i = 0; i < r->ndir; i++) {
    if (r->dir[i]) e->tr.dir_bytes -= SP_DIR_CHUNKS * sizeof(uint32_t);
    free(r->dir[i]);
  }
  e->tr.dir_bytes -= r->ndir * sizeof *r->dir;
  free(r->dir);
  r->dir = NULL;
  r->ndir = 0;
  r->in_use = false;
}

size_t sp__tracking_bytes(const struct sp_engine *e) {
  return (size_t)(e->tr.live_chunks * sizeof(struct sp_chunk) + e->tr.dir_bytes);
}

void sp__tracking_free(struct sp_engine *e) {
  struct sp_tracking *t = &e->tr;
  for (size_t i = 0; i < t->nranges; i++) {
    struct sp_range *r = &t->ranges[i];
    if (!r->in_use) continue;
    for (size_t d = 0; d < r->ndir; d++) free(r->dir[d]);
    free(r->dir);
  }
  for (size_t i = 0; i < t->nchunks; i++) free(t->chunks[i]);
  free(t->chunks);
  free(t->free_chunks);
  free(t->ranges);
  memset(t, 0, sizeof *t);
}
