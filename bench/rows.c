/* rows.c - the rows file: what each phase measured, one figure per line.
 *
 * A line is `key=value` pairs separated by tabs, starting with name= and
 * unit=. Values never contain a tab or a newline (row_str replaces them),
 * so splitting needs no escaping; the split is at the first '=' of a pair.
 * Phases append and flush line by line, so a phase that dies half-way still
 * leaves whole lines behind.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

void row_begin(FILE *f, const char *name, const char *unit, const char *label)
{
	fprintf(f, "name=%s\tunit=%s", name, unit);
	if (label)
		row_str(f, "label", label);
}

void row_str(FILE *f, const char *key, const char *val)
{
	fprintf(f, "\t%s=", key);
	for (const char *p = val; *p; p++)
		fputc(*p == '\t' || *p == '\n' || *p == '\r' ? ' ' : *p, f);
}

void row_num(FILE *f, const char *key, double val)
{
	fprintf(f, "\t%s=%.10g", key, val);
}

void row_dist(FILE *f, struct samples *s, double scale)
{
	row_num(f, "n", (double)s->n);
	if (s->n == 0)
		return;
	row_num(f, "p50", (double)samples_pct(s, 50) / scale);
	row_num(f, "p90", (double)samples_pct(s, 90) / scale);
	row_num(f, "p99", (double)samples_pct(s, 99) / scale);
	row_num(f, "max", (double)samples_max(s) / scale);
	row_num(f, "min", (double)samples_pct(s, 0) / scale);
	row_num(f, "mean", samples_mean(s) / scale);
}

void row_end(FILE *f)
{
	fputc('\n', f);
	fflush(f);
}

void row_series_begin(FILE *f, const struct series_set *set, const struct series *s)
{
	char name[128], label[256];
	snprintf(name, sizeof(name), "%s%s%s", s->name, set->label ? "." : "",
		 set->label ? set->label : "");
	snprintf(label, sizeof(label), "%s%s%s", s->what, set->desc ? ", " : "",
		 set->desc ? set->desc : "");
	row_begin(f, name, set->unit, label);
	row_dist(f, s->s, set->scale);
}

void row_series(FILE *f, const struct series_set *set, const struct series *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		row_series_begin(f, set, &s[i]);
		row_end(f);
	}
}

/* ---- reading ---------------------------------------------------------------- */

static void row_clear(struct row *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->key[i]);
		free(r->val[i]);
	}
	r->n = 0;
}

static int row_put(struct row *r, const char *key, size_t klen, const char *val)
{
	if (r->n == ROW_MAX_KV)
		return -E2BIG;
	char *k = strndup(key, klen), *v = strdup(val);
	if (!k || !v) {
		free(k);
		free(v);
		return -ENOMEM;
	}
	r->key[r->n] = k;
	r->val[r->n] = v;
	r->n++;
	return 0;
}

static struct row *rows_grow(struct rows *rs)
{
	if (rs->n == rs->cap) {
		size_t cap = rs->cap ? rs->cap * 2 : 64;
		struct row *nr = realloc(rs->r, cap * sizeof(*nr));
		if (!nr)
			return NULL;
		rs->r = nr;
		rs->cap = cap;
	}
	struct row *r = &rs->r[rs->n++];
	memset(r, 0, sizeof(*r));
	return r;
}

int rows_load(const char *path, struct rows *rs, struct hatch_err *err)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		if (errno == ENOENT)
			return 0;
		return hatch_err_set(err, E(INTERNAL), errno, "open %s", path);
	}
	_cleanup_free_ char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	unsigned lineno = 0;
	while ((len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0)
			continue;
		struct row *r = rows_grow(rs);
		if (!r) {
			fclose(f);
			return hatch_err_set(err, E(INTERNAL), ENOMEM, "rows");
		}
		char *save = NULL;
		for (char *kv = strtok_r(line, "\t", &save); kv;
		     kv = strtok_r(NULL, "\t", &save)) {
			char *eq = strchr(kv, '=');
			if (!eq)
				continue;
			int e = row_put(r, kv, (size_t)(eq - kv), eq + 1);
			if (e < 0) {
				fclose(f);
				return hatch_err_set(err, E(INTERNAL), -e, "%s:%u", path,
						     lineno);
			}
		}
		if (!row_get(r, "name")) {
			row_clear(r); /* not a row of ours: drop it */
			rs->n--;
		}
	}
	fclose(f);
	return 0;
}

void rows_free(struct rows *rs)
{
	for (size_t i = 0; i < rs->n; i++)
		row_clear(&rs->r[i]);
	free(rs->r);
	*rs = (struct rows){ 0 };
}

const struct row *rows_find(const struct rows *rs, const char *name)
{
	/* Last one wins: a phase that was re-run appended a newer row. */
	for (size_t i = rs->n; i-- > 0;) {
		const char *n = row_get(&rs->r[i], "name");
		if (n && strcmp(n, name) == 0)
			return &rs->r[i];
	}
	return NULL;
}

struct row *rows_add(struct rows *rs, const char *name, const char *unit,
		     const char *label)
{
	struct row *r = rows_grow(rs);
	if (!r)
		return NULL;
	if (row_put(r, "name", 4, name) < 0 || row_put(r, "unit", 4, unit) < 0 ||
	    (label && row_put(r, "label", 5, label) < 0)) {
		row_clear(r);
		rs->n--;
		return NULL;
	}
	return r;
}

int row_set_str(struct row *r, const char *key, const char *v)
{
	for (size_t i = 0; i < r->n; i++) {
		if (strcmp(r->key[i], key) == 0) {
			char *nv = strdup(v);
			if (!nv)
				return -ENOMEM;
			free(r->val[i]);
			r->val[i] = nv;
			return 0;
		}
	}
	return row_put(r, key, strlen(key), v);
}

int row_set_num(struct row *r, const char *key, double v)
{
	char buf[64];
	snprintf(buf, sizeof(buf), "%.10g", v);
	return row_set_str(r, key, buf);
}

const char *row_get(const struct row *r, const char *key)
{
	if (!r)
		return NULL;
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->key[i], key) == 0)
			return r->val[i];
	return NULL;
}

bool is_number(const char *s)
{
	if (!s || !*s)
		return false;
	char *end;
	double v = strtod(s, &end);
	/* strtod also takes "inf", "nan" and hex, none of which is JSON. */
	return *end == '\0' && isfinite(v) && !strpbrk(s, "xXnNiI");
}

bool row_get_num(const struct row *r, const char *key, double *out)
{
	const char *s = row_get(r, key);
	if (!is_number(s))
		return false;
	*out = strtod(s, NULL);
	return true;
}
