/*
 * scan.h - ksmd's loop: passes, the cursor over sources, ranges and pages,
 * and windows of up to 1 MiB.  Changes e->scan only (the cursor, full
 * scans, pass progress) and each source's present_pages and
 * thp_zero_pages; keeps each source's range list in step with it.
 */
#ifndef SP_SCAN_H
#define SP_SCAN_H

#include "internal.h"

#pragma GCC visibility push(hidden)

/* Scans until budget pages were charged or the pass ended; pages charged,
 * -ECANCELED, -ENODATA without sources. */
int64_t sp__scan(struct sp_engine *e, uint64_t budget);

/* Puts a new source in the scan order (__ksm_enter(): just behind the
 * cursor, so a pass in progress does not reach it); -ENOMEM. */
int sp__scan_add_source(struct sp_engine *e, struct sp_source *src);
/* Takes the source at slot `at` out of the scan order, forgetting its
 * pages; the caller frees it. */
void sp__scan_remove_source(struct sp_engine *e, size_t at);
/* Brings a source's ranges up to date (the kernel walks the VMAs live):
 * ranges that still start at the same address keep their records. */
int sp__scan_refresh_ranges(struct sp_engine *e, size_t slot);
/* Forgets every page of every source (their ranges stay), and starts
 * again from full_scans 0, as writing 2 to ksm/run. */
void sp__scan_forget_all(struct sp_engine *e);
/* Whether the cursor is inside one of the ranges of the source at `slot`
 * (hints set then wait for its next range). */
bool sp__scan_inside_source(const struct sp_engine *e, size_t slot);
/* The pass in progress, or the last. */
void sp__scan_progress(const struct sp_engine *e, sp_progress *out);

#pragma GCC visibility pop

#endif
