/*
 * core_bench.c - the engine against its floor and a brute-force baseline,
 * side by side in one run (npm run bench:core).
 *
 *   core_bench [--gib N]           N GiB of in-process memory, a VM-like mix
 *   core_bench --pid P [--pid Q]   live processes (QEMU guests), as they are
 *
 * Prints a table, then one JSON line last.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "hash.h"

#define MAX_PIDS 8

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- the memory: four "guests" booted from one image ---------------- */

struct mem_set {
  unsigned char *mem[4];
  size_t pages_each;
  size_t n;
};

/* Per guest: 45% image pages in runs (same in every guest), 15% zero
 * pages, 10% copies of a few hot pages, 30% pages of its own. */
static void build_mix(struct mem_set *ms, double gib) {
  ms->n = 4;
  ms->pages_each = (size_t)(gib * (1 << 30) / SP_PAGE_SIZE / 4);
  for (size_t g = 0; g < ms->n; g++) {
    ms->mem[g] = sp_test_pages(ms->pages_each);
    for (size_t i = 0; i < ms->pages_each; i++) {
      unsigned char *p = ms->mem[g] + i * SP_PAGE_SIZE;
      size_t slot = i % 100;
      if (slot < 45) sp_test_fill(p, 1 + i);                  /* image, in runs */
      else if (slot < 60) p[0] = 0;                            /* zero, present */
      else if (slot < 70) sp_test_fill(p, (1ull << 40) + i % 7); /* hot pages */
      else sp_test_fill(p, ((uint64_t)(g + 1) << 48) + i);     /* own */
    }
  }
}

/* ---- floors --------------------------------------------------------- */

static uint64_t sink;

/* (a) A plain read of every page: four accumulators, as a memory-bound
 * loop is written when it has to be fast. */
static double read_pass_mem(const struct mem_set *ms) {
  double t = now();
  uint64_t a = 0, b = 0, c = 0, d = 0;
  for (size_t g = 0; g < ms->n; g++) {
    const uint64_t *w = (const uint64_t *)ms->mem[g];
    size_t words = ms->pages_each * SP_PAGE_SIZE / 8;
    for (size_t i = 0; i < words; i += 4) {
      a += w[i];
      b ^= w[i + 1];
      c += w[i + 2];
      d ^= w[i + 3];
    }
  }
  sink += a + b + c + d;
  return now() - t;
}

struct keyed {
  uint64_t hash;
  uint32_t source, page;
};

static int by_hash(const void *x, const void *y) {
  const struct keyed *a = x, *b = y;
  return a->hash < b->hash ? -1 : a->hash > b->hash;
}

/* (b) Brute force: hash every page, sort, count the duplicate groups. */
static double baseline_mem(const struct mem_set *ms, uint64_t *groups, uint64_t *dups) {
  size_t total = ms->n * ms->pages_each;
  struct keyed *k = malloc(total * sizeof *k);
  double t = now();
  size_t n = 0;
  for (size_t g = 0; g < ms->n; g++)
    for (size_t i = 0; i < ms->pages_each; i++)
      k[n++] = (struct keyed){sp__hash_page(ms->mem[g] + i * SP_PAGE_SIZE), (uint32_t)g, (uint32_t)i};
  qsort(k, n, sizeof *k, by_hash);
  *groups = *dups = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i + 1;
    while (j < n && k[j].hash == k[i].hash) j++;
    if (j - i > 1) {
      (*groups)++;
      *dups += j - i - 1;
    }
    i = j;
  }
  double dt = now() - t;
  free(k);
  return dt;
}

/* Live processes: read every present page of the mergeable ranges. */
static int read_pass_pids(const int *pids, size_t npids, double *secs, uint64_t *pages) {
  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  /* Only checks the processes can be read. */
  for (size_t i = 0; i < npids; i++)
    if (sp_add_process(e, NULL, pids[i], 0, NULL)) return -1;
  sp_engine_destroy(e);
  unsigned char *buf = malloc(1 << 20);
  *pages = 0;
  double t = now();
  for (size_t i = 0; i < npids; i++) {
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/smaps", pids[i]);
    FILE *f = fopen(path, "r");
    snprintf(path, sizeof path, "/proc/%d/pagemap", pids[i]);
    int pm = open(path, O_RDONLY);
    snprintf(path, sizeof path, "/proc/%d/mem", pids[i]);
    int mem = open(path, O_RDONLY);
    if (!f || pm < 0 || mem < 0) return -1;
    unsigned long long start = 0, end = 0;
    while (fgets(line, sizeof line, f)) {
      unsigned long long s, en;
      if (sscanf(line, "%llx-%llx ", &s, &en) == 2 && strchr(line, '-') < strchr(line, ' ')) {
        start = s;
        end = en;
        continue;
      }
      if (strncmp(line, "VmFlags:", 8) || !strstr(line, " mg")) continue;
      for (unsigned long long a = start; a < end; a += 1 << 20) {
        size_t np = (end - a) / SP_PAGE_SIZE < 256 ? (size_t)((end - a) / SP_PAGE_SIZE) : 256;
        uint64_t pmv[256];
        if (pread(pm, pmv, np * 8, (off_t)(a / SP_PAGE_SIZE * 8)) != (ssize_t)(np * 8)) break;
        /* Through /proc/PID/mem like the engine (process_vm_readv would
         * unshare KSM pages), one read per run of present pages. */
        for (size_t p = 0; p < np;) {
          if (!(pmv[p] >> 63) || ((pmv[p] >> 61) & 1)) {
            p++;
            continue;
          }
          size_t q = p;
          while (q < np && (pmv[q] >> 63) && !((pmv[q] >> 61) & 1)) q++;
          if (pread(mem, buf, (q - p) * SP_PAGE_SIZE, (off_t)(a + p * SP_PAGE_SIZE)) > 0) *pages += q - p;
          p = q;
        }
        sink += buf[0];
      }
    }
    fclose(f);
    close(pm);
    close(mem);
  }
  *secs = now() - t;
  free(buf);
  return 0;
}

