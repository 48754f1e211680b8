/*
 * samepage.h - the samepage engine: a userspace model of Linux 6.12 KSM.
 *
 * The engine scans pages from sources (caller memory, live processes,
 * memory dumps) in the order ksmd would, applies the same rules
 * (checksum gate, zero pages, stable index, unstable index, chains and dups
 * at max_page_sharing, smart scan) and keeps the same counters.  It never
 * writes the memory it scans: merges are modelled, not made.
 *
 * Conventions
 *  - Every function that can fail returns 0 (or a count) on success and a
 *    negative errno value on failure.  No global state, no printing.
 *  - The caller owns what it passes in.  Memory given to sp_add_memory() must
 *    stay mapped until the source is removed or the engine destroyed.
 *  - One engine is used by one thread at a time, except sp_engine_cancel(),
 *    which any thread may call at any time.
 *
 * The model in one paragraph: a tracking record per scanned page holds a
 * 64-bit content hash.  A page that is not merged is a candidate only when
 * its hash is unchanged since its previous visit (so a new page needs two
 * passes).  A candidate is merged into the zero page (use_zero_pages), then
 * looked up among merged contents (the stable index), then searched for in
 * or inserted into the unstable index, which is emptied at the start of every
 * full pass.  Equality is always decided by a full 4 KiB byte compare; the
 * hash only orders the indexes and detects change.
 *
 * The API is split by concern, each header usable on its own:
 *   samepage_common.h  sizes, the engine handle, sp_strerror(), sp_page_hash()
 *   samepage_engine.h  the engine: settings, sources, scanning, results
 *   samepage_cache.h   exclusive caching against an engine's pages
 *   samepage_live.h    live KSM state of processes (no engine)
 * This header includes them all.
 */
#ifndef SAMEPAGE_H
#define SAMEPAGE_H

#include "samepage_common.h"
#include "samepage_engine.h"
#include "samepage_cache.h"
#include "samepage_live.h"

#endif /* SAMEPAGE_H */
