/* report.c - the figures beside their targets: a table on stdout and one
 * JSON object in a file.
 *
 * The targets are in one table, targets[] below; a figure either meets its
 * target (PASS) or not (MISS), and the ratio figure/target says by how much.
 * A few figures sit in that table for information only (verdict "info",
 * no target): they are read beside the targets but a target would judge
 * something else than they measure; the notes under the table say why.
 * A benchmark reports, it does not fail: a MISS does not change the exit
 * status. A target whose figure is missing (its phase could not run) shows
 * as "n/a" with the phase's error listed at the end.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

enum cmp {
	AT_MOST,  /* pass when figure <= limit */
	AT_LEAST, /* pass when figure >= limit */
	INFO,     /* no target: the figure is shown, not judged */
};

struct target {
	int m;             /* measurement number, as in scripts/bench's usage */
	const char *row;   /* row name */
	const char *stat;  /* p50, p99, value */
	double limit;      /* unused for INFO */
	enum cmp cmp;
	const char *what;  /* [a], [b], [c]: the notes under the table */
};

/* Row names of the spawn -> ready comparison: hatcheryd's own histogram
 * in a pool of min_idle=1, max=1 (scripts/bench, measurement 2), once
 * jailed and once with --no-jail; JAIL_COST is derived from the two. */
#define SPAWN_JAILED "spawn_to_ready.daemon.1"
#define SPAWN_NOJAIL "spawn_to_ready.daemon.1nojail"
#define JAIL_COST "jail_cost.1"

/* Booted pools (measurements 7-9). ECHO8: acquire + echo from a full pool
 * of 8; COLD: the same from a pool of min_idle=0, max=1, every acquisition
 * waiting for a spawn; COLD_SPAWN: that pool's spawn -> ready histogram. */
#define ECHO8 "acquire_echo.booted8"
#define COLD "acquire_echo.cold"
#define COLD_SPAWN "spawn_to_ready.daemon.cold"
#define COLD_SUM "cold_path_sum"
#define COLD_VS_QEMU "cold_vs_qemu"

/* Published figures of a peer, quoted beside ours, not measured here:
 * mimobox docs/performance.md (github.com/showkw/mimobox), "microVM warm
 * pool hot path", before pool.acquire() to after pooled.execute(echo)
 * returns, P50; and its "microVM cold start", before create_vm() to after
 * run_command(echo) returns (create, boot, execute, shutdown), P50. */
#define MIMOBOX_ECHO "ref.mimobox.acquire_echo"
#define MIMOBOX_ECHO_US 773.0
#define MIMOBOX_COLD "ref.mimobox.cold"
#define MIMOBOX_COLD_US 253000.0
#define MIMOBOX_SOURCE "published in github.com/showkw/mimobox docs/performance.md, not measured here"

/* Snapshots (measurements 10-13). */
#define RLEASE "acquire_echo.rlease"
#define RPRE "acquire_echo.rpre"
#define QRESTORE "qemu.restore"
#define RESTORE_VS_QEMU "restore_vs_qemu"
#define DENSITY "density.pss"
#define DENSITY_BUDGET "density.pss_vs_budget"
#define DENSITY_HOST "density.host_vs_budget"

static const struct target targets[] = {
	{ 1, "acquire_ping.8", "p50", 50, AT_MOST, "acquire -> first VM ping, p50, 8 idle" },
	{ 1, "acquire_ping.8", "p99", 250, AT_MOST, "acquire -> first VM ping, p99, 8 idle" },
	{ 1, "hit_rate.8", "value", 100, AT_LEAST, "hit rate, 8 idle" },
	{ 2, SPAWN_JAILED, "p50", 2500, AT_MOST, "spawn -> ready p50, jailed [b]" },
	{ 2, SPAWN_NOJAIL, "p50", 1500, AT_MOST,
	  "spawn -> ready p50, --no-jail (core issue's target) [a][b]" },
	{ 2, JAIL_COST, "p50", 1000, AT_MOST, "jail cost at p50 (jailed - no-jail) [b]" },
	{ 2, "respawn.1", "p50", 0, INFO, "release -> idle again, p50, client (max=1) [c]" },
	{ 3, "refill.best", "value", 300, AT_LEAST, "refill rate, best max_spawning" },
	{ 4, "mem.private_dirty.8", "p50", 1024, AT_MOST,
	  "Private_Dirty excl. guest, median, 8 idle" },
	{ 4, "mem.private_dirty.500", "p50", 1024, AT_MOST,
	  "Private_Dirty excl. guest, median, 500 idle" },
	{ 5, "acquire_ping.500_vs_8", "p50", 1.2, AT_MOST,
	  "acquire -> first VM ping, p50, 500 idle / 8 idle" },
	{ 5, "acquire_ping.500_vs_8", "p99", 1.2, AT_MOST,
	  "acquire -> first VM ping, p99, 500 idle / 8 idle" },
	{ 5, "hit_rate.500", "value", 100, AT_LEAST, "hit rate, 500 idle" },
	{ 7, ECHO8, "p50", 100, AT_MOST, "acquire + echo (16 B), p50, booted, 8 idle [d]" },
	{ 7, MIMOBOX_ECHO, "value", 0, INFO, "  peer: mimobox acquire + echo, published [d]" },
	{ 7, "hit_rate.booted8", "value", 100, AT_LEAST, "hit rate, booted, 8 idle" },
	{ 8, COLD, "p50", 3000, AT_MOST, "cold path end to end: acquire (spawn) + echo, p50 [e]" },
	{ 8, COLD_SUM, "p50", 0, INFO, "cold path, sum: spawn->ready + acquire+echo, p50 [e]" },
	{ 8, COLD_VS_QEMU, "value", 0.1, AT_MOST, "cold path / QEMU microvm boot to first output [f]" },
	{ 9, "sha256.guest_vs_host", "value", 1.2, AT_MOST, "sha256 of 1 MiB, guest / host, p50 [g]" },
	{ 9, "sha256.payload.guest_vs_host", "value", 0, INFO,
	  "sha256 of a 64000 B payload, guest / host, p50 [g]" },
	{ 10, RLEASE, "p50", 1000, AT_MOST,
	  "restore on lease: acquire + first echo (restore incl.), p50 [h]" },
	{ 10, RLEASE, "p99", 0, INFO, "restore on lease: acquire + first echo, p99 [h]" },
	{ 10, QRESTORE, "p50", 0, INFO, "  peer: QEMU microvm -incoming file -> running, p50 [i]" },
	{ 10, RESTORE_VS_QEMU, "value", 0, INFO, "restore on lease p50 / QEMU restore p50 [i]" },
	{ 11, RPRE, "p50", 150, AT_MOST, "prerestore = true: acquire + first echo, p50 [h]" },
	{ 11, ECHO8, "p50", 0, INFO, "  booted pool acquire + echo, p50, same run (ref.)" },
	{ 12, "save.8mib", "p50", 25000, AT_MOST, "Save, 64 MiB guest, 8 MiB written, p50 [j]" },
	{ 12, "save.8mib.alloc_ratio", "value", 1.25, AT_MOST,
	  "Save's file: allocated bytes / 8 MiB written [j]" },
	{ 13, DENSITY, "value", 0, INFO, "density: Pss of N leased restored children [k]" },
	{ 13, DENSITY_BUDGET, "value", 1.0, AT_MOST, "density: Pss / budget [k]" },
	{ 13, DENSITY_HOST, "value", 0, INFO, "density: MemAvailable drop / budget [k]" },
};

