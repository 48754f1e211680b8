/*
 * source_proc.c - a live process, as ksmd sees it: the ranges KSM would
 * scan (VmFlags "mg", or every compatible private range), the pages present
 * there as anonymous memory (/proc/PID/pagemap), read in runs through
 * /proc/PID/mem (never written).  Ranges are read again at every pass; an
 * exited process (or a recycled pid) makes the source gone.
 *
 * Not process_vm_readv(): it pins the pages it reads, and pinning a KSM
 * page unshares it (gup_must_unshare()), so reading a VM that way would
 * undo the merging we measure.  /proc/PID/mem takes plain references.
 * test_kernel_oracle checks that a scan leaves the merged pages merged.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kpageflags.h"
#include "procmaps.h"
#include "sources.h"

/* PAGEMAP_SCAN (6.7+), declared here because Debian 12's headers predate
 * it; the ABI is fixed. */
struct sp_page_region {
  uint64_t start, end, categories;
};
struct sp_pm_scan_arg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
  uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define SP_PAGEMAP_SCAN _IOWR('f', 16, struct sp_pm_scan_arg)
#define SP_PAGE_IS_FILE (1 << 2)
#define SP_PAGE_IS_PRESENT (1 << 3)
#define SP_PAGE_IS_PFNZERO (1 << 5)
#define SP_PAGE_IS_HUGE (1 << 6)


/* How proc_frame() tells a KSM page from one shared by fork. */
enum frame_rule {
  FRAMES_HIDDEN,        /* not root: no PFNs */
  FRAMES_BY_KPF_KSM,    /* KPF_KSM marks KSM pages, and only them */
  FRAMES_WHILE_UNMERGED /* KPF_KSM marks every anonymous page (6.12): a
                           frame is given while the process maps no KSM
                           page at all, as before KSM is first enabled */
};

struct proc_impl {
  pid_t pid;
  unsigned long long start_time; /* tells a recycled pid apart */
  int pagemap_fd;
  int kpageflags_fd;             /* -1 without root, or when neither
                                    THP_ZERO_APART nor proc_frame() needs it */
  enum frame_rule frames;        /* how proc_frame() tells KSM pages apart */
  int merging_fd;                /* /proc/PID/ksm_merging_pages, for
                                    FRAMES_WHILE_UNMERGED; else -1 */
  bool no_pagemap_scan;          /* the kernel lacks PAGEMAP_SCAN */
  int mem_fd;
  uint64_t zero_pfn;             /* 0 when PFNs are hidden (not root) or read
                                    faults map no zero page */
  uint64_t ram_bytes;            /* QEMU -m, 0 if not QEMU */
  /* SP_PROC_SOFT_DIRTY: per range, the pages written between the last two
   * clears (bit set = written), valid once a clear has been done. */
  bool sd_armed;
  struct sd_range {
    uint64_t start, npages;
    uint64_t *written;
  } *sd;
  size_t nsd;
  /* pagemap entries of the last presence() window, reused by thp() */
  uint64_t pm_addr;
  size_t pm_n;
  uint64_t pm[SP_BATCH_PAGES];
  /* PFNs hidden (not root): PAGEMAP_SCAN's categories of that window,
   * SP_PAGE_IS_PFNZERO / SP_PAGE_IS_HUGE per page; cat_ok when known. */
  bool cat_ok;
  uint8_t cat[SP_BATCH_PAGES];
  struct sp_page_region regions[SP_BATCH_PAGES];
};

/* Field 22 of /proc/PID/stat; the comm field may hold spaces and ')'. */
static int read_start_time(pid_t pid, unsigned long long *out) {
  char path[64], *text;
  size_t len;
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int err = sp__read_proc_file(path, &text, &len);
  if (err) return err == -ENOENT ? -ESRCH : err;
  char *p = strrchr(text, ')');
  int field = 2;
  err = -EINVAL;
  while (p && *p) {
    if (*p == ' ' && ++field == 22) {
      *out = strtoull(p + 1, NULL, 10);
      err = 0;
      break;
    }
    p++;
  }
  free(text);
  return err;
}

