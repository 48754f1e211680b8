/* test_kernel_oracle.c - the kernel as oracle.  A child process fills
 * mergeable memory (THP off) with a known mix; the engine predicts what
 * KSM will do; then the real ksmd runs to convergence and the child's
 * ksm_merging_pages, its ksm_zero_pages and the change in the host's
 * counters must equal the prediction.  Host settings are saved first and
 * restored after, also on failure (ksm_sysfs.c). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "ksm_sysfs.h"

/* The mix, in pages. */
enum {
  RUN_BLOCK = 64,   /* a block of distinct pages ... */
  RUN_REPEATS = 8,  /* ... repeated: runs of shared pages */
  HOT = 600,        /* one content over max_page_sharing: a chain */
  AT_LIMIT = 257,   /* one more than a merged page can take */
  ZEROS = 300,
  UNIQUE = 500,
  VOLATILE = 50,    /* rewritten all the time */
  TOTAL = RUN_BLOCK * RUN_REPEATS + HOT + AT_LIMIT + ZEROS + UNIQUE + VOLATILE
};

static volatile unsigned char *volatile_pages;

static void *rewrite_forever(void *arg) {
  (void)arg;
  for (uint64_t round = 1;; round++) {
    for (int i = 0; i < VOLATILE; i++)
      for (int w = 0; w < 8; w++)
        ((volatile uint64_t *)(volatile_pages + (size_t)i * SP_PAGE_SIZE))[w * 64] = round * 1000003u + (uint64_t)i;
    usleep(500);
  }
  return NULL;
}

static void mix_body(void *hello) {
  /* Exact page counts need small pages (see lab.md on THP). */
  if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)) _exit(3);
  unsigned char *m = sp_test_pages(TOTAL), *p = m;
  for (int r = 0; r < RUN_REPEATS; r++)
    for (int i = 0; i < RUN_BLOCK; i++, p += SP_PAGE_SIZE) sp_test_fill(p, 100 + (uint64_t)i);
  for (int i = 0; i < HOT; i++, p += SP_PAGE_SIZE) sp_test_fill(p, 7);
  for (int i = 0; i < AT_LIMIT; i++, p += SP_PAGE_SIZE) sp_test_fill(p, 8);
  for (int i = 0; i < ZEROS; i++, p += SP_PAGE_SIZE) memset(p, 0, SP_PAGE_SIZE), p[1] = 1, p[1] = 0;
  for (int i = 0; i < UNIQUE; i++, p += SP_PAGE_SIZE) sp_test_fill(p, 1000000 + (uint64_t)i);
  volatile_pages = p;
  for (int i = 0; i < VOLATILE; i++, p += SP_PAGE_SIZE) sp_test_fill(p, 2000000 + (uint64_t)i);
  if (madvise(m, (size_t)TOTAL * SP_PAGE_SIZE, MADV_MERGEABLE)) _exit(4);
  pthread_t t;
  if (pthread_create(&t, NULL, rewrite_forever, NULL)) _exit(5);
  *(uint64_t *)hello = (uintptr_t)m; /* the mergeable region */
}

