/* cgroup v2 limits through a real hatcheryd with `cgroup = required`: the
 * tree it builds (ROOT/hatchery/POOL/child-ID), the values it writes
 * (memory.max, pids.max, cpu.max), and that the kernel holds each child to
 * them: an OOM kill stays inside the child's cgroup and the pool replaces
 * the child, a fork into a full child cgroup fails.
 *
 * Needs root, /dev/kvm and a cgroup2 mount whose cgroup.controllers has
 * memory, pids and cpu (scripts/vm gives all three). Without them every test
 * is reported as skipped with "this test needs cgroup v2" or "this
 * integration test needs /dev/kvm", never as passed. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup.h" /* supervisor/: the same discovery hatcheryd does */
#include "harness.h"

#ifndef HATCH_DEFAULT_GUEST
#error "HATCH_DEFAULT_GUEST must name the default guest ELF (build/guest/default.elf)"
#endif

#define E(x) HATCHERY__V1__ERROR_CODE__##x
#define MIB (1024ull * 1024ull)

/* The guest's heap starts 24 MiB into its RAM (docs/guest.md, "Memory
 * layout"): `alloc` can touch memory_mib - 24 MiB. */
#define HEAP_BASE_MIB 24u

/* Calls in the emulator (scripts/vm) run 5-20x slower than natively: give
 * the guest's alloc the VM's largest call deadline rather than 1 s. */
#define CALL_DEADLINE_MS 60000u

TestSuite(cgroup_v2, .fini = h_teardown, .timeout = 300);

/* The cgroup2 mount the tests (and hatcheryd, through cgroup_root) use. */
static char cg_root[256];
/* "cgroup = required\ncgroup_root = ...\n" for h_cgroup_conf. */
static char cg_conf[512];