/* The PFN of the shared zero page, from two pages of our own that map it,
 * or 0.  A read fault maps the zero page on most kernels, but not where it
 * is refused (a host booted with pvm_no_zero_page=1 gives each read fault
 * a zeroed page of its own): two read faults on one PFN are the zero page;
 * on two PFNs they are private pages, and the zero page that KSM itself
 * places (use_zero_pages) is then found by PAGEMAP_SCAN's PFNZERO. */
static uint64_t find_zero_pfn(void) {
  uint64_t pfn = 0;
  volatile char *p = mmap(NULL, 2 * SP_PAGE_SIZE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return 0;
  (void)p[0];
  (void)p[SP_PAGE_SIZE];
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    uint64_t entry[2];
    if (pread(fd, entry, sizeof entry, (off_t)((uintptr_t)p / SP_PAGE_SIZE * 8)) == sizeof entry &&
        (entry[0] & entry[1] & SP_PM_PRESENT) &&
        (entry[0] & SP_PM_PFN_MASK) == (entry[1] & SP_PM_PFN_MASK))
      pfn = entry[0] & SP_PM_PFN_MASK;
    close(fd);
  }
  munmap((void *)p, 2 * SP_PAGE_SIZE);
  return pfn;
}

/* Would KSM scan this VMA (vma_ksm_compatible() plus the source's mode)?
 * A droppable VMA (MAP_DROPPABLE) is refused by the kernel even under
 * PR_SET_MEMORY_MERGE: its pages may be zeroed at any time. */
static bool scannable(const struct sp_vma *v, uint32_t flags) {
  if (v->special || v->end <= v->start) return false;
  if (v->vmflags & (VMF_SH | VMF_PF | VMF_IO | VMF_DE | VMF_HT | VMF_MM | VMF_DP))
    return false;
  if (v->perms[3] != 'p') return false;
  if (flags & SP_PROC_ALL_ANON) return true;
  return (v->vmflags & VMF_MG) != 0;
}

static void sd_free(struct proc_impl *p) {
  for (size_t i = 0; i < p->nsd; i++) free(p->sd[i].written);
  free(p->sd);
  p->sd = NULL;
  p->nsd = 0;
}

/* At the start of the source's visit in a pass: which pages were written
 * since the previous clear (soft-dirty), then clear again.  A write between
 * reading the bits and the clear is lost; the rolling re-read in scan.c
 * bounds how long that can last. */
static void sd_snapshot(struct proc_impl *p, const struct sp_range_spec *specs, size_t n) {
  sd_free(p);
  p->sd = calloc(n ? n : 1, sizeof *p->sd);
  if (!p->sd) return;
  p->nsd = n;
  uint64_t *buf = malloc(65536 * sizeof *buf);
  for (size_t r = 0; r < n && buf; r++) {
    struct sd_range *sr = &p->sd[r];
    sr->start = specs[r].start;
    sr->npages = specs[r].npages;
    sr->written = calloc((size_t)((sr->npages + 63) / 64) + 1, sizeof *sr->written);
    if (!sr->written) continue;
    for (uint64_t done = 0; done < sr->npages;) {
      size_t want = sr->npages - done > 65536 ? 65536 : (size_t)(sr->npages - done);
      ssize_t got = pread(p->pagemap_fd, buf, want * 8,
                          (off_t)((sr->start / SP_PAGE_SIZE + done) * 8));
      if (got <= 0) break;
      for (size_t k = 0; k < (size_t)got / 8; k++)
        if (buf[k] & SP_PM_SOFT_DIRTY) sr->written[(done + k) / 64] |= 1ull << ((done + k) % 64);
      done += (size_t)got / 8;
    }
  }
  free(buf);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/clear_refs", (int)p->pid);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  bool cleared = fd >= 0 && write(fd, "4", 1) == 1;
  if (fd >= 0) close(fd);
  /* Bits read before the first clear say nothing about our last visit. */
  bool armed = p->sd_armed;
  p->sd_armed = cleared;
  if (!armed || !cleared) sd_free(p);
}

