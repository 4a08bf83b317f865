/* Integration tests of the jail through a real hatcheryd: what a leased
 * child reports about itself (VmInfoReply) is asserted, value by value,
 * against what the supervisor's side of the machine sees in /proc; and a
 * configuration the machine cannot satisfy fails at start-up with one
 * message. Self-contained (tests/integration/harness.c is being written on
 * main). Needs root and /dev/kvm; skipped loudly otherwise. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <grp.h>
#include <seccomp.h>

#include "hatchery/client.h"
#include "testing.h"

#define UID_BASE 280000u
#define ROOTLESS_UID 281500u /* an unprivileged uid for rootless hatcheryd */
#define MAX 4

struct daemon {
	pid_t pid;
	char dir[64];
	char sock[128];
	char log[128];
};

static struct daemon d;

static void need_root_and_kvm(void)
{
	if (geteuid() != 0)
		t_skip("needs root (the jail: namespaces, setuid)");
	if (access("/dev/kvm", R_OK | W_OK) != 0)
		t_skip("no usable /dev/kvm");
}

static void write_config(const char *path, const char *supervisor_extra,
			 const char *pool_extra)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f, "[supervisor]\njail_uid_base = %u\n%s\n"
		   "[pool \"default\"]\nmin_idle = 1\nmax = %d\nmemory_mib = 16\n"
		   "allow_uids = 0\n%s\n",
		UID_BASE, supervisor_extra, MAX, pool_extra);
	fclose(f);
}

/* Start hatcheryd; returns its pid. `extra` is one more argument or NULL. */
static pid_t start(const char *supervisor_extra, const char *extra)
{
	snprintf(d.dir, sizeof(d.dir), "/tmp/hatch-jail-XXXXXX");
	cr_assert_not_null(mkdtemp(d.dir));
	char conf[128];
	snprintf(conf, sizeof(conf), "%s/h.conf", d.dir);
	snprintf(d.sock, sizeof(d.sock), "%s/h.sock", d.dir);
	snprintf(d.log, sizeof(d.log), "%s/h.log", d.dir);
	write_config(conf, supervisor_extra, "");
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = open(d.log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 2);
		execl(HATCHERYD_PATH, "hatcheryd", "-c", conf, "-s", d.sock, extra,
		      (char *)NULL);
		_exit(127);
	}
	d.pid = pid;
	return pid;
}

enum rootless_how {
	RL_KVM_FD = 1,       /* hand it /dev/kvm open, as --kvm-fd */
	RL_NO_USERNS = 2,    /* a filter makes clone3 fail, as a kernel that
			      * refuses unprivileged user namespaces would */
};

/* Start hatcheryd as ROOTLESS_UID, with no groups. /dev/kvm here is
 * root-only and must stay so: with RL_KVM_FD we open it (as root) and the
 * daemon gets the fd, the way a launcher with access would hand it down. */
static pid_t start_rootless(unsigned how)
{
	snprintf(d.dir, sizeof(d.dir), "/tmp/hatch-jail-XXXXXX");
	cr_assert_not_null(mkdtemp(d.dir));
	cr_assert_eq(chown(d.dir, ROOTLESS_UID, ROOTLESS_UID), 0);
	cr_assert_eq(chmod(d.dir, 0755), 0);
	char conf[128];
	snprintf(conf, sizeof(conf), "%s/h.conf", d.dir);
	snprintf(d.sock, sizeof(d.sock), "%s/h.sock", d.dir);
	snprintf(d.log, sizeof(d.log), "%s/h.log", d.dir);
	write_config(conf, "cgroup = optional", "");
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = open(d.log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 2);
		if (how & RL_KVM_FD) {
			int k = open("/dev/kvm", O_RDWR);
			if (k < 0 || dup2(k, 5) < 0)
				_exit(126);
		}
		if (how & RL_NO_USERNS) {
			scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
			if (!ctx ||
			    seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone3), 0) ||
			    seccomp_load(ctx))
				_exit(126);
		}
		if (setgroups(0, NULL) < 0 ||
		    setresgid(ROOTLESS_UID, ROOTLESS_UID, ROOTLESS_UID) < 0 ||
		    setresuid(ROOTLESS_UID, ROOTLESS_UID, ROOTLESS_UID) < 0)
			_exit(126);
		execl(HATCHERYD_PATH, "hatcheryd", "-c", conf, "-s", d.sock,
		      (how & RL_KVM_FD) ? "--kvm-fd=5" : (char *)NULL, (char *)NULL);
		_exit(127);
	}
	d.pid = pid;
	return pid;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Poll until `path` (a /proc/PID) is gone or ms have passed. */
