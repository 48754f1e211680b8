/*
 * rmap.c - tracking records (the kernel's rmap_items), grouped in chunks of
 * 64 pages that belong to a range of a source.
 *
 * The kernel keeps a sorted list of rmap_items per mm and frees the items of
 * pages that vanished as its cursor passes them.  We keep a chunk table per
 * range instead: lookups by address are O(1), a ref names a record in 32
 * bits, and the page after a record's page (what lookahead needs) is the
 * next slot.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "unstable.h"

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
    e->dir_bytes += SP_DIR_CHUNKS * sizeof **slot;
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

static uint32_t chunk_alloc(struct sp_engine *e, uint32_t range,
                            uint32_t first) {
  struct sp_chunk *c = calloc(1, sizeof *c);
  if (!c) return SP_NIL;
  e->live_chunks++;
  c->range = range;
  c->first = first;
  uint32_t id;
  if (e->nfree_chunks) {
    id = e->free_chunks[--e->nfree_chunks];
  } else {
    /* Refs are chunk id * 64 + slot in 32 bits, and SP_NIL is reserved. */
    if (e->nchunks >= (UINT32_MAX >> SP_CHUNK_SHIFT) ||
        grow((void **)&e->chunks, &e->chunks_cap, e->nchunks + 1,
             sizeof *e->chunks)) {
      free(c);
      return SP_NIL;
    }
    id = (uint32_t)e->nchunks++;
  }
  e->chunks[id] = c;
  return id;
}

static void chunk_free(struct sp_engine *e, uint32_t id) {
  free(e->chunks[id]);
  e->live_chunks--;
  e->chunks[id] = NULL;
  /* free_chunks can only grow to the number of chunks, so this cannot
   * fail for lack of an earlier allocation... but realloc may still fail;
   * then the id is simply not reused. */
  if (!grow((void **)&e->free_chunks, &e->free_chunks_cap,
            e->nfree_chunks + 1, sizeof *e->free_chunks))
    e->free_chunks[e->nfree_chunks++] = id;
}

uint32_t sp_rmap_lookup(const struct sp_engine *e, uint32_t range_id,
                        uint64_t page) {
  const struct sp_range *r = &e->ranges[range_id];
  if (page >= r->npages) return SP_NIL;
  uint32_t cid = chunk_id(r, (size_t)(page >> SP_CHUNK_SHIFT));
  if (cid == SP_NIL) return SP_NIL;
  return cid << SP_CHUNK_SHIFT | (uint32_t)(page & (SP_CHUNK_PAGES - 1));
}

uint32_t sp_rmap_get_or_create(struct sp_engine *e, uint32_t range_id,
                               uint64_t page) {
  size_t ci = (size_t)(page >> SP_CHUNK_SHIFT);
  uint32_t cid = chunk_id(&e->ranges[range_id], ci);
  if (cid == SP_NIL) {
    cid = chunk_alloc(e, range_id, (uint32_t)(ci << SP_CHUNK_SHIFT));
    if (cid == SP_NIL) return SP_NIL;
    if (set_chunk_id(e, &e->ranges[range_id], ci, cid)) {
      chunk_free(e, cid);
      return SP_NIL;
    }
  }
  return cid << SP_CHUNK_SHIFT | (uint32_t)(page & (SP_CHUNK_PAGES - 1));
}

void sp_rmap_locate(const struct sp_engine *e, uint32_t ref,
                    uint32_t *range_id, uint64_t *page) {
  const struct sp_chunk *c = e->chunks[ref >> SP_CHUNK_SHIFT];
  *range_id = c->range;
  *page = (uint64_t)c->first + (ref & (SP_CHUNK_PAGES - 1));
}

uint32_t sp_rmap_next_page(const struct sp_engine *e, uint32_t ref) {
  uint32_t range;
  uint64_t page;
  sp_rmap_locate(e, ref, &range, &page);
  return sp_rmap_lookup(e, range, page + 1);
}

void sp_rmap_released(struct sp_engine *e, uint32_t ref) {
  uint32_t cid = ref >> SP_CHUNK_SHIFT;
  struct sp_chunk *c = e->chunks[cid];
  e->tracked--;
  if (--c->live) return;
  set_chunk_id(e, &e->ranges[c->range], c->first >> SP_CHUNK_SHIFT, SP_NIL);
  chunk_free(e, cid);
}

