/*
 * visit.c - one window of pages, and the per-page decision of
 * cmp_and_merge_page() (mm/ksm.c, 6.12), with lookahead in front of the
 * index searches.
 */
#include "visit.h"

#include <errno.h>
#include <string.h>

#include "hash.h"
#include "unstable.h"

bool sp_pages_equal(struct sp_engine *e, const void *a, const void *b) {
  e->full_compares++;
  return memcmp(a, b, SP_PAGE_SIZE) == 0;
}

const void *sp_read_ref(struct sp_engine *e, uint32_t ref, uint8_t *buf) {
  uint32_t range_id;
  uint64_t page;
  sp_rmap_locate(e, ref, &range_id, &page);
  const struct sp_window *w = e->window;
  if (w && w->range == range_id && page >= w->first && page < w->first + w->n &&
      w->ptrs[page - w->first])
    return w->ptrs[page - w->first];
  struct sp_range *range = &e->ranges[range_id];
  struct sp_source *src = e->sources[range->source];
  if (src->error) return NULL;
  const void *ptr = NULL;
  static const uint8_t want = 1;
  if (src->ops->read(src, range, page, 1, &want, buf, &ptr) < 0 || !ptr)
    return NULL;
  e->bytes_read += SP_PAGE_SIZE;
  return ptr;
}

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
  e->la = (struct sp_lookahead){
      .valid = true, .range = range, .next_page = page + 1, .partner = partner};
}

/* try_to_merge_two_pages() + stable_tree_insert() + two appends: the page
 * found in the unstable index first (it counts as shared), then ours. */
static void merge_two(struct sp_engine *e, uint32_t ref, uint32_t other,
                      const void *page, uint64_t hash, uint32_t content) {
  sp_unstable_remove(e, other);
  uint32_t node = sp_stable_insert(e, page, hash, content);
  if (node == SP_NIL) return; /* ENOMEM: both stay volatile, like a failed merge */
  sp_stable_append(e, node, other);
  sp_stable_append(e, node, ref);
}

enum peek { PEEK_MISS, PEEK_STABLE, PEEK_UNSTABLE };

/* Lookahead: is this page equal to the page after the last match's
 * partner?  One compare instead of the index searches. */
static enum peek peek_partner(struct sp_engine *e, uint32_t partner,
                              const void *page, uint64_t hash,
                              uint32_t *content) {
  if (partner == SP_NIL) return PEEK_MISS;
  struct sp_rec *p = sp_rec_get(e, partner);
  unsigned state = sp_rec_state(p);
  if (state == REC_STABLE) {
    uint32_t c = sp_stable_content_of(e, p->node);
    e->page_compares++;
    if (e->stable.nodes[c].hash != hash) return PEEK_MISS;
    const void *contents = sp_stable_contents(e, c);
    if (!contents || !sp_pages_equal(e, page, contents)) return PEEK_MISS;
    *content = c;
    return PEEK_STABLE;
  }
  if (state == REC_UNSTABLE && sp_unstable_current(e, p) &&
      (e->page_compares++, p->csum == (uint32_t)hash)) {
    const void *contents = sp_read_ref(e, partner, e->page_buf);
    if (contents && sp_pages_equal(e, page, contents)) return PEEK_UNSTABLE;
  }
  return PEEK_MISS;
}

