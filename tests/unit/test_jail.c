/* Negative tests of the jail (vmproc/host/jail.c, vmproc/child/jail.c):
 * fork into the same jail a pool child enters (vmp_jail_clone3 +
 * vmp_jail_enter, the library functions spawn.c and child/main.c use),
 * then try what a guest that escaped into vmproc would try. Each attempt
 * is asserted twice:
 *   - in the full jail: the process dies by SIGSYS, and the report its
 *     SIGSYS handler sends (the same bytes the supervisor decodes) names
 *     that syscall;
 *   - in the jail without seccomp: the layer beneath still refuses, with
 *     the exact errno (ENOENT from the empty root, EPERM from no
 *     capabilities, ESRCH from the pid namespace, EAGAIN from NPROC 1...).
 * Needs root and /dev/kvm; skipped loudly otherwise. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/kvm.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hatchery/v1/control.pb-c.h"
#include "child/jail.h"
#include "kvm/kvm.h"
#include "testing.h"

#define UID_BASE 290000u /* away from hatcheryd's default 200000 */

static struct vmp_jail_filter filter_kill, filter_log, filter_linux, filter_vhost;
static int kvm_fd = -1;
static struct vmp_kvm_host host = { .kvm_fd = -1 }; /* for a real VM in the jail */

static void setup(void)
{
	if (geteuid() != 0)
		t_skip("the jail tests need root (namespaces, setuid)");
	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0)
		t_skip("no usable /dev/kvm: %s", strerror(errno));
	struct hatch_err err = { 0 };
	cr_assert_eq(vmp_kvm_host_open(&host, "/dev/kvm", &err), 0, "%s", err.msg);
	cr_assert_eq(vmp_jail_filter_build(VMP_SECCOMP_KILL, VMP_FILTER_KERNELLESS,
					   &filter_kill, &err), 0, "%s", err.msg);
	cr_assert_eq(vmp_jail_filter_build(VMP_SECCOMP_LOG, VMP_FILTER_KERNELLESS,
					   &filter_log, &err), 0, "%s", err.msg);
	cr_assert_eq(vmp_jail_filter_build(VMP_SECCOMP_KILL, VMP_FILTER_LINUX,
					   &filter_linux, &err), 0, "%s", err.msg);
	cr_assert_eq(vmp_jail_filter_build(VMP_SECCOMP_KILL, VMP_FILTER_VHOST_BLK,
					   &filter_vhost, &err), 0, "%s", err.msg);
}

static void teardown(void)
{
	vmp_jail_filter_free(&filter_kill);
	vmp_jail_filter_free(&filter_log);
	vmp_jail_filter_free(&filter_linux);
	vmp_jail_filter_free(&filter_vhost);
	vmp_kvm_host_close(&host);
	if (kvm_fd >= 0)
		close(kvm_fd);
}

TestSuite(jail, .init = setup, .fini = teardown, .timeout = 20);

/* FULL: a kernel-less child's jail; LINUX: a Linux child's (its
 * allowlist has threads and the device model's calls); VHOST: a vhost-user
 * block backend's filter (VMP_FILTER_VHOST_BLK) and NPROC 1, as
 * vhu_backend_child_main sets them (test_vhost_jail runs the backend
 * itself). */
enum layer { FULL, NO_SECCOMP, LOG, LINUX, VHOST };

struct ctx {
	int kvm;          /* /dev/kvm, inherited */
	pid_t sibling;    /* host pid of another jailed child */
};

typedef int (*attempt_fn)(const struct ctx *);

/* Exit codes of the jailed child. */
#define X_SUCCEEDED 200
#define X_JAIL_FAILED 201
#define X_SETUP_FAILED 202 /* the attempt could not be set up (e.g. no VM) */

struct outcome {
	bool sigsys;
	int exit_code;    /* when !sigsys: errno of the attempt, or X_* */
	int report_nr;    /* syscall the SIGSYS handler reported, -1: none */
	uint32_t report_arch;
};

