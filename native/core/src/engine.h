/*
 * engine.h - the engine's private state, shared by its modules.
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
#ifndef SP_ENGINE_H
#define SP_ENGINE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "index.h"
#include "samepage.h"

#define SP_NIL UINT32_MAX
#define SP_CHUNK_SHIFT 6
#define SP_CHUNK_PAGES (1u << SP_CHUNK_SHIFT)
#define SP_BATCH_PAGES 256 /* pages read from a source at once (1 MiB) */

/* ---- records ---------------------------------------------------------- */

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

struct sp_rec {
  uint32_t csum;  /* low 32 bits of the page hash at the last visit */
  uint32_t node;  /* REC_STABLE: the stable node (regular or dup) */
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
   * shadow) costs nothing where it has no pages. */
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

/* ---- sources ---------------------------------------------------------- */

/* What a source reports about each page of a window before it is read. */
#define PAGE_PRESENT 0x01  /* an anonymous page the kernel would scan */
#define PAGE_THP 0x02      /* part of a transparent huge page */
#define PAGE_CLEAN 0x04    /* not written since the source's previous visit */

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
  /* ksm_stat figures */
  uint64_t rmap_items, merging_pages, zero_pages;
  /* the engine's own */
  uint64_t present_pages, thp_zero_pages, pages_lost;
  int error;
};

/* ---- stable index ----------------------------------------------------- */

enum sp_snode_kind { SN_FREE = 0, SN_REGULAR, SN_CHAIN, SN_DUP };

/* One struct in three roles, as the kernel's ksm_stable_node: a regular
 * node (a merged page in the index), a chain (a content in the index whose
 * mappings exceed max_page_sharing) or a dup (one merged page of a chain). */
struct sp_snode {
  uint64_t hash;     /* content hash */
  uint32_t members;  /* REGULAR/DUP: first member record */
  uint32_t count;    /* REGULAR/DUP: members (rmap_hlist_len) */
  uint32_t link;     /* DUP: its chain; CHAIN: first dup */
  uint32_t next;     /* DUP: next dup of the chain; FREE: next free node */
  uint32_t cache;    /* REGULAR/CHAIN: content cache entry or SP_NIL */
  uint32_t prune_seq;/* CHAIN: pass of the last full dup walk */
  uint8_t kind;
};

struct sp_stable {
  struct sp_snode *nodes;
  size_t cap, nused;
  uint32_t free_head;
  struct sp_index index; /* contents: REGULAR and CHAIN nodes */
};

/* ---- content cache ---------------------------------------------------- */

struct sp_cache_entry {
  uint32_t node;         /* owning content node, SP_NIL when free */
  uint32_t prev, next;   /* LRU list */
};

struct sp_content_cache {
  uint8_t *pages;        /* cap pages */
  struct sp_cache_entry *entries;
  uint32_t cap, used;
  uint32_t lru_head, lru_tail, free_head;
};

/* ---- the engine ------------------------------------------------------- */

struct sp_lookahead {
  bool valid;
  uint32_t range;      /* range of the page that matched */
  uint64_t next_page;  /* the page after it */
  uint32_t partner;    /* ref of the partner page */
};

/* The window being visited: compares can use its pages already read. */
struct sp_window {
  uint32_t range;
  uint64_t first;
  size_t n;
  const void *ptrs[SP_BATCH_PAGES];
};

struct sp_cursor {
  bool in_pass;
  size_t source;       /* index into engine->sources */
  size_t range;        /* index into the source's ranges */
  uint64_t page;       /* next page in that range */
  bool source_entered; /* ranges refreshed for this source in this pass */
  uint8_t sweep;       /* hinted guest RAM: 0 page-cache pages, 1 the rest */
};

struct sp_engine {
  sp_settings settings;

  struct sp_source **sources; /* scan order */
  size_t nsources, sources_cap;
  uint32_t next_source_id;

  struct sp_range *ranges;
  size_t nranges, ranges_cap;

