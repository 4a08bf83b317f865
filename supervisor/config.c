/* config.c - hatcheryd's INI configuration: parse, check, report.
 *
 * libinih splits lines into sections and key = value pairs; everything else
 * is ours. Lines reach inih through read_line(), which counts them (the
 * installed ini.h leaves INI_HANDLER_LINENO at 0, so the handler is not told
 * the line), strips leading blanks and handles [section] headers itself, for
 * reasons given there. Keys are looked up in config_keys.c's tables, one per
 * section kind; adding a key is adding a row there. This file reads the
 * sections and checks across keys (check()).
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
#include "config_keys.h"
#include "hatchery/cleanup.h"

/* --- parse state ---------------------------------------------------------- */

enum section_kind { SEC_NONE, SEC_SUPERVISOR, SEC_POOL };

/* Line numbers are kept beside the config, not in it: they are only for
 * messages (duplicates, cross-field checks). 0 means "not set". */
struct pool_meta {
	unsigned section_line;
	unsigned key_line[CFG_N_POOL_KEYS];
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
	unsigned supervisor_key_line[CFG_N_SUPERVISOR_KEYS];
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
	cfg_pool_defaults(p);
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
		table = cfg_supervisor_keys;
		n = CFG_N_SUPERVISOR_KEYS;
		lines = st->supervisor_key_line;
		base = &st->cfg;
		break;
	case SEC_POOL:
		table = cfg_pool_keys;
		n = CFG_N_POOL_KEYS;
		lines = st->pool_meta[st->cfg.n_pools - 1].key_line;
		base = cur_pool(st);
		break;
	default:
		fail_at(st, st->lineno, "%s: key before any [section]", key);
		return 0;
	}
	const char *sec = section_label(st, st->cfg.n_pools - 1, label,
					sizeof(label));

	const struct key_spec *k = cfg_find_key(table, n, key);
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
		cfg_find_key(cfg_pool_keys, CFG_N_POOL_KEYS, key);
	return k ? m->key_line[k - cfg_pool_keys] : 0;
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

/* kind = linux: kernel and initrd default to what the build made; the
 * keys of a Linux pool are refused on other kinds, but for boot_timeout_ms
 * on a restore pool (the deadline of a restored Linux guest's resume; a
 * kernel-less snapshot does not use it). */
static int check_linux(struct parse_state *st, size_t i)
{
	struct sup_pool_config *p = &st->cfg.pools[i];
	const struct pool_meta *m = &st->pool_meta[i];
	static const char *const linux_keys[] = { "kernel", "initrd", "cmdline",
						  "boot_timeout_ms", "disk", "disk_mode",
						  "overlay_dir", "disk_socket" };
	if (p->kind != SUP_POOL_LINUX) {
		for (size_t k = 0; k < HATCH_ARRAY_SIZE(linux_keys); k++)
			if (pool_key_line(m, linux_keys[k]) &&
			    !(p->kind == SUP_POOL_RESTORE &&
			      strcmp(linux_keys[k], "boot_timeout_ms") == 0))
				return fail_at(st, pool_key_line(m, linux_keys[k]),
					       "[pool \"%s\"] %s: only for kind = linux%s",
					       p->name, linux_keys[k],
					       strcmp(linux_keys[k], "boot_timeout_ms") == 0
						       ? " (and restore)" : "");
		return 0;
	}
	/* rw: the image itself, so one VM at a time. */
	if (p->disk_mode == SUP_DISK_RW && p->disk[0] && p->max != 1)
		return fail_at(st, pool_key_line(m, "disk_mode"),
			       "[pool \"%s\"] disk_mode = rw: one VM writes the image itself, so "
			       "the pool needs max = 1 (got %u); overlay gives each VM its own "
			       "writes", p->name, p->max);
	if (p->disk[0] && p->disk_socket[0])
		return fail_at(st, pool_key_line(m, "disk_socket"),
			       "[pool \"%s\"] disk_socket: one disk per VM, and disk = PATH is set "
			       "too (disk_socket connects to a backend already serving an image)",
			       p->name);
	if (!p->disk[0] && (pool_key_line(m, "disk_mode") || pool_key_line(m, "overlay_dir")))
		return fail_at(st, pool_key_line(m, pool_key_line(m, "disk_mode") ? "disk_mode"
										 : "overlay_dir"),
			       "[pool \"%s\"] %s: only with disk = PATH", p->name,
			       pool_key_line(m, "disk_mode") ? "disk_mode" : "overlay_dir");
	if (!p->kernel[0])
		snprintf(p->kernel, sizeof(p->kernel), "%s", HATCH_DEFAULT_KERNEL);
	if (!p->initrd[0])
		snprintf(p->initrd, sizeof(p->initrd), "%s", HATCH_DEFAULT_INITRD);
	if (!p->kernel[0] || !p->initrd[0])
		return fail_at(st, pool_key_line(m, "kind"),
			       "[pool \"%s\"] kind: linux needs kernel = PATH and initrd = "
			       "PATH (this build found no Debian kernel to default to: "
			       "see docs/guest-linux.md)", p->name);
	/* A kernel with its initramfs needs more than a kernel-less guest:
	 * the default is SUP_LINUX_DEFAULT_MEMORY_MIB unless the pool says. */
	if (!pool_key_line(m, "memory_mib"))
		p->memory_mib = SUP_LINUX_DEFAULT_MEMORY_MIB;
	/* Its vCPU threads are tasks in its cgroup too. */
	if (!pool_key_line(m, "pids_max") && p->pids_max < p->vcpus + 4)
		p->pids_max = p->vcpus + 4;
	if (p->pids_max < p->vcpus + 2)
		return fail_at(st, pool_key_line(m, "pids_max"),
			       "[pool \"%s\"] pids_max: a linux pool's child runs a thread per "
			       "vCPU: at least vcpus + 2 (%u), got \"%u\"", p->name,
			       p->vcpus + 2, p->pids_max);
	if (p->memory_mib < SUP_LINUX_MIN_MEMORY_MIB)
		return fail_at(st, pool_key_line(m, "memory_mib") ?
				   pool_key_line(m, "memory_mib") : m->section_line,
			       "[pool \"%s\"] memory_mib: a linux pool needs at least "
			       "%u, got \"%u\"", p->name, SUP_LINUX_MIN_MEMORY_MIB,
			       p->memory_mib);
	return 0;
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
		if (check_linux(st, i) < 0)
			return -1;
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
		if (p->max_idle_age_ms && p->max_idle_age_ms < 100)
			return fail_at(st, pool_key_line(&st->pool_meta[i], "max_idle_age_ms"),
				       "[pool \"%s\"] max_idle_age_ms: expected 0 (off) or "
				       "100..86400000, got \"%u\"", p->name, p->max_idle_age_ms);
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
		const struct key_spec *k = cfg_find_key(
			cfg_supervisor_keys, CFG_N_SUPERVISOR_KEYS, "jail_uid_base");
		unsigned line = st->supervisor_key_line[k - cfg_supervisor_keys];
		return fail_at(st, line ? line : st->supervisor_line,
			       "[supervisor] jail_uid_base: %u + %u jail uids (the "
			       "pools' max, twice for pools with a disk) goes past uid %lu",
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
		free(c->pools[i].kernel_img);
		free(c->pools[i].initrd_img);
		if (c->pools[i].snap_fd >= 0)
			close(c->pools[i].snap_fd);
	}
	free(c->pools);
	memset(c, 0, sizeof(*c));
}

