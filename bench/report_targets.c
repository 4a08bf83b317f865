/* report_targets.c - the targets every figure is set beside, the figures
 * the report derives from the measured rows, and the verdicts. See
 * report.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

const struct target report_targets[] = {
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
	{ 14, LINUX_COLD_VS_QEMU, "value", 0.5, AT_MOST,
	  "Linux cold: spawn -> agent ready / QEMU microvm, same guest, p50 [l]" },
	{ 14, LINUX_COLD, "p50", 0, INFO, "Linux cold: spawn -> agent ready, p50 [l]" },
	{ 14, QEMU_LINUX, "p50", 0, INFO, "  peer: QEMU microvm exec -> agent ready, p50 [l]" },
	{ 14, LINUX_WARM, "p50", 1000, AT_MOST, "Linux warm: acquire + Exec true, p50 [l]" },
	{ 14, LINUX_WARM, "p99", 0, INFO, "Linux warm: acquire + Exec true, p99 [l]" },
	{ 14, LINUX_WARM_VS_ECHO, "value", 0, INFO,
	  "Linux warm p50 / booted acquire + echo p50, same run [l]" },
	{ 14, "linux.exec_rate", "value", 0, INFO, "Linux: sequential Exec true on one lease [l]" },
	{ 14, "linux.write_16mib", "p50", 0, INFO, "Linux: WriteFile 16 MiB, p50 [l]" },
	{ 14, "linux.read_16mib", "p50", 0, INFO, "Linux: ReadFile 16 MiB, p50 [l]" },
	{ 15, LXSNAP_PRE, "p50", 1000, AT_MOST,
	  "Linux snapshot, prerestored: acquire + Exec true, p50 [m]" },
	{ 15, LXSNAP_PRE, "p99", 0, INFO, "Linux snapshot, prerestored: acquire + Exec true, p99 [m]" },
	{ 15, LXSNAP_PRE_VS_WARM, "value", 1.5, AT_MOST,
	  "Linux snapshot prerestored p50 / Linux warm (14) p50, same run [m]" },
	{ 15, LXSNAP_LEASE, "p50", 0, INFO,
	  "Linux snapshot, restore on lease: acquire + Exec true, p50 [m]" },
	{ 15, LXSNAP_LEASE, "p99", 0, INFO,
	  "Linux snapshot, restore on lease: acquire + Exec true, p99 [m]" },
	{ 15, QEMU_LINUX_IN, "p50", 0, INFO, "  peer: QEMU -incoming -> first Exec true, p50 [m]" },
	{ 15, LXSNAP_LEASE_VS_QEMU, "value", 0.05, AT_MOST,
	  "Linux restore on lease p50 / QEMU -incoming -> first Exec p50 [m]" },
	{ 15, LXSNAP_DENSITY_PSS, "value", 0, INFO, "Linux density: Pss of N clones, KiB [m]" },
	{ 15, LXSNAP_DENSITY, "value", 1.2, AT_MOST,
	  "Linux density: Pss / (snapshot pages + clones' Private_Dirty) [m]" },
	{ 16, DISK_IOPS_RATIO("randread", "1"), "value", 1.0, AT_LEAST,
	  "disk 4 KiB randread QD1: IOPS ours / qemu-storage-daemon [n]" },
	{ 16, DISK_IOPS_RATIO("randread", "32"), "value", 1.0, AT_LEAST,
	  "disk 4 KiB randread QD32: IOPS ours / qemu-storage-daemon [n]" },
	{ 16, DISK_IOPS_RATIO("randwrite", "1"), "value", 1.0, AT_LEAST,
	  "disk 4 KiB randwrite QD1: IOPS ours / qemu-storage-daemon [n]" },
	{ 16, DISK_IOPS_RATIO("randwrite", "32"), "value", 1.0, AT_LEAST,
	  "disk 4 KiB randwrite QD32: IOPS ours / qemu-storage-daemon [n]" },
	{ 16, DISK_CPU_RATIO("randread", "32"), "value", 0, INFO,
	  "disk randread QD32: backend CPU per I/O, ours / qsd [n]" },
	{ 16, DISK_CPU_RATIO("randwrite", "32"), "value", 0, INFO,
	  "disk randwrite QD32: backend CPU per I/O, ours / qsd [n]" },
};

const size_t report_ntargets = HATCH_ARRAY_SIZE(report_targets);

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

/* 14: hatchery's Linux cold boot over QEMU's, and the warm Exec over the
 * kernel-less booted pool's acquire + echo, each pair from one place (both
 * in scripts/vm, or both native): the reference echo measured beside the
 * Linux phases if there is one, else measurement 7's. */
