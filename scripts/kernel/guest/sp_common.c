// SPDX-License-Identifier: GPL-2.0
/* Helpers shared by every area of the guest program (see sp_common.h). */
#include "sp_common.h"

int sp_failed;

static void sp_report(const char *name, const char *status, const char *fmt, va_list ap)
{
	printf("SP RESULT %s %s ", name, status);
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
}

void sp_result(const char *name, bool pass, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sp_report(name, pass ? "PASS" : "FAIL", fmt, ap);
	va_end(ap);
	if (!pass)
		sp_failed++;
}

void sp_skip(const char *name, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sp_report(name, "SKIP", fmt, ap);
	va_end(ap);
}

/* A fatal setup error: report it as a failed check so the host sees it. */
void sp_die(const char *what, int err)
{
	sp_result("setup", false, "%s: %s", what, strerror(err > 0 ? err : -err));
	printf("SP DONE\n");
	fflush(stdout);
	sync();
	reboot(RB_AUTOBOOT);
	_exit(1);
}

void sp_sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

int sp_read_text(const char *path, char *buf, size_t len)
{
	size_t got = 0;
	ssize_t n = 0;
	char extra;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return -errno;
	/* A seq_file (/proc/zoneinfo) may hand out less than asked per read. */
	while (got < len - 1 && (n = read(fd, buf + got, len - 1 - got)) > 0)
		got += (size_t)n;
	if (n >= 0 && got == len - 1 && read(fd, &extra, 1) > 0)
		n = -1, errno = EFBIG;
	close(fd);
	if (n < 0)
		return -errno;
	buf[got] = '\0';
	return 0;
}

int sp_write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, text, strlen(text));
	close(fd);
	return n < 0 ? -errno : 0;
}

void sp_wait_full_scans(unsigned long long scans, unsigned int limit_s)
{
	unsigned int waited = 0;

	while (sp_ksm_get("full_scans") <= scans) {
		if (waited++ > limit_s * 200)
			sp_die("full_scans did not grow", ETIMEDOUT);
		sp_sleep_ms(5);
	}
}

unsigned long long sp_ksm_get(const char *name)
{
	char path[128], buf[64];
	int err;

	snprintf(path, sizeof(path), SP_KSM "%s", name);
	err = sp_read_text(path, buf, sizeof(buf));
	if (err)
		sp_die(path, err);
	return strtoull(buf, NULL, 10);
}

void sp_ksm_set(const char *name, unsigned long long value)
{
	char path[128], buf[32];
	int err;

	snprintf(path, sizeof(path), SP_KSM "%s", name);
	snprintf(buf, sizeof(buf), "%llu", value);
	err = sp_write_text(path, buf);
	if (err)
		sp_die(path, err);
}

/* ksmd's pid, found by its comm, for its CPU time in /proc/PID/schedstat. */
int sp_ksmd_pid(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	char path[64], comm[32];
	int pid = -ENOENT;

	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/comm", e->d_name);
		if (sp_read_text(path, comm, sizeof(comm)) == 0 &&
		    strcmp(comm, "ksmd\n") == 0) {
			pid = atoi(e->d_name);
			break;
		}
	}
	closedir(d);
	return pid;
}

/* Nanoseconds ksmd has run on the CPU (first field of schedstat). */
uint64_t sp_ksmd_cpu_ns(int pid)
{
	char path[64], buf[128];
	int err;

	snprintf(path, sizeof(path), "/proc/%d/schedstat", pid);
	err = sp_read_text(path, buf, sizeof(buf));
	if (err)
		sp_die(path, err);
	return strtoull(buf, NULL, 10);
}

void sp_fill(unsigned char *page, uint64_t seed)
{
	uint64_t *w = (uint64_t *)page;
	uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
	size_t k = 0;

	if (seed >= SP_SPARSE)
		for (; k < SP_PAGE / 8 * 3 / 4; k++)
			w[k] = 0;
	for (; k < SP_PAGE / 8; k++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[k] = x;
	}
}

/*
 * Start a process holding @pages pages filled by @seed(proc, i), marked
 * MADV_MERGEABLE.  It reports its mapping's address through a pipe and then
 * sleeps until killed.
 */