static void wait_gone(const char *path, unsigned ms)
{
	for (uint64_t until = now_ms() + ms; now_ms() < until && access(path, F_OK) == 0;)
		usleep(5000);
}

/* Wait for the daemon to listen; NULL client if it exited instead. */
static struct hatch_client *connect_daemon(void)
{
	struct hatch_err err;
	for (uint64_t until = now_ms() + t_ms(5000); now_ms() < until;) {
		struct hatch_client *c;
		if (hatch_connect(d.sock, &c, &err) == 0)
			return c;
		if (waitpid(d.pid, NULL, WNOHANG) == d.pid) {
			d.pid = 0;
			return NULL;
		}
		usleep(10000);
	}
	cr_assert_fail("hatcheryd did not listen on %s", d.sock);
	return NULL;
}

static void stop(void)
{
	if (d.pid > 0) {
		kill(d.pid, SIGTERM);
		waitpid(d.pid, NULL, 0);
		d.pid = 0;
	}
}

/* The daemon must exit 1 at start-up; returns its stderr. */
static char *expect_startup_failure(void)
{
	int st;
	cr_assert_eq(waitpid(d.pid, &st, 0), d.pid);
	d.pid = 0;
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1,
		  "hatcheryd should exit 1 at start-up (status %#x)", st);
	static char buf[4096];
	FILE *f = fopen(d.log, "r");
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static int count_lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

TestSuite(jail_daemon, .fini = stop, .timeout = 60);

/* ---- /proc readers ------------------------------------------------------- */

