#include "fillspec.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const sp_kind_names[SP_KIND_COUNT] = {
	"zero", "shared", "runs", "hot", "unique", "volatile",
};

const char *sp_kind_name(enum sp_kind k)
{
	return (unsigned)k < SP_KIND_COUNT ? sp_kind_names[k] : "?";
}

/* 1 TiB of pages: far beyond any guest, small enough that MiB * 256 cannot overflow. */
#define SP_MAX_PAGES (1ull << 28)

static int sp_parse_u64(const char *s, uint64_t *out, const char **end)
{
	char *e;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &e, 10);
	if (errno || v > SP_MAX_PAGES)
		return -EINVAL;
	*out = v;
	*end = e;
	return 0;
}

/* N, Np, NM, NG -> pages */
static int sp_parse_amount(const char *s, uint64_t *pages)
{
	const char *e;
	uint64_t v;

	if (sp_parse_u64(s, &v, &e))
		return -EINVAL;
	if (*e == '\0' || (e[0] == 'p' && e[1] == '\0'))
		*pages = v;
	else if ((e[0] == 'M' || e[0] == 'm') && e[1] == '\0')
		*pages = v * 256;
	else if ((e[0] == 'G' || e[0] == 'g') && e[1] == '\0')
		*pages = v * 256 * 1024;
	else
		return -EINVAL;
	return *pages <= SP_MAX_PAGES ? 0 : -EINVAL;
}

static int sp_fail(char *err, size_t errlen, const char *item, const char *what)
{
	snprintf(err, errlen, "bad fill item \"%s\": %s", item, what);
	return -EINVAL;
}

static int sp_parse_option(struct sp_fill_spec *spec, enum sp_kind kind, const char *item,
			   char *opt, char *err, size_t errlen)
{
	char *eq = strchr(opt, '=');
	const char *e;
	uint64_t v = 0;

	if (!eq)
		return sp_fail(err, errlen, item, "options are KEY=VALUE after a '/'");
	*eq = '\0';
	const char *key = opt, *val = eq + 1;

	if (kind == SP_UNIQUE && strcmp(key, "src") == 0) {
		if (strcmp(val, "urandom") == 0)
			spec->unique_src = SP_SRC_URANDOM;
		else if (strcmp(val, "name") == 0)
			spec->unique_src = SP_SRC_NAME;
		else
			return sp_fail(err, errlen, item, "src must be urandom or name");
		return 0;
	}
	if (sp_parse_u64(val, &v, &e) || *e)
		return sp_fail(err, errlen, item, "option values are whole numbers");
	if (strcmp(key, "seed") == 0 && kind == SP_SHARED)
		spec->shared_seed = v;
	else if (strcmp(key, "seed") == 0 && kind == SP_RUNS)
		spec->runs_seed = v;
	else if (strcmp(key, "seed") == 0 && kind == SP_HOT)
		spec->hot_seed = v;
	else if (strcmp(key, "block") == 0 && kind == SP_SHARED)
		spec->shared_block = v;
	else if (strcmp(key, "ms") == 0 && kind == SP_VOLATILE)
		spec->volatile_ms = v;
	else
		return sp_fail(err, errlen, item,
			       "unknown option; shared takes block= and seed=, runs and hot take seed=, "
			       "unique takes src=, volatile takes ms=");
	return 0;
}

static int sp_parse_item(struct sp_fill_spec *spec, char *item, char *err, size_t errlen)
{
	char whole[256];
	char *save = NULL;

	snprintf(whole, sizeof(whole), "%s", item);
	char *head = strtok_r(item, "/", &save);
	char *eq = head ? strchr(head, '=') : NULL;
	if (!eq)
		return sp_fail(err, errlen, whole, "write KIND=AMOUNT, e.g. zero=64M");
	*eq = '\0';

	int kind = -1;
	for (int k = 0; k < SP_KIND_COUNT; k++)
		if (strcmp(head, sp_kind_names[k]) == 0)
			kind = k;
	if (kind < 0)
		return sp_fail(err, errlen, whole,
			       "unknown kind; use zero, shared, runs, hot, unique or volatile");
	if (spec->present[kind])
		return sp_fail(err, errlen, whole, "kind given twice; merge the two amounts");
	spec->present[kind] = 1;

	const char *amount = eq + 1;
	if (kind == SP_RUNS) {
		const char *e, *e2;
		if (sp_parse_u64(amount, &spec->runs_count, &e) || *e != 'x' ||
		    sp_parse_u64(e + 1, &spec->runs_len, &e2) || *e2 || spec->runs_len == 0)
			return sp_fail(err, errlen, whole, "runs take COUNTxLENGTH in pages, e.g. runs=32x16");
		spec->pages[kind] = spec->runs_count * spec->runs_len;
		if (spec->pages[kind] > SP_MAX_PAGES)
			return sp_fail(err, errlen, whole, "too many pages");
	} else if (sp_parse_amount(amount, &spec->pages[kind])) {
		return sp_fail(err, errlen, whole, "amount is N or Np (pages), NM (MiB) or NG (GiB)");
	}

	for (char *opt = strtok_r(NULL, "/", &save); opt; opt = strtok_r(NULL, "/", &save)) {
		int rc = sp_parse_option(spec, kind, whole, opt, err, errlen);
		if (rc)
			return rc;
	}
	if (kind == SP_SHARED && spec->pages[kind] > 0 &&
	    (spec->shared_block == 0 || spec->shared_block > spec->pages[kind]))
		return sp_fail(err, errlen, whole, "block must be 1..AMOUNT pages");
	if (kind == SP_VOLATILE && spec->volatile_ms == 0)
		return sp_fail(err, errlen, whole, "ms must be at least 1");
	return 0;
}

int sp_fill_spec_parse(const char *text, struct sp_fill_spec *spec, char *err, size_t errlen)
{
	memset(spec, 0, sizeof(*spec));
	/* Defaults: a 1 MiB shared block as in the lab's measured recipe, seeds 1, urandom for
	 * unique pages, volatile pages rewritten ten times a second. */
	spec->shared_block = 256;
	spec->shared_seed = 1;
	spec->runs_seed = 1;
	spec->hot_seed = 1;
	spec->unique_src = SP_SRC_URANDOM;
	spec->volatile_ms = 100;

	size_t n = strlen(text);
	char *copy = malloc(n + 1);
	if (!copy) {
		snprintf(err, errlen, "out of memory parsing the fill spec");
		return -ENOMEM;
	}
	memcpy(copy, text, n + 1);

	int rc = 0;
	char *save = NULL;
	for (char *item = strtok_r(copy, ",", &save); item && !rc; item = strtok_r(NULL, ",", &save))
		rc = sp_parse_item(spec, item, err, errlen);
	free(copy);
	if (!rc && spec->present[SP_SHARED] && spec->pages[SP_SHARED] % spec->shared_block)
		rc = sp_fail(err, errlen, "shared",
			     "amount must be a whole number of blocks so every block page repeats equally");
	return rc;
}
