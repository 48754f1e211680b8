/* ksm_sysfs.c - see ksm_sysfs.h. */
#include "ksm_sysfs.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define KSM_DIR "/sys/kernel/mm/ksm/"

/* Restored in this order: the advisor first (pages_to_scan is EINVAL while
 * it runs), run last. */
static const char *const writable[] = {
    "advisor_mode",       "advisor_max_cpu",  "advisor_min_pages_to_scan",
    "advisor_max_pages_to_scan", "advisor_target_scan_time",
    "pages_to_scan",      "sleep_millisecs",  "use_zero_pages",
    "smart_scan",         "stable_node_chains_prune_millisecs",
    "max_page_sharing",   "merge_across_nodes", "run"};
#define NWRITABLE (sizeof writable / sizeof *writable)

static char saved[NWRITABLE][64];
static int have_saved[NWRITABLE];
static int saved_any;
static int lock_fd = -1;

int ksm_write(const char *file, const char *value) {
  char path[128];
  snprintf(path, sizeof path, KSM_DIR "%s", file);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  ssize_t n = write(fd, value, strlen(value));
  int err = n < 0 ? -errno : 0;
  close(fd);
  return err;
}

static int read_text(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  ssize_t n = read(fd, buf, cap - 1);
  close(fd);
  if (n < 0) return -errno;
  buf[n] = '\0';
  char *nl = strchr(buf, '\n');
  if (nl) *nl = '\0';
  return 0;
}

int64_t ksm_read(const char *file) {
  char path[128], buf[64];
  snprintf(path, sizeof path, KSM_DIR "%s", file);
  if (read_text(path, buf, sizeof buf)) return -1;
  return strtoll(buf, NULL, 10);
}

int64_t proc_read_number(int pid, const char *file) {
  char path[128], buf[64];
  snprintf(path, sizeof path, "/proc/%d/%s", pid, file);
  if (read_text(path, buf, sizeof buf)) return -1;
  return strtoll(buf, NULL, 10);
}

int64_t proc_ksm_stat(int pid, const char *key) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/ksm_stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  int64_t value = -1;
  size_t klen = strlen(key);
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, key, klen) || (line[klen] != ' ' && line[klen] != ':')) continue;
    value = strtoll(line + klen + 1 + (line[klen] == ':'), NULL, 10);
    break;
  }
  fclose(f);
  return value;
}

void ksm_restore_settings(void) {
  if (!saved_any) return;
  for (size_t i = 0; i < NWRITABLE; i++) {
    if (!have_saved[i]) continue;
    const char *value = saved[i];
    char bracket[64];
    /* advisor_mode reads as "[none] scan-time": write the bracketed one. */
    const char *open_b = strchr(value, '['), *close_b = open_b ? strchr(open_b, ']') : NULL;
    if (open_b && close_b) {
      snprintf(bracket, sizeof bracket, "%.*s", (int)(close_b - open_b - 1), open_b + 1);
      value = bracket;
    }
    /* A test that ran KSM leaves no merged pages behind: when KSM was off,
     * unmerge (run=2) before switching it off again. */
    if (!strcmp(writable[i], "run") && !strcmp(value, "0")) ksm_write("run", "2");
    int err = ksm_write(writable[i], value);
    /* max_page_sharing/merge_across_nodes need no merged pages: unmerge
     * (run=2), set it, and let "run" be restored after.  A process of the
     * test still exiting may hold KSM pages a moment longer: retry (1 s). */
    for (int tries = 0; err == -EBUSY && tries < 50; tries++) {
      ksm_write("run", "2");
      err = ksm_write(writable[i], value);
      if (err == -EBUSY) usleep(20000);
    }
    if (err && err != -ENOENT)
      fprintf(stderr, "warning: could not restore %s=%s: %s\n", writable[i], value, strerror(-err));
  }
  saved_any = 0;
  if (lock_fd >= 0) {
    close(lock_fd);
    lock_fd = -1;
  }
}

static void on_signal(int sig) {
  ksm_restore_settings();
  signal(sig, SIG_DFL);
  raise(sig);
}

int ksm_save_settings(void) {
  lock_fd = open(KSM_LOCK_PATH, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) return -errno;
  /* A kernel without file locking (the tinyconfig guest test:kernel runs
   * this test in) has nobody to share KSM with: go on unlocked. */
  if (flock(lock_fd, LOCK_EX) && errno != ENOSYS) return -errno;
  char path[128];
  for (size_t i = 0; i < NWRITABLE; i++) {
    snprintf(path, sizeof path, KSM_DIR "%s", writable[i]);
    have_saved[i] = read_text(path, saved[i], sizeof saved[i]) == 0;
  }
  saved_any = 1;
  atexit(ksm_restore_settings);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGABRT, on_signal);
  return 0;
}

