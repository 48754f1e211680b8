// SPDX-License-Identifier: GPL-2.0
/*
 * sp_mode=selftests: upstream's KSM selftests (tools/testing/selftests/mm of
 * the same 6.12 tree, built static by test-kernel.sh into /selftests), run
 * once with the series' knobs off and, on a kernel that has them, once more
 * with lookahead=1 and exclusive_cache=1.  With them runs samepage's own
 * native/core/test/test_kernel_oracle.c (static, as samepage_kernel_oracle):
 * the engine's predictions against this 6.12 ksmd.
 *
 * Each program's TAP output is echoed as "SPT <pass>/<program> | <line>" and
 * every TAP result becomes a row:
 *
 *   SP RESULT ksft/<pass>/<program>[/<n>] PASS|FAIL|SKIP <description>
 *
 * A program that ends without reporting every planned result, is killed by
 * a signal or runs past SP_KSFT_TIMEOUT_S is a FAIL row of its own, and so
 * is a result number reported twice (two processes writing one test list,
 * as a forked child that returns into it does).
 */
#include "sp_common.h"

#define SP_KSFT_DIR "/selftests"
#define SP_KSFT_TIMEOUT_S 300	/* per program; ksm_tests gives up after 120 s */

/*
 * The invocations run_vmtests.sh uses for its "ksm" and "ksm_numa"
 * categories, plus the ksm_tests modes it leaves out (-D, -C, prctl merging
 * with -t 1).  -N needs two NUMA nodes: the boot has numa=fake=2.
 *
 * attempts > 1 only where the selftest itself races: ksm_tests -N -m 1
 * madvises its second page while ksmd already runs and then waits for just
 * two more full_scans; a pass already under way when the page became
 * mergeable is one of them, so the page may have been checksummed only once
 * (the gate needs two visits) when the count is checked.  Over four runs of
 * the three kernels it failed 6 attempts of 17: 5 of 9 on the options-off
 * kernel (once all 3 in a row), 1 of 8 on the series kernel.  At 55% an
 * attempt, 8 attempts make a FAIL from the race alone under one run in a
 * hundred.  A retry says so in its row; failing every attempt is a FAIL.
 */
struct sp_ksft_cmd {
	unsigned int attempts;
	const char *argv[8];
};

static const struct sp_ksft_cmd sp_ksft_cmds[] = {
	{ 1, { "ksm_tests", "-M", "-p", "10" } },
	{ 1, { "ksm_tests", "-M", "-p", "10", "-t", "1" } },
	{ 1, { "ksm_tests", "-U" } },
	{ 1, { "ksm_tests", "-Z", "-p", "10", "-z", "0" } },
	{ 1, { "ksm_tests", "-Z", "-p", "10", "-z", "1" } },
	{ 8, { "ksm_tests", "-N", "-m", "1" } },
	{ 1, { "ksm_tests", "-N", "-m", "0" } },
	{ 1, { "ksm_tests", "-P", "-s", "100" } },
	{ 1, { "ksm_tests", "-H", "-s", "100" } },
	{ 1, { "ksm_tests", "-D", "-s", "100" } },
	{ 1, { "ksm_tests", "-C", "-p", "10" } },
	{ 1, { "ksm_functional_tests" } },
	/* ours: the C engine's kernel-oracle test (native/core), TAP too */
	{ 1, { "samepage_kernel_oracle" } },
};

/* "ksm_tests_-M_-p_10": one token naming an invocation. */
static void sp_ksft_name(const char *const *argv, char *out, size_t len)
{
	size_t n = 0;
	int i;

	out[0] = '\0';
	for (i = 0; argv[i] && n < len; i++)
		n += (size_t)snprintf(out + n, len - n, "%s%s", i ? "_" : "", argv[i]);
}

struct sp_ksft_state {
	const char *pass, *prog;
	bool single;		/* one result per program: no /<n> in the row name */
	bool retry_on_fail;	/* an attempt that may be repeated: its FAIL is held */
	bool held_fail;		/* a held FAIL: the row was not printed */
	char retry_note[64];	/* " (attempt 2 of 3: ...)" on the row that counts */
	unsigned int planned, reported;
	unsigned char seen[256];	/* result numbers reported so far */
	char skip_all[256];	/* "1..0 # SKIP <reason>" */
	char last_msg[256];	/* the last "# ..." line: a SKIP's reason */
};

