/*
 * engine.c - the engine object and ksmd's scan loop.
 *
 * The loop follows mm/ksm.c (6.12): a cursor walks the sources in order,
 * each source's ranges by address, each range page by page.  At the start
 * of a full pass the unstable index is emptied; at its end full_scans goes
 * up.  A step stops after pages_to_scan pages (pages skipped by smart scan
 * are not charged) or at the end of a pass, as ksm_do_scan() does.
 *
 * For speed the pages of a window (up to 1 MiB) are looked at first
 * (presence, smart-scan skips, the budget), then read in one go, then
 * visited in address order; the visit (cmp_and_merge_page) is in visit.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "hash.h"
#include "sources.h"
#include "unstable.h"
#include "visit.h"

void sp_settings_default(sp_settings *out) {
  *out = (sp_settings){.pages_to_scan = 100,
                       .max_page_sharing = 256,
                       .use_zero_pages = false,
                       .smart_scan = true,
                       .lookahead = true,
                       .content_cache_bytes = 64ull << 20};
}

/* The kernel's own limits: pages_to_scan_store() takes any unsigned int
 * (0 included: ksmd then scans nothing), max_page_sharing_store() refuses
 * values below 2. */
static int check_settings(const sp_settings *s) {
  if (s->max_page_sharing < 2) return -EINVAL;
  return 0;
}

int sp_engine_create(const sp_settings *settings, sp_engine **out) {
  sp_settings defaults;
  if (!out) return -EINVAL;
  *out = NULL;
  if (!settings) {
    sp_settings_default(&defaults);
    settings = &defaults;
  }
  int err = check_settings(settings);
  if (err) return err;
  struct sp_engine *e = calloc(1, sizeof *e);
  if (!e) return -ENOMEM;
  e->settings = *settings;
  e->zero_hash = sp_hash_zero_page();
  e->la.valid = false;
  atomic_init(&e->cancel, false);
  sp_stable_init(e);
  sp_unstable_init(e);
  sp_ccache_free(&e->cache); /* sets the empty-list markers */
  e->batch_buf = malloc((size_t)SP_BATCH_PAGES * SP_PAGE_SIZE);
  e->page_buf = malloc(SP_PAGE_SIZE);
  e->page_buf2 = malloc(SP_PAGE_SIZE);
  if (!e->batch_buf || !e->page_buf || !e->page_buf2 ||
      sp_ccache_configure(&e->cache, settings->content_cache_bytes)) {
    sp_engine_destroy(e);
    return -ENOMEM;
  }
  *out = e;
  return 0;
}

/* Makes hints set mid-range the source's hints. */
static void apply_pending_hints(struct sp_source *src) {
  if (!src->hints_pending) return;
  free(src->hints);
  src->hints = src->next_hints;
  src->nhints = src->next_nhints;
  src->next_hints = NULL;
  src->next_nhints = 0;
  src->hints_pending = false;
}

static void free_hints(struct sp_source *src) {
  free(src->hints);
  free(src->next_hints);
}

static void forget_source_pages(struct sp_engine *e, struct sp_source *src,
                                bool count_lost) {
  for (size_t i = 0; i < src->nranges; i++) {
    uint64_t lost_before = e->pages_lost;
    sp_range_destroy(e, src->ranges[i]);
    if (!count_lost) {
      src->pages_lost -= e->pages_lost - lost_before;
      e->pages_lost = lost_before;
    }
  }
  free(src->ranges);
  src->ranges = NULL;
  src->nranges = 0;
}

void sp_engine_destroy(sp_engine *e) {
  if (!e) return;
  for (size_t i = 0; i < e->nsources; i++) {
    struct sp_source *src = e->sources[i];
    for (size_t r = 0; r < src->nranges; r++) {
      struct sp_range *range = &e->ranges[src->ranges[r]];
      for (size_t d = 0; d < range->ndir; d++) free(range->dir[d]);
      free(range->dir);
    }
    free(src->ranges);
    if (src->ops->destroy) src->ops->destroy(src);
    free_hints(src);
    free(src);
  }
  for (size_t i = 0; i < e->nchunks; i++) free(e->chunks[i]);
  free(e->chunks);
  free(e->free_chunks);
  free(e->ranges);
  free(e->sources);
  sp_stable_free(e);
  sp_index_free(&e->unstable);
  sp_ccache_free(&e->cache);
  free(e->batch_buf);
  free(e->page_buf);
  free(e->page_buf2);
  free(e);
}