#include <dirent.h>

#include "samepage.h"

#define PM_PRESENT (1ull << 63)
#define PM_PFN ((1ull << 55) - 1)
#define KPF_KSM 21
#define KPF_THP 22

struct pfn_entry {
  uint64_t pfn, hash;
  uint32_t count;
};

static int by_pfn(const void *a, const void *b) {
  const struct pfn_entry *x = a, *y = b;
  return x->pfn < y->pfn ? -1 : x->pfn > y->pfn;
}
static int by_hash(const void *a, const void *b) {
  const struct pfn_entry *x = a, *y = b;
  return x->hash < y->hash ? -1 : x->hash > y->hash;
}

int ksm_view_range(int pid, uint64_t start, uint64_t npages, struct ksm_view *out) {
  memset(out, 0, sizeof *out);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/pagemap", pid);
  int pm = open(path, O_RDONLY), kf = open("/proc/kpageflags", O_RDONLY);
  snprintf(path, sizeof path, "/proc/%d/mem", pid);
  int mem = open(path, O_RDONLY);
  uint64_t *entries = calloc(npages, sizeof *entries);
  struct pfn_entry *pfns = calloc(npages, sizeof *pfns);
  unsigned char page[SP_PAGE_SIZE];
  int err = 0;
  if (pm < 0 || kf < 0 || mem < 0 || !entries || !pfns) {
    err = -EACCES;
    goto out;
  }
  if (pread(pm, entries, npages * 8, (off_t)(start / SP_PAGE_SIZE * 8)) != (ssize_t)(npages * 8)) {
    err = -EIO;
    goto out;
  }
  size_t n = 0;
  for (uint64_t i = 0; i < npages; i++) {
    if (!(entries[i] & PM_PRESENT)) continue;
    uint64_t pfn = entries[i] & PM_PFN, flags = 0;
    if (pread(kf, &flags, 8, (off_t)(pfn * 8)) != 8) continue;
    if (!((flags >> KPF_KSM) & 1) || ((flags >> KPF_THP) & 1)) continue;
    /* /proc/PID/mem, not process_vm_readv: the latter pins pages, and
     * pinning a KSM page for reading unshares it (gup_must_unshare()). */
    if (pread(mem, page, SP_PAGE_SIZE, (off_t)(start + i * SP_PAGE_SIZE)) != SP_PAGE_SIZE) continue;
    pfns[n++] = (struct pfn_entry){pfn, sp_page_hash(page), 1};
  }
  qsort(pfns, n, sizeof *pfns, by_pfn);
  /* Where KPF_KSM marks every anonymous page (6.12), a KSM page is one
   * mapped at least twice in the range, as sp_live_processes() decides;
   * callers check that no other process maps KSM pages. */
  int flag_reliable = sp_live_ksm_flag_reliable();
  if (flag_reliable < 0) {
    err = flag_reliable;
    goto out;
  }
  size_t distinct = 0;
  for (size_t i = 0; i < n; i++) {
    if (distinct && pfns[distinct - 1].pfn == pfns[i].pfn) {
      pfns[distinct - 1].count++;
      continue;
    }
    if (distinct && !flag_reliable && pfns[distinct - 1].count < 2) distinct--;
    pfns[distinct++] = pfns[i];
  }
  if (distinct && !flag_reliable && pfns[distinct - 1].count < 2) distinct--;
  for (size_t i = 0; i < distinct; i++) out->ksm_pages += pfns[i].count;
  out->ksm_pfns = distinct;
  qsort(pfns, distinct, sizeof *pfns, by_hash);
  for (size_t i = 0; i < distinct;) {
    size_t j = i + 1;
    while (j < distinct && pfns[j].hash == pfns[i].hash) j++;
    if (j - i > 1) {
      out->contents_split++;
      out->dups += j - i;
    }
    i = j;
  }
out:
  if (pm >= 0) close(pm);
  if (kf >= 0) close(kf);
  if (mem >= 0) close(mem);
  free(entries);
  free(pfns);
  return err;
}

int ksm_other_merging(int except) {
  DIR *d = opendir("/proc");
  if (!d) return -1;
  int count = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    int pid = atoi(de->d_name);
    if (pid <= 0 || pid == except) continue;
    if (proc_read_number(pid, "ksm_merging_pages") > 0) count++;
  }
  closedir(d);
  return count;
}
