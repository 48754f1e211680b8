/*
 * elfcore.c - the memory ranges of an ELF core file, as QEMU's
 * dump-guest-memory writes them (ET_CORE, one PT_LOAD per RAM block, the
 * guest-physical address in p_paddr).  Untrusted input: every offset and
 * size is checked against the buffer and the file before use.
 */
#include "elfcore.h"

#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int sp__elf_is_elf(const uint8_t *data, size_t len) {
  return len >= SELFMAG && memcmp(data, ELFMAG, SELFMAG) == 0;
}

static int check_ident(const uint8_t *data, size_t len, Elf64_Ehdr *eh) {
  if (len < sizeof *eh || !sp__elf_is_elf(data, len)) return -ENOEXEC;
  memcpy(eh, data, sizeof *eh);
  if (eh->e_ident[EI_CLASS] != ELFCLASS64 ||
      eh->e_ident[EI_DATA] != ELFDATA2LSB || eh->e_type != ET_CORE ||
      eh->e_phentsize != sizeof(Elf64_Phdr))
    return -ENOEXEC;
  return 0;
}

int64_t sp__elf_header_span(const uint8_t *data, size_t len) {
  Elf64_Ehdr eh;
  int err = check_ident(data, len, &eh);
  if (err) return err;
  /* e_phnum of PN_XNUM means the count is in section 0; QEMU never does
   * that below 65535 segments, and we do not need to support it. */
  if (eh.e_phnum == PN_XNUM) return -ENOEXEC;
  uint64_t span = (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr);
  if (eh.e_phoff > UINT64_MAX - span) return -ENOEXEC;
  span += eh.e_phoff;
  if (span > (1u << 24)) return -ENOEXEC;
  return (int64_t)(span < sizeof eh ? sizeof eh : span);
}

static int by_start(const void *a, const void *b) {
  const struct sp__elf_range *x = a, *y = b;
  return x->start < y->start ? -1 : x->start > y->start;
}

int sp__elf_ranges(const uint8_t *data, size_t len, uint64_t file_size,
                  struct sp__elf_range **out, size_t *n) {
  *out = NULL;
  *n = 0;
  int64_t span = sp__elf_header_span(data, len);
  if (span < 0) return (int)span;
  if ((uint64_t)span > len) return -ENOEXEC;
  Elf64_Ehdr eh;
  memcpy(&eh, data, sizeof eh);
  struct sp__elf_range *specs = calloc(eh.e_phnum ? eh.e_phnum : 1, sizeof *specs);
  if (!specs) return -ENOMEM;
  size_t count = 0;
  for (size_t i = 0; i < eh.e_phnum; i++) {
    Elf64_Phdr ph;
    memcpy(&ph, data + eh.e_phoff + i * sizeof ph, sizeof ph);
    if (ph.p_type != PT_LOAD || !ph.p_filesz) continue;
    if (ph.p_offset > file_size || ph.p_filesz > file_size - ph.p_offset)
      return free(specs), -ENOEXEC;
    /* Whole pages only; the file offset and address must agree on the
     * page position so a page of the file is a page of guest memory. */
    uint64_t skip = (SP_PAGE_SIZE - (ph.p_paddr % SP_PAGE_SIZE)) % SP_PAGE_SIZE;
    if (skip >= ph.p_filesz) continue;
    if (ph.p_paddr > UINT64_MAX - skip) continue;
    uint64_t pages = (ph.p_filesz - skip) / SP_PAGE_SIZE;
    if (!pages) continue;
    if (ph.p_paddr + skip > UINT64_MAX - pages * SP_PAGE_SIZE) continue;
    specs[count++] = (struct sp__elf_range){.start = ph.p_paddr + skip,
                                            .npages = pages,
                                            .file_offset = ph.p_offset + skip};
  }
  qsort(specs, count, sizeof *specs, by_start);
  /* Drop segments that overlap an earlier one (a malformed or odd file). */
  size_t kept = 0;
  for (size_t i = 0; i < count; i++) {
    if (kept) {
      const struct sp__elf_range *prev = &specs[kept - 1];
      if (specs[i].start < prev->start + prev->npages * SP_PAGE_SIZE) continue;
    }
    specs[kept++] = specs[i];
  }
  *out = specs;
  *n = kept;
  return 0;
}
