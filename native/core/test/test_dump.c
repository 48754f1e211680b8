/* test_dump.c - memory dump files: raw and ELF core, and a file that
 * shrinks while it is scanned. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static char dir[] = "/tmp/samepage-dump-XXXXXX";

static void write_file(const char *path, const void *data, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  CHECK(fd >= 0);
  CHECK_EQ(write(fd, data, len), (long long)len);
  close(fd);
}

/* 64 pages: 16 copies of 2 contents (32 pages), 8 zero pages, 24 unique. */
static unsigned char *make_memory(void) {
  unsigned char *m = calloc(64, SP_PAGE_SIZE);
  for (int i = 0; i < 64; i++) {
    unsigned char *p = m + (size_t)i * SP_PAGE_SIZE;
    if (i < 32) sp_test_fill(p, 1 + (uint64_t)(i % 2));
    else if (i < 40) memset(p, 0, SP_PAGE_SIZE);
    else sp_test_fill(p, 1000 + (uint64_t)i);
  }
  return m;
}

static void raw_dump(void) {
  unsigned char *m = make_memory();
  char path[128];
  snprintf(path, sizeof path, "%s/raw.img", dir);
  write_file(path, m, 64 * SP_PAGE_SIZE);
  sp_engine *e = sp_test_engine(1, 256, 1, 1);
  uint32_t id;
  CHECK_OK(sp_add_dump(e, NULL, path, 0, &id));
  sp_source_info info;
  CHECK_OK(sp_source_get(e, 0, &info));
  CHECK_EQ(info.kind, SP_SOURCE_DUMP);
  CHECK_EQ(strcmp(info.name, "raw.img"), 0);
  CHECK_EQ(info.pages, 64);
  sp_test_passes(e, 2);
  sp_counters c = sp_test_counters(e);
  CHECK_EQ(c.pages_shared, 2);
  CHECK_EQ(c.pages_sharing, 30);
  CHECK_EQ(c.ksm_zero_pages, 8);
  sp_engine_destroy(e);
  free(m);
}

static void elf_dump(void) {
  /* Header + phdrs in the first page, two PT_LOAD segments after it. */
  unsigned char *m = make_memory();
  size_t size = SP_PAGE_SIZE * 65;
  unsigned char *file = calloc(1, size);
  Elf64_Ehdr *eh = (Elf64_Ehdr *)file;
  memcpy(eh->e_ident, ELFMAG, SELFMAG);
  eh->e_ident[EI_CLASS] = ELFCLASS64;
  eh->e_ident[EI_DATA] = ELFDATA2LSB;
  eh->e_type = ET_CORE;
  eh->e_phoff = sizeof *eh;
  eh->e_phentsize = sizeof(Elf64_Phdr);
  eh->e_phnum = 2;
  Elf64_Phdr *ph = (Elf64_Phdr *)(file + sizeof *eh);
  ph[0] = (Elf64_Phdr){.p_type = PT_LOAD, .p_offset = SP_PAGE_SIZE, .p_paddr = 0,
                       .p_filesz = 40 * SP_PAGE_SIZE};
  ph[1] = (Elf64_Phdr){.p_type = PT_LOAD, .p_offset = 41 * SP_PAGE_SIZE,
                       .p_paddr = 1ull << 32, .p_filesz = 24 * SP_PAGE_SIZE};
  memcpy(file + SP_PAGE_SIZE, m, 64 * SP_PAGE_SIZE);
  char path[128];
  snprintf(path, sizeof path, "%s/core.elf", dir);
  write_file(path, file, size);

  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  CHECK_OK(sp_add_dump(e, "guest", path, 0, NULL));
  sp_source_info info;
  CHECK_OK(sp_source_get(e, 0, &info));
  CHECK_EQ(info.ranges, 2);
  CHECK_EQ(info.pages, 64);
  sp_test_passes(e, 2);
  sp_counters c = sp_test_counters(e);
  CHECK_EQ(c.pages_shared, 3); /* the two contents and the zero page */
  CHECK_EQ(c.pages_sharing, 37);
  sp_engine_destroy(e);

  /* The same file forced raw: the header page is one more unique page. */
  e = sp_test_engine(0, 256, 1, 1);
  CHECK_OK(sp_add_dump(e, NULL, path, SP_DUMP_RAW, NULL));
  CHECK_OK(sp_source_get(e, 0, &info));
  CHECK_EQ(info.pages, 65);
  sp_engine_destroy(e);

  /* A malformed core file is refused with ENOEXEC. */
  ph[1].p_filesz = 1000 * SP_PAGE_SIZE;
  write_file(path, file, size);
  e = sp_test_engine(0, 256, 1, 1);
  CHECK_EQ(sp_add_dump(e, NULL, path, 0, NULL), -ENOEXEC);
  CHECK_EQ(sp_source_count(e), 0);
  snprintf(path, sizeof path, "%s/missing.img", dir);
  CHECK_EQ(sp_add_dump(e, NULL, path, 0, NULL), -ENOENT);
  CHECK_EQ(sp_add_dump(e, NULL, dir, 0, NULL), -EISDIR);
  sp_engine_destroy(e);
  free(file);
  free(m);
}

