/* elfcore.h - memory ranges of an ELF core file (private). */
#ifndef SP_ELFCORE_H
#define SP_ELFCORE_H

#include <stddef.h>
#include <stdint.h>

#include "samepage.h"

#pragma GCC visibility push(hidden)

/* A PT_LOAD segment's pages: guest-physical address, count, file offset. */
struct sp__elf_range {
  uint64_t start;
  uint64_t npages;
  uint64_t file_offset;
};

/* True when data starts with the ELF magic. */
int sp__elf_is_elf(const uint8_t *data, size_t len);

/* Bytes of the file needed to parse the headers (from the ELF header), or
 * a negative errno (-ENOEXEC: not a 64-bit little-endian ELF core). */
int64_t sp__elf_header_span(const uint8_t *data, size_t len);

/* Page-aligned memory ranges of the PT_LOAD segments in data (which holds
 * at least the header span), addressed by guest-physical address
 * (p_paddr), file-backed only, sorted, overlaps dropped.  *out is malloc'd.
 * -ENOEXEC for malformed headers. */
int sp__elf_ranges(const uint8_t *data, size_t len, uint64_t file_size,
                  struct sp__elf_range **out, size_t *n);

#pragma GCC visibility pop

#endif