static struct sp_test_child current;
static uint64_t current_start; /* the child's mergeable region */

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void kernel_agrees(int use_zero_pages) {
  int64_t mps = ksm_read("max_page_sharing"), smart = ksm_read("smart_scan");
  CHECK(mps >= 2);
  /* ksmd stopped (and unmerged) before the child exists: a ksmd left
   * running (run=1 after upstream's selftests in test:kernel's guest)
   * would merge the child while the engine predicts, and the engine
   * would predict from pages KSM had already placed. */
  CHECK_OK(ksm_write("run", "2"));
  current = sp_test_fork(mix_body, &current_start, sizeof current_start);

  /* 1. The prediction, before KSM runs, with the host's own settings. */
  sp_engine *e = sp_test_engine(use_zero_pages, (uint32_t)mps, smart > 0, 1);
  CHECK_OK(sp_add_process(e, "mix", current.pid, 0, NULL));
  for (int pass = 0; pass < 12; pass++) {
    CHECK_OK(sp_engine_pass(e));
    usleep(20000); /* like ksmd's sleep, so volatile pages look volatile */
  }
  sp_counters want = sp_test_counters(e);
  sp_source_info src;
  CHECK_OK(sp_source_get(e, 0, &src));
  sp_engine_destroy(e);
  printf("  predicted: shared %llu sharing %llu zero %llu chains %llu dups %llu merging %llu\n",
         (unsigned long long)want.pages_shared, (unsigned long long)want.pages_sharing,
         (unsigned long long)want.ksm_zero_pages, (unsigned long long)want.stable_node_chains,
         (unsigned long long)want.stable_node_dups, (unsigned long long)src.merging_pages);

  /* 2. The real thing.  run=2 first: it also drops stale stable nodes the
   * kernel would otherwise prune lazily, which would blur the deltas. */
  CHECK_OK(ksm_write("run", "2"));
  int64_t base_shared = ksm_read("pages_shared"), base_sharing = ksm_read("pages_sharing");
  int64_t base_zero = ksm_read("ksm_zero_pages"), base_chains = ksm_read("stable_node_chains");
  int64_t base_dups = ksm_read("stable_node_dups");
  CHECK_OK(ksm_write("use_zero_pages", use_zero_pages ? "1" : "0"));
  CHECK_OK(ksm_write("pages_to_scan", "5000"));
  CHECK_OK(ksm_write("sleep_millisecs", "10"));
  CHECK_OK(ksm_write("run", "1"));
  int64_t start_scans = ksm_read("full_scans"), last = -1, stable_since = -1;
  double deadline = now() + 90;
  while (now() < deadline) {
    usleep(100000);
    int64_t scans = ksm_read("full_scans") - start_scans;
    int64_t merging = proc_read_number(current.pid, "ksm_merging_pages");
    if (merging != last) {
      last = merging;
      stable_since = scans;
    }
    /* Settled: at least 8 passes, and nothing changed for the last 5. */
    if (scans >= 8 && scans - stable_since >= 5) break;
  }
  int64_t merging = proc_read_number(current.pid, "ksm_merging_pages");
  int64_t zero = proc_ksm_stat(current.pid, "ksm_zero_pages");
  int64_t shared = ksm_read("pages_shared") - base_shared;
  int64_t sharing = ksm_read("pages_sharing") - base_sharing;
  int64_t zero_all = ksm_read("ksm_zero_pages") - base_zero;
  int64_t chains = ksm_read("stable_node_chains") - base_chains;
  int64_t dups = ksm_read("stable_node_dups") - base_dups;
  printf("  kernel:    shared %lld sharing %lld zero %lld chains %lld dups %lld merging %lld"
         " (after %lld full scans)\n",
         (long long)shared, (long long)sharing, (long long)zero_all, (long long)chains,
         (long long)dups, (long long)merging, (long long)(ksm_read("full_scans") - start_scans));
  CHECK_EQ(merging, src.merging_pages);
  CHECK_EQ(zero, src.zero_pages);


  /* Nothing else merged meanwhile (else the host-wide figures would mix
   * in other processes' pages): the host-wide changes and the child's own
   * KSM pages, grouped by physical page, equal the prediction. */
  int others = ksm_other_merging(current.pid);
  if (others)
    fprintf(stderr, "  %d other processes have KSM-merged pages: run this test on a host"
            " where nothing else uses KSM\n", others);
  CHECK_EQ(others, 0);
  struct ksm_view view;
  CHECK_OK(ksm_view_range(current.pid, current_start, TOTAL, &view));
  CHECK_EQ(view.ksm_pages, src.merging_pages);
  CHECK_EQ(view.ksm_pfns, want.pages_shared);
  CHECK_EQ(view.ksm_pages - view.ksm_pfns, want.pages_sharing);
  CHECK_EQ(view.contents_split, want.stable_node_chains);
  CHECK_EQ(view.dups, want.stable_node_dups);
  CHECK_EQ(shared, want.pages_shared);
  CHECK_EQ(sharing, want.pages_sharing);
  CHECK_EQ(zero_all, want.ksm_zero_pages);
  CHECK_EQ(chains, want.stable_node_chains);
  CHECK_EQ(dups, want.stable_node_dups);

  /* The library's live view of the child says the same: its KSM pages,
   * and as the only KSM user, all of pages_sharing as its fair share. */
  sp_live_process live;
  uint64_t self_peers = 99;
  CHECK_OK(sp_live_processes(&current.pid, 1, 0, &live, &self_peers));
  CHECK_EQ(self_peers, 0);
  printf("  live: error %d present %llu ksm %llu zero %llu thp %llu saved %.1f\n", live.error, (unsigned long long)live.present_pages, (unsigned long long)live.ksm_pages, (unsigned long long)live.zero_pages, (unsigned long long)live.thp_pages, live.saved_pages);
  CHECK_EQ(live.error, 0);
  CHECK_EQ(live.ksm_pages, src.merging_pages);
  CHECK_EQ((long long)(live.saved_pages + 0.5), want.pages_sharing);
  /* KSM zero pages are still present, mapped to the zero page. */
  CHECK_EQ(live.present_pages, (uint64_t)TOTAL);
  CHECK_EQ(live.zero_pages, src.zero_pages);

  /* Scanning a process must not undo its merging (reading it with
   * process_vm_readv would: pinning unshares KSM pages). */
  sp_engine *again = sp_test_engine(use_zero_pages, (uint32_t)mps, smart > 0, 1);
  CHECK_OK(sp_add_process(again, "mix", current.pid, 0, NULL));
  sp_test_passes(again, 2);
  sp_engine_destroy(again);
  sp_live_process after;
  CHECK_OK(sp_live_processes(&current.pid, 1, 0, &after, NULL));
  CHECK_EQ(after.ksm_pages, live.ksm_pages);

  /* And the prediction is the mix's arithmetic. */
  uint64_t mps_u = (uint64_t)mps;
  uint64_t hot_dups = (HOT + mps_u - 1) / mps_u;
  uint64_t zero_dups = use_zero_pages ? 0 : (ZEROS + mps_u - 1) / mps_u;
  CHECK_EQ(want.pages_shared, RUN_BLOCK + hot_dups + 1 + zero_dups);
  CHECK_EQ(want.ksm_zero_pages, use_zero_pages ? ZEROS : 0);

  sp_test_end(&current);
  CHECK_OK(ksm_write("run", "0"));
}