static pid_t spawn_jailed(unsigned slot, enum layer l, attempt_fn fn,
			  const struct ctx *cx, int *pidfd, int *report)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	pid_t pid = vmp_jail_clone3(VMP_JAIL_ROOT, -1, pidfd);
	cr_assert_geq(pid, 0, "clone3: %s", strerror(errno));
	if (pid == 0) {
		close(sv[0]);
		struct vmp_jail_config cfg = {
			.uid = UID_BASE + slot,
			.gid = UID_BASE + slot,
			.nofile = 32,
			.as_extra = 256ull << 20,
			.filter = l == FULL ? &filter_kill : l == LOG ? &filter_log :
				  l == LINUX ? &filter_linux : l == VHOST ? &filter_vhost : NULL,
			.nproc = l == LINUX ? VMP_JAIL_NPROC_LINUX(2) :
				 l == VHOST ? VMP_JAIL_NPROC_RUNNING : 0,
#if defined(__SANITIZE_ADDRESS__)
			.flags = VMP_JAIL_NO_AS_LIMIT,
#endif
			.report_fd = sv[1],
			.parent_pidfd = -1,
		};
		struct vmp_jail_info info;
		struct hatch_err err = { 0 };
		if (vmp_jail_enter(&cfg, &info, &err) < 0)
			_exit(X_JAIL_FAILED);
		errno = 0;
		int r = fn(cx);
		_exit(r >= 0 ? X_SUCCEEDED : errno);
	}
	close(sv[1]);
	*report = sv[0];
	return pid;
}

static struct outcome wait_outcome(int pidfd, int report)
{
	struct outcome o = { .report_nr = -1 };
	siginfo_t si = { 0 };
	cr_assert_eq(waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED), 0);
	if (si.si_code == CLD_EXITED) {
		o.exit_code = si.si_status;
	} else {
		cr_assert_eq(si.si_status, SIGSYS, "child died by signal %d (%s)",
			     si.si_status, strsignal(si.si_status));
		o.sigsys = true;
	}
	uint8_t buf[256];
	ssize_t n = recv(report, buf, sizeof(buf), MSG_DONTWAIT);
	if (n > 0) {
		/* Decoded exactly as the supervisor decodes its children. */
		Hatchery__V1__ChildMsg *m =
			hatchery__v1__child_msg__unpack(NULL, (size_t)n, buf);
		cr_assert_not_null(m, "the SIGSYS report did not decode");
		cr_assert_eq(m->body_case, HATCHERY__V1__CHILD_MSG__BODY_SECCOMP_VIOLATION);
		o.report_nr = m->seccomp_violation->syscall;
		o.report_arch = m->seccomp_violation->arch;
		hatchery__v1__child_msg__free_unpacked(m, NULL);
	}
	close(report);
	close(pidfd);
	return o;
}

static struct outcome run(enum layer l, attempt_fn fn, const struct ctx *cx)
{
	int pidfd, report;
	spawn_jailed(1, l, fn, cx, &pidfd, &report);
	return wait_outcome(pidfd, report);
}

static int wait_forever(const struct ctx *cx)
{
	(void)cx;
	return poll(NULL, 0, -1); /* poll is on the allowlist */
}

/* A sibling: another jailed child, with another slot's uid. */
static pid_t start_sibling(int *pidfd, int *report)
{
	return spawn_jailed(2, FULL, wait_forever, NULL, pidfd, report);
}

static void stop_sibling(int pidfd, int report)
{
	syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
	waitid(P_PIDFD, (id_t)pidfd, &(siginfo_t){ 0 }, WEXITED);
	close(pidfd);
	close(report);
}

