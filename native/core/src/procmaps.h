/* procmaps.h - parsing /proc/PID/smaps (private). */
#ifndef SP_PROCMAPS_H
#define SP_PROCMAPS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#pragma GCC visibility push(hidden)

/* VmFlags bits we use (see proc(5)). */
#define VMF_MG 0x001 /* mergeable (MADV_MERGEABLE or prctl) */
#define VMF_SH 0x002 /* shared */
#define VMF_PF 0x004 /* pure PFN range */
#define VMF_IO 0x008 /* memory-mapped I/O */
#define VMF_DE 0x010 /* do not expand */
#define VMF_HT 0x020 /* hugetlb */
#define VMF_MM 0x040 /* mixed map */
#define VMF_WR 0x080 /* writable */
#define VMF_SEEN 0x100 /* a VmFlags line was present */
#define VMF_DP 0x200 /* droppable (MAP_DROPPABLE, 6.11+) */

struct sp_vma {
  uint64_t start, end;
  uint64_t inode;
  char perms[5];
  uint32_t vmflags;
  uint8_t special; /* [vdso], [vvar], [vsyscall]...: never scanned */
};

/* Parses smaps (or maps: then vmflags lack VMF_SEEN) text.  *out is
 * malloc'd, sorted as in the file.  -EINVAL for text that is not smaps,
 * -ENOMEM. */
int sp__smaps_parse(const char *text, size_t len, struct sp_vma **out,
                   size_t *n);

/* Reads a whole /proc file (they report size 0) into a malloc'd,
 * NUL-terminated buffer.  -errno. */
int sp__read_proc_file(const char *path, char **out, size_t *len);

/* Reads and parses /proc/PID/smaps; a missing process is -ESRCH, a
 * process without mappings (a zombie) gives none. */
int sp__read_smaps(pid_t pid, struct sp_vma **out, size_t *n);

/* The "-m" size of a QEMU command line (NUL-separated argv), in bytes:
 * "-m 1024", "-m 1G", "-m size=2048M,slots=...".  0 when absent or not
 * QEMU (QEMU's default of 128 MiB is applied by the caller). */
uint64_t sp__qemu_ram_bytes(const char *argv, size_t len, int *is_qemu);

#pragma GCC visibility pop

#endif