/* The file shrinks between passes: its missing pages leave tracking and
 * are counted as lost; nothing crashes and the counts stay consistent. */
static void shrinking_dump(void) {
  unsigned char *m = make_memory();
  char path[128];
  snprintf(path, sizeof path, "%s/shrink.img", dir);
  write_file(path, m, 64 * SP_PAGE_SIZE);
  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  CHECK_OK(sp_add_dump(e, NULL, path, 0, NULL));
  sp_test_passes(e, 2);
  CHECK_EQ(sp_test_counters(e).pages_sharing, 30 + 7);
  /* Mid-pass: read part of the file, then cut it to 16 pages. */
  CHECK_OK(sp_engine_step(e, 8));
  CHECK_EQ(truncate(path, 16 * SP_PAGE_SIZE), 0);
  CHECK_OK(sp_engine_pass(e));
  sp_test_passes(e, 1);
  sp_counters c = sp_test_counters(e);
  CHECK_EQ(c.pages_lost, 48);
  CHECK_EQ(c.rmap_items, 16);
  CHECK_EQ(c.pages_shared, 2);
  CHECK_EQ(c.pages_sharing, 14);
  sp_engine_destroy(e);
  free(m);
}

/* A sparse dump (holes where the guest never wrote, as cp --sparse and
 * most dump tools leave them): holes are absent pages, found with
 * SEEK_DATA/SEEK_HOLE and never read, instead of 4 KiB of zeros each that
 * would all merge into one zero page.  Data: two copies of a page at
 * pages 0-1 and two at 3000-3001 of a 4096-page file; an explicitly
 * written zero page at 2000 is data and stays. */
static void sparse_dump(void) {
  enum { PAGES = 4096 };
  char path[128];
  snprintf(path, sizeof path, "%s/sparse.img", dir);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  CHECK(fd >= 0);
  if (fd < 0) return;
  CHECK_EQ(ftruncate(fd, (off_t)PAGES * SP_PAGE_SIZE), 0);
  unsigned char *page = calloc(1, SP_PAGE_SIZE);
  sp_test_fill(page, 77);
  const int data_at[] = {0, 1, 3000, 3001};
  for (size_t i = 0; i < sizeof data_at / sizeof *data_at; i++)
    CHECK_EQ(pwrite(fd, page, SP_PAGE_SIZE, (off_t)data_at[i] * SP_PAGE_SIZE), SP_PAGE_SIZE);
  memset(page, 0, SP_PAGE_SIZE);
  CHECK_EQ(pwrite(fd, page, SP_PAGE_SIZE, (off_t)2000 * SP_PAGE_SIZE), SP_PAGE_SIZE);
  CHECK_EQ(fsync(fd), 0);
  off_t hole = lseek(fd, 0, SEEK_HOLE);
  close(fd);
  free(page);
  if (hole >= (off_t)PAGES * SP_PAGE_SIZE) {
    fprintf(stderr, "  skipped: this file system does not report holes\n");
    return;
  }
  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  CHECK_OK(sp_add_dump(e, NULL, path, SP_DUMP_RAW, NULL));
  sp_test_passes(e, 2);
  sp_counters c = sp_test_counters(e);
  CHECK_EQ(c.rmap_items, 5);
  CHECK_EQ(c.pages_shared, 1);
  CHECK_EQ(c.pages_sharing, 3);
  CHECK_EQ(c.pages_unshared, 1); /* the lone zero page, waiting for a twin */
  /* Each present page twice, and page 0 once more: before page 3000 joins
   * the merged page, a mapping must still hold it (ksm_get_folio()); page
   * 3001 finds page 3000 in the window it is read with. */
  CHECK_EQ(c.bytes_read, (2 * 5 + 1) * SP_PAGE_SIZE);
  sp_source_info info;
  CHECK_OK(sp_source_get(e, 0, &info));
  CHECK_EQ(info.pages, PAGES);
  CHECK_EQ(info.present_pages, 5);
  sp_engine_destroy(e);
}

int main(void) {
  if (!mkdtemp(dir)) return 2;
  sp_check_run("raw dump", raw_dump);
  sp_check_run("ELF core dump", elf_dump);
  sp_check_run("a dump that shrinks mid-scan", shrinking_dump);
  sp_check_run("a sparse dump: holes are absent, not read", sparse_dump);
  char cmd[160];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
  return sp_check_done();
}