/* One line of TAP from the program: echo it, turn a result into a row. */
static void sp_ksft_line(struct sp_ksft_state *st, char *line)
{
	char name[160];
	unsigned int n;
	int off = 0;
	const char *status = NULL;
	char *desc, *skip;

	printf("SPT %s/%s | %s\n", st->pass, st->prog, line);
	if (line[0] == '#' && line[1] == ' ' && strncmp(line, "# Totals", 8) &&
	    strncmp(line, "# Planned", 9)) {
		snprintf(st->last_msg, sizeof(st->last_msg), "%s", line + 2);
		return;
	}
	if (sscanf(line, "1..%u%n", &n, &off) == 1) {
		st->planned = n;
		skip = strstr(line + off, "# SKIP");
		if (n == 0 && skip)
			snprintf(st->skip_all, sizeof(st->skip_all), "%s", skip + 7);
		return;
	}
	if (sscanf(line, "not ok %u %n", &n, &off) == 1 && off)
		status = "FAIL";
	else if (sscanf(line, "ok %u %n", &n, &off) == 1 && off)
		status = "PASS";
	if (!status)
		return;
	desc = line + off;
	if (!strncmp(desc, "# SKIP", 6)) {
		status = "SKIP";
		desc += desc[6] ? 7 : 6;
	} else if (!strncmp(desc, "# XFAIL", 7) || !strncmp(desc, "# error", 7)) {
		/* an expected failure or a test that could not run: not a pass */
		status = "FAIL";
	}
	st->reported++;
	if (n < sizeof(st->seen) && st->seen[n]++) {
		printf("SP RESULT ksft/%s/%s/%u-again FAIL result %u reported twice, now \"%s\": two processes wrote the test list\n",
		       st->pass, st->prog, n, n, desc);
		sp_failed++;
		return;
	}
	if (st->single)
		snprintf(name, sizeof(name), "ksft/%s/%s", st->pass, st->prog);
	else
		snprintf(name, sizeof(name), "ksft/%s/%s/%u", st->pass, st->prog, n);
	if (!strcmp(status, "FAIL") && st->retry_on_fail) {
		printf("SPT %s/%s | (this attempt's FAIL is held: the program runs again)\n",
		       st->pass, st->prog);
		st->held_fail = true;
		return;
	}
	if (!strcmp(status, "SKIP") && st->last_msg[0])
		printf("SP RESULT %s SKIP %s (%s)%s\n", name, desc, st->last_msg, st->retry_note);
	else
		printf("SP RESULT %s %s %s%s\n", name, status,
		       desc[0] ? desc : "(no description)", st->retry_note);
	if (!strcmp(status, "FAIL"))
		sp_failed++;
}

/*
 * Runs one invocation; returns false when its single result was a FAIL held
 * for another attempt (attempt < attempts), true when its rows were printed.
 */
