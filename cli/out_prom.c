/* out_prom.c - the Status and Stats replies in the Prometheus text
 * exposition format, version 0.0.4 (`hatchctl stats --prometheus`).
 *
 * Pure: it writes to the FILE it is given and touches nothing else, so
 * tests/unit/test_prometheus.c checks it byte for byte. Every family gets
 * # HELP and # TYPE; counters end in _total; times are in seconds, written
 * as exact decimals of the daemon's integer ns/ms (no float rounding). The
 * latencies are histograms on the daemon's exact decimal bands
 * (StatsReply.latency_le_ns). The p50/p90/p99 the daemon also sends are
 * left out: histogram_quantile() derives them, and a summary beside a
 * histogram of the same samples would only be a second name for them.
 * PoolStats.active_leases is hatchery_vms{state="leased"} read a moment
 * later, so it is not written twice either. */
#include <inttypes.h>
#include <stdio.h>

#include "hatchery/cleanup.h"
#include "hatchctl.h"

/* The offset of field F of message T, which must be of type TYPE: the
 * tables below read fields through these, and a field whose type changed
 * would otherwise be read with the wrong width without a word. */
#define FIELD_AT(T, F, TYPE) _Generic(((T *)0)->F, TYPE: offsetof(T, F))
#define STATUS_U32(F) FIELD_AT(Hatchery__V1__PoolStatus, F, uint32_t)
#define STATS_U64(F) FIELD_AT(Hatchery__V1__PoolStats, F, uint64_t)
#define STATS_LAT(F) FIELD_AT(Hatchery__V1__PoolStats, F, Hatchery__V1__Latency *)

/* v / 10^digits as a decimal without trailing zeros: 1500 ms, 3 -> "1.5". */
static void put_decimal(FILE *f, uint64_t v, unsigned digits)
{
	uint64_t scale = 1;
	for (unsigned i = 0; i < digits; i++)
		scale *= 10;
	uint64_t frac = v % scale;
	fprintf(f, "%" PRIu64, v / scale);
	if (!frac)
		return;
	char buf[24];
	snprintf(buf, sizeof(buf), "%0*" PRIu64, (int)digits, frac);
	size_t n = digits;
	while (n > 0 && buf[n - 1] == '0')
		n--;
	fprintf(f, ".%.*s", (int)n, buf);
}

/* A label value: \, " and newline escaped as the format asks, and bytes
 * that are not UTF-8 (the wire is not trusted) as U+FFFD. */
