/*
 * samepage_engine.h - the engine: settings, lifetime, sources, scanning and
 * results.  Part of samepage.h.
 */
#ifndef SAMEPAGE_ENGINE_H
#define SAMEPAGE_ENGINE_H

#include "samepage_common.h"

#ifdef __cplusplus
extern "C" {
#endif


/* ------------------------------------------------------------------ */
/* Settings                                                             */
/* ------------------------------------------------------------------ */

typedef struct sp_settings {
  /* Pages charged per sp_engine_step() call when it is given 0, as ksmd's
   * pages_to_scan.  Pages skipped by smart scan are not charged.  0 is
   * valid, as in the kernel: such a step scans nothing. */
  uint32_t pages_to_scan;
  /* Most mappings one merged page may have before a new copy (a dup of the
   * same content, under a chain) is started.  At least 2.  Like the kernel,
   * it can only change while nothing is merged (-EBUSY otherwise). */
  uint32_t max_page_sharing;
  /* Merge zero-filled candidates into the zero page (ksm_zero_pages)
   * instead of the stable and unstable indexes. */
  bool use_zero_pages;
  /* Skip pages that keep failing to merge (6.7+ smart scan schedule). */
  bool smart_scan;
  /* Before any index search, compare the page after the last match with the
   * page after its partner.  Changes work only, never the result. */
  bool lookahead;
  /* Upper bound on the cache of merged contents kept to compare against
   * without re-reading a source.  0 disables the cache. */
  uint64_t content_cache_bytes;
  /* As the kernel's knob: a lookup walks every dup of a chain (the fullest
   * with room takes the merge) at most once per this many milliseconds of
   * CLOCK_MONOTONIC per chain, counted from the chain's creation, and
   * otherwise stops at the first dup with room.  0: every lookup walks. */
  uint32_t stable_node_chains_prune_millisecs;
  /* Walk both trees node by node as the kernel does: the unstable one
   * ordered by memcmp of the pages as they are at each compare (a page
   * written after it was indexed can send a later search the wrong way; a
   * search gives up, without indexing its page, when a page on its path is
   * gone), and every stable node a descent passes checked for a merged page
   * that lost all its mappings (dropped there).  Costs a page read per tree
   * level; off, hash indexes find the same matches wherever pages do not
   * change or go within a pass.  The unstable part takes effect at the
   * next pass. */
  bool exact_trees;
  /* Research, not the kernel: with lookahead on, a page that continues a
   * run (equal to the page after the last match's partner) merges even
   * when the volatility gate would hold it back (its first visit, or
   * changed since the previous one), so runs of new copies merge a pass
   * sooner.  Only a lookahead hit passes: a miss waits for the gate as
   * before, and nothing ungated enters the unstable index.  Changes the
   * result, unlike lookahead itself; off by default, and the kernel series
   * has no such mode. */
  bool lookahead_early;
} sp_settings;

/* Fills *out with the kernel's defaults (pages_to_scan 100,
 * max_page_sharing 256, use_zero_pages off, smart_scan on,
 * stable_node_chains_prune_millisecs 2000) plus
 * lookahead on, a 64 MiB content cache and the hashed unstable index. */
SP_API void sp_settings_default(sp_settings *out);

/* ------------------------------------------------------------------ */
/* Engine lifetime                                                      */
/* ------------------------------------------------------------------ */

/* Creates an engine.  settings may be NULL for the defaults.
 * -EINVAL for an invalid setting, -ENOMEM. */
SP_API int sp_engine_create(const sp_settings *settings, sp_engine **out);

/* Frees the engine and every source it owns (but not caller memory). */
SP_API void sp_engine_destroy(sp_engine *engine);

/* Applies new settings.  Changing max_page_sharing while merged contents
 * exist returns -EBUSY (as writing the sysfs file does); call
 * sp_engine_unmerge_all() first.  -EINVAL for an invalid value. */
SP_API int sp_engine_configure(sp_engine *engine, const sp_settings *settings);
SP_API void sp_engine_settings(const sp_engine *engine, sp_settings *out);

/* Like writing 2 to /sys/kernel/mm/ksm/run: forgets every merge and
 * tracking record and resets full_scans to 0.  Sources stay. */
SP_API void sp_engine_unmerge_all(sp_engine *engine);

/* ------------------------------------------------------------------ */
/* Sources                                                              */
/* ------------------------------------------------------------------ */

typedef enum sp_source_kind {
  SP_SOURCE_MEMORY = 1,  /* caller memory, read in place */
  /* A live process, read through /proc/PID/mem, never process_vm_readv():
   * that pins the pages it reads, and pinning a KSM page unshares it
   * (gup_must_unshare()), so the scan would undo the merging it measures. */
  SP_SOURCE_PROCESS = 2,
  /* A raw or ELF memory dump file.  Holes of a sparse file are absent
   * pages (never read, never counted), like unwritten memory of a guest. */
  SP_SOURCE_DUMP = 3
} sp_source_kind;

/* sp_add_process() flags (and SP_PROC_ALL_ANON, in samepage_common.h) */
/* Scan only the QEMU guest-RAM range (the process must look like QEMU). */
#define SP_PROC_GUEST_RAM_ONLY (1u << 1)
/* Model transparent huge pages as ksmd meets them: a merge of one of a
 * THP's pages splits it first, and the split maps the THP's zero-filled
 * subpages to the zero page, outside KSM's counters, where they are left
 * out from then on; until then they are scanned like any page.  Two equal
 * pages inside one THP do not merge on the pass that splits it (6.12's
 * cmp_and_merge_page()), and a zero-filled page a split maps away merges
 * with nothing.  The engine remembers the THPs it split: the process's
 * memory is not changed.  THPs are found through /proc/kpageflags as root;
 * without root through PAGEMAP_SCAN's HUGE category, which sees PMD-mapped
 * THPs only.
 * (Pages mapped to the zero page are left out with or without root: by PFN,
 * or by PAGEMAP_SCAN's PFNZERO category when PFNs are hidden.) */
#define SP_PROC_THP_ZERO_APART (1u << 2)
/* Read again only the pages written since the previous pass (soft-dirty
 * bits: /proc/PID/clear_refs, bit 55 of pagemap); a rolling eighth of the
 * merged pages is read anyway each pass, so a write lost in the short race
 * between reading the bits and clearing them is caught within 8 passes.
 * Costs the process a minor fault on its next write to each page after a
 * pass, and clashes with other soft-dirty users (CRIU): opt in. */
#define SP_PROC_SOFT_DIRTY (1u << 3)

/* sp_add_dump() flags */
#define SP_DUMP_RAW (1u << 0) /* treat the file as raw memory even if ELF */

typedef struct sp_source_info {
  uint32_t id;
  sp_source_kind kind;
  int pid;                    /* SP_SOURCE_PROCESS, else 0 */
  char name[SP_NAME_MAX];
  uint32_t ranges;            /* address ranges currently scanned */
  uint64_t pages;             /* pages in those ranges */
  uint64_t present_pages;     /* pages seen present on the last visit */
  /* The kernel's per-process figures (/proc/PID/ksm_stat). */
  uint64_t rmap_items;        /* tracking records (the kernel's rmap_items) */
  uint64_t merging_pages;     /* pages mapped to a merged page */
  uint64_t zero_pages;        /* pages merged into the zero page */
  int64_t profit;             /* (merging + zero) * 4096 - rmap_items * 64 */
  /* The engine's own. */
  uint64_t thp_zero_pages;    /* zero-filled THP subpages left apart */
  uint64_t pages_lost;        /* tracked pages that vanished or failed to read */
  uint64_t guest_ram_start;   /* QEMU guest RAM: address and length, else 0 */
  uint64_t guest_ram_bytes;
  int error;                  /* 0, or -errno once the source is gone
                                 (-E2BIG: a range grew over 16 TiB) */
} sp_source_info;

/* Adds a source; *id_out receives its id (ids are never reused).
 * name may be NULL.  -EINVAL, -ENOMEM, and for processes -ESRCH (no such
 * process) or -EPERM/-EACCES (not allowed to read it); for dumps the
 * open/read error or -ENOEXEC for a malformed ELF file.  -E2BIG when a
 * range to scan is over 16 TiB (2^32 pages, the most one range can track);
 * a range that grows past that later fails the source with -E2BIG. */
SP_API int sp_add_memory(sp_engine *engine, const char *name, const void *addr,
                  size_t len, uint32_t *id_out);
SP_API int sp_add_process(sp_engine *engine, const char *name, pid_t pid,
                   uint32_t flags, uint32_t *id_out);
SP_API int sp_add_dump(sp_engine *engine, const char *name, const char *path,
                uint32_t flags, uint32_t *id_out);

/* Removes a source and all its pages from the model.  -ENOENT. */
SP_API int sp_remove_source(sp_engine *engine, uint32_t id);

SP_API size_t sp_source_count(const sp_engine *engine);
/* Information on the index-th source (0 <= index < sp_source_count()). */
SP_API int sp_source_get(const sp_engine *engine, size_t index, sp_source_info *out);

/* Page-flag hints published by a guest (see native/kernel patch 3): one
 * byte per guest page.  For a process source they describe its guest-RAM
 * range in RAM order (page i = byte i of the RAM block); for a dump, guest
 * pages by guest-physical address; for caller memory, its pages.  Pages
 * hinted SP_HINT_FREE are not scanned (as if absent); in each hinted range
 * the SP_HINT_PAGECACHE pages are scanned first, then the others.  The
 * engine copies the array; NULL clears the hints.  Hints set while a pass
 * is inside one of the source's ranges take effect at its next range, so
 * no page is scanned twice or skipped in that pass. */
#define SP_HINT_FREE 0x01
#define SP_HINT_PAGECACHE 0x04
SP_API int sp_source_set_hints(sp_engine *engine, uint32_t id, const uint8_t *hints,
                        size_t npages);

/* ------------------------------------------------------------------ */
/* Scanning                                                             */
/* ------------------------------------------------------------------ */

typedef struct sp_progress {
  uint64_t pass;          /* full passes completed */
  uint64_t pass_pages;    /* pages visited in the current pass */
  uint64_t pass_total;    /* pages the current pass is expected to visit */
  uint64_t pages_scanned; /* cumulative, as the counter */
} sp_progress;

/* Where the scan is: the current pass and how far into it. */
SP_API void sp_engine_progress(const sp_engine *engine, sp_progress *out);

/* Called from the scanning thread about every interval_pages pages. */
typedef void (*sp_progress_fn)(void *ctx, const sp_progress *progress);
SP_API void sp_engine_set_progress(sp_engine *engine, sp_progress_fn fn, void *ctx,
                            uint64_t interval_pages);

/* Scans until max_pages pages were charged (0 means pages_to_scan, and
 * with pages_to_scan 0 nothing is scanned), like one ksmd batch.  Returns the number of pages charged, or a negative
 * errno: -ECANCELED after sp_engine_cancel(), -ENODATA without sources. */
SP_API int64_t sp_engine_step(sp_engine *engine, uint64_t max_pages);

/* Scans until the current full pass ends (a whole pass when called between
 * passes).  Returns pages charged or a negative errno as sp_engine_step(). */
SP_API int64_t sp_engine_pass(sp_engine *engine);

/* Requests that a running step or pass return -ECANCELED soon.  Safe from
 * any thread.  The request stays until a step or pass returns -ECANCELED
 * (made before a scan, it stops the next one at once). */
SP_API void sp_engine_cancel(sp_engine *engine);
/* Drops a pending cancel request. */
SP_API void sp_engine_clear_cancel(sp_engine *engine);

/* ------------------------------------------------------------------ */
/* Results                                                              */
/* ------------------------------------------------------------------ */

typedef struct sp_counters {
  /* Same names and definitions as /sys/kernel/mm/ksm. */
  uint64_t pages_shared;
  uint64_t pages_sharing;
  uint64_t pages_unshared;
  uint64_t pages_volatile;
  uint64_t pages_skipped;
  uint64_t pages_scanned;
  uint64_t full_scans;
  uint64_t stable_node_chains;
  uint64_t stable_node_dups;
  uint64_t ksm_zero_pages;
  int64_t general_profit;
  uint64_t rmap_items;
  /* The engine's own. */
  uint64_t page_compares;   /* comparisons of a scanned page with an index
                               entry or lookahead partner */
  uint64_t full_compares;   /* of those, full 4 KiB byte compares */
  uint64_t bytes_read;      /* bytes read from sources */
  uint64_t lookahead_hits;
  uint64_t lookahead_misses;
  uint64_t lookahead_early;  /* merges of pages the gate held back
                                (lookahead_early) */
  uint64_t pages_lost;
  uint64_t pages_unread;    /* visits that needed no read (SP_PROC_SOFT_DIRTY) */
  uint64_t tracking_bytes;  /* engine memory for records and indexes */
  uint64_t tracked_pages;   /* pages with a record slot */
  uint64_t merged_contents; /* stable contents (regular nodes and chains that still have a dup) */
  uint64_t cache_bytes;     /* content cache in use */
} sp_counters;

SP_API void sp_engine_counters(const sp_engine *engine, sp_counters *out);

/* One merged page (a regular stable node, or one dup of a chain). */
typedef struct sp_group {
  uint64_t hash;          /* content hash */
  uint32_t mappings;      /* pages mapped to it */
  uint32_t dup_index;     /* 0 for a regular node; 1.. for a chain's dups */
} sp_group;

typedef struct sp_group_member {
  uint32_t source;        /* source id */
  uint64_t address;       /* virtual address (process), offset (memory),
                             guest-physical or file offset (dump) */
} sp_group_member;

/* Calls fn once per merged page with its members; stops early and returns
 * fn's value when fn returns non-zero. */
typedef int (*sp_group_fn)(void *ctx, const sp_group *group,
                           const sp_group_member *members, size_t count);
SP_API int sp_engine_groups(const sp_engine *engine, sp_group_fn fn, void *ctx);

/* Source-by-source sharing: out is n*n (n = sp_source_count(), row-major,
 * in the order of sp_source_get()).  out[i*n+j], i != j: pages of source i
 * mapped to a merged page that source j also maps.  out[i*n+i]: pages of
 * source i mapped to a merged page that another page of i also maps. */
SP_API int sp_engine_sharing_matrix(const sp_engine *engine, uint64_t *out,
                             size_t n);

#ifdef __cplusplus
}
#endif

#endif /* SAMEPAGE_ENGINE_H */