static char *slurp(const char *path)
{
	static char buf[8192];
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* The value after "Key:" in /proc/PID/status. */
static char *status_field(pid_t pid, const char *key, char *out, size_t len)
{
	char path[64], k[64];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	snprintf(k, sizeof(k), "\n%s:", key);
	char *s = strstr(slurp(path), k);
	cr_assert_not_null(s, "%s has no %s", path, key);
	s += strlen(k);
	s += strspn(s, " \t");
	snprintf(out, len, "%.*s", (int)strcspn(s, "\n"), s);
	return out;
}

static uint64_t ns_inode(pid_t pid, const char *ns)
{
	char path[64], link[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/%s", pid, ns);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	cr_assert_gt(n, 0);
	link[n] = '\0';
	char *b = strchr(link, '[');
	cr_assert_not_null(b);
	return strtoull(b + 1, NULL, 10);
}

/* Soft and hard limit of the /proc/PID/limits row starting with `row`;
 * "unlimited" is UINT64_MAX. */
static void limit(pid_t pid, const char *row, uint64_t *soft, uint64_t *hard)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/limits", pid);
	char *s = strstr(slurp(path), row);
	cr_assert_not_null(s, "no \"%s\" in %s", row, path);
	s += 26; /* the name column */
	char a[32], b[32];
	cr_assert_eq(sscanf(s, "%31s %31s", a, b), 2);
	*soft = strcmp(a, "unlimited") ? strtoull(a, NULL, 10) : UINT64_MAX;
	*hard = strcmp(b, "unlimited") ? strtoull(b, NULL, 10) : UINT64_MAX;
}

static char *cgroup_v2_line(pid_t pid, char *out, size_t len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/cgroup", pid);
	char *s = slurp(path);
	char *l = strncmp(s, "0::", 3) == 0 ? s : strstr(s, "\n0::");
	cr_assert_not_null(l);
	l += l[0] == '\n' ? 4 : 3;
	snprintf(out, len, "%.*s", (int)strcspn(l, "\n"), l);
	return out;
}

/* ---- the tests ------------------------------------------------------------- */

Test(jail_daemon, info_matches_proc)
{
	need_root_and_kvm();
	start("cgroup = optional", NULL);
	struct hatch_client *c = connect_daemon();
	cr_assert_not_null(c, "hatcheryd exited: %s", slurp(d.log));
	struct hatch_err err;
	int vm;
	Hatchery__V1__AcquireReply *ar;
	cr_assert_eq(hatch_acquire(c, "default", 5000, &vm, &ar, &err), 0, "%s", err.msg);
	Hatchery__V1__VmInfoReply *vi;
	cr_assert_eq(hatch_vm_info(vm, &vi, &err), 0, "%s", err.msg);
	pid_t pid = (pid_t)ar->child_pid;

	cr_assert(vi->jailed);
	cr_assert_eq(vi->pid, ar->child_pid, "Info pid is the host pid");

	/* Credentials: one uid of the range, = gid, all four ids. */
	cr_assert(vi->uid >= UID_BASE && vi->uid < UID_BASE + MAX, "uid %u", vi->uid);
	cr_assert_eq(vi->gid, vi->uid);
	char want[64], got[128];
	snprintf(want, sizeof(want), "%u\t%u\t%u\t%u", vi->uid, vi->uid, vi->uid, vi->uid);
	cr_assert_str_eq(status_field(pid, "Uid", got, sizeof(got)), want);
	snprintf(want, sizeof(want), "%u\t%u\t%u\t%u", vi->gid, vi->gid, vi->gid, vi->gid);
	cr_assert_str_eq(status_field(pid, "Gid", got, sizeof(got)), want);
	cr_assert_str_eq(status_field(pid, "Groups", got, sizeof(got)), "");
	cr_assert_eq(vi->supplementary_groups, 0);

	/* Capabilities, every set. */
	const struct { const char *key; uint64_t v; } caps[] = {
		{ "CapInh", vi->cap_inh }, { "CapPrm", vi->cap_prm },
		{ "CapEff", vi->cap_eff }, { "CapBnd", vi->cap_bnd },
		{ "CapAmb", vi->cap_amb },
	};
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		snprintf(want, sizeof(want), "%016llx", (unsigned long long)caps[i].v);
		cr_assert_str_eq(status_field(pid, caps[i].key, got, sizeof(got)), want,
				 "%s", caps[i].key);
		cr_assert_eq(caps[i].v, 0, "%s not empty", caps[i].key);
	}
	cr_assert(vi->no_new_privs);
	cr_assert_str_eq(status_field(pid, "NoNewPrivs", got, sizeof(got)), "1");
	snprintf(want, sizeof(want), "%u", vi->seccomp_mode);
	cr_assert_str_eq(status_field(pid, "Seccomp", got, sizeof(got)), want);
	cr_assert_eq(vi->seccomp_mode, 2);
	cr_assert_str_eq(vi->seccomp_action, "kill");

	/* Namespaces: what the child saw is what /proc shows, and all but
	 * the user namespace differ from the supervisor's. */
	const struct { const char *ns; uint64_t v; } ns[] = {
		{ "mnt", vi->ns_mnt }, { "pid", vi->ns_pid }, { "net", vi->ns_net },
		{ "ipc", vi->ns_ipc }, { "uts", vi->ns_uts },
		{ "cgroup", vi->ns_cgroup }, { "user", vi->ns_user },
	};
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		cr_assert_eq(ns_inode(pid, ns[i].ns), ns[i].v, "%s namespace", ns[i].ns);
		if (strcmp(ns[i].ns, "user") == 0)
			cr_assert_eq(ns_inode(d.pid, "user"), ns[i].v);
		else
			cr_assert_neq(ns_inode(d.pid, ns[i].ns), ns[i].v,
				      "%s namespace shared with hatcheryd", ns[i].ns);
	}

	/* cgroup: "/" inside its own cgroup namespace. Outside: its own
	 * child-N cgroup under the pool's when cgroup v2 is usable; here
	 * (cgroup = optional on a v1 machine) the supervisor's own. */
	cr_assert_str_eq(vi->cgroup, "/");
	char sup_cg[256], child_cg[256];
	cgroup_v2_line(d.pid, sup_cg, sizeof(sup_cg));
	cgroup_v2_line(pid, child_cg, sizeof(child_cg));
	Hatchery__V1__StatusReply *st;
	cr_assert_eq(hatch_status(c, &st, &err), 0);
	if (strncmp(st->cgroup, "v2 at ", 6) == 0) {
		char tail[64];
		snprintf(tail, sizeof(tail), "/default/child-%llu",
			 (unsigned long long)ar->child_id);
		cr_assert(strstr(child_cg, tail), "cgroup %s lacks %s", child_cg, tail);
	} else {
		cr_assert(strncmp(st->cgroup, "unavailable (", 13) == 0, "%s", st->cgroup);
		cr_assert_str_eq(child_cg, sup_cg);
	}
	cr_assert_str_eq(st->jail, "on");
	hatch_free(st);

	/* Resource limits. */
	const struct { const char *row; uint64_t v; } lim[] = {
		{ "Max open files", vi->rlimit_nofile },
		{ "Max processes", vi->rlimit_nproc },
		{ "Max file size", vi->rlimit_fsize },
		{ "Max core file size", vi->rlimit_core },
		{ "Max address space", vi->rlimit_as },
	};
	for (size_t i = 0; i < sizeof(lim) / sizeof(lim[0]); i++) {
		uint64_t soft, hard;
		limit(pid, lim[i].row, &soft, &hard);
		cr_assert_eq(soft, lim[i].v, "%s", lim[i].row);
		cr_assert_eq(hard, lim[i].v, "%s (hard)", lim[i].row);
	}
	/* 2 until the VM's first KVM_RUN, 1 from then on (vmproc/jail.h,
	 * VMP_JAIL_NPROC_RUNNING); /proc above says the kernel holds the
	 * same, soft and hard. */
	cr_assert_eq(vi->rlimit_nproc, 1, "lowered after the first run");
	/* A Save writes at most a snapshot of this VM: RAM + 64 MiB. */
	cr_assert_eq(vi->rlimit_fsize, ((uint64_t)vi->memory_mib << 20) + (64ull << 20));
	cr_assert_eq(vi->rlimit_core, 0);
	cr_assert_leq(vi->rlimit_nofile, 64);