/* cmp_and_merge_page() for a page that passed the checksum gate. */
static void merge_candidate(struct sp_engine *e, uint32_t ref, uint32_t range,
                            uint64_t page_index, const void *page,
                            uint64_t hash) {
  uint32_t content = SP_NIL;
  bool searched_stable = false;

  if (e->settings.lookahead && e->la.valid && e->la.range == range &&
      e->la.next_page == page_index) {
    uint32_t partner = sp_rmap_next_page(e, e->la.partner);
    switch (peek_partner(e, partner, page, hash, &content)) {
    case PEEK_STABLE:
      e->lookahead_hits++;
      searched_stable = true; /* content is what the search would find */
      break;
    case PEEK_UNSTABLE:
      e->lookahead_hits++;
      /* The stable search comes first in the kernel.  The partner could
       * only be in this pass's unstable index if its content had no merged
       * page with room when it was indexed; that can change within a pass
       * only when a full merged page loses a mapping, so check the stable
       * index only if that happened this pass. */
      if (e->room_opened_seq == e->seqnr + 1) {
        content = sp_stable_find(e, page, hash);
        uint32_t dup = content == SP_NIL ? SP_NIL : sp_stable_pick(e, content);
        if (dup != SP_NIL) {
          uint32_t head = e->stable.nodes[dup].members;
          sp_stable_append(e, dup, ref);
          remember_partner(e, range, page_index, head);
          return;
        }
      }
      merge_two(e, ref, partner, page, hash, content);
      remember_partner(e, range, page_index, partner);
      return;
    case PEEK_MISS:
      e->lookahead_misses++;
      break;
    }
  }

  if (!searched_stable) content = sp_stable_find(e, page, hash);
  if (content != SP_NIL) {
    uint32_t dup = sp_stable_pick(e, content);
    if (dup != SP_NIL) {
      uint32_t head = e->stable.nodes[dup].members;
      sp_stable_append(e, dup, ref);
      remember_partner(e, range, page_index, head);
      return;
    }
    /* Every merged page of this content is full: like the kernel, wait for
     * a twin in the unstable index to start a new one. */
  }

  const void *other_page = NULL;
  uint32_t other = sp_unstable_search_insert(e, ref, page, hash, &other_page);
  if (other == SP_NIL) {
    e->la.valid = false;
    return;
  }
  merge_two(e, ref, other, page, hash, content);
  remember_partner(e, range, page_index, other);
}

/* A page the engine modelled as merged into the zero page, read again: if
 * it still holds zeros nothing changes (the kernel dropped its rmap_item on
 * the first pass after the merge); if it was written, it is a new page. */
static void zero_unchanged(struct sp_engine *e, struct sp_source *src,
                           struct sp_rec *rec) {
  if (rec->state & REC_F_ITEM) {
    rec->state &= (uint8_t)~REC_F_ITEM;
    e->rmap_items--;
    src->rmap_items--;
  }
}

static void visit_zero(struct sp_engine *e, struct sp_source *src,
                       struct sp_rec *rec, const void *page, uint64_t hash) {
  if (hash == e->zero_hash && sp_page_is_zero(page)) {
    zero_unchanged(e, src, rec);
    return;
  }
  e->ksm_zero_pages--;
  src->zero_pages--;
  if (!(rec->state & REC_F_ITEM)) {
    e->rmap_items++;
    src->rmap_items++;
  }
  rec->state = REC_VOLATILE | REC_F_ITEM | REC_F_CSUM;
  rec->csum = (uint32_t)hash;
  rec->age = rec->skips = 0;
  e->pages_scanned++;
}

static void visit(struct sp_engine *e, struct sp_source *src, uint32_t ref,
                  uint32_t range, uint64_t page_index, const void *page) {
  struct sp_rec *rec = sp_rec_get(e, ref);
  uint64_t hash = sp_hash_page(page);
  unsigned state = sp_rec_state(rec);

  if (state == REC_ZERO) {
    visit_zero(e, src, rec, page, hash);
    return;
  }
  e->pages_scanned++;

  if (state == REC_STABLE) {
    /* Still the merged content: nothing to do (the kernel returns early
     * for a KSM page already on its node).  Otherwise it was written,
     * which breaks the sharing (copy-on-write). */
    if (e->stable.nodes[rec->node].hash == hash) {
      e->la.valid = false;
      return;
    }
    sp_stable_remove(e, ref);
  } else if (state == REC_UNSTABLE) {
    sp_unstable_remove(e, ref);
  }

  /* The volatility gate: only a page unchanged since its previous visit is
   * a candidate. */
  if (!(rec->state & REC_F_CSUM) || rec->csum != (uint32_t)hash) {
    rec->csum = (uint32_t)hash;
    rec->state |= REC_F_CSUM;
    e->la.valid = false;
    return;
  }

  if (e->settings.use_zero_pages && hash == e->zero_hash &&
      sp_page_is_zero(page)) {
    sp_rec_set_state(rec, REC_ZERO);
    e->ksm_zero_pages++;
    src->zero_pages++;
    e->la.valid = false;
    return;
  }

  merge_candidate(e, ref, range, page_index, page, hash);
}

