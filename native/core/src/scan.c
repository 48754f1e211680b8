/*
 * scan.c - ksmd's scan loop.
 *
 * The loop follows mm/ksm.c (6.12): a cursor walks the sources in order,
 * each source's ranges by address, each range page by page.  At the start
 * of a full pass the unstable index is emptied; at its end full_scans goes
 * up.  A step stops after pages_to_scan pages (pages skipped by smart scan
 * are not charged) or at the end of a pass, as ksm_do_scan() does.
 *
 * For speed the pages of a window (up to 1 MiB) are looked at first
 * (presence, smart-scan skips, the budget), then read in one go, then
 * visited in address order; the visit (cmp_and_merge_page) is in merge.c.
 */
#include "scan.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "hash.h"
#include "merge.h"
#include "sources.h"
#include "tracking.h"
#include "unstable.h"

/* ---- ranges ----------------------------------------------------------- */

/* A range leaves tracking: its pages first, then the range. */
static void drop_range(struct sp_engine *e, uint32_t range_id, bool lost) {
  sp__merge_forget_span(e, range_id, 0, e->tr.ranges[range_id].npages, lost);
  sp__range_destroy(e, range_id);
}

static void forget_source_pages(struct sp_engine *e, struct sp_source *src, bool lost) {
  for (size_t i = 0; i < src->nranges; i++) drop_range(e, src->ranges[i], lost);
  free(src->ranges);
  src->ranges = NULL;
  src->nranges = 0;
}

/* The new range holding addr of old range `old`, or -1.  A dump's ranges
 * must also map addr to the same file offset (else the page is another
 * one); a process's or a buffer's page is its address. */
static long holder(const struct sp_source *src, const struct sp_range_spec *specs, size_t n,
                   const struct sp_range *old, uint64_t addr) {
  size_t lo = 0, hi = n;
  while (lo < hi) { /* the last spec starting at or below addr */
    size_t mid = (lo + hi) / 2;
    if (specs[mid].start <= addr) lo = mid + 1;
    else hi = mid;
  }
  if (!lo) return -1;
  const struct sp_range_spec *s = &specs[lo - 1];
  if (addr >= s->start + s->npages * SP_PAGE_SIZE) return -1;
  if (src->kind == SP_SOURCE_DUMP &&
      s->file_offset - s->start != old->file_offset - old->start)
    return -1;
  return (long)(lo - 1);
}

/* Pages [from, npages) of old range `old_id` leave it.  As the kernel keys
 * rmap_items by address, a VMA split or merge (mprotect, madvise, a heap
 * that grew into its neighbour) changes nothing for the pages: each record
 * moves, with its merge, to the new range that holds its address; only the
 * pages no range holds any more are forgotten. */
static void rehome_span(struct sp_engine *e, struct sp_source *src, uint32_t old_id,
                        uint64_t from, const struct sp_range_spec *specs, const uint32_t *ids,
                        size_t n) {
  uint64_t to = e->tr.ranges[old_id].npages;
  uint32_t ref;
  while ((ref = sp__track_next_live(e, old_id, &from, to)) != SP_NIL) {
    const struct sp_range *old = &e->tr.ranges[old_id];
    uint64_t addr = old->start + from * SP_PAGE_SIZE;
    long j = holder(src, specs, n, old, addr);
    uint32_t dest = SP_NIL;
    if (j >= 0 && ids[j] != old_id) {
      dest = sp__track_get_or_create(e, ids[j], (addr - specs[j].start) / SP_PAGE_SIZE);
      if (dest != SP_NIL && sp__rec_state(sp__rec_get(e, dest)) != REC_NONE) dest = SP_NIL;
    }
    if (dest != SP_NIL) sp__merge_move(e, ref, dest);
    else sp__merge_forget(e, ref, true);
    from++;
  }
}

