/* hatchctl.c - command-line client for hatcheryd.
 *
 * Talks to the daemon only through the client library (hatchery/client.h).
 * Each command parses its own options before connecting, so a usage error
 * never touches the socket. The exit status is the contract with shell
 * scripts (see usage()); it is chosen from a hatch_err in exactly one place,
 * fail().
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "hatchery/cleanup.h"
#include "hatchery/client.h"
#include "hatchery/error.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

/* Exit statuses; documented in usage() and stable for scripts. */
enum hx_exit {
	HX_OK = 0,
	HX_FAILED = 1,      /* error reply from the server, or a local failure */
	HX_USAGE = 2,
	HX_UNAVAILABLE = 3, /* cannot connect, no reply, or daemon shutting down */
	HX_EXHAUSTED = 4,   /* POOL_EXHAUSTED: worth retrying */
	HX_DENIED = 5,      /* PERMISSION_DENIED */
};

#define DEFAULT_TIMEOUT_MS 5000u
#define DEFAULT_DEADLINE_MS 1000u
/* Bound both so timeout + deadline still fits poll()'s int milliseconds. */
#define MAX_MS (24u * 3600u * 1000u)

/* run's PAYLOAD: one packet is 64 KiB, and the request's envelope (the
 * function's name among it) must fit beside the payload. */
#define RUN_PAYLOAD_MAX ((size_t)64 * 1024 - 1024)

/* getopt prints argv[0] in its messages; give it a stable name. */
static char prog[] = "hatchctl";

struct ctx {
	const char *socket; /* NULL: $HATCHERY_SOCKET, else the default */
	unsigned timeout_ms;
};

static void usage(FILE *f)
{
	fprintf(f,
"Usage: hatchctl [-s SOCKET] [-t TIMEOUT_MS] COMMAND [ARGS]\n"
"\n"
"Commands:\n"
"  status [--json]     pools (idle/leased/spawning/waiting, min_idle/max,\n"
"                      degraded, last error) and every child (id, pid,\n"
"                      state, age)\n"
"  stats [--json]      per-pool counters and acquire / spawn-to-ready\n"
"                      latency (count, p50, p90, p99, max)\n"
"  ping [--json]       ping hatcheryd: version, pid, round-trip time\n"
"  acquire POOL [--deadline MS] [--json]\n"
"                      lease a VM of POOL (waiting up to MS for one, default\n"
"                      %u), ping it, read its info, release it, and show\n"
"                      what came back and how long each step took\n"
"  run POOL FUNCTION [PAYLOAD|-] [--deadline MS] [--hex] [--time]\n"
"                      lease a VM of a booted POOL, call FUNCTION in its\n"
"                      guest with PAYLOAD (- reads stdin, at most %zu\n"
"                      bytes), write the result to stdout and the guest's\n"
"                      log to stderr, release the VM. The result is written\n"
"                      as it is (raw bytes); --hex writes it as lowercase\n"
"                      hex and a newline instead. --time adds a line on\n"
"                      stderr: acquire, call (and the guest's run time\n"
"                      within it), release, in µs. A guest fault or a\n"
"                      missed deadline is an error reply (exit 1)\n"
"  snapshot POOL FILE [--call FUNCTION PAYLOAD]\n"
"                      lease a VM of a booted POOL, optionally call FUNCTION\n"
"                      first (so the snapshot holds a warmed guest), save it\n"
"                      to FILE (created or truncated, mode 0600), print the\n"
"                      save's phases and the file's size, release the VM\n"
"  restore POOL FILE [--call FUNCTION PAYLOAD]\n"
"                      lease a VM of an empty POOL, restore FILE into it,\n"
"                      print the restore's phases, optionally call FUNCTION,\n"
"                      release the VM. A call's result is printed as hex\n"
"                      (at most 64 bytes shown), its log goes to stderr\n"
"  help                this text\n"
"\n"
"Options:\n"
"  -s, --socket SOCKET      hatcheryd's socket (default: $HATCHERY_SOCKET,\n"
"                           else " HATCH_DEFAULT_SOCKET ")\n"
"  -t, --timeout TIMEOUT_MS fail a call with no reply after this long\n"
"                           (default %u; 0 waits forever)\n"
"  -h, --help               this text\n"
"\n"
"Text output is for people. With --json, stdout is one JSON object; times\n"
"in it are integer nanoseconds.\n"
"\n"
"Exit status:\n"
"  0  success\n"
"  1  the request failed: an error reply from the server (or a local error)\n"
"  2  usage error\n"
"  3  hatcheryd unavailable: cannot connect, no reply in time, or shutting\n"
"     down\n"
"  4  POOL_EXHAUSTED: no VM became ready before the deadline; retry later\n"
"  5  PERMISSION_DENIED\n"
"Errors are printed to stderr as \"hatchctl: CODE_NAME: message\".\n",
		DEFAULT_DEADLINE_MS, RUN_PAYLOAD_MAX, DEFAULT_TIMEOUT_MS);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'hatchctl help'.\n");
	return HX_USAGE;
}

/* The one place a hatch_err becomes a message and an exit status. */
static int fail(const struct hatch_err *err)
{
	fprintf(stderr, "%s: %s: %s\n", prog, hatch_err_code_name(err->code),
		err->msg[0] ? err->msg : "(no message)");
	switch (err->code) {
	case E(UNAVAILABLE):
		return HX_UNAVAILABLE;
	case E(POOL_EXHAUSTED):
		return HX_EXHAUSTED;
	case E(PERMISSION_DENIED):
		return HX_DENIED;
	default:
		return HX_FAILED;
	}
}

/* Everything went to stdout through stdio; a full disk or closed pipe only
 * shows up here. */
static int finish_stdout(void)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "%s: write to stdout: %s\n", prog, strerror(errno));
		return HX_FAILED;
	}
	return HX_OK;
}

/* Parse a decimal count of milliseconds in [0, MAX_MS]. */
static int parse_ms(const char *s, unsigned *out)
{
	if (!s || *s < '0' || *s > '9') /* strtoul accepts " -1" */
		return -1;
	errno = 0;
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v > MAX_MS)
		return -1;
	*out = (unsigned)v;
	return 0;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double ns_to_us(uint64_t ns)
{
	return (double)ns / 1000.0;
}

static void format_age(char *buf, size_t len, uint64_t ms)
{
	uint64_t s = ms / 1000;
	if (ms < 1000)
		snprintf(buf, len, "%llums", (unsigned long long)ms);
	else if (s < 60)
		snprintf(buf, len, "%.1fs", (double)ms / 1000.0);
	else if (s < 3600)
		snprintf(buf, len, "%llum%02llus", (unsigned long long)(s / 60),
			 (unsigned long long)(s % 60));
	else if (s < 86400)
		snprintf(buf, len, "%lluh%02llum", (unsigned long long)(s / 3600),
			 (unsigned long long)(s / 60 % 60));
	else
		snprintf(buf, len, "%llud%02lluh", (unsigned long long)(s / 86400),
			 (unsigned long long)(s / 3600 % 24));
}

static bool is_ctl(char c)
{
	return (unsigned char)c < 0x20 || c == 0x7f;
}

/* Print a string from the daemon with control characters defused. */
static void put_clean(const char *s)
{
	for (; *s; s++)
		putchar(is_ctl(*s) ? '?' : *s);
}

