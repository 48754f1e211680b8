/* oracle.h - brute force: what KSM converges to, from page contents alone
 * (group identical pages with a full compare, then apply the rules). */
#ifndef SP_ORACLE_H
#define SP_ORACLE_H

#include <stddef.h>
#include <stdint.h>

struct oracle_source {
  const unsigned char *pages;
  size_t npages;
};

struct oracle_result {
  uint64_t pages_shared, pages_sharing, pages_unshared_singletons;
  /* Pages left out, each in the unstable tree once its contents stood
   * still for a visit: contents held once, and a content's one page over
   * a multiple of max_page_sharing. */
  uint64_t pages_unshared;
  uint64_t rmap_items; /* every page but those on the zero page */
  uint64_t ksm_zero_pages, stable_node_chains, stable_node_dups;
  uint64_t merging[16]; /* per source (first 16) */
  uint64_t zero[16];
};

/* Settled state for contents that stopped changing and groups that never
 * shrank: a content seen c times takes floor(c/M) full merged pages plus
 * one of c mod M mappings when that is at least 2; a single leftover page
 * stays unmerged.  With use_zero_pages, zero pages go to the zero page. */
void oracle_compute(const struct oracle_source *src, size_t nsrc,
                    uint32_t max_page_sharing, int use_zero_pages,
                    struct oracle_result *out);

#endif