static void derive_linux(struct rows *rs)
{
	const struct row *cold = rows_find(rs, LINUX_COLD), *q = rows_find(rs, QEMU_LINUX);
	const struct row *warm = rows_find(rs, LINUX_WARM);
	double a, b;
	if (row_get_num(cold, "p50", &a) && row_get_num(q, "p50", &b) && b > 0) {
		bool emu = report_is_emulated_row(cold) || report_is_emulated_row(q);
		struct row *r = rows_add(rs, LINUX_COLD_VS_QEMU, "x",
					 "Linux cold: spawn -> agent ready p50 / QEMU microvm "
					 "exec -> agent ready p50");
		if (r) {
			row_set_num(r, "value", a / b);
			row_set_num(r, "hatchery_p50_us", a);
			row_set_num(r, "qemu_p50_us", b);
			row_set_str(r, "section", "linux");
			if (emu)
				row_set_num(r, "emulated", 1);
			if (report_is_emulated_row(cold) != report_is_emulated_row(q))
				row_set_str(r, "warning", "one side emulated, the other not");
		}
	}
	const struct row *ref = rows_find(rs, LINUX_ECHO_REF);
	const char *refname = ref ? LINUX_ECHO_REF : ECHO8;
	if (!ref)
		ref = rows_find(rs, ECHO8);
	if (row_get_num(warm, "p50", &a) && row_get_num(ref, "p50", &b) && b > 0) {
		struct row *r = rows_add(rs, LINUX_WARM_VS_ECHO, "x",
					 "Linux warm acquire + Exec true p50 / booted pool "
					 "acquire + echo p50");
		if (r) {
			row_set_num(r, "value", a / b);
			row_set_num(r, "linux_p50_us", a);
			row_set_num(r, "echo_p50_us", b);
			row_set_str(r, "echo_row", refname);
			row_set_str(r, "section", "linux");
			if (report_is_emulated_row(warm))
				row_set_num(r, "emulated", 1);
		}
	}
}

/* A derived ratio row of 15: num's stat over den's, in the Linux section,
 * emulated when either side is. */
static void derive_ratio(struct rows *rs, const char *name, const char *label,
			 const char *num, const char *den, const char *stat)
{
	const struct row *a = rows_find(rs, num), *b = rows_find(rs, den);
	double x, y;
	if (!row_get_num(a, stat, &x) || !row_get_num(b, stat, &y) || y <= 0)
		return;
	struct row *r = rows_add(rs, name, "x", label);
	if (!r)
		return;
	row_set_num(r, "value", x / y);
	row_set_str(r, "numerator", num);
	row_set_num(r, "numerator_us", x);
	row_set_str(r, "denominator", den);
	row_set_num(r, "denominator_us", y);
	row_set_str(r, "section", "linux");
	if (report_is_emulated_row(a) || report_is_emulated_row(b))
		row_set_num(r, "emulated", 1);
	if (report_is_emulated_row(a) != report_is_emulated_row(b))
		row_set_str(r, "warning", "one side emulated, the other not");
}

/* 15: the prerestored clone's warm cycle over 14's, and the restore on
 * lease over QEMU's -incoming to the first Exec, each from the same run. */
static void derive_linux_snap(struct rows *rs)
{
	derive_ratio(rs, LXSNAP_PRE_VS_WARM,
		     "Linux snapshot prerestored acquire + Exec true p50 / Linux warm (14) p50",
		     LXSNAP_PRE, LINUX_WARM, "p50");
	derive_ratio(rs, LXSNAP_LEASE_VS_QEMU,
		     "Linux snapshot restore on lease + Exec true p50 / QEMU -incoming -> "
		     "first Exec p50", LXSNAP_LEASE, QEMU_LINUX_IN, "p50");
}