static const char *unit_sym(const char *u)
{
	return strcmp(u, "children/s") == 0 ? "/s" : u;
}

/* Four significant-ish figures, no more width than needed. */
static const char *fmt(char *buf, size_t len, double v)
{
	double a = fabs(v);
	snprintf(buf, len, a >= 1000 ? "%.0f" : a >= 100 ? "%.1f" : a >= 10 ? "%.2f" : "%.3f", v);
	return buf;
}

/* ---- derived figures -------------------------------------------------------- */

/* The width of the daemon histogram's bucket that holds `us`: 16 steps
 * per octave of nanoseconds. A percentile read from it is the bucket's
 * upper edge, up to this much above the true value. */
static double bucket_us(double us)
{
	double ns = us * 1000.0;
	if (ns < 16)
		return 0.001;
	return ldexp(1.0, (int)floor(log2(ns))) / 16.0 / 1000.0;
}

/* Move row `from` to just after row `after` (both indices), keeping the
 * others in order: a derived row printed beside the rows it comes from. */
static void rows_move_after(struct rows *rs, size_t from, size_t after)
{
	if (from <= after + 1)
		return;
	struct row r = rs->r[from];
	memmove(&rs->r[after + 2], &rs->r[after + 1], (from - after - 1) * sizeof(r));
	rs->r[after + 1] = r;
}

/* The jail's cost: jailed spawn -> ready less --no-jail spawn -> ready,
 * percentile by percentile (a difference of percentiles, not a percentile
 * of differences: the two runs are separate daemons). */
static void derive_jail_cost(struct rows *rs)
{
	static const char *const st[] = { "p50", "p90", "p99" };
	const struct row *j = rows_find(rs, SPAWN_JAILED);
	const struct row *u = rows_find(rs, SPAWN_NOJAIL);
	double xj[3], xu[3], nj = 0, nu = 0;
	bool have[3];
	if (!j || !u || !row_get_num(j, "p50", &xj[0]) || !row_get_num(u, "p50", &xu[0]))
		return;
	for (int i = 0; i < 3; i++)
		have[i] = row_get_num(j, st[i], &xj[i]) && row_get_num(u, st[i], &xu[i]);
	row_get_num(j, "n", &nj);
	row_get_num(u, "n", &nu);
	double bj = bucket_us(xj[0]), bu = bucket_us(xu[0]);

	struct row *r = rows_add(rs, JAIL_COST, "us",
				 "jail cost: spawn -> ready, jailed - --no-jail, max=1 "
				 "(differences of percentiles)");
	if (!r)
		return;
	for (int i = 0; i < 3; i++)
		if (have[i])
			row_set_num(r, st[i], xj[i] - xu[i]);
	row_set_num(r, "n_jailed", nj);
	row_set_num(r, "n_no_jail", nu);
	/* Each p50 is a bucket's upper edge: the difference is good to about
	 * the wider of the two buckets either way. */
	row_set_num(r, "p50_resolution_us", bj > bu ? bj : bu);
	row_set_str(r, "source", SPAWN_JAILED " - " SPAWN_NOJAIL);

	/* Print it beside the rows it comes from. */
	size_t after = rs->n;
	for (size_t i = 0; i + 1 < rs->n; i++) {
		const char *n = row_get(&rs->r[i], "name");
		if (strcmp(n, SPAWN_NOJAIL) == 0 || strcmp(n, SPAWN_JAILED) == 0)
			after = i;
	}
	if (after < rs->n)
		rows_move_after(rs, rs->n - 1, after);
}

/* Index of the row named `name`, or rs->n. */
static size_t row_index(const struct rows *rs, const char *name)
{
	const struct row *r = rows_find(rs, name);
	return r ? (size_t)(r - rs->r) : rs->n;
}

/* 8: the cold path two ways. The sum: the daemon's spawn -> ready of the
 * min_idle=0 pool (fork -> guest ready, one spawn at a time) plus the
 * hit-path acquire + echo of a fresh child (7). And the end-to-end figure
 * over QEMU booting its tiny guest -- or, if that guest did not boot, over
 * QEMU's QMP greeting, and the row says so. */
static void derive_cold(struct rows *rs)
{
	double sp, ae;
	if (row_get_num(rows_find(rs, COLD_SPAWN), "p50", &sp) &&
	    row_get_num(rows_find(rs, ECHO8), "p50", &ae)) {
		struct row *r = rows_add(rs, COLD_SUM, "us",
					 "cold path, sum: spawn -> ready p50 (min_idle=0 max=1, "
					 "daemon) + acquire + echo p50 (8 idle)");
		if (r) {
			row_set_num(r, "p50", sp + ae);
			row_set_num(r, "spawn_to_ready_p50", sp);
			row_set_num(r, "acquire_echo_p50", ae);
			row_set_str(r, "source", COLD_SPAWN " p50 + " ECHO8 " p50");
			size_t after = row_index(rs, COLD);
			if (after < rs->n)
				rows_move_after(rs, rs->n - 1, after);
		}
	}
	double cold, q;
	if (!row_get_num(rows_find(rs, COLD), "p50", &cold))
		return;
	const char *basis = NULL, *label = NULL;
	if (row_get_num(rows_find(rs, "qemu.boot"), "p50", &q) && q > 0) {
		basis = "qemu.boot";
		label = "cold path p50 / QEMU microvm exec -> tiny guest's first byte p50";
	} else if (row_get_num(rows_find(rs, "qemu.greeting"), "p50", &q) && q > 0) {
		basis = "qemu.greeting";
		label = "cold path p50 / QEMU microvm exec -> QMP greeting p50 (FALLBACK: "
			"the tiny guest did not boot)";
	} else {
		return;
	}
	struct row *r = rows_add(rs, COLD_VS_QEMU, "x", label);
	if (!r)
		return;
	row_set_num(r, "value", cold / q);
	row_set_num(r, "cold_p50_us", cold);
	row_set_num(r, "qemu_p50_us", q);
	row_set_str(r, "basis", basis);
}

/* 10: restore on lease over QEMU's restore. 13: the density budget, N MiB
 * written + one copy of the snapshot's non-zero pages + N x an idle child's
 * Private_Dirty (4, 8 idle), and the Pss / MemAvailable drop over it. */
