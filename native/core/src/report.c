/*
 * report.c - counters, per-source figures, merge groups and the sharing
 * matrix, with the kernel's definitions (mm/ksm.c 6.12, see the admin
 * guide): pages_volatile is what is left of rmap_items, general_profit and
 * the per-process profit use a 64-byte rmap_item.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "internal.h"
#include "stable.h"
#include "tracking.h"
#include "unstable.h"

void sp_engine_counters(const sp_engine *e, sp_counters *out) {
  memset(out, 0, sizeof *out);
  const struct sp_stable *st = &e->stable;
  const struct sp_merge *m = &e->merge;
  out->pages_shared = st->pages_shared;
  out->pages_sharing = st->pages_sharing;
  out->pages_unshared = e->unstable.pages_unshared;
  uint64_t in_trees = st->pages_shared + st->pages_sharing + e->unstable.pages_unshared;
  out->pages_volatile = e->tr.rmap_items > in_trees ? e->tr.rmap_items - in_trees : 0;
  out->pages_skipped = m->pages_skipped;
  out->pages_scanned = m->pages_scanned;
  out->full_scans = e->scan.seqnr;
  out->stable_node_chains = st->stable_node_chains;
  out->stable_node_dups = st->stable_node_dups;
  out->ksm_zero_pages = m->ksm_zero_pages;
  out->rmap_items = e->tr.rmap_items;
  out->general_profit =
      (int64_t)((st->pages_sharing + m->ksm_zero_pages) * SP_PAGE_SIZE) -
      (int64_t)(e->tr.rmap_items * SP_KERNEL_RMAP_ITEM_BYTES);
  /* Each index and lookahead count their own compares. */
  out->page_compares = st->compares + e->unstable.compares + m->compares;
  out->full_compares = e->acc.full_compares;
  out->bytes_read = e->acc.bytes_read;
  out->lookahead_hits = m->lookahead_hits;
  out->lookahead_misses = m->lookahead_misses;
  out->lookahead_early = m->lookahead_early;
  out->pages_lost = m->pages_lost;
  out->pages_unread = m->pages_unread;
  out->tracked_pages = e->tr.tracked;
  out->tracking_bytes = sp__tracking_bytes(e) + sp__unstable_bytes(e) + sp__stable_bytes(e);
  out->merged_contents = st->contents;
  out->cache_bytes = sp__ccache_bytes(&st->cache);
}

size_t sp_source_count(const sp_engine *e) { return e->nsources; }

int sp_source_get(const sp_engine *e, size_t index, sp_source_info *out) {
  if (index >= e->nsources) return -ENOENT;
  const struct sp_source *s = e->sources[index];
  memset(out, 0, sizeof *out);
  out->id = s->id;
  out->kind = s->kind;
  out->pid = s->pid;
  memcpy(out->name, s->name, sizeof out->name);
  out->ranges = (uint32_t)s->nranges;
  for (size_t r = 0; r < s->nranges; r++) out->pages += e->tr.ranges[s->ranges[r]].npages;
  out->present_pages = s->present_pages;
  out->rmap_items = s->rmap_items;
  out->merging_pages = s->merging_pages;
  out->zero_pages = s->zero_pages;
  out->profit = (int64_t)((s->merging_pages + s->zero_pages) * SP_PAGE_SIZE) -
                (int64_t)(s->rmap_items * SP_KERNEL_RMAP_ITEM_BYTES);
  out->thp_zero_pages = s->thp_zero_pages;
  out->pages_lost = s->pages_lost;
  out->guest_ram_start = s->guest_ram_start;
  out->guest_ram_bytes = s->guest_ram_bytes;
  out->error = s->error;
  return 0;
}

