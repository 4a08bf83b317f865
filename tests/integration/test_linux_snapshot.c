/* Snapshots of Linux guests and restore pools that serve them, through real
 * hatcheryd processes (jailed): a booted Linux VM is warmed up and saved
 * with `hatchctl snapshot --exec`, then restore pools serve clones of it.
 * Each clone sees what the original wrote, runs programs, shows the host's
 * wall-clock time (the original's clock was set an hour back before the
 * save, as if restored an hour later) with a monotonic clock that did not
 * go back, and draws its own random bytes; restore pools refill after
 * SIGKILL, reuse = snapshot resets a clone, and snapshots that do not fit
 * a pool are refused at start-up with a message that says why.
 *
 * One boot makes the snapshot (seconds natively, ~20 s inside scripts/vm),
 * so it is one Test in parts, on one file in /tmp. Labelled linux: scripts/test
 * runs it natively only where the host's KVM can boot a kernel, otherwise
 * in scripts/vm. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "booted_tests.h"
#include "guest_sh.h"
#include "harness.h"
#include "snapshot.h"

#define LX "[pool \"lx\"]\nkind = linux\nmemory_mib = 256\nvcpus = 2\nmin_idle = 1\nmax = 1\n"

TestSuite(linux_snapshot, .fini = h_teardown, .timeout = 900);

static const char *cfg_timeouts(void)
{
	static char t[256];
	snprintf(t, sizeof(t), "boot_timeout_ms = %u\nhealth_interval_ms = %u\n"
		 "health_timeout_ms = %u\n", t_ms(20000u), t_ms(2000u), t_ms(1000u));
	return t;
}

/* ---- the snapshot, made once -------------------------------------------- */

static char snap_dir[64];
static char snap_path[128];