/* ---- the engine ------------------------------------------------------ */

struct run {
  double first_s, merge_s, steady_s;
  uint64_t first_pages, merge_pages, steady_pages;
  double merge_compares_per_page, hit_rate;
  sp_counters end;
};

static sp_engine *make_engine(int lookahead, bool exact_trees, const struct mem_set *ms,
                              const int *pids, size_t npids) {
  sp_engine *e = sp_test_engine(0, 256, 1, lookahead);
  sp_settings s;
  sp_engine_settings(e, &s);
  s.exact_trees = exact_trees;
  if (sp_engine_configure(e, &s)) exit(3);
  if (ms)
    for (size_t g = 0; g < ms->n; g++)
      sp_add_memory(e, NULL, ms->mem[g], ms->pages_each * SP_PAGE_SIZE, NULL);
  for (size_t i = 0; i < npids; i++)
    if (sp_add_process(e, NULL, pids[i], 0, NULL)) {
      fprintf(stderr, "cannot scan pid %d\n", pids[i]);
      exit(2);
    }
  return e;
}

static double timed_pass(sp_engine *e, uint64_t *pages) {
  sp_counters before = sp_test_counters(e);
  double t = now();
  if (sp_engine_pass(e) < 0) exit(3);
  double dt = now() - t;
  sp_counters after = sp_test_counters(e);
  /* Pages visited: scanned plus skipped (a skipped page still costs its
   * presence check). */
  *pages = after.pages_scanned - before.pages_scanned + after.pages_skipped - before.pages_skipped;
  return dt;
}

static void run_engine(int lookahead, bool exact_trees, const struct mem_set *ms, const int *pids,
                       size_t npids, struct run *r) {
  sp_engine *e = make_engine(lookahead, exact_trees, ms, pids, npids);
  r->first_s = timed_pass(e, &r->first_pages);
  sp_counters c0 = sp_test_counters(e);
  r->merge_s = timed_pass(e, &r->merge_pages);
  sp_counters c1 = sp_test_counters(e);
  r->merge_compares_per_page =
      (double)(c1.page_compares - c0.page_compares) / (double)(c1.pages_scanned - c0.pages_scanned);
  uint64_t peeks = c1.lookahead_hits + c1.lookahead_misses;
  r->hit_rate = peeks ? (double)c1.lookahead_hits / (double)peeks : 0;
  /* Let smart scan settle (its longest skip is 8 passes), then time. */
  for (int i = 0; i < 12; i++) {
    uint64_t p;
    timed_pass(e, &p);
  }
  r->steady_s = 0;
  r->steady_pages = 0;
  for (int i = 0; i < 9; i++) {
    uint64_t p;
    r->steady_s += timed_pass(e, &p);
    r->steady_pages += p;
  }
  /* Per pass, averaged over a whole smart-scan cycle. */
  r->steady_s /= 9;
  r->steady_pages /= 9;
  r->end = sp_test_counters(e);
  sp_engine_destroy(e);
}

