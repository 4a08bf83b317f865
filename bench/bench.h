/* bench.h - hatch-bench: the measurements behind scripts/bench.
 *
 * One invocation runs one phase against a hatcheryd that scripts/bench
 * started with a configuration written for that phase, and appends what it
 * measured to a rows file: one line per figure, tab-separated key=value
 * pairs, the first two always name= and unit=. `hatch-bench report` reads
 * the rows back, sets each figure beside its target, prints the table and
 * writes the JSON. Measuring and judging are kept apart so that every phase
 * can have a daemon of its own and the targets live in one table
 * (report_targets.c).
 *
 * Files: bench.c (arguments, the client helpers every phase shares),
 * samples.c (percentiles), rows.c (the rows file), measure.c (phases
 * against hatcheryd, and the lease loop that acquire, echo and cold
 * share), calls.c (phases against booted pools: guest calls),
 * host_sha256.c (the default guest's sha256, built for the host), qemu.c
 * (the peer; QEMU booting the Linux guest too), linux.c (Linux guests:
 * warm Exec, cold boot, throughput, and 15's snapshot), linux_snap.c
 * (15: restore pools of a Linux snapshot), linux_disk.c (16: 4 KiB random
 * I/O, our disk backend against qemu-storage-daemon), snap.c (Save, restore-pool
 * density, 13's and 15's), report*.c (the targets,
 * the table, the JSON; report.h says which file holds what).
 */
#ifndef HATCH_BENCH_H
#define HATCH_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hatchery/cleanup.h"
#include "hatchery/client.h"

#define NS_PER_US 1000ull
#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull

/* ---- bench.c: options and shared client helpers ------------------------- */

struct bench_opts {
	const char *socket;       /* hatcheryd's socket */
	const char *pool;         /* default "default" */
	const char *label;        /* suffix of row names: "8", "500", "ms4" */
	const char *desc;         /* acquire, respawn: the run, in words (default
	                           * "LABEL idle", "max=1") */
	const char *jail;         /* acquire, respawn: "on" or "off", the jail the
	                           * daemon must report (Status), NULL: unchecked */
	const char *rows;         /* rows file (appended to; read by report) */
	const char *json;         /* report: where to write the JSON */
	const char *qemu;         /* qemu: the binary, NULL if not installed */
	const char *qemu_version; /* qemu: `--version`'s first line */
	const char *commit;       /* report: recorded in "machine" */
	const char *qemu_guest;   /* qemuboot: the tiny PVH kernel (bench/qemu-guest) */
	const char *qemu_guest_error; /* qemuboot: why it could not be built */
	const char *snapshot;     /* save: where to write the restore pools'
	                           * snapshot; density: that file (its size);
	                           * qemurestore: QEMU's migration file */
	unsigned count;           /* timed iterations */
	unsigned idle;            /* idle children the pool is configured to keep */
	unsigned rounds;          /* refill: drain rounds */
	unsigned memory_mib;      /* memory: size of the guest mapping */
	uint64_t meminfo_before;  /* memory: MemAvailable (KiB) before the daemon */
	const char *kernel;       /* linux, qemulinux: the bzImage (recorded; the
	                           * pool's own config names it for hatcheryd) */
	const char *initrd;       /* the initramfs, its /init the agent */
	const char *cmdline;      /* qemulinux: the kernel command line, the
	                           * pool's (scripts/bench writes both) */
	unsigned vcpus;           /* linux, qemulinux: the pool's vcpus */
	unsigned execs;           /* linux: sequential Execs on one lease */
	unsigned files;           /* linux: WriteFile + ReadFile rounds */
	unsigned backend_pid;     /* linuxdisk -l qsd: qemu-storage-daemon's pid */
	unsigned payload;         /* echo, cold: bytes echoed (default 16) */
	unsigned bytes;           /* sha256: bytes hashed (default 1 MiB) */
	bool quick;
	bool emulated;            /* report: measured under QEMU's emulator (scripts/vm) */
	bool wait_reaped;         /* acquire: also wait for the released child's reaping */
};