int sp__scan_refresh_ranges(struct sp_engine *e, size_t slot) {
  struct sp_source *src = e->sources[slot];
  struct sp_range_spec *specs = NULL;
  size_t n = 0;
  int err = src->ops->ranges(src, &specs, &n);
  if (err) return err;
  size_t nold = src->nranges;
  uint32_t *ids = malloc((n ? n : 1) * sizeof *ids);
  /* kept[k]: how many pages old range k keeps (it became new range
   * kept_by[k]), or SP_NIL when it goes. */
  uint64_t *kept = malloc((nold ? nold : 1) * sizeof *kept);
  if (!ids || !kept) {
    free(ids);
    free(kept);
    free(specs);
    return -ENOMEM;
  }
  for (size_t k = 0; k < nold; k++) kept[k] = UINT64_MAX;

  /* 1. Every new range gets an id: the old range starting at the same
   * place (grown now if it grows, shrunk only after its tail moved), or a
   * new one.  On failure, the ranges so far are kept and the rest is
   * retried on the next visit. */
  size_t old = 0;
  for (size_t i = 0; i < n; i++) {
    while (old < nold && e->tr.ranges[src->ranges[old]].start < specs[i].start) old++;
    if (old < nold && e->tr.ranges[src->ranges[old]].start == specs[i].start &&
        e->tr.ranges[src->ranges[old]].file_offset == specs[i].file_offset) {
      uint32_t id = src->ranges[old];
      if (specs[i].npages > SP_RANGE_MAX_PAGES) err = -E2BIG;
      else if (specs[i].npages > e->tr.ranges[id].npages)
        err = sp__range_resize(e, id, specs[i].npages);
      if (!err) {
        ids[i] = id;
        e->tr.ranges[id].flags = specs[i].flags;
        kept[old] = specs[i].npages;
      }
      old++;
    } else {
      err = sp__range_create(e, (uint32_t)slot, &specs[i], &ids[i]);
    }
    if (err) {
      n = i;
      break;
    }
  }

  /* 2. Pages that left their range move to the range now holding them
   * (or are forgotten); then old ranges shrink or go. */
  for (size_t k = 0; k < nold; k++) {
    uint32_t id = src->ranges[k];
    uint64_t keep = kept[k] == UINT64_MAX ? 0 : kept[k];
    if (keep < e->tr.ranges[id].npages) rehome_span(e, src, id, keep, specs, ids, n);
  }
  for (size_t k = 0; k < nold; k++) {
    uint32_t id = src->ranges[k];
    if (kept[k] == UINT64_MAX) sp__range_destroy(e, id);
    else if (kept[k] < e->tr.ranges[id].npages) sp__range_resize(e, id, kept[k]);
  }
  free(kept);
  /* Records moved, and the lookahead partner with them: its page may now
   * be in another range. */
  sp__merge_reset_lookahead(e);

  free(src->ranges);
  src->ranges = ids;
  src->nranges = n;
  src->guest_ram_start = src->guest_ram_bytes = 0;
  for (size_t i = 0; i < n; i++) {
    const struct sp_range *r = &e->tr.ranges[ids[i]];
    if (r->flags & RANGE_F_GUEST_RAM) {
      src->guest_ram_start = r->start;
      src->guest_ram_bytes = r->npages * SP_PAGE_SIZE;
    }
  }
  free(specs);
  return err;
}

/* ---- sources in the scan order ---------------------------------------- */

/* Ranges name their source by slot: renumber from slot `at` on. */
static void renumber(struct sp_engine *e, size_t at) {
  for (size_t i = at; i < e->nsources; i++)
    for (size_t r = 0; r < e->sources[i]->nranges; r++)
      e->tr.ranges[e->sources[i]->ranges[r]].source = (uint32_t)i;
}

int sp__scan_add_source(struct sp_engine *e, struct sp_source *src) {
  if (e->nsources == e->sources_cap) {
    size_t ncap = e->sources_cap ? e->sources_cap * 2 : 8;
    struct sp_source **s = realloc(e->sources, ncap * sizeof *s);
    if (!s) return -ENOMEM;
    e->sources = s;
    e->sources_cap = ncap;
  }
  struct sp_cursor *cur = &e->scan.cur;
  size_t at = cur->in_pass ? cur->source : e->nsources;
  memmove(&e->sources[at + 1], &e->sources[at], (e->nsources - at) * sizeof *e->sources);
  e->sources[at] = src;
  e->nsources++;
  if (cur->in_pass) cur->source++;
  renumber(e, at);
  return 0;
}

