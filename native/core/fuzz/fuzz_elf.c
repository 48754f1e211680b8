/* fuzz_elf.c - libFuzzer target for the ELF core parser (memory dumps are
 * untrusted files). */
#include <stdint.h>
#include <stdlib.h>

#include "elfcore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct sp__elf_range *r = NULL;
  size_t n = 0;
  /* The file is claimed larger than the buffer half the time, so checks
   * against the file size and against the buffer both get exercised. */
  uint64_t file_size = (size & 1) ? (uint64_t)size * 4096 : size;
  if (sp__elf_ranges(data, size, file_size, &r, &n) == 0) {
    for (size_t i = 0; i < n; i++) {
      if (!r[i].npages || r[i].start % 4096) abort();
      if (r[i].file_offset + r[i].npages * 4096 > file_size) abort();
      if (i && r[i].start < r[i - 1].start + r[i - 1].npages * 4096) abort();
    }
    free(r);
  }
  return 0;
}
