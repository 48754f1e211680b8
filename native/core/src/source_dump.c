/*
 * source_dump.c - a memory dump file: raw memory (the file is guest memory
 * from address 0) or an ELF core (QEMU dump-guest-memory).  Read with
 * pread, not mmap, so that a file truncated under us gives read errors
 * (pages lost) rather than SIGBUS.
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
};

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
  if (!(d->flags & SP_DUMP_RAW) && sp_elf_is_elf(head, (size_t)got)) {
    int64_t span = sp_elf_header_span(head, (size_t)got);
    if (span < 0) return (int)span;
    uint8_t *hdrs = malloc((size_t)span);
    if (!hdrs) return -ENOMEM;
    got = pread(d->fd, hdrs, (size_t)span, 0);
    int err = got < 0 ? -errno : got < span ? -ENOEXEC
                                            : sp_elf_ranges(hdrs, (size_t)span, size, out, n);
    free(hdrs);
    return err;
  }
  if (size < SP_PAGE_SIZE) return 0;
  *out = malloc(sizeof **out);
  if (!*out) return -ENOMEM;
  **out = (struct sp_range_spec){.start = 0, .npages = size / SP_PAGE_SIZE};
  *n = 1;
  return 0;
}

static int dump_read(struct sp_source *src, const struct sp_range *range,
                     uint64_t first, size_t npages, const uint8_t *want,
                     uint8_t *buf, const void **ptrs) {
  struct dump_impl *d = src->impl;
  size_t i = 0, j;
  while ((j = sp_next_run(want, npages, &i)) > i) {
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
  if (d) close(d->fd);
  free(d);
}

static const struct sp_source_ops dump_ops = {
    .ranges = dump_ranges, .read = dump_read, .destroy = dump_destroy};

int sp_add_dump(sp_engine *e, const char *name, const char *path,
                uint32_t flags, uint32_t *id_out) {
  if (!e || !path || (flags & ~SP_DUMP_RAW)) return -EINVAL;
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
  struct sp_source *src = sp_source_new(SP_SOURCE_DUMP, name, base ? base + 1 : path);
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
  return sp_source_attach(e, src, id_out);
}
