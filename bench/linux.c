/* linux.c - the phase against a Linux pool (kind = linux): Debian's kernel
 * and hatchery's initramfs, its /init the agent (docs/guest-linux.md).
 *
 * One daemon, one pool of min_idle = o->idle, max_spawning 1 (scripts/bench
 * writes it). Three parts, in this order:
 *
 *   warm        before each cycle, untimed, a full and quiet pool (idle >=
 *               min_idle, nothing spawning, nothing leased); then, timed,
 *               hatch_acquire + hatch_vm_exec("true") to its exit status.
 *               The release is not timed.
 *   cold        each child leased here (warm cycles, warm-up, the
 *               throughput lease) reports, in VmInfoReply, ready_ns (the
 *               supervisor starting the spawn -> the child's Ready: fork,
 *               jail, VM, kernel boot, agent's hello) and linux_boot_ns
 *               (kernel entry -> the hello). Every such child booted on a
 *               quiet pool: max_spawning 1 and the settled wait keep boots
 *               apart from each other and from the timed cycles. QEMU
 *               booting the same kernel and initramfs to the same hello is
 *               qemu.c's qemulinux.
 *   throughput  one lease: o->execs sequential Execs of `true` (execs/s
 *               over the whole run, and each one's latency); then o->files
 *               rounds of a 16 MiB WriteFile from a memfd and a ReadFile of
 *               it back, compared byte for byte (MiB/s each).
 *
 * With --snapshot FILE, last and untimed: the snapshot measurement 15's
 * restore pools start from (linux_snap.c), what `hatchctl snapshot POOL
 * FILE --exec true` makes: a leased VM after one Exec of `true`, saved.
 *
 * Inside scripts/vm (--emulated) every boot costs ~13 s of emulation, and
 * every warm cycle needs one: scripts/bench keeps -n small there.
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

#define US 1000.0 /* row_dist scale: ns -> µs */
#define FILE_BYTES (16u << 20)
#define GUEST_FILE "/tmp/hatch-bench.16mib"
#define EXEC_WARMUP 5u

struct lx_samples {
	struct samples total, acquire, in_daemon, exec; /* warm, ns */
	struct samples ready, kernel;                   /* cold, ns */
	struct samples each_exec;                       /* throughput, ns */
	struct samples wr, rd;                          /* MiB/s x 1000 */
	unsigned hits, failures;
	double exec_wall_s;
};

static void lx_samples_free(struct lx_samples *s)
{
	struct samples *all[] = { &s->total, &s->acquire, &s->in_daemon, &s->exec,
				  &s->ready, &s->kernel, &s->each_exec, &s->wr, &s->rd };
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(all); i++)
		samples_free(all[i]);
}

static int exec_true(int vm, struct hatch_err *err)
{
	const char *argv[] = { "true" };
	const struct hatch_exec x = { .argv = argv, .argc = 1 };
	Hatchery__V1__VmExecReply *rep = NULL;
	if (hatch_vm_exec(vm, &x, NULL, NULL, &rep, err) < 0)
		return hatch_err_wrap(err, "exec true");
	bool ok = rep->exit_code == 0 && rep->signal == 0 && !rep->timed_out;
	int code = rep->exit_code;
	hatch_free(rep);
	if (!ok)
		return hatch_err_set(err, E(INTERNAL), 0, "exec true: exit status %d", code);
	return 0;
}

int bench_lease_exec_true(int vm, const void *ctx, uint64_t *run_ns, struct hatch_err *err)
{
	(void)ctx;
	*run_ns = 0;
	return exec_true(vm, err);
}

/* The leased child's spawn -> ready and kernel -> agent ready. */
static int record_boot(int vm, struct lx_samples *s, struct hatch_err *err)
{
	Hatchery__V1__VmInfoReply *info = NULL;
	if (hatch_vm_info(vm, &info, err) < 0)
		return hatch_err_wrap(err, "vm info");
	int e = 0;
	if (info->ready_ns)
		e = samples_add(&s->ready, info->ready_ns);
	if (!e && info->linux_boot_ns)
		e = samples_add(&s->kernel, info->linux_boot_ns);
	bool is_linux = info->kind && strcmp(info->kind, "linux") == 0;
	hatch_free(info);
	if (e)
		return hatch_err_set(err, E(INTERNAL), -e, "samples");
	if (!is_linux)
		return hatch_err_set(err, E(FAILED_PRECONDITION), 0,
				     "the pool's children are not kind = linux");
	return 0;
}

