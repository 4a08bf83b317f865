/* test_prometheus.c - hatchctl's Prometheus formatter (cli/out_prom.c)
 * against hand-built Status and Stats replies: the exact text, the
 * escaping of label values, and histograms with and without the daemon's
 * bands. promtool's verdict on real output is the cli suite's
 * (tests/integration/test_cli.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "hatchctl.h"

/* Run prom_write into memory; the caller frees the text. */
static char *render(const Hatchery__V1__StatusReply *status,
		    const Hatchery__V1__StatsReply *stats)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	cr_assert_not_null(f);
	prom_write(f, status, stats);
	cr_assert_eq(fclose(f), 0);
	return buf;
}

/* The line that starts with `prefix` (up to its newline), or "" if none:
 * enough to check one sample without pinning the whole text. */
static char *line_of(const char *text, const char *prefix)
{
	static char line[512];
	size_t plen = strlen(prefix);
	for (const char *s = text; s && *s; s = strchr(s, '\n'), s = s ? s + 1 : NULL) {
		if (!strncmp(s, prefix, plen)) {
			size_t n = strcspn(s, "\n");
			cr_assert_lt(n, sizeof(line));
			memcpy(line, s, n);
			line[n] = '\0';
			return line;
		}
	}
	line[0] = '\0';
	return line;
}

Test(prometheus, no_pools_is_families_only)
{
	Hatchery__V1__StatusReply st = HATCHERY__V1__STATUS_REPLY__INIT;
	Hatchery__V1__StatsReply ss = HATCHERY__V1__STATS_REPLY__INIT;
	st.uptime_ms = 61005;
	char *out = render(&st, &ss);
	cr_assert_str_eq(line_of(out, "hatchery_uptime_seconds "),
			 "hatchery_uptime_seconds 61.005");
	/* Every line is a comment or that one sample. */
	size_t samples = 0;
	for (const char *s = out; *s; s = strchr(s, '\n') + 1)
		if (*s != '#')
			samples++;
	cr_assert_eq(samples, 1, "%s", out);
	cr_assert_not_null(strstr(out, "# TYPE hatchery_acquisitions_total counter\n"));
	cr_assert_not_null(strstr(out, "# TYPE hatchery_acquire_duration_seconds histogram\n"));
	free(out);
}

