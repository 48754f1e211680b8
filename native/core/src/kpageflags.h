/* kpageflags.h - the /proc/PID/pagemap and /proc/kpageflags bits the engine
 * reads, and whether this kernel's KPF_KSM can be trusted (private). */
#ifndef SP_KPAGEFLAGS_H
#define SP_KPAGEFLAGS_H

#pragma GCC visibility push(hidden)

/* /proc/PID/pagemap entries (Documentation/admin-guide/mm/pagemap.rst) */
#define SP_PM_PRESENT (1ull << 63)
#define SP_PM_SWAP (1ull << 62)
#define SP_PM_FILE (1ull << 61)
#define SP_PM_SOFT_DIRTY (1ull << 55)
#define SP_PM_PFN_MASK ((1ull << 55) - 1)

/* /proc/kpageflags bit numbers */
#define SP_KPF_DIRTY 4
#define SP_KPF_WRITEBACK 8
#define SP_KPF_ANON 12
#define SP_KPF_KSM 21
#define SP_KPF_THP 22
#define SP_KPF_ZERO_PAGE 24

/* 1 when KPF_KSM marks only KSM pages, 0 when this kernel sets it on every
 * anonymous page (6.12: fs/proc/page.c tests `mapping & PAGE_MAPPING_KSM`,
 * which holds the ANON bit), probed once with a page of our own; -EPERM without
 * the right to read PFNs, other negative errno on error. */
int sp__kpf_ksm_reliable(void);

#pragma GCC visibility pop

#endif