static int warm(struct hatch_client *c, const struct bench_opts *o, struct lx_samples *s,
		struct hatch_err *err)
{
	const unsigned warmup = 1; /* a boot each: one is enough to page in */
	for (unsigned i = 0; i < o->count + warmup;) {
		if (bench_wait_idle(c, o->pool, o->idle, true, 0, 20 * NS_PER_MS,
				    120 * NS_PER_S, NULL, err) < 0)
			return hatch_err_wrap(err, "warm cycle %u", i);
		Hatchery__V1__AcquireReply *info = NULL;
		int fd = -1;
		uint64_t t0 = hatch_now_ns();
		int r = hatch_acquire(c, o->pool, 2000, &fd, &info, err);
		uint64_t t1 = hatch_now_ns();
		if (r == 0)
			r = exec_true(fd, err);
		uint64_t t2 = hatch_now_ns();
		if (r == 0)
			r = record_boot(fd, s, err);
		if (r < 0) {
			fprintf(stderr, "hatch-bench: linux warm %u: %s\n", i, err->msg);
			if (fd >= 0)
				close(fd);
			hatch_free(info);
			if (++s->failures > o->count / 10 + 2)
				return hatch_err_wrap(err, "%u failures (last)", s->failures);
			continue;
		}
		struct hatch_err rerr = { 0 };
		if (hatch_vm_release(fd, &rerr) < 0)
			fprintf(stderr, "hatch-bench: linux release %u: %s\n", i, rerr.msg);
		if (i >= warmup) {
			int e = samples_add(&s->total, t2 - t0);
			e = e ?: samples_add(&s->acquire, t1 - t0);
			e = e ?: samples_add(&s->in_daemon, info->wait_ns);
			e = e ?: samples_add(&s->exec, t2 - t1);
			s->hits += info->hit;
			if (e) {
				hatch_free(info);
				return hatch_err_set(err, E(INTERNAL), -e, "samples");
			}
		}
		hatch_free(info);
		i++;
	}
	return 0;
}

struct cmp_sink {
	const uint8_t *want;
	size_t n, len;
	bool differ;
};

static int cmp_chunk(void *ctx, const void *data, size_t len, struct hatch_err *err)
{
	(void)err;
	struct cmp_sink *k = ctx;
	if (len > k->len - k->n || memcmp(k->want + k->n, data, len) != 0)
		k->differ = true;
	else
		k->n += len;
	return 0;
}

static double mib_per_s(uint64_t ns)
{
	return (double)FILE_BYTES / (1 << 20) / ((double)ns / (double)NS_PER_S);
}

static int files(int vm, const struct bench_opts *o, struct lx_samples *s,
		 struct hatch_err *err)
{
	_cleanup_close_ int fd = memfd_create("hatch-bench", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, FILE_BYTES) < 0)
		return hatch_err_set(err, E(INTERNAL), errno, "memfd");
	uint8_t *p = mmap(NULL, FILE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return hatch_err_set(err, E(INTERNAL), errno, "mmap");
	/* Not compressible, not all zeros: an xorshift stream. */
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < FILE_BYTES; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + i, &x, 8);
	}
	int r = 0;
	for (unsigned i = 0; i < o->files && r == 0; i++) {
		if (lseek(fd, 0, SEEK_SET) < 0) {
			r = hatch_err_set(err, E(INTERNAL), errno, "lseek");
			break;
		}
		uint64_t t0 = hatch_now_ns();
		if (hatch_vm_write_file(vm, GUEST_FILE, 0600, 0, 0, fd, FILE_BYTES, NULL, err) < 0) {
			r = hatch_err_wrap(err, "write 16 MiB, round %u", i);
			break;
		}
		uint64_t t1 = hatch_now_ns();
		struct cmp_sink k = { .want = p, .len = FILE_BYTES };
		if (hatch_vm_read_file_cb(vm, GUEST_FILE, 0, cmp_chunk, &k, NULL, err) < 0) {
			r = hatch_err_wrap(err, "read 16 MiB, round %u", i);
			break;
		}
		uint64_t t2 = hatch_now_ns();
		if (k.differ || k.n != FILE_BYTES) {
			r = hatch_err_set(err, E(INTERNAL), 0,
					  "round %u: the file read back differs (%zu bytes match)",
					  i, k.n);
			break;
		}
		int e = samples_add(&s->wr, (uint64_t)(mib_per_s(t1 - t0) * 1000.0));
		e = e ?: samples_add(&s->rd, (uint64_t)(mib_per_s(t2 - t1) * 1000.0));
		if (e)
			r = hatch_err_set(err, E(INTERNAL), -e, "samples");
	}
	munmap(p, FILE_BYTES);
	return r;
}

