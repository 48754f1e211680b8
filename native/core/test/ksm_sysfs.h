/* ksm_sysfs.h - save, change and restore the host's real KSM settings from
 * C tests and the benchmark, under the project's KSM lock. */
#ifndef SP_KSM_SYSFS_H
#define SP_KSM_SYSFS_H

#include <stdint.h>

/* Every test that changes /sys/kernel/mm/ksm holds this lock (flock,
 * exclusive), so no two of them run at once; the TypeScript tests take the
 * same lock. */
#define KSM_LOCK_PATH "/run/lock/samepage-ksm.lock"

/* Takes the lock, saves every writable setting, and arranges for them to
 * be restored at exit and on SIGINT/SIGTERM/SIGABRT.  0 or -errno. */
int ksm_save_settings(void);
/* Restores what ksm_save_settings() saved (idempotent). */
void ksm_restore_settings(void);

int ksm_write(const char *file, const char *value);
/* A numeric file, or -1 when unreadable. */
int64_t ksm_read(const char *file);
/* A numeric field of /proc/PID/ksm_stat (either "key value" or "key:
 * value"), or -1. */
int64_t proc_ksm_stat(int pid, const char *key);
int64_t proc_read_number(int pid, const char *file);

#endif

/* What the kernel did with [start, start+npages) of process pid, from
 * /proc/PID/pagemap and /proc/kpageflags (root).  (/proc/kpagecount is no
 * help: 6.18 reports 1 for a KSM page mapped eight times.) */
struct ksm_view {
  uint64_t ksm_pages;      /* pages mapped to KSM pages */
  uint64_t ksm_pfns;       /* distinct KSM pages among them */
  uint64_t contents_split; /* contents held in more than one KSM page */
  uint64_t dups;           /* KSM pages of those contents */
};
int ksm_view_range(int pid, uint64_t start, uint64_t npages, struct ksm_view *out);

/* Processes other than `except` with pages merged by KSM. */
int ksm_other_merging(int except);
