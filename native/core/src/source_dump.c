/*
 * source_dump.c - a memory dump file: raw memory (the file is guest memory
 * from address 0) or an ELF core (QEMU dump-guest-memory).  Read with
 * pread, not mmap, so that a file truncated under us gives read errors
 * (pages lost) rather than SIGBUS.
 *
 * Holes in a sparse file (guest memory never written, left out by the
 * dump tool or cp --sparse) are absent pages, as the same memory is absent
 * in a live guest: SEEK_DATA/SEEK_HOLE find them a window at a time, so
 * they are neither read nor counted, and a large hole is skipped in one go.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "elfcore.h"
#include "sources.h"

struct dump_impl {
  int fd;
  uint32_t flags;
  /* The ranges of the last dump_ranges(), to find the file offset of an
   * address in presence() and next_present(). */
  struct sp_range_spec *specs;
  size_t nspecs;
};

/* Keeps a copy of the ranges just handed to the engine. */
static int remember_specs(struct dump_impl *d, const struct sp_range_spec *specs, size_t n) {
  struct sp_range_spec *copy = malloc((n ? n : 1) * sizeof *copy);
  if (!copy) return -ENOMEM;
  if (n) memcpy(copy, specs, n * sizeof *copy);
  free(d->specs);
  d->specs = copy;
  d->nspecs = n;
  return 0;
}

/* The range holding addr (ranges are sorted by address), or NULL. */
static const struct sp_range_spec *spec_of(const struct dump_impl *d, uint64_t addr) {
  size_t lo = 0, hi = d->nspecs;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const struct sp_range_spec *r = &d->specs[mid];
    if (addr < r->start) hi = mid;
    else if (addr - r->start >= r->npages * SP_PAGE_SIZE) lo = mid + 1;
    else return r;
  }
  return NULL;
}

/* The first byte of data at or after off, or -1 when only holes (or the
 * end of the file) follow (ENXIO).  A file system without hole support
 * reports everything as data; any other failure is taken the same way, so
 * an error never hides pages. */
static int64_t next_data(int fd, uint64_t off) {
  off_t at = lseek(fd, (off_t)off, SEEK_DATA);
  if (at >= 0) return (int64_t)at;
  return errno == ENXIO ? -1 : (int64_t)off;
}

static int dump_presence(struct sp_source *src, uint64_t addr, size_t npages, uint8_t *flags) {
  struct dump_impl *d = src->impl;
  memset(flags, 0, npages);
  const struct sp_range_spec *r = spec_of(d, addr);
  if (!r) return 0;
  uint64_t base = r->file_offset + (addr - r->start);
  uint64_t end = base + (uint64_t)npages * SP_PAGE_SIZE;
  /* Two seeks per run of data: nothing per page. */
  for (uint64_t off = base; off < end;) {
    int64_t data = next_data(d->fd, off);
    if (data < 0 || (uint64_t)data >= end) break;
    off_t hole = lseek(d->fd, (off_t)data, SEEK_HOLE);
    uint64_t data_end = hole < 0 || (uint64_t)hole > end ? end : (uint64_t)hole;
    if (data_end <= (uint64_t)data) data_end = end; /* no progress: take the rest as data */
    /* A page with any data in it is present. */
    size_t from = (size_t)(((uint64_t)data - base) / SP_PAGE_SIZE);
    size_t to = (size_t)((data_end - base + SP_PAGE_SIZE - 1) / SP_PAGE_SIZE);
    memset(flags + from, PAGE_PRESENT, to - from);
    off = data_end;
  }
  return 0;
}

static int dump_next_present(struct sp_source *src, uint64_t addr, uint64_t end, uint64_t *next) {
  struct dump_impl *d = src->impl;
  const struct sp_range_spec *r = spec_of(d, addr);
  if (!r) return -ENOENT;
  int64_t data = next_data(d->fd, r->file_offset + (addr - r->start));
  uint64_t at = data < 0 ? end : r->start + ((uint64_t)data - r->file_offset) / SP_PAGE_SIZE * SP_PAGE_SIZE;
  *next = at < end ? at : end;
  return 0;
}

