/* test_config.c - hatcheryd's INI configuration: values, defaults, and an
 * error for every way a line can be wrong, naming the line and the key. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define INVALID_ARGUMENT 1 /* hatchery.v1.ErrorCode */

/* Criterion runs each test in its own process: globals start zeroed. */
static struct sup_config cfg;
static struct hatch_err err;

static void teardown(void)
{
	sup_config_free(&cfg);
}

TestSuite(config, .fini = teardown);

static void parses(const char *text)
{
	int r = sup_config_parse_string(text, "t.conf", &cfg, &err);
	cr_assert_eq(r, 0, "parse failed: %s", err.msg);
}

/* Parse `text` as "t.conf"; assert that it fails with INVALID_ARGUMENT, that
 * the config is left empty, and that the message contains every string of
 * the NULL-terminated list. */
static void fails_with(const char *text, ...)
{
	cfg.n_pools = 99; /* must be reset on failure */
	int r = sup_config_parse_string(text, "t.conf", &cfg, &err);
	cr_assert_eq(r, -1, "parse of:\n%s\nsucceeded", text);
	cr_assert_eq(err.code, INVALID_ARGUMENT);
	cr_assert_null(cfg.pools);
	cr_assert_eq(cfg.n_pools, 0);
	va_list ap;
	va_start(ap, text);
	for (const char *s; (s = va_arg(ap, const char *));)
		cr_expect(strstr(err.msg, s), "message \"%s\" lacks \"%s\"",
			  err.msg, s);
	va_end(ap);
}

#define POOL "[pool \"default\"]\n"

/* --- values --------------------------------------------------------------- */

static const char example[] =
	"[supervisor]\n"
	"socket = /run/hatchery/hatchery.sock\n"
	"socket_mode = 0666\n"
	"[pool \"default\"]\n"
	"kind = empty          ; inline comments with ; must work\n"
	"min_idle = 4\n"
	"max = 64\n"
	"max_spawning = 4\n"
	"memory_mib = 64\n"
	"vcpus = 1\n"
	"health_interval_ms = 1000\n"
	"health_timeout_ms = 200\n"
	"allow_uids = 0, 1000\n";

Test(config, example_parses)
{
	parses(example);
	cr_assert_str_eq(cfg.socket_path, "/run/hatchery/hatchery.sock");
	cr_assert_eq(cfg.socket_mode, 0666);
	cr_assert_eq(cfg.n_pools, 1);
	const struct sup_pool_config *p = &cfg.pools[0];
	cr_assert_str_eq(p->name, "default");
	cr_assert_eq(p->kind, SUP_POOL_EMPTY);
	cr_assert_eq(p->min_idle, 4);
	cr_assert_eq(p->max, 64);
	cr_assert_eq(p->max_spawning, 4);
	cr_assert_eq(p->memory_mib, 64);
	cr_assert_eq(p->vcpus, 1);
	cr_assert_eq(p->health_interval_ms, 1000);
	cr_assert_eq(p->health_timeout_ms, 200);
	cr_assert_eq(p->n_allow_uids, 2);
	cr_assert_eq(p->allow_uids[0], 0);
	cr_assert_eq(p->allow_uids[1], 1000);
}

/* The example's values are mostly the defaults; these are not, so a key
 * that is parsed but not stored shows up here. */
Test(config, every_key_is_stored)
{
	parses("[supervisor]\n"
	       "socket = /tmp/h.sock\n"
	       "socket_mode = 600\n"
	       "[pool \"a\"]\n"
	       "min_idle = 0\n"
	       "max = 4096\n"
	       "max_spawning = 256\n"
	       "memory_mib = 65536\n"
	       "vcpus = 64\n"
	       "health_interval_ms = 3600000\n"
	       "health_timeout_ms = 60000\n"
	       "allow_uids = 4294967294\n"
	       "[pool \"b\"]\n"
	       "min_idle = 1\n"
	       "max = 1\n"
	       "max_spawning = 1\n"
	       "memory_mib = 1\n"
	       "vcpus = 2\n"
	       "health_interval_ms = 10\n"
	       "health_timeout_ms = 1\n");
	cr_assert_str_eq(cfg.socket_path, "/tmp/h.sock");
	cr_assert_eq(cfg.socket_mode, 0600);
	cr_assert_eq(cfg.n_pools, 2);
	const struct sup_pool_config *a = &cfg.pools[0], *b = &cfg.pools[1];
	cr_assert_str_eq(a->name, "a");
	cr_assert_eq(a->min_idle, 0);
	cr_assert_eq(a->max, 4096);
	cr_assert_eq(a->max_spawning, 256);
	cr_assert_eq(a->memory_mib, 65536);
	cr_assert_eq(a->vcpus, 64);
	cr_assert_eq(a->health_interval_ms, 3600000);
	cr_assert_eq(a->health_timeout_ms, 60000);
	cr_assert_eq(a->n_allow_uids, 1);
	cr_assert_eq(a->allow_uids[0], 4294967294u);
	cr_assert_str_eq(b->name, "b");
	cr_assert_eq(b->min_idle, 1);
	cr_assert_eq(b->max, 1);
	cr_assert_eq(b->max_spawning, 1);
	cr_assert_eq(b->memory_mib, 1);
	cr_assert_eq(b->vcpus, 2);
	cr_assert_eq(b->health_interval_ms, 10);
	cr_assert_eq(b->health_timeout_ms, 1);
}

