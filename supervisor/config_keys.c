/* config_keys.c - the configuration's keys: one table per section kind
 * (a key is a row: its name, its parser, its field and its range), the
 * parsers of single values, the pools' defaults, and the names of the
 * enum values. config.c reads the file and checks across keys.
 */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "config_keys.h"
#include "hatchery/cleanup.h"

_Static_assert(sizeof(((struct sup_config *)0)->socket_path) ==
		       sizeof(((struct sockaddr_un *)0)->sun_path),
	       "socket_path must match sun_path");
_Static_assert(sizeof(uid_t) == 4, "UID_VALID_MAX assumes a 32-bit uid_t");

static const char *const kind_names[] = {
	[SUP_POOL_EMPTY] = "empty",
	[SUP_POOL_BOOTED] = "booted",
	[SUP_POOL_RESTORE] = "restore",
	[SUP_POOL_LINUX] = "linux",
};
static const char *const seccomp_names[] = {
	[VMP_SECCOMP_KILL] = "kill",
	[VMP_SECCOMP_LOG] = "log",
};
static const char *const disk_mode_names[] = {
	[SUP_DISK_OVERLAY] = "overlay",
	[SUP_DISK_RO] = "ro",
	[SUP_DISK_RW] = "rw",
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

/* --- value parsers (struct key_spec, config_keys.h) ----------------------- */
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
#define DISK_MODE_FIELD(T, m)                                                  \
	_Generic(((T *)0)->m, enum sup_disk_mode: offsetof(T, m))
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

/* Printable ASCII (blanks allowed), k->min..k->max bytes: words for a
 * kernel's command line, which must not carry control characters. */
static int parse_string(const struct key_spec *k, const char *value,
			void *base, char *exp, size_t exp_len)
{
	size_t len = strlen(value);
	bool ok = len >= k->min && len <= k->max;
	for (size_t i = 0; ok && i < len; i++)
		ok = value[i] >= 0x20 && value[i] < 0x7f;
	if (!ok) {
		snprintf(exp, exp_len, "%lu..%lu printable ASCII characters",
			 k->min, k->max);
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

static int parse_disk_mode(const struct key_spec *k, const char *value,
			   void *base, char *exp, size_t exp_len)
{
	_Static_assert(sizeof(enum sup_disk_mode) == sizeof(int), "enum size");
	return parse_word(disk_mode_names, HATCH_ARRAY_SIZE(disk_mode_names), value,
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

static const struct key_spec supervisor_rows[] = {
	{ "socket", parse_abs_path, STR_FIELD(struct sup_config, socket_path),
	  1, STR_FIELD_MAX(struct sup_config, socket_path) },
	{ "socket_mode", parse_octal, SUP(socket_mode), 0, 0777 },
	/* 1..: uid 0 is root. The top is checked with the pools' max. */
	{ "jail_uid_base", parse_uint, SUP(jail_uid_base), 1, UID_VALID_MAX - 1 },
	{ "cgroup", parse_cgroup_mode, CGROUP_FIELD(struct sup_config, cgroup), 0, 0 },
	{ "cgroup_root", parse_abs_path, STR_FIELD(struct sup_config, cgroup_root),
	  1, STR_FIELD_MAX(struct sup_config, cgroup_root) },
};

static const struct key_spec pool_rows[] = {
	{ "kind", parse_pool_kind, KIND_FIELD(struct sup_pool_config, kind), 0, 0 },
	{ "guest", parse_abs_path, STR_FIELD(struct sup_pool_config, guest),
	  1, STR_FIELD_MAX(struct sup_pool_config, guest) },
	{ "snapshot", parse_abs_path, STR_FIELD(struct sup_pool_config, snapshot),
	  1, STR_FIELD_MAX(struct sup_pool_config, snapshot) },
	{ "kernel", parse_abs_path, STR_FIELD(struct sup_pool_config, kernel),
	  1, STR_FIELD_MAX(struct sup_pool_config, kernel) },
	{ "initrd", parse_abs_path, STR_FIELD(struct sup_pool_config, initrd),
	  1, STR_FIELD_MAX(struct sup_pool_config, initrd) },
	{ "cmdline", parse_string, STR_FIELD(struct sup_pool_config, cmdline),
	  1, STR_FIELD_MAX(struct sup_pool_config, cmdline) },
	{ "boot_timeout_ms", parse_uint, POOL(boot_timeout_ms), 100, 600000 },
	{ "disk", parse_abs_path, STR_FIELD(struct sup_pool_config, disk),
	  1, STR_FIELD_MAX(struct sup_pool_config, disk) },
	{ "disk_mode", parse_disk_mode, DISK_MODE_FIELD(struct sup_pool_config, disk_mode), 0, 0 },
	{ "disk_socket", parse_abs_path, STR_FIELD(struct sup_pool_config, disk_socket),
	  1, STR_FIELD_MAX(struct sup_pool_config, disk_socket) },
	{ "overlay_dir", parse_abs_path, STR_FIELD(struct sup_pool_config, overlay_dir),
	  1, STR_FIELD_MAX(struct sup_pool_config, overlay_dir) },
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
	/* 1..99 is refused in check(): a refresh every few ms is a fork loop. */
	{ "max_idle_age_ms", parse_uint, POOL(max_idle_age_ms), 0, 86400000 },
};

#undef SUP
#undef POOL

_Static_assert(HATCH_ARRAY_SIZE(supervisor_rows) == CFG_N_SUPERVISOR_KEYS,
	       "CFG_N_SUPERVISOR_KEYS must count the [supervisor] keys");
_Static_assert(HATCH_ARRAY_SIZE(pool_rows) == CFG_N_POOL_KEYS,
	       "CFG_N_POOL_KEYS must count the [pool] keys");
const struct key_spec *const cfg_supervisor_keys = supervisor_rows;
const struct key_spec *const cfg_pool_keys = pool_rows;

const struct key_spec *cfg_find_key(const struct key_spec *table, size_t n,
				    const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(table[i].key, key) == 0)
			return &table[i];
	return NULL;
}

void cfg_pool_defaults(struct sup_pool_config *p)
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
	p->boot_timeout_ms = 60000;
	p->disk_mode = SUP_DISK_OVERLAY;
	snprintf(p->overlay_dir, sizeof(p->overlay_dir), "%s", "/var/tmp");
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

const char *sup_disk_mode_name(enum sup_disk_mode m)
{
	if ((size_t)m < HATCH_ARRAY_SIZE(disk_mode_names))
		return disk_mode_names[m];
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