static int throughput(struct hatch_client *c, const struct bench_opts *o,
		      struct lx_samples *s, struct hatch_err *err)
{
	if (bench_wait_idle(c, o->pool, o->idle, true, 0, 20 * NS_PER_MS, 120 * NS_PER_S,
			    NULL, err) < 0)
		return hatch_err_wrap(err, "throughput");
	int vm = -1;
	if (hatch_acquire(c, o->pool, 2000, &vm, NULL, err) < 0)
		return hatch_err_wrap(err, "throughput: acquire");
	int r = record_boot(vm, s, err);
	for (unsigned i = 0; r == 0 && i < EXEC_WARMUP; i++)
		r = exec_true(vm, err);
	uint64_t start = hatch_now_ns();
	for (unsigned i = 0; r == 0 && i < o->execs; i++) {
		uint64_t t0 = hatch_now_ns();
		r = exec_true(vm, err);
		if (r == 0 && samples_add(&s->each_exec, hatch_now_ns() - t0) < 0)
			r = hatch_err_set(err, E(INTERNAL), ENOMEM, "samples");
	}
	s->exec_wall_s = (double)(hatch_now_ns() - start) / (double)NS_PER_S;
	if (r == 0)
		r = files(vm, o, s, err);
	if (r < 0) {
		close(vm);
		return hatch_err_wrap(err, "throughput");
	}
	struct hatch_err rerr = { 0 };
	if (hatch_vm_release(vm, &rerr) < 0)
		fprintf(stderr, "hatch-bench: linux throughput release: %s\n", rerr.msg);
	return 0;
}

/* What every row of this phase carries. */
static void row_tail(FILE *rows, const struct bench_opts *o)
{
	row_str(rows, "section", "linux");
	if (o->emulated)
		row_num(rows, "emulated", 1);
	row_end(rows);
}

static void emit(FILE *rows, const struct bench_opts *o, struct lx_samples *s)
{
	/* The pool's shape is in the fields (and the report's notes), not
	 * repeated in every label. */
	const struct series_set set = { NULL, NULL, "us", US };
	const struct series ser[] = {
		{ "linux.warm", "linux warm: acquire + Exec true + exit status", &s->total },
		{ "linux.warm.acquire", "  acquire alone", &s->acquire },
		{ "linux.warm.in_daemon", "    in hatcheryd (AcquireReply.wait_ns)", &s->in_daemon },
		{ "linux.warm.exec", "  Exec true alone (the VM's first)", &s->exec },
		{ "linux.cold", "linux cold: spawn -> agent ready (fork, jail, VM, boot; "
				"VmInfoReply.ready_ns)", &s->ready },
		{ "linux.cold.kernel", "  kernel entry -> agent ready (VmInfoReply.linux_boot_ns)",
		  &s->kernel },
		{ "linux.exec", "linux Exec true, sequential on one lease", &s->each_exec },
	};
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(ser); i++) {
		row_series_begin(rows, &set, &ser[i]);
		if (i == 0 || i == 4) {
			row_num(rows, "memory_mib", o->memory_mib);
			row_num(rows, "vcpus", o->vcpus);
		}
		if (i == 0) {
			row_num(rows, "min_idle", o->idle);
			row_num(rows, "hits", s->hits);
			row_num(rows, "failures", s->failures);
			row_num(rows, "warmup", 1);
			row_str(rows, "untimed_wait",
				"until idle >= min_idle, nothing spawning, released child reaped");
		}
		if (i == 4) {
			row_str(rows, "source", "VmInfoReply of every child leased in this phase");
			if (o->kernel)
				row_str(rows, "kernel", o->kernel);
		}
		row_tail(rows, o);
	}
	row_begin(rows, "linux.exec_rate", "execs/s",
		  "linux Execs of true, sequential on one lease, whole run");
	row_num(rows, "value", s->exec_wall_s > 0 ? s->each_exec.n / s->exec_wall_s : 0);
	row_num(rows, "n", (double)s->each_exec.n);
	row_num(rows, "wall_s", s->exec_wall_s);
	row_tail(rows, o);
	const struct series_set mib = { NULL, NULL, "MiB/s", 1000.0 };
	const struct series rate[] = {
		{ "linux.write_16mib", "linux WriteFile of 16 MiB from a memfd", &s->wr },
		{ "linux.read_16mib", "linux ReadFile of the same 16 MiB, compared", &s->rd },
	};
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(rate); i++) {
		row_series_begin(rows, &mib, &rate[i]);
		row_tail(rows, o);
	}
}