/* --- text tables ---------------------------------------------------------
 * Cells are formatted first and the table printed once every width is
 * known. Allocation failure is sticky and reported by table_print(), so the
 * callers stay free of error checks per cell. */

struct table {
	size_t ncols;
	const char *align; /* per column: 'l' or 'r' */
	char **cells;      /* row-major; the first row is the header */
	size_t n, cap;
	bool oom;
};

static void table_cell(struct table *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void table_cell(struct table *t, const char *fmt, ...)
{
	if (t->oom)
		return;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		char **c = realloc(t->cells, cap * sizeof(*c));
		if (!c) {
			t->oom = true;
			return;
		}
		t->cells = c;
		t->cap = cap;
	}
	va_list ap;
	va_start(ap, fmt);
	int r = vasprintf(&t->cells[t->n], fmt, ap);
	va_end(ap);
	if (r < 0) {
		t->oom = true;
		return;
	}
	/* Strings come from the daemon; a newline or an escape sequence in,
	 * say, last_error must not break the table or drive the terminal. */
	for (char *p = t->cells[t->n]; *p; p++)
		if (is_ctl(*p))
			*p = '?';
	t->n++;
}

static void table_free(struct table *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->cells[i]);
	free(t->cells);
	t->cells = NULL;
	t->n = t->cap = 0;
}

/* Columns on screen, not bytes: headers carry "µs". Counts every byte that
 * is not a UTF-8 continuation byte. */
static size_t display_width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		w += ((unsigned char)*s & 0xC0) != 0x80;
	return w;
}

static int table_print(struct table *t)
{
	if (t->oom)
		return -ENOMEM;
	if (t->n % t->ncols)
		return -EINVAL; /* a row left short: a bug here, not in the data */
	size_t *width = calloc(t->ncols, sizeof(*width));
	if (!width)
		return -ENOMEM;
	for (size_t i = 0; i < t->n; i++) {
		size_t w = display_width(t->cells[i]);
		if (w > width[i % t->ncols])
			width[i % t->ncols] = w;
	}
	for (size_t row = 0; row < t->n; row += t->ncols) {
		char **cells = t->cells + row;
		/* Stop after the last non-empty cell: no trailing blanks. */
		size_t ncols = t->ncols;
		while (ncols > 0 && !*cells[ncols - 1])
			ncols--;
		for (size_t col = 0; col < ncols; col++) {
			const char *s = cells[col];
			int pad = (int)(width[col] - display_width(s));
			bool last = col == ncols - 1;
			if (t->align[col] == 'r')
				printf("%*s%s", pad, "", s);
			else if (last)
				fputs(s, stdout);
			else
				printf("%s%*s", s, pad, "");
			if (!last)
				fputs("  ", stdout);
		}
		putchar('\n');
	}
	free(width);
	return 0;
}

static int print_table(struct table *t)
{
	int r = table_print(t);
	table_free(t);
	if (r < 0) {
		fprintf(stderr, "%s: %s\n", prog, strerror(-r));
		return HX_FAILED;
	}
	return HX_OK;
}

/* --- JSON output ---------------------------------------------------------
 * A writer just smart enough for one compact object on stdout: it places the
 * commas, and escapes strings. One `comma` flag suffices because a value
 * after a closed container always needs one, and the first value inside a
 * new container never does. */

struct json {
	bool comma;
};

/* Length of the valid UTF-8 sequence at s, or 0 if it is not one. Strings
 * come off the wire unchecked, and invalid UTF-8 is not valid JSON. */
static size_t utf8_seq_len(const unsigned char *s)
{
	unsigned char c = s[0];
	size_t n;
	uint32_t cp;
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF) {
		n = 2;
		cp = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		cp = c & 0x0F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xC0) != 0x80) /* also stops at the NUL */
			return 0;
		cp = cp << 6 | (s[i] & 0x3F);
	}
	/* overlong, surrogate, or past U+10FFFF */
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
		return 0;
	return n;
}

static void json_string(const char *str)
{
	const unsigned char *s = (const unsigned char *)(str ? str : "");
	putchar('"');
	while (*s) {
		unsigned char c = *s;
		switch (c) {
		case '"':  fputs("\\\"", stdout); s++; continue;
		case '\\': fputs("\\\\", stdout); s++; continue;
		case '\b': fputs("\\b", stdout); s++; continue;
		case '\f': fputs("\\f", stdout); s++; continue;
		case '\n': fputs("\\n", stdout); s++; continue;
		case '\r': fputs("\\r", stdout); s++; continue;
		case '\t': fputs("\\t", stdout); s++; continue;
		}
		if (c < 0x20) {
			printf("\\u%04x", c);
			s++;
			continue;
		}
		size_t n = utf8_seq_len(s);
		if (!n) {
			fputs("\\ufffd", stdout);
			s++;
			continue;
		}
		fwrite(s, 1, n, stdout);
		s += n;
	}
	putchar('"');
}

static void json_key(struct json *j, const char *key)
{
	if (j->comma)
		putchar(',');
	j->comma = true;
	if (key) {
		json_string(key);
		putchar(':');
	}
}

static void json_open(struct json *j, const char *key, char bracket)
{
	json_key(j, key);
	putchar(bracket);
	j->comma = false;
}

static void json_close(struct json *j, char bracket)
{
	putchar(bracket);
	j->comma = true;
}

static void json_u64(struct json *j, const char *key, uint64_t v)
{
	json_key(j, key);
	printf("%llu", (unsigned long long)v);
}

static void json_i64(struct json *j, const char *key, int64_t v)
{
	json_key(j, key);
	printf("%lld", (long long)v);
}

static void json_bool(struct json *j, const char *key, bool v)
{
	json_key(j, key);
	fputs(v ? "true" : "false", stdout);
}

static void json_str(struct json *j, const char *key, const char *v)
{
	json_key(j, key);
	json_string(v);
}

/* --- per-command option parsing ------------------------------------------ */

enum { OPT_JSON = 0x100, OPT_DEADLINE };

struct cmd_opts {
	bool json;
	unsigned deadline_ms;
	char *args[2]; /* positional arguments */
	int nargs;
};

/* Parse a command's options with a second getopt pass; argv[0] is the
 * command name. `long_opts` lists what this command accepts; nargs_want is
 * the exact number of positional arguments. */
static int parse_cmd(int argc, char **argv, const struct option *long_opts,
		     int nargs_want, const char *args_name, struct cmd_opts *o)
{
	/* getopt prefixes its own messages with argv[0]; static, because the
	 * pointer stays behind in argv. */
	const char *cmd = argv[0];
	static char name[64];
	snprintf(name, sizeof(name), "%s %s", prog, cmd);
	argv[0] = name;

	optind = 0; /* glibc: reinitialise for a new argument vector */
	int c;
	while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_JSON:
			o->json = true;
			break;
		case OPT_DEADLINE:
			if (parse_ms(optarg, &o->deadline_ms) < 0)
				return usage_error("%s: --deadline wants milliseconds in 0..%u, not '%s'",
						   cmd, MAX_MS, optarg);
			break;
		default: /* getopt has said what was wrong */
			fprintf(stderr, "Try 'hatchctl help'.\n");
			return HX_USAGE;
		}
	}
	int left = argc - optind;
	if (left != nargs_want) {
		if (left < nargs_want)
			return usage_error("%s: missing %s", cmd, args_name);
		return usage_error("%s: unexpected argument '%s'",
				   cmd, argv[optind + nargs_want]);
	}
	for (int i = 0; i < left && i < (int)HATCH_ARRAY_SIZE(o->args); i++)
		o->args[o->nargs++] = argv[optind + i];
	return HX_OK;
}