static int dump_ranges(struct sp_source *src, struct sp_range_spec **out,
                       size_t *n) {
  struct dump_impl *d = src->impl;
  struct stat st;
  *out = NULL;
  *n = 0;
  if (fstat(d->fd, &st)) return -errno;
  uint64_t size = (uint64_t)st.st_size;
  uint8_t head[sizeof(Elf64_Ehdr)];
  ssize_t got = pread(d->fd, head, sizeof head, 0);
  if (got < 0) return -errno;
  if (!(d->flags & SP_DUMP_RAW) && sp__elf_is_elf(head, (size_t)got)) {
    int64_t span = sp__elf_header_span(head, (size_t)got);
    if (span < 0) return (int)span;
    uint8_t *hdrs = malloc((size_t)span);
    if (!hdrs) return -ENOMEM;
    got = pread(d->fd, hdrs, (size_t)span, 0);
    struct sp__elf_range *loads = NULL;
    int err = got < 0 ? -errno : got < span ? -ENOEXEC
                                            : sp__elf_ranges(hdrs, (size_t)span, size, &loads, n);
    free(hdrs);
    if (!err) {
      *out = malloc((*n ? *n : 1) * sizeof **out);
      if (!*out) err = -ENOMEM;
      for (size_t i = 0; !err && i < *n; i++)
        (*out)[i] = (struct sp_range_spec){.start = loads[i].start,
                                           .npages = loads[i].npages,
                                           .file_offset = loads[i].file_offset};
    }
    free(loads);
    if (!err) err = remember_specs(d, *out, *n);
    if (err) {
      free(*out);
      *out = NULL;
      *n = 0;
    }
    return err;
  }
  if (size < SP_PAGE_SIZE) return remember_specs(d, NULL, 0);
  *out = malloc(sizeof **out);
  if (!*out) return -ENOMEM;
  **out = (struct sp_range_spec){.start = 0, .npages = size / SP_PAGE_SIZE};
  *n = 1;
  int err = remember_specs(d, *out, 1);
  if (err) {
    free(*out);
    *out = NULL;
    *n = 0;
  }
  return err;
}

static int dump_read(struct sp_source *src, const struct sp_range *range,
                     uint64_t first, size_t npages, const uint8_t *want,
                     uint8_t *buf, const void **ptrs) {
  struct dump_impl *d = src->impl;
  size_t i = 0, j;
  while ((j = sp__next_run(want, npages, &i)) > i) {
    /* One pread per run of wanted pages. */
    uint64_t off = range->file_offset + (first + i) * SP_PAGE_SIZE;
    size_t bytes = (j - i) * SP_PAGE_SIZE;
    ssize_t got = pread(d->fd, buf + i * SP_PAGE_SIZE, bytes, (off_t)off);
    size_t whole = got > 0 ? (size_t)got / SP_PAGE_SIZE : 0;
    for (size_t k = i; k < j; k++)
      ptrs[k] = k - i < whole ? buf + k * SP_PAGE_SIZE : NULL;
    i = j;
  }
  return 0;
}

static void dump_destroy(struct sp_source *src) {
  struct dump_impl *d = src->impl;
  if (d) {
    close(d->fd);
    free(d->specs);
  }
  free(d);
}

static const struct sp_source_ops dump_ops = {.ranges = dump_ranges,
                                              .presence = dump_presence,
                                              .read = dump_read,
                                              .next_present = dump_next_present,
                                              .destroy = dump_destroy};

int sp__source_dump_open(const char *name, const char *path, uint32_t flags,
                         struct sp_source **out) {
  if (!path || (flags & ~SP_DUMP_RAW)) return -EINVAL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  struct stat st;
  int err = fstat(fd, &st) ? -errno
            : S_ISDIR(st.st_mode) ? -EISDIR
            : !S_ISREG(st.st_mode) ? -EINVAL : 0;
  if (err) {
    close(fd);
    return err;
  }
  const char *base = strrchr(path, '/');
  struct sp_source *src = sp__source_new(SP_SOURCE_DUMP, name, base ? base + 1 : path);
  struct dump_impl *d = calloc(1, sizeof *d);
  if (!src || !d) {
    close(fd);
    free(src);
    free(d);
    return -ENOMEM;
  }
  d->fd = fd;
  d->flags = flags;
  src->flags = flags;
  src->ops = &dump_ops;
  src->impl = d;
  *out = src;
  return 0;
}
