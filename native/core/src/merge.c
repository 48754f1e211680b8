/*
 * merge.c - the per-page decision of cmp_and_merge_page() (mm/ksm.c,
 * 6.12), with lookahead in front of the index searches, zero pages and
 * smart scan.
 */
#include "merge.h"

#include <string.h>

#include "access.h"
#include "hash.h"
#include "stable.h"
#include "tracking.h"
#include "unstable.h"

/* ---- smart scan ------------------------------------------------------- */

static unsigned skip_age(uint8_t age) {
  if (age <= 3) return 1;
  if (age <= 5) return 2;
  if (age <= 8) return 4;
  return 8;
}

/* should_skip_rmap_item() for a page that is not merged. */
static bool should_skip(struct sp_engine *e, struct sp_rec *rec) {
  if (!e->settings.smart_scan) return false;
  uint8_t age = rec->age;
  if (age != UINT8_MAX) rec->age++;
  if (age < 3) return false;
  if (!rec->skips) {
    rec->skips = (uint8_t)skip_age(age);
    return false;
  }
  rec->skips--;
  return true;
}

/* ---- merging ---------------------------------------------------------- */

static void remember_partner(struct sp_engine *e, uint32_t range, uint64_t page,
                             uint32_t partner) {
  e->merge.la = (struct sp_lookahead){
      .valid = true, .range = range, .next_page = page + 1, .partner = partner};
}

/* try_to_merge_two_pages() + stable_tree_insert() + two appends: the page
 * found in the unstable index first (it counts as shared), then ours. */
static void merge_two(struct sp_engine *e, uint32_t ref, uint32_t other,
                      const void *page, uint64_t hash, uint32_t content) {
  sp__unstable_remove(e, other);
  uint32_t node = sp__stable_insert(e, page, hash, content);
  if (node == SP_NIL) return; /* ENOMEM: both stay volatile, like a failed merge */
  sp__stable_append(e, node, other);
  sp__stable_append(e, node, ref);
}

enum peek { PEEK_MISS, PEEK_STABLE, PEEK_UNSTABLE };

/* Lookahead: is this page equal to the page after the last match's
 * partner?  One compare instead of the index searches. */
static enum peek peek_partner(struct sp_engine *e, uint32_t partner,
                              const void *page, uint64_t hash,
                              uint32_t *content) {
  if (partner == SP_NIL) return PEEK_MISS;
  struct sp_rec *p = sp__rec_get(e, partner);
  unsigned state = sp__rec_state(p);
  if (state == REC_STABLE) {
    uint32_t c = sp__stable_content_of(e, p->node);
    e->merge.compares++;
    if (sp__stable_hash(e, c) != hash) return PEEK_MISS;
    const void *contents = sp__stable_contents(e, c);
    if (!contents || !sp__pages_equal(e, page, contents)) return PEEK_MISS;
    *content = c;
    return PEEK_STABLE;
  }
  if (state == REC_UNSTABLE && sp__unstable_current(e, p) &&
      (e->merge.compares++, p->csum == (uint32_t)hash)) {
    const void *contents = sp__read_ref(e, partner, e->acc.page_buf);
    if (contents && sp__pages_equal(e, page, contents)) return PEEK_UNSTABLE;
  }
  return PEEK_MISS;
}

