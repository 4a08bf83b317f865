/* linux_snap.c - measurement 15: restore pools (kind = restore) of a Linux
 * snapshot, the one linux.c's --snapshot wrote (a leased VM of the linux
 * pool after one Exec of `true`, saved), in the same run as 14.
 *
 *   linuxsnap     against a restore pool of that file, -l pre (prerestore
 *                 = true) or -l lease (prerestore = false: the restore is
 *                 on the lease's path; the child restores once leased,
 *                 while the client gets its acquire reply, so its first
 *                 Exec waits for it): before each cycle, untimed, a full
 *                 and quiet pool; then, timed, hatch_acquire +
 *                 hatch_vm_exec("true") to its exit status, release not
 *                 timed. measure.c's lease loop, as 7, 10 and 11 use it;
 *                 the timed part is 14's warm cycle.
 *   linuxdensity  against a restore pool with prerestore = true, min_idle
 *                 = max = --idle N: lease all N, Exec true in each, keep
 *                 them leased and read every child's smaps_rollup (snap.c's
 *                 density, as 13). The bound the sum of Pss is set against:
 *                 the snapshot's stored guest pages (its header's
 *                 mem_data_size: the non-zero pages, all a clone can map
 *                 from the file, shared by every clone) + the sum over the
 *                 clones of their Private_Dirty (what each wrote: guest
 *                 pages copied on write, the process's own heap and
 *                 stacks). Pss counts a shared page once over all who map
 *                 it, so sum(Pss) / bound is ~1 when the clones share the
 *                 file's pages; the host's binaries and libraries (also
 *                 shared, and in the Pss) are the rest. Beside it, not
 *                 judged: the same with the file's pages in the page cache
 *                 (mincore) instead of its stored pages.
 *
 * QEMU's side (-incoming of the same guest to its first Exec) is qemu.c's
 * qemulinuxin. Every row is section=linux, emulated=1 inside scripts/vm.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hatchery/clock.h"
#include "bench.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x
#define US 1000.0

static void row_tail(FILE *rows, const struct bench_opts *o)
{
	row_str(rows, "section", "linux");
	if (o->emulated)
		row_num(rows, "emulated", 1);
	row_end(rows);
}

int bench_linux_snap(const struct bench_opts *o, FILE *rows, struct hatch_err *err)
{
	bool pre = o->label && strcmp(o->label, "pre") == 0;
	if (!o->label || (!pre && strcmp(o->label, "lease") != 0))
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "linuxsnap: -l pre (prerestore = true) or -l lease");
	_cleanup_client_ struct hatch_client *c = NULL;
	if (bench_connect(o->socket, 10000, &c, err) < 0 || bench_check_jail(c, o, err) < 0)
		return -1;
	/* The first fill restores o->idle clones (and, with prerestore, resumes
	 * their agents): seconds inside scripts/vm. */
	if (bench_wait_idle(c, o->pool, o->idle, true, 0, 20 * NS_PER_MS, 300 * NS_PER_S,
			    NULL, err) < 0)
		return hatch_err_wrap(err, "first fill");
	const struct lease_loop l = {
		.what = pre ? "linux prerestored" : "linux restore on lease",
		.cycles = "cycles",
		.idle = o->idle,
		.settled = true,
		.wait_timeout_ns = 120 * NS_PER_S,
		.untimed_wait = "until idle >= min_idle, nothing spawning, released child reaped",
		.acquire_ms = (uint32_t)(bench_slowdown() * 10000),
		.call = bench_lease_exec_true,
		.calls = 1,
		.warmup = 2,
		.max_failures = o->count / 10 + 2,
	};
	_cleanup_lease_samples_ struct lease_samples ls = { 0 };
	if (bench_lease_loop(c, o, &l, &ls, err) < 0)
		return -1;

	char name[4][64], what[200];
	const char *sub[] = { "", ".acquire", ".in_daemon", ".exec" };
	for (int i = 0; i < 4; i++)
		snprintf(name[i], sizeof(name[i]), "linux.snap.%s%s", o->label, sub[i]);
	snprintf(what, sizeof(what), "linux snapshot, %s: acquire + Exec true + exit status",
		 pre ? "prerestored" : "restore on lease");
	const struct series ser[] = {
		{ name[0], what, &ls.total },
		/* On lease the child restores once SupLeased or the first
		 * packet reaches it, while the client has its reply: the
		 * restore shows in the Exec, not here. */
		{ name[1], pre ? "  acquire alone" : "  acquire alone (the restore runs on in the child)",
		  &ls.acquire },
		{ name[2], "    in hatcheryd (AcquireReply.wait_ns)", &ls.in_daemon },
		{ name[3], pre ? "  Exec true alone (the clone's first)"
			       : "  Exec true alone (waits for the restore, the agent's resume)",
		  &ls.call[0] },
	};
	const struct series_set set = { NULL, NULL, "us", US };
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(ser); i++) {
		row_series_begin(rows, &set, &ser[i]);
		if (i == 0) {
			row_str(rows, "prerestore", pre ? "true" : "false");
			row_num(rows, "min_idle", o->idle);
			row_num(rows, "memory_mib", o->memory_mib);
			row_num(rows, "vcpus", o->vcpus);
			row_num(rows, "hits", ls.hits);
			row_num(rows, "failures", ls.failures);
			row_num(rows, "warmup", l.warmup);
			row_num(rows, "wall_s", ls.wall_s);
			row_str(rows, "untimed_wait", l.untimed_wait);
			if (o->snapshot)
				row_str(rows, "snapshot", o->snapshot);
		}
		row_tail(rows, o);
	}
	return 0;
}

