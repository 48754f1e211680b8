/*
 * unstable.c - the unstable index: pages not merged yet whose checksum was
 * stable since their previous visit.  Their contents may change at any
 * time, so the index is emptied at the start of every full pass and rebuilt
 * (the kernel resets its unstable tree roots the same way).
 */
#include "unstable.h"

#include <stdlib.h>

#include "access.h"

static uint32_t record_low(void *ctx, uint32_t ref) {
  return sp__rec_get((struct sp_engine *)ctx, ref)->csum;
}

void sp__unstable_init(struct sp_engine *e) {
  sp__index_init(&e->unstable.index, record_low, e);
}

void sp__unstable_free(struct sp_engine *e) { sp__index_free(&e->unstable.index); }

int sp__unstable_new_pass(struct sp_engine *e) {
  /* Size for every record that could be indexed this pass. */
  return sp__index_reset(&e->unstable.index, (size_t)(e->tr.rmap_items / 2 + 1));
}

void sp__unstable_clear(struct sp_engine *e) { sp__index_reset(&e->unstable.index, 0); }

bool sp__unstable_current(const struct sp_engine *e, const struct sp_rec *rec) {
  return rec->seq == (uint8_t)e->scan.seqnr;
}

void sp__unstable_remove(struct sp_engine *e, uint32_t ref) {
  struct sp_rec *rec = sp__rec_get(e, ref);
  /* Only an entry of this pass is still in the index; older ones went
   * with the reset (the kernel's "age" test in remove_rmap_item_from_tree). */
  if (sp__unstable_current(e, rec)) sp__index_remove(&e->unstable.index, rec->csum, ref);
  sp__rec_set_state(rec, REC_VOLATILE);
  e->unstable.pages_unshared--;
}

void sp__unstable_rekey(struct sp_engine *e, uint32_t from, uint32_t to) {
  const struct sp_rec *rec = sp__rec_get(e, from);
  if (sp__unstable_current(e, rec)) sp__index_replace(&e->unstable.index, rec->csum, from, to);
}

uint32_t sp__unstable_search_insert(struct sp_engine *e, uint32_t ref, const void *page,
                                    uint64_t hash, const void **partner_page) {
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
  return sp__index_bytes(&e->unstable.index);
}