static const struct option json_only_opts[] = {
	{ "json", no_argument, NULL, OPT_JSON },
	{ 0 },
};

static const struct option acquire_opts[] = {
	{ "json", no_argument, NULL, OPT_JSON },
	{ "deadline", required_argument, NULL, OPT_DEADLINE },
	{ 0 },
};

static int connect_client(const struct ctx *cx, struct hatch_client **out,
			  struct hatch_err *err)
{
	if (hatch_connect(cx->socket, out, err) < 0)
		return -1;
	hatch_set_timeout(*out, cx->timeout_ms);
	return 0;
}

/* --- ping ----------------------------------------------------------------- */

static int cmd_ping(const struct ctx *cx, int argc, char **argv)
{
	struct cmd_opts o = { 0 };
	int r = parse_cmd(argc, argv, json_only_opts, 0, NULL, &o);
	if (r != HX_OK)
		return r;

	struct hatch_err err = { 0 };
	struct hatch_client *c = NULL;
	if (connect_client(cx, &c, &err) < 0)
		return fail(&err);
	Hatchery__V1__PingReply *rep = NULL;
	uint64_t t0 = now_ns();
	r = hatch_ping(c, &rep, &err);
	uint64_t rtt = now_ns() - t0;
	hatch_close(c);
	if (r < 0)
		return fail(&err);

	if (o.json) {
		struct json j = { 0 };
		json_open(&j, NULL, '{');
		json_str(&j, "version", rep->version);
		json_u64(&j, "pid", rep->pid);
		json_u64(&j, "rtt_ns", rtt);
		json_close(&j, '}');
		putchar('\n');
	} else {
		fputs("hatcheryd ", stdout);
		put_clean(rep->version);
		printf(", pid %u: round trip %.1f µs\n", rep->pid, ns_to_us(rtt));
	}
	hatch_free(rep);
	return finish_stdout();
}

/* --- status --------------------------------------------------------------- */

static void status_json(const Hatchery__V1__StatusReply *st)
{
	struct json j = { 0 };
	json_open(&j, NULL, '{');
	json_u64(&j, "pid", st->pid);
	json_u64(&j, "uptime_ms", st->uptime_ms);
	json_str(&j, "jail", st->jail);
	json_str(&j, "cgroup", st->cgroup);
	json_open(&j, "pools", '[');
	for (size_t i = 0; i < st->n_pools; i++) {
		const Hatchery__V1__PoolStatus *p = st->pools[i];
		json_open(&j, NULL, '{');
		json_str(&j, "name", p->name);
		json_str(&j, "kind", p->kind);
		json_str(&j, "reuse", p->reuse);
		json_u64(&j, "idle", p->idle);
		json_u64(&j, "leased", p->leased);
		json_u64(&j, "spawning", p->spawning);
		json_u64(&j, "waiting", p->waiting);
		json_u64(&j, "min_idle", p->min_idle);
		json_u64(&j, "max", p->max);
		json_bool(&j, "degraded", p->degraded);
		json_str(&j, "last_error", p->last_error);
		json_open(&j, "children", '[');
		for (size_t k = 0; k < p->n_children; k++) {
			const Hatchery__V1__ChildStatus *ch = p->children[k];
			json_open(&j, NULL, '{');
			json_u64(&j, "id", ch->id);
			json_u64(&j, "pid", ch->pid);
			json_str(&j, "state", ch->state);
			json_u64(&j, "age_ms", ch->age_ms);
			json_close(&j, '}');
		}
		json_close(&j, ']');
		json_bool(&j, "children_truncated", p->children_truncated);
		json_close(&j, '}');
	}
	json_close(&j, ']');
	json_close(&j, '}');
	putchar('\n');
}

static int status_text(const Hatchery__V1__StatusReply *st)
{
	char age[32];
	format_age(age, sizeof(age), st->uptime_ms);
	printf("hatcheryd pid %u, up %s, %zu pool%s\n", st->pid, age,
	       st->n_pools, st->n_pools == 1 ? "" : "s");
	/* Through the table's sanitizer too: a reason comes from the machine. */
	struct table jt = { .ncols = 2, .align = "ll" };
	table_cell(&jt, "jail:");
	table_cell(&jt, "%s", *st->jail ? st->jail : "-");
	table_cell(&jt, "cgroup:");
	table_cell(&jt, "%s", *st->cgroup ? st->cgroup : "-");
	int jr = print_table(&jt);
	if (jr != HX_OK)
		return jr;
	if (!st->n_pools)
		return HX_OK;

	putchar('\n');
	struct table t = { .ncols = 10, .align = "llrrrrrrll" };
	size_t nchildren = 0;
	bool truncated = false;
	const char *hdr[] = { "POOL", "KIND", "IDLE", "LEASED", "SPAWNING",
			      "WAITING", "MIN_IDLE", "MAX", "STATE",
			      "LAST_ERROR" };
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(hdr); i++)
		table_cell(&t, "%s", hdr[i]);
	for (size_t i = 0; i < st->n_pools; i++) {
		const Hatchery__V1__PoolStatus *p = st->pools[i];
		table_cell(&t, "%s", p->name);
		table_cell(&t, "%s", p->kind);
		table_cell(&t, "%u", p->idle);
		table_cell(&t, "%u", p->leased);
		table_cell(&t, "%u", p->spawning);
		table_cell(&t, "%u", p->waiting);
		table_cell(&t, "%u", p->min_idle);
		table_cell(&t, "%u", p->max);
		table_cell(&t, "%s", p->degraded ? "DEGRADED" : "ok");
		table_cell(&t, "%s", *p->last_error ? p->last_error : "-");
		nchildren += p->n_children;
		truncated |= p->children_truncated;
	}
	int r = print_table(&t);
	if (r != HX_OK || (!nchildren && !truncated))
		return r;

	putchar('\n');
	t = (struct table){ .ncols = 5, .align = "lrrll" };
	table_cell(&t, "POOL");
	table_cell(&t, "CHILD");
	table_cell(&t, "PID");
	table_cell(&t, "STATE");
	table_cell(&t, "AGE");
	for (size_t i = 0; i < st->n_pools; i++) {
		const Hatchery__V1__PoolStatus *p = st->pools[i];
		for (size_t k = 0; k < p->n_children; k++) {
			const Hatchery__V1__ChildStatus *ch = p->children[k];
			format_age(age, sizeof(age), ch->age_ms);
			table_cell(&t, "%s", p->name);
			table_cell(&t, "%llu", (unsigned long long)ch->id);
			table_cell(&t, "%u", ch->pid);
			table_cell(&t, "%s", ch->state);
			table_cell(&t, "%s", age);
		}
	}
	r = print_table(&t);
	if (r != HX_OK || !truncated)
		return r;
	/* The daemon cut the lists to fit one packet; the counts are whole. */
	printf("(child list cut short to fit one reply for pool");
	for (size_t i = 0; i < st->n_pools; i++)
		if (st->pools[i]->children_truncated) {
			putchar(' ');
			put_clean(st->pools[i]->name);
		}
	printf(")\n");
	return HX_OK;
}


/* --- stats ---------------------------------------------------------------- */

/* An absent Latency message means no samples: all zero. */
static const Hatchery__V1__Latency no_latency = HATCHERY__V1__LATENCY__INIT;

