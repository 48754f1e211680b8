/*
 * pagecache.c - what the host page cache holds of a file, measured apart from the engine so
 * tests and benchmarks can check the exclusive-cache pass with an independent tool.
 *
 *   pagecache state FILE   one character a 4 KiB page: '.' not cached, 'c' cached and clean,
 *                          'd' cached and dirty or under writeback; then a newline
 *   pagecache evict FILE   write the file back (fdatasync), then drop all of it from the cache
 *
 * Residency comes from mincore(2) on a mapping we never touch (no fault, no read); dirtiness
 * from cachestat(2) (Linux 6.5+) on each cached page. Node has neither call.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif

#define PAGE 4096u

struct cs_range {
  uint64_t off, len;
};
struct cs_stat {
  uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

static int fail(const char *what, const char *path) {
  fprintf(stderr, "pagecache: %s %s: %s\n", what, path, strerror(errno));
  return 1;
}

static int state(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail("cannot open", path);
  struct stat st;
  if (fstat(fd, &st)) return fail("cannot stat", path);
  if (!S_ISREG(st.st_mode)) {
    errno = EINVAL;
    return fail("not a regular file:", path);
  }
  size_t size = (size_t)st.st_size, pages = size / PAGE;
  unsigned char *vec = calloc(pages + 1, 1);
  char *out = malloc(pages + 2);
  if (!vec || !out) return fail("out of memory for", path);
  if (pages) {
    void *map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) return fail("cannot map", path);
    if (mincore(map, size, vec)) return fail("mincore failed on", path);
    munmap(map, size);
  }
  for (size_t i = 0; i < pages; i++) {
    if (!(vec[i] & 1)) {
      out[i] = '.';
      continue;
    }
    struct cs_range r = {(uint64_t)i * PAGE, PAGE};
    struct cs_stat cs;
    if (syscall(__NR_cachestat, fd, &r, &cs, 0)) return fail("cachestat(2) failed (Linux 6.5+ needed) on", path);
    out[i] = (cs.nr_dirty || cs.nr_writeback) ? 'd' : 'c';
  }
  out[pages] = '\n';
  out[pages + 1] = '\0';
  fputs(out, stdout);
  free(vec);
  free(out);
  close(fd);
  return 0;
}

static int evict(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail("cannot open", path);
  /* DONTNEED leaves dirty pages in place: write them back first. */
  if (fdatasync(fd)) return fail("cannot write back", path);
  int err = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  if (err) {
    errno = err;
    return fail("cannot drop the cache of", path);
  }
  close(fd);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "state")) return state(argv[2]);
  if (argc == 3 && !strcmp(argv[1], "evict")) return evict(argv[2]);
  fprintf(stderr, "usage: pagecache state FILE | pagecache evict FILE\n");
  return 2;
}