void sp__scan_remove_source(struct sp_engine *e, size_t at) {
  struct sp_source *src = e->sources[at];
  forget_source_pages(e, src, false);
  memmove(&e->sources[at], &e->sources[at + 1], (e->nsources - at - 1) * sizeof *e->sources);
  e->nsources--;
  renumber(e, at);
  struct sp_cursor *cur = &e->scan.cur;
  if (cur->in_pass) {
    if (at < cur->source) {
      cur->source--;
    } else if (at == cur->source) {
      cur->range = 0;
      cur->page = 0;
      cur->source_entered = false;
    }
  }
  sp__merge_reset_lookahead(e);
}

void sp__scan_forget_all(struct sp_engine *e) {
  for (size_t i = 0; i < e->nsources; i++) {
    struct sp_source *src = e->sources[i];
    sp__source_apply_pending_hints(src); /* the cursor goes back to the start */
    for (size_t r = 0; r < src->nranges; r++)
      sp__merge_forget_span(e, src->ranges[r], 0, e->tr.ranges[src->ranges[r]].npages, false);
  }
  e->scan.seqnr = 0;
  e->scan.cur = (struct sp_cursor){0};
  sp__merge_reset_lookahead(e);
}

bool sp__scan_inside_source(const struct sp_engine *e, size_t slot) {
  const struct sp_cursor *cur = &e->scan.cur;
  return cur->in_pass && cur->source == slot && cur->source_entered &&
         cur->range < e->sources[slot]->nranges && (cur->page || cur->sweep);
}

/* A source whose process exited or whose file vanished: drop its pages. */
static void source_gone(struct sp_engine *e, struct sp_source *src, int err) {
  src->error = err;
  sp__source_apply_pending_hints(src);
  forget_source_pages(e, src, true);
  src->present_pages = 0;
  sp__merge_reset_lookahead(e);
}

/* ---- windows ---------------------------------------------------------- */

/* Visits up to SP_BATCH_PAGES pages of the range from the cursor, charging
 * at most budget pages; advances the cursor.  Returns pages charged, or a
 * negative errno when the source is gone. */
