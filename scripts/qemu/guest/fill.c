/* sp-fill: fill anonymous guest memory with a known mix of page contents and keep it.
 *
 * Usage: sp-fill [--spec TEXT | --cmdline] [--name NAME] [--tag TAG] [--daemon]
 *                [--state-dir DIR]
 *   --spec TEXT   the mix (see fillspec.h); --cmdline reads sp_fill= from /proc/cmdline
 *   --name NAME   guest name, seeds unique pages with src=name (default: sp_name= or hostname)
 *   --tag TAG     names this fill in the summary and in DIR/fill-TAG.{json,pid} (default boot)
 *   --daemon      fill in a child, print the summary, and return while the child keeps the memory
 *
 * Output on stdout once the memory is filled and checked:
 *   SAMEPAGE: FILL {json}
 * The JSON has, per kind, "expected" (pages the spec asks for), "pages" (pages found holding
 * exactly the intended content after the fill), "present" (pages the guest kernel reports
 * present in /proc/self/pagemap) and "distinct" (distinct contents of that kind in this guest).
 * On failure: "SAMEPAGE: ERROR fill: ..." on stdout and exit status 1 (2 for a bad spec). */
#define _GNU_SOURCE
#include "fillspec.h"
#include "prng.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SP_HUGE (2u << 20)

struct sp_region {
	uint8_t *base;
	uint64_t pages;
};

struct sp_kind_result {
	uint64_t pages, present, distinct;
};

struct sp_fill {
	struct sp_fill_spec spec;
	const char *name, *tag;
	uint64_t name_seed;
	struct sp_region region[SP_KIND_COUNT];
	struct sp_kind_result result[SP_KIND_COUNT];
	uint64_t contiguous_runs;
	long fill_ms;
};

static char sp_err[512];

static int sp_error(int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sp_err, sizeof(sp_err), fmt, ap);
	va_end(ap);
	return rc;
}

static long sp_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* MemAvailable in pages, so an oversized spec fails with a message instead of the OOM killer. */
static int sp_mem_available(uint64_t *pages)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	unsigned long long kb = 0;
	int found = 0;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			found = 1;
	fclose(f);
	if (!found)
		return -ENOENT;
	*pages = kb / 4;
	return 0;
}

/* Each kind gets its own mapping, 2 MiB aligned: the guest kernel (THP "always" on Debian)
 * then backs it with huge pages, so consecutive pages of a run are also consecutive in guest
 * physical memory, which is what the host sees as QEMU's RAM and what lookahead walks. */
static int sp_region_map(struct sp_region *r, uint64_t pages)
{
	size_t len = pages * SP_PAGE_SIZE;
	r->pages = pages;
	r->base = NULL;
	if (!pages)
		return 0;
	uint8_t *p = mmap(NULL, len + SP_HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return sp_error(-errno, "mmap of %llu pages failed: %s", (unsigned long long)pages, strerror(errno));
	uintptr_t a = ((uintptr_t)p + SP_HUGE - 1) & ~(uintptr_t)(SP_HUGE - 1);
	if (a > (uintptr_t)p)
		munmap(p, a - (uintptr_t)p);
	munmap((uint8_t *)a + len, (uintptr_t)p + len + SP_HUGE - (a + len));
	madvise((void *)a, len, MADV_HUGEPAGE);
	r->base = (uint8_t *)a;
	return 0;
}

static uint8_t *sp_page(const struct sp_region *r, uint64_t i)
{
	return r->base + i * SP_PAGE_SIZE;
}

static int sp_read_urandom(uint8_t *dst, size_t len)
{
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sp_error(-errno, "open /dev/urandom: %s", strerror(errno));
	while (len) {
		ssize_t n = read(fd, dst, len > (1u << 20) ? (1u << 20) : len);
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;
			close(fd);
			return sp_error(-e, "read /dev/urandom: %s", strerror(e));
		}
		dst += n;
		len -= (size_t)n;
	}
	close(fd);
	return 0;
}

static void sp_volatile_touch(uint8_t *page, uint64_t gen, uint64_t index)
{
	uint64_t *w = (uint64_t *)page;
	/* Changing a few words spread over the page changes its checksum, which is all ksmd
	 * looks at to call a page volatile, at a fraction of the cost of rewriting it. */
	for (size_t k = 0; k < SP_PAGE_WORDS; k += SP_PAGE_WORDS / 8)
		w[k] = sp_mix64(gen * 0x100000000ull + index + k) | 1;
}

