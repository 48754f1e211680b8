/* test_cache.c - exclusive caching: cached pages of a file that "guest"
 * memory already holds are dropped from the page cache; dirty ones are
 * kept; a dry run changes nothing; the file's contents never change. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

enum { FILE_PAGES = 256, GUEST_PAGES = 320 };

static char path[] = "/var/tmp/samepage-cache-XXXXXX";

/* Cached pages of the file, by mincore. */
static size_t cached_pages(const char *p, unsigned char *vec) {
  int fd = open(p, O_RDONLY);
  void *map = mmap(NULL, FILE_PAGES * SP_PAGE_SIZE, PROT_READ, MAP_SHARED, fd, 0);
  unsigned char local[FILE_PAGES];
  if (!vec) vec = local;
  mincore(map, FILE_PAGES * SP_PAGE_SIZE, vec);
  munmap(map, FILE_PAGES * SP_PAGE_SIZE);
  close(fd);
  size_t n = 0;
  for (int i = 0; i < FILE_PAGES; i++) n += vec[i] & 1;
  return n;
}

static uint64_t file_sum(const char *p) {
  int fd = open(p, O_RDONLY);
  unsigned char page[SP_PAGE_SIZE];
  uint64_t sum = 0;
  while (read(fd, page, sizeof page) == sizeof page) sum = sum * 31 + sp_page_hash(page);
  close(fd);
  return sum;
}

static void drop_and_act(void) {
  /* The file: pages 0..191 are blocks a guest also holds, 192..255 are not. */
  unsigned char *file = malloc(FILE_PAGES * SP_PAGE_SIZE);
  for (int i = 0; i < FILE_PAGES; i++) sp_test_fill(file + (size_t)i * SP_PAGE_SIZE, (i < 192 ? 10 : 5000) + (uint64_t)i);
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  /* Page by page, so the page cache holds small folios: dirtiness is per
   * folio, and this test dirties single pages. */
  for (int i = 0; i < FILE_PAGES; i++)
    CHECK_EQ(write(fd, file + (size_t)i * SP_PAGE_SIZE, SP_PAGE_SIZE), SP_PAGE_SIZE);
  CHECK_EQ(fsync(fd), 0); /* clean, cached */
  close(fd);
  uint64_t sum_before = file_sum(path);

  /* "Guest memory": the first 192 blocks as its page cache (unique pages
   * go to the unstable index), 64 of them twice (merged: the stable index),
   * and other data. */
  unsigned char *guest = sp_test_pages(GUEST_PAGES);
  memcpy(guest, file, 192 * SP_PAGE_SIZE);
  memcpy(guest + 192 * SP_PAGE_SIZE, file, 64 * SP_PAGE_SIZE);
  for (int i = 256; i < GUEST_PAGES; i++) sp_test_fill(guest + (size_t)i * SP_PAGE_SIZE, 90000 + (uint64_t)i);
  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  CHECK_OK(sp_add_memory(e, "guest", guest, GUEST_PAGES * SP_PAGE_SIZE, NULL));
  const char *paths[] = {path};
  sp_cache_result r;
  CHECK_EQ(sp_cache_pass(e, paths, 1, 0, &r), -ENODATA);
  sp_test_passes(e, 2);
  CHECK_EQ(sp_test_counters(e).pages_sharing, 64);

  CHECK_EQ(cached_pages(path, NULL), FILE_PAGES);
  CHECK_OK(sp_cache_pass(e, paths, 1, 0, &r)); /* dry run */
  CHECK_EQ(r.files, 1);
  CHECK_EQ(r.cache_pages_total, FILE_PAGES);
  CHECK_EQ(r.cache_pages_checked, FILE_PAGES);
  CHECK_EQ(r.cache_pages_in_guest, 192);
  CHECK_EQ(r.cache_pages_dropped, 0);
  CHECK_EQ(cached_pages(path, NULL), FILE_PAGES);

  /* Dirty 16 of the matching pages (same bytes written again: dirty but
   * still equal to the guest's copy). */
  fd = open(path, O_WRONLY);
  for (int i = 100; i < 116; i++)
    CHECK_EQ(pwrite(fd, file + (size_t)i * SP_PAGE_SIZE, SP_PAGE_SIZE, (off_t)i * SP_PAGE_SIZE), SP_PAGE_SIZE);
  close(fd);

  CHECK_OK(sp_cache_pass(e, paths, 1, SP_CACHE_ACT, &r));
  CHECK_EQ(r.cache_pages_in_guest, 192);
  CHECK_EQ(r.dirty_skipped, 16);
  CHECK_EQ(r.cache_pages_dropped, 176);
  CHECK_EQ(r.cache_bytes_reclaimed, 176 * SP_PAGE_SIZE);
  unsigned char vec[FILE_PAGES];
  CHECK_EQ(cached_pages(path, vec), FILE_PAGES - 176);
  for (int i = 100; i < 116; i++) CHECK(vec[i] & 1);   /* the dirty ones stayed */
  for (int i = 192; i < FILE_PAGES; i++) CHECK(vec[i] & 1); /* not in the guest */
  CHECK_EQ(file_sum(path), sum_before);
  CHECK_EQ(sp_test_counters(e).pages_sharing, 64); /* the guest's model unchanged */

  /* A file that is not there, or not a regular file, counts as an error. */
  const char *bad[] = {"/nonexistent/disk.img", "/dev/null"};
  CHECK_OK(sp_cache_pass(e, bad, 2, SP_CACHE_ACT, &r));
  CHECK_EQ(r.errors, 2);
  sp_engine_destroy(e);
  sp_test_free_pages(guest, GUEST_PAGES);
  free(file);
  unlink(path);
}

