/* SPDX-License-Identifier: GPL-2.0 */
/*
 * sp_guest: the in-guest half of `npm run test:kernel`.
 *
 * Built from every *.c in scripts/kernel/guest/ into one static program that
 * runs as /init of a throw-away initramfs on the patched 6.12 kernel under
 * QEMU and prints one line per check on the serial console:
 *
 *   SP RESULT <name> PASS|FAIL <detail>
 *   SP MEASURE <key=value ...>
 *   SP HINTS READY <key=value ...>     (mode "hints": the host reads the table)
 *   SP DONE
 *
 * scripts/kernel/test-kernel.sh parses these lines.  The guest kernel's KSM
 * is the guest's own: nothing here touches the host's KSM.
 *
 * Files (one owner each, see /work/shared/helpers/kernel-coord.md):
 *   sp_common.{h,c}        printing, sysfs, spawn/reap, pagemap helpers, mount
 *   sp_main.c              /init: mounts, reads sp_mode= and dispatches
 *   sp_lookahead.c         patch 0001 checks and measurement
 *   sp_exclusive_cache.c   patch 0002 checks
 *   sp_hints.c             patch 0003 guest side (sp_mode=hints)
 *   sp_ksm_hints.c         patch 0004: ksmd skips what a hint table marks free
 *   sp_baseline.c          sp_mode=selftests: KSM sysfs list, options-off
 *                          checks, a fixed workload to compare kernels
 *   sp_selftests.c         sp_mode=selftests: upstream's KSM selftests
 */
#ifndef SP_COMMON_H
#define SP_COMMON_H

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SP_PAGE 4096UL
#define SP_KSM "/sys/kernel/mm/ksm/"
#define SP_PM_PRESENT (1ULL << 63)
#define SP_PM_PFN_MASK ((1ULL << 55) - 1)
/*
 * Deterministic page contents from a seed.  Seeds at or above SP_SPARSE get
 * a zero first three quarters (the shape of many sparsely used guest pages),
 * which makes every tree comparison walk most of the page.
 */
#define SP_SPARSE (1ULL << 40)

/* Failed checks so far (sp_result with pass == false). */
extern int sp_failed;

/* Print "SP RESULT <name> PASS|FAIL <detail>". */
void sp_result(const char *name, bool pass, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Print "SP RESULT <name> SKIP <reason>": a check this boot cannot make. */
void sp_skip(const char *name, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* A fatal setup error: report it as a failed check, end the guest. */
void sp_die(const char *what, int err) __attribute__((noreturn));
void sp_sleep_ms(unsigned int ms);
/* The whole of @path into @buf, NUL-terminated; -EFBIG if it does not fit. */
int sp_read_text(const char *path, char *buf, size_t len);
int sp_write_text(const char *path, const char *text);
/* /sys/kernel/mm/ksm/<name>: read or write, sp_die() on error. */
unsigned long long sp_ksm_get(const char *name);
void sp_ksm_set(const char *name, unsigned long long value);
/* Wait for full_scans to pass @scans; sp_die() after @limit_s seconds. */
void sp_wait_full_scans(unsigned long long scans, unsigned int limit_s);
int sp_ksmd_pid(void);
uint64_t sp_ksmd_cpu_ns(int pid);
void sp_fill(unsigned char *page, uint64_t seed);

struct sp_child {
	pid_t pid;
	unsigned long addr;
};

int sp_spawn(struct sp_child *c, int proc, size_t pages,
	     uint64_t (*seed)(int, size_t));
void sp_reap(struct sp_child *c, int n);
int sp_ksm_map(const struct sp_child *c, size_t pages, unsigned char *out);
int sp_pfns(const void *addr, size_t pages, uint64_t *pfn);
/*
 * The PFN and /proc/kpageflags word of each of the first @pages pages of
 * file @fd: maps them (read faults), reads both, and unmaps them again (a
 * mapped page cache page is never dropped).  sp_die() on error, naming @what.
 */
void sp_file_kpageflags(int fd, size_t pages, uint64_t *pfn, uint64_t *flags, const char *what);
unsigned long long sp_meminfo_kb(const char *key);
void sp_mount(const char *src, const char *dst, const char *type);

/* The areas, each in its own file. */
void sp_check_lookahead(const char *cmdline);		/* sp_lookahead.c */
void sp_lookahead_bench(const char *cmdline);	/* sp_lookahead.c */
void sp_check_exclusive_cache(void);	/* sp_exclusive_cache.c */
void sp_check_large_folios(void);	/* sp_large_folios.c */
/* On the host, for test-kernel.sh: the file sp_check_large_folios() reads. */
int sp_lf_write_file(const char *path);	/* sp_large_folios.c */
void sp_hints(const char *cmdline);	/* sp_hints.c */
void sp_check_ksm_hints(void);		/* sp_ksm_hints.c */
void sp_ksm_hints_guest(void);		/* sp_ksm_hints.c */
void sp_check_baseline(bool series_kernel);	/* sp_baseline.c */
void sp_selftests(bool series_kernel);	/* sp_selftests.c */
void sp_engine_golden(void);		/* sp_selftests.c */

#endif
