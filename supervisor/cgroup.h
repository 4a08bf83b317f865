/* cgroup.h - one cgroup v2 per child, under one per pool.
 *
 *   <cgroup_root>/hatchery/<pool>/child-<id>    memory.max pids.max cpu.max
 *   <cgroup_root>/supervisor                     hatcheryd itself, when
 *                                                cgroup_root is the cgroup
 *                                                it was started in (systemd
 *                                                Delegate=yes)
 *
 * Set up once at start-up (sup_cgroup_setup): find the cgroup2 mount (or
 * take [supervisor] cgroup_root), check that memory, pids and cpu are
 * available there and can be enabled for our subtree. Where they are not,
 * `cgroup = required` fails start-up with one message naming what is
 * missing, and `cgroup = optional` runs without limits and says why (the
 * reason is shown in the log and in `hatchctl status`).
 *
 * Per child: sup_cgroup_child_create() before clone3 (its dir fd goes into
 * CLONE_INTO_CGROUP, so the child is born inside), and
 * sup_cgroup_child_remove() after it is reaped.
 *
 * The string functions at the top are pure and unit-tested; the rest makes
 * syscalls. Nothing here exits.
 */
#ifndef HATCHERY_SUP_CGROUP_H
#define HATCHERY_SUP_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "hatchery/error.h"

/* ---- pure ---------------------------------------------------------------- */

/* The mount point of the first cgroup2 filesystem in a /proc/self/mountinfo
 * text. Returns 0, or -1 if there is none (or it does not fit in len). */
int sup_cgroup_find_v2_mount(const char *mountinfo, char *out, size_t len);

/* Which of the controllers hatchery needs (memory, pids, cpu) are absent
 * from a cgroup.controllers line ("cpuset cpu io memory pids\n"). Writes
 * them space-separated into `missing` ("" if none); returns their count. */
int sup_cgroup_missing_controllers(const char *controllers, char *missing,
				   size_t len);

/* "<base>/<pool>/child-<id>". Returns 0, or -1 if it does not fit. */
int sup_cgroup_child_path(char *out, size_t len, const char *base,
			  const char *pool, uint64_t id);

/* cpu.max for `pct` percent of one CPU over a 100 ms period:
 * 100 -> "100000 100000", 50 -> "50000 100000", 0 -> "max 100000". */
void sup_cgroup_cpu_max(unsigned pct, char *out, size_t len);

/* Our cgroup v2 path in a /proc/self/cgroup text: what follows "0::" (up
 * to the end of that line), or NULL when there is no v2 line. */
const char *sup_cgroup_v2_self(const char *proc_self_cgroup);

/* ---- syscalls ------------------------------------------------------------ */

struct sup_cgroup {
	bool usable;
	char reason[384];   /* why not usable ("" when usable) */
	char base[320];     /* <root>/hatchery */
};

/* Returns 0 (usable, or not usable and allowed to be: see cg->reason), or
 * -1 with err when cfg->cgroup is required and the machine cannot do it. */
int sup_cgroup_setup(struct sup_cgroup *cg, const struct sup_config *cfg,
		     struct hatch_err *err);

/* The cgroup of a pool a reload added (setup made the others). A no-op
 * when cgroups are not usable. Returns 0 or -1 with err. */
int sup_cgroup_pool_add(const struct sup_cgroup *cg, const char *pool,
			struct hatch_err *err);

/* Create the child's cgroup with the pool's limits; *dirfd is an O_PATH fd
 * of it for clone3 (caller closes). Returns 0 or -1 with err. */
int sup_cgroup_child_create(const struct sup_cgroup *cg,
			    const struct sup_pool_config *p, uint64_t id,
			    int *dirfd, struct hatch_err *err);

/* rmdir the child's cgroup (after the child is reaped). */
void sup_cgroup_child_remove(const struct sup_cgroup *cg,
			     const struct sup_pool_config *p, uint64_t id);

#endif