Test(config, defaults_for_an_empty_pool_section)
{
	parses("[pool \"p\"]\n");
	cr_assert_str_eq(cfg.socket_path, "/run/hatchery/hatchery.sock");
	cr_assert_eq(cfg.socket_mode, 0666);
	cr_assert_eq(cfg.n_pools, 1);
	const struct sup_pool_config *p = &cfg.pools[0];
	cr_assert_str_eq(p->name, "p");
	cr_assert_eq(p->kind, SUP_POOL_EMPTY);
	cr_assert_eq(p->min_idle, 4);
	cr_assert_eq(p->max, 64);
	cr_assert_eq(p->max_spawning, 4);
	cr_assert_eq(p->memory_mib, 64);
	cr_assert_eq(p->vcpus, 1);
	cr_assert_eq(p->health_interval_ms, 1000);
	cr_assert_eq(p->health_timeout_ms, 200);
	cr_assert_eq(p->n_allow_uids, 1);
	cr_assert_eq(p->allow_uids[0], 0);
}

Test(config, pools_keep_file_order_and_defaults_are_per_pool)
{
	parses("[pool \"z\"]\nvcpus = 8\n[pool \"a\"]\n[pool \"m.1_x-y\"]\n");
	cr_assert_eq(cfg.n_pools, 3);
	cr_assert_str_eq(cfg.pools[0].name, "z");
	cr_assert_str_eq(cfg.pools[1].name, "a");
	cr_assert_str_eq(cfg.pools[2].name, "m.1_x-y");
	cr_assert_eq(cfg.pools[0].vcpus, 8);
	cr_assert_eq(cfg.pools[1].vcpus, 1);
}

Test(config, comments_blanks_indentation_and_crlf)
{
	parses("\xEF\xBB\xBF; leading comment\r\n"
	       "# hash comment\r\n"
	       "\r\n"
	       "  [pool \"x\"]   ; the pool\r\n"
	       "\tmin_idle = 2\r\n"
	       "    max = 8\r\n"
	       "max_spawning=3\r\n"
	       "memory_mib : 16\r\n");
	cr_assert_eq(cfg.n_pools, 1);
	cr_assert_eq(cfg.pools[0].min_idle, 2);
	cr_assert_eq(cfg.pools[0].max, 8);
	cr_assert_eq(cfg.pools[0].max_spawning, 3);
	cr_assert_eq(cfg.pools[0].memory_mib, 16);
}

Test(config, longest_pool_name_and_socket_path)
{
	char name[SUP_POOL_NAME_MAX + 1], path[108], text[512];
	memset(name, 'n', SUP_POOL_NAME_MAX);
	name[SUP_POOL_NAME_MAX] = '\0';
	path[0] = '/';
	memset(path + 1, 'p', 106);
	path[107] = '\0';
	snprintf(text, sizeof(text),
		 "[supervisor]\nsocket = %s\n[pool \"%s\"]\n", path, name);
	parses(text);
	cr_assert_str_eq(cfg.socket_path, path);
	cr_assert_str_eq(cfg.pools[0].name, name);
}

Test(config, allow_uids_separators)
{
	static const char *const lists[] = { "0 1000", "0,1000", "0 ,  1000",
					     "0,\t1000", "0\t1000" };
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		char text[128];
		snprintf(text, sizeof(text), POOL "allow_uids = %s\n", lists[i]);
		parses(text);
		cr_assert_eq(cfg.pools[0].n_allow_uids, 2, "%s", lists[i]);
		cr_assert_eq(cfg.pools[0].allow_uids[0], 0, "%s", lists[i]);
		cr_assert_eq(cfg.pools[0].allow_uids[1], 1000, "%s", lists[i]);
		sup_config_free(&cfg);
	}
}

static void uid_list(char *buf, size_t len, int n)
{
	size_t off = (size_t)snprintf(buf, len, POOL "allow_uids = ");
	for (int i = 0; i < n; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%d",
					i ? "," : "", 1000 + i);
	snprintf(buf + off, len - off, "\n");
}

Test(config, allow_uids_at_the_limit)
{
	char text[512];
	uid_list(text, sizeof(text), SUP_MAX_ALLOW_UIDS);
	parses(text);
	cr_assert_eq(cfg.pools[0].n_allow_uids, SUP_MAX_ALLOW_UIDS);
	cr_assert_eq(cfg.pools[0].allow_uids[SUP_MAX_ALLOW_UIDS - 1],
		     1000 + SUP_MAX_ALLOW_UIDS - 1);
}

Test(config, sup_pool_allows)
{
	parses(POOL "allow_uids = 0, 1000\n");
	cr_assert_eq(sup_pool_allows(&cfg.pools[0], 0), 1);
	cr_assert_eq(sup_pool_allows(&cfg.pools[0], 1000), 1);
	cr_assert_eq(sup_pool_allows(&cfg.pools[0], 1001), 0);
	cr_assert_eq(sup_pool_allows(&cfg.pools[0], (uid_t)-1), 0);
}

Test(config, sup_pool_allows_default_is_root_only)
{
	parses(POOL);
	cr_assert_eq(sup_pool_allows(&cfg.pools[0], 0), 1);
	cr_assert_eq(sup_pool_allows(&cfg.pools[0], 1000), 0);
}

