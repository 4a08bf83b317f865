/* linux_disk.c - measurement 16: 4 KiB random I/O on a Linux guest's
 * /dev/vda, hatchery's vhost-user backend against qemu-storage-daemon,
 * under the same frontend (hatchery's VMM, vmproc/devices/vhost_blk.c).
 *
 * One invocation measures one backend (-l ours or -l qsd) against a linux
 * pool of max = 1 that scripts/bench configured with it: -l ours, disk =
 * IMG, disk_mode = rw (the backend hatcheryd forks and jails per VM); -l
 * qsd, disk_socket = the socket of a qemu-storage-daemon scripts/bench
 * started on the same image (--backend-pid: its pid). One lease, and in it,
 * through Exec, /bin/hatch-iobench (guest/linux/iobench.c; O_DIRECT, so
 * every I/O reaches the device): first an untimed warm-up (randread QD 32,
 * -n / 4 I/Os), then randread and randwrite at QD 1 and QD 32, -n I/Os
 * each. Per run: hatch-iobench's IOPS, p50, p99 (its line on stdout), and
 * the backend's CPU per I/O: utime + stime of the backend process
 * (/proc/PID/stat, all its threads; clock ticks) before and after the Exec,
 * over -n. The backend's pid for -l ours is the leased child's
 * disk_backend_pid (StatusReply). The Exec's own round trip is outside
 * hatch-iobench's timing; the CPU figure includes whatever the backend did
 * in that Exec's lifetime (the I/Os, and a final flush after writes).
 *
 * Rows disk.LABEL.OP.qdN (unit IOPS, with p50_us, p99_us, cpu_us_per_io);
 * the report sets disk.ours.* against disk.qsd.* (report_targets.c). Every
 * row is section=linux, emulated=1 inside scripts/vm.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hatchery/clock.h"
#include "bench.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

struct out_buf {
	char b[1024];
	size_t n;
};

static void on_output(void *ctx, int stream, const void *data, size_t len)
{
	struct out_buf *o = ctx;
	if (stream != HATCH_STDOUT && stream != HATCH_STDERR)
		return;
	size_t room = sizeof(o->b) - 1 - o->n;
	if (len > room)
		len = room;
	memcpy(o->b + o->n, data, len);
	o->n += len;
	o->b[o->n] = '\0';
}

/* utime + stime of pid, in clock ticks: fields 14 and 15 of
 * /proc/PID/stat, counted after the ")" that ends comm. */
static int cpu_ticks(pid_t pid, uint64_t *ticks, struct hatch_err *err)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return hatch_err_set(err, E(INTERNAL), errno, "read %s", path);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	unsigned long long ut = 0, st = 0;
	/* After ")": state (3), then fields 4..13, utime (14), stime (15). */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
			 &ut, &st) != 2)
		return hatch_err_set(err, E(INTERNAL), 0, "%s: unexpected format", path);
	*ticks = ut + st;
	return 0;
}

/* The leased child's disk backend: the pool's one leased child. */
static int leased_backend(struct hatch_client *c, const char *pool, pid_t *pid,
			  struct hatch_err *err)
{
	Hatchery__V1__StatusReply *st = NULL;
	if (hatch_status(c, &st, err) < 0)
		return hatch_err_wrap(err, "status");
	*pid = 0;
	for (size_t i = 0; i < st->n_pools; i++) {
		const Hatchery__V1__PoolStatus *p = st->pools[i];
		if (strcmp(p->name, pool) != 0)
			continue;
		for (size_t k = 0; k < p->n_children; k++)
			if (strcmp(p->children[k]->state, "leased") == 0)
				*pid = (pid_t)p->children[k]->disk_backend_pid;
	}
	hatch_free(st);
	if (*pid <= 0)
		return hatch_err_set(err, E(FAILED_PRECONDITION), 0,
				     "no leased child with a disk backend in pool %s", pool);
	return 0;
}

struct io_result {
	double iops, p50_us, p99_us, max_us, secs, cpu_us_per_io;
};