static int sp_fill_all(struct sp_fill *f)
{
	const struct sp_fill_spec *s = &f->spec;
	struct sp_region *r = f->region;
	int rc;

	for (int k = 0; k < SP_KIND_COUNT; k++)
		if ((rc = sp_region_map(&r[k], s->pages[k])))
			return rc;

	/* Writing (not reading) every page makes the guest kernel allocate it; a read would map
	 * the guest's zero page and leave QEMU's RAM untouched. */
	for (uint64_t i = 0; i < r[SP_ZERO].pages; i++)
		memset(sp_page(&r[SP_ZERO], i), 0, SP_PAGE_SIZE);

	for (uint64_t i = 0; i < r[SP_SHARED].pages; i++) {
		if (i < s->shared_block)
			sp_page_fill(sp_page(&r[SP_SHARED], i), SP_STREAM_SHARED, s->shared_seed, i);
		else
			memcpy(sp_page(&r[SP_SHARED], i), sp_page(&r[SP_SHARED], i % s->shared_block), SP_PAGE_SIZE);
	}

	for (uint64_t i = 0; i < r[SP_RUNS].pages; i++)
		sp_page_fill(sp_page(&r[SP_RUNS], i), SP_STREAM_RUNS, s->runs_seed, i);

	for (uint64_t i = 0; i < r[SP_HOT].pages; i++) {
		if (i == 0)
			sp_page_fill(sp_page(&r[SP_HOT], 0), SP_STREAM_HOT, s->hot_seed, 0);
		else
			memcpy(sp_page(&r[SP_HOT], i), sp_page(&r[SP_HOT], 0), SP_PAGE_SIZE);
	}

	if (r[SP_UNIQUE].pages) {
		if (s->unique_src == SP_SRC_URANDOM) {
			if ((rc = sp_read_urandom(r[SP_UNIQUE].base, r[SP_UNIQUE].pages * SP_PAGE_SIZE)))
				return rc;
		} else {
			for (uint64_t i = 0; i < r[SP_UNIQUE].pages; i++)
				sp_page_fill(sp_page(&r[SP_UNIQUE], i), SP_STREAM_UNIQUE, f->name_seed, i);
		}
	}

	for (uint64_t i = 0; i < r[SP_VOLATILE].pages; i++) {
		sp_page_fill(sp_page(&r[SP_VOLATILE], i), SP_STREAM_VOLATILE, f->name_seed, i);
		sp_volatile_touch(sp_page(&r[SP_VOLATILE], i), 0, i);
	}
	return 0;
}

static int sp_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int sp_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;
	for (size_t i = 0; i < SP_PAGE_WORDS; i++)
		if (w[i])
			return 0;
	return 1;
}

/* Distinct non-zero contents among the region's pages, by 64-bit content hash; *nonzero gets
 * how many pages are not all zero. */
static int sp_count_distinct(const struct sp_region *r, uint64_t *distinct, uint64_t *nonzero)
{
	*distinct = *nonzero = 0;
	if (!r->pages)
		return 0;
	uint64_t *h = malloc(r->pages * sizeof(*h));
	if (!h)
		return sp_error(-ENOMEM, "out of memory hashing %llu pages", (unsigned long long)r->pages);
	uint64_t n = 0;
	for (uint64_t i = 0; i < r->pages; i++)
		if (!sp_is_zero(sp_page(r, i)))
			h[n++] = sp_page_hash(sp_page(r, i));
	qsort(h, n, sizeof(*h), sp_cmp_u64);
	for (uint64_t i = 0; i < n; i++)
		if (i == 0 || h[i] != h[i - 1])
			(*distinct)++;
	*nonzero = n;
	free(h);
	return 0;
}

/* Present bit and PFN of every page from /proc/self/pagemap. PFNs need CAP_SYS_ADMIN, which
 * the guest's init has; without it they read as 0 and only presence is counted. */
static int sp_pagemap(const struct sp_region *r, uint64_t *entries)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sp_error(-errno, "open /proc/self/pagemap: %s", strerror(errno));
	off_t off = (off_t)((uintptr_t)r->base / SP_PAGE_SIZE * 8);
	size_t len = r->pages * 8;
	ssize_t n = pread(fd, entries, len, off);
	int e = errno;
	close(fd);
	if (n != (ssize_t)len)
		return sp_error(n < 0 ? -e : -EIO, "read /proc/self/pagemap: %s", n < 0 ? strerror(e) : "short read");
	return 0;
}

#define SP_PM_PRESENT (1ull << 63)
#define SP_PM_PFN(e) ((e) & ((1ull << 55) - 1))