#if !defined(__SANITIZE_ADDRESS__)
	cr_assert_neq(vi->rlimit_as, UINT64_MAX, "no address-space limit");
#endif
	hatch_free(vi);
	hatch_free(ar);
	cr_assert_eq(hatch_vm_release(vm, &err), 0, "%s", err.msg);
	close(vm);
	/* Its whole life, release and exit included, stayed inside the
	 * allowlist: once reaped, no seccomp kill and no unexpected exit. */
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d", pid);
	wait_gone(path, t_ms(2000));
	cr_assert_neq(access(path, F_OK), 0, "the released child was not reaped");
	Hatchery__V1__StatsReply *sr;
	cr_assert_eq(hatch_stats(c, &sr, &err), 0);
	cr_assert_eq(sr->pools[0]->seccomp_kills, 0, "a child died by SIGSYS: %s",
		     slurp(d.log));
	cr_assert_eq(sr->pools[0]->unexpected_exits, 0, "%s", slurp(d.log));
	hatch_free(sr);
	hatch_close(c);
}

Test(jail_daemon, children_get_distinct_uids)
{
	need_root_and_kvm();
	start("cgroup = optional", NULL);
	struct hatch_client *c = connect_daemon();
	cr_assert_not_null(c);
	struct hatch_err err;
	int vm[3];
	uint32_t uid[3];
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(hatch_acquire(c, "default", 5000, &vm[i], NULL, &err), 0,
			     "%s", err.msg);
		Hatchery__V1__VmInfoReply *vi;
		cr_assert_eq(hatch_vm_info(vm[i], &vi, &err), 0);
		uid[i] = vi->uid;
		hatch_free(vi);
		for (int k = 0; k < i; k++)
			cr_assert_neq(uid[k], uid[i], "two live children share uid %u",
				      uid[i]);
	}
	for (int i = 0; i < 3; i++)
		close(vm[i]);
	hatch_close(c);
}