static bool sp_ksft_run(const char *pass, const char *const *argv,
			unsigned int attempt, unsigned int attempts)
{
	struct sp_ksft_state st = { .pass = pass };
	char prog[128], buf[4096], row[192];
	size_t have = 0;
	int fds[2], status = 0, elapsed_ms = 0;
	bool timed_out = false;
	pid_t pid;

	sp_ksft_name(argv, prog, sizeof(prog));
	st.prog = prog;
	st.single = strcmp(argv[0], "ksm_tests") == 0;
	st.retry_on_fail = st.single && attempt < attempts;
	if (attempt > 1)
		snprintf(st.retry_note, sizeof(st.retry_note),
			 " (attempt %u of %u; see sp_selftests.c)", attempt, attempts);
	snprintf(row, sizeof(row), "ksft/%s/%s", pass, prog);
	if (pipe(fds))
		sp_die("pipe", errno);
	pid = fork();
	if (pid < 0)
		sp_die("fork", errno);
	if (pid == 0) {
		char path[160];

		dup2(fds[1], 1);
		dup2(fds[1], 2);
		close(fds[0]);
		close(fds[1]);
		/* ksm_functional_tests re-executes itself as ./ksm_functional_tests */
		if (chdir(SP_KSFT_DIR))
			_exit(126);
		snprintf(path, sizeof(path), SP_KSFT_DIR "/%s", argv[0]);
		execv(path, (char *const *)argv);
		printf("exec %s: %s\n", path, strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	for (;;) {
		ssize_t got = read(fds[0], buf + have, sizeof(buf) - 1 - have);
		char *nl;

		if (got > 0) {
			have += (size_t)got;
			buf[have] = '\0';
			while ((nl = strchr(buf, '\n'))) {
				*nl = '\0';
				sp_ksft_line(&st, buf);
				have -= (size_t)(nl + 1 - buf);
				memmove(buf, nl + 1, have + 1);
			}
			if (have == sizeof(buf) - 1) {	/* a line longer than buf */
				sp_ksft_line(&st, buf);
				have = 0;
			}
			continue;
		}
		if (got == 0)
			break;	/* every writer closed: the program ended */
		if (errno != EAGAIN && errno != EINTR)
			sp_die("read selftest output", errno);
		if (elapsed_ms >= SP_KSFT_TIMEOUT_S * 1000 && !timed_out) {
			timed_out = true;
			kill(pid, SIGKILL);
		}
		sp_sleep_ms(50);
		elapsed_ms += 50;
	}
	if (have) {
		buf[have] = '\0';
		sp_ksft_line(&st, buf);
	}
	close(fds[0]);
	if (waitpid(pid, &status, 0) < 0)
		sp_die("waitpid selftest", errno);

	if (st.held_fail && !timed_out && WIFEXITED(status))
		return false;
	if (timed_out) {
		sp_result(row, false, "killed after %d s", SP_KSFT_TIMEOUT_S);
	} else if (st.planned == 0 && st.skip_all[0]) {
		printf("SP RESULT %s SKIP %s\n", row, st.skip_all);
	} else if (WIFSIGNALED(status)) {
		sp_result(row, false, "killed by signal %d after %u of %u results",
			  WTERMSIG(status), st.reported, st.planned);
	} else if (!st.reported || st.reported < st.planned) {
		sp_result(row, false, "exit status %d after %u of %u planned results",
			  WEXITSTATUS(status), st.reported, st.planned);
	}
	fflush(stdout);
	return true;
}

static void sp_ksft_all(const char *pass)
{
	size_t i;
	unsigned int attempt;

	for (i = 0; i < sizeof(sp_ksft_cmds) / sizeof(sp_ksft_cmds[0]); i++) {
		const struct sp_ksft_cmd *cmd = &sp_ksft_cmds[i];

		for (attempt = 1; !sp_ksft_run(pass, cmd->argv, attempt, cmd->attempts); attempt++)
			;
	}
}

/*
 * The engine's own golden C tests (native/core/test/test_golden.c, static,
 * as samepage_golden), rows ksft/checks/samepage_golden/<n>: on QEMU's
 * default CPU, which has no AVX2, they show that the engine's hash picks a
 * loop the CPU runs and gives the fixed values there too.
 */
void sp_engine_golden(void)
{
	static const char *const argv[] = { "samepage_golden", NULL };

	sp_ksft_run("checks", argv, 1, 1);
}

/*
 * Rows are named ksft/<pass>/...: "off" on the options-off kernel, "knobs0"
 * and "knobs1" on the options-on kernel.
 */
void sp_selftests(bool series_kernel)
{
	if (!series_kernel) {
		sp_ksft_all("off");
		return;
	}
	sp_ksm_set("lookahead", 0);
	sp_ksm_set("exclusive_cache", 0);
	sp_ksft_all("knobs0");
	sp_ksm_set("lookahead", 1);
	sp_ksm_set("exclusive_cache", 1);
	sp_ksft_all("knobs1");
	sp_ksm_set("lookahead", 0);
	sp_ksm_set("exclusive_cache", 0);
}