static int64_t scan_window(struct sp_engine *e, struct sp_source *src, uint32_t range_id,
                           uint64_t budget) {
  struct sp_range *range = &e->tr.ranges[range_id];
  uint64_t first = e->scan.cur.page;
  size_t n = (size_t)(range->npages - first);
  if (n > SP_BATCH_PAGES) n = SP_BATCH_PAGES;

  uint8_t flags[SP_BATCH_PAGES];
  uint8_t want[SP_BATCH_PAGES];
  uint32_t refs[SP_BATCH_PAGES];
  bool skip_checked[SP_BATCH_PAGES]; /* smart scan asked before the read (set where want is) */
  if (src->ops->presence) {
    int err = src->ops->presence(src, range->start + first * SP_PAGE_SIZE, n, flags);
    if (err == -ESRCH) return err;
    if (err) {
      /* A transient failure (pagemap: -EIO, -ENOMEM, -EINTR) says nothing
       * about the pages: skip this window with its records as they are, so
       * the VM keeps its merges; the next pass reads it again. */
      e->scan.cur.page = first + n;
      return 0;
    }
    /* Nothing here: jump to the next present page in one go (sparse
     * ranges can span terabytes). */
    bool any = false;
    /* Zero-page mappings count while the engine has pages it merged into
     * the zero page: they may be those pages, which must stay counted. */
    uint8_t wanted = e->merge.ksm_zero_pages ? PAGE_PRESENT | PAGE_ZERO_MAPPED : PAGE_PRESENT;
    for (size_t i = 0; i < n && !any; i++) any = flags[i] & wanted;
    uint64_t next;
    if (!any && src->ops->next_present &&
        src->ops->next_present(src, range->start + first * SP_PAGE_SIZE,
                               range->start + range->npages * SP_PAGE_SIZE, &next) == 0) {
      uint64_t next_page = (next - range->start) / SP_PAGE_SIZE;
      if (next_page > first + n) {
        sp__merge_forget_span(e, range_id, first, next_page, true);
        e->scan.cur.page = next_page;
        return 0;
      }
    }
  } else {
    memset(flags, PAGE_PRESENT, n);
  }

  /* Guest page-flag hints: pages the guest reports free are not scanned
   * (as if absent); in the first sweep only page-cache pages are, in the
   * second only the others. */
  const uint8_t *hints = sp__range_hinted(src, range) ? src->hints : NULL;

  /* Decide what to read: absent pages leave tracking, skipped pages are
   * not read, and the budget counts pages that will really be scanned. */
  uint64_t charged = 0;
  size_t end = n;
  for (size_t i = 0; i < n; i++) {
    want[i] = 0;
    refs[i] = SP_NIL;
    uint64_t p = first + i;
    if (hints) {
      uint64_t hi = sp__hint_index(src, range, p);
      uint8_t h = hi < src->nhints ? hints[hi] : 0;
      if ((h & SP_HINT_PAGECACHE) ? e->scan.cur.sweep != 0 : e->scan.cur.sweep != 1) continue;
      if (h & SP_HINT_FREE) flags[i] &= (uint8_t)~PAGE_PRESENT;
    }
    if (!(flags[i] & PAGE_PRESENT)) {
      uint32_t ref = sp__track_lookup(e, range_id, p);
      if (ref != SP_NIL && (flags[i] & PAGE_ZERO_MAPPED)) sp__merge_zero_mapped(e, ref);
      else if (ref != SP_NIL) sp__merge_forget(e, ref, true);
      continue;
    }
    uint32_t ref = sp__track_get_or_create(e, range_id, p);
    if (ref == SP_NIL) continue; /* ENOMEM: not tracked, like the kernel */
    range = &e->tr.ranges[range_id];
    refs[i] = ref;
    unsigned state = sp__rec_state(sp__rec_get(e, ref));
    if (state == REC_NONE) {
      sp__track_start(e, ref);
      state = REC_VOLATILE;
    }
    src->present_pages++;
    e->scan.pass_pages++;
    /* Not written since the previous visit (soft-dirty): a merged page is
     * still merged, a zero-merged one still zero; no need to read it.  An
     * eighth of them are read anyway each pass (see SP_PROC_SOFT_DIRTY). */
    bool unchanged = (flags[i] & PAGE_CLEAN) && (p + e->scan.seqnr) % 8 != 0;
    if (state == REC_ZERO) { /* not a page ksmd would scan; re-read only */
      if (unchanged) sp__merge_unread(e, ref);
      else want[i] = 1;
      skip_checked[i] = true;
      continue;
    }
    if (state == REC_STABLE && unchanged) {
      sp__merge_unread(e, ref);
      if (++charged == budget) {
        end = i + 1;
        break;
      }
      continue;
    }
    if (state != REC_STABLE && sp__merge_smart_skip(e, ref)) continue;
    skip_checked[i] = state != REC_STABLE;
    want[i] = 1;
    if (++charged == budget) {
      end = i + 1;
      break;
    }
  }
  n = end;

  int err = sp__window_read(e, src, range_id, first, n, want);
  if (err < 0) return err;
  const struct sp_window *w = &e->acc.win;

  /* Which pages are in THPs: a merge splits a THP, and the split maps its
   * zero-filled subpages to the zero page outside KSM (merge.c).  Those of
   * a THP the engine has split are counted apart, not as candidates; a
   * THP not split yet is scanned like small pages. */
  uint8_t thp[SP_BATCH_PAGES];
  uint8_t present[SP_BATCH_PAGES];
  bool thp_known = false;
  if ((src->flags & SP_PROC_THP_ZERO_APART) && src->ops->thp) {
    bool any = false;
    for (size_t i = 0; i < n; i++) {
      present[i] = want[i] && w->ptrs[i];
      any |= present[i];
    }
    if (any && src->ops->thp(src, range, first, n, present, thp) == 0) thp_known = true;
  }

  for (size_t i = 0; i < n; i++) {
    if (!want[i]) continue;
    if (!w->ptrs[i]) {
      sp__merge_forget(e, refs[i], true);
      continue;
    }
    bool in_thp = thp_known && thp[i];
    if (in_thp && sp__merge_thp_split(src, range->start + (first + i) * SP_PAGE_SIZE)) {
      if (sp__page_is_zero(w->ptrs[i])) {
        src->thp_zero_pages++;
        sp__merge_forget(e, refs[i], false);
        continue;
      }
      in_thp = false;
    }
    /* A merged page found written and skipped was charged before it was
     * read; the kernel charges no skipped page, so it is given back (the
     * step goes on to the next window if it must). */
    if (sp__merge_visit(e, src, refs[i], range_id, first + i, w->ptrs[i], in_thp, skip_checked[i]))
      charged--;
  }
  sp__window_end(e);
  e->scan.cur.page = first + n;
  return (int64_t)charged;
}

