/*
 * samepage_cache.h - exclusive caching: host page-cache pages that a guest
 * already holds, found through an engine's tracked pages.  Part of
 * samepage.h.
 */
#ifndef SAMEPAGE_CACHE_H
#define SAMEPAGE_CACHE_H

#include "samepage_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Exclusive caching                                                    */
/* ------------------------------------------------------------------ */

#define SP_CACHE_ACT (1u << 0) /* drop matching clean pages; else dry run */

typedef struct sp_cache_result {
  uint64_t files;
  uint64_t cache_pages_total;    /* cached pages of the files */
  uint64_t cache_pages_checked;  /* of those, read and looked up (not one evicted before its read) */
  uint64_t cache_pages_in_guest; /* found among the tracked guest pages */
  uint64_t cache_pages_dropped;  /* dropped with POSIX_FADV_DONTNEED */
  uint64_t cache_bytes_reclaimed;
  uint64_t dirty_skipped;        /* matching but dirty or under writeback */
  uint64_t errors;               /* files that could not be examined */
} sp_cache_result;

/* Examines the host page cache of the given files against the pages the
 * engine tracks (stable and unstable indexes; run it right after a pass).
 * With SP_CACHE_ACT, drops the matching clean pages.  Never writes file
 * contents.  Returns 0 or a negative errno (-ENODATA: nothing tracked;
 * -ECANCELED after sp_engine_cancel(), checked between files and between runs
 * of cached pages: the file being examined then has nothing dropped). */
SP_API int sp_cache_pass(sp_engine *engine, const char *const *paths, size_t npaths,
                  uint32_t flags, sp_cache_result *out);

#ifdef __cplusplus
}
#endif

#endif /* SAMEPAGE_CACHE_H */
