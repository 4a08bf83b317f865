/* reuse = snapshot: a restore pool's child that ends a lease cleanly
 * (Release or EOF) restores the snapshot over itself and is idle again;
 * any other end (a guest fault) still ends the child, and reuse = never
 * (the default) is single use. The snapshot is made by a first daemon with
 * a booted pool, as in test_restore_pool.c.
 *
 * Without /dev/kvm every test is reported as skipped, never as passed. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#ifndef HATCH_DEFAULT_GUEST
#error "HATCH_DEFAULT_GUEST must name the default guest ELF"
#endif

#define BOOTED(name)                                                             \
	"[pool \"" name "\"]\nkind = booted\nguest = " HATCH_DEFAULT_GUEST         \
	"\nmemory_mib = 64\nmin_idle = 1\nmax = 2\n"
/* printf-style: the snapshot's path is the argument. */
#define RESTORE(name, pre, reuse, min_idle, max)                                 \
	"[pool \"" name "\"]\nkind = restore\nsnapshot = %s\nprerestore = " pre    \
	"\nreuse = " reuse "\nmemory_mib = 64\nmin_idle = " #min_idle              \
	"\nmax = " #max "\n"

TestSuite(reuse, .fini = h_teardown, .timeout = 120);

struct snapfile {
	char dir[64], path[96];
};

static void snapfile_remove(struct snapfile *f)
{
	unlink(f->path);
	rmdir(f->dir);
}

static void make_snapshot(struct snapfile *f)
{
	snprintf(f->dir, sizeof(f->dir), "/tmp/hatchery-ru.XXXXXX");
	cr_assert_not_null(mkdtemp(f->dir), "mkdtemp: %s", strerror(errno));
	snprintf(f->path, sizeof(f->path), "%s/guest.snap", f->dir);
	struct harness *h = h_start(BOOTED("b"));
	int vm = -1;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_acquire(h->c, "b", 5000, &vm, NULL, &err), 0, "%s", err.msg);
	int fd = open(f->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0, "%s: %s", f->path, strerror(errno));
	Hatchery__V1__VmSaveReply *sr = NULL;
	cr_assert_eq(hatch_vm_save(vm, fd, &sr, &err), 0, "Save: %s", err.msg);
	hatch_free(sr);
	close(fd);
	cr_assert_eq(hatch_vm_release(vm, &err), 0, "%s", err.msg);
	h_finish(h);
}

static int acquire(struct harness *h, const char *pool, pid_t *pid)
{
	int fd = -1;
	Hatchery__V1__AcquireReply *ar = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_acquire(h->c, pool, 5000, &fd, &ar, &err), 0,
		     "Acquire from \"%s\": %s", pool, err.msg);
	*pid = (pid_t)ar->child_pid;
	hatch_free(ar);
	return fd;
}

/* `random`: 16 bytes, then the generation (8 bytes, little-endian). */
static uint64_t call_random(int vm, uint8_t bytes[16])
{
	Hatchery__V1__VmCallReply *rep = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_call(vm, "random", "", 0, 0, &rep, &err), 0, "random: %s",
		     err.msg);
	cr_assert_eq(rep->result.len, 24);
	uint64_t gen;
	memcpy(bytes, rep->result.data, 16);
	memcpy(&gen, rep->result.data + 16, 8);
	hatch_free(rep);
	return gen;
}

static void call_ok(int vm, const char *fn, const char *payload)
{
	Hatchery__V1__VmCallReply *rep = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_call(vm, fn, payload, strlen(payload), 0, &rep, &err), 0,
		     "%s: %s", fn, err.msg);
	hatch_free(rep);
}

/* Anonymous memory of pid in KiB (RssAnon: guest pages written, private
 * copies of the snapshot's pages included). */
static long rss_anon_kib(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "re");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	long kib = -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "RssAnon: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

struct pid_arg {
	struct harness *h;
	const char *pool;
	pid_t pid;
};