  struct sp_chunk **chunks;
  size_t nchunks, chunks_cap;
  uint32_t *free_chunks;
  size_t nfree_chunks, free_chunks_cap;

  struct sp_stable stable;
  struct sp_index unstable;
  struct sp_content_cache cache;

  struct sp_cursor cur;
  struct sp_lookahead la;
  uint64_t seqnr;           /* full_scans */
  uint64_t room_opened_seq; /* pass+1 in which a full merged page got room */
  uint64_t zero_hash;

  /* kernel counters */
  uint64_t pages_shared, pages_sharing, pages_unshared, pages_skipped;
  uint64_t pages_scanned, stable_node_chains, stable_node_dups;
  uint64_t ksm_zero_pages, rmap_items;
  /* engine counters */
  uint64_t page_compares, full_compares, bytes_read;
  uint64_t lookahead_hits, lookahead_misses, pages_lost, pages_unread;
  uint64_t pass_pages, pass_total, last_pass_total;
  /* kept up to date so that reading the counters costs nothing */
  uint64_t tracked;       /* records not REC_NONE */
  uint64_t live_chunks;   /* chunks allocated */
  uint64_t dir_bytes;     /* range directories and their blocks */
  uint64_t contents;      /* REGULAR and CHAIN stable nodes */

  /* scratch */
  struct sp_window win;
  const struct sp_window *window; /* &win while a window is visited */
  uint8_t *batch_buf;          /* SP_BATCH_PAGES pages */
  uint8_t *page_buf;           /* one page, for reading a compared page */
  uint8_t *page_buf2;          /* one more, for verifying merged contents */

  atomic_bool cancel;
  sp_progress_fn progress_fn;
  void *progress_ctx;
  uint64_t progress_interval, progress_next;
};

/* ---- record helpers (rmap.c) ------------------------------------------ */

static inline struct sp_rec *sp_rec_get(const struct sp_engine *e,
                                        uint32_t ref) {
  return &e->chunks[ref >> SP_CHUNK_SHIFT]->recs[ref & (SP_CHUNK_PAGES - 1)];
}
static inline unsigned sp_rec_state(const struct sp_rec *r) {
  return r->state & REC_STATE_MASK;
}
static inline void sp_rec_set_state(struct sp_rec *r, unsigned state) {
  r->state = (uint8_t)((r->state & ~REC_STATE_MASK) | state);
}

/* The record of page `page` of range `range_id`, or SP_NIL. */
uint32_t sp_rmap_lookup(const struct sp_engine *e, uint32_t range_id,
                        uint64_t page);
/* The same, allocating the chunk when needed (SP_NIL on ENOMEM). */
uint32_t sp_rmap_get_or_create(struct sp_engine *e, uint32_t range_id,
                               uint64_t page);
/* Range id and page index of a ref. */
void sp_rmap_locate(const struct sp_engine *e, uint32_t ref,
                    uint32_t *range_id, uint64_t *page);
/* The ref of the page after ref's page in the same range, or SP_NIL. */
uint32_t sp_rmap_next_page(const struct sp_engine *e, uint32_t ref);
/* Takes a record out of every index and accounting (page gone). */
void sp_rmap_forget(struct sp_engine *e, uint32_t ref);
/* Forgets the records of pages [from, to) of a range; those that were
 * rmap items count as lost when `lost`. */
void sp_range_forget_span(struct sp_engine *e, uint32_t range_id,
                          uint64_t from, uint64_t to, bool lost);
/* Notes that a record became REC_NONE; frees empty chunks. */
void sp_rmap_released(struct sp_engine *e, uint32_t ref);
/* The next run of non-zero bytes in mask[0..n) at or after *from: its start
 * goes to *from, its end is returned; *from == n and n when none is left.
 * Sources read, and the cache pass drops, one run of wanted pages at once. */
static inline size_t sp_next_run(const uint8_t *mask, size_t n, size_t *from) {
  size_t i = *from;
  while (i < n && !mask[i]) i++;
  *from = i;
  while (i < n && mask[i]) i++;
  return i;
}

