/*
 * merge.c - the per-page decision of cmp_and_merge_page() (mm/ksm.c,
 * 6.12), with lookahead in front of the index searches, zero pages and
 * smart scan.
 */
#include "merge.h"

#include <stdlib.h>
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

/* ---- THPs ------------------------------------------------------------- */

/* KSM merges 4 KiB pages: try_to_merge_one_page() splits a THP before it
 * merges one of its pages, and the split (remap_page() with
 * RMP_USE_SHARED_ZEROPAGE, 6.12) maps every zero-filled subpage to the
 * shared zero page, outside KSM.  So a THP's zero-filled subpages are
 * candidates like any page until a merge of one of its pages splits it; a
 * zero-filled page whose THP a merge splits becomes the zero page itself,
 * and its own merge fails.  A THP is named by its source and its 2 MiB
 * address. */
#define THP_SHIFT 21

static size_t thp_split_pos(const struct sp_source *src, uint64_t thp) {
  size_t lo = 0, hi = src->nthp_split;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (src->thp_split[mid] < thp) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

bool sp__merge_thp_split(const struct sp_source *src, uint64_t address) {
  uint64_t thp = address >> THP_SHIFT;
  size_t at = thp_split_pos(src, thp);
  return at < src->nthp_split && src->thp_split[at] == thp;
}

/* Is ref's page in a THP the engine has not split? */
static bool thp_whole(const struct sp_engine *e, uint32_t ref) {
  if (!(sp__rec_get(e, ref)->state & REC_F_THP)) return false;
  return !sp__merge_thp_split(sp__rec_source(e, ref), sp__track_address(e, ref));
}

/* split_huge_page() of ref's THP.  Without memory to remember it the THP
 * stays whole in the model (its zero subpages stay candidates). */
static void thp_split(struct sp_engine *e, uint32_t ref) {
  struct sp_source *src = sp__rec_source(e, ref);
  uint64_t thp = sp__track_address(e, ref) >> THP_SHIFT;
  size_t at = thp_split_pos(src, thp);
  if (at < src->nthp_split && src->thp_split[at] == thp) return;
  if (src->nthp_split == src->thp_split_cap) {
    size_t cap = src->thp_split_cap ? src->thp_split_cap * 2 : 64;
    uint64_t *grown = realloc(src->thp_split, cap * sizeof *grown);
    if (!grown) return;
    src->thp_split = grown;
    src->thp_split_cap = cap;
  }
  memmove(src->thp_split + at + 1, src->thp_split + at,
          (src->nthp_split - at) * sizeof *src->thp_split);
  src->thp_split[at] = thp;
  src->nthp_split++;
}

static bool same_thp(const struct sp_engine *e, uint32_t a, uint32_t b) {
  return sp__rec_source(e, a) == sp__rec_source(e, b) &&
         sp__track_address(e, a) >> THP_SHIFT == sp__track_address(e, b) >> THP_SHIFT;
}

/* try_to_merge_with_ksm_page() of a page: false when the THP split it
 * takes mapped the page itself to the zero page (the merge fails). */
static bool thp_merge_one(struct sp_engine *e, uint32_t ref, bool zero_filled) {
  if (!thp_whole(e, ref)) return true;
  thp_split(e, ref);
  return !zero_filled;
}

/* try_to_merge_two_pages() of a page and the unstable index's `other`,
 * equal to it: false when it fails.  In one THP, the reference held on
 * `other` makes the split fail; cmp_and_merge_page() splits the THP after
 * and merges nothing.  Otherwise each page's THP is split in turn (the
 * second only if the first page merged). */
static bool thp_merge_two(struct sp_engine *e, uint32_t ref, uint32_t other,
                          bool zero_filled) {
  if (thp_whole(e, ref) && thp_whole(e, other) && same_thp(e, ref, other)) {
    thp_split(e, ref);
    return false;
  }
  return thp_merge_one(e, ref, zero_filled) && thp_merge_one(e, other, zero_filled);
}

/* An unstable match that is stale: a zero-filled page indexed while its THP
 * was whole, since split and so mapped to the zero page.  The kernel's
 * search finds no page behind that node (get_mergeable_page()) and gives up
 * without inserting the page it searched for. */
static bool stale_zero_match(const struct sp_engine *e, uint32_t other, bool zero_filled) {
  return zero_filled && (sp__rec_get(e, other)->state & REC_F_THP) && !thp_whole(e, other);
}

/* ---- merging ---------------------------------------------------------- */

static void remember_partner(struct sp_engine *e, uint32_t range, uint64_t page,
                             uint32_t partner) {
  e->merge.la = (struct sp_lookahead){
      .valid = true, .range = range, .next_page = page + 1, .partner = partner};
}

/* A merge done: the page's partner is remembered for the next page, and a
 * page the gate held back (lookahead_early) is counted. */
static void merged(struct sp_engine *e, uint32_t range, uint64_t page, uint32_t partner,
                   bool gated) {
  if (!gated) e->merge.lookahead_early++;
  remember_partner(e, range, page, partner);
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

/* A stable merge of ref into dup: false when a THP split made it fail. */
static bool append_stable(struct sp_engine *e, uint32_t ref, uint32_t dup, bool zero_filled) {
  if (!thp_merge_one(e, ref, zero_filled)) return false;
  sp__stable_append(e, dup, ref);
  return true;
}

/* An unstable match: merged, or false when the kernel's merge would fail
 * (a THP split, a stale node). */
static bool merge_unstable(struct sp_engine *e, uint32_t ref, uint32_t other,
                           const void *page, uint64_t hash, uint32_t content,
                           bool zero_filled) {
  if (stale_zero_match(e, other, zero_filled)) return false;
  if (!thp_merge_two(e, ref, other, zero_filled)) return false;
  merge_two(e, ref, other, page, hash, content);
  return true;
}

/* Is this page the one after the last match, so lookahead peeks at it? */
static bool lookahead_due(const struct sp_engine *e, uint32_t range, uint64_t page_index) {
  return e->settings.lookahead && e->merge.la.valid && e->merge.la.range == range &&
         e->merge.la.next_page == page_index;
}

/* cmp_and_merge_page() for a page that passed the checksum gate (gated), or
 * with lookahead_early for one it held back that lookahead peeks at: that
 * one merges only on a lookahead hit, and never enters the unstable index,
 * so no ungated page can become another's partner there. */
static void merge_candidate(struct sp_engine *e, uint32_t ref, uint32_t range,
                            uint64_t page_index, const void *page,
                            uint64_t hash, bool gated) {
  uint32_t content = SP_NIL;
  bool searched_stable = false;
  /* A split maps a zero-filled page to the zero page, this one or its
   * twin in the unstable index (the hash test is all most pages cost). */
  bool zero_filled = hash == e->zero_hash && sp__page_is_zero(page);

  if (lookahead_due(e, range, page_index)) {
    uint32_t partner = sp__track_next_page(e, e->merge.la.partner);
    switch (peek_partner(e, partner, page, hash, &content)) {
    case PEEK_STABLE:
      e->merge.lookahead_hits++;
      /* content is what the search would find.  The kernel series skips
       * the search only for a regular node: a chain's dup is the
       * search's own choice, and its descent walks the chains it passes. */
      searched_stable = !sp__stable_is_chain(e, content);
      break;
    case PEEK_UNSTABLE:
      e->merge.lookahead_hits++;
      /* The stable search comes first in the kernel.  The partner could
       * only be in this pass's unstable index if its content had no merged
       * page with room when it was indexed; that can change within a pass
       * only when a full merged page loses a mapping, so check the stable
       * index only if that happened this pass. */
      if (e->stable.room_opened_seq == e->scan.seqnr + 1) {
        content = sp__stable_search(e, page, hash);
        uint32_t dup = content == SP_NIL ? SP_NIL : sp__stable_pick(e, &content);
        if (dup != SP_NIL) {
          uint32_t head = sp__stable_first_member(e, dup);
          if (append_stable(e, ref, dup, zero_filled)) merged(e, range, page_index, head, gated);
          else e->merge.la.valid = false;
          return;
        }
      }
      if (merge_unstable(e, ref, partner, page, hash, content, zero_filled))
        merged(e, range, page_index, partner, gated);
      else
        e->merge.la.valid = false;
      return;
    case PEEK_MISS:
      e->merge.lookahead_misses++;
      if (!gated) {
        e->merge.la.valid = false;
        return;
      }
      break;
    }
  } else if (!gated) {
    e->merge.la.valid = false;
    return;
  }

  if (!searched_stable) content = sp__stable_search(e, page, hash);
  if (content != SP_NIL) {
    uint32_t dup = sp__stable_pick(e, &content);
    if (dup != SP_NIL) {
      uint32_t head = sp__stable_first_member(e, dup);
      if (append_stable(e, ref, dup, zero_filled)) merged(e, range, page_index, head, gated);
      else e->merge.la.valid = false;
      return;
    }
    /* Every merged page of this content is full: like the kernel, wait for
     * a twin in the unstable index to start a new one. */
  }
  if (!gated) {
    e->merge.la.valid = false;
    return;
  }

  const void *other_page = NULL;
  uint32_t other = sp__unstable_search_insert(e, ref, page, hash, &other_page);
  if (other == SP_NIL || !merge_unstable(e, ref, other, page, hash, content, zero_filled)) {
    e->merge.la.valid = false;
    return;
  }
  merged(e, range, page_index, other, true);
}

/* A page the kernel searches the trees for but can merge with nothing (a
 * zero-filled page its THP's split just mapped to the zero page): a stable
 * match or an unstable one fails; with none it goes into the unstable
 * index, where it stays until its next visit finds it gone. */
static void merge_unmergeable(struct sp_engine *e, uint32_t ref, const void *page,
                              uint64_t hash) {
  e->merge.la.valid = false;
  uint32_t content = sp__stable_search(e, page, hash);
  if (content != SP_NIL && sp__stable_pick(e, &content) != SP_NIL) return;
  const void *other_page = NULL;
  (void)sp__unstable_search_insert(e, ref, page, hash, &other_page);
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
                     uint32_t range, uint64_t page_index, const void *page,
                     bool in_thp, bool skip_checked) {
  struct sp_rec *rec = sp__rec_get(e, ref);
  unsigned state = sp__rec_state(rec);
  /* Merged when the window was picked, its node dropped since: the
   * kernel's should_skip_rmap_item() meets a page that is not KSM. */
  if (!skip_checked && state != REC_STABLE && state != REC_ZERO && sp__merge_smart_skip(e, ref))
    return true;
  uint64_t hash = sp__hash_page(page);

  if (in_thp) rec->state |= REC_F_THP;
  else rec->state &= (uint8_t)~REC_F_THP;

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
    /* lookahead_early: a page that continues a run may still merge.  Not a
     * zero-filled one under use_zero_pages: that path has its own rules. */
    bool zero_path = e->settings.use_zero_pages && hash == e->zero_hash;
    if (e->settings.lookahead_early && !zero_path && lookahead_due(e, range, page_index))
      merge_candidate(e, ref, range, page_index, page, hash, false);
    else
      e->merge.la.valid = false;
    return false;
  }

  if (e->settings.use_zero_pages && hash == e->zero_hash &&
      sp__page_is_zero(page)) {
    if (in_thp) {
      /* try_to_merge_with_zero_page(): the split maps the page to the zero
       * page outside KSM and the merge fails; cmp_and_merge_page() goes on
       * with it to the trees, where it can merge with nothing. */
      thp_split(e, ref);
      merge_unmergeable(e, ref, page, hash);
      return false;
    }
    sp__rec_set_state(rec, REC_ZERO);
    e->merge.ksm_zero_pages++;
    src->zero_pages++;
    e->merge.la.valid = false;
    return false;
  }

  merge_candidate(e, ref, range, page_index, page, hash, true);
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