Test(prometheus, one_pool_exact)
{
	Hatchery__V1__PoolStatus ps = HATCHERY__V1__POOL_STATUS__INIT;
	ps.name = (char *)"p";
	ps.kind = (char *)"booted";
	ps.reuse = (char *)"snapshot";
	ps.idle = 2;
	ps.leased = 1;
	ps.spawning = 3;
	ps.waiting = 4;
	ps.min_idle = 2;
	ps.max = 8;
	ps.degraded = true;
	Hatchery__V1__PoolStatus *psp = &ps;
	Hatchery__V1__StatusReply st = HATCHERY__V1__STATUS_REPLY__INIT;
	st.uptime_ms = 1000;
	st.n_pools = 1;
	st.pools = &psp;

	uint64_t le_ns[] = { 1000000, 2500000, 1000000000 };
	uint64_t acq_le[] = { 5, 6, 6 };
	Hatchery__V1__Latency acq = HATCHERY__V1__LATENCY__INIT;
	acq.count = 7;
	acq.sum_ns = 1500000001;
	acq.max = 1200000000;
	acq.n_le_counts = 3;
	acq.le_counts = acq_le;
	Hatchery__V1__PoolStats pst = HATCHERY__V1__POOL_STATS__INIT;
	pst.name = (char *)"p";
	pst.acquisitions = 7;
	pst.hits = 5;
	pst.misses = 2;
	pst.spawned = 9;
	pst.spawn_failures = 1;
	pst.unexpected_exits = 2;
	pst.health_failures = 3;
	pst.seccomp_kills = 4;
	pst.resets = 5;
	pst.acquire = &acq; /* spawn_to_ready absent: no samples */
	Hatchery__V1__PoolStats *pstp = &pst;
	Hatchery__V1__StatsReply ss = HATCHERY__V1__STATS_REPLY__INIT;
	ss.n_pools = 1;
	ss.pools = &pstp;
	ss.n_latency_le_ns = 3;
	ss.latency_le_ns = le_ns;

	char *out = render(&st, &ss);
	const char *want =
"# HELP hatchery_uptime_seconds Time since hatcheryd started.\n"
"# TYPE hatchery_uptime_seconds gauge\n"
"hatchery_uptime_seconds 1\n"
"# HELP hatchery_pool_info A pool's kind and reuse mode, as labels; always 1.\n"
"# TYPE hatchery_pool_info gauge\n"
"hatchery_pool_info{pool=\"p\",kind=\"booted\",reuse=\"snapshot\"} 1\n"
"# HELP hatchery_vms VMs of a pool by state: idle (ready to lease), leased, spawning.\n"
"# TYPE hatchery_vms gauge\n"
"hatchery_vms{pool=\"p\",state=\"idle\"} 2\n"
"hatchery_vms{pool=\"p\",state=\"leased\"} 1\n"
"hatchery_vms{pool=\"p\",state=\"spawning\"} 3\n"
"# HELP hatchery_waiting_acquires Acquire requests queued for a VM of the pool.\n"
"# TYPE hatchery_waiting_acquires gauge\n"
"hatchery_waiting_acquires{pool=\"p\"} 4\n"
"# HELP hatchery_pool_min_idle_vms The pool's min_idle setting: idle VMs it keeps ready.\n"
"# TYPE hatchery_pool_min_idle_vms gauge\n"
"hatchery_pool_min_idle_vms{pool=\"p\"} 2\n"
"# HELP hatchery_pool_max_vms The pool's max setting: VMs it may hold in all.\n"
"# TYPE hatchery_pool_max_vms gauge\n"
"hatchery_pool_max_vms{pool=\"p\"} 8\n"
"# HELP hatchery_pool_degraded 1 while repeated spawn failures hold the pool in backoff, else 0.\n"
"# TYPE hatchery_pool_degraded gauge\n"
"hatchery_pool_degraded{pool=\"p\"} 1\n"
"# HELP hatchery_acquisitions_total Successful Acquire replies.\n"
"# TYPE hatchery_acquisitions_total counter\n"
"hatchery_acquisitions_total{pool=\"p\"} 7\n"
"# HELP hatchery_acquire_hits_total Acquires served from an idle VM.\n"
"# TYPE hatchery_acquire_hits_total counter\n"
"hatchery_acquire_hits_total{pool=\"p\"} 5\n"
"# HELP hatchery_acquire_misses_total Acquires that had to wait for a spawn, or failed with POOL_EXHAUSTED.\n"
"# TYPE hatchery_acquire_misses_total counter\n"
"hatchery_acquire_misses_total{pool=\"p\"} 2\n"
"# HELP hatchery_spawns_total VM processes forked.\n"
"# TYPE hatchery_spawns_total counter\n"
"hatchery_spawns_total{pool=\"p\"} 9\n"
"# HELP hatchery_spawn_failures_total VM processes that failed before reporting ready.\n"
"# TYPE hatchery_spawn_failures_total counter\n"
"hatchery_spawn_failures_total{pool=\"p\"} 1\n"
"# HELP hatchery_unexpected_exits_total Idle or leased VM processes that died unasked.\n"
"# TYPE hatchery_unexpected_exits_total counter\n"
"hatchery_unexpected_exits_total{pool=\"p\"} 2\n"
"# HELP hatchery_health_check_failures_total VM processes killed for missing a health check.\n"
"# TYPE hatchery_health_check_failures_total counter\n"
"hatchery_health_check_failures_total{pool=\"p\"} 3\n"
"# HELP hatchery_seccomp_kills_total VM processes killed by their seccomp filter (also counted as unexpected exits or spawn failures).\n"
"# TYPE hatchery_seccomp_kills_total counter\n"
"hatchery_seccomp_kills_total{pool=\"p\"} 4\n"
"# HELP hatchery_resets_total Leases after which the VM reset itself to its snapshot and went back to idle (reuse = snapshot).\n"
"# TYPE hatchery_resets_total counter\n"
"hatchery_resets_total{pool=\"p\"} 5\n"
"# HELP hatchery_retired_max_age_total Idle VM processes retired for being older than max_idle_age_ms (and replaced).\n"
"# TYPE hatchery_retired_max_age_total counter\n"
"hatchery_retired_max_age_total{pool=\"p\"} 0\n"
"# HELP hatchery_retired_reload_total Idle VM processes retired by a reload (their pool removed or rebuilt).\n"
"# TYPE hatchery_retired_reload_total counter\n"
"hatchery_retired_reload_total{pool=\"p\"} 0\n"
"# HELP hatchery_disk_backend_exits_total Disk backends that exited while their VM lived (each ended its VM).\n"
"# TYPE hatchery_disk_backend_exits_total counter\n"
"hatchery_disk_backend_exits_total{pool=\"p\"} 0\n"
"# HELP hatchery_acquire_duration_seconds Acquire latency: request received to VM fd sent.\n"
"# TYPE hatchery_acquire_duration_seconds histogram\n"
"hatchery_acquire_duration_seconds_bucket{pool=\"p\",le=\"0.001\"} 5\n"
"hatchery_acquire_duration_seconds_bucket{pool=\"p\",le=\"0.0025\"} 6\n"
"hatchery_acquire_duration_seconds_bucket{pool=\"p\",le=\"1\"} 6\n"
"hatchery_acquire_duration_seconds_bucket{pool=\"p\",le=\"+Inf\"} 7\n"
"hatchery_acquire_duration_seconds_sum{pool=\"p\"} 1.500000001\n"
"hatchery_acquire_duration_seconds_count{pool=\"p\"} 7\n"
"# HELP hatchery_spawn_to_ready_seconds Spawn latency: fork to the VM's Ready message.\n"
"# TYPE hatchery_spawn_to_ready_seconds histogram\n"
"hatchery_spawn_to_ready_seconds_bucket{pool=\"p\",le=\"+Inf\"} 0\n"
"hatchery_spawn_to_ready_seconds_sum{pool=\"p\"} 0\n"
"hatchery_spawn_to_ready_seconds_count{pool=\"p\"} 0\n"
"# HELP hatchery_acquire_duration_max_seconds Longest acquire since hatcheryd started.\n"
"# TYPE hatchery_acquire_duration_max_seconds gauge\n"
"hatchery_acquire_duration_max_seconds{pool=\"p\"} 1.2\n"
"# HELP hatchery_spawn_to_ready_max_seconds Longest fork-to-Ready since hatcheryd started.\n"
"# TYPE hatchery_spawn_to_ready_max_seconds gauge\n"
"hatchery_spawn_to_ready_max_seconds{pool=\"p\"} 0\n";
	cr_assert_str_eq(out, want);
	free(out);
}