/* cmp_and_merge_page() for a page that passed the checksum gate. */
static void merge_candidate(struct sp_engine *e, uint32_t ref, uint32_t range,
                            uint64_t page_index, const void *page,
                            uint64_t hash) {
  uint32_t content = SP_NIL;
  bool searched_stable = false;

  if (e->settings.lookahead && e->merge.la.valid && e->merge.la.range == range &&
      e->merge.la.next_page == page_index) {
    uint32_t partner = sp__track_next_page(e, e->merge.la.partner);
    switch (peek_partner(e, partner, page, hash, &content)) {
    case PEEK_STABLE:
      e->merge.lookahead_hits++;
      searched_stable = true; /* content is what the search would find */
      break;
    case PEEK_UNSTABLE:
      e->merge.lookahead_hits++;
      /* The stable search comes first in the kernel.  The partner could
       * only be in this pass's unstable index if its content had no merged
       * page with room when it was indexed; that can change within a pass
       * only when a full merged page loses a mapping, so check the stable
       * index only if that happened this pass. */
      if (e->stable.room_opened_seq == e->scan.seqnr + 1) {
        content = sp__stable_find(e, page, hash);
        uint32_t dup = content == SP_NIL ? SP_NIL : sp__stable_pick(e, content);
        if (dup != SP_NIL) {
          uint32_t head = sp__stable_first_member(e, dup);
          sp__stable_append(e, dup, ref);
          remember_partner(e, range, page_index, head);
          return;
        }
      }
      merge_two(e, ref, partner, page, hash, content);
      remember_partner(e, range, page_index, partner);
      return;
    case PEEK_MISS:
      e->merge.lookahead_misses++;
      break;
    }
  }

  if (!searched_stable) content = sp__stable_find(e, page, hash);
  if (content != SP_NIL) {
    uint32_t dup = sp__stable_pick(e, content);
    if (dup != SP_NIL) {
      uint32_t head = sp__stable_first_member(e, dup);
      sp__stable_append(e, dup, ref);
      remember_partner(e, range, page_index, head);
      return;
    }
    /* Every merged page of this content is full: like the kernel, wait for
     * a twin in the unstable index to start a new one. */
  }

  const void *other_page = NULL;
  uint32_t other = sp__unstable_search_insert(e, ref, page, hash, &other_page);
  if (other == SP_NIL) {
    e->merge.la.valid = false;
    return;
  }
  merge_two(e, ref, other, page, hash, content);
  remember_partner(e, range, page_index, other);
}

/* A page the engine modelled as merged into the zero page, read again: if
 * it still holds zeros nothing changes (the kernel dropped its rmap_item on
 * the first pass after the merge); if it was written, it is a new page. */
static void visit_zero(struct sp_engine *e, struct sp_source *src, uint32_t ref,
                       struct sp_rec *rec, const void *page, uint64_t hash) {
  if (hash == e->zero_hash && sp__page_is_zero(page)) {
    sp__track_item_drop(e, ref);
    return;
  }
  e->merge.ksm_zero_pages--;
  src->zero_pages--;
  sp__track_item_add(e, ref);
  rec->state = REC_VOLATILE | REC_F_ITEM | REC_F_CSUM;
  rec->csum = (uint32_t)hash;
  rec->age = rec->skips = 0;
  e->merge.pages_scanned++;
}

bool sp__merge_visit(struct sp_engine *e, struct sp_source *src, uint32_t ref,
                     uint32_t range, uint64_t page_index, const void *page) {
  struct sp_rec *rec = sp__rec_get(e, ref);
  uint64_t hash = sp__hash_page(page);
  unsigned state = sp__rec_state(rec);

  if (state == REC_ZERO) {
    visit_zero(e, src, ref, rec, page, hash);
    return false;
  }

  if (state == REC_STABLE) {
    /* Still the merged content: nothing to do (the kernel returns early
     * for a KSM page already on its node).  Otherwise it was written,
     * which broke the sharing (copy-on-write). */
    if (sp__stable_hash(e, rec->node) == hash) {
      e->merge.pages_scanned++;
      e->merge.la.valid = false;
      return false;
    }
    /* Written: no longer a KSM page, so should_skip_rmap_item() ages it
     * and may skip it, with the age it had when it merged (the age stands
     * still while the page is KSM, and the kernel never resets it); a skip
     * takes it out of the stable tree unvisited. */
    if (sp__merge_smart_skip(e, ref)) return true;
    e->merge.pages_scanned++;
    sp__stable_remove(e, ref);
  } else {
    e->merge.pages_scanned++;
  }
  if (state == REC_UNSTABLE) {
    sp__unstable_remove(e, ref);
  }

  /* The volatility gate: only a page unchanged since its previous visit is
   * a candidate. */
  if (!(rec->state & REC_F_CSUM) || rec->csum != (uint32_t)hash) {
    rec->csum = (uint32_t)hash;
    rec->state |= REC_F_CSUM;
    e->merge.la.valid = false;
    return false;
  }

  if (e->settings.use_zero_pages && hash == e->zero_hash &&
      sp__page_is_zero(page)) {
    sp__rec_set_state(rec, REC_ZERO);
    e->merge.ksm_zero_pages++;
    src->zero_pages++;
    e->merge.la.valid = false;
    return false;
  }

  merge_candidate(e, ref, range, page_index, page, hash);
  return false;
}