/* Whether this kernel tracks soft-dirty bits (CONFIG_MEM_SOFT_DIRTY): a
 * forked child clears its own bits, writes a page and reads the bit back,
 * so the caller's process is not touched. */
static bool soft_dirty_supported(void) {
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    volatile char *page = mmap(NULL, SP_PAGE_SIZE, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) _exit(2);
    page[0] = 1;
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "4", 1) != 1) _exit(3);
    close(fd);
    page[0] = 2;
    uint64_t entry = 0;
    fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || pread(fd, &entry, 8, (off_t)((uintptr_t)page / SP_PAGE_SIZE * 8)) != 8) _exit(4);
    _exit((entry & SP_PM_SOFT_DIRTY) ? 0 : 1);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Whether the page at addr is known unchanged since the previous pass. */
static bool sd_clean(const struct proc_impl *p, uint64_t addr, uint64_t pm_entry) {
  if (!p->sd || (pm_entry & SP_PM_SOFT_DIRTY)) return false;
  for (size_t r = 0; r < p->nsd; r++) {
    const struct sd_range *sr = &p->sd[r];
    if (addr < sr->start || addr >= sr->start + sr->npages * SP_PAGE_SIZE) continue;
    if (!sr->written) return false;
    uint64_t i = (addr - sr->start) / SP_PAGE_SIZE;
    return !((sr->written[i / 64] >> (i % 64)) & 1);
  }
  return false;
}

static int proc_ranges(struct sp_source *src, struct sp_range_spec **out,
                       size_t *n) {
  struct proc_impl *p = src->impl;
  unsigned long long start_time;
  *out = NULL;
  *n = 0;
  int err = read_start_time(p->pid, &start_time);
  if (err) return err;
  if (start_time != p->start_time) return -ESRCH; /* the pid was reused */

  struct sp_vma *vmas;
  size_t nv;
  err = sp__read_smaps(p->pid, &vmas, &nv);
  if (err) return err;

  struct sp_range_spec *specs = calloc(nv ? nv : 1, sizeof *specs);
  if (!specs) {
    free(vmas);
    return -ENOMEM;
  }
  /* Guest RAM: the mergeable range as large as QEMU's -m (or the largest
   * one at least that large: some builds pad the RAM block). */
  long guest = -1;
  if (p->ram_bytes) {
    for (size_t i = 0; i < nv; i++) {
      /* With SP_PROC_ALL_ANON the RAM of a guest started with
       * mem-merge=off (not madvised) counts too. */
      if (!scannable(&vmas[i], src->flags & SP_PROC_ALL_ANON)) continue;
      uint64_t size = vmas[i].end - vmas[i].start;
      if (size == p->ram_bytes) {
        guest = (long)i;
        break;
      }
      if (size > p->ram_bytes && (guest < 0 || size > vmas[guest].end - vmas[guest].start))
        guest = (long)i;
    }
  }
  size_t count = 0;
  for (size_t i = 0; i < nv; i++) {
    bool is_guest = (long)i == guest;
    if ((src->flags & SP_PROC_GUEST_RAM_ONLY) && !is_guest) continue;
    if (!scannable(&vmas[i], src->flags)) continue;
    specs[count++] = (struct sp_range_spec){
        .start = vmas[i].start,
        .npages = (vmas[i].end - vmas[i].start) / SP_PAGE_SIZE,
        .flags = is_guest ? RANGE_F_GUEST_RAM : 0};
  }
  free(vmas);
  if ((src->flags & SP_PROC_GUEST_RAM_ONLY) && guest < 0) {
    free(specs);
    return -ENOENT;
  }
  if (src->flags & SP_PROC_SOFT_DIRTY) sd_snapshot(p, specs, count);
  *out = specs;
  *n = count;
  return 0;
}

