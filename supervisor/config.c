/* config.c - hatcheryd's INI configuration: parse, check, report.
 *
 * libinih splits lines into sections and key = value pairs; everything else
 * is ours. Lines reach inih through read_line(), which counts them (the
 * installed ini.h leaves INI_HANDLER_LINENO at 0, so the handler is not told
 * the line), strips leading blanks and handles [section] headers itself, for
 * reasons given there. Keys are looked up in one table per
 * section kind; adding a key is adding a row.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"
#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"

#define CONFIG_ERR HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT

#define DEFAULT_SOCKET_PATH "/run/hatchery/hatchery.sock"
#define DEFAULT_SOCKET_MODE 0666

/* uid_t is 32 bits; (uid_t)-1 means "no change" to chown() and is no user. */
#define UID_VALID_MAX 4294967294UL

_Static_assert(sizeof(((struct sup_config *)0)->socket_path) ==
		       sizeof(((struct sockaddr_un *)0)->sun_path),
	       "socket_path must match sun_path");
_Static_assert(sizeof(uid_t) == 4, "UID_VALID_MAX assumes a 32-bit uid_t");

static const char *const kind_names[] = {
	[SUP_POOL_EMPTY] = "empty",
	[SUP_POOL_BOOTED] = "booted",
	[SUP_POOL_RESTORE] = "restore",
};
static const char *const seccomp_names[] = {
	[VMP_SECCOMP_KILL] = "kill",
	[VMP_SECCOMP_LOG] = "log",
};
static const char *const reuse_names[] = {
	[SUP_REUSE_NEVER] = "never",
	[SUP_REUSE_SNAPSHOT] = "snapshot",
};
static const char *const cgroup_names[] = {
	[SUP_CGROUP_REQUIRED] = "required",
	[SUP_CGROUP_OPTIONAL] = "optional",
};

#define DEFAULT_JAIL_UID_BASE 200000

/* --- value parsers ---------------------------------------------------------
 *
 * A parser reads `value` into the field at `base + k->offset` and returns 0,
 * or returns -1 having written what it expected (completing "expected ...")
 * into `exp`. It writes the field only on success.
 */
struct key_spec;
typedef int (*key_parser)(const struct key_spec *k, const char *value,
			  void *base, char *exp, size_t exp_len);

struct key_spec {
	const char *key;
	key_parser parse;
	size_t offset;     /* of the field in the section's struct */
	unsigned long min; /* meaning is the parser's: a range, a length */
	unsigned long max;
};

/* Offsets that fail to compile when the field's type does not match the
 * parser's (a key parsed as unsigned into a size_t would be a silent bug). */
#define UINT_FIELD(T, m) _Generic(((T *)0)->m, unsigned: offsetof(T, m))
#define STR_FIELD(T, m) _Generic(((T *)0)->m, char *: offsetof(T, m))
#define STR_FIELD_MAX(T, m) (sizeof(((T *)0)->m) - 1)
#define KIND_FIELD(T, m)                                                       \
	_Generic(((T *)0)->m, enum sup_pool_kind: offsetof(T, m))
#define BOOL_FIELD(T, m) _Generic(((T *)0)->m, bool: offsetof(T, m))
#define UIDS_FIELD(T, m) _Generic(((T *)0)->m, uid_t *: offsetof(T, m))
#define SECCOMP_FIELD(T, m)                                                    \
	_Generic(((T *)0)->m, enum vmp_seccomp_mode: offsetof(T, m))
#define REUSE_FIELD(T, m)                                                      \
	_Generic(((T *)0)->m, enum sup_reuse_mode: offsetof(T, m))
#define CGROUP_FIELD(T, m)                                                     \
	_Generic(((T *)0)->m, enum sup_cgroup_mode: offsetof(T, m))

static void *field_of(const struct key_spec *k, void *base)
{
	return (char *)base + k->offset;
}

/* Strict decimal: a digit first (so no sign, no blank, not empty), no
 * overflow. Sets *end past the digits. */
static int scan_decimal(const char *s, const char **end, unsigned long *out)
{
	if (!isdigit((unsigned char)*s))
		return -1;
	char *e;
	errno = 0;
	unsigned long v = strtoul(s, &e, 10);
	if (errno == ERANGE)
		return -1;
	*end = e;
	*out = v;
	return 0;
}

