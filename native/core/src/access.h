/*
 * access.h - page access: the window being visited, reading a tracked page
 * (from the window when it is there, else from its source) and the counted
 * full compare.  Changes e->acc only (full_compares, bytes_read).
 */
#ifndef SP_ACCESS_H
#define SP_ACCESS_H

#include "internal.h"

#pragma GCC visibility push(hidden)

/* Scratch buffers; -ENOMEM. */
int sp__access_init(struct sp_engine *e);
void sp__access_free(struct sp_engine *e);

/* Reads the pages of [first, first+n) of a range whose want[i] is set into
 * the window (e->acc.win.ptrs[i], NULL for a page that could not be read)
 * and makes it the window sp__read_ref() uses, until sp__window_end().  A
 * negative errno means the source is gone (no window is set). */
int sp__window_read(struct sp_engine *e, struct sp_source *src, uint32_t range_id,
                    uint64_t first, size_t n, const uint8_t *want);
void sp__window_end(struct sp_engine *e);

/* Current contents of a tracked page, read into buf when the source is not
 * in memory; NULL when unreadable or when ksmd's get_mergeable_page() would
 * find no page there now (sp_source_ops.mapped: gone, swapped out, the
 * zero page).  A page in the current window is taken as read. */
const void *sp__read_ref(struct sp_engine *e, uint32_t ref, uint8_t *buf);

/* The physical frame a tracked page is mapped to now, 0 when unknown. */
uint64_t sp__frame_of(struct sp_engine *e, uint32_t ref);

/* Full compare, counted. */
bool sp__pages_equal(struct sp_engine *e, const void *a, const void *b);
/* memcmp() of two pages, counted as a full compare when they are equal
 * (only then were all 4 KiB compared). */
int sp__pages_cmp(struct sp_engine *e, const void *a, const void *b);

#pragma GCC visibility pop

#endif