static int slurp(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t n = 0;
	while (n + 1 < cap) {
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	return 0;
}

static void skip_no_cgroup(const char *why)
{
	t_skip("this test needs cgroup v2 with the memory, pids and cpu "
	       "controllers, and root (%s): not run", why);
}

/* Skip (loudly) unless we are root on a machine with a cgroup2 mount that
 * offers memory, pids and cpu; then /dev/kvm (h_start checks it too, but a
 * skip should name the first thing missing). Sets cg_root and cg_conf. */
static void require_cgroup_v2(void)
{
	if (geteuid() != 0)
		skip_no_cgroup("not root: hatcheryd must create cgroups");
	static char mi[65536];
	if (slurp("/proc/self/mountinfo", mi, sizeof(mi)) < 0)
		skip_no_cgroup("cannot read /proc/self/mountinfo");
	if (sup_cgroup_find_v2_mount(mi, cg_root, sizeof(cg_root)) < 0)
		skip_no_cgroup("no cgroup2 filesystem is mounted");
	char path[512], ctl[512], missing[64];
	snprintf(path, sizeof(path), "%s/cgroup.controllers", cg_root);
	if (slurp(path, ctl, sizeof(ctl)) < 0)
		skip_no_cgroup("cannot read cgroup.controllers of the cgroup2 mount");
	if (sup_cgroup_missing_controllers(ctl, missing, sizeof(missing)) > 0) {
		char why[1024];
		ctl[strcspn(ctl, "\n")] = '\0';
		snprintf(why, sizeof(why), "cgroup2 at %s lacks %s; it has \"%s\"", cg_root,
			 missing, ctl);
		skip_no_cgroup(why);
	}
	h_require_kvm();
	snprintf(cg_conf, sizeof(cg_conf), "cgroup = required\ncgroup_root = %s\n", cg_root);
}

/* h_start with `cgroup = required` and cgroup_root = the mount found. */
static struct harness *start_required(const char *pools)
{
	require_cgroup_v2();
	h_cgroup_conf = cg_conf;
	struct harness *h = h_start("%s", pools);
	h_cgroup_conf = NULL;
	return h;
}

/* Contents of DIR/FILE, without the trailing newline; fails the test if it
 * cannot be read. */
static void cg_read(const char *dir, const char *file, char *buf, size_t cap)
{
	char path[640];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	int r = slurp(path, buf, cap);
	cr_assert_eq(r, 0, "read %s: %s", path, strerror(-r));
	buf[strcspn(buf, "\n")] = '\0';
}

static unsigned long long cg_read_u64(const char *dir, const char *file)
{
	char buf[64], *end;
	cg_read(dir, file, buf, sizeof(buf));
	unsigned long long v = strtoull(buf, &end, 10);
	cr_assert(end != buf && *end == '\0', "%s/%s: \"%s\" is not a number", dir, file, buf);
	return v;
}

/* The value of `key` in a flat-keyed file (memory.events, pids.events). */
static unsigned long long cg_read_key(const char *dir, const char *file, const char *key)
{
	char path[640], buf[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	int r = slurp(path, buf, sizeof(buf));
	cr_assert_eq(r, 0, "read %s: %s", path, strerror(-r));
	size_t kl = strlen(key);
	for (char *l = buf; *l; ) {
		if (strncmp(l, key, kl) == 0 && l[kl] == ' ')
			return strtoull(l + kl + 1, NULL, 10);
		char *nl = strchr(l, '\n');
		if (!nl)
			break;
		l = nl + 1;
	}
	cr_assert_fail("%s has no \"%s\": %s", path, key, buf);
	return 0;
}

/* The child's id as Status reports it, for the naming scheme. */
static uint64_t child_id(struct harness *h, const char *pool, pid_t pid)
{
	Hatchery__V1__StatusReply *st = h_status(h);
	const Hatchery__V1__PoolStatus *p = h_pool_in(st, pool);
	cr_assert_not_null(p, "no pool \"%s\" in Status", pool);
	uint64_t id = 0;
	for (size_t i = 0; i < p->n_children; i++)
		if ((pid_t)p->children[i]->pid == pid)
			id = p->children[i]->id;
	hatch_free(st);
	cr_assert_neq(id, 0, "child %d is not in pool \"%s\"", pid, pool);
	return id;
}

/* The cgroup directory the kernel has `pid` in (its "0::" line of
 * /proc/PID/cgroup, under cg_root). Fails unless that is where hatchery's
 * naming scheme puts the child: ROOT/hatchery/POOL/child-ID. */
static void child_cgroup(struct harness *h, const char *pool, pid_t pid, char *dir,
			 size_t cap)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/cgroup", pid);
	int r = slurp(path, buf, sizeof(buf));
	cr_assert_eq(r, 0, "read %s: %s", path, strerror(-r));
	char *line = strstr(buf, "0::");
	cr_assert(line == buf || (line && line[-1] == '\n'), "%s has no 0:: line: %s",
		  path, buf);
	line += 3;
	line[strcspn(line, "\n")] = '\0';
	snprintf(dir, cap, "%s%s", cg_root, line);

	char want[512];
	cr_assert_eq(sup_cgroup_child_path(want, sizeof(want), "", pool,
					   child_id(h, pool, pid)), 0);
	char want_dir[1024];
	snprintf(want_dir, sizeof(want_dir), "%s/hatchery%s", cg_root, want);
	cr_assert_str_eq(dir, want_dir, "child %d of pool \"%s\" is in cgroup %s, expected %s",
			 pid, pool, dir, want_dir);
}

/* Number of child-* directories under ROOT/hatchery/POOL. */
static int child_dirs(const char *pool)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/hatchery/%s", cg_root, pool);
	DIR *d = opendir(path);
	cr_assert_not_null(d, "opendir %s: %s", path, strerror(errno));
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += strncmp(e->d_name, "child-", 6) == 0;
	closedir(d);
	return n;
}

static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *l = text; l && *l; ) {
		if (strncmp(l, line, n) == 0 && (l[n] == '\n' || l[n] == '\0'))
			return true;
		l = strchr(l, '\n');
		if (l)
			l++;
	}
	return false;
}

/* Check one child's cgroup against its pool's configured limits. */
static void expect_limits(struct harness *h, const char *pool, pid_t pid,
			  unsigned long long mem_max_mib, const char *pids_max,
			  const char *cpu_max)
{
	char dir[768], buf[4096];
	child_cgroup(h, pool, pid, dir, sizeof(dir));
	cr_assert_eq(cg_read_u64(dir, "memory.max"), mem_max_mib * MIB,
		     "%s/memory.max: expected %llu MiB", dir, mem_max_mib);
	cg_read(dir, "pids.max", buf, sizeof(buf));
	cr_assert_str_eq(buf, pids_max, "%s/pids.max", dir);
	cg_read(dir, "cpu.max", buf, sizeof(buf));
	cr_assert_str_eq(buf, cpu_max, "%s/cpu.max", dir);
	/* The child itself, not only some task of it, is in there. */
	char procs[4096], me[16];
	cg_read(dir, "cgroup.procs", procs, sizeof(procs));
	snprintf(me, sizeof(me), "%d", pid);
	cr_assert(has_line(procs, me), "%s/cgroup.procs does not list child %d: %s", dir,
		  pid, procs);
}