void sp_rmap_forget(struct sp_engine *e, uint32_t ref) {
  struct sp_rec *rec = sp_rec_get(e, ref);
  struct sp_source *src = sp_rec_source(e, ref);
  unsigned state = sp_rec_state(rec);
  if (state == REC_NONE) return;
  switch (state) {
  case REC_STABLE:
    sp_stable_remove(e, ref);
    break;
  case REC_UNSTABLE:
    sp_unstable_remove(e, ref);
    break;
  case REC_ZERO:
    e->ksm_zero_pages--;
    src->zero_pages--;
    break;
  default:
    break;
  }
  if (rec->state & REC_F_ITEM) {
    e->rmap_items--;
    src->rmap_items--;
  }
  if (e->la.valid && e->la.partner == ref) e->la.valid = false;
  memset(rec, 0, sizeof *rec);
  sp_rmap_released(e, ref);
}

int sp_range_create(struct sp_engine *e, uint32_t source_slot,
                    const struct sp_range_spec *spec, uint32_t *id_out) {
  if (spec->npages > SP_RANGE_MAX_PAGES) return -E2BIG;
  uint32_t id = SP_NIL;
  for (size_t i = 0; i < e->nranges; i++)
    if (!e->ranges[i].in_use) {
      id = (uint32_t)i;
      break;
    }
  if (id == SP_NIL) {
    if (grow((void **)&e->ranges, &e->ranges_cap, e->nranges + 1,
             sizeof *e->ranges))
      return -ENOMEM;
    id = (uint32_t)e->nranges++;
  }
  struct sp_range *r = &e->ranges[id];
  size_t nd = dir_count(spec->npages);
  uint32_t **dir = calloc(nd ? nd : 1, sizeof *dir);
  if (!dir) return -ENOMEM;
  e->dir_bytes += nd * sizeof *dir;
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

void sp_range_forget_span(struct sp_engine *e, uint32_t range_id,
                          uint64_t from, uint64_t to, bool lost) {
  struct sp_range *r = &e->ranges[range_id];
  if (to > r->npages) to = r->npages;
  if (from >= to) return;
  size_t ci = (size_t)(from >> SP_CHUNK_SHIFT), last = (size_t)((to - 1) >> SP_CHUNK_SHIFT);
  while (ci <= last) {
    if (!r->dir[ci >> SP_DIR_SHIFT]) { /* a whole empty block */
      ci = ((ci >> SP_DIR_SHIFT) + 1) << SP_DIR_SHIFT;
      continue;
    }
    uint32_t cid = chunk_id(r, ci);
    uint64_t base = (uint64_t)ci << SP_CHUNK_SHIFT;
    for (uint32_t s = 0; cid != SP_NIL && s < SP_CHUNK_PAGES; s++) {
      if (base + s < from || base + s >= to) continue;
      uint32_t ref = cid << SP_CHUNK_SHIFT | s;
      struct sp_rec *rec = sp_rec_get(e, ref);
      if (sp_rec_state(rec) == REC_NONE) continue;
      if (lost && (rec->state & REC_F_ITEM)) {
        e->pages_lost++;
        e->sources[r->source]->pages_lost++;
      }
      sp_rmap_forget(e, ref);
      cid = chunk_id(r, ci); /* the last forget may free the chunk */
    }
    ci++;
  }
}

int sp_range_resize(struct sp_engine *e, uint32_t range_id, uint64_t npages) {
  if (npages > SP_RANGE_MAX_PAGES) return -E2BIG;
  struct sp_range *r = &e->ranges[range_id];
  if (npages < r->npages) sp_range_forget_span(e, range_id, npages, r->npages, true);
  size_t oldn = r->ndir, n = dir_count(npages);
  if (n > oldn) {
    uint32_t **dir = realloc(r->dir, n * sizeof *dir);
    if (!dir) return -ENOMEM;
    memset(dir + oldn, 0, (n - oldn) * sizeof *dir);
    r->dir = dir;
  } else {
    for (size_t i = n; i < oldn; i++) {
      if (r->dir[i]) e->dir_bytes -= SP_DIR_CHUNKS * sizeof(uint32_t);
      free(r->dir[i]);
    }
  }
  e->dir_bytes += n * sizeof *r->dir;
  e->dir_bytes -= oldn * sizeof *r->dir;
  r->ndir = n;
  r->npages = npages;
  return 0;
}

void sp_range_destroy(struct sp_engine *e, uint32_t range_id) {
  sp_range_forget_span(e, range_id, 0, e->ranges[range_id].npages, true);
  struct sp_range *r = &e->ranges[range_id];
  for (size_t i = 0; i < r->ndir; i++) {
    if (r->dir[i]) e->dir_bytes -= SP_DIR_CHUNKS * sizeof(uint32_t);
    free(r->dir[i]);
  }
  e->dir_bytes -= r->ndir * sizeof *r->dir;
  free(r->dir);
  r->dir = NULL;
  r->ndir = 0;
  r->in_use = false;
}

size_t sp_rmap_bytes(const struct sp_engine *e) {
  return (size_t)(e->live_chunks * sizeof(struct sp_chunk) + e->dir_bytes);
}
