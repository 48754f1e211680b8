/*
 * merge.h - what happens to one page: cmp_and_merge_page() (mm/ksm.c,
 * 6.12) with zero pages, the smart-scan schedule and lookahead in front of
 * the index searches; and taking a page out of every index when it goes.
 * Changes e->merge only (pages_scanned, pages_skipped, ksm_zero_pages,
 * lookahead, pages_lost, pages_unread) and each source's zero_pages and
 * pages_lost.
 */
#ifndef SP_MERGE_H
#define SP_MERGE_H

#include "internal.h"

#pragma GCC visibility push(hidden)

/* Visits a page read in this pass (ref's record is not REC_NONE).  Returns
 * true when smart scan skipped it after all: a merged page found written
 * is not a KSM page any more, and the kernel decides its skip only then
 * (it is not charged to pages_to_scan); so is one that was merged when its
 * window was picked (skip_checked false) and has lost its merged page since
 * (a visit before it in the window dropped the node).  `in_thp`: the page
 * is part of a THP the engine has not split (only known with
 * SP_PROC_THP_ZERO_APART). */
bool sp__merge_visit(struct sp_engine *e, struct sp_source *src, uint32_t ref,
                     uint32_t range, uint64_t page_index, const void *page,
                     bool in_thp, bool skip_checked);
/* Has the engine split the THP holding `address` of `src`? */
bool sp__merge_thp_split(const struct sp_source *src, uint64_t address);
/* A page not read because it was not written since its previous visit
 * (soft-dirty): a merged page is still merged, a zero-merged one still on
 * the zero page.  Only for REC_STABLE and REC_ZERO records. */
void sp__merge_unread(struct sp_engine *e, uint32_t ref);
/* should_skip_rmap_item() for a page that is not a KSM page now: true when
 * smart scan skips it this pass (it leaves the unstable or stable index). */
bool sp__merge_smart_skip(struct sp_engine *e, uint32_t ref);
/* A tracked page that is no longer there (or left apart): out of every
 * index, its record released.  An rmap item counts as lost when `lost`. */
/* A tracked page the source found mapped to the zero page. */
void sp__merge_zero_mapped(struct sp_engine *e, uint32_t ref);
void sp__merge_forget(struct sp_engine *e, uint32_t ref, bool lost);
/* The same for every tracked page in [from, to) of a range. */
void sp__merge_forget_span(struct sp_engine *e, uint32_t range_id, uint64_t from,
                           uint64_t to, bool lost);
/* The page of record `from` is now page `to` of another range of the same
 * source (a VMA split or merge): the record moves with what it holds, in
 * every index, as the kernel's address-keyed rmap_item stays.  `to` comes
 * from sp__track_get_or_create() and is REC_NONE. */
void sp__merge_move(struct sp_engine *e, uint32_t from, uint32_t to);
/* Lookahead starts afresh (new pass, sources changed). */
void sp__merge_reset_lookahead(struct sp_engine *e);

#pragma GCC visibility pop

#endif