/* Without root, pagemap hides PFNs, so neither the zero page (a read
 * fault's, or one KSM placed with use_zero_pages) nor a THP can be told by
 * PFN.  PAGEMAP_SCAN computes its categories in the kernel and needs no
 * privilege: p->cat gets PFNZERO and HUGE (PMD-mapped THP) per page of
 * [addr, addr + npages pages).  Sets p->cat_ok on success. */
static void scan_categories(struct proc_impl *p, uint64_t addr, size_t npages) {
  p->cat_ok = false;
  if (p->no_pagemap_scan) return;
  memset(p->cat, 0, npages);
  uint64_t end = addr + npages * SP_PAGE_SIZE, at = addr;
  while (at < end) {
    struct sp_pm_scan_arg arg = {.size = sizeof arg,
                                 .start = at,
                                 .end = end,
                                 .vec = (uintptr_t)p->regions,
                                 .vec_len = SP_BATCH_PAGES,
                                 .category_anyof_mask = SP_PAGE_IS_PFNZERO | SP_PAGE_IS_HUGE,
                                 .return_mask = SP_PAGE_IS_PFNZERO | SP_PAGE_IS_HUGE};
    long got = ioctl(p->pagemap_fd, SP_PAGEMAP_SCAN, &arg);
    if (got < 0) {
      if (errno == ENOTTY || errno == EINVAL) p->no_pagemap_scan = true;
      return;
    }
    for (long r = 0; r < got; r++) {
      const struct sp_page_region *g = &p->regions[r];
      for (uint64_t a = g->start; a < g->end && a < end; a += SP_PAGE_SIZE)
        p->cat[(a - addr) / SP_PAGE_SIZE] = (uint8_t)g->categories;
    }
    if (arg.walk_end <= at) break;
    at = arg.walk_end;
  }
  p->cat_ok = at >= end;
}

static int proc_presence(struct sp_source *src, uint64_t addr, size_t npages,
                         uint8_t *flags) {
  struct proc_impl *p = src->impl;
  size_t bytes = npages * sizeof(uint64_t);
  ssize_t got = pread(p->pagemap_fd, p->pm, bytes, (off_t)(addr / SP_PAGE_SIZE * 8));
  if (got < 0) return errno == ESRCH ? -ESRCH : -errno;
  size_t have = (size_t)got / sizeof(uint64_t);
  p->pm_addr = addr;
  p->pm_n = have;
  p->cat_ok = false;
  if (!p->zero_pfn) scan_categories(p, addr, have);
  for (size_t i = 0; i < npages; i++) {
    uint64_t e = i < have ? p->pm[i] : 0;
    uint64_t pfn = e & SP_PM_PFN_MASK;
    bool zero = p->zero_pfn ? pfn == p->zero_pfn
                            : p->cat_ok && (p->cat[i] & SP_PAGE_IS_PFNZERO);
    /* Present, anonymous (not page cache or shared memory), and not the
     * zero page a read fault maps: what folio_walk hands to ksmd. */
    bool present = (e & SP_PM_PRESENT) && !(e & SP_PM_FILE) && !zero;
    flags[i] = present ? PAGE_PRESENT : (e & SP_PM_PRESENT) && zero ? PAGE_ZERO_MAPPED : 0;
    if (present && sd_clean(p, addr + i * SP_PAGE_SIZE, e)) flags[i] |= PAGE_CLEAN;
  }
  return 0;
}