static void derive_snap(struct rows *rs)
{
	double a, q;
	if (row_get_num(rows_find(rs, RLEASE), "p50", &a) &&
	    row_get_num(rows_find(rs, QRESTORE), "p50", &q) && q > 0) {
		struct row *r = rows_add(rs, RESTORE_VS_QEMU, "x",
					 "restore on lease acquire + echo p50 / QEMU -incoming -> "
					 "running p50");
		if (r) {
			row_set_num(r, "value", a / q);
			row_set_num(r, "hatchery_p50_us", a);
			row_set_num(r, "qemu_p50_us", q);
		}
	}
	const struct row *d = rows_find(rs, DENSITY);
	double pss, n, snap, pd;
	if (!row_get_num(d, "value", &pss) || !row_get_num(d, "children", &n) ||
	    !row_get_num(d, "snapshot_allocated_bytes", &snap) ||
	    !row_get_num(rows_find(rs, "mem.private_dirty.8"), "p50", &pd))
		return;
	double budget = n * 1024.0 + snap / 1024.0 + n * pd;
	struct row *r = rows_add(rs, DENSITY_BUDGET, "x",
				 "density: Pss of the leased children / budget");
	if (r) {
		row_set_num(r, "value", budget > 0 ? pss / budget : 0);
		row_set_num(r, "pss_kib", pss);
		row_set_num(r, "budget_kib", budget);
		row_set_num(r, "written_kib", n * 1024.0);
		row_set_num(r, "snapshot_kib", snap / 1024.0);
		row_set_num(r, "idle_private_dirty_kib_each", pd);
		row_set_num(r, "children", n);
	}
	double host, hn;
	if (row_get_num(rows_find(rs, "density.host"), "value", &host) &&
	    row_get_num(rows_find(rs, "density.host"), "children", &hn) && hn > 0) {
		/* The host figure covers every child of the daemon, the idle
		 * replacements too: the budget is scaled to their number. */
		double hb = hn * 1024.0 + snap / 1024.0 + hn * pd;
		r = rows_add(rs, DENSITY_HOST, "x",
			     "density: host MemAvailable drop / budget for all the daemon's children");
		if (r) {
			row_set_num(r, "value", hb > 0 ? host / hb : 0);
			row_set_num(r, "drop_kib", host);
			row_set_num(r, "budget_kib", hb);
			row_set_num(r, "children", hn);
		}
	}
}

static void derive(struct rows *rs)
{
	derive_jail_cost(rs);
	derive_cold(rs);
	derive_snap(rs);
	struct row *m = rows_add(rs, MIMOBOX_ECHO, "us",
				 "mimobox microVM warm pool: acquire + echo, P50");
	if (m) {
		row_set_num(m, "value", MIMOBOX_ECHO_US);
		row_set_str(m, "source", MIMOBOX_SOURCE);
	}
	m = rows_add(rs, MIMOBOX_COLD, "us",
		     "mimobox microVM cold start: create, boot, echo, shutdown, P50");
	if (m) {
		row_set_num(m, "value", MIMOBOX_COLD_US);
		row_set_str(m, "source", MIMOBOX_SOURCE);
	}

	/* 5: the 500-idle run against the 8-idle run, stat by stat. */
	const struct row *a8 = rows_find(rs, "acquire_ping.8");
	const struct row *a500 = rows_find(rs, "acquire_ping.500");
	if (a8 && a500) {
		double x8[4], x500[4];
		static const char *const st[] = { "p50", "p90", "p99", "max" };
		bool ok = true;
		for (int i = 0; i < 4; i++)
			ok = ok && row_get_num(a8, st[i], &x8[i]) &&
			     row_get_num(a500, st[i], &x500[i]) && x8[i] > 0;
		struct row *r = ok ? rows_add(rs, "acquire_ping.500_vs_8", "x",
					      "acquire -> first VM ping, 500 idle / 8 idle")
				   : NULL;
		for (int i = 0; r && i < 4; i++)
			row_set_num(r, st[i], x500[i] / x8[i]);
	}

	/* 3: the best sustained (drain-refill) rate over the max_spawning
	 * settings tried; the cold fills only if no drain round ran. */
	for (int pass = 0; pass < 2; pass++) {
		const char *prefix = pass == 0 ? "refill.drain." : "refill.cold.";
		const char *key = pass == 0 ? "p50" : "value";
		const struct row *best = NULL;
		double bv = -1;
		for (size_t i = 0; i < rs->n; i++) {
			const char *n = row_get(&rs->r[i], "name");
			double v;
			if (strncmp(n, prefix, strlen(prefix)) == 0 &&
			    row_get_num(&rs->r[i], key, &v) && v > bv) {
				best = &rs->r[i];
				bv = v;
			}
		}
		if (!best)
			continue;
		char label[200];
		snprintf(label, sizeof(label), "best: %s", row_get(best, "label"));
		struct row *r = rows_add(rs, "refill.best", "children/s", label);
		if (r)
			row_set_num(r, "value", bv);
		break;
	}
}

struct verdict {
	bool have;
	double figure, ratio;
	bool pass;
};

static struct verdict judge(const struct rows *rs, const struct target *t)
{
	struct verdict v = { 0 };
	const struct row *r = rows_find(rs, t->row);
	if (!r || !row_get_num(r, t->stat, &v.figure))
		return v;
	v.have = true;
	if (t->cmp == INFO)
		return v;
	v.ratio = t->limit ? v.figure / t->limit : 0;
	v.pass = t->cmp == AT_LEAST ? v.figure >= t->limit : v.figure <= t->limit;
	return v;
}

/* ---- machine ------------------------------------------------------------------ */

struct machine {
	char cpu[160];
	long nproc;
	char kernel[128];
	char arch[80];
	bool hypervisor;
	unsigned long long mem_total_kib;
	char date[32];
	/* Load average when the report is made: the 1-minute figure covers
	 * the end of the run. Well above 0 on an otherwise idle machine means
	 * something else competed for the CPUs and the tails say so. */
	double load[3];
};