static int sp_verify(struct sp_fill *f)
{
	const struct sp_fill_spec *s = &f->spec;
	struct sp_region *r = f->region;
	struct sp_kind_result *res = f->result;
	uint8_t *ref = aligned_alloc(SP_PAGE_SIZE, SP_PAGE_SIZE);
	int rc = 0;

	if (!ref)
		return sp_error(-ENOMEM, "out of memory");

	for (uint64_t i = 0; i < r[SP_ZERO].pages; i++)
		res[SP_ZERO].pages += sp_is_zero(sp_page(&r[SP_ZERO], i));
	res[SP_ZERO].distinct = res[SP_ZERO].pages ? 1 : 0;

	/* Shared, runs and hot pages are compared with a freshly generated reference, so a wrong
	 * copy or a PRNG change shows up as a shortfall in "pages". */
	for (uint64_t i = 0; i < r[SP_SHARED].pages; i++) {
		sp_page_fill(ref, SP_STREAM_SHARED, s->shared_seed, i % s->shared_block);
		res[SP_SHARED].pages += memcmp(ref, sp_page(&r[SP_SHARED], i), SP_PAGE_SIZE) == 0;
	}
	for (uint64_t i = 0; i < r[SP_RUNS].pages; i++) {
		sp_page_fill(ref, SP_STREAM_RUNS, s->runs_seed, i);
		res[SP_RUNS].pages += memcmp(ref, sp_page(&r[SP_RUNS], i), SP_PAGE_SIZE) == 0;
	}
	if (r[SP_HOT].pages)
		sp_page_fill(ref, SP_STREAM_HOT, s->hot_seed, 0);
	for (uint64_t i = 0; i < r[SP_HOT].pages; i++)
		res[SP_HOT].pages += memcmp(ref, sp_page(&r[SP_HOT], i), SP_PAGE_SIZE) == 0;
	free(ref);

	uint64_t nonzero;
	if ((rc = sp_count_distinct(&r[SP_SHARED], &res[SP_SHARED].distinct, &nonzero)) ||
	    (rc = sp_count_distinct(&r[SP_RUNS], &res[SP_RUNS].distinct, &nonzero)) ||
	    (rc = sp_count_distinct(&r[SP_HOT], &res[SP_HOT].distinct, &nonzero)))
		return rc;
	/* Unique and volatile pages are right when each is non-zero and unlike every other. */
	for (int k = SP_UNIQUE; k <= SP_VOLATILE; k++) {
		if ((rc = sp_count_distinct(&r[k], &res[k].distinct, &nonzero)))
			return rc;
		res[k].pages = res[k].distinct == nonzero ? nonzero : res[k].distinct;
	}

	for (int k = 0; k < SP_KIND_COUNT; k++) {
		if (!r[k].pages)
			continue;
		uint64_t *pm = malloc(r[k].pages * 8);
		if (!pm)
			return sp_error(-ENOMEM, "out of memory");
		if ((rc = sp_pagemap(&r[k], pm))) {
			free(pm);
			return rc;
		}
		for (uint64_t i = 0; i < r[k].pages; i++)
			res[k].present += (pm[i] & SP_PM_PRESENT) != 0;
		if (k == SP_RUNS) {
			for (uint64_t run = 0; run < s->runs_count; run++) {
				int ok = 1;
				for (uint64_t j = 1; j < s->runs_len; j++) {
					uint64_t a = pm[run * s->runs_len + j - 1], b = pm[run * s->runs_len + j];
					ok &= SP_PM_PFN(a) != 0 && SP_PM_PFN(b) == SP_PM_PFN(a) + 1;
				}
				f->contiguous_runs += ok;
			}
		}
		free(pm);
	}
	return 0;
}

