// SPDX-License-Identifier: GPL-2.0
/*
 * sp_mode=selftests, before the selftests: what the options-off kernel must
 * share with an unpatched 6.12 and with the options-on kernel at knobs 0.
 *
 *   SP KSM_SYSFS <name,name,...>   every file in /sys/kernel/mm/ksm, sorted;
 *                                  the host compares it with 6.12's list
 *   SP BASELINE <key=value ...>    KSM's counters and a hash of which pages
 *                                  are KSM pages after a fixed workload; the
 *                                  host compares the two kernels' lines
 */
#include "sp_common.h"

static int sp_cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void sp_ksm_sysfs_list(void)
{
	static char names[64][64];
	char *sorted[64];
	DIR *d = opendir(SP_KSM);
	struct dirent *e;
	int n = 0, i;

	if (!d)
		sp_die(SP_KSM, errno);
	while ((e = readdir(d)) && n < 64) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(names[n], sizeof(names[n]), "%s", e->d_name);
		sorted[n] = names[n];
		n++;
	}
	closedir(d);
	qsort(sorted, (size_t)n, sizeof(sorted[0]), sp_cmp_str);
	printf("SP KSM_SYSFS ");
	for (i = 0; i < n; i++)
		printf(i ? ",%s" : "%s", sorted[i]);
	printf("\n");
}

/*
 * The options-off kernel must reject the series' fadvise() advice values as
 * 6.12 does (it knows POSIX_FADV_NORMAL..POSIX_FADV_NOREUSE, 0..5).
 */
static void sp_fadvise_unknown(void)
{
	int fd = open("/dev/ram0", O_RDWR);
	int e8, e9;

	if (fd < 0)
		sp_die("open /dev/ram0", errno);
	e8 = posix_fadvise(fd, 0, 0, 8);
	e9 = posix_fadvise(fd, 0, 0, 9);
	close(fd);
	sp_result("off_fadvise_8_9_rejected", e8 == EINVAL && e9 == EINVAL,
		  "posix_fadvise(/dev/ram0, 8) = %s, (9) = %s; 6.12 gives EINVAL",
		  e8 ? strerror(e8) : "0", e9 ? strerror(e9) : "0");
}

/*
 * The workload: SP_BL_PROCS processes of SP_BL_PAGES pages.  Page i holds,
 * by i % 4: 0 content the same in every process, 1 content unique to the
 * process, 2 content shared by processes 0 and 1 only, 3 sparse content the
 * same in every process.
 */
#define SP_BL_PROCS 3
#define SP_BL_PAGES 2048
#define SP_BL_SCANS 4

static uint64_t sp_bl_seed(int proc, size_t i)
{
	switch (i % 4) {
	case 0:
		return 8000000 + i;
	case 1:
		return 9000000 + (uint64_t)proc * SP_BL_PAGES + i;
	case 2:
		return proc < 2 ? 10000000 + i : 11000000 + i;
	default:
		return SP_SPARSE + 12000000 + i;
	}
}

static void sp_baseline(void)
{
	static unsigned char ksm[SP_BL_PAGES];
	static const char *const counters[] = {
		"pages_shared", "pages_sharing", "pages_unshared",
		"pages_volatile", "stable_node_chains", "stable_node_dups",
		"ksm_zero_pages",
	};
	unsigned long long v[7], scans0;
	/* the expected merges: kinds 0 and 3 three ways, kind 2 two ways */
	unsigned long long exp_shared = SP_BL_PAGES / 4 * 3;
	unsigned long long exp_sharing = SP_BL_PAGES / 4 * (2 + 1 + 2);
	struct sp_child c[SP_BL_PROCS];
	uint64_t fnv = 0xcbf29ce484222325ULL;
	size_t i;
	int p, err;

	sp_ksm_set("run", 2);
	sp_ksm_set("pages_to_scan", 1000);
	sp_ksm_set("sleep_millisecs", 10);
	for (p = 0; p < SP_BL_PROCS; p++) {
		err = sp_spawn(&c[p], p, SP_BL_PAGES, sp_bl_seed);
		if (err)
			sp_die("spawn baseline workload", err);
	}
	scans0 = sp_ksm_get("full_scans");
	sp_ksm_set("run", 1);
	while (sp_ksm_get("full_scans") < scans0 + SP_BL_SCANS)
		sp_sleep_ms(20);
	sp_ksm_set("run", 0);
	for (i = 0; i < 7; i++)
		v[i] = sp_ksm_get(counters[i]);
	for (p = 0; p < SP_BL_PROCS; p++) {
		err = sp_ksm_map(&c[p], SP_BL_PAGES, ksm);
		if (err)
			sp_die("read pagemap", err);
		for (i = 0; i < SP_BL_PAGES; i++)
			fnv = (fnv ^ ksm[i]) * 0x100000001b3ULL;
	}
	sp_reap(c, SP_BL_PROCS);
	sp_ksm_set("run", 2);

	/*
	 * run=0 stops ksmd after the batch in progress, mid-pass: how the
	 * pages not merged split between pages_unshared (in this pass's
	 * unstable tree) and pages_volatile depends on where it stopped (CI
	 * saw 2048/0 on one kernel, 1715/333 on the other), so the two kernels
	 * are compared on their sum.
	 */
	printf("SP BASELINE pages_shared=%llu pages_sharing=%llu pages_unshared+volatile=%llu",
	       v[0], v[1], v[2] + v[3]);
	for (i = 4; i < 7; i++)
		printf(" %s=%llu", counters[i], v[i]);
	printf(" ksm_page_map_fnv=%016llx\n", (unsigned long long)fnv);
	sp_result("baseline_merges", v[0] == exp_shared && v[1] == exp_sharing,
		  "pages_shared=%llu pages_sharing=%llu, expected %llu/%llu after %d full scans",
		  v[0], v[1], exp_shared, exp_sharing, SP_BL_SCANS);
}

/* Options-off kernel: sp_kernel=off on the command line. */
void sp_check_baseline(bool series_kernel)
{
	sp_ksm_sysfs_list();
	if (!series_kernel)
		sp_fadvise_unknown();
	if (series_kernel) {
		sp_ksm_set("lookahead", 0);
		sp_ksm_set("exclusive_cache", 0);
	}
	sp_baseline();
}