/* A daemon that sends no bands (older), or counts that do not match the
 * edges: only le="+Inf", which is always right. */
Test(prometheus, histogram_without_bands)
{
	uint64_t le_ns[] = { 1000, 2000 };
	uint64_t one[] = { 1 };
	Hatchery__V1__Latency acq = HATCHERY__V1__LATENCY__INIT;
	acq.count = 3;
	acq.sum_ns = 1;
	acq.n_le_counts = 1; /* two edges, one count */
	acq.le_counts = one;
	Hatchery__V1__PoolStats pst = HATCHERY__V1__POOL_STATS__INIT;
	pst.name = (char *)"p";
	pst.acquire = &acq;
	Hatchery__V1__PoolStats *pstp = &pst;
	Hatchery__V1__StatsReply ss = HATCHERY__V1__STATS_REPLY__INIT;
	ss.n_pools = 1;
	ss.pools = &pstp;
	ss.n_latency_le_ns = 2;
	ss.latency_le_ns = le_ns;
	Hatchery__V1__StatusReply st = HATCHERY__V1__STATUS_REPLY__INIT;

	char *out = render(&st, &ss);
	cr_assert_null(strstr(out, "le=\"0.000001\""), "%s", out);
	cr_assert_str_eq(line_of(out, "hatchery_acquire_duration_seconds_bucket"),
			 "hatchery_acquire_duration_seconds_bucket{pool=\"p\",le=\"+Inf\"} 3");
	cr_assert_str_eq(line_of(out, "hatchery_acquire_duration_seconds_sum"),
			 "hatchery_acquire_duration_seconds_sum{pool=\"p\"} 0.000000001");
	free(out);
}

/* Names come off the wire: \, " and newline escaped, bad UTF-8 replaced,
 * good UTF-8 kept. */
Test(prometheus, label_values_escaped)
{
	Hatchery__V1__PoolStatus ps = HATCHERY__V1__POOL_STATUS__INIT;
	ps.name = (char *)"a\\b\"c\nd\xff\xc3\xa9";
	ps.kind = (char *)"k\"";
	ps.reuse = (char *)"";
	Hatchery__V1__PoolStatus *psp = &ps;
	Hatchery__V1__StatusReply st = HATCHERY__V1__STATUS_REPLY__INIT;
	st.n_pools = 1;
	st.pools = &psp;
	Hatchery__V1__StatsReply ss = HATCHERY__V1__STATS_REPLY__INIT;

	char *out = render(&st, &ss);
	cr_assert_str_eq(line_of(out, "hatchery_pool_info{"),
			 "hatchery_pool_info{pool=\"a\\\\b\\\"c\\nd\xef\xbf\xbd\xc3\xa9\","
			 "kind=\"k\\\"\",reuse=\"\"} 1");
	cr_assert_str_eq(line_of(out, "hatchery_pool_degraded{"),
			 "hatchery_pool_degraded{pool=\"a\\\\b\\\"c\\nd\xef\xbf\xbd\xc3\xa9\"} 0");
	free(out);
}