static void expect_sigsys(struct outcome o, long nr, const char *name)
{
	cr_assert(o.sigsys, "%s: expected death by SIGSYS, got exit %d (%s)", name,
		  o.exit_code, strerror(o.exit_code));
	cr_assert_eq(o.report_nr, nr, "%s: the SIGSYS report named syscall %d, "
		     "expected %ld", name, o.report_nr, nr);
	char buf[64];
	cr_assert_str_eq(vmp_jail_syscall_name(o.report_nr, o.report_arch, buf,
					       sizeof(buf)), name);
}

static void expect_errno(struct outcome o, int e, const char *what)
{
	cr_assert(!o.sigsys, "%s: died by SIGSYS without seccomp", what);
	cr_assert_neq(o.exit_code, X_JAIL_FAILED, "%s: the jail failed", what);
	cr_assert_eq(o.exit_code, e, "%s: expected %s, got %s", what, strerror(e),
		     o.exit_code == X_SUCCEEDED ? "success" : strerror(o.exit_code));
}

/* ---- the attempts -------------------------------------------------------- */

static int open_passwd(const struct ctx *cx)
{
	(void)cx;
	return open("/etc/passwd", O_RDONLY);
}

Test(jail, open_etc_passwd)
{
	struct ctx cx = { .kvm = kvm_fd };
	expect_sigsys(run(FULL, open_passwd, &cx), SYS_openat, "openat");
	expect_sigsys(run(VHOST, open_passwd, &cx), SYS_openat, "openat");
	/* Beneath seccomp: the host filesystem is gone. */
	expect_errno(run(NO_SECCOMP, open_passwd, &cx), ENOENT, "open /etc/passwd");
}

static int inet_socket(const struct ctx *cx)
{
	(void)cx;
	return socket(AF_INET, SOCK_STREAM, 0);
}

/* Without seccomp, a socket can be made, but the network namespace has no
 * interface up and no route: nowhere to go. */
static int inet_connect(const struct ctx *cx)
{
	(void)cx;
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0)
		return -1;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(80),
				  .sin_addr.s_addr = htonl(0x01010101) };
	return connect(s, (struct sockaddr *)&sa, sizeof(sa));
}

Test(jail, socket_af_inet)
{
	struct ctx cx = { .kvm = kvm_fd };
	expect_sigsys(run(FULL, inet_socket, &cx), SYS_socket, "socket");
	expect_sigsys(run(VHOST, inet_socket, &cx), SYS_socket, "socket");
	expect_errno(run(NO_SECCOMP, inet_connect, &cx), ENETUNREACH,
		     "connect to 1.1.1.1:80");
}

static int exec_sh(const struct ctx *cx)
{
	(void)cx;
	char *argv[] = { (char *)"sh", NULL };
	return execve("/bin/sh", argv, argv + 1);
}

Test(jail, execve)
{
	struct ctx cx = { .kvm = kvm_fd };
	expect_sigsys(run(FULL, exec_sh, &cx), SYS_execve, "execve");
	expect_sigsys(run(VHOST, exec_sh, &cx), SYS_execve, "execve");
	expect_errno(run(NO_SECCOMP, exec_sh, &cx), ENOENT, "execve /bin/sh");
}

static int ptrace_sibling(const struct ctx *cx)
{
	return (int)ptrace(PTRACE_ATTACH, cx->sibling, NULL, NULL);
}

Test(jail, ptrace_sibling)
{
	int spidfd, srep;
	struct ctx cx = { .kvm = kvm_fd };
	cx.sibling = start_sibling(&spidfd, &srep);
	expect_sigsys(run(FULL, ptrace_sibling, &cx), SYS_ptrace, "ptrace");
	expect_sigsys(run(VHOST, ptrace_sibling, &cx), SYS_ptrace, "ptrace");
	/* Its host pid means nothing in our pid namespace. */
	expect_errno(run(NO_SECCOMP, ptrace_sibling, &cx), ESRCH, "ptrace sibling");
	stop_sibling(spidfd, srep);
}

static int kill_sibling(const struct ctx *cx)
{
	return kill(cx->sibling, SIGKILL);
}

