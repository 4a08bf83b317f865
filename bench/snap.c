/* snap.c - the phases around snapshots (issue 5).
 *
 *   save     against a booted pool: first the snapshot the restore pools of
 *            this run start from (lease, one echo, hatch_vm_save to
 *            --snapshot), then the Save benchmark: lease, alloc 8 (the
 *            default guest touches 8 MiB of its heap), hatch_vm_save to a
 *            temporary file, timed on the client and by VmSaveReply's
 *            phases, with the file's size and its allocated blocks
 *   density  against a restore pool with prerestore = true: lease --idle
 *            children, alloc 1 on each (1 MiB written), keep them leased,
 *            sum their Pss (smaps_rollup) and take the host's MemAvailable
 *            drop since before the daemon started
 *
 * Restore on lease and prerestore's acquire + first echo are the echo
 * phase (calls.c) against restore pools.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hatchery/clock.h"
#include "bench.h"
#include "snapshot.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x
#define US 1000.0

static int call_str(int fd, const char *fn, const char *payload, struct hatch_err *err)
{
	Hatchery__V1__VmCallReply *rep = NULL;
	if (hatch_vm_call(fd, fn, payload, strlen(payload), 2000, &rep, err) < 0)
		return hatch_err_wrap(err, "%s(%s)", fn, payload);
	hatch_free(rep);
	return 0;
}

static int save_to(int vm_fd, const char *path, Hatchery__V1__VmSaveReply **rep,
		   struct stat *st, struct hatch_err *err)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "open %s", path);
	int r = hatch_vm_save(vm_fd, fd, rep, err);
	if (r == 0 && st && fstat(fd, st) < 0)
		r = hatch_err_set(err, E(INTERNAL), errno, "fstat %s", path);
	close(fd);
	return r < 0 ? hatch_err_wrap(err, "save to %s", path) : 0;
}

int bench_save(const struct bench_opts *o, FILE *rows, struct hatch_err *err)
{
	if (!o->snapshot)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0, "save: --snapshot FILE is required");
	_cleanup_client_ struct hatch_client *c = NULL;
	if (bench_connect(o->socket, 10000, &c, err) < 0 || bench_check_jail(c, o, err) < 0)
		return -1;
	if (bench_wait_idle(c, o->pool, 1, false, 0, 2 * NS_PER_MS, 120 * NS_PER_S, NULL,
			    err) < 0)
		return -1;

	/* The restore pools' snapshot: a booted VM after one echo. */
	int fd = -1;
	if (hatch_acquire(c, o->pool, 5000, &fd, NULL, err) < 0)
		return hatch_err_wrap(err, "acquire");
	struct stat sst;
	int r = call_str(fd, "echo", "snapshot", err);
	r = r ?: save_to(fd, o->snapshot, NULL, &sst, err);
	struct hatch_err rerr = { 0 };
	hatch_vm_release(fd, &rerr);
	if (r < 0)
		return -1;
	row_begin(rows, "snapshot.file", "-", "the restore pools' snapshot (booted VM after one echo)");
	row_num(rows, "st_size", (double)sst.st_size);
	row_num(rows, "allocated_bytes", (double)sst.st_blocks * 512.0);
	row_num(rows, "memory_mib", o->memory_mib);
	row_end(rows);

	/* Save of a guest that wrote 8 MiB. */
	_cleanup_free_ char *tmp = NULL;
	if (asprintf(&tmp, "%s.save", o->snapshot) < 0)
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "path");
	_cleanup_samples_ struct samples total = { 0 }, vcpu = { 0 }, vm = { 0 }, mem = { 0 },
					 size = { 0 }, alloc = { 0 };
	unsigned warmup = 2;
	for (unsigned i = 0; i < o->count + warmup; i++) {
		if (bench_wait_idle(c, o->pool, 1, false, 0, 2 * NS_PER_MS, 30 * NS_PER_S,
				    NULL, err) < 0)
			return hatch_err_wrap(err, "save %u", i);
		fd = -1;
		if (hatch_acquire(c, o->pool, 5000, &fd, NULL, err) < 0)
			return hatch_err_wrap(err, "save %u: acquire", i);
		r = call_str(fd, "alloc", "8", err);
		/* The file is created and truncated outside the timed part;
		 * Save truncates it to the snapshot's size itself. */
		int sfd = r < 0 ? -1 : open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (r == 0 && sfd < 0)
			r = hatch_err_set(err, E(INTERNAL), errno, "open %s", tmp);
		Hatchery__V1__VmSaveReply *rep = NULL;
		uint64_t t0 = hatch_now_ns();
		if (r == 0)
			r = hatch_vm_save(fd, sfd, &rep, err);
		uint64_t t1 = hatch_now_ns();
		struct stat st = { 0 };
		if (r == 0 && fstat(sfd, &st) < 0)
			r = hatch_err_set(err, E(INTERNAL), errno, "fstat");
		if (sfd >= 0)
			close(sfd);
		hatch_vm_release(fd, &rerr);
		if (r < 0) {
			hatch_free(rep);
			return hatch_err_wrap(err, "save %u", i);
		}
		if (i >= warmup) {
			int e = samples_add(&total, t1 - t0);
			e = e ?: samples_add(&vcpu, rep->vcpu_state_ns);
			e = e ?: samples_add(&vm, rep->vm_state_ns);
			e = e ?: samples_add(&mem, rep->memory_write_ns);
			e = e ?: samples_add(&size, (uint64_t)st.st_size);
			e = e ?: samples_add(&alloc, (uint64_t)st.st_blocks * 512);
			if (e) {
				hatch_free(rep);
				return hatch_err_set(err, E(INTERNAL), -e, "samples");
			}
		}
		hatch_free(rep);
	}
	unlink(tmp);
	const struct series_set set = { NULL, NULL, "us", US };
	const struct series series[] = {
		{ "save.8mib", "Save, 64 MiB guest, 8 MiB written: hatch_vm_save, client", &total },
		{ "save.8mib.vcpu", "  vCPU state (VmSaveReply.vcpu_state_ns)", &vcpu },
		{ "save.8mib.vm", "  irqchip, PIT, clock (VmSaveReply.vm_state_ns)", &vm },
		{ "save.8mib.memory", "  writing the file (VmSaveReply.memory_write_ns)", &mem },
	};
	row_series_begin(rows, &set, &series[0]);
	row_num(rows, "warmup", warmup);
	row_num(rows, "memory_mib", o->memory_mib);
	row_num(rows, "written_mib", 8);
	row_end(rows);
	row_series(rows, &set, series + 1, HATCH_ARRAY_SIZE(series) - 1);
	const struct series_set kset = { NULL, NULL, "KiB", 1024.0 };
	const struct series ks[] = {
		{ "save.8mib.st_size", "Save's file, 8 MiB written: st_size", &size },
		{ "save.8mib.allocated", "  allocated (st_blocks * 512: sparse)", &alloc },
	};
	row_series(rows, &kset, ks, HATCH_ARRAY_SIZE(ks));
	row_begin(rows, "save.8mib.alloc_ratio", "x",
		  "Save's file, allocated bytes / 8 MiB written, p50");
	row_num(rows, "value", (double)samples_pct(&alloc, 50) / (double)(8u << 20));
	row_num(rows, "st_size_ratio", (double)samples_pct(&size, 50) / (double)(8u << 20));
	row_end(rows);
	return 0;
}

