/*
 * internal.h - the engine's private state (struct sp_engine) and the
 * definitions every internal module shares.  Internal names carry the
 * sp__ prefix and hidden visibility: only the public API (samepage.h) is
 * exported from the library and the addon.
 *
 * Modules, each depending only on those before it (checked by
 * scripts/check-includes.py, a ctest):
 *   leaves    hash, index, ccache (content cache), procmaps, elfcore
 *   internal  this header
 *   tracking  ranges and records (tracking.h)
 *   access    the window, reading and comparing pages, the sources
 *             (access.h, sources.h, source_*.c)
 *   stable / unstable  the two KSM indexes (stable.h, unstable.h)
 *   merge     cmp_and_merge_page, zero pages, smart scan, lookahead
 *   scan      windows, the cursor, passes (scan.h)
 *   top       engine.c, report.c, cache.c (exclusive cache), live.c
 * Every counter changes in exactly one module: it lives in that module's
 * part of struct sp_engine (e->tr, e->acc, e->stable, e->unstable,
 * e->merge, e->scan) and report.c only reads it.
 *
 * Memory layout, chosen for the 32-bytes-per-tracked-page budget (the
 * kernel spends 64 per page on an rmap_item):
 *  - A range (one mergeable address range of a source) owns a table of
 *    chunk ids; a chunk holds the records of 64 consecutive pages and is
 *    allocated only once one of them is present.
 *  - A record (struct sp_rec, 16 bytes) is KSM's rmap_item reduced to what
 *    the model needs.  It is named by a 32-bit ref: chunk id * 64 + slot.
 *  - The unstable index holds refs; the stable index holds node ids.
 */
#ifndef SP_INTERNAL_H
#define SP_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ccache.h"
#include "index.h"
#include "rbtree.h"
#include "samepage.h"

#pragma GCC visibility push(hidden)

#define SP_NIL UINT32_MAX
#define SP_CHUNK_SHIFT 6
#define SP_CHUNK_PAGES (1u << SP_CHUNK_SHIFT)
#define SP_BATCH_PAGES 256 /* pages read from a source at once (1 MiB) */

/* ---- records (tracking) ----------------------------------------------- */

enum sp_rec_state {
  REC_NONE = 0,     /* no tracking record: page absent or never visited */
  REC_VOLATILE = 1, /* tracked, in no index */
  REC_UNSTABLE = 2, /* in the unstable index (maybe of an earlier pass) */
  REC_STABLE = 3,   /* mapped to a merged page (a stable node) */
  REC_ZERO = 4      /* merged into the zero page */
};
#define REC_STATE_MASK 0x07
#define REC_F_CSUM 0x08 /* csum holds the checksum of a previous visit */
#define REC_F_ITEM 0x10 /* the kernel would hold an rmap_item for it */
#define REC_F_THP 0x20  /* at its last visit, in a THP the engine had not split */

struct sp_rec {
  uint32_t csum;  /* low 32 bits of the page hash at the last visit */
  uint32_t node;  /* REC_STABLE: the stable node (regular or dup);
                     REC_UNSTABLE in an exact tree: its sp_unode */
  uint32_t next;  /* REC_STABLE: next member of that node */
  uint8_t state;  /* enum sp_rec_state | REC_F_* */
  uint8_t seq;    /* REC_UNSTABLE: low 8 bits of the pass it was indexed in */
  uint8_t age;    /* smart scan: visits while not merged, saturating */
  uint8_t skips;  /* smart scan: visits still to skip */
};

struct sp_chunk {
  uint32_t range; /* owning range id */
  uint32_t first; /* page index in the range of recs[0] */
  uint32_t live;  /* records not REC_NONE */
  uint32_t reserved;
  struct sp_rec recs[SP_CHUNK_PAGES];
};

#define RANGE_F_GUEST_RAM 0x1

struct sp_range {
  uint32_t source;      /* owning source slot */
  uint32_t flags;
  uint64_t start;       /* address of the first page */
  uint64_t npages;
  uint64_t file_offset; /* dumps: where the first page is in the file */
  /* Chunk ids by chunk index, in blocks of SP_DIR_CHUNKS allocated on
   * first use, so a sparse range of terabytes (a reserved heap, ASan's
   * shadow) costs nothing where it has no pages.  Only tracking.c looks
   * inside. */
  uint32_t **dir;
  size_t ndir;
  bool in_use;
};
/* A record names its page by a 32-bit index into its range (struct
 * sp_chunk's first), so a range holds at most 2^32 pages: 16 TiB.  Larger
 * ranges are refused with -E2BIG rather than tracked in part. */