static const Hatchery__V1__Latency *lat_or_zero(const Hatchery__V1__Latency *l)
{
	return l ? l : &no_latency;
}

static void latency_json(struct json *j, const char *key,
			 const Hatchery__V1__Latency *l)
{
	l = lat_or_zero(l);
	json_open(j, key, '{');
	json_u64(j, "count", l->count);
	json_u64(j, "p50", l->p50);
	json_u64(j, "p90", l->p90);
	json_u64(j, "p99", l->p99);
	json_u64(j, "max", l->max);
	json_close(j, '}');
}

static void stats_json(const Hatchery__V1__StatsReply *st)
{
	struct json j = { 0 };
	json_open(&j, NULL, '{');
	json_open(&j, "pools", '[');
	for (size_t i = 0; i < st->n_pools; i++) {
		const Hatchery__V1__PoolStats *p = st->pools[i];
		json_open(&j, NULL, '{');
		json_str(&j, "name", p->name);
		json_u64(&j, "acquisitions", p->acquisitions);
		json_u64(&j, "hits", p->hits);
		json_u64(&j, "misses", p->misses);
		json_u64(&j, "spawned", p->spawned);
		json_u64(&j, "spawn_failures", p->spawn_failures);
		json_u64(&j, "unexpected_exits", p->unexpected_exits);
		json_u64(&j, "health_failures", p->health_failures);
		json_u64(&j, "seccomp_kills", p->seccomp_kills);
		json_u64(&j, "resets", p->resets);
		json_u64(&j, "active_leases", p->active_leases);
		latency_json(&j, "acquire", p->acquire);
		latency_json(&j, "spawn_to_ready", p->spawn_to_ready);
		json_close(&j, '}');
	}
	json_close(&j, ']');
	json_close(&j, '}');
	putchar('\n');
}

static void latency_row(struct table *t, const char *pool, const char *what,
			const Hatchery__V1__Latency *l)
{
	l = lat_or_zero(l);
	table_cell(t, "%s", pool);
	table_cell(t, "%s", what);
	table_cell(t, "%llu", (unsigned long long)l->count);
	if (!l->count) { /* percentiles of nothing: say so, not 0.0 */
		for (int i = 0; i < 4; i++)
			table_cell(t, "-");
		return;
	}
	table_cell(t, "%.1f", ns_to_us(l->p50));
	table_cell(t, "%.1f", ns_to_us(l->p90));
	table_cell(t, "%.1f", ns_to_us(l->p99));
	table_cell(t, "%.1f", ns_to_us(l->max));
}

static int stats_text(const Hatchery__V1__StatsReply *st)
{
	if (!st->n_pools) {
		printf("no pools\n");
		return HX_OK;
	}
	struct table t = { .ncols = 10, .align = "lrrrrrrrrr" };
	const char *hdr[] = { "POOL", "ACQUIRED", "HITS", "MISSES", "SPAWNED",
			      "SPAWN_FAIL", "UNEXP_EXIT", "HEALTH_FAIL",
			      "SECCOMP_KILL", "LEASED" };
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(hdr); i++)
		table_cell(&t, "%s", hdr[i]);
	for (size_t i = 0; i < st->n_pools; i++) {
		const Hatchery__V1__PoolStats *p = st->pools[i];
		table_cell(&t, "%s", p->name);
		table_cell(&t, "%llu", (unsigned long long)p->acquisitions);
		table_cell(&t, "%llu", (unsigned long long)p->hits);
		table_cell(&t, "%llu", (unsigned long long)p->misses);
		table_cell(&t, "%llu", (unsigned long long)p->spawned);
		table_cell(&t, "%llu", (unsigned long long)p->spawn_failures);
		table_cell(&t, "%llu", (unsigned long long)p->unexpected_exits);
		table_cell(&t, "%llu", (unsigned long long)p->health_failures);
		table_cell(&t, "%llu", (unsigned long long)p->seccomp_kills);
		table_cell(&t, "%u", p->active_leases);
	}
	int r = print_table(&t);
	if (r != HX_OK)
		return r;

	putchar('\n');
	t = (struct table){ .ncols = 7, .align = "llrrrrr" };
	const char *lhdr[] = { "POOL", "LATENCY", "COUNT", "P50 µs", "P90 µs",
			       "P99 µs", "MAX µs" };
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(lhdr); i++)
		table_cell(&t, "%s", lhdr[i]);
	for (size_t i = 0; i < st->n_pools; i++) {
		const Hatchery__V1__PoolStats *p = st->pools[i];
		latency_row(&t, p->name, "acquire", p->acquire);
		latency_row(&t, p->name, "spawn_to_ready", p->spawn_to_ready);
	}
	return print_table(&t);
}

/* status and stats: one request, one reply, printed as JSON or as text. */
struct query {
	int (*fetch)(struct hatch_client *c, void **out, struct hatch_err *err);
	void (*json)(const void *reply);
	int (*text)(const void *reply);
};

static int run_query(const struct ctx *cx, int argc, char **argv,
		     const struct query *q)
{
	struct cmd_opts o = { 0 };
	int r = parse_cmd(argc, argv, json_only_opts, 0, NULL, &o);
	if (r != HX_OK)
		return r;

	struct hatch_err err = { 0 };
	struct hatch_client *c = NULL;
	if (connect_client(cx, &c, &err) < 0)
		return fail(&err);
	void *reply = NULL;
	r = q->fetch(c, &reply, &err);
	hatch_close(c);
	if (r < 0)
		return fail(&err);

	if (o.json) {
		q->json(reply);
		r = HX_OK;
	} else {
		r = q->text(reply);
	}
	hatch_free(reply);
	return r != HX_OK ? r : finish_stdout();
}

static int fetch_status(struct hatch_client *c, void **out, struct hatch_err *err)
{
	Hatchery__V1__StatusReply *st = NULL;
	int r = hatch_status(c, &st, err);
	*out = st;
	return r;
}
static void status_json_any(const void *m) { status_json(m); }
static int status_text_any(const void *m) { return status_text(m); }

static int cmd_status(const struct ctx *cx, int argc, char **argv)
{
	static const struct query q = { fetch_status, status_json_any, status_text_any };
	return run_query(cx, argc, argv, &q);
}

static int fetch_stats(struct hatch_client *c, void **out, struct hatch_err *err)
{
	Hatchery__V1__StatsReply *st = NULL;
	int r = hatch_stats(c, &st, err);
	*out = st;
	return r;
}
static void stats_json_any(const void *m) { stats_json(m); }
static int stats_text_any(const void *m) { return stats_text(m); }

static int cmd_stats(const struct ctx *cx, int argc, char **argv)
{
	static const struct query q = { fetch_stats, stats_json_any, stats_text_any };
	return run_query(cx, argc, argv, &q);
}

/* --- acquire -------------------------------------------------------------- */

struct acquire_times {
	uint64_t acquire, ping, info, release; /* ns, measured here */
};