static int sp_summary(const struct sp_fill *f, char *out, size_t len)
{
	const struct sp_fill_spec *s = &f->spec;
	uint64_t total = 0;
	int n = snprintf(out, len, "{\"tag\":\"%s\",\"name\":\"%s\",\"pageSize\":%u,\"fillMs\":%ld,\"kinds\":{",
			 f->tag, f->name, SP_PAGE_SIZE, f->fill_ms);

	for (int k = 0; k < SP_KIND_COUNT; k++) {
		const struct sp_kind_result *r = &f->result[k];
		total += s->pages[k];
		n += snprintf(out + n, len - (size_t)n,
			      "%s\"%s\":{\"expected\":%llu,\"pages\":%llu,\"present\":%llu,\"distinct\":%llu",
			      k ? "," : "", sp_kind_name(k), (unsigned long long)s->pages[k],
			      (unsigned long long)r->pages, (unsigned long long)r->present,
			      (unsigned long long)r->distinct);
		switch (k) {
		case SP_SHARED:
			n += snprintf(out + n, len - (size_t)n, ",\"blockPages\":%llu,\"seed\":%llu",
				      (unsigned long long)s->shared_block, (unsigned long long)s->shared_seed);
			break;
		case SP_RUNS:
			n += snprintf(out + n, len - (size_t)n,
				      ",\"count\":%llu,\"length\":%llu,\"seed\":%llu,\"contiguousRuns\":%llu",
				      (unsigned long long)s->runs_count, (unsigned long long)s->runs_len,
				      (unsigned long long)s->runs_seed, (unsigned long long)f->contiguous_runs);
			break;
		case SP_HOT:
			n += snprintf(out + n, len - (size_t)n, ",\"seed\":%llu", (unsigned long long)s->hot_seed);
			break;
		case SP_UNIQUE:
			n += snprintf(out + n, len - (size_t)n, ",\"source\":\"%s\"",
				      s->unique_src == SP_SRC_URANDOM ? "urandom" : "name");
			break;
		case SP_VOLATILE:
			n += snprintf(out + n, len - (size_t)n, ",\"intervalMs\":%llu",
				      (unsigned long long)s->volatile_ms);
			break;
		}
		n += snprintf(out + n, len - (size_t)n, "}");
	}
	n += snprintf(out + n, len - (size_t)n, "},\"totalPages\":%llu}", (unsigned long long)total);
	return n < (int)len ? 0 : -ENOSPC;
}