static int parse_uint(const struct key_spec *k, const char *value, void *base,
		      char *exp, size_t exp_len)
{
	const char *end;
	unsigned long v;
	if (scan_decimal(value, &end, &v) < 0 || *end != '\0' || v < k->min ||
	    v > k->max) {
		snprintf(exp, exp_len, "an integer in %lu..%lu", k->min, k->max);
		return -1;
	}
	*(unsigned *)field_of(k, base) = (unsigned)v;
	return 0;
}

static int parse_octal(const struct key_spec *k, const char *value, void *base,
		       char *exp, size_t exp_len)
{
	char *end;
	unsigned long v = 0;
	int ok = *value >= '0' && *value <= '7';
	if (ok) {
		errno = 0;
		v = strtoul(value, &end, 8);
		ok = errno != ERANGE && *end == '\0' && v >= k->min &&
		     v <= k->max;
	}
	if (!ok) {
		snprintf(exp, exp_len, "an octal mode in %#lo..%#lo", k->min,
			 k->max);
		return -1;
	}
	*(unsigned *)field_of(k, base) = (unsigned)v;
	return 0;
}

/* An absolute path of at most k->max bytes (the field holds k->max + 1). */
static int parse_abs_path(const struct key_spec *k, const char *value,
			  void *base, char *exp, size_t exp_len)
{
	size_t len = strlen(value);
	if (value[0] != '/' || len > k->max) {
		snprintf(exp, exp_len, "an absolute path of at most %lu bytes",
			 k->max);
		return -1;
	}
	memcpy(field_of(k, base), value, len + 1);
	return 0;
}

static int parse_pool_kind(const struct key_spec *k, const char *value,
			   void *base, char *exp, size_t exp_len)
{
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(kind_names); i++) {
		if (kind_names[i] && strcmp(value, kind_names[i]) == 0) {
			*(enum sup_pool_kind *)field_of(k, base) =
				(enum sup_pool_kind)i;
			return 0;
		}
	}
	size_t n = (size_t)snprintf(exp, exp_len, "one of");
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(kind_names) && n < exp_len; i++)
		n += (size_t)snprintf(exp + n, exp_len - n, "%s %s",
				      i ? "," : ":", kind_names[i]);
	return -1;
}

/* One word of a short table into an enum field (all our enums are int
 * sized; the _Generic field macros check the type). */
static int parse_word(const char *const *names, size_t n, const char *value,
		      int *field, char *exp, size_t exp_len)
{
	for (size_t i = 0; i < n; i++) {
		if (names[i] && strcmp(value, names[i]) == 0) {
			*field = (int)i;
			return 0;
		}
	}
	size_t len = (size_t)snprintf(exp, exp_len, "one of");
	for (size_t i = 0; i < n && len < exp_len; i++)
		len += (size_t)snprintf(exp + len, exp_len - len, "%s %s",
					i ? "," : ":", names[i]);
	return -1;
}

static int parse_seccomp_mode(const struct key_spec *k, const char *value,
			      void *base, char *exp, size_t exp_len)
{
	_Static_assert(sizeof(enum vmp_seccomp_mode) == sizeof(int), "enum size");
	return parse_word(seccomp_names, HATCH_ARRAY_SIZE(seccomp_names), value,
			  field_of(k, base), exp, exp_len);
}

static int parse_reuse_mode(const struct key_spec *k, const char *value,
			    void *base, char *exp, size_t exp_len)
{
	_Static_assert(sizeof(enum sup_reuse_mode) == sizeof(int), "enum size");
	return parse_word(reuse_names, HATCH_ARRAY_SIZE(reuse_names), value,
			  field_of(k, base), exp, exp_len);
}

static int parse_bool(const struct key_spec *k, const char *value, void *base,
		      char *exp, size_t exp_len)
{
	static const char *const names[] = { "false", "true" };
	int v;
	if (parse_word(names, HATCH_ARRAY_SIZE(names), value, &v, exp, exp_len) < 0)
		return -1;
	*(bool *)field_of(k, base) = v == 1;
	return 0;
}

static int parse_cgroup_mode(const struct key_spec *k, const char *value,
			     void *base, char *exp, size_t exp_len)
{
	_Static_assert(sizeof(enum sup_cgroup_mode) == sizeof(int), "enum size");
	return parse_word(cgroup_names, HATCH_ARRAY_SIZE(cgroup_names), value,
			  field_of(k, base), exp, exp_len);
}