Test(config, kind_name)
{
	cr_assert_str_eq(sup_pool_kind_name(SUP_POOL_EMPTY), "empty");
	cr_assert_str_eq(sup_pool_kind_name((enum sup_pool_kind)77), "unknown");
}

Test(config, free_zeroes_and_is_safe_twice)
{
	parses(POOL);
	cr_assert_not_null(cfg.pools);
	sup_config_free(&cfg);
	cr_assert_null(cfg.pools);
	cr_assert_eq(cfg.n_pools, 0);
	cr_assert_eq(cfg.socket_path[0], '\0');
	sup_config_free(&cfg);
	struct sup_config zero = { 0 };
	sup_config_free(&zero);
	sup_config_free(NULL);
}

/* --- errors: integers ----------------------------------------------------- */

Test(config, error_message_format)
{
	fails_with(POOL "min_idle = four\n", NULL);
	cr_assert_str_eq(err.msg,
			 "t.conf:2: [pool \"default\"] min_idle: expected an "
			 "integer in 0..4096, got \"four\"");
}

Test(config, error_not_an_integer)
{
	fails_with(POOL "vcpus = 1\nmax = lots\n", "t.conf:3:", "max",
		   "got \"lots\"", NULL);
}

Test(config, error_negative)
{
	fails_with(POOL "max = -1\n", "t.conf:2:", "max", "1..4096",
		   "got \"-1\"", NULL);
}

Test(config, error_plus_sign_hex_and_trailing_junk)
{
	fails_with(POOL "vcpus = +2\n", "t.conf:2:", "vcpus", NULL);
	fails_with(POOL "memory_mib = 0x40\n", "t.conf:2:", "memory_mib", NULL);
	fails_with(POOL "max = 8k\n", "t.conf:2:", "max", NULL);
	fails_with(POOL "max = 8 8\n", "t.conf:2:", "max", NULL);
	fails_with(POOL "max = 8 # eight\n", "t.conf:2:", "max", NULL);
}

Test(config, error_empty_value)
{
	fails_with(POOL "\nvcpus =\n", "t.conf:3:", "vcpus", "got \"\"", NULL);
}

Test(config, error_overflow)
{
	fails_with(POOL "memory_mib = 99999999999999999999\n", "t.conf:2:",
		   "memory_mib", "99999999999999999999", NULL);
	/* would wrap to 0 in an unsigned */
	fails_with(POOL "max = 4294967296\n", "t.conf:2:", "max", NULL);
}

Test(config, error_out_of_range)
{
	fails_with(POOL "min_idle = 4097\n", "t.conf:2:", "min_idle",
		   "0..4096", NULL);
	fails_with(POOL "max = 0\n", "t.conf:2:", "max", "1..4096", NULL);
	fails_with(POOL "max = 4097\n", "t.conf:2:", "max", "1..4096", NULL);
	fails_with(POOL "max_spawning = 0\n", "t.conf:2:", "max_spawning",
		   "1..256", NULL);
	fails_with(POOL "max_spawning = 257\n", "t.conf:2:", "max_spawning",
		   "1..256", NULL);
	fails_with(POOL "memory_mib = 0\n", "t.conf:2:", "memory_mib",
		   "1..65536", NULL);
	fails_with(POOL "memory_mib = 65537\n", "t.conf:2:", "memory_mib",
		   "1..65536", NULL);
	fails_with(POOL "vcpus = 0\n", "t.conf:2:", "vcpus", "1..64", NULL);
	fails_with(POOL "vcpus = 65\n", "t.conf:2:", "vcpus", "1..64", NULL);
	fails_with(POOL "health_interval_ms = 9\n", "t.conf:2:",
		   "health_interval_ms", "10..3600000", NULL);
	fails_with(POOL "health_interval_ms = 3600001\n", "t.conf:2:",
		   "health_interval_ms", "10..3600000", NULL);
	fails_with(POOL "health_timeout_ms = 0\n", "t.conf:2:",
		   "health_timeout_ms", "1..60000", NULL);
	fails_with(POOL "health_timeout_ms = 60001\n", "t.conf:2:",
		   "health_timeout_ms", "1..60000", NULL);
}

Test(config, error_bad_kind)
{
	fails_with(POOL "kind = full\n", "t.conf:2:", "kind", "one of: empty",
		   "got \"full\"", NULL);
}

/* --- errors: keys and sections -------------------------------------------- */

Test(config, error_unknown_key)
{
	fails_with(POOL "min_idle = 1\nmx = 4\n", "t.conf:3:",
		   "[pool \"default\"] unknown key \"mx\"", NULL);
	fails_with("[supervisor]\nsockett = /x\n" POOL, "t.conf:2:",
		   "[supervisor] unknown key \"sockett\"", NULL);
	/* a pool key is not a supervisor key */
	fails_with("[supervisor]\nvcpus = 1\n" POOL, "t.conf:2:",
		   "unknown key \"vcpus\"", NULL);
}

Test(config, error_duplicate_key)
{
	fails_with(POOL "max = 4\nvcpus = 1\nmax = 5\n", "t.conf:4:", "max",
		   "line 2", NULL);
}

Test(config, error_key_before_any_section)
{
	fails_with("max = 4\n" POOL, "t.conf:1:", "max", NULL);
}