void sp_engine_settings(const sp_engine *e, sp_settings *out) {
  *out = e->settings;
}

int sp_engine_configure(sp_engine *e, const sp_settings *s) {
  int err = check_settings(s);
  if (err) return err;
  /* max_page_sharing_store(): only while nothing is merged. */
  if (s->max_page_sharing != e->settings.max_page_sharing && e->pages_shared)
    return -EBUSY;
  if (s->content_cache_bytes != e->settings.content_cache_bytes) {
    for (size_t i = 0; i < e->stable.nused; i++) e->stable.nodes[i].cache = SP_NIL;
    err = sp_ccache_configure(&e->cache, s->content_cache_bytes);
    if (err) {
      /* The old cache is gone either way; run without one. */
      e->settings.content_cache_bytes = 0;
      return err;
    }
  }
  e->settings = *s;
  return 0;
}

void sp_engine_unmerge_all(sp_engine *e) {
  for (size_t i = 0; i < e->nsources; i++) {
    struct sp_source *src = e->sources[i];
    apply_pending_hints(src); /* the cursor goes back to the start */
    for (size_t r = 0; r < src->nranges; r++)
      sp_range_forget_span(e, src->ranges[r], 0, e->ranges[src->ranges[r]].npages, false);
  }
  sp_stable_clear(e);
  sp_index_reset(&e->unstable, 0);
  e->seqnr = 0;
  e->cur = (struct sp_cursor){0};
  e->la.valid = false;
}

/* ---- sources ---------------------------------------------------------- */

int sp_engine_add_source(struct sp_engine *e, struct sp_source *src,
                         uint32_t *id_out) {
  if (e->nsources == e->sources_cap) {
    size_t ncap = e->sources_cap ? e->sources_cap * 2 : 8;
    struct sp_source **s = realloc(e->sources, ncap * sizeof *s);
    if (!s) return -ENOMEM;
    e->sources = s;
    e->sources_cap = ncap;
  }
  src->id = e->next_source_id++;
  /* __ksm_enter(): a new mm goes just behind the cursor, so a pass in
   * progress does not reach it; it is scanned from the next pass on. */
  size_t at = e->cur.in_pass ? e->cur.source : e->nsources;
  memmove(&e->sources[at + 1], &e->sources[at],
          (e->nsources - at) * sizeof *e->sources);
  e->sources[at] = src;
  e->nsources++;
  if (e->cur.in_pass) e->cur.source++;
  /* Ranges name their source by slot: renumber after the insertion. */
  for (size_t i = at; i < e->nsources; i++)
    for (size_t r = 0; r < e->sources[i]->nranges; r++)
      e->ranges[e->sources[i]->ranges[r]].source = (uint32_t)i;
  if (id_out) *id_out = src->id;
  return 0;
}

static long find_source(const struct sp_engine *e, uint32_t id) {
  for (size_t i = 0; i < e->nsources; i++)
    if (e->sources[i]->id == id) return (long)i;
  return -1;
}

int sp_remove_source(sp_engine *e, uint32_t id) {
  long at = find_source(e, id);
  if (at < 0) return -ENOENT;
  struct sp_source *src = e->sources[at];
  forget_source_pages(e, src, false);
  if (src->ops->destroy) src->ops->destroy(src);
  free_hints(src);
  free(src);
  memmove(&e->sources[at], &e->sources[at + 1],
          (e->nsources - (size_t)at - 1) * sizeof *e->sources);
  e->nsources--;
  for (size_t i = (size_t)at; i < e->nsources; i++)
    for (size_t r = 0; r < e->sources[i]->nranges; r++)
      e->ranges[e->sources[i]->ranges[r]].source = (uint32_t)i;
  if (e->cur.in_pass) {
    if ((size_t)at < e->cur.source) {
      e->cur.source--;
    } else if ((size_t)at == e->cur.source) {
      e->cur.range = 0;
      e->cur.page = 0;
      e->cur.source_entered = false;
    }
  }
  e->la.valid = false;
  return 0;
}

/* Brings a source's ranges up to date (the kernel walks the VMAs live):
 * ranges that still start at the same address keep their records. */