/* "0, 1000" or "0 1000" or "0,1000": uids in k->min..k->max, separated by a
 * comma and/or blanks, no empty element. Fills the whole pool's list, so it
 * works on struct sup_pool_config rather than on one field. */
static int parse_uid_list(const struct key_spec *k, const char *value,
			  void *base, char *exp, size_t exp_len)
{
	struct sup_pool_config *p = base;
	uid_t uids[SUP_MAX_ALLOW_UIDS];
	size_t n = 0;
	const char *s = value;

	for (;;) {
		const char *end;
		unsigned long v;
		if (n == SUP_MAX_ALLOW_UIDS ||
		    scan_decimal(s, &end, &v) < 0 || v < k->min || v > k->max)
			goto bad;
		uids[n++] = (uid_t)v;
		s = end + strspn(end, " \t");
		int comma = *s == ',';
		if (comma)
			s += 1 + strspn(s + 1, " \t");
		if (*s == '\0') {
			if (comma)
				goto bad; /* "0," */
			break;
		}
		if (!comma && s == end)
			goto bad; /* "12a" */
	}
	memcpy(field_of(k, base), uids, n * sizeof(uids[0]));
	p->n_allow_uids = n;
	return 0;
bad:
	snprintf(exp, exp_len,
		 "1..%d uids in %lu..%lu separated by commas or blanks",
		 SUP_MAX_ALLOW_UIDS, k->min, k->max);
	return -1;
}

/* --- the key tables --------------------------------------------------------
 * Ranges are the ones documented in config.h. */
#define SUP(m) UINT_FIELD(struct sup_config, m)
#define POOL(m) UINT_FIELD(struct sup_pool_config, m)

static const struct key_spec supervisor_keys[] = {
	{ "socket", parse_abs_path, STR_FIELD(struct sup_config, socket_path),
	  1, STR_FIELD_MAX(struct sup_config, socket_path) },
	{ "socket_mode", parse_octal, SUP(socket_mode), 0, 0777 },
	/* 1..: uid 0 is root. The top is checked with the pools' max. */
	{ "jail_uid_base", parse_uint, SUP(jail_uid_base), 1, UID_VALID_MAX - 1 },
	{ "cgroup", parse_cgroup_mode, CGROUP_FIELD(struct sup_config, cgroup), 0, 0 },
	{ "cgroup_root", parse_abs_path, STR_FIELD(struct sup_config, cgroup_root),
	  1, STR_FIELD_MAX(struct sup_config, cgroup_root) },
};

static const struct key_spec pool_keys[] = {
	{ "kind", parse_pool_kind, KIND_FIELD(struct sup_pool_config, kind), 0, 0 },
	{ "guest", parse_abs_path, STR_FIELD(struct sup_pool_config, guest),
	  1, STR_FIELD_MAX(struct sup_pool_config, guest) },
	{ "snapshot", parse_abs_path, STR_FIELD(struct sup_pool_config, snapshot),
	  1, STR_FIELD_MAX(struct sup_pool_config, snapshot) },
	{ "prerestore", parse_bool, BOOL_FIELD(struct sup_pool_config, prerestore), 0, 0 },
	{ "reuse", parse_reuse_mode, REUSE_FIELD(struct sup_pool_config, reuse), 0, 0 },
	{ "min_idle", parse_uint, POOL(min_idle), 0, SUP_MAX_CHILDREN_PER_POOL },
	{ "max", parse_uint, POOL(max), 1, SUP_MAX_CHILDREN_PER_POOL },
	{ "max_spawning", parse_uint, POOL(max_spawning), 1, 256 },
	{ "refill_delay_us", parse_uint, POOL(refill_delay_us), 0, 1000000 },
	{ "memory_mib", parse_uint, POOL(memory_mib), 1, 65536 },
	{ "vcpus", parse_uint, POOL(vcpus), 1, 64 },
	{ "health_interval_ms", parse_uint, POOL(health_interval_ms), 10, 3600000 },
	{ "health_timeout_ms", parse_uint, POOL(health_timeout_ms), 1, 60000 },
	{ "allow_uids", parse_uid_list,
	  UIDS_FIELD(struct sup_pool_config, allow_uids), 0, UID_VALID_MAX },
	{ "seccomp", parse_seccomp_mode,
	  SECCOMP_FIELD(struct sup_pool_config, seccomp), 0, 0 },
	{ "memory_max_mib", parse_uint, POOL(memory_max_mib), 1, 1048576 },
	{ "pids_max", parse_uint, POOL(pids_max), 1, 4096 },
	{ "cpu_max_pct", parse_uint, POOL(cpu_max_pct), 0, 6400 },
};