int sp_engine_groups(const sp_engine *e, sp_group_fn fn, void *ctx) {
  /* Sized by the largest group met so far, never by max_page_sharing: that
   * may be up to INT_MAX while groups hold a few mappings. */
  size_t cap = 0;
  sp_group_member *members = NULL;
  int ret = 0;
  for (size_t i = 0; i < e->stable.nused && !ret; i++) {
    const struct sp_snode *n = &e->stable.nodes[i];
    if ((n->kind != SN_REGULAR && n->kind != SN_DUP) || !n->count) continue;
    if (n->count > cap) {
      cap = n->count;
      sp_group_member *m = realloc(members, cap * sizeof *m);
      if (!m) {
        free(members);
        return -ENOMEM;
      }
      members = m;
    }
    size_t count = 0;
    for (uint32_t ref = n->members; ref != SP_NIL && count < n->count;
         ref = sp__rec_get(e, ref)->next) {
      members[count].source = sp__rec_source(e, ref)->id;
      members[count].address = sp__track_address(e, ref);
      count++;
    }
    uint32_t dup_index = 0;
    if (n->kind == SN_DUP) {
      uint32_t k = 1;
      for (uint32_t d = e->stable.nodes[n->link].link; d != SP_NIL && d != i;
           d = e->stable.nodes[d].next)
        k++;
      dup_index = k;
    }
    sp_group g = {.hash = n->hash, .mappings = n->count, .dup_index = dup_index};
    ret = fn(ctx, &g, members, count);
  }
  free(members);
  return ret;
}

int sp_engine_sharing_matrix(const sp_engine *e, uint64_t *out, size_t n) {
  if (n != e->nsources) return -EINVAL;
  memset(out, 0, n * n * sizeof *out);
  /* Per merged page: how many of its mappings each source holds. */
  uint32_t *per_source = calloc(n ? n : 1, sizeof *per_source);
  size_t *touched = calloc(n ? n : 1, sizeof *touched);
  if (!per_source || !touched) {
    free(per_source);
    free(touched);
    return -ENOMEM;
  }
  for (size_t i = 0; i < e->stable.nused; i++) {
    const struct sp_snode *node = &e->stable.nodes[i];
    if ((node->kind != SN_REGULAR && node->kind != SN_DUP) || !node->count) continue;
    size_t nt = 0;
    for (uint32_t ref = node->members; ref != SP_NIL; ref = sp__rec_get(e, ref)->next) {
      uint32_t range;
      uint64_t page;
      sp__track_locate(e, ref, &range, &page);
      size_t s = e->tr.ranges[range].source;
      if (!per_source[s]++) touched[nt++] = s;
    }
    for (size_t a = 0; a < nt; a++) {
      size_t sa = touched[a];
      if (per_source[sa] > 1) out[sa * n + sa] += per_source[sa];
      for (size_t b = 0; b < nt; b++)
        if (b != a) out[sa * n + touched[b]] += per_source[sa];
    }
    for (size_t a = 0; a < nt; a++) per_source[touched[a]] = 0;
  }
  free(per_source);
  free(touched);
  return 0;
}

uint64_t sp_page_hash(const void *page) { return sp__hash_page(page); }

const char *sp_strerror(int err) {
  switch (-err) {
  case 0: return "success";
  case EINVAL: return "invalid argument";
  case ENOMEM: return "out of memory";
  case ESRCH: return "no such process (it exited)";
  case EPERM: return "operation not permitted (run as root)";
  case EACCES: return "permission denied (needs ptrace access: run as root or as the process owner)";
  case ENOENT: return "not found";
  case EBUSY: return "merged pages exist (unmerge everything first)";
  case ENODATA: return "nothing to scan (add a source first)";
  case ECANCELED: return "cancelled";
  case ENOEXEC: return "not a valid memory dump (malformed ELF core file)";
  case EISDIR: return "is a directory";
  case EIO: return "input/output error";
  case EFAULT: return "bad address";
  case EOPNOTSUPP: return "not supported by this kernel";
  /* Sources: a range the 32-bit page index of a record cannot cover;
   * sp_live_processes(): more processes than its pid field holds. */
  case E2BIG: return "too large: an address range over 16 TiB (the most the engine tracks in one range), or too many processes for the live view";
  default: return "unexpected error";
  }
}