int main(int argc, char **argv) {
  double gib = 4;
  int pids[MAX_PIDS];
  size_t npids = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--gib") && i + 1 < argc) gib = atof(argv[++i]);
    else if (!strcmp(argv[i], "--pid") && i + 1 < argc && npids < MAX_PIDS) pids[npids++] = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: core_bench [--gib N] | --pid PID [--pid PID]...\n");
      return 2;
    }
  }

  struct mem_set ms = {0};
  double read_s, base_s = 0;
  uint64_t total_pages, groups = 0, dups = 0;
  const char *what;
  if (npids) {
    what = "live processes";
    if (read_pass_pids(pids, npids, &read_s, &total_pages)) {
      fprintf(stderr, "cannot read the processes (run as root)\n");
      return 2;
    }
  } else {
    what = "in-process memory";
    build_mix(&ms, gib);
    total_pages = ms.n * ms.pages_each;
    read_pass_mem(&ms); /* warm: pages are resident and in the TLB path */
    read_s = read_pass_mem(&ms);
    base_s = baseline_mem(&ms, &groups, &dups);
  }

  struct run off, on, exact;
  run_engine(0, false, npids ? NULL : &ms, pids, npids, &off);
  run_engine(1, false, npids ? NULL : &ms, pids, npids, &on);
  /* exact_trees (both trees walked node by node, a page read per level),
   * lookahead on: what following the kernel's unstable tree exactly costs. */
  run_engine(1, true, npids ? NULL : &ms, pids, npids, &exact);

  double ns = 1e9;
  double read_ns = read_s * ns / (double)total_pages;
  double base_ns = npids ? 0 : base_s * ns / (double)total_pages;
  printf("samepage core benchmark: %s, %llu pages (%.2f GiB)\n", what,
         (unsigned long long)total_pages, total_pages * 4096.0 / (1 << 30));
  printf("%-44s %12s %12s\n", "", "ns/page", "vs read");
  printf("%-44s %12.1f %12.2f\n", "(a) plain read pass (floor)", read_ns, 1.0);
  if (!npids)
    printf("%-44s %12.1f %12.2f   (%llu groups, %llu duplicates)\n",
           "(b) brute force: hash all, sort, group", base_ns, base_ns / read_ns,
           (unsigned long long)groups, (unsigned long long)dups);
  const struct run *runs[2] = {&off, &on};
  for (int l = 0; l < 2; l++) {
    const struct run *r = runs[l];
    double first = r->first_s * ns / (double)r->first_pages;
    double merge = r->merge_s * ns / (double)r->merge_pages;
    double steady = r->steady_s * ns / (double)total_pages;
    printf("%-44s %12.1f %12.2f\n", l ? "(c) first pass, lookahead on" : "(c) first pass, lookahead off", first, first / read_ns);
    printf("%-44s %12.1f %12.2f   (%.2f compares/page)\n", l ? "    merge pass, lookahead on" : "    merge pass, lookahead off", merge, merge / read_ns, r->merge_compares_per_page);
    printf("%-44s %12.1f %12.2f   (pass time per page of memory)\n", l ? "(d) steady pass, lookahead on" : "(d) steady pass, lookahead off", steady, steady / read_ns);
  }
  double exact_merge = exact.merge_s * ns / (double)exact.merge_pages;
  double exact_steady = exact.steady_s * ns / (double)total_pages;
  printf("%-44s %12.1f %12.2f   (%.2f compares/page)\n", "(e) merge pass, exact_trees", exact_merge,
         exact_merge / read_ns, exact.merge_compares_per_page);
  printf("%-44s %12.1f %12.2f   (%s counters as (d) on)\n", "    steady pass, exact_trees", exact_steady,
         exact_steady / read_ns,
         exact.end.pages_shared == on.end.pages_shared && exact.end.pages_sharing == on.end.pages_sharing
             ? "same" : "OTHER");
  double tracking = (double)on.end.tracking_bytes / (double)(on.end.tracked_pages ? on.end.tracked_pages : 1);
  double exact_tracking =
      (double)exact.end.tracking_bytes / (double)(exact.end.tracked_pages ? exact.end.tracked_pages : 1);
  printf("result: shared %llu sharing %llu zero-content merged, lookahead hit rate %.3f, tracking %.1f B/page\n",
         (unsigned long long)on.end.pages_shared, (unsigned long long)on.end.pages_sharing, on.hit_rate, tracking);
  double steady_ns = on.steady_s * ns / (double)total_pages;
  printf("{\"mode\":\"%s\",\"pages\":%llu,\"read_ns_per_page\":%.1f,\"baseline_ns_per_page\":%.1f,"
         "\"first_pass_ns_per_page\":%.1f,\"merge_pass_ns_per_page\":%.1f,\"steady_pass_ns_per_page\":%.1f,"
         "\"steady_pass_ns_per_page_lookahead_off\":%.1f,\"steady_vs_read_ratio\":%.3f,"
         "\"compares_per_page_lookahead_off\":%.3f,\"compares_per_page_lookahead_on\":%.3f,"
         "\"lookahead_hit_rate\":%.3f,\"tracking_bytes_per_page\":%.1f,\"pages_shared\":%llu,\"pages_sharing\":%llu,"
         "\"merge_pass_ns_per_page_exact_trees\":%.1f,\"steady_pass_ns_per_page_exact_trees\":%.1f,"
         "\"tracking_bytes_per_page_exact_trees\":%.1f}\n",
         npids ? "live" : "memory", (unsigned long long)total_pages, read_ns, base_ns,
         on.first_s * ns / (double)on.first_pages, on.merge_s * ns / (double)on.merge_pages, steady_ns,
         off.steady_s * ns / (double)total_pages, steady_ns / read_ns, off.merge_compares_per_page,
         on.merge_compares_per_page, on.hit_rate, tracking, (unsigned long long)on.end.pages_shared,
         (unsigned long long)on.end.pages_sharing, exact_merge, exact_steady, exact_tracking);
  return sink == 42 ? 1 : 0;
}
