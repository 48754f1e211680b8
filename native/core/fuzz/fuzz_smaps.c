/* fuzz_smaps.c - libFuzzer target for the /proc/PID/smaps and QEMU
 * command-line parsers (untrusted text from other processes). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "procmaps.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct sp_vma *v = NULL;
  size_t n = 0;
  if (sp__smaps_parse((const char *)data, size, &v, &n) == 0) {
    for (size_t i = 0; i < n; i++)
      if (v[i].end < v[i].start) abort(); /* the parser promises order */
    free(v);
  }
  int is_qemu;
  (void)sp__qemu_ram_bytes((const char *)data, size, &is_qemu);
  return 0;
}
