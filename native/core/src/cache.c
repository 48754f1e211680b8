/*
 * cache.c - exclusive caching: host page-cache pages of given files (VM
 * disk images) that a guest already holds in its RAM are dropped from the
 * host cache, so a block is cached once (Singleton, HPDC 2012).
 *
 * For each file: which pages are cached (mincore on a mapping we never
 * touch), their contents (pread of cached pages only: no disk I/O), a lookup
 * among the guest pages the engine tracks (stable index, then this pass's
 * unstable index, each confirmed by a full compare), and, in act mode,
 * POSIX_FADV_DONTNEED over the matching pages that are clean.  A dirty or
 * written-back page is never dropped, only counted: cleanliness comes from
 * cachestat(2) (6.5+), or else from kpageflags through a mapping of ours.
 * The kernel itself never evicts a dirty page on DONTNEED either.
 *
 * DONTNEED leaves a large folio that its range does not cover whole: on a
 * filesystem that caches files in large folios (ext4 from Linux 6.16, XFS),
 * a folio goes only when every page of it is in a guest (the rule the
 * kernel series' cache pass follows too), so cache_pages_dropped, counted
 * from what is gone afterwards, can be well below cache_pages_in_guest.
 * Measured on 6.18 ext4: DONTNEED of every other page of an 8 MiB file read
 * through dropped 256 of the 1024 pages asked for.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "hash.h"
#include "kpageflags.h"
#include "internal.h"
#include "stable.h"
#include "unstable.h"

#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif

struct sp_cachestat_range {
  uint64_t off, len;
};
struct sp_cachestat {
  uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

#define RUN_PAGES 256

static int cachestat(int fd, uint64_t off, uint64_t len, struct sp_cachestat *cs) {
  struct sp_cachestat_range r = {off, len};
  return (int)syscall(__NR_cachestat, fd, &r, cs, 0);
}

/* Is the cached page at off clean?  1 clean, 0 dirty or under writeback,
 * negative errno when it cannot be told. */
static int page_clean(int fd, uint64_t off, int *have_cachestat) {
  struct sp_cachestat cs;
  if (*have_cachestat) {
    /* A large folio is dirty (and dropped) as a whole: a clean page in a
     * dirty folio reads as dirty here, and stays. */
    if (cachestat(fd, off, SP_PAGE_SIZE, &cs) == 0) return !(cs.nr_dirty || cs.nr_writeback);
    if (errno != ENOSYS) return -errno;
    *have_cachestat = 0;
  }
  /* Older kernels: map the page (read-only, shared: the page cache page
   * itself), read its PFN and its flags.  Needs root for PFNs. */
  void *p = mmap(NULL, SP_PAGE_SIZE, PROT_READ, MAP_SHARED, fd, (off_t)off);
  if (p == MAP_FAILED) return -errno;
  volatile const char *touch = p;
  (void)touch[0]; /* cached: a minor fault, no I/O */
  int result = -EPERM;
  int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  int kf = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
  uint64_t entry, flags;
  if (pm >= 0 && kf >= 0 &&
      pread(pm, &entry, 8, (off_t)((uintptr_t)p / SP_PAGE_SIZE * 8)) == 8 &&
      (entry >> 63) && (entry & ((1ull << 55) - 1)) &&
      pread(kf, &flags, 8, (off_t)((entry & ((1ull << 55) - 1)) * 8)) == 8)
    result = !((flags >> SP_KPF_DIRTY) & 1) && !((flags >> SP_KPF_WRITEBACK) & 1);
  if (pm >= 0) close(pm);
  if (kf >= 0) close(kf);
  munmap(p, SP_PAGE_SIZE);
  return result;
}

/* Is this page's content held by a guest page the engine tracks? */
static bool held_by_guest(struct sp_engine *e, const void *page) {
  uint64_t hash = sp__hash_page(page);
  /* Stable index, then the unstable index as it stands (this pass's, or
   * the one just completed between passes). */
  return sp__stable_find(e, page, hash) != SP_NIL || sp__unstable_holds(e, page, hash);
}

/* One byte per page of the file, bit 0 set when cached (mincore). */
static int resident(int fd, uint64_t size, unsigned char **vec_out) {
  size_t pages = (size_t)((size + SP_PAGE_SIZE - 1) / SP_PAGE_SIZE);
  unsigned char *vec = calloc(pages ? pages : 1, 1);
  if (!vec) return -ENOMEM;
  if (pages) {
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
      free(vec);
      return -errno;
    }
    int err = mincore(map, (size_t)size, vec) ? -errno : 0;
    munmap(map, (size_t)size);
    if (err) {
      free(vec);
      return err;
    }
  }
  *vec_out = vec;
  return 0;
}

static void drop_range(int fd, uint64_t off, uint64_t len) {
  if (len) posix_fadvise(fd, (off_t)off, (off_t)len, POSIX_FADV_DONTNEED);
}

