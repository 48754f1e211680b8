/* test_ranges.c - address ranges the engine can and cannot track.  A record
 * names its page by a 32-bit index in its range, so a range holds at most
 * 2^32 pages (16 TiB); a larger one is refused with -E2BIG instead of being
 * tracked in its first 16 TiB only. */
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"

#define TIB (1ull << 40)

/* Caller memory: only the length is looked at, nothing is read, so an
 * address range that is not even mapped shows the limit. */
static void memory_over_16_tib(void) {
  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  const void *base = (const void *)(uintptr_t)SP_PAGE_SIZE;
  CHECK_EQ(sp_add_memory(e, "huge", base, (size_t)(16 * TIB + SP_PAGE_SIZE), NULL), -E2BIG);
  CHECK_EQ(sp_source_count(e), 0);
  CHECK(strstr(sp_strerror(-E2BIG), "16 TiB") != NULL);
  /* Exactly 16 TiB is fine (it is only added here, never scanned). */
  uint32_t id;
  CHECK_OK(sp_add_memory(e, "limit", base, (size_t)(16 * TIB), &id));
  sp_source_info info;
  CHECK_OK(sp_source_get(e, 0, &info));
  CHECK_EQ(info.pages, (16 * TIB) / SP_PAGE_SIZE);
  CHECK_OK(sp_remove_source(e, id));
  sp_engine_destroy(e);
}

/* A process with a private mapping over 16 TiB (reserved, PROT_NONE, so it
 * costs nothing): scanning every private range refuses it at once. */
static void reserve_body(void *hello) {
  void *p = mmap(NULL, (size_t)(17 * TIB), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  *(char *)hello = p == MAP_FAILED ? 'F' : 'R';
}

static void process_over_16_tib(void) {
  char hello;
  struct sp_test_child ch = sp_test_fork(reserve_body, &hello, 1);
  if (hello != 'R') {
    fprintf(stderr, "  skipped: a 17 TiB reservation failed here\n");
    sp_test_end(&ch);
    return;
  }
  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  CHECK_EQ(sp_add_process(e, NULL, ch.pid, SP_PROC_ALL_ANON, NULL), -E2BIG);
  CHECK_EQ(sp_source_count(e), 0);
  /* Only mergeable ranges (none here are): nothing too large, accepted. */
  CHECK_OK(sp_add_process(e, NULL, ch.pid, 0, NULL));
  sp_engine_destroy(e);
  sp_test_end(&ch);
}

/* A dump that grows past 16 TiB between passes (a sparse file on tmpfs,
 * which allows such sizes): the next pass fails the source with -E2BIG and
 * forgets its pages, instead of scanning its first 16 TiB. */
static void dump_grows_over_16_tib(void) {
  char path[] = "/dev/shm/samepage-ranges-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  if (fd < 0) return;
  unlink(path);
  char fdpath[64];
  snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", fd);
  unsigned char *pages = sp_test_pages(2);
  sp_test_fill(pages, 8);
  memcpy(pages + SP_PAGE_SIZE, pages, SP_PAGE_SIZE);
  CHECK_EQ(pwrite(fd, pages, 2 * SP_PAGE_SIZE, 0), 2 * SP_PAGE_SIZE);
  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  uint32_t id;
  CHECK_OK(sp_add_dump(e, "growing", fdpath, SP_DUMP_RAW, &id));
  sp_test_passes(e, 2);
  CHECK_EQ(sp_test_counters(e).pages_sharing, 1);
  if (ftruncate(fd, (off_t)(16 * TIB + SP_PAGE_SIZE))) {
    fprintf(stderr, "  skipped: this file system refuses a 16 TiB file\n");
  } else {
    CHECK_EQ(sp_engine_pass(e), 0);
    sp_source_info info;
    CHECK_OK(sp_source_get(e, 0, &info));
    CHECK_EQ(info.error, -E2BIG);
    CHECK_EQ(info.ranges, 0);
    sp_counters c = sp_test_counters(e);
    CHECK_EQ(c.pages_sharing, 0);
    CHECK_EQ(c.rmap_items, 0);
  }
  sp_engine_destroy(e);
  sp_test_free_pages(pages, 2);
  close(fd);
}

int main(void) {
  sp_check_run("caller memory over 16 TiB is refused", memory_over_16_tib);
  sp_check_run("a process range over 16 TiB is refused", process_over_16_tib);
  sp_check_run("a dump grown over 16 TiB fails with -E2BIG", dump_grows_over_16_tib);
  return sp_check_done();
}