/* Booted pools throughout, not kind = empty: under scripts/vm (nested SVM
 * in QEMU/TCG) empty-VM children twice soft-locked the emulated kernel
 * inside hatcheryd's children, while booted ones never did. */
#define BOOTED "kind = booted\nguest = " HATCH_DEFAULT_GUEST "\n"

/* ---- a: required starts, each child in its own cgroup with its pool's limits */

Test(cgroup_v2, required_starts_and_each_child_has_its_pools_limits)
{
	/* Two pools with different limits, so a value taken from the wrong
	 * pool (or a default) shows; "d" leaves every limit at its default
	 * (memory_mib + 64, 16 pids, 100 %) except cpu 0 = unlimited. */
	struct harness *h = start_required(
		"[pool \"a\"]\n" BOOTED "memory_mib = 32\nmemory_max_mib = 40\n"
		"pids_max = 5\ncpu_max_pct = 25\nmin_idle = 2\nmax = 2\n\n"
		"[pool \"d\"]\n" BOOTED "memory_mib = 48\ncpu_max_pct = 0\n"
		"min_idle = 1\nmax = 1\n");

	Hatchery__V1__StatusReply *st = h_status(h);
	char want[512];
	snprintf(want, sizeof(want), "v2 at %s/hatchery", cg_root);
	cr_assert_str_eq(st->cgroup, want, "Status.cgroup");
	hatch_free(st);

	pid_t pids[4];
	cr_assert_eq(h_child_pids(h, "a", "ready", pids, 4), 2);
	for (int i = 0; i < 2; i++)
		expect_limits(h, "a", pids[i], 40, "5", "25000 100000");
	char dir0[768], dir1[768];
	child_cgroup(h, "a", pids[0], dir0, sizeof(dir0));
	child_cgroup(h, "a", pids[1], dir1, sizeof(dir1));
	cr_assert_str_neq(dir0, dir1, "two children share cgroup %s", dir0);

	cr_assert_eq(h_child_pids(h, "d", "ready", pids, 4), 1);
	expect_limits(h, "d", pids[0], 48 + 64, "16", "max 100000");

	h_finish(h);
	/* Shutdown reaps every child, and a reaped child's cgroup is removed
	 * (docs/security.md): nothing left for the next daemon to inherit. */
	cr_assert_eq(child_dirs("a"), 0, "child cgroups of pool a left after shutdown");
	cr_assert_eq(child_dirs("d"), 0, "child cgroups of pool d left after shutdown");
}

/* ---- b: memory.max ------------------------------------------------------------ */

/* memory_mib 64: a 40 MiB heap. memory_max_mib 65 is the least the config
 * accepts (memory_max_mib > memory_mib). */
#define MEM_POOL                                                               \
	"[pool \"m\"]\nkind = booted\nguest = " HATCH_DEFAULT_GUEST "\n"       \
	"memory_mib = 64\nmemory_max_mib = 65\nmin_idle = 1\nmax = 2\n"
#define MEM_HEAP_MIB (64u - HEAP_BASE_MIB)

static int lease(struct harness *h, const char *pool, pid_t *pid)
{
	int fd = -1;
	struct hatch_err err = { 0 };
	Hatchery__V1__AcquireReply *info = NULL;
	cr_assert_eq(hatch_acquire(h->c, pool, H_WAIT_MS, &fd, &info, &err), 0,
		     "Acquire from \"%s\": %s (%s)", pool, err.msg,
		     hatch_err_code_name(err.code));
	*pid = (pid_t)info->child_pid;
	hatch_free(info);
	return fd;
}

struct refill_arg {
	struct harness *h;
	pid_t gone;
};

/* A ready child again, and it is not the one that died. */
static bool refilled(void *arg)
{
	struct refill_arg *a = arg;
	pid_t pids[8];
	size_t n = h_child_pids(a->h, "m", "ready", pids, 8);
	return n >= 1 && !h_pid_in(a->gone, pids, n < 8 ? n : 8);
}