#define SP_RANGE_MAX_PAGES (1ull << 32)
#define SP_DIR_SHIFT 12
#define SP_DIR_CHUNKS (1u << SP_DIR_SHIFT) /* 4096 chunks = 1 GiB of pages */

/* Tracking state and counters: changed only by tracking.c. */
struct sp_tracking {
  struct sp_range *ranges;
  size_t nranges, ranges_cap;
  struct sp_chunk **chunks;
  size_t nchunks, chunks_cap;
  uint32_t *free_chunks;
  size_t nfree_chunks, free_chunks_cap;
  uint64_t rmap_items;  /* records the kernel would hold an rmap_item for */
  uint64_t tracked;     /* records not REC_NONE */
  uint64_t live_chunks; /* chunks allocated */
  uint64_t dir_bytes;   /* range directories and their blocks */
};

/* ---- sources (access) -------------------------------------------------- */

/* What a source reports about each page of a window before it is read. */
#define PAGE_PRESENT 0x01  /* an anonymous page the kernel would scan */
#define PAGE_THP 0x02      /* part of a transparent huge page */
#define PAGE_CLEAN 0x04    /* not written since the source's previous visit */
#define PAGE_ZERO_MAPPED 0x08 /* maps the shared zero page: a read fault's, or
                                the one KSM puts there under use_zero_pages */

struct sp_range_spec {
  uint64_t start;
  uint64_t npages;
  uint64_t file_offset;
  uint32_t flags;
};

struct sp_source;

struct sp_source_ops {
  /* Current ranges, sorted and non-overlapping.  *out is malloc'd. */
  int (*ranges)(struct sp_source *src, struct sp_range_spec **out, size_t *n);
  /* PAGE_* flags of npages pages from addr.  NULL op: all present.
   * -ESRCH: the source is gone; any other error is taken as transient
   * (the window is skipped, its records kept). */
  int (*presence)(struct sp_source *src, uint64_t addr, size_t npages,
                  uint8_t *flags);
  /* Reads the pages whose want[i] is set: ptrs[i] points at the contents
   * (in place, or in buf + i*4096) or is NULL when that page could not be
   * read.  A negative return means the whole source is gone. */
  int (*read)(struct sp_source *src, const struct sp_range *range,
              uint64_t first, size_t npages, const uint8_t *want,
              uint8_t *buf, const void **ptrs);
  /* For the pages whose want[i] is set, thp[i] = 1 when the page is part
   * of a transparent huge page.  NULL op or error: unknown. */
  int (*thp)(struct sp_source *src, const struct sp_range *range,
             uint64_t first, size_t npages, const uint8_t *want, uint8_t *thp);
  /* The address of the first page at or after addr (below end) that
   * presence() would report present, or end.  NULL op or error: unknown. */
  int (*next_present)(struct sp_source *src, uint64_t addr, uint64_t end,
                      uint64_t *next);
  /* The physical frame a page is mapped to now, 0 when unknown (PFNs
   * hidden without root, not present, or a source without frames).  NULL
   * op: never known. */
  uint64_t (*frame)(struct sp_source *src, const struct sp_range *range, uint64_t page);
  /* Whether the page is one ksmd's get_mergeable_page() would find now:
   * present, anonymous, not the zero page.  NULL op: always (memory that
   * cannot lose its pages). */
  bool (*mapped)(struct sp_source *src, const struct sp_range *range, uint64_t page);
  void (*destroy)(struct sp_source *src);
};

struct sp_source {
  uint32_t id;
  sp_source_kind kind;
  pid_t pid;
  char name[SP_NAME_MAX];
  uint32_t flags;
  const struct sp_source_ops *ops;
  void *impl;
  uint32_t *ranges; /* range ids sorted by address */
  size_t nranges;
  uint64_t guest_ram_start, guest_ram_bytes;
  uint8_t *hints; /* page-flag hints per guest-RAM page, or NULL */
  size_t nhints;
  /* Hints set while the cursor was inside one of this source's ranges:
   * they replace `hints` when it leaves that range (see
   * sp_source_set_hints()). */
  bool hints_pending;
  uint8_t *next_hints;
  size_t next_nhints;
  /* ksm_stat figures, each changed by one module: */
  uint64_t rmap_items;    /* tracking */
  uint64_t merging_pages; /* stable */
  uint64_t zero_pages;    /* merge */
  /* the engine's own */
  uint64_t present_pages, thp_zero_pages; /* scan */
  uint64_t pages_lost;                    /* merge */
  /* THPs the engine has split (a merge of one of their pages), by address
   * >> 21, sorted: the source still shows them whole, KSM would not. */
  uint64_t *thp_split;
  size_t nthp_split, thp_split_cap;
  int error;
};