#undef SUP
#undef POOL

static void pool_defaults(struct sup_pool_config *p)
{
	memset(p, 0, sizeof(*p));
	p->kind = SUP_POOL_EMPTY;
	p->snap_fd = -1;
	p->min_idle = 4;
	p->max = 64;
	p->max_spawning = 4;
	p->refill_delay_us = 2000;
	p->memory_mib = 64;
	p->vcpus = 1;
	p->health_interval_ms = 1000;
	p->health_timeout_ms = 200;
	p->allow_uids[0] = 0;
	p->n_allow_uids = 1;
	p->seccomp = VMP_SECCOMP_KILL;
	p->memory_max_mib = 0; /* memory_mib + 64 unless set: see check() */
	p->pids_max = 16;
	p->cpu_max_pct = 100;
}

/* --- parse state ---------------------------------------------------------- */

enum section_kind { SEC_NONE, SEC_SUPERVISOR, SEC_POOL };

/* Line numbers are kept beside the config, not in it: they are only for
 * messages (duplicates, cross-field checks). 0 means "not set". */
struct pool_meta {
	unsigned section_line;
	unsigned key_line[HATCH_ARRAY_SIZE(pool_keys)];
};

struct parse_state {
	const char *name; /* file name in messages */
	struct hatch_err *err;
	FILE *fp;         /* input: fp, or else text */
	const char *text;
	unsigned lineno;  /* of the line inih is working on */
	int read_errno;
	int failed;
	unsigned fail_line;

	enum section_kind cur;
	struct sup_config cfg; /* being built; cfg.pools is ours until the end */
	size_t cap_pools;
	unsigned supervisor_line;
	unsigned supervisor_key_line[HATCH_ARRAY_SIZE(supervisor_keys)];
	struct pool_meta pool_meta[SUP_MAX_POOLS];
};

/* Record the first error as "NAME:LINE: ..."; later ones are consequences.
 * Returns -1. */
