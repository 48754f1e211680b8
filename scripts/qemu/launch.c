/* sp-launch: run a program (QEMU) with per-process settings that must be in place before exec.
 *
 * Usage: sp-launch [--no-thp] [--die-with-parent] -- PROGRAM [ARG]...
 *   --no-thp           prctl(PR_SET_THP_DISABLE): no transparent huge pages for PROGRAM's memory,
 *                      so KSM sees every guest page as a 4 KiB page (the lab's "nothp" wrapper).
 *                      The flag survives execve; nothing system-wide changes.
 *   --die-with-parent  prctl(PR_SET_PDEATHSIG, SIGKILL): PROGRAM is killed when the process that
 *                      started it dies, even by SIGKILL, so a crashed test leaves no QEMU behind.
 * The program is exec'd in place, so its pid is this process's pid. Exit 127 on failure. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int no_thp = 0, die_with_parent = 0, i;
	pid_t parent = getppid();

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--no-thp") == 0)
			no_thp = 1;
		else if (strcmp(argv[i], "--die-with-parent") == 0)
			die_with_parent = 1;
		else if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		} else
			break;
	}
	if (i >= argc || argv[i][0] == '-') {
		fprintf(stderr, "usage: sp-launch [--no-thp] [--die-with-parent] -- PROGRAM [ARG]...\n");
		return 127;
	}
	if (no_thp && prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)) {
		fprintf(stderr, "sp-launch: prctl(PR_SET_THP_DISABLE): %s\n", strerror(errno));
		return 127;
	}
	if (die_with_parent) {
		if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)) {
			fprintf(stderr, "sp-launch: prctl(PR_SET_PDEATHSIG): %s\n", strerror(errno));
			return 127;
		}
		/* The parent may have died before the prctl took effect. */
		if (getppid() != parent)
			return 127;
	}
	execvp(argv[i], argv + i);
	fprintf(stderr, "sp-launch: cannot run %s: %s\n", argv[i], strerror(errno));
	return 127;
}