Test(jail_daemon, no_jail_flag_warns_and_reports_unjailed)
{
	need_root_and_kvm();
	start("cgroup = optional", "--no-jail");
	struct hatch_client *c = connect_daemon();
	cr_assert_not_null(c);
	struct hatch_err err;
	int vm;
	cr_assert_eq(hatch_acquire(c, "default", 5000, &vm, NULL, &err), 0, "%s", err.msg);
	Hatchery__V1__VmInfoReply *vi;
	cr_assert_eq(hatch_vm_info(vm, &vi, &err), 0);
	cr_assert(!vi->jailed);
	cr_assert_eq(vi->seccomp_mode, 0);
	hatch_free(vi);
	close(vm);
	Hatchery__V1__StatusReply *st;
	cr_assert_eq(hatch_status(c, &st, &err), 0);
	cr_assert_str_eq(st->jail, "off (--no-jail)");
	hatch_free(st);
	hatch_close(c);
	cr_assert(strstr(slurp(d.log), "WARNING: --no-jail"));
}

Test(jail_daemon, startup_fails_without_kvm)
{
	need_root_and_kvm();
	start("cgroup = optional", "--kvm=/nonexistent/kvm");
	char *log = expect_startup_failure();
	cr_assert(strstr(log, "cannot use KVM: /nonexistent/kvm: No such file"), "%s", log);
	cr_assert_eq(count_lines(log), 1, "one message, got:\n%s", log);
}

/* The refusal, on any machine: cgroup_root names a directory that looks
 * like a cgroup v2 whose memory, pids and cpu controllers are bound
 * elsewhere (a cgroup.controllers file without them), as on a host whose
 * controllers sit on cgroup v1 hierarchies. */
Test(jail_daemon, startup_fails_without_cgroup_v2_when_required)
{
	need_root_and_kvm();
	char root[] = "/tmp/hatch-fakecg-XXXXXX", file[64], sup[128];
	cr_assert_not_null(mkdtemp(root));
	snprintf(file, sizeof(file), "%s/cgroup.controllers", root);
	FILE *f = fopen(file, "w");
	cr_assert_not_null(f);
	fputs("cpuset io\n", f);
	fclose(f);
	snprintf(sup, sizeof(sup), "cgroup = required\ncgroup_root = %s", root);
	start(sup, NULL);
	char *log = expect_startup_failure();
	unlink(file);
	rmdir(root);
	cr_assert(strstr(log, "cgroup = required, but"), "%s", log);
	cr_assert(strstr(log, "lacks the memory pids cpu controller(s)"),
		  "the message must name the missing controllers: %s", log);
	cr_assert_eq(count_lines(log), 1, "one message, got:\n%s", log);
}