static void acquire_json(const char *pool, const Hatchery__V1__AcquireReply *a,
			 const Hatchery__V1__VmInfoReply *vi,
			 const struct acquire_times *tm)
{
	struct json j = { 0 };
	json_open(&j, NULL, '{');
	json_str(&j, "pool", pool);
	json_u64(&j, "child_pid", a->child_pid);
	json_u64(&j, "child_id", a->child_id);
	json_bool(&j, "hit", a->hit);
	json_u64(&j, "wait_ns", a->wait_ns);
	json_open(&j, "vm", '{');
	json_u64(&j, "pid", vi->pid);
	json_str(&j, "pool", vi->pool);
	json_u64(&j, "child_id", vi->child_id);
	json_str(&j, "kind", vi->kind);
	json_u64(&j, "memory_mib", vi->memory_mib);
	json_u64(&j, "vcpus", vi->vcpus);
	json_i64(&j, "kvm_api_version", vi->kvm_api_version);
	json_bool(&j, "irqchip", vi->irqchip);
	json_bool(&j, "pit", vi->pit);
	json_u64(&j, "cpuid_entries", vi->cpuid_entries);
	json_u64(&j, "create_vm_ns", vi->create_vm_ns);
	json_u64(&j, "memory_ns", vi->memory_ns);
	json_u64(&j, "irqchip_ns", vi->irqchip_ns);
	json_u64(&j, "vcpus_ns", vi->vcpus_ns);
	json_open(&j, "guest_functions", '[');
	for (size_t i = 0; i < vi->n_guest_functions; i++)
		json_str(&j, NULL, vi->guest_functions[i]);
	json_close(&j, ']');
	json_u64(&j, "guest_boot_ns", vi->guest_boot_ns);
	json_close(&j, '}');
	json_open(&j, "jail", '{');
	json_bool(&j, "jailed", vi->jailed);
	json_u64(&j, "uid", vi->uid);
	json_u64(&j, "gid", vi->gid);
	json_u64(&j, "supplementary_groups", vi->supplementary_groups);
	json_u64(&j, "cap_eff", vi->cap_eff);
	json_u64(&j, "cap_prm", vi->cap_prm);
	json_u64(&j, "cap_inh", vi->cap_inh);
	json_u64(&j, "cap_amb", vi->cap_amb);
	json_u64(&j, "cap_bnd", vi->cap_bnd);
	json_bool(&j, "no_new_privs", vi->no_new_privs);
	json_u64(&j, "seccomp_mode", vi->seccomp_mode);
	json_str(&j, "seccomp_action", vi->seccomp_action);
	json_u64(&j, "ns_mnt", vi->ns_mnt);
	json_u64(&j, "ns_pid", vi->ns_pid);
	json_u64(&j, "ns_net", vi->ns_net);
	json_u64(&j, "ns_ipc", vi->ns_ipc);
	json_u64(&j, "ns_uts", vi->ns_uts);
	json_u64(&j, "ns_cgroup", vi->ns_cgroup);
	json_u64(&j, "ns_user", vi->ns_user);
	json_str(&j, "cgroup", vi->cgroup);
	json_u64(&j, "rlimit_nofile", vi->rlimit_nofile);
	json_u64(&j, "rlimit_nproc", vi->rlimit_nproc);
	json_u64(&j, "rlimit_fsize", vi->rlimit_fsize);
	json_u64(&j, "rlimit_core", vi->rlimit_core);
	json_u64(&j, "rlimit_as", vi->rlimit_as);
	json_close(&j, '}');
	json_open(&j, "spawn_ns", '{');
	json_u64(&j, "fork", vi->fork_ns);
	json_u64(&j, "child_init", vi->child_init_ns);
	json_u64(&j, "jail_proc", vi->jail_proc_ns);
	json_u64(&j, "jail_pivot", vi->jail_pivot_ns);
	json_u64(&j, "jail_creds", vi->jail_creds_ns);
	json_u64(&j, "jail_limits", vi->jail_limits_ns);
	json_u64(&j, "jail_seccomp", vi->jail_seccomp_ns);
	json_u64(&j, "ready", vi->ready_ns);
	json_close(&j, '}');
	json_open(&j, "timing_ns", '{');
	json_u64(&j, "acquire", tm->acquire);
	json_u64(&j, "first_vm_ping", tm->ping);
	json_u64(&j, "info", tm->info);
	json_u64(&j, "release", tm->release);
	json_close(&j, '}');
	json_close(&j, '}');
	putchar('\n');
}

