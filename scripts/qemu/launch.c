/* sp-launch: run a program (QEMU) with per-process settings that must be in place before exec.
 *
 * Usage: sp-launch [--no-thp] [--die-with-parent] [--cgroup DIR] -- PROGRAM [ARG]...
 *   --no-thp           prctl(PR_SET_THP_DISABLE): no transparent huge pages for PROGRAM's memory,
 *                      so KSM sees every guest page as a 4 KiB page (the lab's "nothp" wrapper).
 *                      The flag survives execve; nothing system-wide changes.
 *   --die-with-parent  prctl(PR_SET_PDEATHSIG, SIGKILL): PROGRAM is killed when the process that
 *                      started it dies, even by SIGKILL, so a crashed test leaves no QEMU behind.
 *   --cgroup DIR       move this process into the cgroup DIR (v1 or v2: writes its pid to
 *                      DIR/cgroup.procs) before exec, so everything PROGRAM allocates or reads
 *                      through the page cache is charged there from its first page.
 * The program is exec'd in place, so its pid is this process's pid. Exit 127 on failure. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

/* Returns 0 or -errno, having said what failed. */
static int sp_join_cgroup(const char *dir)
{
	char path[4096], pid[32];
	int fd, n, err = 0;

	if (snprintf(path, sizeof(path), "%s/cgroup.procs", dir) >= (int)sizeof(path)) {
		fprintf(stderr, "sp-launch: cgroup path too long: %s\n", dir);
		return -ENAMETOOLONG;
	}
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		fprintf(stderr, "sp-launch: cannot open %s: %s (create the cgroup first)\n", path, strerror(errno));
		return err;
	}
	n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (write(fd, pid, (size_t)n) != n) {
		err = -errno;
		fprintf(stderr, "sp-launch: cannot join cgroup %s: %s\n", dir, strerror(errno));
	}
	close(fd);
	return err;
}

int main(int argc, char **argv)
{
	int no_thp = 0, die_with_parent = 0, i;
	const char *cgroup = NULL;
	pid_t parent = getppid();

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--no-thp") == 0)
			no_thp = 1;
		else if (strcmp(argv[i], "--die-with-parent") == 0)
			die_with_parent = 1;
		else if (strcmp(argv[i], "--cgroup") == 0 && i + 1 < argc)
			cgroup = argv[++i];
		else if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		} else
			break;
	}
	if (i >= argc || argv[i][0] == '-') {
		fprintf(stderr, "usage: sp-launch [--no-thp] [--die-with-parent] [--cgroup DIR] -- PROGRAM [ARG]...\n");
		return 127;
	}
	if (no_thp && prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)) {
		fprintf(stderr, "sp-launch: prctl(PR_SET_THP_DISABLE): %s\n", strerror(errno));
		return 127;
	}
	if (cgroup && sp_join_cgroup(cgroup))
		return 127;
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