Test(jail_daemon, startup_fails_when_uid_range_in_use)
{
	need_root_and_kvm();
	/* Someone already runs as a uid of the range. */
	int ready[2];
	cr_assert_eq(pipe2(ready, O_CLOEXEC), 0);
	pid_t squatter = fork();
	cr_assert_geq(squatter, 0);
	if (squatter == 0) {
		if (setresgid(UID_BASE + 2, UID_BASE + 2, UID_BASE + 2) < 0 ||
		    setresuid(UID_BASE + 2, UID_BASE + 2, UID_BASE + 2) < 0)
			_exit(1);
		(void)!write(ready[1], "", 1);
		pause();
		_exit(0);
	}
	/* Start the daemon only once the squatter runs as that uid. */
	close(ready[1]);
	char b;
	cr_assert_eq(read(ready[0], &b, 1), 1, "the squatter could not take uid %u",
		     UID_BASE + 2);
	close(ready[0]);
	start("cgroup = optional", NULL);
	char *log = expect_startup_failure();
	kill(squatter, SIGKILL);
	waitpid(squatter, NULL, 0);
	char want[128];
	snprintf(want, sizeof(want), "jail uid range %u..%u is in use: process %d",
		 UID_BASE, UID_BASE + MAX - 1, squatter);
	cr_assert(strstr(log, want), "%s", log);
	snprintf(want, sizeof(want), "runs as uid %u", UID_BASE + 2);
	cr_assert(strstr(log, want), "%s", log);
	cr_assert_eq(count_lines(log), 1, "one message, got:\n%s", log);
}

/* ---- rootless ------------------------------------------------------------- */

static void need_kvm(void)
{
	if (geteuid() != 0)
		t_skip("the test itself needs root (to become another "
			     "uid and hand it /dev/kvm)");
	if (access("/dev/kvm", R_OK | W_OK) != 0)
		t_skip("no usable /dev/kvm");
}

/* The jail a rootless hatcheryd builds, compared with /proc from outside:
 * the daemon's own uid in every child, no capability in any set (the
 * bounding set too, dropped in the child's own user namespace), all seven
 * namespaces new (the user one too), one id mapped, setgroups denied, the
 * same limits and filter; and siblings in different namespaces. */