static int acquire_text(const char *pool, const Hatchery__V1__AcquireReply *a,
			const Hatchery__V1__VmInfoReply *vi,
			const struct acquire_times *tm)
{
	printf("leased child %llu (pid %u) of pool %s: %s\n\n",
	       (unsigned long long)a->child_id, a->child_pid, pool,
	       a->hit ? "hit, an idle child" : "miss, waited for a spawn");

	struct table t = { .ncols = 2, .align = "ll" };
	table_cell(&t, "VM");
	table_cell(&t, "%s", "");
	table_cell(&t, "  pid");
	table_cell(&t, "%u", vi->pid);
	table_cell(&t, "  kind");
	table_cell(&t, "%s", vi->kind);
	table_cell(&t, "  memory");
	table_cell(&t, "%u MiB", vi->memory_mib);
	table_cell(&t, "  vcpus");
	table_cell(&t, "%u", vi->vcpus);
	table_cell(&t, "  kvm_api_version");
	table_cell(&t, "%d", vi->kvm_api_version);
	table_cell(&t, "  irqchip");
	table_cell(&t, "%s", vi->irqchip ? "yes" : "no");
	table_cell(&t, "  pit");
	table_cell(&t, "%s", vi->pit ? "yes" : "no");
	table_cell(&t, "  cpuid_entries");
	table_cell(&t, "%u", vi->cpuid_entries);
	if (vi->n_guest_functions) { /* a booted VM (or one after a Load) */
		char fns[512];
		size_t n = 0;
		for (size_t i = 0; i < vi->n_guest_functions && n < sizeof(fns); i++)
			n += (size_t)snprintf(fns + n, sizeof(fns) - n, "%s%s", i ? " " : "",
					      vi->guest_functions[i]);
		table_cell(&t, "  guest functions");
		table_cell(&t, "%s", fns);
	}
	table_cell(&t, "%s", "");
	table_cell(&t, "%s", "");
	table_cell(&t, "JAIL (seen from inside)");
	table_cell(&t, "%s", vi->jailed ? "" : "NONE: hatcheryd runs with --no-jail");
	if (vi->jailed) {
		table_cell(&t, "  uid/gid");
		table_cell(&t, "%u/%u, %u supplementary groups", vi->uid, vi->gid,
			   vi->supplementary_groups);
		table_cell(&t, "  CapEff/CapPrm/CapInh");
		table_cell(&t, "%016llx %016llx %016llx",
			   (unsigned long long)vi->cap_eff,
			   (unsigned long long)vi->cap_prm,
			   (unsigned long long)vi->cap_inh);
		table_cell(&t, "  CapAmb/CapBnd");
		table_cell(&t, "%016llx %016llx", (unsigned long long)vi->cap_amb,
			   (unsigned long long)vi->cap_bnd);
		table_cell(&t, "  NoNewPrivs");
		table_cell(&t, "%d", vi->no_new_privs);
		table_cell(&t, "  Seccomp");
		table_cell(&t, "%u (%s)", vi->seccomp_mode,
			   vi->seccomp_mode == 2 ? vi->seccomp_action : "off");
		const struct { const char *n; uint64_t v; } ns[] = {
			{ "mnt", vi->ns_mnt }, { "pid", vi->ns_pid },
			{ "net", vi->ns_net }, { "ipc", vi->ns_ipc },
			{ "uts", vi->ns_uts }, { "cgroup", vi->ns_cgroup },
			{ "user", vi->ns_user },
		};
		for (size_t i = 0; i < HATCH_ARRAY_SIZE(ns); i++) {
			table_cell(&t, "  ns %s", ns[i].n);
			table_cell(&t, "%s:[%llu]", ns[i].n, (unsigned long long)ns[i].v);
		}
		table_cell(&t, "  cgroup");
		table_cell(&t, "%s", vi->cgroup);
		table_cell(&t, "  RLIMIT_NOFILE/NPROC");
		table_cell(&t, "%llu/%llu", (unsigned long long)vi->rlimit_nofile,
			   (unsigned long long)vi->rlimit_nproc);
		table_cell(&t, "  RLIMIT_FSIZE/CORE");
		table_cell(&t, "%llu/%llu", (unsigned long long)vi->rlimit_fsize,
			   (unsigned long long)vi->rlimit_core);
		table_cell(&t, "  RLIMIT_AS");
		if (vi->rlimit_as == UINT64_MAX)
			table_cell(&t, "unlimited");
		else
			table_cell(&t, "%llu MiB", (unsigned long long)(vi->rlimit_as >> 20));
	}
	int r = print_table(&t);
	if (r != HX_OK)
		return r;

	/* Two sections, one table, so their numbers line up. */
	putchar('\n');
	t = (struct table){ .ncols = 2, .align = "lr" };
	table_cell(&t, "SPAWN (fork to ready)");
	table_cell(&t, "µs");
	table_cell(&t, "  fork (clone3, namespaces)");
	table_cell(&t, "%.1f", ns_to_us(vi->fork_ns));
	table_cell(&t, "  child init");
	table_cell(&t, "%.1f", ns_to_us(vi->child_init_ns));
	if (vi->jailed) {
		table_cell(&t, "  jail: /proc");
		table_cell(&t, "%.1f", ns_to_us(vi->jail_proc_ns));
		table_cell(&t, "  jail: pivot_root");
		table_cell(&t, "%.1f", ns_to_us(vi->jail_pivot_ns));
		table_cell(&t, "  jail: uid, caps");
		table_cell(&t, "%.1f", ns_to_us(vi->jail_creds_ns));
		table_cell(&t, "  jail: rlimits, checks");
		table_cell(&t, "%.1f", ns_to_us(vi->jail_limits_ns));
		table_cell(&t, "  jail: seccomp");
		table_cell(&t, "%.1f", ns_to_us(vi->jail_seccomp_ns));
	}
	if (vi->guest_boot_ns) {
		table_cell(&t, "  guest boot (ELF to READY)");
		table_cell(&t, "%.1f", ns_to_us(vi->guest_boot_ns));
	}
	table_cell(&t, "  ready (total)");
	table_cell(&t, "%.1f", ns_to_us(vi->ready_ns));
	table_cell(&t, "%s", "");
	table_cell(&t, "%s", "");
	table_cell(&t, "SETUP (in the child)");
	table_cell(&t, "µs");
	table_cell(&t, "  create_vm");
	table_cell(&t, "%.1f", ns_to_us(vi->create_vm_ns));
	table_cell(&t, "  memory");
	table_cell(&t, "%.1f", ns_to_us(vi->memory_ns));
	table_cell(&t, "  irqchip");
	table_cell(&t, "%.1f", ns_to_us(vi->irqchip_ns));
	table_cell(&t, "  vcpus");
	table_cell(&t, "%.1f", ns_to_us(vi->vcpus_ns));
	table_cell(&t, "  total");
	table_cell(&t, "%.1f", ns_to_us(vi->create_vm_ns + vi->memory_ns +
					vi->irqchip_ns + vi->vcpus_ns));
	table_cell(&t, "%s", "");
	table_cell(&t, "%s", "");
	table_cell(&t, "STEPS (from here)");
	table_cell(&t, "µs");
	table_cell(&t, "  acquire");
	table_cell(&t, "%.1f", ns_to_us(tm->acquire));
	table_cell(&t, "    in hatcheryd");
	table_cell(&t, "%.1f", ns_to_us(a->wait_ns));
	table_cell(&t, "  first VM ping");
	table_cell(&t, "%.1f", ns_to_us(tm->ping));
	table_cell(&t, "  info");
	table_cell(&t, "%.1f", ns_to_us(tm->info));
	table_cell(&t, "  release");
	table_cell(&t, "%.1f", ns_to_us(tm->release));
	return print_table(&t);
}

/* The VM calls in the library wait forever; a wedged child must not hang a
 * script any more than a wedged daemon may, so -t is put on the socket. */