/* ---- a VMA split or merge keeps the merges ---------------------------- */

enum { SPLIT_PAGES = 512, SPLIT_AT = 200, SPLIT_LEN = 64 };
static unsigned char *split_region;

/* Each SIGUSR1 flips pages [SPLIT_AT, +SPLIT_LEN) between read-only (the
 * VMA splits in three) and writable (they merge back into one). */
static void split_flip(int sig) {
  (void)sig;
  static int read_only;
  read_only = !read_only;
  mprotect(split_region + (size_t)SPLIT_AT * SP_PAGE_SIZE, SPLIT_LEN * SP_PAGE_SIZE,
           PROT_READ | (read_only ? 0 : PROT_WRITE));
}

static void split_body(void *hello) {
  if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)) _exit(3);
  split_region = sp_test_pages(SPLIT_PAGES);
  for (int i = 0; i < SPLIT_PAGES; i++)
    sp_test_fill(split_region + (size_t)i * SP_PAGE_SIZE, 300 + (uint64_t)(i % 16));
  if (madvise(split_region, SPLIT_PAGES * SP_PAGE_SIZE, MADV_MERGEABLE)) _exit(4);
  if (signal(SIGUSR1, split_flip) == SIG_ERR) _exit(5);
  *(uint64_t *)hello = (uintptr_t)split_region;
}

static int maps_lines(pid_t pid) {
  char path[64], line[512];
  snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
  FILE *f = fopen(path, "r");
  int n = 0;
  if (!f) return -1;
  while (fgets(line, sizeof line, f)) n++;
  fclose(f);
  return n;
}

/* Waits until ksmd has done `scans` more full scans (at most 60 s). */
static void ksmd_scans(int64_t scans) {
  int64_t until = ksm_read("full_scans") + scans;
  double deadline = now() + 60;
  while (ksm_read("full_scans") < until && now() < deadline) usleep(20000);
  CHECK(ksm_read("full_scans") >= until);
}