Test(config, error_unknown_section)
{
	fails_with(POOL "max = 4\n[pools \"x\"]\nmax = 4\n", "t.conf:3:",
		   "unknown section [pools \"x\"]", NULL);
	/* found even when it has no keys to trip over */
	fails_with(POOL "[superviser]\n", "t.conf:2:",
		   "unknown section [superviser]", NULL);
	fails_with(POOL "[]\n", "t.conf:2:", "unknown section []", NULL);
}

Test(config, error_section_syntax)
{
	fails_with("[pool \"a\"\n", "t.conf:1:", "]", NULL);
	fails_with("[pool \"a\"] max = 4\n", "t.conf:1:", "max = 4", NULL);
}

Test(config, error_duplicate_supervisor_section)
{
	fails_with("[supervisor]\n" POOL "[supervisor]\n", "t.conf:3:",
		   "[supervisor]", "line 1", NULL);
}

Test(config, error_line_without_equals)
{
	fails_with(POOL "vcpus = 1\nmin_idle 4\nmax = 4\n", "t.conf:3:", NULL);
	/* inih's complaint comes first even though a later line is bad too */
	fails_with(POOL "min_idle 4\nmax = x\n", "t.conf:2:", NULL);
}

Test(config, error_line_too_long)
{
	char text[1024];
	char value[400];
	memset(value, '1', sizeof(value) - 1);
	value[sizeof(value) - 1] = '\0';
	snprintf(text, sizeof(text), POOL "vcpus = 1\nmax = %s\nmin_idle = 1\n",
		 value);
	fails_with(text, "t.conf:3:", "too long", NULL);
}

Test(config, error_bad_pool_name)
{
	fails_with("[pool \"bad name\"]\n", "t.conf:1:", "pool \"bad name\"",
		   "NAME", NULL);
	fails_with("[supervisor]\n[pool \"a/b\"]\n", "t.conf:2:", "a/b", NULL);
	fails_with("[pool \"\"]\n", "t.conf:1:", "NAME", NULL);
	fails_with("[pool]\n", "t.conf:1:", "NAME", NULL);
	fails_with("[pool default]\n", "t.conf:1:", "NAME", NULL);
	fails_with("[pool \"x\" ]\n", "t.conf:1:", "NAME", NULL);
	char text[128], name[SUP_POOL_NAME_MAX + 2];
	memset(name, 'n', SUP_POOL_NAME_MAX + 1);
	name[SUP_POOL_NAME_MAX + 1] = '\0';
	snprintf(text, sizeof(text), POOL "[pool \"%s\"]\n", name);
	fails_with(text, "t.conf:2:", name, "1..63", NULL);
}

Test(config, error_duplicate_pool)
{
	fails_with(POOL "max = 4\n[pool \"other\"]\n" POOL, "t.conf:4:",
		   "duplicate pool \"default\"", "line 1", NULL);
}

Test(config, error_too_many_pools)
{
	char text[4096];
	size_t off = 0;
	for (int i = 0; i <= SUP_MAX_POOLS; i++)
		off += (size_t)snprintf(text + off, sizeof(text) - off,
					"[pool \"p%d\"]\n", i);
	fails_with(text, "t.conf:65:", "too many pools", "64", NULL);
}

Test(config, max_pools_is_allowed)
{
	char text[4096];
	size_t off = 0;
	for (int i = 0; i < SUP_MAX_POOLS; i++)
		off += (size_t)snprintf(text + off, sizeof(text) - off,
					"[pool \"p%d\"]\nvcpus = %d\n", i,
					i % 64 + 1);
	parses(text);
	cr_assert_eq(cfg.n_pools, SUP_MAX_POOLS);
	cr_assert_str_eq(cfg.pools[SUP_MAX_POOLS - 1].name, "p63");
	cr_assert_eq(cfg.pools[SUP_MAX_POOLS - 1].vcpus, 64);
}

Test(config, error_no_pools)
{
	fails_with("[supervisor]\nsocket_mode = 0600\n", "t.conf", "pool",
		   NULL);
	fails_with("", "t.conf", "pool", NULL);
	fails_with("; nothing\n", "t.conf", "pool", NULL);
}

/* --- errors: checks across keys ------------------------------------------- */

Test(config, error_min_idle_above_max)
{
	fails_with(POOL "vcpus = 1\nmin_idle = 8\nmax = 4\n", "t.conf:3:",
		   "[pool \"default\"] min_idle", "max (4, set on line 4)",
		   "got \"8\"", NULL);
}

Test(config, error_max_below_default_min_idle)
{
	fails_with("[pool \"p\"]\n[pool \"q\"]\nmax = 2\n", "t.conf:3:",
		   "[pool \"q\"] max", "min_idle (4, the default)",
		   "got \"2\"", NULL);
}

Test(config, error_timeout_not_below_interval)
{
	fails_with(POOL "health_interval_ms = 500\nhealth_timeout_ms = 500\n",
		   "t.conf:3:", "[pool \"default\"] health_timeout_ms",
		   "health_interval_ms (500, set on line 2)", NULL);
	fails_with(POOL "health_timeout_ms = 2000\n", "t.conf:2:",
		   "health_timeout_ms", "health_interval_ms (1000, the default)",
		   NULL);
	fails_with(POOL "health_interval_ms = 100\n", "t.conf:2:",
		   "health_interval_ms", "health_timeout_ms (200, the default)",
		   NULL);
}