static void machine_probe(struct machine *m)
{
	memset(m, 0, sizeof(*m));
	snprintf(m->cpu, sizeof(m->cpu), "unknown");
	FILE *f = fopen("/proc/cpuinfo", "re");
	if (f) {
		char *line = NULL;
		size_t cap = 0;
		bool got_model = false;
		while (getline(&line, &cap, f) >= 0) {
			char *colon = strchr(line, ':');
			if (!colon)
				continue;
			char *v = colon + 1;
			while (*v == ' ')
				v++;
			v[strcspn(v, "\n")] = '\0';
			if (!got_model && strncmp(line, "model name", 10) == 0) {
				snprintf(m->cpu, sizeof(m->cpu), "%s", v);
				got_model = true;
			} else if (strncmp(line, "flags", 5) == 0 && strstr(v, "hypervisor")) {
				m->hypervisor = true;
			}
		}
		free(line);
		fclose(f);
	}
	m->nproc = sysconf(_SC_NPROCESSORS_ONLN);
	struct utsname u;
	if (uname(&u) == 0) {
		snprintf(m->kernel, sizeof(m->kernel), "%s", u.release);
		snprintf(m->arch, sizeof(m->arch), "%s", u.machine);
	}
	f = fopen("/proc/meminfo", "re");
	if (f) {
		char line[256];
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "MemTotal: %llu kB", &m->mem_total_kib) == 1)
				break;
		fclose(f);
	}
	f = fopen("/proc/loadavg", "re");
	if (f) {
		if (fscanf(f, "%lf %lf %lf", &m->load[0], &m->load[1], &m->load[2]) != 3)
			m->load[0] = m->load[1] = m->load[2] = 0;
		fclose(f);
	}
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(m->date, sizeof(m->date), "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- table -------------------------------------------------------------------- */

static bool is_error_row(const struct row *r)
{
	return strncmp(row_get(r, "name"), "error.", 6) == 0;
}

/* A published figure, not a measurement. */
static bool is_ref_row(const struct row *r)
{
	return strncmp(row_get(r, "name"), "ref.", 4) == 0;
}

static bool is_peer_row(const struct row *r)
{
	return strncmp(row_get(r, "name"), "qemu.", 5) == 0 || is_ref_row(r);
}

static const char *label_or_name(const struct row *r)
{
	const char *l = row_get(r, "label");
	return l ? l : row_get(r, "name");
}

static void print_section(const struct rows *rs, const char *unit, const char *title)
{
	int w = 10;
	for (size_t i = 0; i < rs->n; i++) {
		const struct row *r = &rs->r[i];
		if (strcmp(row_get(r, "unit"), unit) == 0 && !is_error_row(r) && !is_ref_row(r)) {
			int l = (int)strlen(label_or_name(r));
			if (l > w)
				w = l;
		}
	}
	bool header = false;
	for (size_t i = 0; i < rs->n; i++) {
		const struct row *r = &rs->r[i];
		if (strcmp(row_get(r, "unit"), unit) != 0 || is_error_row(r) || is_ref_row(r))
			continue;
		if (!header) {
			printf("\n%-*s %7s %9s %9s %9s %9s\n", w, title, "n", "p50", "p90",
			       "p99", "max");
			header = true;
		}
		char b[5][32];
		double v;
		const char *cell[5] = { "", "", "", "", "" };
		static const char *const keys[5] = { "n", "p50", "p90", "p99", "max" };
		for (int k = 0; k < 5; k++) {
			if (!row_get_num(r, keys[k], &v))
				continue;
			if (k == 0)
				snprintf(b[k], sizeof(b[k]), "%.0f", v);
			cell[k] = k == 0 ? b[k] : fmt(b[k], sizeof(b[k]), v);
		}
		/* Single figures (a rate, a hit rate) sit in the p50 column. */
		if (!*cell[1] && row_get_num(r, "value", &v))
			cell[1] = fmt(b[1], sizeof(b[1]), v);
		printf("%-*s %7s %9s %9s %9s %9s\n", w, label_or_name(r), cell[0], cell[1],
		       cell[2], cell[3], cell[4]);
	}
}

static void print_call_notes(const struct rows *rs);
static void print_snap_notes(const struct rows *rs);

/* The notes [a], [b], [c] of the targets' labels, with this run's figures. */
static void print_target_notes(const struct rows *rs)
{
	const struct row *j = rows_find(rs, SPAWN_JAILED);
	const struct row *u = rows_find(rs, SPAWN_NOJAIL);
	const struct row *c = rows_find(rs, JAIL_COST);
	double nj = 0, nu = 0, res = 0, x;
	char b[3][32];
	row_get_num(j, "n", &nj);
	row_get_num(u, "n", &nu);
	printf("\n[a] the core issue's spawn -> ready target, set against the spawn without\n"
	       "    the jail; the jailed spawn has its own target, and so has the difference.\n");
	printf("[b] hatcheryd's own spawn -> ready histogram (fork -> Ready), pool min_idle=1\n"
	       "    max=1: one spawn at a time, each with the machine to itself. %.0f spawns\n"
	       "    jailed (Status: jail \"%s\"), %.0f with --no-jail (jail \"%s\").\n",
	       nj, j && row_get(j, "jail") ? row_get(j, "jail") : "?", nu,
	       u && row_get(u, "jail") ? row_get(u, "jail") : "?");
	if (c && row_get_num(c, "p50_resolution_us", &res))
		printf("    Percentiles are bucket upper edges (16 per octave): the jail cost\n"
		       "    is good to about +-%s us.\n", fmt(b[0], sizeof(b[0]), res));
	const struct row *r = rows_find(rs, "respawn.1");
	const struct row *ex = rows_find(rs, "respawn.exit.1");
	const struct row *sp = rows_find(rs, "respawn.spawn.1");
	printf("[c] info, no target: release -> idle again is the whole cycle as the client\n"
	       "    sees it: the old child's exit, including its VM's kernel teardown (slow\n"
	       "    with KVM_CREATE_IRQCHIP: ~10-25 ms here), the reap, the fork and the new\n"
	       "    child's spawn -> ready. The 1500 us target is spawn -> ready's ([a]).");
	if (r && ex && sp && row_get_num(ex, "p50", &x)) {
		double y = 0;
		row_get_num(sp, "p50", &y);
		printf("\n    This run, p50: release -> replacement seen spawning %s us, seen\n"
		       "    spawning -> idle %s us.", fmt(b[1], sizeof(b[1]), x),
		       fmt(b[2], sizeof(b[2]), y));
	}
	printf("\n");
	print_call_notes(rs);
	print_snap_notes(rs);
}

/* p50 of row `name` formatted into buf, or "?". */
static const char *p50_of(const struct rows *rs, const char *name, char *buf, size_t len)
{
	double x;
	if (!row_get_num(rows_find(rs, name), "p50", &x)) {
		snprintf(buf, len, "?");
		return buf;
	}
	return fmt(buf, len, x);
}

/* This run's p50s of an acquire + echo phase (calls.c: echo, cold), its
 * rows SERIES.LABEL, formatted; "?" for a row that is not there. */
struct echo_p50 {
	char acquire[32], in_daemon[32];
	char echo[32], echo_run[32];   /* the VM's first call */
	char echo2[32], echo2_run[32]; /* the second (echo only) */
};

static void echo_p50s(const struct rows *rs, const char *label, struct echo_p50 *p)
{
	const struct {
		const char *series;
		char *buf;
	} f[] = {
		{ "acquire", p->acquire },
		{ "acquire_in_daemon", p->in_daemon },
		{ "first_echo", p->echo },
		{ "first_echo_run", p->echo_run },
		{ "second_echo", p->echo2 },
		{ "second_echo_run", p->echo2_run },
	};
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(f); i++) {
		char name[96];
		snprintf(name, sizeof(name), "%s.%s", f[i].series, label);
		p50_of(rs, name, f[i].buf, sizeof(p->acquire));
	}
}

