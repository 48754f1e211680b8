// SPDX-License-Identifier: GPL-2.0
/* Patch 0002 (exclusive cache): checks in the guest. */
#include "sp_common.h"

/*
 * Exclusive cache: one process holds contents A (twice, so they merge into
 * KSM pages in the stable tree) and B (once, so they sit in the unstable
 * tree); /dev/ram0 holds, in four quarters of SP_EC_PAGES pages, clean A,
 * clean B, clean unique C, and dirty A.  After full scans with
 * exclusive_cache=1 the clean A and B pages must be gone from the page cache
 * and the C and dirty pages still there.  /dev/ram1 holds the same as
 * ram0 but does not opt in: all of it must stay.
 */
#define SP_EC_PAGES 256
#define SP_FADV_KSM_EXCLUSIVE 8	/* include/uapi/linux/fadvise.h, patch 2 */

static uint64_t sp_ec_seed(int proc, size_t i)
{
	(void)proc;
	/* [0, 2N): two copies of A; [2N, 3N): B */
	if (i < 2 * SP_EC_PAGES)
		return 3000000 + i % SP_EC_PAGES;
	return 4000000 + i - 2 * SP_EC_PAGES;
}

static uint64_t sp_ec_file_seed(size_t i)
{
	size_t q = i / SP_EC_PAGES, r = i % SP_EC_PAGES;

	return q == 0 || q == 3 ? 3000000 + r :	/* A, clean and dirty */
	       q == 1 ? 4000000 + r :		/* B */
	       5000000 + r;			/* C: only in the file */
}

/* Write the four quarters to @path; returns the fd and a mapping for mincore. */
static int sp_ec_file(const char *path, void **map)
{
	static unsigned char page[SP_PAGE];
	size_t i;
	int fd = open(path, O_RDWR);

	if (fd < 0)
		sp_die(path, errno);
	for (i = 0; i < 4 * SP_EC_PAGES; i++) {
		if (i == 3 * SP_EC_PAGES && fsync(fd))
			sp_die(path, errno);
		sp_fill(page, sp_ec_file_seed(i));
		if (pwrite(fd, page, SP_PAGE, (off_t)(i * SP_PAGE)) != (ssize_t)SP_PAGE)
			sp_die(path, errno);
	}
	*map = mmap(NULL, 4 * SP_EC_PAGES * SP_PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (*map == MAP_FAILED)
		sp_die(path, errno);
	return fd;
}

/* Resident pages of each quarter of a sp_ec_file() mapping. */
static void sp_ec_resident(void *map, size_t resident[4])
{
	unsigned char vec[4 * SP_EC_PAGES];
	size_t i;

	if (mincore(map, sizeof(vec) * SP_PAGE, vec))
		sp_die("mincore", errno);
	for (i = 0; i < 4; i++)
		resident[i] = 0;
	for (i = 0; i < sizeof(vec); i++)
		resident[i / SP_EC_PAGES] += vec[i] & 1;
}

void sp_check_exclusive_cache(void)
{
	unsigned long long scans0, scanned0, dropped0, scanned, dropped;
	size_t before[4], resident[4], other[4];
	struct sp_child c;
	void *map, *other_map;
	int fd, other_fd, err;

	sp_write_text("/proc/sys/vm/dirty_writeback_centisecs", "0");
	sp_write_text("/proc/sys/vm/dirty_expire_centisecs", "360000");
	fd = sp_ec_file("/dev/ram0", &map);
	other_fd = sp_ec_file("/dev/ram1", &other_map);
	err = posix_fadvise(fd, 0, 0, SP_FADV_KSM_EXCLUSIVE);
	if (err)
		sp_die("posix_fadvise(POSIX_FADV_KSM_EXCLUSIVE)", err);
	sp_ec_resident(map, before);

	sp_ksm_set("run", 2);
	err = sp_spawn(&c, 0, 3 * SP_EC_PAGES, sp_ec_seed);
	if (err)
		sp_die("spawn exclusive cache workload", err);
	sp_ksm_set("smart_scan", 0);	/* keep B in the unstable tree */
	sp_ksm_set("exclusive_cache", 1);
	scans0 = sp_ksm_get("full_scans");
	scanned0 = sp_ksm_get("cache_pages_scanned");
	dropped0 = sp_ksm_get("cache_pages_dropped");
	sp_ksm_set("run", 1);
	while (sp_ksm_get("full_scans") < scans0 + 3)
		sp_sleep_ms(20);
	sp_ksm_set("run", 0);
	sp_ksm_set("exclusive_cache", 0);
	sp_ksm_set("smart_scan", 1);
	scanned = sp_ksm_get("cache_pages_scanned") - scanned0;
	dropped = sp_ksm_get("cache_pages_dropped") - dropped0;

	sp_ec_resident(map, resident);
	sp_ec_resident(other_map, other);
	sp_reap(&c, 1);
	munmap(map, 4 * SP_EC_PAGES * SP_PAGE);
	munmap(other_map, 4 * SP_EC_PAGES * SP_PAGE);
	close(fd);
	close(other_fd);

	sp_result("exclusive_cache_drops_clean",
		  before[0] + before[1] + before[2] + before[3] == 4 * SP_EC_PAGES &&
		  resident[0] == 0 && resident[1] == 0 &&
		  resident[2] == SP_EC_PAGES && dropped == 2 * SP_EC_PAGES &&
		  scanned >= 4 * SP_EC_PAGES,
		  "cached after scans, of %d each: stable-match=%zu unstable-match=%zu "
		  "no-match=%zu; cache_pages_scanned +%llu cache_pages_dropped +%llu",
		  SP_EC_PAGES, resident[0], resident[1], resident[2], scanned,
		  dropped);
	sp_result("exclusive_cache_keeps_dirty", resident[3] == SP_EC_PAGES,
		  "dirty pages matching KSM pages still cached: %zu of %d",
		  resident[3], SP_EC_PAGES);
	sp_result("exclusive_cache_only_opted_in",
		  other[0] + other[1] + other[2] + other[3] == 4 * SP_EC_PAGES,
		  "/dev/ram1, same content, not opted in: %zu of %d pages still cached",
		  other[0] + other[1] + other[2] + other[3], 4 * SP_EC_PAGES);
}