/* --- errors: [supervisor] ------------------------------------------------- */

Test(config, error_relative_socket_path)
{
	fails_with("[supervisor]\nsocket = run/h.sock\n" POOL, "t.conf:2:",
		   "[supervisor] socket", "absolute", "got \"run/h.sock\"",
		   NULL);
	fails_with("[supervisor]\nsocket =\n" POOL, "t.conf:2:", "socket",
		   NULL);
}

Test(config, error_socket_path_too_long)
{
	char path[109], text[256];
	path[0] = '/';
	memset(path + 1, 'p', 107); /* 108 bytes: one more than sun_path holds */
	path[108] = '\0';
	snprintf(text, sizeof(text), "[supervisor]\n\nsocket = %s\n" POOL, path);
	fails_with(text, "t.conf:3:", "socket", "107", NULL);
}

Test(config, error_bad_socket_mode)
{
	fails_with("[supervisor]\nsocket_mode = 0888\n" POOL, "t.conf:2:",
		   "socket_mode", "octal", "got \"0888\"", NULL);
	fails_with("[supervisor]\nsocket_mode = 01000\n" POOL, "t.conf:2:",
		   "socket_mode", "octal mode in 0..0777,", NULL);
	fails_with("[supervisor]\nsocket_mode = rw\n" POOL, "t.conf:2:",
		   "socket_mode", NULL);
	fails_with("[supervisor]\nsocket_mode = -0\n" POOL, "t.conf:2:",
		   "socket_mode", NULL);
}

/* --- errors: allow_uids --------------------------------------------------- */

Test(config, error_too_many_uids)
{
	char text[512];
	uid_list(text, sizeof(text), SUP_MAX_ALLOW_UIDS + 1);
	fails_with(text, "t.conf:2:", "allow_uids", "1..32 uids", NULL);
}

Test(config, error_bad_uid)
{
	fails_with(POOL "allow_uids = 0,,1000\n", "t.conf:2:", "allow_uids",
		   "got \"0,,1000\"", NULL);
	fails_with(POOL "allow_uids = 0,\n", "t.conf:2:", "allow_uids", NULL);
	fails_with(POOL "allow_uids = ,0\n", "t.conf:2:", "allow_uids", NULL);
	fails_with(POOL "allow_uids =\n", "t.conf:2:", "allow_uids", NULL);
	fails_with(POOL "allow_uids = -1\n", "t.conf:2:", "allow_uids", NULL);
	fails_with(POOL "allow_uids = root\n", "t.conf:2:", "allow_uids", NULL);
	fails_with(POOL "allow_uids = 1000x\n", "t.conf:2:", "allow_uids",
		   NULL);
	fails_with(POOL "allow_uids = 4294967295\n", "t.conf:2:", "allow_uids",
		   NULL);
	fails_with(POOL "allow_uids = 99999999999999999999\n", "t.conf:2:",
		   "allow_uids", NULL);
}

Test(config, error_name_defaults_when_null)
{
	cr_assert_eq(sup_config_parse_string(POOL "max = x\n", NULL, &cfg, &err),
		     -1);
	cr_assert(strstr(err.msg, "<string>:2:"), "%s", err.msg);
}

Test(config, null_err_is_allowed)
{
	cr_assert_eq(sup_config_parse_string(POOL "max = x\n", "t", &cfg, NULL),
		     -1);
	cr_assert_null(cfg.pools);
}

/* --- sup_config_load ------------------------------------------------------ */

static char tmp_path[64];

static void write_tmp(const char *text)
{
	snprintf(tmp_path, sizeof(tmp_path), "/tmp/test_config.XXXXXX");
	int fd = mkstemp(tmp_path);
	cr_assert_geq(fd, 0);
	size_t len = strlen(text);
	cr_assert_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
}

Test(config, load_file)
{
	write_tmp(example);
	int r = sup_config_load(tmp_path, &cfg, &err);
	unlink(tmp_path);
	cr_assert_eq(r, 0, "%s", err.msg);
	cr_assert_eq(cfg.n_pools, 1);
	cr_assert_str_eq(cfg.pools[0].name, "default");
	cr_assert_eq(cfg.pools[0].n_allow_uids, 2);
	cr_assert_eq(cfg.pools[0].allow_uids[1], 1000);
}

Test(config, load_error_names_the_file_and_line)
{
	write_tmp(POOL "\n\nvcpus = 100\n");
	int r = sup_config_load(tmp_path, &cfg, &err);
	unlink(tmp_path);
	cr_assert_eq(r, -1);
	char want[128];
	snprintf(want, sizeof(want), "%s:4: [pool \"default\"] vcpus:",
		 tmp_path);
	cr_assert(strstr(err.msg, want), "%s", err.msg);
	cr_assert_null(cfg.pools);
}

Test(config, load_long_line)
{
	char text[1024];
	char value[400];
	memset(value, '1', sizeof(value) - 1);
	value[sizeof(value) - 1] = '\0';
	snprintf(text, sizeof(text), POOL "max = %s\n", value);
	write_tmp(text);
	int r = sup_config_load(tmp_path, &cfg, &err);
	unlink(tmp_path);
	cr_assert_eq(r, -1);
	cr_assert(strstr(err.msg, ":2: line too long"), "%s", err.msg);
}