static int proc_thp(struct sp_source *src, const struct sp_range *range,
                    uint64_t first, size_t npages, const uint8_t *want,
                    uint8_t *thp) {
  struct proc_impl *p = src->impl;
  uint64_t addr = range->start + first * SP_PAGE_SIZE;
  if (addr != p->pm_addr || npages > p->pm_n) return -ENODATA;
  if (p->kpageflags_fd < 0) {
    /* Not root: PAGEMAP_SCAN's HUGE category (a PMD-mapped THP; one
     * already split to PTEs is not seen). */
    if (!p->cat_ok) return -ENODATA;
    for (size_t i = 0; i < npages; i++)
      thp[i] = want[i] && (p->cat[i] & SP_PAGE_IS_HUGE);
    return 0;
  }
  memset(thp, 0, npages);
  size_t i = 0;
  while (i < npages) {
    if (!want[i] || !(p->pm[i] & SP_PM_PFN_MASK)) {
      i++;
      continue;
    }
    /* One read per run of consecutive PFNs (a THP is 512 of them). */
    uint64_t pfn0 = p->pm[i] & SP_PM_PFN_MASK;
    size_t j = i + 1;
    while (j < npages && (p->pm[j] & SP_PM_PFN_MASK) == pfn0 + (j - i)) j++;
    /* A page whose neighbours on both sides are not the next frames is in
     * no large folio: no read (most pages where THP is off). */
    if (j == i + 1 && i > 0 && j < npages) {
      i = j;
      continue;
    }
    uint64_t kf[SP_BATCH_PAGES];
    ssize_t got = pread(p->kpageflags_fd, kf, (j - i) * 8, (off_t)(pfn0 * 8));
    if (got < 0) return -errno;
    /* The read covers the whole run of PFNs; only the pages asked about
     * get an answer. */
    for (size_t k = i; k < j && (k - i) * 8 < (size_t)got; k++)
      if (want[k]) thp[k] = (uint8_t)((kf[k - i] >> SP_KPF_THP) & 1);
    i = j;
  }
  return 0;
}

static int proc_next_present(struct sp_source *src, uint64_t addr, uint64_t end,
                             uint64_t *next) {
  struct proc_impl *p = src->impl;
  if (p->no_pagemap_scan) return -EOPNOTSUPP;
  struct sp_page_region region;
  /* Present, not page cache, not the zero page: one page is enough. */
  struct sp_pm_scan_arg arg = {.size = sizeof arg,
                               .start = addr,
                               .end = end,
                               .vec = (uintptr_t)&region,
                               .vec_len = 1,
                               .max_pages = 1,
                               .category_inverted = SP_PAGE_IS_FILE | SP_PAGE_IS_PFNZERO,
                               .category_mask = SP_PAGE_IS_PRESENT | SP_PAGE_IS_FILE |
                                                SP_PAGE_IS_PFNZERO,
                               .return_mask = SP_PAGE_IS_PRESENT};
  long got = ioctl(p->pagemap_fd, SP_PAGEMAP_SCAN, &arg);
  if (got < 0) {
    if (errno == ENOTTY || errno == EINVAL) p->no_pagemap_scan = true;
    return -errno;
  }
  *next = got > 0 ? region.start : arg.walk_end;
  return 0;
}

/* Whole pages read from addr; ESRCH once the process is gone.  The
 * kernel stops at the first page it cannot read. */
