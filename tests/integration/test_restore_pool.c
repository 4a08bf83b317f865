/* Restore pools (kind = restore): children that restore one snapshot file,
 * opened and checked once by hatcheryd at start-up, either before they
 * count as ready (prerestore = true) or on lease. The snapshot is made by a
 * first daemon with a booted pool (a daemon cannot start with a restore
 * pool whose file does not exist yet); a second daemon restores it.
 *
 * Without /dev/kvm every test is reported as skipped, never as passed. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#ifndef HATCH_DEFAULT_GUEST
#error "HATCH_DEFAULT_GUEST must name the default guest ELF"
#endif

#define E(x) HATCHERY__V1__ERROR_CODE__##x

#define BOOTED(name, mib, min_idle)                                              \
	"[pool \"" name "\"]\nkind = booted\nguest = " HATCH_DEFAULT_GUEST         \
	"\nmemory_mib = " #mib "\nmin_idle = " #min_idle "\nmax = 16\n"
/* printf-style: the snapshot's path is the argument. */
#define RESTORE(name, mib, pre, min_idle, max)                                   \
	"[pool \"" name "\"]\nkind = restore\nsnapshot = %s\nprerestore = " pre    \
	"\nmemory_mib = " #mib "\nmin_idle = " #min_idle "\nmax = " #max "\n"

TestSuite(restore_pool, .fini = h_teardown, .timeout = 120);

/* A directory of our own for the snapshot: it outlives the first daemon. */
struct snapfile {
	char dir[64], path[96];
};

static void snapfile_remove(struct snapfile *f)
{
	unlink(f->path);
	rmdir(f->dir);
}

static void echo_ok(int vm, const char *what)
{
	static const char msg[] = "hello from a restored VM";
	Hatchery__V1__VmCallReply *rep = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_call(vm, "echo", msg, sizeof(msg), 0, &rep, &err), 0,
		     "%s: echo: %s (%s)", what, err.msg, hatch_err_code_name(err.code));
	cr_assert_eq(rep->result.len, sizeof(msg), "%s: echo length", what);
	cr_assert_arr_eq(rep->result.data, msg, sizeof(msg), "%s: echo differs", what);
	hatch_free(rep);
}

static int acquire_vm(struct harness *h, const char *pool)
{
	int fd = -1;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_acquire(h->c, pool, 5000, &fd, NULL, &err), 0,
		     "Acquire from \"%s\": %s", pool, err.msg);
	return fd;
}

/* Boot the default guest in a 64 MiB booted pool, call it, Save it. */
static void make_snapshot(struct snapfile *f)
{
	snprintf(f->dir, sizeof(f->dir), "/tmp/hatchery-rp.XXXXXX");
	cr_assert_not_null(mkdtemp(f->dir), "mkdtemp: %s", strerror(errno));
	snprintf(f->path, sizeof(f->path), "%s/guest.snap", f->dir);
	struct harness *h = h_start(BOOTED("b", 64, 1));
	int vm = acquire_vm(h, "b");
	echo_ok(vm, "booted, before Save");
	int fd = open(f->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0, "%s: %s", f->path, strerror(errno));
	Hatchery__V1__VmSaveReply *sr = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_save(vm, fd, &sr, &err), 0, "Save: %s", err.msg);
	hatch_free(sr);
	close(fd);
	cr_assert_eq(hatch_vm_release(vm, &err), 0, "%s", err.msg);
	h_finish(h);
}

static bool has_function(char **fns, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(fns[i], name) == 0)
			return true;
	return false;
}

Test(restore_pool, prerestore_hands_out_a_running_vm)
{
	struct snapfile f;
	make_snapshot(&f);
	struct harness *h = h_start(RESTORE("r", 64, "true", 1, 4), f.path);
	h_wait_steady(h, H_WAIT_MS);
	int vm = acquire_vm(h, "r");
	echo_ok(vm, "prerestored");
	Hatchery__V1__VmInfoReply *info = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_info(vm, &info, &err), 0, "Info: %s", err.msg);
	cr_assert_str_eq(info->kind, "restore");
	cr_assert(has_function(info->guest_functions, info->n_guest_functions, "echo"),
		  "Info lists %zu guest functions, no echo", info->n_guest_functions);
	hatch_free(info);
	/* Already restored: a VM takes one guest. */
	int snap = open(f.path, O_RDONLY | O_CLOEXEC);
	Hatchery__V1__VmRestoreReply *rr = NULL;
	cr_assert_lt(hatch_vm_restore(vm, snap, &rr, &err), 0);
	cr_assert_eq(err.code, E(FAILED_PRECONDITION), "%s", err.msg);
	close(snap);
	echo_ok(vm, "prerestored, after a refused Restore");
	cr_assert_eq(hatch_vm_release(vm, &err), 0, "%s", err.msg);
	h_finish(h);
	snapfile_remove(&f);
}