/* The window being visited: compares can use its pages already read. */
struct sp_window {
  uint32_t range;
  uint64_t first;
  size_t n;
  const void *ptrs[SP_BATCH_PAGES];
};

/* Page access state and counters: changed only by access.c. */
struct sp_access {
  uint64_t full_compares; /* full 4 KiB byte compares */
  uint64_t bytes_read;    /* bytes read from sources */
  struct sp_window win;
  const struct sp_window *window; /* &win while a window is visited */
  uint8_t *batch_buf;             /* SP_BATCH_PAGES pages */
  /* Scratch pages for reading a compared page: page_buf for the unstable
   * index and the exclusive cache, page_buf2 for merged contents. */
  uint8_t *page_buf;
  uint8_t *page_buf2;
};

/* ---- stable index ----------------------------------------------------- */

enum sp_snode_kind { SN_FREE = 0, SN_REGULAR, SN_CHAIN, SN_DUP };

/* One struct in three roles, as the kernel's ksm_stable_node: a regular
 * node (a merged page in the index), a chain (a content in the index whose
 * mappings exceed max_page_sharing) or a dup (one merged page of a chain). */
struct sp_snode {
  uint64_t hash;     /* content hash */
  union {
    uint32_t members;  /* REGULAR/DUP: first member record */
    uint32_t pruned_ms;/* CHAIN: stable.c's now_ms() at its creation or last
                          full dup walk (the kernel's chain_prune_time) */
  };
  union {
    uint32_t count;    /* REGULAR/DUP: members (rmap_hlist_len) */
    uint32_t walked;   /* CHAIN: the last search that walked it (stable.c) */
  };
  uint32_t link;     /* DUP: its chain; CHAIN: first dup */
  uint32_t cache;    /* REGULAR/CHAIN: content cache entry or SP_NIL */
  /* Each node in one role at a time: 40 bytes with the tree's links. */
  union {
    struct sp__rb_links rb; /* REGULAR/CHAIN: place in the content order */
    uint32_t next;          /* DUP: next dup of the chain; FREE: next free node */
  };
  uint8_t kind;
};
_Static_assert(sizeof(struct sp_snode) == 40, "a stable node costs 40 bytes per merged page");

/* Where a chain sits in the stable tree: a search reaches it when its page
 * sorts strictly between the two bounds (SP_NIL: unbounded).  The keys are
 * the bounds' first 8 bytes, big-endian, which decide most compares
 * without fetching the contents. */
struct sp_chain_bounds {
  uint32_t chain, depth;
  uint32_t below, above;
  uint64_t below_key, above_key;
  bool below_keyed, above_keyed; /* false: the contents were not at hand */
};

/* The stable index, its content cache and counters: changed only by
 * stable.c. */
struct sp_stable {
  struct sp_snode *nodes;
  size_t cap, nused;
  uint32_t free_head;
  struct sp_index index; /* contents: REGULAR and CHAIN nodes */
  /* The same nodes in the kernel's stable tree order (memcmp of contents):
   * where a search passes decides when a chain is walked. */
  struct sp__rbtree tree;
  uint32_t *chains;      /* the CHAIN nodes, in no order */
  size_t nchains, chains_cap;
  uint64_t shape_seq;    /* bumped by every change to the tree's shape */
  /* Each chain's interval in the tree, shallowest first, as of walk_seq
   * (stable.c's search_walks_chains()); chains_cap entries. */
  struct sp_chain_bounds *walk;
  size_t nwalk;
  uint64_t walk_seq;
  uint32_t search_serial;
  struct sp__ccache cache; /* copies of merged contents, by content node */
  uint64_t pages_shared, pages_sharing, stable_node_chains, stable_node_dups;
  uint64_t contents;     /* REGULAR nodes and CHAIN nodes with a dup */
  uint64_t compares;     /* index entries compared with a page */
  uint64_t room_opened_seq; /* pass+1 in which a full merged page got room */
};

/* ---- unstable index --------------------------------------------------- */

/* Changed only by unstable.c. */
/* A node of the kernel-shaped unstable tree (exact_trees): the
 * record it stands for, or the next free node. */