/* Pss and Private_Dirty of one process, KiB, from smaps_rollup. */
static int rollup(pid_t pid, uint64_t *pss, uint64_t *pd, uint64_t *rss)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	char line[256];
	*pss = *pd = *rss = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long v;
		if (sscanf(line, "Pss: %llu kB", &v) == 1)
			*pss = v;
		else if (sscanf(line, "Private_Dirty: %llu kB", &v) == 1)
			*pd = v;
		else if (sscanf(line, "Rss: %llu kB", &v) == 1)
			*rss = v;
	}
	fclose(f);
	return 0;
}

/* ---- density: shared by 13 (alloc 1) and 15 (Linux, Exec true) ---------------- */

int bench_density_measure(struct hatch_client *c, const struct bench_opts *o,
			  const struct density_run *d, struct density_result *res,
			  struct hatch_err *err)
{
	*res = (struct density_result){ 0 };
	if (bench_wait_idle(c, o->pool, o->idle, true, 0, 5 * NS_PER_MS, d->wait_timeout_ns,
			    NULL, err) < 0)
		return -1;
	int *fds = calloc(o->idle, sizeof(*fds));
	if (!fds)
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "fds");
	unsigned leased = 0;
	int r = 0;
	uint64_t t0 = hatch_now_ns();
	for (; leased < o->idle; leased++) {
		if ((r = hatch_acquire(c, o->pool, 5000, &fds[leased], NULL, err)) < 0) {
			hatch_err_wrap(err, "acquire %u", leased);
			break;
		}
		uint64_t run_ns;
		if ((r = d->call(fds[leased], d->ctx, &run_ns, err)) < 0) {
			hatch_err_wrap(err, "lease %u", leased);
			leased++;
			break;
		}
	}
	res->lease_ms = (double)(hatch_now_ns() - t0) / (double)NS_PER_MS;
	if (r == 0) {
		/* Let the replacements the leases caused come up (max - N of
		 * them), so MemAvailable is taken on a quiet daemon. */
		struct pool_counts pc;
		bench_sleep_ns(200 * NS_PER_MS);
		uint64_t until = hatch_now_ns() + bench_timeout_ns(30 * NS_PER_S);
		while (hatch_now_ns() < until) {
			if (bench_pool_counts(c, o->pool, &pc, err) < 0) {
				r = -1;
				break;
			}
			if (pc.spawning == 0)
				break;
			bench_sleep_ns(50 * NS_PER_MS);
		}
	}
	Hatchery__V1__StatusReply *st = NULL;
	if (r == 0 && hatch_status(c, &st, err) < 0)
		r = hatch_err_wrap(err, "status");
	for (size_t i = 0; r == 0 && i < st->n_pools; i++) {
		const Hatchery__V1__PoolStatus *p = st->pools[i];
		if (strcmp(p->name, o->pool) != 0)
			continue;
		for (size_t k = 0; k < p->n_children; k++) {
			const Hatchery__V1__ChildStatus *ch = p->children[k];
			uint64_t a = 0, b = 0, x = 0;
			if (rollup((pid_t)ch->pid, &a, &b, &x) < 0)
				continue;
			if (strcmp(ch->state, "leased") == 0) {
				res->pss += a;
				res->private_dirty += b;
				res->rss += x;
				res->counted++;
			} else {
				res->others++;
				res->others_pss += a;
			}
		}
	}
	hatch_free(st);
	if (r == 0)
		bench_mem_available(&res->avail);
	for (unsigned i = 0; i < leased; i++) {
		struct hatch_err rerr = { 0 };
		if (fds[i] >= 0)
			hatch_vm_release(fds[i], &rerr);
	}
	free(fds);
	return r < 0 ? -1 : 0;
}

