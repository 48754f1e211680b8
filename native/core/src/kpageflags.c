/*
 * kpageflags.c - whether this kernel's KPF_KSM can be trusted.  From the
 * folio conversion of fs/proc/page.c until its fix (6.12 among them) the
 * kernel tests `mapping & PAGE_MAPPING_KSM`, and PAGE_MAPPING_KSM holds the
 * ANON bit, so every anonymous page reads as KSM.
 */
#include "kpageflags.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>


static int probe_ksm_flag(void) {
  /* One private anonymous page of ours, written, never mergeable: a
   * kernel that reads KSM there reads it on every anonymous page. */
  long psz = sysconf(_SC_PAGESIZE);
  unsigned char *page = mmap(NULL, (size_t)psz, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) return -errno;
  madvise(page, (size_t)psz, MADV_NOHUGEPAGE);
  *(volatile unsigned char *)page = 1;
  int err = 0;
  uint64_t entry = 0, kf = 0;
  int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  int kpf = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
  if (pm < 0 || kpf < 0) err = errno == EACCES ? -EPERM : -errno;
  if (!err && pread(pm, &entry, 8, (off_t)((uintptr_t)page / (uintptr_t)psz * 8)) != 8) err = -EIO;
  if (!err && !(entry & SP_PM_PRESENT)) err = -EIO;
  if (!err && !(entry & SP_PM_PFN_MASK)) err = -EPERM; /* PFNs need CAP_SYS_ADMIN */
  if (!err && pread(kpf, &kf, 8, (off_t)((entry & SP_PM_PFN_MASK) * 8)) != 8) err = -EIO;
  if (!err && !((kf >> SP_KPF_ANON) & 1)) err = -EIO; /* not the page we wrote */
  if (pm >= 0) close(pm);
  if (kpf >= 0) close(kpf);
  munmap(page, (size_t)psz);
  return err ? err : !((kf >> SP_KPF_KSM) & 1);
}

/* The answer cannot change while we run: probe once (each process source
 * opened asks).  An error is not kept: root may be given later, in tests. */
int sp__kpf_ksm_reliable(void) {
  static int answer = -1;
  int a = __atomic_load_n(&answer, __ATOMIC_RELAXED);
  if (a >= 0) return a;
  a = probe_ksm_flag();
  if (a >= 0) __atomic_store_n(&answer, a, __ATOMIC_RELAXED);
  return a;
}