static ssize_t read_mem(struct proc_impl *p, uint64_t addr, uint8_t *dst, size_t bytes) {
  size_t done = 0;
  while (done < bytes) {
    ssize_t got = pread(p->mem_fd, dst + done, bytes - done, (off_t)(addr + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return done ? (ssize_t)done : -errno;
    if (got == 0) break;
    done += (size_t)got;
  }
  return (ssize_t)done;
}

static int proc_read(struct sp_source *src, const struct sp_range *range,
                     uint64_t first, size_t npages, const uint8_t *want,
                     uint8_t *buf, const void **ptrs) {
  struct proc_impl *p = src->impl;
  size_t i = 0, j;
  while ((j = sp__next_run(want, npages, &i)) > i) {
    /* One read per run of wanted pages; after a failure, page by page, so
     * one unmapped page does not lose the run. */
    uint64_t addr = range->start + (first + i) * SP_PAGE_SIZE;
    ssize_t got = read_mem(p, addr, buf + i * SP_PAGE_SIZE, (j - i) * SP_PAGE_SIZE);
    if (got == -ESRCH) return -ESRCH;
    size_t whole = got > 0 ? (size_t)got / SP_PAGE_SIZE : 0;
    for (size_t k = i; k < j; k++) {
      uint8_t *dst = buf + k * SP_PAGE_SIZE;
      if (k - i < whole) {
        ptrs[k] = dst;
        continue;
      }
      ssize_t one = read_mem(p, range->start + (first + k) * SP_PAGE_SIZE, dst, SP_PAGE_SIZE);
      if (one == -ESRCH) return -ESRCH;
      ptrs[k] = one == SP_PAGE_SIZE ? dst : NULL;
    }
    i = j;
  }
  return 0;
}

/* /proc/PID/ksm_merging_pages, read again (a seq_file shows it anew at
 * offset 0): 0 when none of the process's pages is a KSM page. */
static bool maps_no_ksm_page(const struct proc_impl *p) {
  char text[32];
  ssize_t got = pread(p->merging_fd, text, sizeof text - 1, 0);
  if (got <= 0) return false;
  text[got] = '\0';
  return text[0] == '0' && (text[1] == '\n' || text[1] == '\0');
}

/*
 * The PFN a present page maps, when it is an ordinary page, not a KSM one:
 * a KSM page shared by two tracked pages is the stable tree's business (the
 * engine merges them by content, as ksmd keeps them merged), a page shared
 * by fork is not.  0 (unknown) without root.  Where KPF_KSM marks every
 * anonymous page (6.12) a KSM page cannot be told from a forked one page
 * by page, so a frame is given only while the process maps no KSM page:
 * the count is read after the pagemap entry, so a page KSM merged before
 * that read is counted in it.
 */
static uint64_t proc_frame(struct sp_source *src, const struct sp_range *range, uint64_t page) {
  struct proc_impl *p = src->impl;
  uint64_t entry = 0, kf = 0;
  off_t at = (off_t)((range->start / SP_PAGE_SIZE + page) * 8);
  if (p->frames == FRAMES_HIDDEN) return 0;
  if (pread(p->pagemap_fd, &entry, sizeof entry, at) != (ssize_t)sizeof entry) return 0;
  uint64_t pfn = entry & SP_PM_PFN_MASK;
  if (!(entry & SP_PM_PRESENT) || (entry & SP_PM_SWAP) || !pfn) return 0;
  if (p->frames == FRAMES_WHILE_UNMERGED) return maps_no_ksm_page(p) ? pfn : 0;
  if (pread(p->kpageflags_fd, &kf, sizeof kf, (off_t)(pfn * 8)) != (ssize_t)sizeof kf) return 0;
  return (kf >> SP_KPF_KSM) & 1 ? 0 : pfn;
}

/* get_mergeable_page(): is there an anonymous page (not the zero page) at
 * this address now?  One pagemap entry with root; without, PAGEMAP_SCAN
 * (which tells the zero page without PFNs), else the entry alone. */
static bool proc_mapped(struct sp_source *src, const struct sp_range *range, uint64_t page) {
  struct proc_impl *p = src->impl;
  uint64_t addr = range->start + page * SP_PAGE_SIZE, entry = 0, next = 0;
  if (!p->zero_pfn && proc_next_present(src, addr, addr + SP_PAGE_SIZE, &next) == 0)
    return next == addr;
  if (pread(p->pagemap_fd, &entry, sizeof entry, (off_t)(addr / SP_PAGE_SIZE * 8)) !=
      (ssize_t)sizeof entry)
    return false;
  if (!(entry & SP_PM_PRESENT) || (entry & SP_PM_FILE)) return false;
  return !p->zero_pfn || (entry & SP_PM_PFN_MASK) != p->zero_pfn;
}

static void proc_destroy(struct sp_source *src) {
  struct proc_impl *p = src->impl;
  if (!p) return;
  if (p->pagemap_fd >= 0) close(p->pagemap_fd);
  if (p->kpageflags_fd >= 0) close(p->kpageflags_fd);
  if (p->merging_fd >= 0) close(p->merging_fd);
  if (p->mem_fd >= 0) close(p->mem_fd);
  sd_free(p);
  free(p);
}

static const struct sp_source_ops proc_ops = {.ranges = proc_ranges,
                                              .presence = proc_presence,
                                              .read = proc_read,
                                              .thp = proc_thp,
                                              .next_present = proc_next_present,
                                              .frame = proc_frame,
                                              .mapped = proc_mapped,
                                              .destroy = proc_destroy};

int sp__source_process_open(const char *name, pid_t pid, uint32_t flags,
                            struct sp_source **out) {
  const uint32_t known =
      SP_PROC_ALL_ANON | SP_PROC_GUEST_RAM_ONLY | SP_PROC_THP_ZERO_APART | SP_PROC_SOFT_DIRTY;
  if (pid <= 0 || (flags & ~known)) return -EINVAL;
  if (kill(pid, 0) && errno == ESRCH) return -ESRCH;

  /* Without CONFIG_MEM_SOFT_DIRTY every bit reads 0: the pages would all
   * look unchanged.  Refuse rather than scan wrongly. */
  if ((flags & SP_PROC_SOFT_DIRTY) && !soft_dirty_supported()) return -EOPNOTSUPP;

  struct proc_impl *p = calloc(1, sizeof *p);
  if (!p) return -ENOMEM;
  p->pid = pid;
  p->pagemap_fd = p->kpageflags_fd = p->merging_fd = p->mem_fd = -1;
  int err = read_start_time(pid, &p->start_time);
  char path[64];
  if (!err) {
    snprintf(path, sizeof path, "/proc/%d/pagemap", (int)pid);
    p->pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (p->pagemap_fd < 0) err = errno == ENOENT ? -ESRCH : -errno;
  }
  if (!err) {
    snprintf(path, sizeof path, "/proc/%d/mem", (int)pid);
    p->mem_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (p->mem_fd < 0) err = errno == ENOENT ? -ESRCH : -errno;
  }
  char comm[SP_NAME_MAX] = "";
  if (!err) {
    char *text;
    size_t len;
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    if (sp__read_proc_file(path, &text, &len) == 0) {
      int is_qemu = 0;
      p->ram_bytes = sp__qemu_ram_bytes(text, len, &is_qemu);
      if (is_qemu && !p->ram_bytes) p->ram_bytes = 128ull << 20; /* QEMU's default */
      free(text);
    }
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    if (sp__read_proc_file(path, &text, &len) == 0) {
      if (len && text[len - 1] == '\n') text[--len] = '\0';
      snprintf(comm, sizeof comm, "%s", text);
      free(text);
    }
  }
  if (err) {
    proc_destroy(&(struct sp_source){.impl = p});
    return err;
  }
  p->zero_pfn = find_zero_pfn();
  /* One fd serves the THP check and proc_frame(). */
  int reliable = sp__kpf_ksm_reliable();
  if ((flags & SP_PROC_THP_ZERO_APART) || reliable == 1)
    p->kpageflags_fd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
  if (reliable == 1 && p->kpageflags_fd >= 0) {
    p->frames = FRAMES_BY_KPF_KSM;
  } else if (reliable == 0) {
    /* The probe saw a PFN: root.  Without the file (before 5.19) no frame. */
    snprintf(path, sizeof path, "/proc/%d/ksm_merging_pages", (int)pid);
    p->merging_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (p->merging_fd >= 0) p->frames = FRAMES_WHILE_UNMERGED;
  }

  struct sp_source *src = sp__source_new(SP_SOURCE_PROCESS, name, comm[0] ? comm : "process");
  if (!src) {
    proc_destroy(&(struct sp_source){.impl = p});
    return -ENOMEM;
  }
  src->pid = pid;
  src->flags = flags;
  src->ops = &proc_ops;
  src->impl = p;
  /* Permission to read its memory is checked now, not at the first scan:
   * opening /proc/PID/mem above needed ptrace access. */
  *out = src;
  return 0;
}