__attribute__((format(printf, 3, 4))) static int
fail_at(struct parse_state *st, unsigned line, const char *fmt, ...)
{
	if (st->failed)
		return -1;
	char msg[HATCH_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	st->failed = 1;
	st->fail_line = line;
	return hatch_err_set(st->err, CONFIG_ERR, 0, "%s:%u: %s", st->name,
			     line, msg);
}

static struct sup_pool_config *cur_pool(struct parse_state *st)
{
	return &st->cfg.pools[st->cfg.n_pools - 1];
}

/* "supervisor" or `pool "NAME"`, as in messages. */
static const char *section_label(const struct parse_state *st, size_t pool,
				 char *buf, size_t len)
{
	if (st->cur == SEC_SUPERVISOR)
		return "supervisor";
	snprintf(buf, len, "pool \"%s\"", st->cfg.pools[pool].name);
	return buf;
}

static int valid_pool_name(const char *s, size_t len)
{
	if (len < 1 || len > SUP_POOL_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("_.-", s[i]))
			return 0;
	return 1;
}

static int begin_pool(struct parse_state *st, const char *section)
{
	/* pool "NAME": blanks between the word and the quote are tolerated. */
	const char *q = section + strlen("pool");
	q += strspn(q, " \t");
	const char *close = *q == '"' ? strchr(q + 1, '"') : NULL;
	if (!close || close[1] != '\0' ||
	    !valid_pool_name(q + 1, (size_t)(close - q - 1)))
		return fail_at(st, st->lineno,
			       "[%s]: expected [pool \"NAME\"], NAME being 1..%d "
			       "characters of A-Z a-z 0-9 _ . -",
			       section, SUP_POOL_NAME_MAX);
	size_t len = (size_t)(close - q - 1);

	for (size_t i = 0; i < st->cfg.n_pools; i++)
		if (strlen(st->cfg.pools[i].name) == len &&
		    memcmp(st->cfg.pools[i].name, q + 1, len) == 0)
			return fail_at(st, st->lineno,
				       "[%s]: duplicate pool \"%s\" (first on "
				       "line %u)",
				       section, st->cfg.pools[i].name,
				       st->pool_meta[i].section_line);
	if (st->cfg.n_pools == SUP_MAX_POOLS)
		return fail_at(st, st->lineno, "[%s]: too many pools (at most %d)",
			       section, SUP_MAX_POOLS);

	if (st->cfg.n_pools == st->cap_pools) {
		size_t cap = st->cap_pools ? st->cap_pools * 2 : 4;
		if (cap > SUP_MAX_POOLS)
			cap = SUP_MAX_POOLS;
		struct sup_pool_config *pools =
			realloc(st->cfg.pools, cap * sizeof(*pools));
		if (!pools)
			return fail_at(st, st->lineno, "[%s]: out of memory",
				       section);
		st->cfg.pools = pools;
		st->cap_pools = cap;
	}
	struct sup_pool_config *p = &st->cfg.pools[st->cfg.n_pools];
	pool_defaults(p);
	memcpy(p->name, q + 1, len);
	p->name[len] = '\0';
	memset(&st->pool_meta[st->cfg.n_pools], 0, sizeof(st->pool_meta[0]));
	st->pool_meta[st->cfg.n_pools].section_line = st->lineno;
	st->cfg.n_pools++;
	st->cur = SEC_POOL;
	return 0;
}

/* `line` starts with '['. */
static int begin_section(struct parse_state *st, const char *line)
{
	const char *close = strchr(line, ']');
	if (!close)
		return fail_at(st, st->lineno,
			       "expected \"]\" to end the section header");
	const char *rest = close + 1 + strspn(close + 1, " \t\r\n");
	if (*rest != '\0' && *rest != ';' && *rest != '#')
		return fail_at(st, st->lineno,
			       "unexpected text after the section header: "
			       "\"%.*s\"",
			       (int)strcspn(rest, "\r\n"), rest);

	char section[256];
	size_t len = (size_t)(close - line - 1);
	if (len >= sizeof(section))
		return fail_at(st, st->lineno, "unknown section [%.*s]",
			       (int)len, line + 1);
	memcpy(section, line + 1, len);
	section[len] = '\0';

	if (strcmp(section, "supervisor") == 0) {
		if (st->supervisor_line)
			return fail_at(st, st->lineno,
				       "[supervisor]: section appears twice "
				       "(first on line %u)",
				       st->supervisor_line);
		st->supervisor_line = st->lineno;
		st->cur = SEC_SUPERVISOR;
		return 0;
	}
	if (strncmp(section, "pool", 4) == 0 && strchr(" \t\"", section[4]))
		return begin_pool(st, section); /* also "pool" alone: [4] is NUL */
	return fail_at(st, st->lineno, "unknown section [%s]", section);
}

/* --- the line reader ------------------------------------------------------ */

static char *next_raw_line(struct parse_state *st, char *buf, int size,
			   int *complete)
{
	if (st->fp) {
		errno = 0;
		if (!fgets(buf, size, st->fp)) {
			if (ferror(st->fp))
				st->read_errno = errno ? errno : EIO;
			return NULL;
		}
		size_t len = strlen(buf);
		int c = len && buf[len - 1] == '\n' ? '\n' : getc(st->fp);
		if (c != '\n' && c != EOF)
			ungetc(c, st->fp);
		*complete = c == '\n' || c == EOF;
		return buf;
	}
	if (*st->text == '\0')
		return NULL;
	size_t n = 0;
	while (n < (size_t)size - 1 && st->text[n] != '\0' &&
	       (n == 0 || st->text[n - 1] != '\n'))
		n++;
	memcpy(buf, st->text, n);
	buf[n] = '\0';
	st->text += n;
	/* A line that just fills buf: its newline need not fit (as fgets). */
	if (n && buf[n - 1] != '\n' && *st->text == '\n')
		st->text++;
	*complete = st->text[-1] == '\n' || *st->text == '\0';
	return buf;
}

/* inih's line source. Besides counting lines it:
 *  - rejects over-long lines: inih would cut them and parse the remainder as
 *    a line of its own;
 *  - strips leading blanks: inih takes an indented line after a key as a
 *    continuation of that key's value (configparser style), so an indented
 *    "max = 8" would silently become part of the previous value. Our values
 *    never span lines;
 *  - handles [section] headers: inih only calls the handler for keys, so an
 *    empty [pool "x"] or a misspelt empty section would pass unseen, and it
 *    cuts section names at 50 bytes, shorter than a pool name may be.
 * It returns NULL (end of input) once an error is recorded. */
static char *read_line(char *buf, int size, void *stream)
{
	struct parse_state *st = stream;
	int complete = 1;
	if (st->failed || size < 3 || !next_raw_line(st, buf, size, &complete))
		return NULL;
	st->lineno++;
	if (!complete) {
		fail_at(st, st->lineno, "line too long (at most %d characters)",
			size - 1);
		return NULL;
	}
	char *s = buf;
	if (st->lineno == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3; /* UTF-8 BOM */
	s += strspn(s, " \t");
	memmove(buf, s, strlen(s) + 1);
	if (buf[0] == '[' && begin_section(st, buf) < 0)
		return NULL;
	return buf;
}

static const struct key_spec *find_key(const struct key_spec *table, size_t n,
				       const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(table[i].key, key) == 0)
			return &table[i];
	return NULL;
}

/* inih's handler: returns nonzero on success. `section` is not used: inih
 * truncates it, and read_line() has already told us where we are. */
static int on_key(void *user, const char *section, const char *key,
		  const char *value)
{
	struct parse_state *st = user;
	const struct key_spec *table;
	size_t n;
	unsigned *lines;
	void *base;
	char label[SUP_POOL_NAME_MAX + 16];
	(void)section;

	if (st->failed)
		return 0;
	switch (st->cur) {
	case SEC_SUPERVISOR:
		table = supervisor_keys;
		n = HATCH_ARRAY_SIZE(supervisor_keys);
		lines = st->supervisor_key_line;
		base = &st->cfg;
		break;
	case SEC_POOL:
		table = pool_keys;
		n = HATCH_ARRAY_SIZE(pool_keys);
		lines = st->pool_meta[st->cfg.n_pools - 1].key_line;
		base = cur_pool(st);
		break;
	default:
		fail_at(st, st->lineno, "%s: key before any [section]", key);
		return 0;
	}
	const char *sec = section_label(st, st->cfg.n_pools - 1, label,
					sizeof(label));

	const struct key_spec *k = find_key(table, n, key);
	if (!k) {
		fail_at(st, st->lineno, "[%s] unknown key \"%s\"", sec, key);
		return 0;
	}
	size_t i = (size_t)(k - table);
	if (lines[i]) {
		fail_at(st, st->lineno, "[%s] %s: set twice (first on line %u)",
			sec, key, lines[i]);
		return 0;
	}
	char exp[160];
	if (k->parse(k, value, base, exp, sizeof(exp)) < 0) {
		fail_at(st, st->lineno, "[%s] %s: expected %s, got \"%s\"", sec,
			key, exp, value);
		return 0;
	}
	lines[i] = st->lineno;
	return 1;
}

/* --- checks across keys --------------------------------------------------- */

static unsigned pool_key_line(const struct pool_meta *m, const char *key)
{
	const struct key_spec *k =
		find_key(pool_keys, HATCH_ARRAY_SIZE(pool_keys), key);
	return k ? m->key_line[k - pool_keys] : 0;
}

/* `a` must be `a_rel` `b` (and so `b` must be `b_rel` `a`), and is not.
 * Blame the key the user wrote: `a` if set, else `b`. */
static int fail_pair(struct parse_state *st, size_t pool, const char *a,
		     unsigned a_val, const char *a_rel, const char *b,
		     unsigned b_val, const char *b_rel)
{
	const struct pool_meta *m = &st->pool_meta[pool];
	const char *name = st->cfg.pools[pool].name;
	unsigned a_line = pool_key_line(m, a), b_line = pool_key_line(m, b);
	char where[48];

	if (!a_line && b_line) {
		return fail_at(st, b_line,
			       "[pool \"%s\"] %s: expected %s %s (%u, the "
			       "default), got \"%u\"",
			       name, b, b_rel, a, a_val, b_val);
	}
	if (b_line)
		snprintf(where, sizeof(where), "set on line %u", b_line);
	else
		snprintf(where, sizeof(where), "the default");
	return fail_at(st, a_line ? a_line : m->section_line,
		       "[pool \"%s\"] %s: expected %s %s (%u, %s), got \"%u\"",
		       name, a, a_rel, b, b_val, where, a_val);
}

static int check(struct parse_state *st)
{
	if (st->cfg.n_pools == 0)
		return hatch_err_set(st->err, CONFIG_ERR, 0,
				     "%s: no [pool \"NAME\"] section; at least "
				     "one pool is required",
				     st->name);
	for (size_t i = 0; i < st->cfg.n_pools; i++) {
		const struct sup_pool_config *p = &st->cfg.pools[i];
		if (p->min_idle > p->max)
			return fail_pair(st, i, "min_idle", p->min_idle,
					 "at most", "max", p->max, "at least");
		if (p->health_timeout_ms >= p->health_interval_ms)
			return fail_pair(st, i, "health_timeout_ms",
					 p->health_timeout_ms, "less than",
					 "health_interval_ms",
					 p->health_interval_ms, "more than");
		if (p->kind == SUP_POOL_BOOTED && !p->guest[0])
			return fail_at(st, pool_key_line(&st->pool_meta[i], "kind"),
				       "[pool \"%s\"] kind: booted needs guest = PATH "
				       "(a guest ELF built with the SDK, docs/guest.md)",
				       p->name);
		if (p->kind != SUP_POOL_BOOTED && p->guest[0])
			return fail_at(st, pool_key_line(&st->pool_meta[i], "guest"),
				       "[pool \"%s\"] guest: only for kind = booted "
				       "(an empty pool's client Loads its own)", p->name);
		if (p->kind == SUP_POOL_RESTORE && !p->snapshot[0])
			return fail_at(st, pool_key_line(&st->pool_meta[i], "kind"),
				       "[pool \"%s\"] kind: restore needs snapshot = PATH "
				       "(a file written by Save, docs/snapshot.md)", p->name);
		if (p->kind != SUP_POOL_RESTORE && p->snapshot[0])
			return fail_at(st, pool_key_line(&st->pool_meta[i], "snapshot"),
				       "[pool \"%s\"] snapshot: only for kind = restore",
				       p->name);
		if (p->kind != SUP_POOL_RESTORE && pool_key_line(&st->pool_meta[i], "prerestore"))
			return fail_at(st, pool_key_line(&st->pool_meta[i], "prerestore"),
				       "[pool \"%s\"] prerestore: only for kind = restore",
				       p->name);
		/* Only a restore pool has a snapshot to reset to; `never` is
		 * what every other pool does anyway, so it is accepted. */
		if (p->kind != SUP_POOL_RESTORE && p->reuse == SUP_REUSE_SNAPSHOT)
			return fail_at(st, pool_key_line(&st->pool_meta[i], "reuse"),
				       "[pool \"%s\"] reuse: snapshot is only for kind = restore "
				       "(kind = %s exits after each lease)",
				       p->name, sup_pool_kind_name(p->kind));
		if (p->kind == SUP_POOL_BOOTED && p->memory_mib < SUP_GUEST_MIN_MEMORY_MIB)
			return fail_at(st, pool_key_line(&st->pool_meta[i], "memory_mib") ?
					   pool_key_line(&st->pool_meta[i], "memory_mib") :
					   st->pool_meta[i].section_line,
				       "[pool \"%s\"] memory_mib: a booted pool needs at "
				       "least %u, got \"%u\"", p->name,
				       SUP_GUEST_MIN_MEMORY_MIB, p->memory_mib);
		/* The cgroup must hold the guest RAM plus vmproc itself. */
		if (!pool_key_line(&st->pool_meta[i], "memory_max_mib"))
			st->cfg.pools[i].memory_max_mib = p->memory_mib + 64;
		else if (p->memory_max_mib <= p->memory_mib)
			return fail_pair(st, i, "memory_max_mib", p->memory_max_mib,
					 "more than", "memory_mib", p->memory_mib,
					 "less than");
	}
	unsigned long top = (unsigned long)st->cfg.jail_uid_base +
			    sup_config_jail_slots(&st->cfg) - 1;
	if (top > UID_VALID_MAX) {
		const struct key_spec *k = find_key(
			supervisor_keys, HATCH_ARRAY_SIZE(supervisor_keys), "jail_uid_base");
		unsigned line = st->supervisor_key_line[k - supervisor_keys];
		return fail_at(st, line ? line : st->supervisor_line,
			       "[supervisor] jail_uid_base: %u + %u jail uids (the "
			       "pools' max) goes past uid %lu",
			       st->cfg.jail_uid_base, sup_config_jail_slots(&st->cfg),
			       UID_VALID_MAX);
	}
	return 0;
}

/* --- entry points --------------------------------------------------------- */

static int parse(struct parse_state *st, struct sup_config *out)
{
	snprintf(st->cfg.socket_path, sizeof(st->cfg.socket_path), "%s",
		 DEFAULT_SOCKET_PATH);
	st->cfg.socket_mode = DEFAULT_SOCKET_MODE;
	st->cfg.jail_uid_base = DEFAULT_JAIL_UID_BASE;
	st->cfg.cgroup = SUP_CGROUP_REQUIRED;

	int ret = ini_parse_stream(read_line, st, on_key, st);
	int rc = -1;
	if (st->read_errno) {
		hatch_err_set(st->err, CONFIG_ERR, st->read_errno,
			      "%s: read error", st->name);
	} else if (ret > 0 && (!st->failed || (unsigned)ret < st->fail_line)) {
		/* inih's own complaint, about a line it could not split, is
		 * the first error: it came before ours (if any). */
		st->failed = 0;
		fail_at(st, (unsigned)ret,
			"expected [section], key = value, or a ; comment");
	} else if (st->failed) {
		/* already reported */
	} else if (ret < 0) {
		hatch_err_set(st->err, CONFIG_ERR, 0, "%s: parser failed (%d)",
			      st->name, ret);
	} else {
		rc = check(st);
	}

	if (rc < 0) {
		free(st->cfg.pools);
		memset(out, 0, sizeof(*out));
		return -1;
	}
	*out = st->cfg;
	return 0;
}

int sup_config_parse_string(const char *text, const char *name,
			    struct sup_config *out, struct hatch_err *err)
{
	/* Big (the per-pool line numbers) and short-lived: heap, not stack. */
	_cleanup_free_ struct parse_state *st = calloc(1, sizeof(*st));
	if (!st) {
		memset(out, 0, sizeof(*out));
		return hatch_err_set(err, CONFIG_ERR, ENOMEM, "%s",
				     name ? name : "<string>");
	}
	st->name = name ? name : "<string>";
	st->err = err;
	st->text = text;
	return parse(st, out);
}

static void fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

int sup_config_load(const char *path, struct sup_config *out,
		    struct hatch_err *err)
{
	memset(out, 0, sizeof(*out));
	__attribute__((cleanup(fclosep))) FILE *f = fopen(path, "re");
	if (!f)
		return hatch_err_set(err, CONFIG_ERR, errno, "open %s", path);
	_cleanup_free_ struct parse_state *st = calloc(1, sizeof(*st));
	if (!st)
		return hatch_err_set(err, CONFIG_ERR, ENOMEM, "%s", path);
	st->name = path;
	st->err = err;
	st->fp = f;
	return parse(st, out);
}

void sup_config_free(struct sup_config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_pools; i++) {
		free(c->pools[i].guest_elf);
		if (c->pools[i].snap_fd >= 0)
			close(c->pools[i].snap_fd);
	}
	free(c->pools);
	memset(c, 0, sizeof(*c));
}

