/* test_report.c - what the engine reports: merge groups and their members. */
#include <errno.h>
#include <string.h>

#include "check.h"

struct seen_groups {
  size_t groups, members;
  uint32_t mappings;
};

static int note_group(void *ctx, const sp_group *g, const sp_group_member *m, size_t count) {
  struct seen_groups *seen = ctx;
  seen->groups++;
  seen->members += count;
  seen->mappings = g->mappings;
  return 0;
}

/* max_page_sharing may be as large as the kernel takes (INT_MAX):
 * the member buffer follows the groups' real sizes, so listing one group
 * of two pages neither needs max_page_sharing entries nor fails. */
static void groups_sized_by_real_count(void) {
  sp_engine *e = sp_test_engine(0, INT32_MAX, 0, 0);
  unsigned char *mem = sp_test_pages(2);
  sp_test_fill(mem, 3);
  memcpy(mem + SP_PAGE_SIZE, mem, SP_PAGE_SIZE);
  CHECK_OK(sp_add_memory(e, "two", mem, 2 * SP_PAGE_SIZE, NULL));
  sp_test_passes(e, 2);
  CHECK_EQ(sp_test_counters(e).pages_sharing, 1);
  struct seen_groups seen = {0};
  CHECK_EQ(sp_engine_groups(e, note_group, &seen), 0);
  CHECK_EQ(seen.groups, 1);
  CHECK_EQ(seen.members, 2);
  CHECK_EQ(seen.mappings, 2);
  sp_engine_destroy(e);
  sp_test_free_pages(mem, 2);
}

/* Groups of different sizes, the larger one last: every member listed. */
static void groups_of_growing_size(void) {
  sp_engine *e = sp_test_engine(0, 256, 0, 0);
  enum { SMALL = 3, LARGE = 200 };
  unsigned char *mem = sp_test_pages(SMALL + LARGE);
  for (int i = 0; i < SMALL + LARGE; i++) sp_test_fill(mem + (size_t)i * SP_PAGE_SIZE, i < SMALL ? 1 : 2);
  CHECK_OK(sp_add_memory(e, "mix", mem, (SMALL + LARGE) * SP_PAGE_SIZE, NULL));
  sp_test_passes(e, 2);
  struct seen_groups seen = {0};
  CHECK_EQ(sp_engine_groups(e, note_group, &seen), 0);
  CHECK_EQ(seen.groups, 2);
  CHECK_EQ(seen.members, SMALL + LARGE);
  sp_engine_destroy(e);
  sp_test_free_pages(mem, SMALL + LARGE);
}

int main(void) {
  sp_check_run("groups() sized by the groups, not max_page_sharing", groups_sized_by_real_count);
  sp_check_run("groups of growing size", groups_of_growing_size);
  return sp_check_done();
}