static inline void bench_client_closep(struct hatch_client **c)
{
	hatch_close(*c);
	*c = NULL;
}
#define _cleanup_client_ __attribute__((cleanup(bench_client_closep)))

void bench_sleep_ns(uint64_t ns);

/* Connect, retrying for up to wait_ms while the daemon is still coming up
 * (its socket may not exist yet). Sets a 5 s reply timeout on the client. */
/* HATCH_BENCH_SLOWDOWN (>= 1, default 1): scripts/bench sets it when it
 * measures inside scripts/vm, where everything is 5-20x slower; every
 * timeout a phase waits with goes through bench_timeout_ns(). The figures
 * themselves are never scaled. */
double bench_slowdown(void);
uint64_t bench_timeout_ns(uint64_t ns);

int bench_connect(const char *socket, unsigned wait_ms, struct hatch_client **out,
		  struct hatch_err *err);

struct pool_counts {
	unsigned idle, leased, spawning, waiting;
	uint64_t uptime_ms; /* the daemon's, from the same reply */
};

/* One Status call, reduced to the counts of `pool`. */
int bench_pool_counts(struct hatch_client *c, const char *pool,
		      struct pool_counts *pc, struct hatch_err *err);

/* Poll Status until `pool` has at least `idle` ready children (and, with
 * settled, none spawning and none leased: the daemon is quiet). Sleeps first_ns before the first poll and
 * poll_ns between polls; fails after timeout_ns. *pc (may be NULL) gets the
 * counts of the reply that satisfied the wait. */
int bench_wait_idle(struct hatch_client *c, const char *pool, unsigned idle,
		    bool settled, uint64_t first_ns, uint64_t poll_ns,
		    uint64_t timeout_ns, struct pool_counts *pc,
		    struct hatch_err *err);

/* One Stats call, reduced to `pool`'s entry. The reply is the caller's
 * (hatch_free); *ps points into it. */
int bench_pool_stats(struct hatch_client *c, const char *pool,
		     Hatchery__V1__StatsReply **reply,
		     const Hatchery__V1__PoolStats **ps, struct hatch_err *err);

/* ---- samples.c: percentiles by sorting ------------------------------------ */

struct samples {
	uint64_t *v;
	size_t n, cap;
	bool sorted;
};

int samples_add(struct samples *s, uint64_t v);
/* Nearest rank: the smallest sample with at least pct% of the samples at or
 * below it. Sorts on first use. 0 when empty. */
uint64_t samples_pct(struct samples *s, double pct);
uint64_t samples_max(struct samples *s);
double samples_mean(const struct samples *s);
void samples_free(struct samples *s);
#define _cleanup_samples_ __attribute__((cleanup(samples_free)))

/* ---- rows.c: the rows file ------------------------------------------------- */

/* Writing: row_begin, any number of row_str/row_num/row_dist, row_end. */
void row_begin(FILE *f, const char *name, const char *unit, const char *label);
void row_str(FILE *f, const char *key, const char *val);
void row_num(FILE *f, const char *key, double val);
/* n, p50, p90, p99, max, min, mean of the samples, each divided by `scale`
 * (1000 turns ns into µs). */
void row_dist(FILE *f, struct samples *s, double scale);
void row_end(FILE *f);

/* A series: samples taken together with others in one run, written as a
 * row named NAME.LABEL and labelled "WHAT, DESC". */
struct series {
	const char *name;
	const char *what;
	struct samples *s;
};

/* What the rows of one run's series share. */
struct series_set {
	const char *label; /* ".LABEL" after each name; NULL: the name alone */
	const char *desc;  /* ", DESC" after each label; NULL: the label alone */
	const char *unit;
	double scale;      /* row_dist's */
};

/* row_begin and row_dist for one series; the caller may add fields, then
 * row_end. */
void row_series_begin(FILE *f, const struct series_set *set, const struct series *s);
/* A whole row (row_series_begin, row_end) for each of n series. */
void row_series(FILE *f, const struct series_set *set, const struct series *s, size_t n);

#define ROW_MAX_KV 48