Test(config, load_missing_file)
{
	const char *path = "/nonexistent/hatchery-test.conf";
	cfg.n_pools = 5;
	cr_assert_eq(sup_config_load(path, &cfg, &err), -1);
	cr_assert_eq(err.code, INVALID_ARGUMENT);
	cr_assert_eq(err.sys_errno, ENOENT);
	cr_assert(strstr(err.msg, path), "%s", err.msg);
	cr_assert(strstr(err.msg, strerror(ENOENT)), "%s", err.msg);
	cr_assert_eq(cfg.n_pools, 0);
}

Test(config, load_directory)
{
	cr_assert_eq(sup_config_load("/tmp", &cfg, &err), -1);
	cr_assert_eq(err.code, INVALID_ARGUMENT);
	cr_assert(strstr(err.msg, "/tmp"), "%s", err.msg);
	cr_assert(strstr(err.msg, strerror(EISDIR)), "%s", err.msg);
}

/* --- the jail's keys (issue 3) --------------------------------------------- */

Test(config, jail_defaults)
{
	parses(POOL "memory_mib = 100\n");
	cr_assert_eq(cfg.jail_uid_base, 200000);
	cr_assert_eq(cfg.cgroup, SUP_CGROUP_REQUIRED, "default must be required");
	cr_assert_str_eq(cfg.cgroup_root, "");
	cr_assert_eq(cfg.pools[0].seccomp, VMP_SECCOMP_KILL);
	cr_assert_eq(cfg.pools[0].memory_max_mib, 164, "memory_mib + 64");
	cr_assert_eq(cfg.pools[0].pids_max, 16);
	cr_assert_eq(cfg.pools[0].cpu_max_pct, 100);
	cr_assert_eq(sup_config_jail_slots(&cfg), 64);
}

Test(config, jail_keys)
{
	parses("[supervisor]\njail_uid_base = 300000\ncgroup = optional\n"
	       "cgroup_root = /sys/fs/cgroup/unified\n"
	       POOL "seccomp = log\nmemory_max_mib = 200\npids_max = 4\n"
	       "cpu_max_pct = 50\nmax = 10\n"
	       "[pool \"b\"]\nmax = 5\nmin_idle = 1\n");
	cr_assert_eq(cfg.jail_uid_base, 300000);
	cr_assert_eq(cfg.cgroup, SUP_CGROUP_OPTIONAL);
	cr_assert_str_eq(cfg.cgroup_root, "/sys/fs/cgroup/unified");
	cr_assert_eq(cfg.pools[0].seccomp, VMP_SECCOMP_LOG);
	cr_assert_eq(cfg.pools[0].memory_max_mib, 200);
	cr_assert_eq(cfg.pools[0].pids_max, 4);
	cr_assert_eq(cfg.pools[0].cpu_max_pct, 50);
	cr_assert_eq(sup_config_jail_slots(&cfg), 15, "one uid per child of every pool");
	cr_assert_str_eq(sup_seccomp_mode_name(cfg.pools[0].seccomp), "log");
	cr_assert_str_eq(sup_cgroup_mode_name(cfg.cgroup), "optional");
}

Test(config, jail_bad_values)
{
	fails_with("[supervisor]\ncgroup = maybe\n" POOL, "t.conf:2:", "cgroup",
		   "one of: required, optional", "\"maybe\"", NULL);
	sup_config_free(&cfg);
	fails_with(POOL "seccomp = trap\n", "t.conf:2:", "seccomp",
		   "one of: kill, log", NULL);
	sup_config_free(&cfg);
	fails_with("[supervisor]\njail_uid_base = 0\n" POOL, "jail_uid_base",
		   "an integer in 1..", NULL);
	sup_config_free(&cfg);
	fails_with("[supervisor]\ncgroup_root = relative/path\n" POOL, "cgroup_root",
		   "an absolute path", NULL);
	sup_config_free(&cfg);
	fails_with(POOL "memory_mib = 128\nmemory_max_mib = 100\n", "t.conf:3:",
		   "memory_max_mib", "more than memory_mib", NULL);
}

Test(config, jail_uid_range_past_the_top)
{
	fails_with("[supervisor]\njail_uid_base = 4294967290\n" POOL "max = 64\n",
		   "t.conf:2:", "jail_uid_base", "goes past uid", NULL);
}

Test(config, restore_pool_keys)
{
	parses(POOL "kind = restore\nsnapshot = /var/lib/vm.snap\nprerestore = true\n");
	cr_assert_eq(cfg.pools[0].kind, SUP_POOL_RESTORE);
	cr_assert_str_eq(cfg.pools[0].snapshot, "/var/lib/vm.snap");
	cr_assert(cfg.pools[0].prerestore);
	cr_assert_eq(cfg.pools[0].snap_fd, -1, "opened by hatcheryd, not the parser");
	cr_assert_str_eq(sup_pool_kind_name(SUP_POOL_RESTORE), "restore");
	sup_config_free(&cfg);
	parses(POOL "kind = restore\nsnapshot = /s\n");
	cr_assert(!cfg.pools[0].prerestore, "prerestore defaults to false");
	sup_config_free(&cfg);
	fails_with(POOL "kind = restore\n", "t.conf:2:", "restore needs snapshot", NULL);
	fails_with(POOL "snapshot = /s\n", "t.conf:2:", "snapshot", "only for kind = restore",
		   NULL);
	fails_with(POOL "kind = booted\nguest = /g\nprerestore = true\n", "t.conf:4:",
		   "prerestore", "only for kind = restore", NULL);
	fails_with(POOL "kind = restore\nsnapshot = rel.snap\n", "t.conf:3:", "snapshot", NULL);
	fails_with(POOL "kind = restore\nsnapshot = /s\nprerestore = yes\n", "t.conf:4:",
		   "prerestore", "false, true", NULL);
}