static int vm_set_timeout(int vm_fd, unsigned ms, struct hatch_err *err)
{
	if (!ms)
		return 0;
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = ms % 1000 * 1000 };
	if (setsockopt(vm_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(vm_fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		return hatch_err_set(err, E(INTERNAL), errno,
				     "set a timeout on the VM socket");
	return 0;
}

/* Say which step on which child failed; a recv that ran into the socket
 * timeout only reads "Resource temporarily unavailable", so name it. */
static int vm_step_failed(struct hatch_err *err, const char *step,
			  const Hatchery__V1__AcquireReply *a, unsigned timeout_ms,
			  uint64_t elapsed_ns)
{
	if (err->code == E(UNAVAILABLE) && timeout_ms &&
	    elapsed_ns >= (uint64_t)timeout_ms * 1000000u)
		hatch_err_wrap(err, "no reply within %u ms", timeout_ms);
	hatch_err_wrap(err, "%s on child %llu (pid %u)", step,
		       (unsigned long long)a->child_id, a->child_pid);
	return fail(err);
}

/* Lease a VM of `pool`, waiting up to deadline_ms, and give its socket a
 * timeout of vm_timeout_ms (0: none). Returns the VM's fd, or -1 with err
 * filled. *a is the caller's (hatch_free). When t_acquire is not NULL it
 * gets the acquire's own time. The supervisor connection is closed: the
 * lease lives on the VM's fd. */
static int lease_vm(const struct ctx *cx, const char *pool, uint32_t deadline_ms,
		    unsigned vm_timeout_ms, Hatchery__V1__AcquireReply **a,
		    uint64_t *t_acquire, struct hatch_err *err)
{
	struct hatch_client *c = NULL;
	if (connect_client(cx, &c, err) < 0)
		return -1;
	int vm_fd = -1;
	uint64_t t0 = now_ns();
	int r = hatch_acquire(c, pool, deadline_ms, &vm_fd, a, err);
	if (t_acquire)
		*t_acquire = now_ns() - t0;
	hatch_close(c);
	if (r < 0)
		return hatch_err_wrap(err, "acquire from pool %s", pool);
	if (vm_set_timeout(vm_fd, vm_timeout_ms, err) < 0) {
		close(vm_fd);
		return -1;
	}
	return vm_fd;
}

static int cmd_acquire(const struct ctx *cx, int argc, char **argv)
{
	struct cmd_opts o = { .deadline_ms = DEFAULT_DEADLINE_MS };
	int r = parse_cmd(argc, argv, acquire_opts, 1, "POOL", &o);
	if (r != HX_OK)
		return r;
	const char *pool = o.args[0];
	if (!*pool)
		return usage_error("acquire: POOL must not be empty");

	struct hatch_err err = { 0 };
	struct acquire_times tm = { 0 };
	Hatchery__V1__AcquireReply *a = NULL;
	Hatchery__V1__VmInfoReply *vi = NULL;
	_cleanup_close_ int vm_fd = lease_vm(cx, pool, o.deadline_ms, cx->timeout_ms, &a,
					     &tm.acquire, &err);
	if (vm_fd < 0) {
		r = fail(&err);
		goto out;
	}
	uint64_t t0 = now_ns();
	r = hatch_vm_ping(vm_fd, &err);
	tm.ping = now_ns() - t0;
	if (r < 0) {
		r = vm_step_failed(&err, "VM ping", a, cx->timeout_ms, tm.ping);
		goto out;
	}
	t0 = now_ns();
	r = hatch_vm_info(vm_fd, &vi, &err);
	tm.info = now_ns() - t0;
	if (r < 0) {
		r = vm_step_failed(&err, "VM info", a, cx->timeout_ms, tm.info);
		goto out;
	}
	t0 = now_ns();
	r = hatch_vm_release(steal_fd(&vm_fd), &err); /* closes the fd */
	tm.release = now_ns() - t0;
	if (r < 0) {
		r = vm_step_failed(&err, "VM release", a, cx->timeout_ms,
				   tm.release);
		goto out;
	}

	if (vi->child_id != a->child_id)
		fprintf(stderr,
			"%s: warning: the VM says it is child %llu, hatcheryd leased child %llu\n",
			prog, (unsigned long long)vi->child_id,
			(unsigned long long)a->child_id);
	if (o.json) {
		acquire_json(pool, a, vi, &tm);
		r = HX_OK;
	} else {
		r = acquire_text(pool, a, vi, &tm);
	}
	if (r == HX_OK)
		r = finish_stdout();
out:
	/* On a failed step vm_fd is still ours: closing it without Release
	 * makes the child tear down all the same. */
	hatch_free(vi);
	hatch_free(a);
	return r;
}

/* --- run ------------------------------------------------------------------ */

/* run POOL FUNCTION [PAYLOAD|-] [--deadline MS] [--hex] [--time]: lease a
 * VM of a booted pool, call one guest function, write its result to stdout
 * (raw bytes, or hex) and its log to stderr, release the VM. */
static int cmd_run(const struct ctx *cx, int argc, char **argv)
{
	unsigned deadline = 0;
	bool hex = false, timing = false;
	char *args[3];
	int nargs = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--deadline") == 0 && i + 1 < argc) {
			if (parse_ms(argv[++i], &deadline) < 0)
				return usage_error("run: --deadline wants milliseconds in 0..%u, not '%s'",
						   MAX_MS, argv[i]);
		} else if (strcmp(argv[i], "--hex") == 0) {
			hex = true;
		} else if (strcmp(argv[i], "--time") == 0) {
			timing = true;
		} else if (nargs < 3 && (argv[i][0] != '-' || strcmp(argv[i], "-") == 0)) {
			args[nargs++] = argv[i];
		} else {
			return usage_error("run: unexpected argument '%s'", argv[i]);
		}
	}
	if (nargs < 2)
		return usage_error("run: missing POOL FUNCTION");
	static uint8_t payload[RUN_PAYLOAD_MAX + 1]; /* + 1: to see that stdin is longer */
	size_t len = 0;
	if (nargs == 3 && strcmp(args[2], "-") == 0) {
		while (len < sizeof(payload)) {
			ssize_t n = read(0, payload + len, sizeof(payload) - len);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				fprintf(stderr, "%s: run: read stdin: %s\n", prog, strerror(errno));
				return HX_FAILED;
			}
			if (n == 0)
				break;
			len += (size_t)n;
		}
		/* Never call with a payload cut short: that is a wrong answer. */
		if (len > RUN_PAYLOAD_MAX)
			return usage_error("run: PAYLOAD on stdin longer than %zu bytes",
					   RUN_PAYLOAD_MAX);
	} else if (nargs == 3) {
		len = strlen(args[2]);
		if (len > RUN_PAYLOAD_MAX)
			return usage_error("run: PAYLOAD longer than %zu bytes", RUN_PAYLOAD_MAX);
		memcpy(payload, args[2], len);
	}

	struct hatch_err err = { 0 };
	/* The VM socket waits at least the call's own deadline. */
	unsigned to = cx->timeout_ms;
	if (to && deadline + 1000 > to)
		to = deadline + 1000;
	Hatchery__V1__AcquireReply *a = NULL;
	uint64_t t_acquire = 0;
	_cleanup_close_ int vm_fd = lease_vm(cx, args[0], DEFAULT_DEADLINE_MS, to, &a,
					     &t_acquire, &err);
	bool hit = a && a->hit;
	hatch_free(a);
	if (vm_fd < 0)
		return fail(&err);
	Hatchery__V1__VmCallReply *rep = NULL;
	uint64_t t0 = now_ns();
	int r = hatch_vm_call(vm_fd, args[1], payload, len, deadline, &rep, &err);
	uint64_t t_call = now_ns() - t0;
	if (r < 0) {
		hatch_err_wrap(&err, "%s", args[1]);
		return fail(&err);
	}
	if (rep->log.len)
		fprintf(stderr, "%.*s", (int)rep->log.len, (const char *)rep->log.data);
	if (rep->log_dropped)
		fprintf(stderr, "%s: %u log lines dropped\n", prog, rep->log_dropped);
	if (hex) {
		for (size_t i = 0; i < rep->result.len; i++)
			printf("%02x", rep->result.data[i]);
		putchar('\n');
	} else {
		fwrite(rep->result.data, 1, rep->result.len, stdout);
	}
	uint64_t run_ns = rep->run_ns;
	hatch_free(rep);
	t0 = now_ns();
	hatch_vm_release(steal_fd(&vm_fd), &err);
	uint64_t t_release = now_ns() - t0;
	/* The result first, then the times: in this order on a terminal. */
	int rc = finish_stdout();
	if (timing)
		fprintf(stderr,
			"%s: acquire %.1f µs (%s), call %.1f µs (guest %.1f µs), release %.1f µs\n",
			prog, ns_to_us(t_acquire), hit ? "hit" : "miss", ns_to_us(t_call),
			ns_to_us(run_ns), ns_to_us(t_release));
	return rc;
}

/* --- snapshot, restore ----------------------------------------------------- */

struct snap_args {
	const char *pool, *file;
	const char *fn, *payload; /* --call; fn NULL without it */
};

/* POOL FILE [--call FUNCTION PAYLOAD], for both commands. */
static int parse_snap_args(const char *cmd, int argc, char **argv, struct snap_args *a)
{
	const char *pos[2];
	int npos = 0;
	memset(a, 0, sizeof(*a));
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--call") == 0) {
			if (a->fn)
				return usage_error("%s: --call given twice", cmd);
			if (i + 2 >= argc)
				return usage_error("%s: --call wants FUNCTION PAYLOAD", cmd);
			a->fn = argv[++i];
			a->payload = argv[++i];
			if (!*a->fn)
				return usage_error("%s: --call: FUNCTION must not be empty", cmd);
			if (strlen(a->payload) > RUN_PAYLOAD_MAX)
				return usage_error("%s: --call: PAYLOAD longer than %zu bytes", cmd,
						   RUN_PAYLOAD_MAX);
		} else if (npos < 2 && argv[i][0] != '-') {
			pos[npos++] = argv[i];
		} else {
			return usage_error("%s: unexpected argument '%s'", cmd, argv[i]);
		}
	}
	if (npos < 2)
		return usage_error("%s: missing POOL FILE", cmd);
	if (!*pos[0] || !*pos[1])
		return usage_error("%s: POOL and FILE must not be empty", cmd);
	a->pool = pos[0];
	a->file = pos[1];
	return HX_OK;
}