struct row {
	size_t n;
	char *key[ROW_MAX_KV];
	char *val[ROW_MAX_KV]; /* keys and values are the row's own (heap) */
};

struct rows {
	struct row *r;
	size_t n, cap;
};

/* Read every row of `path`. A missing file is an empty set. */
int rows_load(const char *path, struct rows *rs, struct hatch_err *err);
void rows_free(struct rows *rs);
const struct row *rows_find(const struct rows *rs, const char *name);
/* Append a row made up by the report (a derived figure). Takes a copy. */
struct row *rows_add(struct rows *rs, const char *name, const char *unit,
		     const char *label);
int row_set_num(struct row *r, const char *key, double v);
int row_set_str(struct row *r, const char *key, const char *v);
const char *row_get(const struct row *r, const char *key);
/* false if the key is absent or not a number. */
bool row_get_num(const struct row *r, const char *key, double *out);
/* Is `s` entirely a finite number (JSON-safe as such)? */
bool is_number(const char *s);

/* ---- measure.c: shared by the phases against hatcheryd ---------------------- */

/* With o->jail: fail unless the daemon's Status reports its jail so. */
int bench_check_jail(struct hatch_client *c, const struct bench_opts *o,
		     struct hatch_err *err);
/* The daemon's spawn -> ready and acquire histograms of o->pool, and its
 * counters, as rows named spawn_to_ready.daemon.LABEL, acquire.daemon.LABEL;
 * `what` words the run for their labels. */
int bench_emit_daemon_stats(struct hatch_client *c, const struct bench_opts *o,
			    FILE *rows, const char *what, struct hatch_err *err);

/* The lease loop of acquire, echo and cold: before each cycle an untimed
 * wait for the pool; then, timed, hatch_acquire, one or two calls on the
 * fresh VM, and its release. o->count timed cycles after `warmup`
 * untimed ones. */

/* A call on a leased VM (a ping, an echo). *run_ns: the time the child
 * reports it spent in its vCPU loop for it, 0 if it reports none. */
typedef int (*lease_call_fn)(int vm_fd, const void *ctx, uint64_t *run_ns,
			     struct hatch_err *err);

struct lease_loop {
	const char *what;         /* messages: "WHAT 12: ..." */
	const char *cycles;       /* messages: "after 12 CYCLES" */
	unsigned idle;            /* before each cycle: at least this many idle, */
	bool settled;             /* and none spawning or leased (bench_wait_idle) */
	bool cold;                /* the cold path: the pool must be empty before each
	                           * cycle, so every acquisition waits for a spawn; its
	                           * rows count the hits instead of a hit rate */
	uint64_t wait_timeout_ns; /* for that wait */
	const char *untimed_wait; /* that wait, in words, for the rows */
	uint32_t acquire_ms;      /* hatch_acquire's deadline */
	lease_call_fn call;
	const void *ctx;          /* call's */
	unsigned calls;           /* 1 or 2 calls per VM */
	unsigned payload;         /* bytes each call sends, for the rows; 0: none */
	unsigned warmup;
	unsigned max_failures;    /* failed cycles tolerated (reported, not counted) */
};

/* What the timed cycles took, in ns. */
struct lease_samples {
	struct samples total;     /* acquire + the first call */
	struct samples acquire;
	struct samples in_daemon; /* AcquireReply.wait_ns */
	struct samples call[2];   /* each call, client side */
	struct samples run[2];    /* each call's run_ns */
	struct samples release;   /* hatch_vm_release after the last call, if it worked */
	unsigned hits, failures;
	double wall_s;            /* the whole loop, waits and warm-up included */
};

int bench_lease_loop(struct hatch_client *c, const struct bench_opts *o,
		     const struct lease_loop *l, struct lease_samples *ls,
		     struct hatch_err *err);
void lease_samples_free(struct lease_samples *ls);
#define _cleanup_lease_samples_ __attribute__((cleanup(lease_samples_free)))