Test(restore_pool, restore_on_lease)
{
	struct snapfile f;
	make_snapshot(&f);
	struct harness *h = h_start(RESTORE("l", 64, "false", 1, 4), f.path);
	h_wait_steady(h, H_WAIT_MS);
	/* The first request (a Call) may reach the child before SupLeased. */
	int vm = acquire_vm(h, "l");
	echo_ok(vm, "restored on lease, first request");
	echo_ok(vm, "restored on lease, again");
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_release(vm, &err), 0, "%s", err.msg);
	/* Info first: it too sees the restored guest. */
	h_wait_steady(h, H_WAIT_MS);
	vm = acquire_vm(h, "l");
	Hatchery__V1__VmInfoReply *info = NULL;
	cr_assert_eq(hatch_vm_info(vm, &info, &err), 0, "Info: %s", err.msg);
	cr_assert(has_function(info->guest_functions, info->n_guest_functions, "echo"),
		  "Info lists %zu guest functions, no echo", info->n_guest_functions);
	hatch_free(info);
	echo_ok(vm, "restored on lease, after Info");
	cr_assert_eq(hatch_vm_release(vm, &err), 0, "%s", err.msg);
	h_finish(h);
	snapfile_remove(&f);
}

Test(restore_pool, snapshot_that_does_not_fit_stops_start_up)
{
	struct snapfile f;
	make_snapshot(&f);
	char cfg[128], sock[128], out[4096];
	snprintf(cfg, sizeof(cfg), "%s/h.conf", f.dir);
	snprintf(sock, sizeof(sock), "%s/h.sock", f.dir);
	FILE *c = fopen(cfg, "we");
	cr_assert_not_null(c);
	fprintf(c, "[supervisor]\nsocket = %s\ncgroup = optional\n" RESTORE("r", 32, "true", 1, 2),
		sock, f.path);
	fclose(c);
	int st = h_run(HATCHERYD_PATH, (const char *[]){ "-c", cfg, NULL }, 0, out, sizeof(out),
		       5000);
	cr_assert_eq(st, 1, "exit status %d: %s", st, out);
	cr_assert_not_null(strstr(out, f.path), "names the snapshot: %s", out);
	cr_assert_not_null(strstr(out, "0x4000000"), "names the snapshot's size: %s", out);
	cr_assert_not_null(strstr(out, "0x2000000"), "names the pool's size: %s", out);
	cr_assert_not_null(strstr(out, "memory_mib = 32"), "names the key: %s", out);
	unlink(cfg);
	snapfile_remove(&f);
}

struct pool_arg {
	struct harness *h;
	const char *pool;
	const char *needle;
};

static bool pool_has_error(void *arg)
{
	struct pool_arg *a = arg;
	Hatchery__V1__StatusReply *st = h_status(a->h);
	const Hatchery__V1__PoolStatus *p = h_pool_in(st, a->pool);
	bool d = p && strstr(p->last_error, a->needle);
	hatch_free(st);
	return d;
}

static bool pool_degraded(void *arg)
{
	struct pool_arg *a = arg;
	Hatchery__V1__StatusReply *st = h_status(a->h);
	const Hatchery__V1__PoolStatus *p = h_pool_in(st, a->pool);
	bool d = p && p->degraded && strstr(p->last_error, "snapshot");
	hatch_free(st);
	return d;
}

Test(restore_pool, snapshot_changed_after_start_up_is_refused)
{
	struct snapfile f;
	make_snapshot(&f);
	struct harness *h = h_start(RESTORE("r", 64, "true", 1, 4) RESTORE("l", 64, "false", 1, 4)
					    BOOTED("b", 64, 1),
				    f.path, f.path);
	h_wait_steady(h, H_WAIT_MS);
	/* A byte of vcpu0's registers (the first section's payload), in
	 * place: the daemon's fd follows the inode. */
	int fd = open(f.path, O_RDWR | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	const off_t at = 128 + 24 + 10;
	uint8_t b;
	cr_assert_eq(pread(fd, &b, 1, at), 1);
	uint8_t flipped = b ^ 0x40;
	cr_assert_eq(pwrite(fd, &flipped, 1, at), 1);

	/* The idle prerestored child restored the good file: it still works.
	 * Its replacements fail with the snapshot's name. */
	int vm = acquire_vm(h, "r");
	echo_ok(vm, "restored before the change");
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_release(vm, &err), 0, "%s", err.msg);
	struct pool_arg a = { h, "r", "snapshot" };
	cr_assert(h_wait_until(pool_degraded, &a, 10000), "pool r not degraded with a "
							  "snapshot error");
	Hatchery__V1__StatusReply *st = h_status(h);
	const Hatchery__V1__PoolStatus *p = h_pool_in(st, "r");
	cr_assert_not_null(strstr(p->last_error, f.path), "%s", p->last_error);
	cr_assert_not_null(strstr(p->last_error, "checksum"), "%s", p->last_error);
	hatch_free(st);

	/* Restore on lease: the request gets the error, the child goes. */
	vm = acquire_vm(h, "l");
	Hatchery__V1__VmCallReply *rep = NULL;
	cr_assert_lt(hatch_vm_call(vm, "echo", "x", 1, 0, &rep, &err), 0);
	cr_assert_eq(err.code, E(FAILED_PRECONDITION), "%s (%s)", err.msg,
		     hatch_err_code_name(err.code));
	cr_assert_not_null(strstr(err.msg, f.path), "%s", err.msg);
	close(vm);
	/* The child's report reaches the supervisor on its own channel,
	 * maybe after the reply reached us. */
	struct pool_arg la = { h, "l", f.path };
	cr_assert(h_wait_until(pool_has_error, &la, 5000), "pool l: no last_error naming %s",
		  f.path);

	/* The other pool carries on. */
	vm = acquire_vm(h, "b");
	echo_ok(vm, "booted pool beside the broken one");
	cr_assert_eq(hatch_vm_release(vm, &err), 0, "%s", err.msg);

	/* Put the byte back: the pool recovers after its backoff. */
	cr_assert_eq(pwrite(fd, &b, 1, at), 1);
	close(fd);
	h_finish(h);
	snapfile_remove(&f);
}