static void make_snapshot(void)
{
	snprintf(snap_dir, sizeof(snap_dir), "/tmp/hatchery-lxsnap.XXXXXX");
	cr_assert_not_null(mkdtemp(snap_dir));
	snprintf(snap_path, sizeof(snap_path), "%s/lx.snap", snap_dir);
	struct harness *h = h_start(LX "%s", cfg_timeouts());
	/* The warm-up: a file in /tmp, the wall clock an hour back (so a
	 * clone that shows the host's time got it from the resume, not from
	 * the snapshot), the uptime at the save. */
	char script[256];
	snprintf(script, sizeof(script),
		 "echo warm > /tmp/marker && date -s @$(( $(date +%%s) - 3600 )) >/dev/null && "
		 "cat /proc/uptime > /tmp/uptime");
	char out[4096], deadline[16];
	snprintf(deadline, sizeof(deadline), "%u", t_ms(60000u));
	const char *args[] = { "--socket", h->sock, "snapshot", "lx", snap_path, "--exec", script,
			       "--deadline", deadline, NULL };
	int st = h_run(HATCHCTL_PATH, args, 0, out, sizeof(out), t_ms(120000u));
	cr_assert_eq(st, 0, "hatchctl snapshot --exec: status %d: %s", st, out);
	cr_assert_not_null(strstr(out, "saved "), "%s", out);
	struct stat sb;
	cr_assert_eq(stat(snap_path, &sb), 0);
	cr_assert_eq(sb.st_mode & 0777, 0600);
	/* The original goes on after the save: its lease was released, and
	 * the single-use pool replaces it. */
	h_finish(h);
	/* The uptime the guest had at the save, read off the saved file. */
	int fd = open(snap_path, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	struct snap_image img;
	struct hatch_err err = { 0 };
	cr_assert_eq(snap_parse_fd(fd, NULL, &img, &err), 0, "%s", err.msg);
	cr_assert_not_null(img.st.devices, "a Linux snapshot has a devices section");
	cr_assert_null(img.st.runtime, "and no kernel-less runtime");
	cr_assert_eq(img.st.nvcpus, 2);
	cr_assert_eq(img.st.mem_size, 256ull << 20);
	snap_image_free(&img);
	close(fd);
}

static const char *restore_pools(void)
{
	static char c[2048];
	snprintf(c, sizeof(c),
		 "[pool \"pre\"]\nkind = restore\nsnapshot = %s\nmemory_mib = 256\nvcpus = 2\n"
		 "prerestore = true\nmin_idle = 2\nmax = 3\n%s"
		 "[pool \"lazy\"]\nkind = restore\nsnapshot = %s\nmemory_mib = 256\nvcpus = 2\n"
		 "min_idle = 1\nmax = 1\n%s"
		 "[pool \"again\"]\nkind = restore\nsnapshot = %s\nmemory_mib = 256\nvcpus = 2\n"
		 "prerestore = true\nreuse = snapshot\nmin_idle = 1\nmax = 1\n%s",
		 snap_path, cfg_timeouts(), snap_path, cfg_timeouts(), snap_path, cfg_timeouts());
	return c;
}

static double host_realtime(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A clone: the file of the warm-up, programs run, the clock is the host's
 * (within 1 s) and did not go back; returns 32 bytes of its /dev/urandom
 * as hex in rnd[65]. */
static void check_clone(int vm, const char *what, char rnd[65])
{
	cr_assert_str_eq(guest_sh(vm, "cat /tmp/marker"), "warm\n", "%s: the warm-up's file", what);
	/* busybox's date has whole seconds: the guest's time is in [g, g+1). */
	double before = host_realtime();
	const char *t = guest_sh(vm, "date +%s");
	double after = host_realtime(), g = strtod(t, NULL);
	cr_assert(g + 1.0 > before - 1.0 && g < after + 1.0,
		  "%s: guest time %.0f, host %.3f..%.3f: the clock was not set on resume",
		  what, g, before, after);
	double up_then = strtod(guest_sh(vm, "cat /tmp/uptime"), NULL);
	double up_now = strtod(guest_sh(vm, "cat /proc/uptime"), NULL);
	cr_assert(up_then > 0 && up_now >= up_then,
		  "%s: uptime %.2f after the restore, %.2f at the save: monotonic went back",
		  what, up_now, up_then);
	const char *r = guest_sh(vm, "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'");
	cr_assert_eq(strlen(r), 64, "%s: %s", what, r);
	memcpy(rnd, r, 65);
}

/* 1: two prerestored clones and one restored on lease. */
static void clones_see_the_file_run_programs_have_the_clock_and_own_randomness(void)
{
	struct harness *h = h_start("%s", restore_pools());
	h_wait_steady(h, t_ms(120000u));
	pid_t p1, p2;
	int a = acquire_vm(h, "pre", &p1);
	int b = acquire_vm(h, "pre", &p2);
	cr_assert_neq(p1, p2);
	char ra[65], rb[65];
	check_clone(a, "clone a", ra);
	check_clone(b, "clone b", rb);
	cr_assert_str_neq(ra, rb, "two clones drew the same random bytes: %s", ra);
	Hatchery__V1__VmInfoReply *info = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_info(a, &info, &err), 0, "%s", err.msg);
	cr_assert_str_eq(info->kind, "restore");
	cr_assert_not_null(strstr(info->kernel_release, "amd64"), "kernel_release \"%s\"",
			   info->kernel_release);
	cr_assert_eq(info->guest_nproc, 2);
	hatch_free(info);
	cr_assert_eq(hatch_vm_release(a, &err), 0, "%s", err.msg);
	cr_assert_eq(hatch_vm_release(b, &err), 0, "%s", err.msg);

	/* Restored on lease: the same. */
	pid_t p3;
	int c = acquire_vm(h, "lazy", &p3);
	char rc[65];
	check_clone(c, "clone restored on lease", rc);
	cr_assert_str_neq(rc, ra);
	cr_assert_eq(hatch_vm_release(c, &err), 0, "%s", err.msg);
	h_finish(h);
}

static bool pool_refilled(void *arg)
{
	void **a = arg;
	struct harness *h = a[0];
	const pid_t *old = a[1];
	pid_t now[4];
	size_t n = h_child_pids(h, "pre", "ready", now, 4);
	if (n < 2)
		return false;
	for (size_t i = 0; i < n && i < 4; i++)
		if (h_pid_in(now[i], old, 2))
			return false;
	return true;
}

/* 2: SIGKILLed clones are replaced; reuse = snapshot resets one. */
static void restore_pool_refills_after_sigkill_and_reuse_resets_a_clone(void)
{
	struct harness *h = h_start("%s", restore_pools());
	h_wait_steady(h, t_ms(120000u));
	pid_t old[2];
	cr_assert_eq(h_child_pids(h, "pre", "ready", old, 2), 2);
	kill(old[0], SIGKILL);
	kill(old[1], SIGKILL);
	void *arg[2] = { h, old };
	cr_assert(h_wait_until(pool_refilled, arg, t_ms(120000u)),
		  "the restore pool did not refill after its children were killed");
	pid_t p;
	int vm = acquire_vm(h, "pre", &p);
	char r[65];
	check_clone(vm, "a refilled clone", r);
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_release(vm, &err), 0, "%s", err.msg);

	/* reuse = snapshot: what a lease wrote is gone at the next lease,
	 * in the same child. */
	pid_t q1, q2;
	vm = acquire_vm(h, "again", &q1);
	guest_sh(vm, "echo mine > /tmp/lease1 && echo changed > /tmp/marker && "
	       "echo '<2>lease one was here' > /dev/kmsg");
	Hatchery__V1__VmInfoReply *info = NULL;
	cr_assert_eq(hatch_vm_info(vm, &info, &err), 0, "%s", err.msg);
	cr_assert_not_null(strstr(info->console_tail, "lease one was here"), "%s",
			   info->console_tail);
	hatch_free(info);
	cr_assert_eq(hatch_vm_release(vm, &err), 0, "%s", err.msg);
	vm = acquire_vm(h, "again", &q2);
	cr_assert_eq(q1, q2, "reuse = snapshot serves the next lease from the same child");
	cr_assert_str_eq(guest_sh(vm, "ls /tmp/lease1 2>/dev/null; cat /tmp/marker"), "warm\n",
			 "the last lease's files survived the reset");
	cr_assert_eq(hatch_vm_info(vm, &info, &err), 0, "%s", err.msg);
	cr_assert_null(strstr(info->console_tail, "lease one was here"),
		       "the next lease sees the last one's console: %s", info->console_tail);
	hatch_free(info);
	char r2[65];
	check_clone(vm, "a reset clone", r2);
	cr_assert_eq(hatch_vm_release(vm, &err), 0, "%s", err.msg);
	cr_assert_geq(h_stats(h, "again").resets, 1);
	h_finish(h);
}