/* The notes [d] to [g]: booted pools (7-9), with this run's figures. */
static void print_call_notes(const struct rows *rs)
{
	char b[5][32];
	double x = 0, n = 0;
	struct echo_p50 e8, cold;
	echo_p50s(rs, "booted8", &e8);
	echo_p50s(rs, "cold", &cold);
	row_get_num(rows_find(rs, ECHO8), "n", &n);
	printf("[d] booted pool (kind = booted, the default guest ELF, min_idle=8,\n"
	       "    jailed): hatch_acquire, then hatch_vm_call(echo, 16 B) on the fresh VM,\n"
	       "    one at a time on the hit path of a full, quiet pool; %.0f acquisitions.\n"
	       "    This run, p50:\n"
	       "      acquire %s us (in hatcheryd %s us)\n"
	       "      first echo %s us, of which %s us in the child's vCPU loop\n"
	       "      second echo on the same VM %s us, of which %s us in the vCPU loop\n"
	       "    mimobox's %.0f us (microVM warm pool, before pool.acquire() to after\n"
	       "    execute(echo) returns, P50) is its published figure, other hardware.\n",
	       n, e8.acquire, e8.in_daemon, e8.echo, e8.echo_run, e8.echo2, e8.echo2_run,
	       MIMOBOX_ECHO_US);
	n = 0;
	row_get_num(rows_find(rs, COLD), "n", &n);
	printf("[e] cold path, end to end: a booted pool of min_idle=0, max=1;\n"
	       "    hatch_acquire (deadline 5 s) waits while hatcheryd forks a child, jails\n"
	       "    it, builds the VM and boots the guest to ready; then echo (16 B). From\n"
	       "    just before the acquire to the echo's reply; the pool empty and quiet\n"
	       "    before each of the %.0f cycles. This run, p50:\n"
	       "      acquire %s us (in hatcheryd %s us), echo %s us\n"
	       "    The sum (info): that pool's spawn -> ready p50 from the daemon's\n"
	       "    histogram (fork -> guest ready), %s us, plus [d]'s acquire + echo p50.\n",
	       n, cold.acquire, cold.in_daemon, cold.echo,
	       p50_of(rs, COLD_SPAWN, b[0], sizeof(b[0])));
	const struct row *cq = rows_find(rs, COLD_VS_QEMU);
	const struct row *bs = rows_find(rs, "qemu.boot.status");
	const char *basis = cq ? row_get(cq, "basis") : NULL;
	if (basis && strcmp(basis, "qemu.boot") == 0) {
		printf("[f] QEMU: qemu-system-x86_64 -M microvm -accel kvm -kernel tiny.elf\n"
		       "    (bench/qemu-guest: a PVH kernel that writes one byte to COM1 and\n"
		       "    halts), from just before fork/exec to that byte on its stdout\n"
		       "    (-serial stdio), then QEMU is killed; p50 %s us.\n",
		       p50_of(rs, "qemu.boot", b[0], sizeof(b[0])));
	} else {
		printf("[f] FALLBACK: QEMU did not boot the tiny guest:\n"
		       "      %s\n"
		       "    so the ratio is over exec -> QMP greeting of an empty, paused microvm\n"
		       "    (p50 %s us) instead, which runs no guest code at all.\n",
		       bs && row_get(bs, "error") ? row_get(bs, "error") : "not measured",
		       p50_of(rs, "qemu.greeting", b[0], sizeof(b[0])));
	}
	double bytes = 0;
	row_get_num(rows_find(rs, "sha256.guest"), "bytes", &bytes);
	row_get_num(rows_find(rs, "sha256.payload.guest"), "bytes", &x);
	printf("[g] guest: VmCallReply.run_ns -- the time vmproc spent in its vCPU loop\n"
	       "    for the call: one entry into the guest, the hash, one exit, the\n"
	       "    deadline timer -- of sha256_heap in bench/sha256-guest, which runs the\n"
	       "    default guest's sha256 function on a %.0f-byte buffer the guest filled\n"
	       "    in its heap beforehand: a 1 MiB payload cannot travel, a call's payload\n"
	       "    is bounded by the VM socket's 64 KiB packet. Host: the same function\n"
	       "    from the same file (guest/default/main.c, included by\n"
	       "    bench/host_sha256.c and compiled with the guest's -O2 flags) on the\n"
	       "    same bytes, in hatch-bench. Guest and host runs alternate; the digests\n"
	       "    must agree. This run, p50:\n"
	       "      guest %s us (client round trip %s us), host %s us\n"
	       "    The %.0f B row: the default guest's own sha256 on a payload, one\n"
	       "    packet's worth: guest %s us, host %s us.\n",
	       bytes, p50_of(rs, "sha256.guest", b[0], sizeof(b[0])),
	       p50_of(rs, "sha256.guest_call", b[1], sizeof(b[1])),
	       p50_of(rs, "sha256.host", b[2], sizeof(b[2])), x,
	       p50_of(rs, "sha256.payload.guest", b[3], sizeof(b[3])),
	       p50_of(rs, "sha256.payload.host", b[4], sizeof(b[4])));
}


/* The notes [h] to [k]: snapshots (10-13), with this run's figures. */
static void print_snap_notes(const struct rows *rs)
{
	char b[6][32];
	double n = 0, m = 0, x = 0, y = 0;
	const struct row *sf = rows_find(rs, "snapshot.file");
	row_get_num(rows_find(rs, RLEASE), "n", &n);
	row_get_num(rows_find(rs, RPRE), "n", &m);
	row_get_num(sf, "allocated_bytes", &x);
	printf("[h] restore pools (kind = restore, min_idle=8, jailed) of one snapshot\n"
	       "    written in this run: a booted pool's leased VM after one echo, saved\n"
	       "    with hatch_vm_save (%.0f KiB allocated). Same loop as [d]: acquire,\n"
	       "    echo (16 B), hit path of a full quiet pool; %.0f (prerestore = false:\n"
	       "    the restore runs on lease, before the first call) and %.0f\n"
	       "    (prerestore = true) acquisitions. First echo p50: %s us / %s us.\n",
	       x / 1024, n, m,
	       p50_of(rs, "first_echo.rlease", b[0], sizeof(b[0])),
	       p50_of(rs, "first_echo.rpre", b[1], sizeof(b[1])));
	const struct row *qs = rows_find(rs, "qemu.restore.status");
	const struct row *q = rows_find(rs, QRESTORE);
	if (q) {
		x = y = 0;
		row_get_num(q, "file_allocated_bytes", &x);
		row_get_num(q, "n", &y);
		printf("[i] QEMU: an empty microvm (-m 64, -S: no guest; QEMU's own firmware\n"
		       "    never ran) migrated once to a file (exec:cat > FILE, %.0f KiB),\n"
		       "    then, %.0f times, fork/exec qemu -incoming \"exec:cat FILE\",\n"
		       "    qmp_capabilities, query-status polled until the migration is in,\n"
		       "    cont, until query-status says running: p50 %s us (QMP greeting\n"
		       "    alone %s us). The issue quotes ~48 ms for QEMU here.\n",
		       x / 1024, y, p50_of(rs, QRESTORE, b[0], sizeof(b[0])),
		       p50_of(rs, "qemu.restore.greeting", b[1], sizeof(b[1])));
	} else {
		printf("[i] QEMU restore not measured: %s\n",
		       qs && row_get(qs, "error") ? row_get(qs, "error") : "qemu did not run");
	}
	const struct row *sv = rows_find(rs, "save.8mib");
	x = 0;
	row_get_num(sv, "n", &x);
	printf("[j] Save: lease a booted VM (64 MiB), alloc 8 (the default guest touches\n"
	       "    8 MiB of heap), hatch_vm_save to a fresh file; timed on the client\n"
	       "    around hatch_vm_save, %.0f saves (2 warm-up). p50: vCPU state %s us,\n"
	       "    irqchip/PIT/clock %s us, writing the file %s us. File p50: st_size\n"
	       "    %s KiB, allocated %s KiB (st_blocks*512) against 8192 KiB written;\n"
	       "    the rest is the guest's image, stack, heap header and the state.\n",
	       x, p50_of(rs, "save.8mib.vcpu", b[0], sizeof(b[0])),
	       p50_of(rs, "save.8mib.vm", b[1], sizeof(b[1])),
	       p50_of(rs, "save.8mib.memory", b[2], sizeof(b[2])),
	       p50_of(rs, "save.8mib.st_size", b[3], sizeof(b[3])),
	       p50_of(rs, "save.8mib.allocated", b[4], sizeof(b[4])));
	const struct row *db = rows_find(rs, DENSITY_BUDGET);
	const struct row *dh = rows_find(rs, DENSITY_HOST);
	double c = 0, bud = 0, w = 0, sk = 0, pd = 0, hb = 0, hd = 0, hc = 0, idle = 0;
	row_get_num(db, "children", &c);
	row_get_num(db, "budget_kib", &bud);
	row_get_num(db, "written_kib", &w);
	row_get_num(db, "snapshot_kib", &sk);
	row_get_num(db, "idle_private_dirty_kib_each", &pd);
	row_get_num(dh, "budget_kib", &hb);
	row_get_num(dh, "drop_kib", &hd);
	row_get_num(dh, "children", &hc);
	row_get_num(rows_find(rs, DENSITY), "idle_children_also_running", &idle);
	double lpd = 0;
	row_get_num(rows_find(rs, DENSITY), "private_dirty_kib", &lpd);
	if (db)
		printf("[k] a restore pool (prerestore = true, memory_mib 64) of the [h] snapshot,\n"
		       "    min_idle = N = %.0f, max = N + 20: N leased, alloc 1 (1 MiB written)\n"
		       "    on each, all kept leased; Pss from /proc/PID/smaps_rollup summed over\n"
		       "    the N (Pss splits the snapshot's shared page-cache pages). Budget\n"
		       "    %.0f KiB = %.0f KiB written + %.0f KiB snapshot (allocated) + N x %s\n"
		       "    KiB (an idle child's Private_Dirty, guest mapping excluded, 4, 8\n"
		       "    idle). Host: MemAvailable before the daemon started against after\n"
		       "    the leases, %.0f KiB over all %.0f children (the %.0f idle\n"
		       "    replacements included, budget scaled to them: %.0f KiB); other\n"
		       "    activity on the machine moves it too. Pss also carries each\n"
		       "    child's share of hatcheryd's binary and libc pages, which the\n"
		       "    budget's idle Private_Dirty does not; the N children's summed\n"
		       "    Private_Dirty (guest mapping included) is %.0f KiB.\n",
		       c, bud, w, sk, fmt(b[5], sizeof(b[5]), pd), hd, hc, idle, hb, lpd);
	else
		printf("[k] density not measured (no density row or no idle Private_Dirty\n"
		       "    from 4: see the errors below)\n");
}