static int examine_file(struct sp_engine *e, const char *path, bool act,
                        sp_cache_result *out) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  struct stat st;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
    close(fd);
    return -EINVAL;
  }
  uint64_t size = (uint64_t)st.st_size;
  size_t pages = (size_t)(size / SP_PAGE_SIZE); /* whole pages only */
  if (!pages) {
    close(fd);
    return 0;
  }
  /* Contents come through a mapping marked MADV_RANDOM, read with
   * process_vm_readv on ourselves: a cached page carrying the kernel's
   * readahead mark would start readahead on a read() (caching more of the
   * file, even in a dry run), and a file truncated meanwhile gives EFAULT
   * here rather than SIGBUS. */
  uint8_t *map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) {
    int err = -errno;
    close(fd);
    return err;
  }
  madvise(map, (size_t)size, MADV_RANDOM);
  unsigned char *vec = calloc(pages + 1, 1);
  uint8_t *buf = malloc((size_t)RUN_PAGES * SP_PAGE_SIZE);
  unsigned char now[RUN_PAGES];
  uint8_t *drop = calloc(pages, 1);
  int err = !vec || !buf || !drop ? -ENOMEM : mincore(map, (size_t)pages * SP_PAGE_SIZE, vec) ? -errno : 0;
  if (err) {
    munmap(map, (size_t)size);
    free(vec);
    free(buf);
    free(drop);
    close(fd);
    return err;
  }
  int have_cachestat = 1;
  for (size_t i = 0; i < pages; i++) out->cache_pages_total += vec[i] & 1;

  /* Read runs of cached pages (never an uncached one: that would be disk
   * I/O and would cache it) and look each page up. */
  pid_t self = getpid();
  for (size_t i = 0; i < pages;) {
    /* A cancel between runs leaves this file untouched: its drops come
     * only after every run was read. */
    if (atomic_load(&e->cancel)) {
      err = -ECANCELED;
      break;
    }
    if (!(vec[i] & 1)) {
      i++;
      continue;
    }
    size_t j = i;
    while (j < pages && (vec[j] & 1) && j - i < RUN_PAGES) j++;
    /* The file's first mincore may be seconds old by now, and a page the
     * host evicted meanwhile would be read back from disk by the read
     * below, cached, and charged to this process rather than to the VM's
     * memory cgroup, outside its limit (seen: a scrub every 10 s under
     * bonnie++ grew an image's cache 500 MiB past its cgroup's).  So the
     * run is cut at the first page no longer resident, just before it is
     * read. */
    if (mincore(map + i * SP_PAGE_SIZE, (j - i) * SP_PAGE_SIZE, now) == 0) {
      size_t k = 0;
      while (k < j - i && (now[k] & 1)) k++;
      if (k == 0) { /* gone: counted in total, not checked */
        i++;
        continue;
      }
      j = i + k;
    }
    struct iovec local = {buf, (j - i) * SP_PAGE_SIZE};
    struct iovec remote = {map + i * SP_PAGE_SIZE, (j - i) * SP_PAGE_SIZE};
    ssize_t got = process_vm_readv(self, &local, 1, &remote, 1, 0);
    size_t whole = got > 0 ? (size_t)got / SP_PAGE_SIZE : 0;
    for (size_t k = 0; k < whole; k++) {
      out->cache_pages_checked++;
      if (!held_by_guest(e, buf + k * SP_PAGE_SIZE)) continue;
      out->cache_pages_in_guest++;
      if (!act) continue;
      int clean = page_clean(fd, (uint64_t)(i + k) * SP_PAGE_SIZE, &have_cachestat);
      if (clean == 1) drop[i + k] = 1;
      else out->dirty_skipped++;
    }
    i = j;
  }
  /* A page still mapped (by us) is not dropped by DONTNEED. */
  munmap(map, (size_t)size);

  if (act && !err) {
    /* One fadvise per run of droppable pages; then count what went. */
    size_t start = 0, end;
    while ((end = sp__next_run(drop, pages, &start)) > start) {
      drop_range(fd, (uint64_t)start * SP_PAGE_SIZE, (uint64_t)(end - start) * SP_PAGE_SIZE);
      start = end;
    }
    unsigned char *after = NULL;
    if (resident(fd, size, &after) == 0) {
      for (size_t i = 0; i < pages; i++)
        if (drop[i] && !(after[i] & 1)) out->cache_pages_dropped++;
      free(after);
    }
  }
  free(buf);
  free(drop);
  free(vec);
  close(fd);
  return err;
}

int sp_cache_pass(sp_engine *e, const char *const *paths, size_t npaths,
                  uint32_t flags, sp_cache_result *out) {
  if (!e || !out || (npaths && !paths) || (flags & ~SP_CACHE_ACT)) return -EINVAL;
  memset(out, 0, sizeof *out);
  if (!e->tr.rmap_items && !e->stable.nused) return -ENODATA;
  for (size_t i = 0; i < npaths; i++) {
    /* sp_engine_cancel() stops the pass between files and between runs of
     * a file's cached pages, as it stops a scan (the request is consumed). */
    int err = atomic_load(&e->cancel) ? -ECANCELED : examine_file(e, paths[i], flags & SP_CACHE_ACT, out);
    if (err == -ECANCELED) {
      atomic_store(&e->cancel, false);
      return -ECANCELED;
    }
    out->files++;
    if (err) out->errors++;
  }
  out->cache_bytes_reclaimed = out->cache_pages_dropped * SP_PAGE_SIZE;
  return 0;
}