static int run_iobench(int vm, const char *op, unsigned qd, unsigned n, pid_t backend,
		       struct io_result *res, struct hatch_err *err)
{
	char qds[16], ns[16];
	snprintf(qds, sizeof(qds), "%u", qd);
	snprintf(ns, sizeof(ns), "%u", n);
	const char *argv[] = { "/bin/hatch-iobench", "/dev/vda", op, qds, ns };
	const struct hatch_exec x = { .argv = argv, .argc = 5,
				      .timeout_ms = (uint32_t)(bench_slowdown() * 120000) };
	struct out_buf out = { .n = 0 };
	Hatchery__V1__VmExecReply *rep = NULL;
	uint64_t t0 = 0, t1 = 0;
	if (backend > 0 && cpu_ticks(backend, &t0, err) < 0)
		return -1;
	if (hatch_vm_exec(vm, &x, on_output, &out, &rep, err) < 0)
		return hatch_err_wrap(err, "exec hatch-iobench %s qd %u", op, qd);
	if (backend > 0 && cpu_ticks(backend, &t1, err) < 0) {
		hatch_free(rep);
		return -1;
	}
	bool ok = rep->exit_code == 0 && rep->signal == 0 && !rep->timed_out;
	hatch_free(rep);
	char *line = strstr(out.b, "iobench ");
	if (!ok || !line ||
	    sscanf(line, "iobench op=%*s qd=%*u n=%*u secs=%lf iops=%lf p50_us=%lf p99_us=%lf "
			 "max_us=%lf", &res->secs, &res->iops, &res->p50_us, &res->p99_us,
		   &res->max_us) != 5)
		return hatch_err_set(err, E(INTERNAL), 0, "hatch-iobench %s qd %u: %s%s", op, qd,
				     ok ? "unexpected output: " : "failed: ", out.b);
	double tick_us = 1e6 / (double)sysconf(_SC_CLK_TCK);
	res->cpu_us_per_io = backend > 0 ? (double)(t1 - t0) * tick_us / (double)n : -1;
	return 0;
}

int bench_linux_disk(const struct bench_opts *o, FILE *rows, struct hatch_err *err)
{
	bool ours = o->label && strcmp(o->label, "ours") == 0;
	if (!o->label || (!ours && strcmp(o->label, "qsd") != 0))
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "linuxdisk: -l ours (disk = IMG) or -l qsd (disk_socket)");
	if (!ours && !o->backend_pid)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "linuxdisk -l qsd: --backend-pid (qemu-storage-daemon's)");
	_cleanup_client_ struct hatch_client *c = NULL;
	if (bench_connect(o->socket, 10000, &c, err) < 0 || bench_check_jail(c, o, err) < 0)
		return -1;
	if (bench_wait_idle(c, o->pool, 1, false, 0, 20 * NS_PER_MS, 300 * NS_PER_S, NULL,
			    err) < 0)
		return hatch_err_wrap(err, "first fill");
	int vm = -1;
	if (hatch_acquire(c, o->pool, (uint32_t)(bench_slowdown() * 10000), &vm, NULL, err) < 0)
		return hatch_err_wrap(err, "acquire");
	pid_t backend = (pid_t)o->backend_pid;
	int r = ours ? leased_backend(c, o->pool, &backend, err) : 0;
	struct io_result warm;
	if (r == 0)
		r = run_iobench(vm, "randread", 32, o->count / 4 + 1, 0, &warm, err);
	static const char *const ops[] = { "randread", "randwrite" };
	static const unsigned qds[] = { 1, 32 };
	for (size_t i = 0; r == 0 && i < HATCH_ARRAY_SIZE(ops); i++)
		for (size_t k = 0; r == 0 && k < HATCH_ARRAY_SIZE(qds); k++) {
			struct io_result res;
			r = run_iobench(vm, ops[i], qds[k], o->count, backend, &res, err);
			if (r < 0)
				break;
			char name[64], label[200];
			snprintf(name, sizeof(name), "disk.%s.%s.qd%u", o->label, ops[i], qds[k]);
			snprintf(label, sizeof(label), "disk 4 KiB %s QD%u, %s", ops[i] + 4, qds[k],
				 ours ? "hatchery's backend (jailed)" : "qemu-storage-daemon");
			row_begin(rows, name, "IOPS", label);
			row_num(rows, "value", res.iops);
			row_num(rows, "p50_us", res.p50_us);
			row_num(rows, "p99_us", res.p99_us);
			row_num(rows, "max_us", res.max_us);
			row_num(rows, "n", o->count);
			row_num(rows, "secs", res.secs);
			row_num(rows, "cpu_us_per_io", res.cpu_us_per_io);
			row_num(rows, "backend_pid", (double)backend);
			row_str(rows, "backend", ours ? "hatchery-vhost-blk (disk = IMG, rw)"
						      : "qemu-storage-daemon (disk_socket)");
			row_str(rows, "section", "linux");
			if (o->emulated)
				row_num(rows, "emulated", 1);
			row_end(rows);
		}
	struct hatch_err rerr = { 0 };
	if (r == 0 && hatch_vm_release(vm, &rerr) < 0)
		fprintf(stderr, "hatch-bench: linuxdisk release: %s\n", rerr.msg);
	if (r < 0)
		close(vm);
	return r;
}