/* Measurement 15's snapshot: lease, Exec true, hatch_vm_save to
 * o->snapshot; its sizes as a row. */
static int save_snapshot(struct hatch_client *c, const struct bench_opts *o, FILE *rows,
			 struct hatch_err *err)
{
	if (bench_wait_idle(c, o->pool, 1, false, 0, 20 * NS_PER_MS, 300 * NS_PER_S, NULL,
			    err) < 0)
		return hatch_err_wrap(err, "snapshot");
	int vm = -1;
	if (hatch_acquire(c, o->pool, 2000, &vm, NULL, err) < 0)
		return hatch_err_wrap(err, "snapshot: acquire");
	int r = exec_true(vm, err);
	_cleanup_close_ int fd = -1;
	if (r == 0 && (fd = open(o->snapshot, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
		r = hatch_err_set(err, E(INTERNAL), errno, "open %s", o->snapshot);
	uint64_t t0 = hatch_now_ns();
	if (r == 0 && hatch_vm_save(vm, fd, NULL, err) < 0)
		r = hatch_err_wrap(err, "save to %s", o->snapshot);
	uint64_t t1 = hatch_now_ns();
	struct stat st = { 0 };
	if (r == 0 && fstat(fd, &st) < 0)
		r = hatch_err_set(err, E(INTERNAL), errno, "fstat %s", o->snapshot);
	struct hatch_err rerr = { 0 };
	hatch_vm_release(vm, &rerr);
	if (r < 0)
		return hatch_err_wrap(err, "snapshot");
	struct bench_snap_size sz;
	if (bench_snap_size(o->snapshot, &sz, err) < 0)
		return -1;
	row_begin(rows, "linux.snapshot.file", "-",
		  "linux snapshot for 15: a leased VM after one Exec true, saved");
	row_num(rows, "st_size", (double)st.st_size);
	row_num(rows, "allocated_bytes", (double)st.st_blocks * 512.0);
	row_num(rows, "mem_data_bytes", (double)sz.mem_data);
	row_num(rows, "mem_bytes", (double)sz.mem);
	row_num(rows, "save_ms", (double)(t1 - t0) / (double)NS_PER_MS);
	row_num(rows, "memory_mib", o->memory_mib);
	row_tail(rows, o);
	return 0;
}

int bench_linux(const struct bench_opts *o, FILE *rows, struct hatch_err *err)
{
	_cleanup_client_ struct hatch_client *c = NULL;
	if (bench_connect(o->socket, 10000, &c, err) < 0 || bench_check_jail(c, o, err) < 0)
		return -1;
	/* Exec and the file calls stream on the lease's own socket; a Linux
	 * boot takes seconds (~13 s inside scripts/vm). */
	if (bench_wait_idle(c, o->pool, o->idle, true, 0, 20 * NS_PER_MS, 300 * NS_PER_S,
			    NULL, err) < 0)
		return hatch_err_wrap(err, "first fill");
	struct lx_samples s = { 0 };
	int r = warm(c, o, &s, err);
	if (r == 0)
		r = throughput(c, o, &s, err);
	if (r == 0) {
		emit(rows, o, &s);
		r = bench_emit_daemon_stats(c, o, rows, "linux pool", err);
	}
	if (r == 0 && o->snapshot)
		r = save_snapshot(c, o, rows, err);
	lx_samples_free(&s);
	return r;
}
