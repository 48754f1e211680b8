// SPDX-License-Identifier: GPL-2.0
/*
 * /init of the test guest: mounts /proc, /sys and /dev, reads the kernel
 * command line and runs the checks it asks for:
 *   sp_mode=checks   lookahead and exclusive cache checks (default)
 *   sp_mode=hints    fill memory with known kinds of pages, report their PFNs
 *                    and wait for the host to read the hint table
 */
#include "sp_common.h"

int main(void)
{
	char cmdline[1024] = "";

	sp_mount("proc", "/proc", "proc");
	sp_mount("sysfs", "/sys", "sysfs");
	sp_mount("devtmpfs", "/dev", "devtmpfs");
	sp_read_text("/proc/cmdline", cmdline, sizeof(cmdline));
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("SP START %s", cmdline);

	if (strstr(cmdline, "sp_mode=hints")) {
		sp_hints(cmdline);
	} else if (strstr(cmdline, "sp_mode=lookahead-bench")) {
		sp_lookahead_bench(cmdline);
	} else {
		sp_check_lookahead();
		sp_check_exclusive_cache();
	}
	printf("SP DONE failed=%d\n", sp_failed);
	fflush(stdout);
	sync();
	reboot(RB_AUTOBOOT);	/* QEMU runs with -no-reboot: it exits */
	return 0;
}