/* ---- snapshots that do not fit ---------------------------------------------- */

/* hatcheryd with cfg must refuse to start, saying `want` (and `want2`). */
static void refused(const char *cfg, const char *want, const char *want2)
{
	char dir[] = "/tmp/hatchery-lxbad.XXXXXX", path[96], sock[96], out[8192];
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/h.conf", dir);
	snprintf(sock, sizeof(sock), "%s/h.sock", dir);
	FILE *f = fopen(path, "we");
	cr_assert_not_null(f);
	fputs(cfg, f);
	fclose(f);
	const char *args[] = { "-c", path, "--socket", sock, NULL };
	int st = h_run(HATCHERYD_PATH, args, 0, out, sizeof(out), t_ms(20000u));
	cr_assert_eq(st, 1, "hatcheryd started (status %d) with %s: %s", st, cfg, out);
	cr_assert_not_null(strstr(out, want), "expected \"%s\" in: %s", want, out);
	if (want2)
		cr_assert_not_null(strstr(out, want2), "expected \"%s\" in: %s", want2, out);
	unlink(path);
	rmdir(dir);
}

/* Rewrite the snapshot with `edit` applied to its state: the memory is
 * read back from the file's extents. */
static void rewrite(const char *to, void (*edit)(struct snap_state *s, struct snap_devices *d))
{
	int fd = open(snap_path, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	struct snap_image img;
	struct hatch_err err = { 0 };
	cr_assert_eq(snap_parse_fd(fd, NULL, &img, &err), 0, "%s", err.msg);
	struct stat sb;
	cr_assert_eq(fstat(fd, &sb), 0);
	const uint8_t *file = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	cr_assert_neq(file, MAP_FAILED);
	uint8_t *mem = mmap(NULL, img.st.mem_size, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(mem, MAP_FAILED);
	for (uint32_t i = 0; i < img.nextents; i++)
		memcpy(mem + snap_gpa_to_ram_offset(img.ext[i].gpa),
		       file + img.ext[i].file_offset, img.ext[i].len);
	struct snap_state s = img.st;
	struct snap_devices d = *img.st.devices;
	s.mem = mem;
	s.devices = &d;
	edit(&s, &d);
	int out = open(to, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_geq(out, 0);
	cr_assert_eq(snap_write_fd(out, &s, &err), 0, "%s", err.msg);
	close(out);
	munmap(mem, img.st.mem_size);
	munmap((void *)file, (size_t)sb.st_size);
	snap_image_free(&img);
	close(fd);
}

static void two_consoles(struct snap_state *s, struct snap_devices *d)
{
	(void)s;
	d->nvirtio = 2;
	d->virtio[1] = d->virtio[0];
}

static void unchanged(struct snap_state *s, struct snap_devices *d)
{
	(void)s;
	(void)d;
}

static void other_cpu(struct snap_state *s, struct snap_devices *d)
{
	(void)d;
	s->cpu.signature ^= 0x10;
}

/* Flip one byte of the devices section's payload (type 38), walking the
 * sections as docs/snapshot.md lays them out. */
static void corrupt_devices(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	uint8_t hdr[128];
	cr_assert_eq(pread(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
	uint32_t n;
	uint64_t off;
	memcpy(&n, hdr + 52, 4);
	memcpy(&off, hdr + 56, 8);
	for (uint32_t i = 0; i < n; i++) {
		uint8_t sh[24];
		cr_assert_eq(pread(fd, sh, sizeof(sh), (off_t)off), (ssize_t)sizeof(sh));
		uint32_t type;
		uint64_t len;
		memcpy(&type, sh, 4);
		memcpy(&len, sh + 8, 8);
		if (type == 38) {
			uint8_t b;
			cr_assert_eq(pread(fd, &b, 1, (off_t)(off + 24 + 20)), 1);
			b ^= 0x01;
			cr_assert_eq(pwrite(fd, &b, 1, (off_t)(off + 24 + 20)), 1);
			close(fd);
			return;
		}
		off += 24 + ((len + 7) & ~7ull);
	}
	cr_assert_fail("no devices section in %s", path);
}

/* 3: what does not fit a pool fails start-up, saying why. */
static void snapshots_that_do_not_fit_the_pool_are_refused_at_start_up(void)
{
	char cfg[1024], other[160];
#define POOL "[pool \"p\"]\nkind = restore\nsnapshot = %s\nmemory_mib = %u\nvcpus = %u\n" \
	     "min_idle = 1\n"
	snprintf(cfg, sizeof(cfg), POOL, snap_path, 128u, 2u);
	refused(cfg, "memory differ", "memory_mib = 128");
	snprintf(cfg, sizeof(cfg), POOL, snap_path, 256u, 1u);
	refused(cfg, "vcpus differ", "vcpus = 1");

	snprintf(other, sizeof(other), "%s/devices.snap", snap_dir);
	rewrite(other, two_consoles);
	snprintf(cfg, sizeof(cfg), POOL, other, 256u, 2u);
	refused(cfg, "2 virtio devices", other);

	rewrite(other, other_cpu);
	refused(cfg, "CPU signature", other);

	/* A damaged device section (its UART's line control register), in a
	 * copy that is otherwise sound. */
	rewrite(other, unchanged);
	snprintf(cfg, sizeof(cfg), POOL, other, 256u, 2u);
	corrupt_devices(other);
	refused(cfg, "(devices) checksum mismatch", other);
	unlink(other);
}

/* One Test: the boot that makes the snapshot is the expensive part, and
 * Criterion runs each Test in its own process. */
Test(linux_snapshot, save_restore_pools_reuse_and_refusals)
{
	make_snapshot();
	clones_see_the_file_run_programs_have_the_clock_and_own_randomness();
	restore_pool_refills_after_sigkill_and_reuse_resets_a_clone();
	snapshots_that_do_not_fit_the_pool_are_refused_at_start_up();
	unlink(snap_path);
	rmdir(snap_dir);
}