static void print_targets(const struct rows *rs)
{
	int w = 10;
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(targets); i++) {
		int l = (int)strlen(targets[i].what);
		if (l > w)
			w = l;
	}
	printf("\n#  %-*s %12s %14s %7s  %s\n", w, "TARGETS", "figure", "target", "ratio",
	       "verdict");
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(targets); i++) {
		const struct target *t = &targets[i];
		const struct row *r = rows_find(rs, t->row);
		const char *u = r ? unit_sym(row_get(r, "unit")) : "";
		struct verdict v = judge(rs, t);
		char fig[48], tgt[48], b[32], rat[32];
		if (v.have)
			snprintf(fig, sizeof(fig), "%s %s", fmt(b, sizeof(b), v.figure), u);
		else
			snprintf(fig, sizeof(fig), "-");
		if (t->cmp == INFO)
			snprintf(tgt, sizeof(tgt), "-");
		else
			snprintf(tgt, sizeof(tgt), "%s %s %s",
				 t->cmp == AT_LEAST ? ">=" : "<=",
				 fmt(b, sizeof(b), t->limit), u);
		snprintf(rat, sizeof(rat), "%.2f", v.ratio);
		/* The QEMU ratio falls back to the QMP greeting when the tiny
		 * guest did not boot: say so on its line. */
		const char *basis = strcmp(t->row, COLD_VS_QEMU) == 0 ? row_get(r, "basis") : NULL;
		bool fallback = basis && strcmp(basis, "qemu.boot") != 0;
		printf("%-2d %-*s %12s %14s %7s  %s%s\n", t->m, w, t->what, fig, tgt,
		       v.have && t->cmp != INFO ? rat : "-",
		       !v.have ? "n/a" : t->cmp == INFO ? "info" : v.pass ? "PASS" : "MISS",
		       fallback ? " (FALLBACK: over QEMU's QMP greeting, see [f])" : "");
	}
	print_target_notes(rs);
}

struct peer {
	bool have;
	double greeting, caps, exit;
	double over_spawn, over_respawn, over_acquire;
	bool have_spawn, have_respawn, have_acquire;
};

static struct peer peer_figures(const struct rows *rs)
{
	struct peer p = { 0 };
	const struct row *g = rows_find(rs, "qemu.greeting");
	if (!g || !row_get_num(g, "p50", &p.greeting))
		return p;
	p.have = true;
	row_get_num(rows_find(rs, "qemu.caps"), "p50", &p.caps);
	row_get_num(rows_find(rs, "qemu.exit"), "p50", &p.exit);
	double x;
	if (row_get_num(rows_find(rs, SPAWN_JAILED), "p50", &x) && x > 0) {
		p.over_spawn = p.greeting / x;
		p.have_spawn = true;
	}
	if (row_get_num(rows_find(rs, "respawn.1"), "p50", &x) && x > 0) {
		p.over_respawn = p.greeting / x;
		p.have_respawn = true;
	}
	if (row_get_num(rows_find(rs, "acquire_ping.8"), "p50", &x) && x > 0) {
		p.over_acquire = p.greeting / x;
		p.have_acquire = true;
	}
	return p;
}

static void print_peer_qmp(const struct rows *rs)
{
	const struct row *st = rows_find(rs, "qemu.status");
	printf("\nPEER: QEMU (%s)\n",
	       st && row_get(st, "version") ? row_get(st, "version") : "qemu-system-x86_64");
	if (!st) {
		printf("  not measured\n");
		return;
	}
	const char *status = row_get(st, "status");
	if (strcmp(status, "ok") != 0) {
		printf("  qemu: %s\n", row_get(st, "error") ? row_get(st, "error") : status);
		return;
	}
	if (row_get(st, "stderr"))
		printf("  (qemu's stderr: %s)\n", row_get(st, "stderr"));
	struct peer p = peer_figures(rs);
	if (!p.have) {
		printf("  no successful run\n");
		return;
	}
	char b[3][32];
	printf("  exec -> QMP greeting p50 %s us (capabilities answered %s us, exited "
	       "after quit %s us)\n", fmt(b[0], sizeof(b[0]), p.greeting),
	       fmt(b[1], sizeof(b[1]), p.caps), fmt(b[2], sizeof(b[2]), p.exit));
	if (p.have_spawn)
		printf("  = %.1fx hatchery's cold spawn-to-ready p50 (jailed, max=1, daemon "
		       "histogram)\n",
		       p.over_spawn);
	if (p.have_respawn)
		printf("  = %.1fx hatchery's release -> idle again p50 (max=1, client)\n",
		       p.over_respawn);
	if (p.have_acquire)
		printf("  = %.0fx hatchery's acquire -> first VM ping p50 (8 idle)\n",
		       p.over_acquire);
}

/* QEMU booting the tiny guest, against hatchery's cold path; and the
 * published mimobox figures against ours. */