/* KiB of `path` in the page cache (mincore), 0 if it cannot be had: a
 * second, smaller reading of "the snapshot's resident pages" than its
 * stored pages (readahead included, pages no clone touched excluded). */
static uint64_t file_resident_kib(const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size <= 0)
		return 0;
	size_t len = (size_t)st.st_size, pg = (size_t)sysconf(_SC_PAGESIZE);
	void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return 0;
	size_t npages = (len + pg - 1) / pg;
	unsigned char *v = malloc(npages);
	uint64_t n = 0;
	if (v && mincore(p, len, v) == 0)
		for (size_t i = 0; i < npages; i++)
			n += v[i] & 1;
	free(v);
	munmap(p, len);
	return n * pg / 1024;
}

int bench_linux_density(const struct bench_opts *o, FILE *rows, struct hatch_err *err)
{
	if (!o->snapshot)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "linuxdensity: --snapshot FILE is required");
	struct bench_snap_size sz;
	if (bench_snap_size(o->snapshot, &sz, err) < 0)
		return -1;
	_cleanup_client_ struct hatch_client *c = NULL;
	if (bench_connect(o->socket, 10000, &c, err) < 0)
		return -1;
	const struct density_run d = { .call = bench_lease_exec_true,
				       .wait_timeout_ns = 600 * NS_PER_S };
	struct density_result res;
	if (bench_density_measure(c, o, &d, &res, err) < 0)
		return -1;
	double file_kib = (double)sz.mem_data / 1024.0;
	double bound = file_kib + (double)res.private_dirty;
	char label[240];
	snprintf(label, sizeof(label),
		 "linux density: Pss summed over %u leased clones of one %llu MiB snapshot, "
		 "one Exec true each", res.counted, (unsigned long long)(sz.mem >> 20));
	row_begin(rows, "linux.snap.density.pss", "KiB", label);
	row_num(rows, "value", (double)res.pss);
	row_num(rows, "clones", res.counted);
	row_num(rows, "private_dirty_kib", (double)res.private_dirty);
	row_num(rows, "rss_kib", (double)res.rss);
	row_num(rows, "snapshot_mem_data_kib", file_kib);
	row_num(rows, "snapshot_mem_kib", (double)sz.mem / 1024.0);
	row_num(rows, "idle_children_also_running", res.others);
	row_num(rows, "lease_and_exec_ms", res.lease_ms);
	row_tail(rows, o);
	/* Read while the page cache still holds what the clones faulted in. */
	uint64_t resident = file_resident_kib(o->snapshot);
	double bound_resident = (double)resident + (double)res.private_dirty;
	row_begin(rows, "linux.snap.density", "x",
		  "linux density: sum(Pss) / (snapshot's stored pages + sum(Private_Dirty))");
	row_num(rows, "value", bound > 0 ? (double)res.pss / bound : 0);
	row_num(rows, "pss_kib", (double)res.pss);
	row_num(rows, "bound_kib", bound);
	row_num(rows, "clones", res.counted);
	row_num(rows, "snapshot_page_cache_kib", (double)resident);
	row_num(rows, "vs_page_cache_bound", bound_resident > 0 ? (double)res.pss / bound_resident
								: 0);
	row_str(rows, "bound",
		"snapshot header mem_data_size (its non-zero guest pages) + sum over the "
		"leased clones of smaps_rollup Private_Dirty");
	row_tail(rows, o);
	return 0;
}
