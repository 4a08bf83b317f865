/* report.h - what the report's files share; internal to bench/ (its entry
 * is bench_report() in bench.h).
 *
 *   report.c          bench_report(): read the rows, derive, probe the
 *                     machine, write the JSON, print the table
 *   report_targets.c  the targets, the figures derived from the rows, and
 *                     the verdict of a figure against its target
 *   report_text.c     the table on stdout: sections, targets and their
 *                     notes, the peers, what was not measured
 *   report_json.c     the JSON file
 *
 * The targets are in one table, report_targets[]; a figure either meets its
 * target (PASS) or not (MISS), and the ratio figure/target says by how much.
 * A few figures sit in that table for information only (verdict "info",
 * no target): they are read beside the targets but a target would judge
 * something else than they measure; the notes under the table say why.
 * A benchmark reports, it does not fail: a MISS does not change the exit
 * status. A target whose figure is missing (its phase could not run) shows
 * as "n/a" with the phase's error listed at the end. With --emulated (a run
 * inside scripts/vm) nothing is judged: a banner, the figures, the peers.
 */
#ifndef HATCH_BENCH_REPORT_H
#define HATCH_BENCH_REPORT_H

#include "bench.h"

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

/* Linux guests (measurement 14, bench/linux.c and qemu.c's qemulinux).
 * Their rows carry section=linux, and emulated=1 when they were measured
 * inside scripts/vm (this host's KVM cannot boot Linux): such rows are
 * shown, never judged, even in a run whose other figures are native.
 * LINUX_ECHO_REF: the booted pool's acquire + echo measured beside them
 * in the same scripts/vm run; without it, ECHO8 of the same run. */
#define LINUX_WARM "linux.warm"
#define LINUX_COLD "linux.cold"
#define QEMU_LINUX "qemu.linux.boot"
#define LINUX_COLD_VS_QEMU "linux.cold_vs_qemu"
#define LINUX_WARM_VS_ECHO "linux.warm_vs_echo"
#define LINUX_ECHO_REF "acquire_echo.lxref"

/* Linux snapshots (measurement 15, bench/linux_snap.c and qemu.c's
 * qemulinuxin), in the same run as 14 and in its section. */
#define LXSNAP_PRE "linux.snap.pre"
#define LXSNAP_LEASE "linux.snap.lease"
#define QEMU_LINUX_IN "qemu.linux.incoming"
#define LXSNAP_DENSITY_PSS "linux.snap.density.pss"
#define LXSNAP_DENSITY "linux.snap.density"
#define LXSNAP_PRE_VS_WARM "linux.snap.pre_vs_warm"
#define LXSNAP_LEASE_VS_QEMU "linux.snap.lease_vs_qemu"

/* Disk (measurement 16, bench/linux_disk.c), in the same run as 14:
 * disk.ours.OP.qdN and disk.qsd.OP.qdN (unit IOPS, with p50_us, p99_us,
 * cpu_us_per_io); derived, ours over qsd: disk.iops_ratio.OP.qdN (judged,
 * >= 1.0) and disk.cpu_ratio.OP.qdN (CPU per I/O, shown). */
#define DISK_IOPS_RATIO(op, qd) "disk.iops_ratio." op ".qd" qd
#define DISK_CPU_RATIO(op, qd) "disk.cpu_ratio." op ".qd" qd

/* ---- report_targets.c ------------------------------------------------------ */

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

extern const struct target report_targets[];
extern const size_t report_ntargets;

/* Add the derived rows (the jail's cost, the cold path's sum and its ratio
 * over QEMU, the snapshot ratios and density budgets, the published peer
 * figures, 500 idle over 8 idle, the best refill rate), each placed where
 * the table prints it beside its sources. */
void report_derive(struct rows *rs);

struct verdict {
	bool have;         /* the figure is there */
	bool emulated;     /* its row is an emulation figure: not judged */
	double figure, ratio;
	bool pass;
};

struct verdict report_judge(const struct rows *rs, const struct target *t);

/* QEMU's QMP figures and their ratios over hatchery's (the peer section
 * and the JSON's "peer"). */
struct report_peer {
	bool have;
	double greeting, caps, exit;
	double over_spawn, over_respawn, over_acquire;
	bool have_spawn, have_respawn, have_acquire;
};

struct report_peer report_peer_figures(const struct rows *rs);

/* error.PHASE[.LABEL]: a phase that failed, and why. */
bool report_is_error_row(const struct row *r);
/* ref.*: a published figure, not a measurement. */
bool report_is_ref_row(const struct row *r);
/* qemu.* and ref.*: the peers, reported apart from hatchery's figures. */
bool report_is_peer_row(const struct row *r);
/* The Linux guests' rows (section=linux, and the daemon's and the
 * reference echo's rows of that run): printed in a section of their own. */
bool report_is_linux_row(const struct row *r);
/* A row measured inside scripts/vm while the rest was not (emulated=1). */
bool report_is_emulated_row(const struct row *r);

/* ---- report.c ---------------------------------------------------------------- */

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

/* ---- report_text.c, report_json.c ------------------------------------------- */

/* Everything on stdout but the final "JSON: PATH" line. */
void report_print(const struct rows *rs, const struct machine *m,
		  const struct bench_opts *o);

/* Write the JSON to `path` (through PATH.tmp and a rename). 0, or -1 with
 * err filled. */
int report_write_json(const char *path, const struct rows *rs, const struct machine *m,
		      const struct bench_opts *o, struct hatch_err *err);

#endif