static void print_peer_boot(const struct rows *rs)
{
	char b[4][32];
	double q, cold, x;
	const struct row *st = rows_find(rs, "qemu.boot.status");
	printf("  tiny guest (bench/qemu-guest/tiny.elf, PVH, one byte to COM1), booted:\n");
	if (!st) {
		printf("    not measured\n");
	} else if (strcmp(row_get(st, "status"), "ok") != 0) {
		printf("    did not boot: %s\n", row_get(st, "error") ? row_get(st, "error")
							     : row_get(st, "status"));
		if (row_get_num(rows_find(rs, COLD_VS_QEMU), "value", &x))
			printf("    FALLBACK: hatchery's cold path p50 / QMP greeting p50 = %.3f\n", x);
	} else if (row_get_num(rows_find(rs, "qemu.boot"), "p50", &q)) {
		printf("    exec -> the guest's first byte p50 %s us\n", fmt(b[0], sizeof(b[0]), q));
		if (row_get_num(rows_find(rs, "qemu.greeting"), "p50", &x))
			printf("    (QEMU alone, exec -> QMP greeting of an empty paused VM, above:\n"
			       "    %s us)\n", fmt(b[1], sizeof(b[1]), x));
		if (row_get_num(rows_find(rs, COLD), "p50", &cold))
			printf("    hatchery's cold path (fork, jail, VM, guest boot, echo) p50 %s us\n"
			       "    = %.3fx QEMU's boot (target <= 0.1), QEMU %.1fx slower\n",
			       fmt(b[2], sizeof(b[2]), cold), cold / q, q / cold);
	}
	printf("\nPEER: mimobox (%s)\n", MIMOBOX_SOURCE);
	if (row_get_num(rows_find(rs, ECHO8), "p50", &x))
		printf("  microVM warm pool acquire + echo P50 %.0f us; hatchery's acquire + echo\n"
		       "  p50 %s us (booted, 8 idle) = %.3fx of it\n", MIMOBOX_ECHO_US,
		       fmt(b[0], sizeof(b[0]), x), x / MIMOBOX_ECHO_US);
	else
		printf("  microVM warm pool acquire + echo P50 %.0f us\n", MIMOBOX_ECHO_US);
	if (row_get_num(rows_find(rs, COLD), "p50", &x))
		printf("  microVM cold start (create, boot, echo, shutdown) P50 %.0f ms;\n"
		       "  hatchery's cold path p50 %s us = %.4fx of it\n", MIMOBOX_COLD_US / 1000,
		       fmt(b[1], sizeof(b[1]), x), x / MIMOBOX_COLD_US);
}

static void print_peer_restore(const struct rows *rs)
{
	char b[3][32];
	double q, a, p;
	const struct row *st = rows_find(rs, "qemu.restore.status");
	printf("\nPEER: QEMU restore (microvm, 64 MiB, -incoming from its migration file, [i])\n");
	if (!st) {
		printf("  not measured\n");
		return;
	}
	if (strcmp(row_get(st, "status"), "ok") != 0 ||
	    !row_get_num(rows_find(rs, QRESTORE), "p50", &q)) {
		printf("  did not run: %s\n", row_get(st, "error") ? row_get(st, "error")
								   : row_get(st, "status"));
		return;
	}
	printf("  exec -> query-status running p50 %s us\n", fmt(b[0], sizeof(b[0]), q));
	if (row_get_num(rows_find(rs, RLEASE), "p50", &a))
		printf("  hatchery restore on lease, acquire + first echo p50 %s us = %.4fx of it\n",
		       fmt(b[1], sizeof(b[1]), a), a / q);
	if (row_get_num(rows_find(rs, RPRE), "p50", &p))
		printf("  hatchery prerestore, acquire + first echo p50 %s us = %.4fx of it\n",
		       fmt(b[2], sizeof(b[2]), p), p / q);
}

static void print_peer(const struct rows *rs)
{
	print_peer_qmp(rs);
	print_peer_boot(rs);
	print_peer_restore(rs);
}

/* ---- JSON --------------------------------------------------------------------- */

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

static void json_val(FILE *f, const char *s)
{
	if (is_number(s))
		fputs(s, f);
	else
		json_str(f, s);
}

static void json_row_fields(FILE *f, const struct row *r, const char *skip)
{
	bool first = true;
	for (size_t k = 0; k < r->n; k++) {
		if (skip && strcmp(r->key[k], skip) == 0)
			continue;
		fputs(first ? "" : ", ", f);
		first = false;
		json_str(f, r->key[k]);
		fputs(": ", f);
		json_val(f, r->val[k]);
	}
}

static void json_targets(FILE *f, const struct rows *rs, const char *name)
{
	bool any = false, all = true;
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(targets); i++) {
		if (strcmp(targets[i].row, name) != 0)
			continue;
		if (targets[i].cmp == INFO)
			continue;
		struct verdict v = judge(rs, &targets[i]);
		any = true;
		all = all && v.have && v.pass;
	}
	if (!any)
		return;
	const char *op = NULL;
	for (int part = 0; part < 2; part++) {
		fprintf(f, ", \"%s\": {", part == 0 ? "target" : "ratio");
		bool first = true;
		for (size_t i = 0; i < HATCH_ARRAY_SIZE(targets); i++) {
			const struct target *t = &targets[i];
			if (strcmp(t->row, name) != 0 || t->cmp == INFO)
				continue;
			struct verdict v = judge(rs, t);
			op = t->cmp == AT_LEAST ? ">=" : "<=";
			fprintf(f, "%s\"%s\": ", first ? "" : ", ", t->stat);
			if (part == 0)
				fprintf(f, "%.10g", t->limit);
			else if (v.have)
				fprintf(f, "%.4f", v.ratio);
			else
				fputs("null", f);
			first = false;
		}
		fputc('}', f);
	}
	fprintf(f, ", \"target_op\": \"%s\", \"pass\": %s", op, all ? "true" : "false");
}