static void *sp_volatile_thread(void *arg)
{
	const struct sp_fill *f = arg;
	const struct sp_region *r = &f->region[SP_VOLATILE];
	struct timespec ts = { (time_t)(f->spec.volatile_ms / 1000), (long)(f->spec.volatile_ms % 1000) * 1000000 };

	for (uint64_t gen = 1;; gen++) {
		for (uint64_t i = 0; i < r->pages; i++)
			sp_volatile_touch(sp_page(r, i), gen, i);
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static int sp_write_file(const char *dir, const char *tag, const char *ext, const char *text)
{
	char path[512], tmp[520];

	snprintf(path, sizeof(path), "%s/fill-%s.%s", dir, tag, ext);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *fp = fopen(tmp, "w");
	if (!fp)
		return sp_error(-errno, "write %s: %s", tmp, strerror(errno));
	fprintf(fp, "%s\n", text);
	if (fclose(fp) || rename(tmp, path))
		return sp_error(-errno, "write %s: %s", path, strerror(errno));
	return 0;
}

/* Read sp_fill= / sp_name= from the kernel command line. The values contain no spaces. */
static int sp_cmdline_value(const char *key, char *out, size_t len)
{
	char buf[4096];
	FILE *fp = fopen("/proc/cmdline", "r");
	if (!fp)
		return -errno;
	size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	size_t klen = strlen(key);
	for (char *tok = strtok(buf, " \n"); tok; tok = strtok(NULL, " \n"))
		if (strncmp(tok, key, klen) == 0 && tok[klen] == '=') {
			snprintf(out, len, "%s", tok + klen + 1);
			return 0;
		}
	return -ENOENT;
}

static void sp_usage(void)
{
	fprintf(stderr, "usage: sp-fill [--spec TEXT | --cmdline] [--name NAME] [--tag TAG] [--daemon] [--state-dir DIR]\n"
			"  TEXT: zero=64M,shared=64M/block=256/seed=1,runs=32x16/seed=1,hot=300p/seed=1,\n"
			"        unique=16M/src=urandom|name,volatile=4M/ms=100\n");
}

/* Fill, verify and report into the pipe (or stdout); 0 on success. */
static int sp_run(struct sp_fill *f, char *summary, size_t len)
{
	uint64_t want = 0, avail = 0;
	int rc;

	for (int k = 0; k < SP_KIND_COUNT; k++)
		want += f->spec.pages[k];
	/* 8 MiB of headroom per 256 MiB filled plus 16 MiB keeps the guest kernel out of OOM. */
	if (sp_mem_available(&avail) == 0 && want + want / 32 + 4096 > avail)
		return sp_error(-ENOMEM, "the fill needs %llu MiB but the guest has only %llu MiB available; "
				"give the guest more memory or shrink the fill",
				(unsigned long long)(want / 256), (unsigned long long)(avail / 256));
	long t0 = sp_now_ms();
	if ((rc = sp_fill_all(f)) || (rc = sp_verify(f)))
		return rc;
	f->fill_ms = sp_now_ms() - t0;
	if ((rc = sp_summary(f, summary, len)))
		return sp_error(rc, "summary too long");
	return 0;
}

int main(int argc, char **argv)
{
	static struct sp_fill f;
	static char spec_text[4096], name[128], summary[4096];
	const char *state_dir = "/run/samepage";
	int daemon_mode = 0, from_cmdline = 0, have_spec = 0;
	char err[512];

	f.tag = "boot";
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--daemon") == 0) {
			daemon_mode = 1;
		} else if (strcmp(a, "--cmdline") == 0) {
			from_cmdline = 1;
		} else if (v && strcmp(a, "--spec") == 0) {
			snprintf(spec_text, sizeof(spec_text), "%s", v), have_spec = 1, i++;
		} else if (v && strcmp(a, "--name") == 0) {
			snprintf(name, sizeof(name), "%s", v), i++;
		} else if (v && strcmp(a, "--tag") == 0) {
			f.tag = v, i++;
		} else if (v && strcmp(a, "--state-dir") == 0) {
			state_dir = v, i++;
		} else {
			sp_usage();
			return 2;
		}
	}
	for (const char *c = f.tag; *c; c++)
		if (!(*c == '-' || *c == '_' || (*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z'))) {
			printf("SAMEPAGE: ERROR fill: tag \"%s\" may only hold letters, digits, - and _\n", f.tag);
			return 2;
		}
	if (from_cmdline && !have_spec)
		have_spec = sp_cmdline_value("sp_fill", spec_text, sizeof(spec_text)) == 0;
	if (!name[0] && sp_cmdline_value("sp_name", name, sizeof(name)) != 0)
		gethostname(name, sizeof(name) - 1);
	f.name = name;
	f.name_seed = sp_str_hash(name);
	if (sp_fill_spec_parse(have_spec ? spec_text : "", &f.spec, err, sizeof(err))) {
		printf("SAMEPAGE: ERROR fill: %s\n", err);
		return 2;
	}
	mkdir(state_dir, 0755);
	fflush(stdout);

	int pfd[2] = { -1, -1 };
	if (daemon_mode) {
		if (pipe(pfd)) {
			printf("SAMEPAGE: ERROR fill: pipe: %s\n", strerror(errno));
			return 1;
		}
		pid_t pid = fork();
		if (pid < 0) {
			printf("SAMEPAGE: ERROR fill: fork: %s\n", strerror(errno));
			return 1;
		}
		if (pid > 0) {
			/* Parent: relay the child's one report line, then leave it holding the memory. */
			char line[4200];
			close(pfd[1]);
			FILE *in = fdopen(pfd[0], "r");
			if (!in || !fgets(line, sizeof(line), in)) {
				int st = 0;
				waitpid(pid, &st, 0);
				printf("SAMEPAGE: ERROR fill: the fill process died (status %d) before reporting\n", st);
				return 1;
			}
			fputs(line, stdout);
			return strncmp(line, "SAMEPAGE: FILL ", 15) == 0 ? 0 : 1;
		}
		close(pfd[0]);
		setsid();
	}

	int rc = sp_run(&f, summary, sizeof(summary));
	if (!rc) {
		char pid[32];
		snprintf(pid, sizeof(pid), "%d", (int)getpid());
		if (!(rc = sp_write_file(state_dir, f.tag, "json", summary)))
			rc = sp_write_file(state_dir, f.tag, "pid", pid);
	}
	FILE *out = daemon_mode ? fdopen(pfd[1], "w") : stdout;
	if (!out)
		return 1;
	if (rc)
		fprintf(out, "SAMEPAGE: ERROR fill: %s\n", sp_err);
	else
		fprintf(out, "SAMEPAGE: FILL %s\n", summary);
	fflush(out);
	if (rc)
		return 1;
	if (daemon_mode) {
		/* Let go of the caller's stdio: a shell waiting for EOF on our output must not wait
		 * for as long as we hold the memory. */
		fclose(out);
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 0), dup2(null, 1), dup2(null, 2);
			if (null > 2)
				close(null);
		}
	}
	if (f.region[SP_VOLATILE].pages) {
		pthread_t t;
		if (pthread_create(&t, NULL, sp_volatile_thread, &f)) {
			fprintf(stderr, "SAMEPAGE: ERROR fill: cannot start the volatile thread\n");
			return 1;
		}
	}
	/* Keep the memory until killed. */
	for (;;)
		pause();
}