bool sp__merge_smart_skip(struct sp_engine *e, uint32_t ref) {
  struct sp_rec *rec = sp__rec_get(e, ref);
  if (!should_skip(e, rec)) return false;
  e->merge.pages_skipped++;
  /* remove_rmap_item_from_tree() */
  if (sp__rec_state(rec) == REC_UNSTABLE) sp__unstable_remove(e, ref);
  else if (sp__rec_state(rec) == REC_STABLE) sp__stable_remove(e, ref);
  return true;
}

void sp__merge_unread(struct sp_engine *e, uint32_t ref) {
  e->merge.pages_unread++;
  if (sp__rec_state(sp__rec_get(e, ref)) == REC_ZERO) {
    /* Not a page ksmd would scan: the kernel dropped its rmap_item on the
     * first pass after the merge. */
    sp__track_item_drop(e, ref);
    return;
  }
  e->merge.pages_scanned++;
  e->merge.la.valid = false;
}

/* A page the engine merged into the zero page, now really mapped to it
 * (KSM ran as the engine predicted: a live process under use_zero_pages):
 * as when it still reads zeros, the kernel's zero-page PTE stands and counts
 * in ksm_zero_pages, and its rmap_item went on the first pass after the
 * merge.  Any other page now on the zero page left the scan. */
void sp__merge_zero_mapped(struct sp_engine *e, uint32_t ref) {
  if (sp__rec_state(sp__rec_get(e, ref)) == REC_ZERO) {
    sp__track_item_drop(e, ref);
    return;
  }
  sp__merge_forget(e, ref, true);
}

/* ---- pages that go ---------------------------------------------------- */

void sp__merge_forget(struct sp_engine *e, uint32_t ref, bool lost) {
  struct sp_rec *rec = sp__rec_get(e, ref);
  struct sp_source *src = sp__rec_source(e, ref);
  unsigned state = sp__rec_state(rec);
  if (state == REC_NONE) return;
  if (lost && (rec->state & REC_F_ITEM)) {
    e->merge.pages_lost++;
    src->pages_lost++;
  }
  switch (state) {
  case REC_STABLE:
    sp__stable_remove(e, ref);
    break;
  case REC_UNSTABLE:
    sp__unstable_remove(e, ref);
    break;
  case REC_ZERO:
    e->merge.ksm_zero_pages--;
    src->zero_pages--;
    break;
  default:
    break;
  }
  if (e->merge.la.valid && e->merge.la.partner == ref) e->merge.la.valid = false;
  sp__track_release(e, ref);
}

void sp__merge_forget_span(struct sp_engine *e, uint32_t range_id, uint64_t from,
                           uint64_t to, bool lost) {
  uint32_t ref;
  while ((ref = sp__track_next_live(e, range_id, &from, to)) != SP_NIL) {
    sp__merge_forget(e, ref, lost);
    from++;
  }
}

void sp__merge_move(struct sp_engine *e, uint32_t from, uint32_t to) {
  const struct sp_rec *rec = sp__rec_get(e, from);
  switch (sp__rec_state(rec)) {
  case REC_STABLE:
    sp__stable_rekey(e, from, to);
    break;
  case REC_UNSTABLE:
    sp__unstable_rekey(e, from, to);
    break;
  default:
    break;
  }
  if (e->merge.la.valid && e->merge.la.partner == from) e->merge.la.partner = to;
  sp__track_move(e, from, to);
}

void sp__merge_reset_lookahead(struct sp_engine *e) { e->merge.la.valid = false; }