static int refresh_ranges(struct sp_engine *e, size_t slot) {
  struct sp_source *src = e->sources[slot];
  struct sp_range_spec *specs = NULL;
  size_t n = 0;
  int err = src->ops->ranges(src, &specs, &n);
  if (err) return err;
  uint32_t *ids = malloc((n ? n : 1) * sizeof *ids);
  if (!ids) {
    free(specs);
    return -ENOMEM;
  }
  size_t old = 0;
  bool err_on_create = false;
  for (size_t i = 0; i < n; i++) {
    while (old < src->nranges && e->ranges[src->ranges[old]].start < specs[i].start)
      sp_range_destroy(e, src->ranges[old++]);
    if (old < src->nranges && e->ranges[src->ranges[old]].start == specs[i].start &&
        e->ranges[src->ranges[old]].file_offset == specs[i].file_offset) {
      ids[i] = src->ranges[old++];
      e->ranges[ids[i]].flags = specs[i].flags;
      err = sp_range_resize(e, ids[i], specs[i].npages);
      err_on_create = false;
    } else {
      err = sp_range_create(e, (uint32_t)slot, &specs[i], &ids[i]);
      err_on_create = true;
    }
    if (err) {
      /* Keep what was built; the rest is retried on the next visit.  A
       * range that failed to resize goes too (it is in no list any more). */
      if (!err_on_create) sp_range_destroy(e, ids[i]);
      for (size_t j = old; j < src->nranges; j++) sp_range_destroy(e, src->ranges[j]);
      n = i;
      break;
    }
  }
  if (!err)
    while (old < src->nranges) sp_range_destroy(e, src->ranges[old++]);
  free(src->ranges);
  src->ranges = ids;
  src->nranges = n;
  src->guest_ram_start = src->guest_ram_bytes = 0;
  for (size_t i = 0; i < n; i++) {
    const struct sp_range *r = &e->ranges[ids[i]];
    if (r->flags & RANGE_F_GUEST_RAM) {
      src->guest_ram_start = r->start;
      src->guest_ram_bytes = r->npages * SP_PAGE_SIZE;
    }
  }
  free(specs);
  return err;
}

int sp_source_set_hints(sp_engine *e, uint32_t id, const uint8_t *hints,
                        size_t npages) {
  long at = find_source(e, id);
  if (at < 0) return -ENOENT;
  struct sp_source *src = e->sources[at];
  uint8_t *copy = NULL;
  if (hints && npages) {
    copy = malloc(npages);
    if (!copy) return -ENOMEM;
    memcpy(copy, hints, npages);
  }
  free(src->next_hints);
  src->next_hints = copy;
  src->next_nhints = copy ? npages : 0;
  src->hints_pending = true;
  /* Mid-range changes would move pages between the two sweeps (a page
   * visited twice in a pass, another not at all): while the cursor is
   * inside one of this source's ranges, it finishes that range with the
   * old hints and the new ones apply from the next range. */
  bool mid_range = e->cur.in_pass && e->cur.source == (size_t)at && e->cur.source_entered &&
                   e->cur.range < src->nranges && (e->cur.page || e->cur.sweep);
  if (!mid_range) apply_pending_hints(src);
  return 0;
}

int sp_engine_source_init_ranges(struct sp_engine *e, uint32_t id) {
  long at = find_source(e, id);
  if (at < 0) return -ENOENT;
  return refresh_ranges(e, (size_t)at);
}

/* A source whose process exited or whose file vanished: drop its pages. */
static void source_gone(struct sp_engine *e, struct sp_source *src, int err) {
  src->error = err;
  apply_pending_hints(src);
  forget_source_pages(e, src, true);
  src->present_pages = 0;
  e->la.valid = false;
}

/* ---- the scan loop ---------------------------------------------------- */

static void begin_pass(struct sp_engine *e) {
  /* Whatever the failure, the old index must go: an allocation failure
   * only means fewer unstable entries this pass. */
  sp_unstable_new_pass(e);
  e->cur = (struct sp_cursor){.in_pass = true};
  e->la.valid = false;
  e->pass_pages = 0;
  e->pass_total = e->last_pass_total;
  for (size_t i = 0; i < e->nsources; i++) {
    e->sources[i]->present_pages = 0;
    e->sources[i]->thp_zero_pages = 0;
  }
}

static void end_pass(struct sp_engine *e) {
  e->seqnr++;
  e->last_pass_total = e->pass_pages;
  e->cur.in_pass = false;
  e->la.valid = false;
}