static bool pid_is_ready(void *arg)
{
	struct pid_arg *a = arg;
	pid_t pids[16];
	size_t n = h_child_pids(a->h, a->pool, "ready", pids, 16);
	return h_pid_in(a->pid, pids, n < 16 ? n : 16);
}

Test(reuse, released_child_comes_back_with_the_snapshot_state)
{
	struct snapfile f;
	make_snapshot(&f);
	/* max = 1: no replacement is forked while the child is leased, so
	 * the next lease can only go to the reset child (or fail). */
	struct harness *h = h_start(RESTORE("r", "true", "snapshot", 1, 1), f.path);
	h_wait_steady(h, H_WAIT_MS);
	Hatchery__V1__StatusReply *st = h_status(h);
	cr_assert_str_eq(h_pool_in(st, "r")->reuse, "snapshot");
	hatch_free(st);
	struct hatch_err err = { 0 };
	uint8_t a[16], b[16];
	pid_t pid, pid2;

	/* Lease 1: the guest runs, writes its PRNG state, and 32 MiB of heap
	 * that the snapshot holds as zero pages (no extent maps them). */
	int vm = acquire(h, "r", &pid);
	uint64_t gen1 = call_random(vm, a);
	cr_assert_eq(gen1, 1, "a restored clone is generation 1");
	call_ok(vm, "alloc", "32");
	long dirty = rss_anon_kib(pid);
	cr_assert_eq(hatch_vm_release(vm, &err), 0, "%s", err.msg);
	close(vm);

	/* The same process comes back idle, its written memory gone. */
	struct pid_arg pa = { h, "r", pid };
	cr_assert(h_wait_until(pid_is_ready, &pa, 5000), "child %d not idle again", pid);
	cr_assert_neq(h_proc_state(pid), 0, "child %d exited", pid);
	long clean = rss_anon_kib(pid);
	cr_assert_lt(clean + 24 * 1024, dirty,
		     "RssAnon %ld KiB after the reset, %ld KiB before: the 32 MiB the "
		     "last guest wrote were not dropped", clean, dirty);
	struct h_stats s = h_stats(h, "r");
	cr_assert_eq(s.resets, 1);
	cr_assert_eq(s.unexpected_exits, 0);

	/* Lease 2, from the same process: the snapshot's memory again. Generation 1, not 2: the shared
	 * page came back from the snapshot (generation 0) and was bumped once;
	 * new seed bytes, so other numbers. */
	vm = acquire(h, "r", &pid2);
	cr_assert_eq(pid2, pid, "lease 2 went to child %d, not the reset %d", pid2, pid);
	cr_assert_eq(call_random(vm, b), 1, "generation after a reset");
	cr_assert(memcmp(a, b, 16) != 0, "the reset child repeated its random bytes");
	call_ok(vm, "echo", "still works");
	/* End this lease by hanging up instead of Release: also clean. */
	close(vm);
	pa.pid = pid;
	cr_assert(h_wait_until(pid_is_ready, &pa, 5000), "child %d not idle after EOF", pid);
	cr_assert_eq(h_stats(h, "r").resets, 2);
	h_finish(h);
	snapfile_remove(&f);
}

Test(reuse, restore_on_lease_pool_is_reset_too)
{
	struct snapfile f;
	make_snapshot(&f);
	struct harness *h = h_start(RESTORE("l", "false", "snapshot", 1, 1), f.path);
	h_wait_steady(h, H_WAIT_MS);
	struct hatch_err err = { 0 };
	pid_t first = 0;
	for (int i = 0; i < 5; i++) {
		pid_t pid;
		uint8_t r[16];
		int vm = acquire(h, "l", &pid);
		if (i == 0)
			first = pid;
		cr_assert_eq(pid, first, "lease %d: child %d, not the reused %d", i, pid, first);
		cr_assert_eq(call_random(vm, r), 1);
		call_ok(vm, "alloc", "8");
		cr_assert_eq(hatch_vm_release(vm, &err), 0, "%s", err.msg);
		close(vm);
	}
	struct h_stats s = h_stats(h, "l");
	cr_assert_eq(s.spawned, 1, "max = 1: one child served all five leases");
	h_wait_steady(h, H_WAIT_MS);
	cr_assert_eq(h_stats(h, "l").resets, 5);
	h_finish(h);
	snapfile_remove(&f);
}