/* ---- windows ---------------------------------------------------------- */

/* Starts tracking a page: the kernel allocates an rmap_item on its first
 * visit. */
static void start_tracking(struct sp_engine *e, struct sp_source *src,
                           uint32_t ref) {
  struct sp_rec *rec = sp_rec_get(e, ref);
  e->chunks[ref >> SP_CHUNK_SHIFT]->live++;
  e->tracked++;
  *rec = (struct sp_rec){.state = REC_VOLATILE | REC_F_ITEM,
                         .node = SP_NIL,
                         .next = SP_NIL};
  e->rmap_items++;
  src->rmap_items++;
}

/* A tracked page that is no longer there: out of every index. */
static void page_gone(struct sp_engine *e, struct sp_source *src, uint32_t ref,
                      bool lost) {
  struct sp_rec *rec = sp_rec_get(e, ref);
  if (lost && (rec->state & REC_F_ITEM)) {
    e->pages_lost++;
    src->pages_lost++;
  }
  sp_rmap_forget(e, ref);
}

int64_t sp_scan_window(struct sp_engine *e, struct sp_source *src,
                       uint32_t range_id, uint64_t budget) {
  struct sp_range *range = &e->ranges[range_id];
  uint64_t first = e->cur.page;
  size_t n = (size_t)(range->npages - first);
  if (n > SP_BATCH_PAGES) n = SP_BATCH_PAGES;

  uint8_t flags[SP_BATCH_PAGES];
  uint8_t want[SP_BATCH_PAGES];
  uint32_t refs[SP_BATCH_PAGES];
  if (src->ops->presence) {
    int err = src->ops->presence(src, range->start + first * SP_PAGE_SIZE, n, flags);
    if (err == -ESRCH) return err;
    if (err) {
      /* A transient failure (pagemap: -EIO, -ENOMEM, -EINTR) says nothing
       * about the pages: skip this window with its records as they are, so
       * the VM keeps its merges; the next pass reads it again. */
      e->cur.page = first + n;
      return 0;
    }
    /* Nothing here: jump to the next present page in one go (sparse
     * ranges can span terabytes). */
    bool any = false;
    for (size_t i = 0; i < n && !any; i++) any = flags[i] & PAGE_PRESENT;
    uint64_t next;
    if (!any && src->ops->next_present &&
        src->ops->next_present(src, range->start + first * SP_PAGE_SIZE,
                               range->start + range->npages * SP_PAGE_SIZE, &next) == 0) {
      uint64_t next_page = (next - range->start) / SP_PAGE_SIZE;
      if (next_page > first + n) {
        sp_range_forget_span(e, range_id, first, next_page, true);
        e->cur.page = next_page;
        return 0;
      }
    }
  } else {
    memset(flags, PAGE_PRESENT, n);
  }

  /* Guest page-flag hints: pages the guest reports free are not scanned
   * (as if absent); in the first sweep only page-cache pages are, in the
   * second only the others. */
  const uint8_t *hints = sp_range_hinted(src, range) ? src->hints : NULL;

  /* Decide what to read: absent pages leave tracking, skipped pages are
   * not read, and the budget counts pages that will really be scanned. */
  uint64_t charged = 0;
  size_t end = n;
  for (size_t i = 0; i < n; i++) {
    want[i] = 0;
    refs[i] = SP_NIL;
    uint64_t p = first + i;
    if (hints) {
      uint64_t hi = sp_hint_index(src, range, p);
      uint8_t h = hi < src->nhints ? hints[hi] : 0;
      if ((h & SP_HINT_PAGECACHE) ? e->cur.sweep != 0 : e->cur.sweep != 1) continue;
      if (h & SP_HINT_FREE) flags[i] &= (uint8_t)~PAGE_PRESENT;
    }
    if (!(flags[i] & PAGE_PRESENT)) {
      uint32_t ref = sp_rmap_lookup(e, range_id, p);
      if (ref != SP_NIL && sp_rec_state(sp_rec_get(e, ref)) != REC_NONE)
        page_gone(e, src, ref, true);
      continue;
    }
    uint32_t ref = sp_rmap_get_or_create(e, range_id, p);
    if (ref == SP_NIL) continue; /* ENOMEM: not tracked, like the kernel */
    range = &e->ranges[range_id];
    struct sp_rec *rec = sp_rec_get(e, ref);
    refs[i] = ref;
    unsigned state = sp_rec_state(rec);
    if (state == REC_NONE) {
      start_tracking(e, src, ref);
      state = REC_VOLATILE;
    }
    src->present_pages++;
    e->pass_pages++;
    /* Not written since the previous visit (soft-dirty): a merged page is
     * still merged, a zero-merged one still zero; no need to read it.  An
     * eighth of them are read anyway each pass (see SP_PROC_SOFT_DIRTY). */
    bool unchanged = (flags[i] & PAGE_CLEAN) && (p + e->seqnr) % 8 != 0;
    if (state == REC_ZERO) { /* not a page ksmd would scan; re-read only */
      if (unchanged) {
        e->pages_unread++;
        zero_unchanged(e, src, rec);
      } else {
        want[i] = 1;
      }
      continue;
    }
    if (state == REC_STABLE && unchanged) {
      e->pages_unread++;
      e->pages_scanned++;
      e->la.valid = false;
      if (++charged == budget) {
        end = i + 1;
        break;
      }
      continue;
    }
    if (state != REC_STABLE && should_skip(e, rec)) {
      e->pages_skipped++;
      if (state == REC_UNSTABLE) sp_unstable_remove(e, ref);
      continue;
    }
    want[i] = 1;
    if (++charged == budget) {
      end = i + 1;
      break;
    }
  }
  n = end;

  struct sp_window *w = &e->win;
  w->range = range_id;
  w->first = first;
  w->n = 0; /* not usable by sp_read_ref() until read */
  memset(w->ptrs, 0, sizeof w->ptrs);
  int err = src->ops->read(src, range, first, n, want, e->batch_buf, w->ptrs);
  if (err < 0) return err;
  w->n = n;

  /* Zero-filled subpages of a THP end up on the zero page outside KSM when
   * the THP is split; they are counted apart, not as candidates. */
  uint8_t thp[SP_BATCH_PAGES];
  uint8_t zero_want[SP_BATCH_PAGES];
  bool thp_known = false;
  if ((src->flags & SP_PROC_THP_ZERO_APART) && src->ops->thp) {
    bool any = false;
    for (size_t i = 0; i < n; i++) {
      zero_want[i] = want[i] && w->ptrs[i] && sp_page_is_zero(w->ptrs[i]);
      any |= zero_want[i];
    }
    if (any && src->ops->thp(src, range, first, n, zero_want, thp) == 0)
      thp_known = true;
  }

  e->window = w;
  for (size_t i = 0; i < n; i++) {
    if (!want[i]) continue;
    if (!w->ptrs[i]) {
      page_gone(e, src, refs[i], true);
      continue;
    }
    e->bytes_read += SP_PAGE_SIZE;
    if (thp_known && zero_want[i] && thp[i]) {
      src->thp_zero_pages++;
      page_gone(e, src, refs[i], false);
      continue;
    }
    visit(e, src, refs[i], range_id, first + i, w->ptrs[i]);
  }
  e->window = NULL;
  e->cur.page = first + n;
  return (int64_t)charged;
}
