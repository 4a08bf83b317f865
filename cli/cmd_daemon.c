/* cmd_daemon.c - ping, status, stats, reload: the requests hatcheryd
 * answers itself, each printed as text for people or as one JSON object. */
#include <stdio.h>

#include "hatchery/clock.h"
#include "hatchery/cleanup.h"
#include "hatchctl.h"

static const struct option json_only_opts[] = {
	{ "json", no_argument, NULL, OPT_JSON },
	{ 0 },
};

/* --- ping ----------------------------------------------------------------- */

int cmd_ping(const struct hx_ctx *cx, int argc, char **argv)
{
	struct hx_opts o = { 0 };
	int r = hx_parse_cmd(argc, argv, json_only_opts, 0, NULL, &o);
	if (r != HX_OK)
		return r;

	struct hatch_err err = { 0 };
	struct hatch_client *c = NULL;
	if (hx_connect(cx, &c, &err) < 0)
		return hx_fail(&err);
	Hatchery__V1__PingReply *rep = NULL;
	uint64_t t0 = hatch_now_ns();
	r = hatch_ping(c, &rep, &err);
	uint64_t rtt = hatch_now_ns() - t0;
	hatch_close(c);
	if (r < 0)
		return hx_fail(&err);

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
		printf(", pid %u: round trip %.1f µs\n", rep->pid, hx_ns_to_us(rtt));
	}
	hatch_free(rep);
	return hx_finish_stdout();
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
		json_bool(&j, "removed", p->removed);
		json_u64(&j, "generation", p->generation);
		json_str(&j, "disk", p->disk);
		json_str(&j, "disk_mode", p->disk_mode);
		json_open(&j, "children", '[');
		for (size_t k = 0; k < p->n_children; k++) {
			const Hatchery__V1__ChildStatus *ch = p->children[k];
			json_open(&j, NULL, '{');
			json_u64(&j, "id", ch->id);
			json_u64(&j, "pid", ch->pid);
			json_str(&j, "state", ch->state);
			json_u64(&j, "age_ms", ch->age_ms);
			json_u64(&j, "disk_backend_pid", ch->disk_backend_pid);
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
	int jr = table_flush(&jt);
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
		table_cell(&t, "%s", p->removed ? "REMOVED" : p->degraded ? "DEGRADED" : "ok");
		table_cell(&t, "%s", *p->last_error ? p->last_error : "-");
		nchildren += p->n_children;
		truncated |= p->children_truncated;
	}
	int r = table_flush(&t);
	if (r != HX_OK || (!nchildren && !truncated))
		return r;

	putchar('\n');
	t = (struct table){ .ncols = 6, .align = "lrrllr" };
	table_cell(&t, "POOL");
	table_cell(&t, "CHILD");
	table_cell(&t, "PID");
	table_cell(&t, "STATE");
	table_cell(&t, "AGE");
	table_cell(&t, "DISK");
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
			if (ch->disk_backend_pid)
				table_cell(&t, "%u", ch->disk_backend_pid);
			else
				table_cell(&t, "%s", "-");
		}
	}
	r = table_flush(&t);
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
		json_u64(&j, "retired_max_age", p->retired_max_age);
		json_u64(&j, "retired_reload", p->retired_reload);
		json_u64(&j, "disk_backend_exits", p->disk_backend_exits);
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
	table_cell(t, "%.1f", hx_ns_to_us(l->p50));
	table_cell(t, "%.1f", hx_ns_to_us(l->p90));
	table_cell(t, "%.1f", hx_ns_to_us(l->p99));
	table_cell(t, "%.1f", hx_ns_to_us(l->max));
}

static int stats_text(const Hatchery__V1__StatsReply *st)
{
	if (!st->n_pools) {
		printf("no pools\n");
		return HX_OK;
	}
	struct table t = { .ncols = 12, .align = "lrrrrrrrrrrr" };
	const char *hdr[] = { "POOL", "ACQUIRED", "HITS", "MISSES", "SPAWNED",
			      "SPAWN_FAIL", "UNEXP_EXIT", "HEALTH_FAIL",
			      "SECCOMP_KILL", "RETIRED_AGE", "RETIRED_RELOAD",
			      "LEASED" };
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
		table_cell(&t, "%llu", (unsigned long long)p->retired_max_age);
		table_cell(&t, "%llu", (unsigned long long)p->retired_reload);
		table_cell(&t, "%u", p->active_leases);
	}
	int r = table_flush(&t);
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
	return table_flush(&t);
}