/* ---- passes ----------------------------------------------------------- */

static void begin_pass(struct sp_engine *e) {
  /* Whatever the failure, the old index must go: an allocation failure
   * only means fewer unstable entries this pass. */
  sp__unstable_new_pass(e);
  e->scan.cur = (struct sp_cursor){.in_pass = true};
  sp__merge_reset_lookahead(e);
  e->scan.pass_pages = 0;
  e->scan.pass_total = e->scan.last_pass_total;
  for (size_t i = 0; i < e->nsources; i++) {
    e->sources[i]->present_pages = 0;
    e->sources[i]->thp_zero_pages = 0;
  }
}

static void end_pass(struct sp_engine *e) {
  e->scan.seqnr++;
  e->scan.last_pass_total = e->scan.pass_pages;
  e->scan.cur.in_pass = false;
  sp__merge_reset_lookahead(e);
}

void sp__scan_progress(const sp_engine *e, sp_progress *out) {
  const struct sp_scan *s = &e->scan;
  *out = (sp_progress){.pass = s->seqnr,
                       .pass_pages = s->cur.in_pass ? s->pass_pages : 0,
                       .pass_total = s->cur.in_pass ? s->pass_total : s->last_pass_total,
                       .pages_scanned = e->merge.pages_scanned};
}

static void report_progress(struct sp_engine *e) {
  if (!e->progress_fn || e->scan.pass_pages < e->scan.progress_next) return;
  e->scan.progress_next = e->scan.pass_pages + e->progress_interval;
  sp_progress p;
  sp__scan_progress(e, &p);
  e->progress_fn(e->progress_ctx, &p);
}

int64_t sp__scan(struct sp_engine *e, uint64_t budget) {
  if (!e->nsources) return -ENODATA;
  /* ksm_do_scan(0) never asks for a page: no pass starts, nothing moves. */
  if (!budget) return 0;
  struct sp_cursor *cur = &e->scan.cur;
  e->scan.progress_next = e->scan.pass_pages;
  uint64_t charged = 0;
  if (!cur->in_pass) begin_pass(e);
  while (charged < budget) {
    /* A request is consumed by the scan it stops, so one that arrives
     * between two passes is not lost. */
    if (atomic_exchange(&e->cancel, false)) return -ECANCELED;
    if (cur->source >= e->nsources) {
      end_pass(e);
      break;
    }
    struct sp_source *src = e->sources[cur->source];
    if (!cur->source_entered) {
      cur->source_entered = true;
      cur->range = 0;
      cur->page = 0;
      if (!src->error) {
        int err = sp__scan_refresh_ranges(e, cur->source);
        /* A range grown past 16 TiB cannot be tracked whole: the source
         * fails with that error rather than being scanned in part. */
        if (err == -ESRCH || err == -ENOENT || err == -E2BIG) source_gone(e, src, err);
      }
    }
    if (src->error || cur->range >= src->nranges) {
      cur->source++;
      cur->source_entered = false;
      continue;
    }
    uint32_t range_id = src->ranges[cur->range];
    if (cur->page >= e->tr.ranges[range_id].npages) {
      /* Hinted guest RAM is swept twice: page-cache pages first (as XLH
       * did with I/O hints), then the others. */
      if (cur->sweep == 0 && sp__range_hinted(src, &e->tr.ranges[range_id])) {
        cur->sweep = 1;
      } else {
        cur->sweep = 0;
        cur->range++;
        sp__source_apply_pending_hints(src); /* set while this range was swept */
      }
      cur->page = 0;
      continue;
    }
    int64_t got = scan_window(e, src, range_id, budget - charged);
    if (got < 0) {
      source_gone(e, src, (int)got);
      continue;
    }
    charged += (uint64_t)got;
    report_progress(e);
  }
  return (int64_t)charged;
}