/* --call: the result as (at most 64 bytes of) hex, the log on stderr. */
static int snap_call(int vm_fd, const struct snap_args *sa, struct hatch_err *err)
{
	Hatchery__V1__VmCallReply *rep = NULL;
	uint64_t t0 = now_ns();
	if (hatch_vm_call(vm_fd, sa->fn, sa->payload, strlen(sa->payload), 0, &rep, err) < 0)
		return hatch_err_wrap(err, "%s", sa->fn);
	uint64_t t = now_ns() - t0;
	if (rep->log.len)
		fprintf(stderr, "%.*s", (int)rep->log.len, (const char *)rep->log.data);
	printf("call %s: %zu bytes in %.1f µs (guest %.1f µs): ", sa->fn, rep->result.len,
	       ns_to_us(t), ns_to_us(rep->run_ns));
	for (size_t i = 0; i < rep->result.len && i < 64; i++)
		printf("%02x", rep->result.data[i]);
	printf("%s\n", rep->result.len > 64 ? "..." : "");
	hatch_free(rep);
	return 0;
}

/* snapshot POOL FILE [--call FUNCTION PAYLOAD] */
static int cmd_snapshot(const struct ctx *cx, int argc, char **argv)
{
	struct snap_args sa;
	int r = parse_snap_args("snapshot", argc, argv, &sa);
	if (r != HX_OK)
		return r;
	struct hatch_err err = { 0 };
	/* Opened before the lease: a bad path costs no VM. 0600, and fchmod
	 * for a file that existed: the snapshot is the guest's whole memory. */
	_cleanup_close_ int file = open(sa.file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (file < 0 || fchmod(file, 0600) < 0) {
		hatch_err_set(&err, E(INVALID_ARGUMENT), errno, "snapshot: open %s", sa.file);
		return fail(&err);
	}
	Hatchery__V1__AcquireReply *a = NULL;
	_cleanup_close_ int vm_fd = lease_vm(cx, sa.pool, DEFAULT_DEADLINE_MS,
					     cx->timeout_ms, &a, NULL, &err);
	hatch_free(a);
	if (vm_fd < 0)
		return fail(&err);
	if (sa.fn && snap_call(vm_fd, &sa, &err) < 0)
		return fail(&err);
	Hatchery__V1__VmSaveReply *sr = NULL;
	uint64_t t0 = now_ns();
	if (hatch_vm_save(vm_fd, file, &sr, &err) < 0) {
		hatch_err_wrap(&err, "save to %s", sa.file);
		return fail(&err);
	}
	uint64_t t = now_ns() - t0;
	struct stat st;
	if (fstat(file, &st) < 0) {
		hatch_free(sr);
		hatch_err_set(&err, E(INTERNAL), errno, "snapshot: stat %s", sa.file);
		return fail(&err);
	}
	printf("saved %s: %lld bytes (%llu reported)\n"
	       "save %.1f µs: vcpu state %.1f µs, vm state %.1f µs, memory write %.1f µs\n",
	       sa.file, (long long)st.st_size, (unsigned long long)sr->bytes_written,
	       ns_to_us(t), ns_to_us(sr->vcpu_state_ns), ns_to_us(sr->vm_state_ns),
	       ns_to_us(sr->memory_write_ns));
	hatch_free(sr);
	if (hatch_vm_release(steal_fd(&vm_fd), &err) < 0)
		return fail(&err);
	return finish_stdout();
}

/* restore POOL FILE [--call FUNCTION PAYLOAD] */
static int cmd_restore(const struct ctx *cx, int argc, char **argv)
{
	struct snap_args sa;
	int r = parse_snap_args("restore", argc, argv, &sa);
	if (r != HX_OK)
		return r;
	struct hatch_err err = { 0 };
	_cleanup_close_ int file = open(sa.file, O_RDONLY | O_CLOEXEC);
	if (file < 0) {
		hatch_err_set(&err, E(INVALID_ARGUMENT), errno, "restore: open %s", sa.file);
		return fail(&err);
	}
	Hatchery__V1__AcquireReply *a = NULL;
	_cleanup_close_ int vm_fd = lease_vm(cx, sa.pool, DEFAULT_DEADLINE_MS,
					     cx->timeout_ms, &a, NULL, &err);
	hatch_free(a);
	if (vm_fd < 0)
		return fail(&err);
	Hatchery__V1__VmRestoreReply *rr = NULL;
	uint64_t t0 = now_ns();
	if (hatch_vm_restore(vm_fd, file, &rr, &err) < 0) {
		hatch_err_wrap(&err, "restore %s", sa.file);
		return fail(&err);
	}
	uint64_t t = now_ns() - t0;
	printf("restored %s: %zu functions\n"
	       "restore %.1f µs: map %.1f µs, vm state %.1f µs, vcpu state %.1f µs\n",
	       sa.file, rr->n_functions, ns_to_us(t), ns_to_us(rr->map_ns),
	       ns_to_us(rr->vm_state_ns), ns_to_us(rr->vcpu_state_ns));
	hatch_free(rr);
	if (sa.fn && snap_call(vm_fd, &sa, &err) < 0)
		return fail(&err);
	if (hatch_vm_release(steal_fd(&vm_fd), &err) < 0)
		return fail(&err);
	return finish_stdout();
}

/* --- main ----------------------------------------------------------------- */

static int cmd_help(const struct ctx *cx, int argc, char **argv)
{
	if (argc > 1)
		return usage_error("help: unexpected argument '%s'", argv[1]);
	usage(stdout);
	return finish_stdout();
}

static const struct command {
	const char *name;
	int (*run)(const struct ctx *cx, int argc, char **argv);
} commands[] = {
	{ "status", cmd_status },
	{ "stats", cmd_stats },
	{ "ping", cmd_ping },
	{ "acquire", cmd_acquire },
	{ "run", cmd_run },
	{ "snapshot", cmd_snapshot },
	{ "restore", cmd_restore },
	{ "help", cmd_help },
};

int main(int argc, char **argv)
{
	static const struct option global_opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct ctx cx = { .timeout_ms = DEFAULT_TIMEOUT_MS };

	if (argc < 1)
		return HX_USAGE;
	argv[0] = prog;
	int c;
	/* "+": stop at the command; what follows is the command's. */
	while ((c = getopt_long(argc, argv, "+s:t:h", global_opts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (!*optarg)
				return usage_error("-s: empty socket path");
			cx.socket = optarg;
			break;
		case 't':
			if (parse_ms(optarg, &cx.timeout_ms) < 0)
				return usage_error("-t wants milliseconds in 0..%u, not '%s'",
						   MAX_MS, optarg);
			break;
		case 'h':
			usage(stdout);
			return finish_stdout();
		default: /* getopt has said what was wrong */
			fprintf(stderr, "Try 'hatchctl help'.\n");
			return HX_USAGE;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "%s: no command given\n\n", prog);
		usage(stderr);
		return HX_USAGE;
	}

	const char *name = argv[optind];
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(commands); i++)
		if (!strcmp(name, commands[i].name))
			return commands[i].run(&cx, argc - optind, argv + optind);
	return usage_error("unknown command '%s'", name);
}