static int write_json(const char *path, const struct rows *rs, const struct machine *m,
		      const struct bench_opts *o, struct hatch_err *err)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "we");
	if (!f)
		return hatch_err_set(err, E(INTERNAL), errno, "open %s", tmp);
	fputs("{\n  \"machine\": {\"cpu_model\": ", f);
	json_str(f, m->cpu);
	fprintf(f, ", \"nproc\": %ld, \"kernel\": ", m->nproc);
	json_str(f, m->kernel);
	fputs(", \"arch\": ", f);
	json_str(f, m->arch);
	fprintf(f, ", \"hypervisor\": %s, \"mem_total_mib\": %llu, "
		"\"loadavg\": [%.2f, %.2f, %.2f], \"date\": ",
		m->hypervisor ? "true" : "false", m->mem_total_kib / 1024, m->load[0],
		m->load[1], m->load[2]);
	json_str(f, m->date);
	if (o->commit) {
		fputs(", \"commit\": ", f);
		json_str(f, o->commit);
	}
	fprintf(f, ", \"quick\": %s, \"emulated\": %s},\n  \"results\": [",
		o->quick ? "true" : "false", o->emulated ? "true" : "false");

	bool first = true;
	for (size_t i = 0; i < rs->n; i++) {
		const struct row *r = &rs->r[i];
		if (is_error_row(r) || is_peer_row(r))
			continue;
		/* A row re-run later supersedes this one. */
		if (rows_find(rs, row_get(r, "name")) != r)
			continue;
		fprintf(f, "%s\n    {", first ? "" : ",");
		json_row_fields(f, r, NULL);
		if (!o->emulated)
			json_targets(f, rs, row_get(r, "name"));
		fputc('}', f);
		first = false;
	}
	/* Targets whose figure never arrived. */
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(targets); i++) {
		const char *n = targets[i].row;
		bool dup = false;
		for (size_t j = 0; j < i; j++)
			dup = dup || strcmp(targets[j].row, n) == 0;
		if (dup || rows_find(rs, n))
			continue;
		fprintf(f, "%s\n    {\"name\": ", first ? "" : ",");
		json_str(f, n);
		fputs(", \"error\": \"not measured\"", f);
		if (!o->emulated)
			json_targets(f, rs, n);
		fputc('}', f);
		first = false;
	}
	fputs("\n  ],\n  \"peer\": {", f);
	const struct row *st = rows_find(rs, "qemu.status");
	if (st) {
		fputs("\"qemu\": {", f);
		json_row_fields(f, st, "name");
		static const char *const series[] = { "qemu.greeting", "qemu.caps", "qemu.exit" };
		static const char *const keys[] = { "greeting_us", "caps_us", "exit_us" };
		for (size_t k = 0; k < HATCH_ARRAY_SIZE(series); k++) {
			const struct row *r = rows_find(rs, series[k]);
			if (!r)
				continue;
			fprintf(f, ", \"%s\": {", keys[k]);
			json_row_fields(f, r, "name");
			fputc('}', f);
		}
		fputc('}', f);
		struct peer p = peer_figures(rs);
		if (p.have) {
			fputs(", \"ratios\": {", f);
			const char *sep = "";
			if (p.have_spawn) {
				fprintf(f, "\"greeting_over_spawn_to_ready\": %.4f", p.over_spawn);
				sep = ", ";
			}
			if (p.have_respawn) {
				fprintf(f, "%s\"greeting_over_release_to_idle\": %.4f", sep,
					p.over_respawn);
				sep = ", ";
			}
			if (p.have_acquire)
				fprintf(f, "%s\"greeting_over_acquire_ping\": %.4f", sep,
					p.over_acquire);
			fputc('}', f);
		}
	} else {
		fputs("\"qemu\": {\"status\": \"not measured\"}", f);
	}
	const struct row *bst = rows_find(rs, "qemu.boot.status");
	fputs(", \"qemu_boot\": {", f);
	if (bst) {
		json_row_fields(f, bst, "name");
		const struct row *r = rows_find(rs, "qemu.boot");
		if (r) {
			fputs(", \"boot_us\": {", f);
			json_row_fields(f, r, "name");
			fputc('}', f);
		}
	} else {
		fputs("\"status\": \"not measured\"", f);
	}
	fputc('}', f);
	const struct row *rst = rows_find(rs, "qemu.restore.status");
	fputs(", \"qemu_restore\": {", f);
	if (rst) {
		json_row_fields(f, rst, "name");
		const struct row *r = rows_find(rs, QRESTORE);
		if (r) {
			fputs(", \"running_us\": {", f);
			json_row_fields(f, r, "name");
			fputc('}', f);
		}
		double a, q;
		if (r && row_get_num(r, "p50", &q) && q > 0 &&
		    row_get_num(rows_find(rs, RLEASE), "p50", &a))
			fprintf(f, ", \"restore_on_lease_over_qemu\": %.4f", a / q);
	} else {
		fputs("\"status\": \"not measured\"", f);
	}
	fputc('}', f);
	fprintf(f, ", \"mimobox\": {\"acquire_echo_p50_us\": %.10g, \"cold_start_p50_us\": %.10g, "
		"\"source\": ", MIMOBOX_ECHO_US, MIMOBOX_COLD_US);
	json_str(f, MIMOBOX_SOURCE);
	double x;
	if (row_get_num(rows_find(rs, ECHO8), "p50", &x))
		fprintf(f, ", \"acquire_echo_over_mimobox\": %.4f", x / MIMOBOX_ECHO_US);
	if (row_get_num(rows_find(rs, COLD), "p50", &x))
		fprintf(f, ", \"cold_path_over_mimobox_cold_start\": %.6f", x / MIMOBOX_COLD_US);
	fputc('}', f);
	fputs("},\n  \"errors\": [", f);
	first = true;
	for (size_t i = 0; i < rs->n; i++) {
		const struct row *r = &rs->r[i];
		if (!is_error_row(r))
			continue;
		fprintf(f, "%s\n    {", first ? "" : ",");
		json_row_fields(f, r, "unit");
		fputc('}', f);
		first = false;
	}
	fputs(first ? "]\n}\n" : "\n  ]\n}\n", f);
	if (fclose(f) != 0) {
		int e = errno;
		unlink(tmp);
		return hatch_err_set(err, E(INTERNAL), e, "write %s", tmp);
	}
	if (rename(tmp, path) < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "rename %s", tmp);
	return 0;
}

int bench_report(const struct bench_opts *o, struct hatch_err *err)
{
	struct rows rs = { 0 };
	if (rows_load(o->rows, &rs, err) < 0) {
		rows_free(&rs);
		return -1;
	}
	derive(&rs);
	struct machine m;
	machine_probe(&m);

	/* The file first: a reader of the table that goes away (a pager, a
	 * `| head`) must not cost the JSON. */
	int ret = o->json ? write_json(o->json, &rs, &m, o, err) : 0;

	printf("hatchery bench%s: %s, %ld CPUs%s, Linux %s, %llu MiB, %s%s%s\n"
	       "load average at the end: %.2f %.2f %.2f (other work on the machine "
	       "shows in the tails)\n",
	       o->quick ? " (--quick)" : "", m.cpu, m.nproc,
	       m.hypervisor ? " (virtualised)" : "", m.kernel, m.mem_total_kib / 1024,
	       m.date, o->commit ? ", " : "", o->commit ? o->commit : "", m.load[0],
	       m.load[1], m.load[2]);
	if (o->emulated)
		printf("\nEMULATED: measured inside scripts/vm (QEMU's emulator with KVM nested\n"
		       "in it): every figure below is an emulation figure, 5-20x off a KVM\n"
		       "host's. Not results; no targets are judged. Ratios at most.\n");
	print_section(&rs, "us", "LATENCY (us)");
	print_section(&rs, "KiB", "MEMORY (KiB; per idle child)");
	print_section(&rs, "children/s", "REFILL (children/s)");
	if (!o->emulated)
		print_targets(&rs);
	print_peer(&rs);
	bool header = false;
	for (size_t i = 0; i < rs.n; i++) {
		const struct row *r = &rs.r[i];
		if (!is_error_row(r))
			continue;
		if (!header)
			printf("\nNOT MEASURED\n");
		header = true;
		printf("  %s: %s\n", row_get(r, "phase") ? row_get(r, "phase") : "?",
		       row_get(r, "error") ? row_get(r, "error") : "?");
	}
	if (o->json && ret == 0)
		printf("\nJSON: %s\n", o->json);
	rows_free(&rs);
	return ret;
}
