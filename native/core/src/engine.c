/*
 * engine.c - the engine object: lifetime, settings, sources joining and
 * leaving, and the scan entry points (the loop itself is scan.c).
 */
#include "engine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "hash.h"
#include "scan.h"
#include "stable.h"
#include "tracking.h"
#include "unstable.h"

void sp_settings_default(sp_settings *out) {
  *out = (sp_settings){.pages_to_scan = 100,
                       .max_page_sharing = 256,
                       .use_zero_pages = false,
                       .smart_scan = true,
                       .lookahead = true,
                       .content_cache_bytes = 64ull << 20,
                       .stable_node_chains_prune_millisecs = 2000};
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
  e->zero_hash = sp__hash_zero_page();
  atomic_init(&e->cancel, false);
  sp__unstable_init(e);
  if (sp__stable_init(e, settings->content_cache_bytes) || sp__access_init(e)) {
    sp_engine_destroy(e);
    return -ENOMEM;
  }
  *out = e;
  return 0;
}

void sp_engine_destroy(sp_engine *e) {
  if (!e) return;
  for (size_t i = 0; i < e->nsources; i++) sp__source_free(e->sources[i]);
  free(e->sources);
  sp__tracking_free(e);
  sp__stable_free(e);
  sp__unstable_free(e);
  sp__access_free(e);
  free(e);
}

void sp_engine_settings(const sp_engine *e, sp_settings *out) { *out = e->settings; }

int sp_engine_configure(sp_engine *e, const sp_settings *s) {
  int err = check_settings(s);
  if (err) return err;
  /* max_page_sharing_store(): only while nothing is merged. */
  if (s->max_page_sharing != e->settings.max_page_sharing && e->stable.pages_shared)
    return -EBUSY;
  if (s->content_cache_bytes != e->settings.content_cache_bytes) {
    err = sp__stable_configure_cache(e, s->content_cache_bytes);
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
  sp__scan_forget_all(e);
  sp__stable_clear(e);
  sp__unstable_clear(e);
}

/* ---- sources ---------------------------------------------------------- */

static long find_source(const struct sp_engine *e, uint32_t id) {
  for (size_t i = 0; i < e->nsources; i++)
    if (e->sources[i]->id == id) return (long)i;
  return -1;
}

int sp__source_attach(struct sp_engine *e, struct sp_source *src, uint32_t *id_out) {
  int err = sp__scan_add_source(e, src);
  if (err) {
    sp__source_free(src);
    return err;
  }
  src->id = e->next_source_id++;
  uint32_t id = src->id;
  err = sp__scan_refresh_ranges(e, (size_t)find_source(e, id));
  if (err) {
    sp_remove_source(e, id);
    return err;
  }
  if (id_out) *id_out = id;
  return 0;
}

int sp_add_memory(sp_engine *e, const char *name, const void *addr, size_t len,
                  uint32_t *id_out) {
  if (!e) return -EINVAL;
  struct sp_source *src;
  int err = sp__source_memory_open(name, addr, len, &src);
  return err ? err : sp__source_attach(e, src, id_out);
}

int sp_add_process(sp_engine *e, const char *name, pid_t pid, uint32_t flags,
                   uint32_t *id_out) {
  if (!e) return -EINVAL;
  struct sp_source *src;
  int err = sp__source_process_open(name, pid, flags, &src);
  return err ? err : sp__source_attach(e, src, id_out);
}

int sp_add_dump(sp_engine *e, const char *name, const char *path, uint32_t flags,
                uint32_t *id_out) {
  if (!e) return -EINVAL;
  struct sp_source *src;
  int err = sp__source_dump_open(name, path, flags, &src);
  return err ? err : sp__source_attach(e, src, id_out);
}

int sp_remove_source(sp_engine *e, uint32_t id) {
  long at = find_source(e, id);
  if (at < 0) return -ENOENT;
  struct sp_source *src = e->sources[at];
  sp__scan_remove_source(e, (size_t)at);
  sp__source_free(src);
  return 0;
}

int sp_source_set_hints(sp_engine *e, uint32_t id, const uint8_t *hints, size_t npages) {
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
  if (!sp__scan_inside_source(e, (size_t)at)) sp__source_apply_pending_hints(src);
  return 0;
}

/* ---- scanning --------------------------------------------------------- */

void sp_engine_progress(const sp_engine *e, sp_progress *out) { sp__scan_progress(e, out); }

void sp_engine_set_progress(sp_engine *e, sp_progress_fn fn, void *ctx,
                            uint64_t interval_pages) {
  e->progress_fn = fn;
  e->progress_ctx = ctx;
  e->progress_interval = interval_pages ? interval_pages : 65536;
}

void sp_engine_cancel(sp_engine *e) { atomic_store(&e->cancel, true); }
void sp_engine_clear_cancel(sp_engine *e) { atomic_store(&e->cancel, false); }

int64_t sp_engine_step(sp_engine *e, uint64_t max_pages) {
  return sp__scan(e, max_pages ? max_pages : e->settings.pages_to_scan);
}

int64_t sp_engine_pass(sp_engine *e) { return sp__scan(e, UINT64_MAX); }