static int alloc_1mib(int fd, const void *ctx, uint64_t *run_ns, struct hatch_err *err)
{
	(void)ctx;
	*run_ns = 0;
	return call_str(fd, "alloc", "1", err);
}

int bench_density(const struct bench_opts *o, FILE *rows, struct hatch_err *err)
{
	_cleanup_client_ struct hatch_client *c = NULL;
	if (bench_connect(o->socket, 10000, &c, err) < 0)
		return -1;
	struct stat sst = { 0 };
	if (o->snapshot && stat(o->snapshot, &sst) < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "stat %s", o->snapshot);
	const struct density_run d = { .call = alloc_1mib, .wait_timeout_ns = 180 * NS_PER_S };
	struct density_result res;
	if (bench_density_measure(c, o, &d, &res, err) < 0)
		return -1;
	char label[200];
	snprintf(label, sizeof(label),
		 "density: Pss summed over %u leased restored children, 1 MiB written each",
		 res.counted);
	row_begin(rows, "density.pss", "KiB", label);
	row_num(rows, "value", (double)res.pss);
	row_num(rows, "children", res.counted);
	row_num(rows, "private_dirty_kib", (double)res.private_dirty);
	row_num(rows, "rss_kib", (double)res.rss);
	row_num(rows, "idle_children_also_running", res.others);
	row_num(rows, "idle_children_pss_kib", (double)res.others_pss);
	row_num(rows, "snapshot_st_size", (double)sst.st_size);
	row_num(rows, "snapshot_allocated_bytes", (double)sst.st_blocks * 512.0);
	row_num(rows, "lease_and_alloc_ms", res.lease_ms);
	row_end(rows);
	if (o->meminfo_before && res.avail) {
		row_begin(rows, "density.host", "KiB",
			  "  host MemAvailable drop since before the daemon, all its children");
		row_num(rows, "value", (double)o->meminfo_before - (double)res.avail);
		row_num(rows, "children", res.counted + res.others);
		row_num(rows, "mem_available_before_kib", (double)o->meminfo_before);
		row_num(rows, "mem_available_after_kib", (double)res.avail);
		row_end(rows);
	}
	return 0;
}

int bench_snap_size(const char *path, struct bench_snap_size *sz, struct hatch_err *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "open %s", path);
	struct snap_header h;
	if (snap_header_read_fd(fd, &h, NULL, err) < 0)
		return hatch_err_wrap(err, "%s", path);
	sz->mem = h.mem_size;
	sz->mem_data = h.mem_data_size;
	return 0;
}
