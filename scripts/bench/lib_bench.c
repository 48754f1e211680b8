/*
 * lib_bench.c - the bare C side of npm run bench:lib (scripts/bench/lib.ts).
 *
 *   lib_bench serve --gib N --passes P
 *       Builds the benchmark mix in N GiB of its own memory, prints one JSON
 *       line {"ready":...} with sample page hashes, then for every line it
 *       reads on stdin runs one timed scan (a new engine over the mix, P full
 *       passes with sp_engine_pass) and prints one JSON line with the time
 *       and the counters.  Exits when stdin closes.
 *   lib_bench hold --gib N
 *       Holds N GiB of present pages (the same mix) for the pagemap count,
 *       prints {"ready":...,"pid":...} and exits when stdin closes.
 *
 * The mix is defined twice, here and in lib.ts, and must stay identical
 * (lib.ts checks the sample hashes and that both sides end with the same
 * counters): 4 "guests" of N/4 GiB each; page i of guest g is, by i % 100,
 *    0-44  image pages in runs, the same in every guest: seed 1 + i
 *   45-59  zero (written, so present)
 *   60-69  copies of 7 hot pages: seed 0xF0000000 + i % 7
 *   70-99  the guest's own: seed ((g + 1) << 28) + i
 * and a seeded page is 1024 32-bit words of xorshift32 (13, 17, 5) started
 * from seed * 0x9E3779B1 ^ 0x6A09E667 (0 replaced by 0x6A09E667).
 *
 * The memory is what allocMergeable(bytes, {noHugePages: true}) gives the
 * JS side: private anonymous, MADV_NOHUGEPAGE, MADV_MERGEABLE.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "samepage.h"

#define GUESTS 4
#define WORDS (SP_PAGE_SIZE / 4)

static double clock_s(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fill_seeded(uint32_t *w, uint32_t seed) {
  uint32_t x = (seed * 0x9E3779B1u) ^ 0x6A09E667u;
  if (!x) x = 0x6A09E667u; /* xorshift's fixed point */
  for (size_t i = 0; i < WORDS; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    w[i] = x;
  }
}

static void fill_page(unsigned char *p, size_t g, size_t i) {
  size_t slot = i % 100;
  if (slot < 45) fill_seeded((uint32_t *)p, (uint32_t)(1 + i));
  else if (slot < 60) p[0] = 0; /* a write fault: present, zero-filled */
  else if (slot < 70) fill_seeded((uint32_t *)p, 0xF0000000u + (uint32_t)(i % 7));
  else fill_seeded((uint32_t *)p, ((uint32_t)(g + 1) << 28) + (uint32_t)i);
}

static unsigned char *alloc_guest(size_t bytes) {
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    fprintf(stderr, "lib_bench: mmap %zu bytes: %s\n", bytes, strerror(errno));
    exit(2);
  }
  /* As allocMergeable does; MADV_MERGEABLE only matters if ksmd runs, and
   * then it touches both sides alike. */
  madvise(p, bytes, MADV_NOHUGEPAGE);
  madvise(p, bytes, MADV_MERGEABLE);
  return p;
}

static void usage(void) {
  fprintf(stderr, "usage: lib_bench serve --gib N --passes P | lib_bench hold --gib N\n");
  exit(2);
}

/* The sample pages whose hashes lib.ts compares: the first page of each
 * kind, in the first and the last guest. */
static const size_t samples[] = {0, 45, 60, 70, 99};

static void print_ready(unsigned char **mem, size_t pages_each) {
  printf("{\"ready\":true,\"pid\":%d,\"guests\":%d,\"pages_each\":%zu,\"samples\":[", (int)getpid(),
         GUESTS, pages_each);
  int first = 1;
  for (size_t g = 0; g < GUESTS; g += GUESTS - 1)
    for (size_t k = 0; k < sizeof samples / sizeof samples[0]; k++) {
      printf("%s{\"guest\":%zu,\"page\":%zu,\"hash\":\"%016llx\"}", first ? "" : ",", g, samples[k],
             (unsigned long long)sp_page_hash(mem[g] + samples[k] * SP_PAGE_SIZE));
      first = 0;
    }
  printf("]}\n");
  fflush(stdout);
}

static int run_once(unsigned char **mem, size_t bytes_each, int passes) {
  sp_settings s;
  sp_settings_default(&s); /* what new Scanner() uses */
  sp_engine *e;
  int err = sp_engine_create(&s, &e);
  if (err) return err;
  for (size_t g = 0; g < GUESTS; g++) {
    char name[16];
    snprintf(name, sizeof name, "guest%zu", g);
    err = sp_add_memory(e, name, mem[g], bytes_each, NULL);
    if (err) {
      sp_engine_destroy(e);
      return err;
    }
  }
  double t = clock_s(CLOCK_MONOTONIC), cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID);
  for (int p = 0; p < passes; p++) {
    int64_t r = sp_engine_pass(e);
    if (r < 0) {
      sp_engine_destroy(e);
      return (int)r;
    }
  }
  double secs = clock_s(CLOCK_MONOTONIC) - t;
  cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu;
  sp_counters c;
  sp_engine_counters(e, &c);
  sp_engine_destroy(e);
  printf("{\"seconds\":%.6f,\"cpu_seconds\":%.6f,\"counters\":{\"pages_shared\":%llu,\"pages_sharing\":%llu,"
         "\"pages_unshared\":%llu,\"pages_volatile\":%llu,\"pages_skipped\":%llu,"
         "\"pages_scanned\":%llu,\"full_scans\":%llu,\"ksm_zero_pages\":%llu,"
         "\"page_compares\":%llu,\"full_compares\":%llu,\"bytes_read\":%llu}}\n",
         secs, cpu, (unsigned long long)c.pages_shared, (unsigned long long)c.pages_sharing,
         (unsigned long long)c.pages_unshared, (unsigned long long)c.pages_volatile,
         (unsigned long long)c.pages_skipped, (unsigned long long)c.pages_scanned,
         (unsigned long long)c.full_scans, (unsigned long long)c.ksm_zero_pages,
         (unsigned long long)c.page_compares, (unsigned long long)c.full_compares,
         (unsigned long long)c.bytes_read);
  fflush(stdout);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  int serve = !strcmp(argv[1], "serve");
  if (!serve && strcmp(argv[1], "hold")) usage();
  double gib = 4;
  int passes = 10;
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--gib") && i + 1 < argc) gib = atof(argv[++i]);
    else if (!strcmp(argv[i], "--passes") && i + 1 < argc) passes = atoi(argv[++i]);
    else usage();
  }
  size_t pages_each = (size_t)(gib * (1 << 30) / SP_PAGE_SIZE / GUESTS);
  /* The own-page seeds keep i below 2^28. */
  if (pages_each < 100 || pages_each >= (1u << 28) || passes < 1) usage();
  size_t bytes_each = pages_each * SP_PAGE_SIZE;

  unsigned char *mem[GUESTS];
  for (size_t g = 0; g < GUESTS; g++) {
    mem[g] = alloc_guest(bytes_each);
    for (size_t i = 0; i < pages_each; i++) fill_page(mem[g] + i * SP_PAGE_SIZE, g, i);
  }
  print_ready(mem, pages_each);

  char line[64];
  while (fgets(line, sizeof line, stdin)) {
    if (!serve) continue;
    int err = run_once(mem, bytes_each, passes);
    if (err) {
      fprintf(stderr, "lib_bench: scan failed: %s\n", sp_strerror(err));
      return 3;
    }
  }
  return 0;
}