/* status and stats: one request, one reply, printed as JSON or as text. */
struct query {
	int (*fetch)(struct hatch_client *c, void **out, struct hatch_err *err);
	void (*json)(const void *reply);
	int (*text)(const void *reply);
};

static int run_query(const struct hx_ctx *cx, const struct hx_opts *o,
		     const struct query *q)
{
	struct hatch_err err = { 0 };
	struct hatch_client *c = NULL;
	if (hx_connect(cx, &c, &err) < 0)
		return hx_fail(&err);
	void *reply = NULL;
	int r = q->fetch(c, &reply, &err);
	hatch_close(c);
	if (r < 0)
		return hx_fail(&err);

	if (o->json) {
		q->json(reply);
		r = HX_OK;
	} else {
		r = q->text(reply);
	}
	hatch_free(reply);
	return r != HX_OK ? r : hx_finish_stdout();
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

int cmd_status(const struct hx_ctx *cx, int argc, char **argv)
{
	static const struct query q = { fetch_status, status_json_any, status_text_any };
	struct hx_opts o = { 0 };
	int r = hx_parse_cmd(argc, argv, json_only_opts, 0, NULL, &o);
	return r != HX_OK ? r : run_query(cx, &o, &q);
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

/* --prometheus: Status and Stats on one connection, one after the other
 * (the gauges of the one and the counters of the other), written as one
 * exposition for a textfile collector or a scrape wrapper. */
static int stats_prometheus(const struct hx_ctx *cx)
{
	struct hatch_err err = { 0 };
	struct hatch_client *c = NULL;
	if (hx_connect(cx, &c, &err) < 0)
		return hx_fail(&err);
	Hatchery__V1__StatusReply *status = NULL;
	Hatchery__V1__StatsReply *stats = NULL;
	int r = hatch_status(c, &status, &err);
	if (r == 0)
		r = hatch_stats(c, &stats, &err);
	hatch_close(c);
	if (r < 0) {
		hatch_free(status);
		return hx_fail(&err);
	}
	prom_write(stdout, status, stats);
	hatch_free(status);
	hatch_free(stats);
	return hx_finish_stdout();
}

int cmd_stats(const struct hx_ctx *cx, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, OPT_JSON },
		{ "prometheus", no_argument, NULL, OPT_PROMETHEUS },
		{ 0 },
	};
	static const struct query q = { fetch_stats, stats_json_any, stats_text_any };
	struct hx_opts o = { 0 };
	int r = hx_parse_cmd(argc, argv, opts, 0, NULL, &o);
	if (r != HX_OK)
		return r;
	if (o.json && o.prometheus)
		return hx_usage_error("stats: --json and --prometheus exclude each other");
	return o.prometheus ? stats_prometheus(cx) : run_query(cx, &o, &q);
}

/* --- reload --------------------------------------------------------------- */

int cmd_reload(const struct hx_ctx *cx, int argc, char **argv)
{
	struct hx_opts o = { 0 };
	int r = hx_parse_cmd(argc, argv, json_only_opts, 0, NULL, &o);
	if (r != HX_OK)
		return r;

	struct hatch_err err = { 0 };
	struct hatch_client *c = NULL;
	if (hx_connect(cx, &c, &err) < 0)
		return hx_fail(&err);
	Hatchery__V1__ReloadReply *rep = NULL;
	r = hatch_reload(c, &rep, &err);
	hatch_close(c);
	if (r < 0)
		return hx_fail(&err);
	if (o.json) {
		struct json j = { 0 };
		json_open(&j, NULL, '{');
		json_str(&j, "summary", rep->summary);
		json_close(&j, '}');
		putchar('\n');
	} else {
		fputs("reloaded: ", stdout);
		put_clean(rep->summary);
		putchar('\n');
	}
	hatch_free(rep);
	return hx_finish_stdout();
}
