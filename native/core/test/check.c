/* check.c - the test harness and shared helpers. */
#include "check.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static jmp_buf test_env;
static int in_test;
static int passed, failed, skipped;

void sp_check_fail(const char *file, int line, const char *expr) {
  fprintf(stderr, "  %s:%d: check failed: %s\n", file, line, expr);
  if (in_test) longjmp(test_env, 1);
  abort();
}

void sp_check_fail_eq(const char *file, int line, const char *a, const char *b,
                      long long va, long long vb) {
  fprintf(stderr, "  %s:%d: %s == %s failed: %lld != %lld\n", file, line, a, b, va, vb);
  if (in_test) longjmp(test_env, 1);
  abort();
}

/* SP_TEST_FILTER runs only the tests whose name contains it (used to run
 * one test inside a QEMU guest). */
static bool filtered_out(const char *name) {
  const char *filter = getenv("SP_TEST_FILTER");
  return filter && !strstr(name, filter);
}

void sp_check_run(const char *name, void (*fn)(void)) {
  if (filtered_out(name)) return;
  in_test = 1;
  /* TAP lines ("ok 1 name", "not ok 2 name", the plan at the end), so a
   * TAP reader such as test:kernel's guest runs a test as it runs
   * upstream's selftests. */
  if (setjmp(test_env) == 0) {
    fn();
    passed++;
    printf("ok %d %s\n", passed + failed + skipped, name);
  } else {
    failed++;
    printf("not ok %d %s\n", passed + failed + skipped, name);
  }
  in_test = 0;
  fflush(stdout);
}

void sp_check_skip(const char *name, const char *reason) {
  if (filtered_out(name)) return;
  skipped++;
  /* kselftest's form, which test:kernel's guest reads as a SKIP row. */
  printf("ok %d # SKIP %s: %s\n", passed + failed + skipped, name, reason);
  fflush(stdout);
}

int sp_check_done(void) {
  if (skipped) printf("# %d skipped\n", skipped);
  printf("1..%d\n%d passed, %d failed\n", passed + failed + skipped, passed, failed);
  return failed ? 1 : 0;
}

void *sp_test_pages(size_t npages) {
  void *p = mmap(NULL, npages * SP_PAGE_SIZE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    abort();
  }
  return p;
}

void sp_test_free_pages(void *p, size_t npages) { munmap(p, npages * SP_PAGE_SIZE); }

void sp_test_fill(void *page, uint64_t seed) {
  uint64_t *w = page;
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
  for (size_t i = 0; i < SP_PAGE_SIZE / 8; i++) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w[i] = x * 0x2545f4914f6cdd1dull;
  }
}

void sp_test_same_counters(const sp_engine *a, const sp_engine *b) {
  sp_counters x = sp_test_counters(a), y = sp_test_counters(b);
  CHECK_EQ(x.pages_shared, y.pages_shared);
  CHECK_EQ(x.pages_sharing, y.pages_sharing);
  CHECK_EQ(x.pages_unshared, y.pages_unshared);
  CHECK_EQ(x.pages_volatile, y.pages_volatile);
  CHECK_EQ(x.pages_scanned, y.pages_scanned);
  CHECK_EQ(x.stable_node_chains, y.stable_node_chains);
  CHECK_EQ(x.stable_node_dups, y.stable_node_dups);
  CHECK_EQ(x.ksm_zero_pages, y.ksm_zero_pages);
  CHECK_EQ(x.general_profit, y.general_profit);
  CHECK_EQ(x.rmap_items, y.rmap_items);
  CHECK_EQ(sp_source_count(a), sp_source_count(b));
  for (size_t i = 0; i < sp_source_count(a); i++) {
    sp_source_info p, q;
    CHECK_OK(sp_source_get(a, i, &p));
    CHECK_OK(sp_source_get(b, i, &q));
    CHECK_EQ(p.merging_pages, q.merging_pages);
    CHECK_EQ(p.zero_pages, q.zero_pages);
  }
}

uint64_t sp_test_rand(uint64_t *state) {
  uint64_t x = *state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *state = x;
}

void sp_test_fill_mix(unsigned char **mem, int sources, int pages, uint64_t *rng) {
  for (int s = 0; s < sources; s++)
    for (int i = 0; i < pages; i++) {
      bool unique = sp_test_rand(rng) % 4 == 0;
      sp_test_fill(mem[s] + (size_t)i * SP_PAGE_SIZE, unique ? sp_test_rand(rng) : (uint64_t)(i % 40) + 1);
    }
}

void sp_test_churn(unsigned char **mem, int sources, int pages, int writes, uint64_t *rng) {
  for (int k = 0; k < writes; k++) {
    unsigned char *source = mem[sp_test_rand(rng) % (uint64_t)sources];
    unsigned char *page = source + (sp_test_rand(rng) % (uint64_t)pages) * SP_PAGE_SIZE;
    switch (sp_test_rand(rng) % 3) {
    case 0: sp_test_fill(page, sp_test_rand(rng) % 60 + 1); break;
    case 1: memset(page, 0, SP_PAGE_SIZE); break;
    default: sp_test_fill(page, sp_test_rand(rng)); break;
    }
  }
}

sp_engine *sp_test_engine(int use_zero_pages, uint32_t max_page_sharing,
                          int smart_scan, int lookahead) {
  sp_settings s;
  sp_settings_default(&s);
  s.use_zero_pages = use_zero_pages;
  s.max_page_sharing = max_page_sharing;
  s.smart_scan = smart_scan;
  s.lookahead = lookahead;
  sp_engine *e;
  if (sp_engine_create(&s, &e)) abort();
  return e;
}

void sp_test_passes(sp_engine *e, int n) {
  for (int i = 0; i < n; i++) CHECK_OK(sp_engine_pass(e));
}

sp_counters sp_test_counters(const sp_engine *e) {
  sp_counters c;
  sp_engine_counters(e, &c);
  return c;
}

struct sp_test_child sp_test_fork(sp_test_child_body body, void *hello, size_t hello_len) {
  int ready[2], release[2];
  if (pipe(ready) || pipe(release)) abort();
  pid_t pid = fork();
  if (pid < 0) abort();
  if (pid == 0) {
    close(ready[0]);
    close(release[1]);
    body(hello);
    if (write(ready[1], hello, hello_len) != (ssize_t)hello_len) _exit(90);
    char c;
    while (read(release[0], &c, 1) > 0) {
    }
    _exit(0);
  }
  close(ready[1]);
  close(release[0]);
  if (read(ready[0], hello, hello_len) != (ssize_t)hello_len) {
    fprintf(stderr, "  the test child died before it was ready\n");
    abort();
  }
  close(ready[0]);
  return (struct sp_test_child){pid, release[1]};
}

void sp_test_end(struct sp_test_child *child) {
  if (child->pid <= 0) return;
  kill(child->pid, SIGKILL);
  waitpid(child->pid, NULL, 0);
  close(child->release_fd);
  child->pid = 0;
}
