// SPDX-License-Identifier: GPL-2.0
/*
 * /init of the test guest: mounts /proc, /sys and /dev, reads the kernel
 * command line and runs the checks it asks for:
 *   sp_mode=checks   lookahead, exclusive cache and KSM hint checks (default);
 *                    sp_vm_smoke_secs=N lengthens the lookahead VM smoke run
 *                    (3 s) on a slower kernel (the KASAN build)
 *   sp_mode=hints    fill memory with known kinds of pages, report their PFNs
 *                    and wait for the host to read the hint table
 *   sp_mode=ksm-hints-guest  ksmd reads the hints of a real guest's RAM dump
 *                    (/guest-ram.bin, written by test/hints.test.ts)
 *   sp_mode=selftests  the sysfs/baseline comparison and upstream's KSM
 *                    selftests; with sp_kernel=off on the options-off kernel
 * Run on the host as "sp_guest --large-folio-file PATH" it writes the file
 * test-kernel.sh puts in the large folio check's EROFS image.
 */
#include "sp_common.h"

int main(int argc, char **argv)
{
	char cmdline[1024] = "";
	int err;

	/* Run on the host by test-kernel.sh: the large folio check's file. */
	if (argc == 3 && !strcmp(argv[1], "--large-folio-file")) {
		err = sp_lf_write_file(argv[2]);
		if (err)
			fprintf(stderr, "%s: %s\n", argv[2], strerror(-err));
		return err ? 1 : 0;
	}

	sp_mount("proc", "/proc", "proc");
	sp_mount("sysfs", "/sys", "sysfs");
	sp_mount("devtmpfs", "/dev", "devtmpfs");
	sp_read_text("/proc/cmdline", cmdline, sizeof(cmdline));
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("SP START %s", cmdline);
	/*
	 * THP on for every mode: the kernel leaves it off below 512 MiB of
	 * RAM (mm/huge_memory.c), and KSM must be tested on memory that comes
	 * in 2 MiB folios, as a VMM's guest RAM does.
	 */
	err = sp_write_text("/sys/kernel/mm/transparent_hugepage/enabled", "always");
	if (err)
		sp_die("/sys/kernel/mm/transparent_hugepage/enabled", err);

	if (strstr(cmdline, "sp_mode=ksm-hints-guest")) {
		sp_ksm_hints_guest();
	} else if (strstr(cmdline, "sp_mode=hints")) {
		sp_hints(cmdline);
	} else if (strstr(cmdline, "sp_mode=lookahead-bench")) {
		sp_lookahead_bench(cmdline);
	} else if (strstr(cmdline, "sp_mode=selftests")) {
		bool series_kernel = !strstr(cmdline, "sp_kernel=off");

		sp_check_baseline(series_kernel);
		sp_selftests(series_kernel);
	} else {
		sp_check_lookahead(cmdline);
		sp_check_exclusive_cache();
		sp_check_large_folios();
		sp_check_ksm_hints();
		sp_engine_golden();
	}
	printf("SP DONE failed=%d\n", sp_failed);
	fflush(stdout);
	sync();
	reboot(RB_AUTOBOOT);	/* QEMU runs with -no-reboot: it exits */
	return 0;
}