void sup_config_release_assets(struct sup_config *c)
{
	for (size_t i = 0; c && i < c->n_pools; i++) {
		struct sup_pool_config *p = &c->pools[i];
		free(p->guest_elf);
		free(p->kernel_img);
		free(p->initrd_img);
		p->guest_elf = p->kernel_img = p->initrd_img = NULL;
		p->guest_elf_len = p->kernel_len = p->initrd_len = 0;
		if (p->snap_fd >= 0)
			close(p->snap_fd);
		p->snap_fd = -1;
	}
}

static bool same_bytes(const unsigned char *a, size_t alen, const unsigned char *b,
		       size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

bool sup_pool_config_same_build(const struct sup_pool_config *a,
				const struct sup_pool_config *b)
{
	return a->kind == b->kind && strcmp(a->guest, b->guest) == 0 &&
	       strcmp(a->snapshot, b->snapshot) == 0 &&
	       strcmp(a->kernel, b->kernel) == 0 && strcmp(a->initrd, b->initrd) == 0 &&
	       strcmp(a->cmdline, b->cmdline) == 0 && strcmp(a->disk, b->disk) == 0 &&
	       strcmp(a->disk_socket, b->disk_socket) == 0 &&
	       a->disk_mode == b->disk_mode && strcmp(a->overlay_dir, b->overlay_dir) == 0 &&
	       a->boot_timeout_ms == b->boot_timeout_ms &&
	       a->prerestore == b->prerestore && a->reuse == b->reuse &&
	       a->memory_mib == b->memory_mib && a->vcpus == b->vcpus &&
	       a->seccomp == b->seccomp && a->memory_max_mib == b->memory_max_mib &&
	       a->pids_max == b->pids_max && a->cpu_max_pct == b->cpu_max_pct &&
	       /* The same path may hold a rebuilt guest or kernel, or a new
	        * snapshot file (another inode, or rewritten: another header). */
	       same_bytes(a->guest_elf, a->guest_elf_len, b->guest_elf, b->guest_elf_len) &&
	       same_bytes(a->kernel_img, a->kernel_len, b->kernel_img, b->kernel_len) &&
	       same_bytes(a->initrd_img, a->initrd_len, b->initrd_img, b->initrd_len) &&
	       a->snap_dev == b->snap_dev && a->snap_ino == b->snap_ino &&
	       a->snap_size == b->snap_size && a->snap_mtime == b->snap_mtime &&
	       a->snap_header_crc == b->snap_header_crc;
}

unsigned sup_config_jail_slots(const struct sup_config *c)
{
	/* A child with a disk has a backend beside it, jailed as its own uid. */
	unsigned n = 0;
	for (size_t i = 0; i < c->n_pools; i++)
		n += c->pools[i].max * (c->pools[i].disk[0] ? 2u : 1u);
	return n;
}

int sup_pool_allows(const struct sup_pool_config *p, uid_t uid)
{
	for (size_t i = 0; i < p->n_allow_uids && i < SUP_MAX_ALLOW_UIDS; i++)
		if (p->allow_uids[i] == uid)
			return 1;
	return 0;
}
