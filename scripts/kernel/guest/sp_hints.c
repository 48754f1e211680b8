// SPDX-License-Identifier: GPL-2.0
/* Patch 0003 (page-flag hints): guest side of sp_mode=hints. */
#include "sp_common.h"

/*
 * Hints mode: hold SP_HI_ANON anonymous pages and SP_HI_CACHE mapped page
 * cache pages of /dev/ram0, print their page frame numbers and the kernel's
 * own MemFree, per-cpu free pages and Slab, wait for the hint table to be rewritten, say READY and
 * stay up until the host has read guest RAM and stops QEMU.
 */
#define SP_HI_ANON 1024
#define SP_HI_CACHE 256
#define SP_PFNS_PER_LINE 128

static void sp_print_pfns(const char *kind, const uint64_t *pfn, size_t n)
{
	size_t i;

	/*
	 * SP_PFNS_PER_LINE to a line, each line one write(): a line longer than
	 * stdio's buffer goes out in pieces, and a kernel message from the
	 * other vCPU can land between them.
	 */
	for (i = 0; i < n; i++) {
		if (i % SP_PFNS_PER_LINE == 0)
			printf("SP HINTS PFNS %s %zu %zu ", kind, n, i);
		printf(i % SP_PFNS_PER_LINE ? ",%llx" : "%llx", (unsigned long long)pfn[i]);
		if (i % SP_PFNS_PER_LINE == SP_PFNS_PER_LINE - 1 || i == n - 1)
			printf("\n");
	}
}

/*
 * Where the kernel image is in physical memory ("Kernel code" to the end of
 * "Kernel bss" in /proc/iomem): with KASLR it moves from boot to boot.
 */
static void sp_print_kernel_range(void)
{
	static char buf[16384];
	unsigned long long start = 0, end = 0, a, b;
	char *line;

	if (sp_read_text("/proc/iomem", buf, sizeof(buf)))
		return;
	for (line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		if (sscanf(line, " %llx-%llx", &a, &b) != 2)
			continue;
		if (strstr(line, ": Kernel code"))
			start = a;
		else if (strstr(line, ": Kernel bss"))
			end = b + 1;
	}
	printf("SP HINTS KERNEL start=0x%llx end=0x%llx\n", start, end);
}

/*
 * Pages on the per-cpu free lists, in kB: the table flags them free (they
 * are), but MemFree leaves them out, as NR_FREE_PAGES counts the buddy only.
 * Sum of the "count:" line of every CPU's pageset in /proc/zoneinfo.
 */
static unsigned long long sp_pcp_kb(void)
{
	static char buf[65536];
	unsigned long long pages = 0;
	char *line;
	int err = sp_read_text("/proc/zoneinfo", buf, sizeof(buf));

	if (err)
		sp_die("/proc/zoneinfo", err);
	for (line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		unsigned long long count;

		if (sscanf(line, " count: %llu", &count) == 1)
			pages += count;
	}
	return pages * (SP_PAGE / 1024);
}

void sp_hints(const char *cmdline)
{
	static uint64_t anon_pfn[SP_HI_ANON], cache_pfn[SP_HI_CACHE];
	static unsigned char page[SP_PAGE];
	const char *iv = strstr(cmdline, "page_hints=");
	unsigned int interval = 1000;
	volatile unsigned char sum = 0;
	unsigned char *anon, *cache;
	size_t i;
	int fd, err;

	if (!iv)
		sp_die("sp_mode=hints needs page_hints= on the command line", EINVAL);
	iv = strpbrk(iv, ", ");
	if (iv && *iv == ',')
		interval = (unsigned int)strtoul(iv + 1, NULL, 0);

	anon = mmap(NULL, SP_HI_ANON * SP_PAGE, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (anon == MAP_FAILED)
		sp_die("mmap anon", errno);
	for (i = 0; i < SP_HI_ANON; i++)
		sp_fill(anon + i * SP_PAGE, 6000000 + i);

	fd = open("/dev/ram0", O_RDWR);
	if (fd < 0)
		sp_die("open /dev/ram0", errno);
	for (i = 0; i < SP_HI_CACHE; i++) {
		sp_fill(page, 7000000 + i);
		if (pwrite(fd, page, SP_PAGE, (off_t)(i * SP_PAGE)) != (ssize_t)SP_PAGE)
			sp_die("write /dev/ram0", errno);
	}
	if (fsync(fd))
		sp_die("fsync /dev/ram0", errno);
	cache = mmap(NULL, SP_HI_CACHE * SP_PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (cache == MAP_FAILED)
		sp_die("mmap /dev/ram0", errno);
	for (i = 0; i < SP_HI_CACHE; i++)
		sum += cache[i * SP_PAGE];

	err = sp_pfns(anon, SP_HI_ANON, anon_pfn);
	if (!err)
		err = sp_pfns(cache, SP_HI_CACHE, cache_pfn);
	if (err)
		sp_die("read /proc/self/pagemap", err);

	/* Two rewrites after everything above settled. */
	sp_sleep_ms(2 * interval + 100);
	sp_print_pfns("anon", anon_pfn, SP_HI_ANON);
	sp_print_pfns("cache", cache_pfn, SP_HI_CACHE);
	sp_print_kernel_range();
	printf("SP HINTS READY interval_ms=%u memtotal_kb=%llu memfree_kb=%llu pcp_kb=%llu slab_kb=%llu\n",
	       interval, sp_meminfo_kb("MemTotal:"), sp_meminfo_kb("MemFree:"),
	       sp_pcp_kb(), sp_meminfo_kb("Slab:"));
	fflush(stdout);
	/*
	 * The host stops QEMU once it has read the table; if the host side
	 * died without doing so, end the guest (and so QEMU, -no-reboot) anyway.
	 */
	sp_sleep_ms(300 * 1000);
	printf("SP HINTS TIMEOUT: the host did not stop QEMU within 300 s\n");
	fflush(stdout);
	reboot(RB_AUTOBOOT);
}