Test(jail_daemon, rootless_info_matches_proc)
{
	need_kvm();
	start_rootless(RL_KVM_FD);
	struct hatch_client *c = connect_daemon();
	cr_assert_not_null(c, "hatcheryd exited: %s", slurp(d.log));
	cr_assert(strstr(slurp(d.log), "running without root"), "%s", slurp(d.log));
	struct hatch_err err;
	int vm[2];
	Hatchery__V1__AcquireReply *ar[2];
	Hatchery__V1__VmInfoReply *vi[2];
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(hatch_acquire(c, "default", 5000, &vm[i], &ar[i], &err), 0,
			     "%s", err.msg);
		cr_assert_eq(hatch_vm_info(vm[i], &vi[i], &err), 0, "%s", err.msg);
	}
	pid_t pid = (pid_t)ar[0]->child_pid;
	const Hatchery__V1__VmInfoReply *v = vi[0];
	cr_assert(v->jailed);
	cr_assert_eq(v->uid, ROOTLESS_UID);
	cr_assert_eq(v->gid, ROOTLESS_UID);
	char want[64], got[128];
	snprintf(want, sizeof(want), "%u\t%u\t%u\t%u", ROOTLESS_UID, ROOTLESS_UID,
		 ROOTLESS_UID, ROOTLESS_UID);
	cr_assert_str_eq(status_field(pid, "Uid", got, sizeof(got)), want);
	cr_assert_str_eq(status_field(pid, "Gid", got, sizeof(got)), want);
	const char *capkeys[] = { "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb" };
	for (size_t i = 0; i < 5; i++)
		cr_assert_str_eq(status_field(pid, capkeys[i], got, sizeof(got)),
				 "0000000000000000", "%s", capkeys[i]);
	cr_assert_eq(v->cap_eff | v->cap_prm | v->cap_inh | v->cap_amb | v->cap_bnd, 0);
	cr_assert(v->no_new_privs);
	cr_assert_eq(v->seccomp_mode, 2);
	cr_assert_str_eq(status_field(pid, "Seccomp", got, sizeof(got)), "2");
	cr_assert_eq(v->rlimit_nproc, 1, "lowered after the first run");
	cr_assert_eq(v->rlimit_fsize, ((uint64_t)v->memory_mib << 20) + (64ull << 20));

	/* Exactly one id mapped, to itself; setgroups denied. */
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/uid_map", pid);
	unsigned a, b, n;
	cr_assert_eq(sscanf(slurp(path), "%u %u %u", &a, &b, &n), 3);
	cr_assert(a == ROOTLESS_UID && b == ROOTLESS_UID && n == 1, "uid_map %u %u %u",
		  a, b, n);
	cr_assert_eq(count_lines(slurp(path)), 1);
	snprintf(path, sizeof(path), "/proc/%d/setgroups", pid);
	cr_assert(strncmp(slurp(path), "deny", 4) == 0);

	const struct { const char *ns; uint64_t v, w; } ns[] = {
		{ "mnt", v->ns_mnt, vi[1]->ns_mnt }, { "pid", v->ns_pid, vi[1]->ns_pid },
		{ "net", v->ns_net, vi[1]->ns_net }, { "ipc", v->ns_ipc, vi[1]->ns_ipc },
		{ "uts", v->ns_uts, vi[1]->ns_uts },
		{ "cgroup", v->ns_cgroup, vi[1]->ns_cgroup },
		{ "user", v->ns_user, vi[1]->ns_user },
	};
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		cr_assert_eq(ns_inode(pid, ns[i].ns), ns[i].v, "%s namespace", ns[i].ns);
		cr_assert_neq(ns_inode(d.pid, ns[i].ns), ns[i].v,
			      "%s namespace shared with hatcheryd", ns[i].ns);
		cr_assert_neq(ns[i].v, ns[i].w, "%s namespace shared by siblings",
			      ns[i].ns);
	}
	Hatchery__V1__StatusReply *st;
	cr_assert_eq(hatch_status(c, &st, &err), 0);
	cr_assert(strncmp(st->jail, "on (rootless", 12) == 0, "%s", st->jail);
	hatch_free(st);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(hatch_vm_release(vm[i], &err), 0, "%s", err.msg);
		close(vm[i]);
		hatch_free(vi[i]);
		hatch_free(ar[i]);
	}
	/* Lease and release stayed inside the allowlist. */
	snprintf(path, sizeof(path), "/proc/%d", pid);
	wait_gone(path, t_ms(2000));
	Hatchery__V1__StatsReply *sr;
	cr_assert_eq(hatch_stats(c, &sr, &err), 0);
	cr_assert_eq(sr->pools[0]->seccomp_kills, 0, "%s", slurp(d.log));
	cr_assert_eq(sr->pools[0]->unexpected_exits, 0, "%s", slurp(d.log));
	hatch_free(sr);
	hatch_close(c);
}

Test(jail_daemon, rootless_startup_fails_without_kvm_access)
{
	need_kvm();
	start_rootless(0);
	char *log = expect_startup_failure();
	cr_assert(strstr(log, "cannot use KVM: /dev/kvm: Permission denied"), "%s", log);
	cr_assert(strstr(log, "kvm group"), "%s", log);
	cr_assert_eq(count_lines(log), 1, "one message, got:\n%s", log);
}

Test(jail_daemon, rootless_startup_fails_without_user_namespaces)
{
	need_kvm();
	start_rootless(RL_KVM_FD | RL_NO_USERNS);
	char *log = expect_startup_failure();
	cr_assert(strstr(log, "refuses to create one"), "%s", log);
	cr_assert_eq(count_lines(log), 1, "one message, got:\n%s", log);
}