void sp_engine_progress(const sp_engine *e, sp_progress *out) {
  *out = (sp_progress){.pass = e->seqnr,
                       .pass_pages = e->cur.in_pass ? e->pass_pages : 0,
                       .pass_total = e->cur.in_pass ? e->pass_total : e->last_pass_total,
                       .pages_scanned = e->pages_scanned};
}

static void report_progress(struct sp_engine *e) {
  if (!e->progress_fn || e->pass_pages < e->progress_next) return;
  e->progress_next = e->pass_pages + e->progress_interval;
  sp_progress p;
  sp_engine_progress(e, &p);
  e->progress_fn(e->progress_ctx, &p);
}

void sp_engine_set_progress(sp_engine *e, sp_progress_fn fn, void *ctx,
                            uint64_t interval_pages) {
  e->progress_fn = fn;
  e->progress_ctx = ctx;
  e->progress_interval = interval_pages ? interval_pages : 65536;
  e->progress_next = 0;
}

void sp_engine_cancel(sp_engine *e) { atomic_store(&e->cancel, true); }
void sp_engine_clear_cancel(sp_engine *e) { atomic_store(&e->cancel, false); }

static int64_t scan(struct sp_engine *e, uint64_t budget) {
  if (!e->nsources) return -ENODATA;
  /* ksm_do_scan(0) never asks for a page: no pass starts, nothing moves. */
  if (!budget) return 0;
  e->progress_next = e->pass_pages;
  uint64_t charged = 0;
  if (!e->cur.in_pass) begin_pass(e);
  while (charged < budget) {
    /* A request is consumed by the scan it stops, so one that arrives
     * between two passes is not lost. */
    if (atomic_exchange(&e->cancel, false)) return -ECANCELED;
    if (e->cur.source >= e->nsources) {
      end_pass(e);
      break;
    }
    struct sp_source *src = e->sources[e->cur.source];
    if (!e->cur.source_entered) {
      e->cur.source_entered = true;
      e->cur.range = 0;
      e->cur.page = 0;
      if (!src->error) {
        int err = refresh_ranges(e, e->cur.source);
        /* A range grown past 16 TiB cannot be tracked whole: the source
         * fails with that error rather than being scanned in part. */
        if (err == -ESRCH || err == -ENOENT || err == -E2BIG) source_gone(e, src, err);
      }
    }
    if (src->error || e->cur.range >= src->nranges) {
      e->cur.source++;
      e->cur.source_entered = false;
      continue;
    }
    uint32_t range_id = src->ranges[e->cur.range];
    if (e->cur.page >= e->ranges[range_id].npages) {
      /* Hinted guest RAM is swept twice: page-cache pages first (as XLH
       * did with I/O hints), then the others. */
      if (e->cur.sweep == 0 && sp_range_hinted(src, &e->ranges[range_id])) {
        e->cur.sweep = 1;
      } else {
        e->cur.sweep = 0;
        e->cur.range++;
        apply_pending_hints(src); /* set while this range was swept */
      }
      e->cur.page = 0;
      continue;
    }
    int64_t got = sp_scan_window(e, src, range_id, budget - charged);
    if (got < 0) {
      source_gone(e, src, (int)got);
      continue;
    }
    charged += (uint64_t)got;
    report_progress(e);
  }
  return (int64_t)charged;
}

int64_t sp_engine_step(sp_engine *e, uint64_t max_pages) {
  return scan(e, max_pages ? max_pages : e->settings.pages_to_scan);
}

int64_t sp_engine_pass(sp_engine *e) { return scan(e, UINT64_MAX); }

struct sp_source *sp_source_new(sp_source_kind kind, const char *name,
                                const char *fallback) {
  struct sp_source *src = calloc(1, sizeof *src);
  if (!src) return NULL;
  src->kind = kind;
  const char *n = name && *name ? name : fallback;
  size_t len = strlen(n);
  if (len >= sizeof src->name) len = sizeof src->name - 1;
  memcpy(src->name, n, len);
  src->name[len] = '\0';
  return src;
}

int sp_source_attach(struct sp_engine *e, struct sp_source *src,
                     uint32_t *id_out) {
  uint32_t id;
  int err = sp_engine_add_source(e, src, &id);
  if (err) {
    if (src->ops->destroy) src->ops->destroy(src);
    free(src);
    return err;
  }
  err = sp_engine_source_init_ranges(e, id);
  if (err) {
    sp_remove_source(e, id);
    return err;
  }
  if (id_out) *id_out = id;
  return 0;
}