struct sp_unode {
  uint32_t ref;
  struct sp__rb_links links;
};

struct sp_unstable {
  struct sp_index index; /* refs, keyed by hash (the default) */
  /* exact_trees, latched when a pass begins: the pass's entries
   * are in `tree` (ordered by memcmp of the pages as they are at each
   * compare) instead of `index`; a REC_UNSTABLE record's node is its
   * sp_unode. */
  bool exact;
  struct sp__rbtree tree;
  struct sp_unode *nodes;
  uint32_t nnodes, cap_nodes, free_node;
  uint64_t pages_unshared;
  uint64_t compares;
};

/* ---- merge ------------------------------------------------------------ */

struct sp_lookahead {
  bool valid;
  uint32_t range;      /* range of the page that matched */
  uint64_t next_page;  /* the page after it */
  uint32_t partner;    /* ref of the partner page */
};

/* cmp_and_merge_page()'s state and counters: changed only by merge.c. */
struct sp_merge {
  struct sp_lookahead la;
  uint64_t pages_scanned, pages_skipped, ksm_zero_pages;
  uint64_t lookahead_hits, lookahead_misses, lookahead_early;
  uint64_t compares;      /* lookahead compares */
  uint64_t pages_lost, pages_unread;
};

/* ---- scan ------------------------------------------------------------- */

struct sp_cursor {
  bool in_pass;
  size_t source;       /* index into engine->sources */
  size_t range;        /* index into the source's ranges */
  uint64_t page;       /* next page in that range */
  bool source_entered; /* ranges refreshed for this source in this pass */
  uint8_t sweep;       /* hinted guest RAM: 0 page-cache pages, 1 the rest */
};

/* Changed only by scan.c. */
struct sp_scan {
  struct sp_cursor cur;
  uint64_t seqnr;           /* full_scans */
  uint64_t pass_pages, pass_total, last_pass_total;
  uint64_t progress_next;
};

/* ---- the engine ------------------------------------------------------- */

struct sp_engine {
  sp_settings settings;
  uint64_t zero_hash;

  struct sp_source **sources; /* scan order */
  size_t nsources, sources_cap;
  uint32_t next_source_id;

  struct sp_tracking tr;
  struct sp_access acc;
  struct sp_stable stable;
  struct sp_unstable unstable;
  struct sp_merge merge;
  struct sp_scan scan;

  atomic_bool cancel;
  sp_progress_fn progress_fn;
  void *progress_ctx;
  uint64_t progress_interval;
};

/* ---- helpers every layer may use -------------------------------------- */

static inline struct sp_rec *sp__rec_get(const struct sp_engine *e, uint32_t ref) {
  return &e->tr.chunks[ref >> SP_CHUNK_SHIFT]->recs[ref & (SP_CHUNK_PAGES - 1)];
}
static inline unsigned sp__rec_state(const struct sp_rec *r) {
  return r->state & REC_STATE_MASK;
}
static inline void sp__rec_set_state(struct sp_rec *r, unsigned state) {
  r->state = (uint8_t)((r->state & ~REC_STATE_MASK) | state);
}
/* The source owning a ref. */
static inline struct sp_source *sp__rec_source(const struct sp_engine *e, uint32_t ref) {
  uint32_t range = e->tr.chunks[ref >> SP_CHUNK_SHIFT]->range;
  return e->sources[e->tr.ranges[range].source];
}

/* The next run of non-zero bytes in mask[0..n) at or after *from: its start
 * goes to *from, its end is returned; *from == n and n when none is left.
 * Sources read, and the cache pass drops, one run of wanted pages at once. */
static inline size_t sp__next_run(const uint8_t *mask, size_t n, size_t *from) {
  size_t i = *from;
  while (i < n && !mask[i]) i++;
  *from = i;
  while (i < n && mask[i]) i++;
  return i;
}

/* Whether page-flag hints describe a range: a process's guest RAM, a
 * dump (addressed by guest-physical address) or caller memory. */
static inline bool sp__range_hinted(const struct sp_source *src, const struct sp_range *r) {
  return src->hints && (src->kind != SP_SOURCE_PROCESS || (r->flags & RANGE_F_GUEST_RAM));
}
/* The hint index of page p of a hinted range: guest pages from 0. */
static inline uint64_t sp__hint_index(const struct sp_source *src, const struct sp_range *r,
                                      uint64_t p) {
  return src->kind == SP_SOURCE_DUMP ? r->start / SP_PAGE_SIZE + p : p;
}

#pragma GCC visibility pop

#endif