Test(cgroup_v2, a_guest_within_its_ram_fits_memory_max)
{
	struct harness *h = start_required(MEM_POOL);
	pid_t pid;
	int vm = lease(h, "m", &pid);
	char dir[768];
	child_cgroup(h, "m", pid, dir, sizeof(dir));
	cr_assert_eq(cg_read_u64(dir, "memory.max"), 65 * MIB);
	unsigned long long before = cg_read_u64(dir, "memory.current");

	/* The whole heap, every page touched: the guest's RAM is charged to
	 * the child's own cgroup (it is built inside it, after CLONE_INTO_
	 * CGROUP), and memory_mib + 1 MiB still holds it with vmproc. */
	char n[16];
	snprintf(n, sizeof(n), "%u", MEM_HEAP_MIB);
	Hatchery__V1__VmCallReply *rep = NULL;
	struct hatch_err err = { 0 };
	cr_assert_eq(hatch_vm_call(vm, "alloc", n, strlen(n), CALL_DEADLINE_MS, &rep, &err), 0,
		     "alloc %s MiB: %s (%s)", n, err.msg, hatch_err_code_name(err.code));
	hatch_free(rep);
	unsigned long long after = cg_read_u64(dir, "memory.current");
	cr_assert_geq(after, before + MEM_HEAP_MIB * MIB,
		      "memory.current of %s went from %llu to %llu after touching %u MiB: "
		      "the guest's RAM is not charged to the child's cgroup", dir, before,
		      after, MEM_HEAP_MIB);
	cr_assert_eq(cg_read_key(dir, "memory.events", "oom_kill"), 0);
	cr_assert_eq(kill(pid, 0), 0, "child %d died", pid);
	cr_assert_eq(hatch_vm_release(vm, &err), 0, "release: %s", err.msg);
	close(vm);
	h_finish(h);
}

Test(cgroup_v2, beyond_memory_max_the_child_is_oom_killed_and_replaced)
{
	struct harness *h = start_required(MEM_POOL);
	char pool_dir[512];
	snprintf(pool_dir, sizeof(pool_dir), "%s/hatchery/m", cg_root);
	/* memory.events of the pool counts its descendants' events: the
	 * child's own file goes with its cgroup when it is reaped. */
	unsigned long long oom0 = cg_read_key(pool_dir, "memory.events", "oom_kill");
	struct h_stats s0 = h_stats(h, "m");

	pid_t pid;
	int vm = lease(h, "m", &pid);
	char dir[768];
	child_cgroup(h, "m", pid, dir, sizeof(dir));
	/* A guest cannot outgrow a limit the config accepts: its RAM is
	 * below memory_mib < memory_max_mib (the test above). What the
	 * limit stops is memory beyond that, so stand in for it by lowering
	 * this child's memory.max (root may; a child cannot, it has no view
	 * of the tree) to 8 MiB over what it uses now and let the guest
	 * touch its 40 MiB heap. */
	unsigned long long cur = cg_read_u64(dir, "memory.current");
	char v[32], path[800];
	snprintf(v, sizeof(v), "%llu", cur + 8 * MIB);
	snprintf(path, sizeof(path), "%s/memory.max", dir);
	FILE *f = fopen(path, "we");
	cr_assert_not_null(f, "open %s: %s", path, strerror(errno));
	cr_assert(fputs(v, f) >= 0 && fclose(f) == 0, "write %s to %s", v, path);

	char n[16];
	snprintf(n, sizeof(n), "%u", MEM_HEAP_MIB);
	Hatchery__V1__VmCallReply *rep = NULL;
	struct hatch_err err = { 0 };
	int r = hatch_vm_call(vm, "alloc", n, strlen(n), CALL_DEADLINE_MS, &rep, &err);
	if (r == 0)
		hatch_free(rep);
	/* The child dies mid-call: no reply, the VM socket is closed. */
	cr_assert_eq(r, -1, "alloc %s MiB under memory.max %s succeeded", n, v);
	cr_assert_eq(err.code, E(UNAVAILABLE), "alloc: %s (\"%s\"), expected UNAVAILABLE",
		     hatch_err_code_name(err.code), err.msg);
	close(vm);

	cr_assert(h_wait_pid_gone(pid, H_WAIT_MS), "child %d still there (state %c)", pid,
		  h_proc_state(pid));
	cr_assert_gt(cg_read_key(pool_dir, "memory.events", "oom_kill"), oom0,
		     "no OOM kill counted in %s/memory.events", pool_dir);
	/* The daemon saw a leased child die unasked and spawned another. */
	struct refill_arg a = { .h = h, .gone = pid };
	cr_assert(h_wait_until(refilled, &a, H_WAIT_MS), "pool m not refilled after child %d",
		  pid);
	struct h_stats s1 = h_stats(h, "m");
	cr_assert_eq(s1.unexpected_exits, s0.unexpected_exits + 1, "unexpected_exits %llu -> %llu",
		     (unsigned long long)s0.unexpected_exits,
		     (unsigned long long)s1.unexpected_exits);
	cr_assert_gt(s1.spawned, s0.spawned);

	/* The replacement has the configured limit, not the lowered one. */
	pid_t np;
	cr_assert_eq(h_child_pids(h, "m", "ready", &np, 1), 1);
	child_cgroup(h, "m", np, dir, sizeof(dir));
	cr_assert_eq(cg_read_u64(dir, "memory.max"), 65 * MIB);

	/* It says how the child died. */
	char log[1 << 16];
	cr_assert_eq(slurp(h->log_path, log, sizeof(log)), 0);
	char want[128];
	snprintf(want, sizeof(want), "child %d killed by signal %d", pid, SIGKILL);
	cr_assert_not_null(strstr(log, want), "the log does not say \"%s\"", want);
	h_finish(h);
}