/* 16: each disk run of ours over qemu-storage-daemon's, same op and
 * depth: IOPS (the ratio) and the backend's CPU per I/O. */
static void derive_disk(struct rows *rs)
{
	static const char *const ops[] = { "randread", "randwrite" };
	static const char *const qds[] = { "1", "32" };
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(ops); i++)
		for (size_t k = 0; k < HATCH_ARRAY_SIZE(qds); k++) {
			char ours[64], qsd[64], name[64], label[160];
			snprintf(ours, sizeof(ours), "disk.ours.%s.qd%s", ops[i], qds[k]);
			snprintf(qsd, sizeof(qsd), "disk.qsd.%s.qd%s", ops[i], qds[k]);
			const struct row *a = rows_find(rs, ours), *b = rows_find(rs, qsd);
			static const char *const stat[] = { "value", "cpu_us_per_io" };
			for (int s = 0; s < 2; s++) {
				double x, y;
				if (!row_get_num(a, stat[s], &x) || !row_get_num(b, stat[s], &y) ||
				    y <= 0)
					continue;
				snprintf(name, sizeof(name), "disk.%s_ratio.%s.qd%s",
					 s == 0 ? "iops" : "cpu", ops[i], qds[k]);
				snprintf(label, sizeof(label),
					 "disk 4 KiB %s QD%s: %s, ours / qemu-storage-daemon",
					 ops[i], qds[k], s == 0 ? "IOPS" : "backend CPU per I/O");
				struct row *r = rows_add(rs, name, "x", label);
				if (!r)
					continue;
				row_set_num(r, "value", x / y);
				row_set_num(r, "ours", x);
				row_set_num(r, "qsd", y);
				row_set_str(r, "section", "linux");
				if (report_is_emulated_row(a) || report_is_emulated_row(b))
					row_set_num(r, "emulated", 1);
				if (report_is_emulated_row(a) != report_is_emulated_row(b))
					row_set_str(r, "warning", "one side emulated, the other not");
			}
		}
}

void report_derive(struct rows *rs)
{
	derive_jail_cost(rs);
	derive_linux(rs);
	derive_linux_snap(rs);
	derive_disk(rs);
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

struct verdict report_judge(const struct rows *rs, const struct target *t)
{
	struct verdict v = { 0 };
	const struct row *r = rows_find(rs, t->row);
	if (!r || !row_get_num(r, t->stat, &v.figure))
		return v;
	v.have = true;
	v.emulated = report_is_emulated_row(r);
	if (t->cmp == INFO || v.emulated)
		return v;
	v.ratio = t->limit ? v.figure / t->limit : 0;
	v.pass = t->cmp == AT_LEAST ? v.figure >= t->limit : v.figure <= t->limit;
	return v;
}

/* ---- kinds of rows; QEMU's figures --------------------------------------------- */

bool report_is_error_row(const struct row *r)
{
	return strncmp(row_get(r, "name"), "error.", 6) == 0;
}

bool report_is_ref_row(const struct row *r)
{
	return strncmp(row_get(r, "name"), "ref.", 4) == 0;
}

bool report_is_peer_row(const struct row *r)
{
	return strncmp(row_get(r, "name"), "qemu.", 5) == 0 || report_is_ref_row(r);
}

bool report_is_emulated_row(const struct row *r)
{
	const char *e = row_get(r, "emulated");
	return e && strcmp(e, "1") == 0;
}

bool report_is_linux_row(const struct row *r)
{
	const char *n = row_get(r, "name"), *s = row_get(r, "section");
	size_t len = strlen(n);
	return (s && strcmp(s, "linux") == 0) || strncmp(n, "qemu.linux.", 11) == 0 ||
	       (len > 6 && strcmp(n + len - 6, ".linux") == 0) ||
	       (len > 6 && strcmp(n + len - 6, ".lxref") == 0);
}

struct report_peer report_peer_figures(const struct rows *rs)
{
	struct report_peer p = { 0 };
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
