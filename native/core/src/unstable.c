/*
 * unstable.c - the unstable index: pages not merged yet whose checksum was
 * stable since their previous visit.  Their contents may change at any
 * time, so the index is emptied at the start of every full pass and rebuilt
 * (the kernel resets its unstable tree roots the same way).
 */
#include "unstable.h"

#include <stdlib.h>

static uint32_t record_low(void *ctx, uint32_t ref) {
  return sp_rec_get((struct sp_engine *)ctx, ref)->csum;
}

void sp_unstable_init(struct sp_engine *e) {
  sp_index_init(&e->unstable, record_low, e);
}

int sp_unstable_new_pass(struct sp_engine *e) {
  /* Size for every record that could be indexed this pass. */
  return sp_index_reset(&e->unstable, (size_t)(e->rmap_items / 2 + 1));
}

bool sp_unstable_current(const struct sp_engine *e, const struct sp_rec *rec) {
  return rec->seq == (uint8_t)e->seqnr;
}

void sp_unstable_remove(struct sp_engine *e, uint32_t ref) {
  struct sp_rec *rec = sp_rec_get(e, ref);
  /* Only an entry of this pass is still in the index; older ones went
   * with the reset (the kernel's "age" test in remove_rmap_item_from_tree). */
  if (sp_unstable_current(e, rec)) sp_index_remove(&e->unstable, rec->csum, ref);
  sp_rec_set_state(rec, REC_VOLATILE);
  e->pages_unshared--;
}

uint32_t sp_unstable_search_insert(struct sp_engine *e, uint32_t ref,
                                   const void *page, uint64_t hash,
                                   const void **partner_page) {
  struct sp_index_probe probe;
  sp_index_probe_init(&e->unstable, hash, &probe);
  for (;;) {
    uint32_t other = sp_index_probe_next(&e->unstable, &probe, &e->page_compares);
    if (other == SP_NIL) break;
    if (sp_rec_get(e, other)->csum != (uint32_t)hash) continue;
    /* Like get_mergeable_page(): compare with the page as it is now. */
    const void *contents = sp_read_ref(e, other, e->page_buf);
    if (contents && sp_pages_equal(e, page, contents)) {
      *partner_page = contents;
      return other;
    }
  }
  struct sp_rec *rec = sp_rec_get(e, ref);
  if (sp_index_insert(&e->unstable, hash, ref)) return SP_NIL; /* ENOMEM: stays volatile */
  sp_rec_set_state(rec, REC_UNSTABLE);
  rec->seq = (uint8_t)e->seqnr;
  e->pages_unshared++;
  return SP_NIL;
}