/* ---- c: pids.max and cpu.max ---------------------------------------------- */

/* clone3 a process straight into the cgroup at `dir` (as hatchery's spawn
 * does) that exits at once. Returns 0 or -errno from clone3. */
static int fork_into(const char *dir)
{
	int cfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(cfd, 0, "open %s: %s", dir, strerror(errno));
	struct clone_args ca = {
		.flags = CLONE_INTO_CGROUP,
		.exit_signal = SIGCHLD,
		.cgroup = (uint64_t)cfd,
	};
	long pid = syscall(SYS_clone3, &ca, sizeof(ca));
	if (pid == 0)
		_exit(0);
	int e = errno;
	close(cfd);
	if (pid < 0)
		return -e;
	int st;
	cr_assert_eq(waitpid((pid_t)pid, &st, 0), (pid_t)pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	return 0;
}

Test(cgroup_v2, pids_max_stops_a_fork_into_a_full_child_and_cpu_max_is_the_pct)
{
	/* A vmproc counts 2 pids once it is ready: itself and the worker task
	 * KVM charges to it (docs/security.md, rlimits). With pids_max = 2
	 * its cgroup is full; with 3 it has room for one more. */
	struct harness *h = start_required(
		"[pool \"full\"]\n" BOOTED "memory_mib = 32\npids_max = 2\n"
		"cpu_max_pct = 50\nmin_idle = 1\nmax = 1\n\n"
		"[pool \"room\"]\n" BOOTED "memory_mib = 32\npids_max = 3\n"
		"cpu_max_pct = 250\nmin_idle = 1\nmax = 1\n");
	pid_t full, room;
	cr_assert_eq(h_child_pids(h, "full", "ready", &full, 1), 1);
	cr_assert_eq(h_child_pids(h, "room", "ready", &room, 1), 1);
	char dfull[768], droom[768];
	child_cgroup(h, "full", full, dfull, sizeof(dfull));
	child_cgroup(h, "room", room, droom, sizeof(droom));
	expect_limits(h, "full", full, 32 + 64, "2", "50000 100000");
	/* More than one CPU: the quota is over the period. */
	expect_limits(h, "room", room, 32 + 64, "3", "250000 100000");

	cr_assert_eq(cg_read_u64(dfull, "pids.current"), 2, "%s/pids.current", dfull);
	cr_assert_eq(cg_read_u64(droom, "pids.current"), 2, "%s/pids.current", droom);

	unsigned long long ev0 = cg_read_key(dfull, "pids.events", "max");
	int r = fork_into(dfull);
	cr_assert_eq(r, -EAGAIN, "clone3 into %s (pids.max 2, pids.current 2): %s, "
		     "expected EAGAIN", dfull, r ? strerror(-r) : "succeeded");
	cr_assert_gt(cg_read_key(dfull, "pids.events", "max"), ev0,
		     "%s/pids.events does not count the refused fork", dfull);
	r = fork_into(droom);
	cr_assert_eq(r, 0, "clone3 into %s (pids.max 3, pids.current 2): %s", droom,
		     strerror(-r));

	/* Neither child noticed. */
	cr_assert_eq(kill(full, 0), 0);
	cr_assert_eq(kill(room, 0), 0);
	h_finish(h);
}