/* The kernel keys rmap_items by address: after an mprotect splits the VMA,
 * and after the one that merges it back, the child's merges and rmap_items
 * stay as they were, pass after pass; the engine's too. */
static void split_keeps_merges(void) {
  uint64_t start;
  current = sp_test_fork(split_body, &start, sizeof start);
  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  uint32_t id;
  CHECK_OK(sp_add_process(e, "split", current.pid, 0, &id));
  sp_test_passes(e, 3);
  sp_source_info src;
  CHECK_OK(sp_source_get(e, id, &src));
  CHECK_EQ(src.merging_pages, SPLIT_PAGES);

  CHECK_OK(ksm_write("run", "2"));
  CHECK_OK(ksm_write("max_page_sharing", "256"));
  CHECK_OK(ksm_write("pages_to_scan", "5000"));
  CHECK_OK(ksm_write("sleep_millisecs", "10"));
  CHECK_OK(ksm_write("run", "1"));
  double deadline = now() + 60;
  while (proc_read_number(current.pid, "ksm_merging_pages") < SPLIT_PAGES && now() < deadline)
    usleep(50000);
  CHECK_EQ(proc_read_number(current.pid, "ksm_merging_pages"), SPLIT_PAGES);
  int64_t items = proc_ksm_stat(current.pid, "ksm_rmap_items");
  CHECK_EQ(items, SPLIT_PAGES);

  for (int step = 0; step < 2; step++) {
    int lines = maps_lines(current.pid);
    CHECK_EQ(kill(current.pid, SIGUSR1), 0);
    for (int i = 0; i < 100 && maps_lines(current.pid) == lines; i++) usleep(10000);
    CHECK_EQ(maps_lines(current.pid), lines + (step == 0 ? 2 : -2));
    for (int pass = 0; pass < 3; pass++) {
      ksmd_scans(1);
      CHECK_OK(sp_engine_pass(e));
      CHECK_OK(sp_source_get(e, id, &src));
      int64_t kmerging = proc_read_number(current.pid, "ksm_merging_pages");
      CHECK_EQ(kmerging, SPLIT_PAGES);
      CHECK_EQ(proc_ksm_stat(current.pid, "ksm_rmap_items"), items);
      CHECK_EQ(src.merging_pages, kmerging);
      CHECK_EQ(src.rmap_items, items);
      CHECK_EQ(src.ranges, step == 0 ? 3 : 1);
    }
  }
  sp_engine_destroy(e);
  sp_test_end(&current);
  CHECK_OK(ksm_write("run", "0"));
}

static void with_zero_pages_off(void) { kernel_agrees(0); }
static void with_zero_pages_on(void) { kernel_agrees(1); }

int main(void) {
  if (getuid() != 0 || access("/sys/kernel/mm/ksm/run", W_OK)) {
    fprintf(stderr, "test_kernel_oracle needs root and a kernel with KSM (/sys/kernel/mm/ksm)\n");
    return 1;
  }
  /* Which way this kernel's KPF_KSM is read (sp_live_ksm_flag_reliable():
   * 6.12 marks every anonymous page KSM), for the record and for
   * test:kernel, which runs this test inside a 6.12 guest. */
  int reliable = sp_live_ksm_flag_reliable();
  printf("# kpageflags KPF_KSM marks only KSM pages: %s\n",
         reliable < 0 ? strerror(-reliable) : reliable ? "yes" : "no");
  if (reliable < 0) return 1;
  int err = ksm_save_settings();
  if (err) {
    fprintf(stderr, "cannot take %s: %s\n", KSM_LOCK_PATH, strerror(-err));
    return 1;
  }
  sp_check_run("kernel agrees, use_zero_pages=0", with_zero_pages_off);
  sp_test_end(&current);
  ksm_restore_settings();
  ksm_save_settings();
  sp_check_run("kernel agrees, use_zero_pages=1", with_zero_pages_on);
  sp_test_end(&current);
  ksm_restore_settings();
  ksm_save_settings();
  sp_check_run("a VMA split or merge keeps the merges, kernel and engine", split_keeps_merges);
  sp_test_end(&current);
  ksm_restore_settings();
  return sp_check_done();
}