const char *sup_pool_kind_name(enum sup_pool_kind k)
{
	if ((size_t)k < HATCH_ARRAY_SIZE(kind_names) && kind_names[k])
		return kind_names[k];
	return "unknown";
}

const char *sup_seccomp_mode_name(enum vmp_seccomp_mode m)
{
	if ((size_t)m < HATCH_ARRAY_SIZE(seccomp_names))
		return seccomp_names[m];
	return "unknown";
}

const char *sup_reuse_mode_name(enum sup_reuse_mode m)
{
	if ((size_t)m < HATCH_ARRAY_SIZE(reuse_names))
		return reuse_names[m];
	return "unknown";
}

const char *sup_cgroup_mode_name(enum sup_cgroup_mode m)
{
	if ((size_t)m < HATCH_ARRAY_SIZE(cgroup_names))
		return cgroup_names[m];
	return "unknown";
}

unsigned sup_config_jail_slots(const struct sup_config *c)
{
	unsigned n = 0;
	for (size_t i = 0; i < c->n_pools; i++)
		n += c->pools[i].max;
	return n;
}

int sup_pool_allows(const struct sup_pool_config *p, uid_t uid)
{
	for (size_t i = 0; i < p->n_allow_uids && i < SUP_MAX_ALLOW_UIDS; i++)
		if (p->allow_uids[i] == uid)
			return 1;
	return 0;
}