static void put_label_value(FILE *f, const char *v)
{
	const unsigned char *s = (const unsigned char *)(v ? v : "");
	while (*s) {
		switch (*s) {
		case '\\': fputs("\\\\", f); s++; continue;
		case '"':  fputs("\\\"", f); s++; continue;
		case '\n': fputs("\\n", f); s++; continue;
		}
		size_t n = hx_utf8_seq_len(s);
		if (!n) {
			fputs("\xef\xbf\xbd", f);
			s++;
			continue;
		}
		fwrite(s, 1, n, f);
		s += n;
	}
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* `name{pool="POOL"` with the brace left open for more labels. */
static void open_sample(FILE *f, const char *name, const char *pool)
{
	fprintf(f, "%s{pool=\"", name);
	put_label_value(f, pool);
	fputc('"', f);
}

static void sample_u64(FILE *f, const char *name, const char *pool, uint64_t v)
{
	open_sample(f, name, pool);
	fprintf(f, "} %" PRIu64 "\n", v);
}

/* --- Status: gauges -------------------------------------------------------- */

static void write_status(FILE *f, const Hatchery__V1__StatusReply *st)
{
	family(f, "hatchery_uptime_seconds", "gauge", "Time since hatcheryd started.");
	fputs("hatchery_uptime_seconds ", f);
	put_decimal(f, st->uptime_ms, 3);
	fputc('\n', f);

	family(f, "hatchery_pool_info", "gauge",
	       "A pool's kind and reuse mode, as labels; always 1.");
	for (size_t i = 0; i < st->n_pools; i++) {
		const Hatchery__V1__PoolStatus *p = st->pools[i];
		open_sample(f, "hatchery_pool_info", p->name);
		fputs(",kind=\"", f);
		put_label_value(f, p->kind);
		fputs("\",reuse=\"", f);
		put_label_value(f, p->reuse);
		fputs("\"} 1\n", f);
	}

	family(f, "hatchery_vms", "gauge",
	       "VMs of a pool by state: idle (ready to lease), leased, spawning.");
	for (size_t i = 0; i < st->n_pools; i++) {
		const Hatchery__V1__PoolStatus *p = st->pools[i];
		const struct { const char *state; uint32_t n; } by_state[] = {
			{ "idle", p->idle }, { "leased", p->leased },
			{ "spawning", p->spawning },
		};
		for (size_t k = 0; k < HATCH_ARRAY_SIZE(by_state); k++) {
			open_sample(f, "hatchery_vms", p->name);
			fprintf(f, ",state=\"%s\"} %" PRIu32 "\n", by_state[k].state,
				by_state[k].n);
		}
	}

	static const struct {
		const char *name, *help;
		size_t off; /* of a uint32_t in PoolStatus */
	} gauges[] = {
		{ "hatchery_waiting_acquires",
		  "Acquire requests queued for a VM of the pool.",
		  STATUS_U32(waiting) },
		{ "hatchery_pool_min_idle_vms",
		  "The pool's min_idle setting: idle VMs it keeps ready.",
		  STATUS_U32(min_idle) },
		{ "hatchery_pool_max_vms",
		  "The pool's max setting: VMs it may hold in all.",
		  STATUS_U32(max) },
	};
	for (size_t g = 0; g < HATCH_ARRAY_SIZE(gauges); g++) {
		family(f, gauges[g].name, "gauge", gauges[g].help);
		for (size_t i = 0; i < st->n_pools; i++) {
			const Hatchery__V1__PoolStatus *p = st->pools[i];
			const uint32_t *v = (const uint32_t *)((const char *)p + gauges[g].off);
			sample_u64(f, gauges[g].name, p->name, *v);
		}
	}

	family(f, "hatchery_pool_degraded", "gauge",
	       "1 while repeated spawn failures hold the pool in backoff, else 0.");
	for (size_t i = 0; i < st->n_pools; i++)
		sample_u64(f, "hatchery_pool_degraded", st->pools[i]->name,
			   st->pools[i]->degraded ? 1 : 0);
}

/* --- Stats: counters and histograms ----------------------------------------- */

static void write_histogram(FILE *f, const char *name, const char *help,
			    const Hatchery__V1__StatsReply *st, size_t lat_off)
{
	char bucket[96], sum[96], count[96];
	snprintf(bucket, sizeof(bucket), "%s_bucket", name);
	snprintf(sum, sizeof(sum), "%s_sum", name);
	snprintf(count, sizeof(count), "%s_count", name);
	family(f, name, "histogram", help);
	for (size_t i = 0; i < st->n_pools; i++) {
		const Hatchery__V1__PoolStats *p = st->pools[i];
		const Hatchery__V1__Latency *l =
			*(Hatchery__V1__Latency *const *)((const char *)p + lat_off);
		uint64_t n = l ? l->count : 0, sum_ns = l ? l->sum_ns : 0;
		/* A daemon without the bands (older, or a reply that does not
		 * add up) still gets a valid histogram: only +Inf. */
		size_t nb = l && l->n_le_counts == st->n_latency_le_ns ? l->n_le_counts : 0;
		for (size_t b = 0; b < nb; b++) {
			open_sample(f, bucket, p->name);
			fputs(",le=\"", f);
			put_decimal(f, st->latency_le_ns[b], 9);
			fprintf(f, "\"} %" PRIu64 "\n", l->le_counts[b]);
		}
		open_sample(f, bucket, p->name);
		fprintf(f, ",le=\"+Inf\"} %" PRIu64 "\n", n);
		open_sample(f, sum, p->name);
		fputs("} ", f);
		put_decimal(f, sum_ns, 9);
		fputc('\n', f);
		sample_u64(f, count, p->name, n);
	}
}

static void write_max(FILE *f, const char *name, const char *help,
		      const Hatchery__V1__StatsReply *st, size_t lat_off)
{
	family(f, name, "gauge", help);
	for (size_t i = 0; i < st->n_pools; i++) {
		const Hatchery__V1__PoolStats *p = st->pools[i];
		const Hatchery__V1__Latency *l =
			*(Hatchery__V1__Latency *const *)((const char *)p + lat_off);
		open_sample(f, name, p->name);
		fputs("} ", f);
		put_decimal(f, l ? l->max : 0, 9);
		fputc('\n', f);
	}
}

static void write_stats(FILE *f, const Hatchery__V1__StatsReply *st)
{
	static const struct {
		const char *name, *help;
		size_t off; /* of a uint64_t in PoolStats */
	} counters[] = {
		{ "hatchery_acquisitions_total", "Successful Acquire replies.",
		  STATS_U64(acquisitions) },
		{ "hatchery_acquire_hits_total", "Acquires served from an idle VM.",
		  STATS_U64(hits) },
		{ "hatchery_acquire_misses_total",
		  "Acquires that had to wait for a spawn, or failed with POOL_EXHAUSTED.",
		  STATS_U64(misses) },
		{ "hatchery_spawns_total", "VM processes forked.",
		  STATS_U64(spawned) },
		{ "hatchery_spawn_failures_total",
		  "VM processes that failed before reporting ready.",
		  STATS_U64(spawn_failures) },
		{ "hatchery_unexpected_exits_total",
		  "Idle or leased VM processes that died unasked.",
		  STATS_U64(unexpected_exits) },
		{ "hatchery_health_check_failures_total",
		  "VM processes killed for missing a health check.",
		  STATS_U64(health_failures) },
		{ "hatchery_seccomp_kills_total",
		  "VM processes killed by their seccomp filter (also counted as unexpected exits or spawn failures).",
		  STATS_U64(seccomp_kills) },
		{ "hatchery_resets_total",
		  "Leases after which the VM reset itself to its snapshot and went back to idle (reuse = snapshot).",
		  STATS_U64(resets) },
		{ "hatchery_retired_max_age_total",
		  "Idle VM processes retired for being older than max_idle_age_ms (and replaced).",
		  STATS_U64(retired_max_age) },
		{ "hatchery_retired_reload_total",
		  "Idle VM processes retired by a reload (their pool removed or rebuilt).",
		  STATS_U64(retired_reload) },
		{ "hatchery_disk_backend_exits_total",
		  "Disk backends that exited while their VM lived (each ended its VM).",
		  STATS_U64(disk_backend_exits) },
	};
	for (size_t c = 0; c < HATCH_ARRAY_SIZE(counters); c++) {
		family(f, counters[c].name, "counter", counters[c].help);
		for (size_t i = 0; i < st->n_pools; i++) {
			const Hatchery__V1__PoolStats *p = st->pools[i];
			const uint64_t *v = (const uint64_t *)((const char *)p + counters[c].off);
			sample_u64(f, counters[c].name, p->name, *v);
		}
	}

	const size_t acq = STATS_LAT(acquire);
	const size_t spr = STATS_LAT(spawn_to_ready);
	write_histogram(f, "hatchery_acquire_duration_seconds",
			"Acquire latency: request received to VM fd sent.", st, acq);
	write_histogram(f, "hatchery_spawn_to_ready_seconds",
			"Spawn latency: fork to the VM's Ready message.", st, spr);
	write_max(f, "hatchery_acquire_duration_max_seconds",
		  "Longest acquire since hatcheryd started.", st, acq);
	write_max(f, "hatchery_spawn_to_ready_max_seconds",
		  "Longest fork-to-Ready since hatcheryd started.", st, spr);
}

void prom_write(FILE *f, const Hatchery__V1__StatusReply *status,
		const Hatchery__V1__StatsReply *stats)
{
	write_status(f, status);
	write_stats(f, stats);
}