Test(config, reuse_key)
{
	parses(POOL "kind = restore\nsnapshot = /s\n");
	cr_assert_eq(cfg.pools[0].reuse, SUP_REUSE_NEVER, "single use is the default");
	sup_config_free(&cfg);
	parses(POOL "kind = restore\nsnapshot = /s\nreuse = snapshot\n");
	cr_assert_eq(cfg.pools[0].reuse, SUP_REUSE_SNAPSHOT);
	cr_assert_str_eq(sup_reuse_mode_name(SUP_REUSE_SNAPSHOT), "snapshot");
	sup_config_free(&cfg);
	parses(POOL "kind = booted\nguest = /g\nreuse = never\n");
	cr_assert_eq(cfg.pools[0].reuse, SUP_REUSE_NEVER);
	sup_config_free(&cfg);
	fails_with(POOL "kind = booted\nguest = /g\nreuse = snapshot\n", "t.conf:4:",
		   "reuse", "only for kind = restore", NULL);
	fails_with(POOL "reuse = snapshot\n", "t.conf:2:", "reuse", "only for kind = restore",
		   NULL);
	fails_with(POOL "kind = restore\nsnapshot = /s\nreuse = always\n", "t.conf:4:",
		   "reuse", "never, snapshot", NULL);
}

/* --- kind = linux ------------------------------------------------------------ */

Test(config, linux_pool_keys_and_defaults)
{
	parses("[pool \"l\"]\nkind = linux\nkernel = /k/vmlinuz\ninitrd = /k/initrd\n"
	       "cmdline = loglevel=3 quiet\nboot_timeout_ms = 5000\n"
	       "[pool \"d\"]\nkind = linux\n");
	const struct sup_pool_config *l = &cfg.pools[0], *d = &cfg.pools[1];
	cr_assert_eq(l->kind, SUP_POOL_LINUX);
	cr_assert_str_eq(l->kernel, "/k/vmlinuz");
	cr_assert_str_eq(l->initrd, "/k/initrd");
	cr_assert_str_eq(l->cmdline, "loglevel=3 quiet");
	cr_assert_eq(l->boot_timeout_ms, 5000);
	cr_assert_eq(l->memory_mib, SUP_LINUX_DEFAULT_MEMORY_MIB);
	/* Unset: the build's kernel and initramfs, 60 s to boot. */
	cr_assert_str_eq(d->kernel, HATCH_DEFAULT_KERNEL_FOR_TESTS);
	cr_assert_eq(d->boot_timeout_ms, 60000);
	cr_assert_str_eq(sup_pool_kind_name(SUP_POOL_LINUX), "linux");
}

Test(config, linux_pool_errors)
{
	fails_with(POOL "kernel = /k/vmlinuz\n", "kernel: only for kind = linux", NULL);
	fails_with(POOL "kind = booted\nguest = /g\nboot_timeout_ms = 100\n",
		   "boot_timeout_ms: only for kind = linux", NULL);
	fails_with(POOL "kind = linux\nmemory_mib = 64\n", "a linux pool needs at least 96", NULL);
	fails_with(POOL "kind = linux\nkernel = vmlinuz\n", "absolute path", NULL);
	fails_with(POOL "kind = linux\ncmdline = a\tb\n", "printable ASCII", NULL);
	fails_with(POOL "kind = linux\nboot_timeout_ms = 99\n", "boot_timeout_ms", NULL);
}

Test(config, linux_pool_pids_max_fits_the_vcpu_threads)
{
	parses("[pool \"l\"]\nkind = linux\nvcpus = 32\n");
	cr_assert_geq(cfg.pools[0].pids_max, 34);
	sup_config_free(&cfg);
	fails_with(POOL "kind = linux\nvcpus = 8\npids_max = 9\n", "at least vcpus + 2 (10)", NULL);
}

/* --- reload ------------------------------------------------------------------ */

Test(config, max_idle_age_ms_key)
{
	parses(POOL "min_idle = 1\n");
	cr_assert_eq(cfg.pools[0].max_idle_age_ms, 0, "off by default");
	sup_config_free(&cfg);
	parses(POOL "max_idle_age_ms = 60000\n");
	cr_assert_eq(cfg.pools[0].max_idle_age_ms, 60000);
	sup_config_free(&cfg);
	fails_with(POOL "max_idle_age_ms = 50\n", "t.conf:2:", "max_idle_age_ms",
		   "0 (off) or 100..86400000", NULL);
	fails_with(POOL "max_idle_age_ms = 86400001\n", "t.conf:2:", "max_idle_age_ms",
		   "0..86400000", NULL);
}

