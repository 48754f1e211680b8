/* test_settings.c - engine settings accepted and refused as the kernel's
 * sysfs files accept and refuse them (mm/ksm.c 6.12). */
#include <errno.h>
#include <string.h>

#include "check.h"

/* pages_to_scan_store() takes any unsigned int, 0 included; ksmd then
 * scans nothing per batch (ksm_do_scan(0) never looks at a page), so no
 * pass starts and no page is charged or tracked. */
static void pages_to_scan_zero(void) {
  sp_settings s;
  sp_settings_default(&s);
  s.pages_to_scan = 0;
  sp_engine *e = NULL;
  CHECK_OK(sp_engine_create(&s, &e));
  if (!e) return;
  sp_settings got;
  sp_engine_settings(e, &got);
  CHECK_EQ(got.pages_to_scan, 0);

  unsigned char *mem = sp_test_pages(4);
  for (int i = 0; i < 4; i++) sp_test_fill(mem + i * SP_PAGE_SIZE, 9);
  CHECK_OK(sp_add_memory(e, "idle", mem, 4 * SP_PAGE_SIZE, NULL));
  CHECK_EQ(sp_engine_step(e, 0), 0);
  sp_counters c = sp_test_counters(e);
  CHECK_EQ(c.pages_scanned, 0);
  CHECK_EQ(c.rmap_items, 0);
  sp_progress p;
  sp_engine_progress(e, &p);
  CHECK_EQ(p.pass_pages, 0);
  /* An explicit count and a whole pass still scan. */
  CHECK_EQ(sp_engine_step(e, 2), 2);
  CHECK_EQ(sp_engine_pass(e), 2);
  CHECK_EQ(sp_test_counters(e).full_scans, 1);

  /* Back to 0 through configure, and from 0 to a count. */
  s.pages_to_scan = 3;
  CHECK_OK(sp_engine_configure(e, &s));
  CHECK_EQ(sp_engine_step(e, 0), 3);
  s.pages_to_scan = 0;
  CHECK_OK(sp_engine_configure(e, &s));
  uint64_t scanned = sp_test_counters(e).pages_scanned;
  CHECK_EQ(sp_engine_step(e, 0), 0);
  CHECK_EQ(sp_test_counters(e).pages_scanned, scanned);
  sp_engine_destroy(e);
  sp_test_free_pages(mem, 4);
}

/* max_page_sharing_store() refuses values below 2, and so does the engine,
 * without changing what it had. */
static void max_page_sharing_below_two(void) {
  sp_settings s;
  sp_settings_default(&s);
  s.max_page_sharing = 1;
  sp_engine *e = NULL;
  CHECK_EQ(sp_engine_create(&s, &e), -EINVAL);
  CHECK(e == NULL);
  e = sp_test_engine(0, 256, 1, 1);
  CHECK_EQ(sp_engine_configure(e, &s), -EINVAL);
  sp_settings got;
  sp_engine_settings(e, &got);
  CHECK_EQ(got.max_page_sharing, 256);
  sp_engine_destroy(e);
}

int main(void) {
  sp_check_run("pages_to_scan 0 is accepted and scans nothing per step", pages_to_scan_zero);
  sp_check_run("max_page_sharing below 2 is refused", max_page_sharing_below_two);
  return sp_check_done();
}