/* Waits (at most ~2 s) until the number of cached pages of the first
 * `pages` pages of `p` is the same for 5 looks 20 ms apart; false if it
 * never held still. */
static bool settle_cache(const char *p, size_t pages) {
  int fd = open(p, O_RDONLY);
  if (fd < 0) return false;
  void *map = mmap(NULL, pages * SP_PAGE_SIZE, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return false;
  unsigned char *vec = malloc(pages);
  size_t last = SIZE_MAX;
  int same = 0;
  for (int i = 0; i < 100 && same < 5 && vec; i++) {
    if (mincore(map, pages * SP_PAGE_SIZE, vec) != 0) break;
    size_t n = 0;
    for (size_t j = 0; j < pages; j++) n += vec[j] & 1;
    same = n == last ? same + 1 : 0;
    last = n;
    usleep(20000);
  }
  free(vec);
  munmap(map, pages * SP_PAGE_SIZE);
  return same >= 5;
}

/* A dry run reads only cached pages and caches nothing more: reading a
 * page that carries the kernel's readahead mark must not start readahead
 * (it did with pread). */
static void dry_run_caches_nothing(void) {
  enum { PAGES = 8192 }; /* 32 MiB */
  char p[] = "/var/tmp/samepage-ra-XXXXXX";
  int fd = mkstemp(p);
  CHECK(fd >= 0);
  unsigned char *chunk = malloc(1 << 20);
  for (int mib = 0; mib < PAGES / 256; mib++) {
    for (int i = 0; i < 256; i++) sp_test_fill(chunk + i * SP_PAGE_SIZE, (uint64_t)mib * 256 + (uint64_t)i + 7);
    CHECK_EQ(write(fd, chunk, 1 << 20), 1 << 20);
  }
  CHECK_EQ(fsync(fd), 0);
  CHECK_EQ(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
  /* A sequential read of 3 MiB leaves readahead marks in the cache. */
  for (int i = 0; i < 3; i++) CHECK_EQ(pread(fd, chunk, 1 << 20, (off_t)i << 20), 1 << 20);
  unsigned char *guest = sp_test_pages(16);
  CHECK_EQ(pread(fd, guest, 16 * SP_PAGE_SIZE, 2 << 20), 16 * SP_PAGE_SIZE); /* cached already */
  close(fd);
  /* The reads above may have started asynchronous readahead whose pages
   * land in the cache a little later: wait until the cached count holds
   * still, so that growth seen below can only come from the dry runs. */
  CHECK(settle_cache(p, PAGES));
  sp_engine *e = sp_test_engine(0, 256, 0, 1);
  CHECK_OK(sp_add_memory(e, "guest", guest, 16 * SP_PAGE_SIZE, NULL));
  sp_test_passes(e, 2);
  const char *paths[] = {p};
  sp_cache_result r;
  CHECK_OK(sp_cache_pass(e, paths, 1, 0, &r));
  uint64_t before = r.cache_pages_total;
  for (int i = 0; i < 3; i++) CHECK_OK(sp_cache_pass(e, paths, 1, 0, &r));
  CHECK_EQ(r.cache_pages_total, before);
  CHECK_EQ(r.cache_pages_in_guest, 16);
  sp_engine_destroy(e);
  sp_test_free_pages(guest, 16);
  free(chunk);
  unlink(p);
}

int main(void) {
  sp_check_run("a dry run caches nothing more", dry_run_caches_nothing);
  sp_check_run("drop cached pages a guest holds, keep dirty ones", drop_and_act);
  return sp_check_done();
}