Test(config, same_build_tells_build_keys_from_bookkeeping)
{
	struct sup_config b = { 0 };
	parses(POOL "min_idle = 1\nmemory_mib = 64\n");
	cr_assert_eq(sup_config_parse_string(POOL "min_idle = 3\nmax = 9\nallow_uids = 0 7\n"
					     "max_idle_age_ms = 1000\nmemory_mib = 64\n",
					     "u.conf", &b, &err), 0, "%s", err.msg);
	cr_assert(sup_pool_config_same_build(&cfg.pools[0], &b.pools[0]),
		  "bookkeeping keys build nothing");
	sup_config_free(&b);
	static const char *const rebuild[] = { "memory_mib = 80\n", "vcpus = 2\n",
					       "seccomp = log\n", "pids_max = 20\n",
					       "cpu_max_pct = 50\n", "memory_max_mib = 200\n",
					       "kind = booted\nguest = /g\n" };
	for (size_t i = 0; i < sizeof(rebuild) / sizeof(rebuild[0]); i++) {
		char text[256];
		snprintf(text, sizeof(text), POOL "min_idle = 1\n%s", rebuild[i]);
		cr_assert_eq(sup_config_parse_string(text, "u.conf", &b, &err), 0, "%s", err.msg);
		cr_assert_not(sup_pool_config_same_build(&cfg.pools[0], &b.pools[0]),
			      "%s changes how a child is built", rebuild[i]);
		sup_config_free(&b);
	}
	/* The same path with other bytes (a rebuilt guest) is a new build. */
	unsigned char x[] = "x", y[] = "y";
	struct sup_pool_config p = cfg.pools[0], q = cfg.pools[0];
	p.guest_elf = x;
	q.guest_elf = y;
	p.guest_elf_len = q.guest_elf_len = 1;
	cr_assert_not(sup_pool_config_same_build(&p, &q));
	q.guest_elf = x;
	cr_assert(sup_pool_config_same_build(&p, &q));
}

/* --- a linux pool's disk -------------------------------------------------------- */

Test(config, linux_pool_disk_keys)
{
	parses("[pool \"a\"]\nkind = linux\ndisk = /img/root.img\n"
	       "[pool \"b\"]\nkind = linux\ndisk = /img/root.img\ndisk_mode = ro\n"
	       "overlay_dir = /srv/layers\n"
	       "[pool \"c\"]\nkind = linux\ndisk = /img/root.img\ndisk_mode = rw\nmax = 1\n"
	       "min_idle = 1\n"
	       "[pool \"n\"]\nkind = linux\n");
	cr_assert_str_eq(cfg.pools[0].disk, "/img/root.img");
	cr_assert_eq(cfg.pools[0].disk_mode, SUP_DISK_OVERLAY, "overlay is the default");
	cr_assert_str_eq(cfg.pools[0].overlay_dir, "/var/tmp");
	cr_assert_eq(cfg.pools[1].disk_mode, SUP_DISK_RO);
	cr_assert_str_eq(cfg.pools[1].overlay_dir, "/srv/layers");
	cr_assert_eq(cfg.pools[2].disk_mode, SUP_DISK_RW);
	cr_assert_str_eq(cfg.pools[3].disk, "");
	cr_assert_str_eq(sup_disk_mode_name(SUP_DISK_OVERLAY), "overlay");
	/* Each child of a pool with a disk takes a second jail uid. */
	cr_assert_eq(sup_config_jail_slots(&cfg), 64 * 2 + 64 * 2 + 1 * 2 + 64);
	sup_config_free(&cfg);
}

Test(config, linux_pool_disk_errors)
{
	fails_with(POOL "disk = /img/root.img\n", "disk: only for kind = linux", NULL);
	fails_with(POOL "kind = linux\ndisk = root.img\n", "disk", "absolute path", NULL);
	fails_with(POOL "kind = linux\ndisk = /i\ndisk_mode = cow\n", "disk_mode",
		   "overlay, ro, rw", NULL);
	fails_with(POOL "kind = linux\ndisk = /i\ndisk_mode = rw\n", "disk_mode = rw",
		   "max = 1", NULL);
	fails_with(POOL "kind = linux\ndisk_mode = ro\n", "disk_mode: only with disk", NULL);
	fails_with(POOL "kind = linux\noverlay_dir = /x\n", "overlay_dir: only with disk",
		   NULL);
}

/* disk_socket: an external backend's socket instead of disk; no jail slot
 * of its own (no process of ours). */
Test(config, linux_pool_disk_socket)
{
	parses("[pool \"q\"]\nkind = linux\ndisk_socket = /run/qsd.sock\nmax = 1\n"
	       "min_idle = 1\n");
	cr_assert_str_eq(cfg.pools[0].disk_socket, "/run/qsd.sock");
	cr_assert_str_eq(cfg.pools[0].disk, "");
	cr_assert_eq(sup_config_jail_slots(&cfg), 1);
	sup_config_free(&cfg);
	fails_with(POOL "disk_socket = /run/q.sock\n", "disk_socket: only for kind = linux",
		   NULL);
	fails_with(POOL "kind = linux\ndisk_socket = q.sock\n", "disk_socket",
		   "absolute path", NULL);
	fails_with(POOL "kind = linux\ndisk = /i\ndisk_socket = /q.sock\n",
		   "disk_socket: one disk per VM", NULL);
	fails_with(POOL "kind = linux\ndisk_socket = /q.sock\ndisk_mode = ro\n",
		   "disk_mode: only with disk", NULL);
}
