/*
 * tracking.h - ranges and tracking records (the kernel's rmap_items).
 *
 * Records are created and released here, and only here; so are the
 * counters of tracking (e->tr: rmap_items, tracked, chunks, directory
 * bytes) and each source's rmap_items.  A record must be out of every
 * index before it is released: the layers above take it out (merge.c's
 * sp__merge_forget()) and then call sp__track_release().
 *
 * Callers name a page by (range id, page index) and a record by its ref;
 * how a range finds its records (today a chunk directory per range) is
 * private to tracking.c.  Records are keyed by address as the kernel's
 * rmap_items are: when the ranges of a source change (a VMA split or
 * merge), the scan layer moves each record to the range that now holds its
 * address (sp__track_move()) instead of dropping it.
 */
#ifndef SP_TRACKING_H
#define SP_TRACKING_H

#include "internal.h"

#pragma GCC visibility push(hidden)

/* Range table.  Create and resize refuse a range of more than
 * SP_RANGE_MAX_PAGES pages with -E2BIG; -ENOMEM.  Resize and destroy need
 * the records of the pages they drop already released. */
int sp__range_create(struct sp_engine *e, uint32_t source_slot,
                     const struct sp_range_spec *spec, uint32_t *id_out);
int sp__range_resize(struct sp_engine *e, uint32_t range_id, uint64_t npages);
void sp__range_destroy(struct sp_engine *e, uint32_t range_id);

/* The record of page `page` of range `range_id`, or SP_NIL. */
uint32_t sp__track_lookup(const struct sp_engine *e, uint32_t range_id, uint64_t page);
/* The same, allocating the chunk when needed (SP_NIL on ENOMEM).  The
 * record may still be REC_NONE: sp__track_start() makes it one. */
uint32_t sp__track_get_or_create(struct sp_engine *e, uint32_t range_id, uint64_t page);
/* Starts tracking a page (REC_NONE before): the kernel allocates an
 * rmap_item on its first visit. */
void sp__track_start(struct sp_engine *e, uint32_t ref);
/* Ends tracking a page whose record is in no index: the record becomes
 * REC_NONE and an empty chunk is freed. */
void sp__track_release(struct sp_engine *e, uint32_t ref);
/* Moves a record to another page's slot (`to`, from
 * sp__track_get_or_create(), still REC_NONE) of the same source: a VMA
 * split or merge moved its page to another range, and the kernel, whose
 * rmap_items are keyed by address, keeps it as it is.  `from` becomes
 * REC_NONE; the caller has already re-pointed every index at `to`. */
void sp__track_move(struct sp_engine *e, uint32_t from, uint32_t to);
/* A record that stays but for which the kernel holds no rmap_item any more
 * (a page left on the zero page), and back. */
void sp__track_item_drop(struct sp_engine *e, uint32_t ref);
void sp__track_item_add(struct sp_engine *e, uint32_t ref);

/* Range id and page index of a ref. */
void sp__track_locate(const struct sp_engine *e, uint32_t ref, uint32_t *range_id,
                      uint64_t *page);
/* Address of a ref's page (process address, offset, guest-physical). */
uint64_t sp__track_address(const struct sp_engine *e, uint32_t ref);
/* The ref of the page after ref's page in the same range, or SP_NIL. */
uint32_t sp__track_next_page(const struct sp_engine *e, uint32_t ref);
/* The first record not REC_NONE among pages [*from, to) of a range: its
 * page goes to *from; SP_NIL when there is none.  Skips what was never
 * allocated, so a walk over a sparse range costs what it holds. */
uint32_t sp__track_next_live(const struct sp_engine *e, uint32_t range_id, uint64_t *from,
                             uint64_t to);

/* Memory spent on records and directories. */
size_t sp__tracking_bytes(const struct sp_engine *e);
/* Frees every range and chunk without releasing records one by one (the
 * engine is going away). */
void sp__tracking_free(struct sp_engine *e);

#pragma GCC visibility pop

#endif