Test(restore_pool, many_leases_each_restore_the_same_file)
{
	struct snapfile f;
	make_snapshot(&f);
	struct harness *h = h_start(RESTORE("r", 64, "true", 2, 6) RESTORE("l", 64, "false", 2, 6),
				    f.path, f.path);
	struct hatch_err err = { 0 };
	for (int i = 0; i < 20; i++) {
		char what[32];
		snprintf(what, sizeof(what), "lease %d of %s", i, i % 2 ? "l" : "r");
		int vm = acquire_vm(h, i % 2 ? "l" : "r");
		echo_ok(vm, what);
		cr_assert_eq(hatch_vm_release(vm, &err), 0, "%s", err.msg);
	}
	struct h_stats s = h_stats(h, "r");
	cr_assert_eq(s.spawn_failures, 0);
	h_finish(h);
	snapfile_remove(&f);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* A measurement, not a test: its own suite, which no ctest entry runs
 * (tests/CMakeLists.txt filters by suite). By hand:
 *   HATCH_RP_BENCH=1 build/tests/test_daemon --filter 'bench_restore_pool/acquire_first_echo' --verbose */
TestSuite(bench_restore_pool, .fini = h_teardown, .timeout = 600);

/* Opt-in (HATCH_RP_BENCH=1): acquire + first echo, each from a full, quiet
 * pool (min_idle = 8), for a booted, a prerestore and a restore-on-lease
 * pool. Numbers to stderr; asserts only that every lease works. */
Test(bench_restore_pool, acquire_first_echo)
{
	if (!getenv("HATCH_RP_BENCH"))
		cr_skip_test("set HATCH_RP_BENCH=1 to measure");
	int n = 200;
	struct snapfile f;
	make_snapshot(&f);
	struct harness *h = h_start(BOOTED("b", 64, 8)
				    RESTORE("r", 64, "true", 8, 16) RESTORE("l", 64, "false", 8, 16),
				    f.path, f.path);
	static const char *const pools[] = { "b", "r", "l" };
	uint64_t *t = calloc((size_t)n, sizeof(*t));
	cr_assert_not_null(t);
	for (size_t k = 0; k < 3; k++) {
		for (int i = 0; i < n; i++) {
			h_wait_steady(h, H_WAIT_MS);
			struct timespec a, b;
			clock_gettime(CLOCK_MONOTONIC, &a);
			int vm = acquire_vm(h, pools[k]);
			Hatchery__V1__VmCallReply *rep = NULL;
			struct hatch_err err = { 0 };
			cr_assert_eq(hatch_vm_call(vm, "echo", "x", 1, 0, &rep, &err), 0, "%s",
				     err.msg);
			clock_gettime(CLOCK_MONOTONIC, &b);
			hatch_free(rep);
			t[i] = (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000ull +
			       (uint64_t)b.tv_nsec - (uint64_t)a.tv_nsec;
			cr_assert_eq(hatch_vm_release(vm, &err), 0, "%s", err.msg);
		}
		qsort(t, (size_t)n, sizeof(*t), cmp_u64);
		fprintf(stderr, "BENCH pool %s (%s): acquire + first echo, n=%d: p50 %.1f us, "
				"p90 %.1f us, p99 %.1f us, min %.1f us\n",
			pools[k], k == 0 ? "booted" : k == 1 ? "restore, prerestore" :
							 "restore on lease",
			n, t[n / 2] / 1e3, t[n * 9 / 10] / 1e3, t[n * 99 / 100] / 1e3, t[0] / 1e3);
	}
	free(t);
	h_finish(h);
	snapfile_remove(&f);
}