int sp_spawn(struct sp_child *c, int proc, size_t pages,
	     uint64_t (*seed)(int, size_t))
{
	int fds[2];
	pid_t pid;

	if (pipe(fds))
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		unsigned char *mem;
		unsigned long addr;
		size_t i;

		close(fds[0]);
		mem = mmap(NULL, pages * SP_PAGE, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mem == MAP_FAILED)
			_exit(2);
		for (i = 0; i < pages; i++)
			sp_fill(mem + i * SP_PAGE, seed(proc, i));
		if (madvise(mem, pages * SP_PAGE, MADV_MERGEABLE))
			_exit(3);
		addr = (unsigned long)mem;
		if (write(fds[1], &addr, sizeof(addr)) != sizeof(addr))
			_exit(4);
		for (;;)
			pause();
	}
	close(fds[1]);
	c->pid = pid;
	if (read(fds[0], &c->addr, sizeof(c->addr)) != sizeof(c->addr)) {
		close(fds[0]);
		return -EIO;
	}
	close(fds[0]);
	return 0;
}

void sp_reap(struct sp_child *c, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		kill(c[i].pid, SIGKILL);
		waitpid(c[i].pid, NULL, 0);
	}
}

/*
 * Which of @c's @pages pages are merged: one byte per page, from its pagemap
 * and /proc/kpagecount (the page is mapped more than once).  Not
 * /proc/kpageflags: 6.12's KPF_KSM tests mapping & PAGE_MAPPING_KSM, and
 * PAGE_MAPPING_KSM includes the PAGE_MAPPING_ANON bit every anonymous page
 * has, so it is set for every anonymous page.  The children map their memory
 * after fork(), so nothing but a merge shares their pages.
 */
int sp_ksm_map(const struct sp_child *c, size_t pages, unsigned char *out)
{
	char path[64];
	int pm, kc;
	size_t i;
	int err = 0;

	snprintf(path, sizeof(path), "/proc/%d/pagemap", c->pid);
	pm = open(path, O_RDONLY);
	kc = open("/proc/kpagecount", O_RDONLY);
	if (pm < 0 || kc < 0) {
		err = -errno;
		goto out;
	}
	for (i = 0; i < pages; i++) {
		uint64_t ent, count = 0;
		off_t off = (off_t)((c->addr / SP_PAGE + i) * 8);

		if (pread(pm, &ent, 8, off) != 8) {
			err = -EIO;
			goto out;
		}
		out[i] = 0;
		if (!(ent & SP_PM_PRESENT))
			continue;
		if (pread(kc, &count, 8, (off_t)((ent & SP_PM_PFN_MASK) * 8)) != 8) {
			err = -EIO;
			goto out;
		}
		out[i] = count > 1;
	}
out:
	if (pm >= 0)
		close(pm);
	if (kc >= 0)
		close(kc);
	return err;
}

int sp_pfns(const void *addr, size_t pages, uint64_t *pfn)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	size_t i;

	if (fd < 0)
		return -errno;
	for (i = 0; i < pages; i++) {
		uint64_t ent;
		off_t off = (off_t)(((uintptr_t)addr / SP_PAGE + i) * 8);

		if (pread(fd, &ent, 8, off) != 8 || !(ent & SP_PM_PRESENT)) {
			close(fd);
			return -EFAULT;
		}
		pfn[i] = ent & SP_PM_PFN_MASK;
	}
	close(fd);
	return 0;
}

void sp_file_kpageflags(int fd, size_t pages, uint64_t *pfn, uint64_t *flags, const char *what)
{
	volatile unsigned char *map;
	unsigned char sum = 0;
	size_t i;
	int kpf;

	map = mmap(NULL, pages * SP_PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		sp_die(what, errno);
	for (i = 0; i < pages; i++)
		sum += map[i * SP_PAGE];
	(void)sum;
	if (sp_pfns((const void *)map, pages, pfn))
		sp_die(what, EFAULT);
	kpf = open("/proc/kpageflags", O_RDONLY);
	if (kpf < 0)
		sp_die("/proc/kpageflags", errno);
	for (i = 0; i < pages; i++)
		if (pread(kpf, &flags[i], 8, (off_t)(pfn[i] * 8)) != 8)
			sp_die("read /proc/kpageflags", errno ? errno : EIO);
	close(kpf);
	munmap((void *)map, pages * SP_PAGE);
}

unsigned long long sp_meminfo_kb(const char *key)
{
	static char buf[4096];
	char *p;
	int err = sp_read_text("/proc/meminfo", buf, sizeof(buf));

	if (err)
		sp_die("/proc/meminfo", err);
	p = strstr(buf, key);
	if (!p)
		sp_die(key, ENOENT);
	return strtoull(p + strlen(key) + 1, NULL, 10);
}

void sp_mount(const char *src, const char *dst, const char *type)
{
	mkdir(dst, 0755);
	if (mount(src, dst, type, 0, NULL) && errno != EBUSY)
		sp_die(dst, errno);
}
