/*
 * samepage_live.h - the live KSM state of processes, from the kernel
 * (no engine involved).  Part of samepage.h.
 */
#ifndef SAMEPAGE_LIVE_H
#define SAMEPAGE_LIVE_H

#include "samepage_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Live KSM state of processes (pagemap and kpageflags; needs root)     */
/* ------------------------------------------------------------------ */

typedef struct sp_live_process {
  pid_t pid;
  int error;               /* 0 or -errno for this process */
  uint64_t scanned_pages;  /* pages in the examined ranges */
  uint64_t present_pages;  /* present in RAM */
  uint64_t swapped_pages;
  uint64_t ksm_pages;      /* mapped to a KSM page (KPF_KSM; see
                              sp_live_ksm_flag_reliable()) */
  uint64_t zero_pages;     /* mapped to the zero page */
  uint64_t thp_pages;      /* in a transparent huge page */
  double saved_pages;      /* fair share of the KSM saving, see below */
  uint32_t top_peer;       /* index (into pids) of the process it shares
                              most KSM pages with, or UINT32_MAX */
  uint64_t top_peer_pages;
} sp_live_process;

/* For each pid, counts its pages in mergeable ranges (or all private
 * anonymous ranges with SP_PROC_ALL_ANON) by kind.  Fair share: each KSM
 * page mapped m times host-wide saves m-1 pages; every mapping is credited
 * (m-1)/m, so the shares of all processes sum to pages_sharing.  m is
 * counted by walking every process that has KSM pages (/proc/kpagecount
 * does not give it for KSM pages on current kernels).  out has npids
 * entries.  peers, when not NULL, receives npids*npids counts:
 * peers[i*npids+j] = pages of pids[i] mapped to a KSM page that pids[j]
 * also maps (0 on the diagonal).  -EPERM without CAP_SYS_ADMIN. */
SP_API int sp_live_processes(const pid_t *pids, size_t npids, uint32_t flags,
                      sp_live_process *out, uint64_t *peers);

/* 1 when /proc/kpageflags sets KPF_KSM only on KSM pages; 0 on kernels
 * that set it on every anonymous page (6.12 is one: fs/proc/page.c tests
 * mapping & PAGE_MAPPING_KSM, which holds the ANON bit).  Found with a
 * page of the caller's own.  There sp_live_processes() takes a page as KSM
 * when it is mapped at least twice, only in mergeable ranges, outside a
 * THP: a KSM page whose other mappings are gone is then not counted in
 * ksm_pages (it saves nothing), and a page shared by fork inside mergeable
 * ranges is.  -EPERM without CAP_SYS_ADMIN, else -errno. */
SP_API int sp_live_ksm_flag_reliable(void);

#ifdef __cplusplus
}
#endif

#endif /* SAMEPAGE_LIVE_H */