Test(jail, kill_other_child)
{
	int spidfd, srep;
	struct ctx cx = { .kvm = kvm_fd };
	cx.sibling = start_sibling(&spidfd, &srep);
	expect_sigsys(run(FULL, kill_sibling, &cx), SYS_kill, "kill");
	expect_sigsys(run(VHOST, kill_sibling, &cx), SYS_kill, "kill");
	expect_errno(run(NO_SECCOMP, kill_sibling, &cx), ESRCH, "kill sibling");
	/* And the sibling is still alive. */
	struct pollfd p = { .fd = spidfd, .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 0), 0, "the sibling died");
	stop_sibling(spidfd, srep);
}

static int do_mount(const struct ctx *cx)
{
	(void)cx;
	return mount("none", "/", "tmpfs", 0, NULL);
}

Test(jail, mount)
{
	struct ctx cx = { .kvm = kvm_fd };
	expect_sigsys(run(FULL, do_mount, &cx), SYS_mount, "mount");
	expect_sigsys(run(VHOST, do_mount, &cx), SYS_mount, "mount");
	/* No CAP_SYS_ADMIN in any set. */
	expect_errno(run(NO_SECCOMP, do_mount, &cx), EPERM, "mount tmpfs");
}

/* As a pool child does before it serves anything: build a VM, make its
 * first KVM_RUN (on kernels >= 6.13 KVM creates a worker task charged to
 * this uid, checked against NPROC 2), then lower NPROC to 1. */
static void vm_first_run_and_lower(void)
{
	struct vmp_vm vm;
	struct hatch_err err = { 0 };
	if (vmp_vm_create(&host, 16u << 20, 1, &vm, &err) < 0 ||
	    vmp_vm_first_run(&vm, &err) < 0 || vmp_jail_lower_nproc(NULL, &err) < 0)
		_exit(X_SETUP_FAILED);
}

static int do_fork(const struct ctx *cx)
{
	(void)cx;
	vm_first_run_and_lower();
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	return p;
}

static int do_plain_fork(const struct ctx *cx)
{
	(void)cx;
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	return p;
}

Test(jail, fork)
{
	struct ctx cx = { .kvm = kvm_fd };
	/* glibc's fork() is clone(2). */
	expect_sigsys(run(FULL, do_fork, &cx), SYS_clone, "clone");
	/* A backend has no VM to run first: NPROC 1 from the start. */
	expect_sigsys(run(VHOST, do_plain_fork, &cx), SYS_clone, "clone");
	/* RLIMIT_NPROC 1, and the uid is this child's alone: it holds this
	 * process (and on new kernels KVM's worker), so count >= limit
	 * either way. On 6.1 with the old NPROC 2 this fork succeeded. */
	expect_errno(run(NO_SECCOMP, do_fork, &cx), EAGAIN, "fork");
}

/* A Linux child's vCPU threads: pthread_create must work under its
 * filter, and nothing else that clone can do. */
static void *thread_fn(void *arg)
{
	return arg;
}