Test(reuse, faulted_lease_ends_the_child)
{
	struct snapfile f;
	make_snapshot(&f);
	struct harness *h = h_start(RESTORE("r", "true", "snapshot", 1, 2), f.path);
	h_wait_steady(h, H_WAIT_MS);
	pid_t pid;
	int vm = acquire(h, "r", &pid);
	Hatchery__V1__VmCallReply *rep = NULL;
	struct hatch_err err = { 0 };
	cr_assert_lt(hatch_vm_call(vm, "fault", "", 0, 0, &rep, &err), 0);
	close(vm);
	cr_assert(h_wait_pid_gone(pid, 5000), "a child whose guest faulted was kept");
	h_wait_steady(h, H_WAIT_MS);
	cr_assert_eq(h_stats(h, "r").resets, 0);
	h_finish(h);
	snapfile_remove(&f);
}

Test(reuse, never_is_single_use)
{
	struct snapfile f;
	make_snapshot(&f);
	struct harness *h = h_start(RESTORE("n", "true", "never", 1, 2), f.path);
	h_wait_steady(h, H_WAIT_MS);
	pid_t pid;
	int vm = acquire(h, "n", &pid);
	struct hatch_err err = { 0 };
	call_ok(vm, "echo", "x");
	cr_assert_eq(hatch_vm_release(vm, &err), 0, "%s", err.msg);
	close(vm);
	cr_assert(h_wait_pid_gone(pid, 5000), "reuse = never kept child %d", pid);
	h_wait_steady(h, H_WAIT_MS);
	cr_assert_eq(h_stats(h, "n").resets, 0);
	h_finish(h);
	snapfile_remove(&f);
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t p = *(const uint64_t *)x, q = *(const uint64_t *)y;
	return p < q ? -1 : p > q;
}

static uint64_t mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* A measurement, not a test: its own suite, which no ctest entry runs
 * (tests/CMakeLists.txt filters by suite). By hand:
 *   HATCH_REUSE_BENCH=1 build/tests/test_daemon --filter 'bench_reuse/release_to_idle' --verbose */
TestSuite(bench_reuse, .fini = h_teardown, .timeout = 600);

/* Opt-in (HATCH_REUSE_BENCH=1): one child (max = 1), so the next Acquire
 * after a Release waits for exactly that child's reset. Measures Release
 * reply -> next Acquire reply (release to idle again, plus one lease). */
Test(bench_reuse, release_to_idle)
{
	if (!getenv("HATCH_REUSE_BENCH"))
		cr_skip_test("set HATCH_REUSE_BENCH=1 to measure");
	enum { N = 50 };
	struct snapfile f;
	make_snapshot(&f);
	struct harness *h = h_start(RESTORE("r", "true", "snapshot", 1, 1), f.path);
	h_wait_steady(h, H_WAIT_MS);
	uint64_t t[N];
	struct hatch_err err = { 0 };
	pid_t pid;
	int vm = acquire(h, "r", &pid);
	for (int i = 0; i < N; i++) {
		call_ok(vm, "alloc", "4");
		cr_assert_eq(hatch_vm_release(vm, &err), 0, "%s", err.msg);
		close(vm);
		uint64_t t0 = mono_ns();
		pid_t p2;
		vm = acquire(h, "r", &p2);
		t[i] = mono_ns() - t0;
		cr_assert_eq(p2, pid);
	}
	cr_assert_eq(hatch_vm_release(vm, &err), 0, "%s", err.msg);
	close(vm);
	qsort(t, N, sizeof(t[0]), cmp_u64);
	fprintf(stderr, "BENCH reuse: release -> next acquire of the same child, n=%d: "
			"p50 %.1f us, p90 %.1f us, max %.1f us\n",
		N, t[N / 2] / 1e3, t[N * 9 / 10] / 1e3, t[N - 1] / 1e3);
	h_finish(h);
	snapfile_remove(&f);
}