/* The rows of a lease loop's run, labelled with `desc`: one per series
 * (the first, the loop's total, with the run's settings and counts),
 * hit_rate.LABEL unless l->cold, and the daemon's histograms
 * (bench_emit_daemon_stats). */
int bench_emit_lease_rows(struct hatch_client *c, const struct bench_opts *o, FILE *rows,
			  const struct lease_loop *l, const struct lease_samples *ls,
			  const struct series *series, size_t n, const char *desc,
			  struct hatch_err *err);

/* ---- snap.c: density, shared by 13 and 15 --------------------------------- */

/* What each of the o->idle leases does once leased (13: alloc 1 MiB;
 * 15: Exec true), and how long the pool may take to fill first. */
struct density_run {
	lease_call_fn call;
	const void *ctx;
	uint64_t wait_timeout_ns;
};

struct density_result {
	uint64_t pss, private_dirty, rss; /* KiB, summed over the leased children */
	unsigned counted;                 /* leased children read */
	unsigned others;                  /* the pool's other children (idle, restoring) */
	uint64_t others_pss;              /* KiB */
	uint64_t avail;                   /* MemAvailable after, KiB (0: unknown) */
	double lease_ms;                  /* leasing all and their calls */
};

/* Wait for o->idle settled children of o->pool, lease them all, run
 * d->call on each and keep them leased while every child's smaps_rollup
 * is read (the leased ones summed); then release them. */
int bench_density_measure(struct hatch_client *c, const struct bench_opts *o,
			  const struct density_run *d, struct density_result *res,
			  struct hatch_err *err);

/* A snapshot file's guest memory: its size and its stored (non-zero)
 * pages, from the file's header. */
struct bench_snap_size {
	uint64_t mem, mem_data; /* bytes */
};
int bench_snap_size(const char *path, struct bench_snap_size *sz, struct hatch_err *err);

/* ---- linux.c, linux_snap.c ------------------------------------------------- */

/* A lease_call_fn: Exec `true` on a leased Linux VM, failing unless it
 * exited 0. ctx unused; *run_ns 0. */
int bench_lease_exec_true(int vm, const void *ctx, uint64_t *run_ns, struct hatch_err *err);

/* ---- phases ---------------------------------------------------------------- */

int bench_acquire(const struct bench_opts *o, FILE *rows, struct hatch_err *err);
int bench_respawn(const struct bench_opts *o, FILE *rows, struct hatch_err *err);
int bench_refill(const struct bench_opts *o, FILE *rows, struct hatch_err *err);
int bench_memory(const struct bench_opts *o, FILE *rows, struct hatch_err *err);
int bench_qemu(const struct bench_opts *o, FILE *rows, struct hatch_err *err);
int bench_qemu_boot(const struct bench_opts *o, FILE *rows, struct hatch_err *err);
int bench_echo(const struct bench_opts *o, FILE *rows, struct hatch_err *err);
int bench_cold(const struct bench_opts *o, FILE *rows, struct hatch_err *err);
int bench_sha256(const struct bench_opts *o, FILE *rows, struct hatch_err *err);
int bench_save(const struct bench_opts *o, FILE *rows, struct hatch_err *err);
int bench_density(const struct bench_opts *o, FILE *rows, struct hatch_err *err);
int bench_qemu_restore(const struct bench_opts *o, FILE *rows, struct hatch_err *err);
int bench_linux(const struct bench_opts *o, FILE *rows, struct hatch_err *err);
int bench_qemu_linux(const struct bench_opts *o, FILE *rows, struct hatch_err *err);
int bench_linux_snap(const struct bench_opts *o, FILE *rows, struct hatch_err *err);
int bench_linux_density(const struct bench_opts *o, FILE *rows, struct hatch_err *err);
int bench_linux_disk(const struct bench_opts *o, FILE *rows, struct hatch_err *err);
int bench_qemu_linux_incoming(const struct bench_opts *o, FILE *rows, struct hatch_err *err);
int bench_report(const struct bench_opts *o, struct hatch_err *err);

/* MemAvailable from /proc/meminfo, in KiB. 0 or -errno. */
int bench_mem_available(uint64_t *kib);

#endif