static int two_threads(const struct ctx *cx)
{
	(void)cx;
	pthread_t t[2];
	for (int i = 0; i < 2; i++) {
		int r = pthread_create(&t[i], NULL, thread_fn, NULL);
		if (r) {
			errno = r;
			return -1;
		}
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	return 0;
}

/* A process-sharing clone that is not a thread: the flags differ from
 * pthread's by CLONE_THREAD | CLONE_SIGHAND alone. */
static int clone_not_thread(const struct ctx *cx)
{
	(void)cx;
	return (int)syscall(SYS_clone, (unsigned long)(VMP_JAIL_THREAD_CLONE_FLAGS &
				       ~(unsigned long)(CLONE_THREAD | CLONE_SIGHAND)),
			    NULL, NULL, NULL, 0);
}

static int clone3_call(const struct ctx *cx)
{
	(void)cx;
	struct clone_args a = { .flags = 0, .exit_signal = SIGCHLD };
	return (int)syscall(SYS_clone3, &a, sizeof(a));
}

static int threads_then_fork(const struct ctx *cx)
{
	if (two_threads(cx) < 0)
		return -1;
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	return p;
}

Test(jail, vhost_no_threads)
{
	struct ctx cx = { .kvm = kvm_fd };
	struct outcome o = run(VHOST, two_threads, &cx);
	cr_assert(o.sigsys, "pthread_create under a backend's filter: exit %d, not SIGSYS",
		  o.exit_code);
}

Test(jail, linux_threads_only)
{
	struct ctx cx = { .kvm = kvm_fd };
	/* Threads work in a Linux child's jail... */
	expect_errno(run(LINUX, two_threads, &cx), X_SUCCEEDED, "two pthreads");
	/* ...and in a kernel-less one they are a violation (which call
	 * trips first is glibc's business: the stack's mprotect today). */
	struct outcome o = run(FULL, two_threads, &cx);
	cr_assert(o.sigsys, "pthread_create in a kernel-less jail: exit %d, not SIGSYS",
		  o.exit_code);
	/* A plain fork still dies, also after threads were made. */
	expect_sigsys(run(LINUX, do_plain_fork, &cx), SYS_clone, "clone");
	expect_sigsys(run(LINUX, threads_then_fork, &cx), SYS_clone, "clone");
	expect_sigsys(run(LINUX, clone_not_thread, &cx), SYS_clone, "clone");
	/* clone3's flags are out of seccomp's sight: refused with ENOSYS
	 * (glibc then uses clone, whose flags it can check). */
	expect_errno(run(LINUX, clone3_call, &cx), ENOSYS, "clone3");
}

/* A Linux child with a disk makes its guest RAM a sealed memfd
 * (kvm/vm.c, VMP_VM_SHARED_MEM): exactly those flags and F_ADD_SEALS, no
 * other memfd or fcntl. */
static int shared_ram(const struct ctx *cx)
{
	(void)cx;
	int fd = memfd_create("guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	/* Size 0: this jail's RLIMIT_FSIZE is 0, and it binds a memfd too (a
	 * pool child's is guest RAM plus headroom, for Save: room enough). */
	if (fd < 0 || ftruncate(fd, 0) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		return -1;
	void *m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	return m == MAP_FAILED ? -1 : 0;
}

static int memfd_hugetlb(const struct ctx *cx)
{
	(void)cx;
	return memfd_create("x", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB);
}

static int fcntl_setfl(const struct ctx *cx)
{
	(void)cx;
	return fcntl(0, F_SETFL, O_NONBLOCK);
}

Test(jail, linux_shared_ram_only)
{
	struct ctx cx = { .kvm = kvm_fd };
	expect_errno(run(LINUX, shared_ram, &cx), X_SUCCEEDED, "a sealed memfd for guest RAM");
	expect_sigsys(run(LINUX, memfd_hugetlb, &cx), SYS_memfd_create, "memfd_create");
	expect_sigsys(run(LINUX, fcntl_setfl, &cx), SYS_fcntl, "fcntl");
	expect_sigsys(run(FULL, shared_ram, &cx), SYS_memfd_create, "memfd_create");
}

/* The allowlist's prlimit64 entry is for lowering our own NPROC and
 * nothing else. */
static int raise_nproc(const struct ctx *cx)
{
	(void)cx;
	vm_first_run_and_lower();
	struct rlimit rl = { .rlim_cur = VMP_JAIL_NPROC, .rlim_max = VMP_JAIL_NPROC };
	return setrlimit(RLIMIT_NPROC, &rl);
}

static int raise_nproc_soft(const struct ctx *cx)
{
	(void)cx;
	vm_first_run_and_lower();
	struct rlimit rl = { .rlim_cur = VMP_JAIL_NPROC, .rlim_max = VMP_JAIL_NPROC_RUNNING };
	return setrlimit(RLIMIT_NPROC, &rl);
}

static int lower_nofile(const struct ctx *cx)
{
	(void)cx;
	vm_first_run_and_lower();
	struct rlimit rl = { .rlim_cur = 8, .rlim_max = 8 };
	return setrlimit(RLIMIT_NOFILE, &rl);
}

static int lower_nofile_only(const struct ctx *cx)
{
	(void)cx;
	struct rlimit rl = { .rlim_cur = 8, .rlim_max = 8 };
	return setrlimit(RLIMIT_NOFILE, &rl);
}

static int nproc_by_pid(const struct ctx *cx)
{
	(void)cx;
	vm_first_run_and_lower();
	/* pid 1 is this process in its pid namespace: still not pid 0. */
	struct rlimit rl = { .rlim_cur = 0, .rlim_max = 0 };
	return (int)syscall(SYS_prlimit64, 1, RLIMIT_NPROC, &rl, NULL);
}

static int old_setrlimit(const struct ctx *cx)
{
	(void)cx;
	vm_first_run_and_lower();
	struct rlimit rl = { .rlim_cur = 0, .rlim_max = 0 };
	return (int)syscall(SYS_setrlimit, RLIMIT_NPROC, &rl);
}

Test(jail, nproc_lowered_for_good)
{
	struct ctx cx = { .kvm = kvm_fd };
	/* Through the filter (pid 0, RLIMIT_NPROC), refused by the kernel:
	 * the hard limit is 1 and there is no CAP_SYS_RESOURCE. */
	expect_errno(run(FULL, raise_nproc, &cx), EPERM, "raise NPROC to 2/2");
	expect_errno(run(NO_SECCOMP, raise_nproc, &cx), EPERM, "raise NPROC to 2/2");
	/* Soft above hard is no way around it. */
	expect_errno(run(FULL, raise_nproc_soft, &cx), EINVAL, "raise NPROC to 2/1");
	/* The entry is that narrow: another resource, another pid, the old
	 * setrlimit syscall all die by SIGSYS. */
	expect_sigsys(run(FULL, lower_nofile, &cx), SYS_prlimit64, "prlimit64");
	/* A backend's filter has no prlimit64 at all. */
	expect_sigsys(run(VHOST, lower_nofile_only, &cx), SYS_prlimit64, "prlimit64");
	expect_sigsys(run(FULL, nproc_by_pid, &cx), SYS_prlimit64, "prlimit64");
	expect_sigsys(run(FULL, old_setrlimit, &cx), SYS_setrlimit, "setrlimit");
}

static int write_file(const struct ctx *cx)
{
	(void)cx;
	return open("/escape", O_WRONLY | O_CREAT | O_TRUNC, 0644);
}

Test(jail, write_a_file)
{
	struct ctx cx = { .kvm = kvm_fd };
	expect_sigsys(run(FULL, write_file, &cx), SYS_openat, "openat");
	expect_sigsys(run(VHOST, write_file, &cx), SYS_openat, "openat");
	/* The new root is an empty read-only tmpfs. */
	expect_errno(run(NO_SECCOMP, write_file, &cx), EROFS, "create /escape");
}

static int kvm_bad_ioctl(const struct ctx *cx)
{
	int n = 0;
	return ioctl(cx->kvm, FIONREAD, &n);
}

static int kvm_good_ioctl(const struct ctx *cx)
{
	return ioctl(cx->kvm, KVM_CREATE_VM, 0);
}

Test(jail, ioctl_non_kvm_on_kvm_fd)
{
	struct ctx cx = { .kvm = kvm_fd };
	expect_sigsys(run(FULL, kvm_bad_ioctl, &cx), SYS_ioctl, "ioctl");
	/* A backend has no ioctl at all, KVM's included. */
	expect_sigsys(run(VHOST, kvm_bad_ioctl, &cx), SYS_ioctl, "ioctl");
	expect_sigsys(run(VHOST, kvm_good_ioctl, &cx), SYS_ioctl, "ioctl");
	/* The control: a KVM ioctl vmproc uses goes through the filter. */
	struct outcome o = run(FULL, kvm_good_ioctl, &cx);
	cr_assert(!o.sigsys && o.exit_code == X_SUCCEEDED,
		  "KVM_CREATE_VM in the jail: %s (syscall %d)",
		  o.sigsys ? "SIGSYS" : strerror(o.exit_code), o.report_nr);
}

Test(jail, log_mode_allows_and_survives)
{
	struct ctx cx = { .kvm = kvm_fd };
	/* seccomp = log: the same off-list socket() is let through (and
	 * audit-logged), for debugging an allowlist. */
	struct outcome o = run(LOG, inet_socket, &cx);
	cr_assert(!o.sigsys, "died by SIGSYS in log mode");
	cr_assert_eq(o.exit_code, X_SUCCEEDED, "socket in log mode: %s",
		     strerror(o.exit_code));
}

static int mmap_exec(const struct ctx *cx)
{
	(void)cx;
	void *p = mmap(NULL, 4096, PROT_READ | PROT_EXEC,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? -1 : 0;
}

Test(jail, no_executable_mappings)
{
	struct ctx cx = { .kvm = kvm_fd };
	expect_sigsys(run(FULL, mmap_exec, &cx), SYS_mmap, "mmap");
	expect_sigsys(run(VHOST, mmap_exec, &cx), SYS_mmap, "mmap");
}

/* The facts the child reports about itself (VmInfoReply) against what the
 * parent sees from outside in /proc. */
static int report_info(const struct ctx *cx)
{
	(void)cx;
	return 0;
}

Test(jail, info_matches_proc)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	int pidfd;
	pid_t pid = vmp_jail_clone3(VMP_JAIL_ROOT, -1, &pidfd);
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct vmp_jail_config cfg = {
			.uid = UID_BASE + 3, .gid = UID_BASE + 3, .nofile = 20,
			.as_extra = 256ull << 20, .filter = &filter_kill,
#if defined(__SANITIZE_ADDRESS__)
			.flags = VMP_JAIL_NO_AS_LIMIT,
#endif
			.report_fd = -1, .parent_pidfd = -1,
		};
		struct vmp_jail_info info;
		struct hatch_err err = { 0 };
		if (vmp_jail_enter(&cfg, &info, &err) < 0)
			_exit(X_JAIL_FAILED);
		struct iovec iov = { &info, sizeof(info) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		sendmsg(sv[1], &mh, 0);
		(void)report_info;
		poll(NULL, 0, -1);
		_exit(0);
	}
	close(sv[1]);
	struct vmp_jail_info info;
	cr_assert_eq(recv(sv[0], &info, sizeof(info), 0), (ssize_t)sizeof(info));
	cr_assert(info.jailed);
	cr_assert_eq(info.euid, UID_BASE + 3);
	cr_assert_eq(info.egid, UID_BASE + 3);
	cr_assert_eq(info.ngroups, 0);
	cr_assert_eq(info.cap_eff | info.cap_prm | info.cap_inh | info.cap_amb |
			     info.cap_bnd, 0);
	cr_assert_eq(info.no_new_privs, 1);
	cr_assert_eq(info.seccomp_mode, 2);
	cr_assert_eq(info.rlim_nproc, VMP_JAIL_NPROC);
	cr_assert_eq(info.rlim_fsize, 0);
	cr_assert_eq(info.rlim_core, 0);
	cr_assert_eq(info.rlim_nofile, 20);
	/* The namespace inodes are read from outside (the supervisor does it
	 * right after clone3): the child's, and all new but the user one. */
	uint64_t ino[VMP_NS__N];
	cr_assert_eq(vmp_jail_ns_inodes(pid, ino), 0);
	for (int i = 0; i < VMP_NS__N; i++) {
		char path[64];
		struct stat st, mine;
		snprintf(path, sizeof(path), "/proc/%d/ns/%s", pid, vmp_jail_ns_names[i]);
		cr_assert_eq(stat(path, &st), 0);
		cr_assert_eq(ino[i], st.st_ino, "%s namespace", vmp_jail_ns_names[i]);
		snprintf(path, sizeof(path), "/proc/self/ns/%s", vmp_jail_ns_names[i]);
		cr_assert_eq(stat(path, &mine), 0);
		if (i == VMP_NS_USER)
			cr_assert_eq(st.st_ino, mine.st_ino, "user ns: expected the host's");
		else
			cr_assert_neq(st.st_ino, mine.st_ino, "%s ns not new",
				      vmp_jail_ns_names[i]);
	}
	cr_assert_str_eq(info.cgroup, "/", "the cgroup namespace's root");
	syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
	waitid(P_PIDFD, (id_t)pidfd, &(siginfo_t){ 0 }, WEXITED);
}

/* hatcheryd empties its bounding set once at start-up, so its children
 * skip the per-child drop. That path: the parent drops first (which also
 * leaves libcap-ng's state, naming the parent's pid, in every fork), and
 * the child must still end with the slot's ids and no capability at all. */
Test(jail, bounding_set_dropped_by_the_parent)
{
	struct hatch_err err = { 0 };
	cr_assert_eq(vmp_jail_drop_bounding(&err), 0, "%s", err.msg);
	cr_assert_eq(prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0), 0);
	cr_assert_eq(prctl(PR_CAPBSET_READ, CAP_SETUID, 0, 0, 0), 0);
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	int pidfd;
	pid_t pid = vmp_jail_clone3(VMP_JAIL_ROOT, -1, &pidfd);
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct vmp_jail_config cfg = {
			.uid = UID_BASE + 4, .gid = UID_BASE + 4, .nofile = 20,
			.as_extra = 256ull << 20, .filter = &filter_kill,
#if defined(__SANITIZE_ADDRESS__)
			.flags = VMP_JAIL_NO_AS_LIMIT,
#endif
			.report_fd = -1, .parent_pidfd = -1,
		};
		struct vmp_jail_info info;
		struct hatch_err e = { 0 };
		if (vmp_jail_enter(&cfg, &info, &e) < 0) {
			struct iovec iov = { e.msg, strlen(e.msg) + 1 };
			struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
			sendmsg(sv[1], &mh, 0);
			_exit(X_JAIL_FAILED);
		}
		struct iovec iov = { &info, sizeof(info) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		sendmsg(sv[1], &mh, 0);
		_exit(0);
	}
	close(sv[1]);
	union { struct vmp_jail_info info; char msg[sizeof(err.msg)]; } u;
	ssize_t n = recv(sv[0], &u, sizeof(u), 0);
	cr_assert_eq(n, (ssize_t)sizeof(u.info), "the jail failed: %s",
		     n > 0 ? u.msg : "(no message)");
	cr_assert_eq(u.info.euid, UID_BASE + 4);
	cr_assert_eq(u.info.ruid, UID_BASE + 4);
	cr_assert_eq(u.info.sgid, UID_BASE + 4);
	cr_assert_eq(u.info.cap_eff | u.info.cap_prm | u.info.cap_inh |
			     u.info.cap_amb | u.info.cap_bnd, 0,
		     "capabilities left: eff %#llx prm %#llx bnd %#llx",
		     (unsigned long long)u.info.cap_eff,
		     (unsigned long long)u.info.cap_prm,
		     (unsigned long long)u.info.cap_bnd);
	cr_assert_eq(u.info.seccomp_mode, 2);
	waitid(P_PIDFD, (id_t)pidfd, &(siginfo_t){ 0 }, WEXITED);
	close(pidfd);
	close(sv[0]);
}