/* Range table management.  Create and resize refuse a range of more than
 * SP_RANGE_MAX_PAGES pages with -E2BIG. */
int sp_range_create(struct sp_engine *e, uint32_t source_slot,
                    const struct sp_range_spec *spec, uint32_t *id_out);
int sp_range_resize(struct sp_engine *e, uint32_t range_id, uint64_t npages);
void sp_range_destroy(struct sp_engine *e, uint32_t range_id);
size_t sp_rmap_bytes(const struct sp_engine *e);

/* Whether page-flag hints describe a range: a process's guest RAM, a
 * dump (addressed by guest-physical address) or caller memory. */
static inline bool sp_range_hinted(const struct sp_source *src, const struct sp_range *r) {
  return src->hints && (src->kind != SP_SOURCE_PROCESS || (r->flags & RANGE_F_GUEST_RAM));
}
/* The hint index of page p of a hinted range: guest pages from 0. */
static inline uint64_t sp_hint_index(const struct sp_source *src, const struct sp_range *r,
                                     uint64_t p) {
  return src->kind == SP_SOURCE_DUMP ? r->start / SP_PAGE_SIZE + p : p;
}

/* Source slot (index into e->sources) owning a ref. */
static inline struct sp_source *sp_rec_source(const struct sp_engine *e,
                                              uint32_t ref) {
  uint32_t range = e->chunks[ref >> SP_CHUNK_SHIFT]->range;
  return e->sources[e->ranges[range].source];
}

/* ---- stable index (stable.c) ------------------------------------------ */

int sp_stable_init(struct sp_engine *e);
void sp_stable_free(struct sp_engine *e);
/* The content node (REGULAR or CHAIN) holding content equal to page, or
 * SP_NIL.  Counts compares. */
uint32_t sp_stable_find(struct sp_engine *e, const void *page, uint64_t hash);
/* The regular node or dup of content node `content` that can take one
 * more mapping, chosen as the kernel's stable_node_dup(), or SP_NIL. */
uint32_t sp_stable_pick(struct sp_engine *e, uint32_t content);
/* Adds a new merged page with content `page`; content_hint is the content
 * node already found equal (or SP_NIL to look it up).  Returns the new
 * regular node or dup, SP_NIL on ENOMEM. */
uint32_t sp_stable_insert(struct sp_engine *e, const void *page,
                          uint64_t hash, uint32_t content_hint);
/* Member management with the kernel's counting rules. */
void sp_stable_append(struct sp_engine *e, uint32_t node, uint32_t ref);
void sp_stable_remove(struct sp_engine *e, uint32_t ref);
/* The content node of a regular node or dup. */
uint32_t sp_stable_content_of(const struct sp_engine *e, uint32_t node);
/* Contents of a content node: from the cache or a member still holding
 * them; NULL when none can be found.  Uses e->page_buf2. */
const void *sp_stable_contents(struct sp_engine *e, uint32_t content);
void sp_stable_clear(struct sp_engine *e);

/* ---- content cache (cache_lru.c) -------------------------------------- */

int sp_ccache_configure(struct sp_content_cache *c, uint64_t bytes);
void sp_ccache_free(struct sp_content_cache *c);
/* Copies page in for node (evicting the least recently used entry); returns
 * the entry or SP_NIL when the cache is disabled. */
uint32_t sp_ccache_put(struct sp_engine *e, uint32_t node, const void *page);
const void *sp_ccache_get(struct sp_content_cache *c, uint32_t entry);
void sp_ccache_drop(struct sp_content_cache *c, uint32_t entry);
void sp_ccache_rebind(struct sp_content_cache *c, uint32_t entry,
                      uint32_t node);

/* ---- reading pages ---------------------------------------------------- */

/* Current contents of a tracked page, read into buf when the source is not
 * in memory; NULL when unreadable. */
const void *sp_read_ref(struct sp_engine *e, uint32_t ref, uint8_t *buf);

/* Full compare, counted. */
bool sp_pages_equal(struct sp_engine *e, const void *a, const void *b);

#endif
