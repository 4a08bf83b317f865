/* jail.c - namespaces, pivot_root, credentials, capabilities, rlimits,
 * no_new_privs and seccomp for one vmproc child. See jail.h for the order
 * and docs/security.md for what each layer stops. */
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <cap-ng.h>
#include <seccomp.h>

#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"
#include "jail.h"

#define E_INTERNAL HATCHERY__V1__ERROR_CODE__INTERNAL

const char *const vmp_jail_ns_names[VMP_NS__N] = {
	[VMP_NS_MNT] = "mnt", [VMP_NS_PID] = "pid", [VMP_NS_NET] = "net",
	[VMP_NS_IPC] = "ipc", [VMP_NS_UTS] = "uts", [VMP_NS_CGROUP] = "cgroup",
	[VMP_NS_USER] = "user",
};

/* ---- the seccomp allowlist ---------------------------------------------
 *
 * Exactly the syscalls vmproc makes after vmp_jail_enter() returns, found
 * by reading vmproc.c/kvm.c/ipc/frame.c and confirmed with strace -f on a
 * jailed child through build, ready, health pings, lease, Info, release
 * (docs/security.md, "How the list was derived"). Growing it is a
 * deliberate act: one syscall per line, with the reason. */

/* KVM ioctls, by argument. The VM is built under the jail (see
 * docs/security.md for why), so the creation ioctls are here, and since
 * the guest runtime (guest.c) runs the vCPU, so are the four it needs. */
const unsigned long vmp_jail_kvm_ioctls[] = {
	KVM_CREATE_VM,              /* on /dev/kvm, once; /dev/kvm is closed after */
	KVM_SET_USER_MEMORY_REGION, /* guest RAM slots                             */
	KVM_CREATE_IRQCHIP,         /* in-kernel LAPIC/IOAPIC/PIC                  */
	KVM_CREATE_PIT2,            /* in-kernel PIT                               */
	KVM_CREATE_VCPU,            /* one per vCPU                                */
	KVM_SET_CPUID2,             /* the host's supported CPUID on each vCPU     */
	KVM_RUN,                    /* guest.c: boot, calls, heartbeats            */
	KVM_GET_SREGS,              /* guest.c: start from KVM's own sregs (APIC
	                             * base, hidden fields) and change what we set */
	KVM_SET_SREGS,              /* guest.c: CPL 3 segments, GDT/IDT/TR, CR0/3/4,
	                             * EFER: enter the guest with no firmware      */
	KVM_SET_REGS,               /* guest.c: RIP = ELF entry, RSP = stack top   */
	/* vmsnap.c, Save: each vCPU's and the VM's state (docs/snapshot.md) */
	KVM_GET_REGS, KVM_GET_FPU, KVM_GET_XSAVE, KVM_GET_XCRS, KVM_GET_MSRS,
	KVM_GET_LAPIC, KVM_GET_MP_STATE, KVM_GET_VCPU_EVENTS, KVM_GET_DEBUGREGS,
	KVM_GET_TSC_KHZ, KVM_GET_IRQCHIP, KVM_GET_PIT2, KVM_GET_CLOCK,
	/* vmsnap.c, Restore: the same state set back (KVM_SET_TSC_KHZ only
	 * when the snapshot's TSC rate differs from this vCPU's) */
	KVM_SET_FPU, KVM_SET_XSAVE, KVM_SET_XCRS, KVM_SET_MSRS, KVM_SET_LAPIC,
	KVM_SET_MP_STATE, KVM_SET_VCPU_EVENTS, KVM_SET_DEBUGREGS, KVM_SET_TSC_KHZ,
	KVM_SET_IRQCHIP, KVM_SET_PIT2, KVM_SET_CLOCK,
};
const unsigned vmp_jail_n_kvm_ioctls = HATCH_ARRAY_SIZE(vmp_jail_kvm_ioctls);

static const struct {
	int nr;
	const char *why;
} allowed[] = {
	{ SCMP_SYS(sendmsg), "ipc_send: ChildReady/Pong/Failed, VM replies, the SIGSYS report" },
	{ SCMP_SYS(recvmsg), "ipc_recv: SupHello, pings and SupLeased, client requests" },
	{ SCMP_SYS(poll), "the serve loop waits on the control and client sockets" },
	{ SCMP_SYS(close), "close(/dev/kvm) after KVM_CREATE_VM; fds of rejected packets" },
	{ SCMP_SYS(brk), "malloc/free: protobuf-c unpack buffers may grow or trim the heap" },
	{ SCMP_SYS(exit_group), "_exit at the end of a lease or on a setup error" },
	{ SCMP_SYS(clock_gettime), "phase timings; vDSO normally, the syscall when the "
				   "clocksource has no vDSO (kvm-pvm guests)" },
	{ SCMP_SYS(timer_settime), "guest.c: arm and disarm a call's deadline (the timer "
				   "was created before the jail)" },
	{ SCMP_SYS(rt_sigreturn), "guest.c: return from the deadline's SIGALRM handler, "
				  "which makes KVM_RUN return EINTR" },
	{ SCMP_SYS(lseek), "Load: the size of the guest ELF fd before mmap'ing it; "
			   "Save/Restore: the snapshot file's size" },
	{ SCMP_SYS(ftruncate), "Save: snap_write_fd sizes the client's file (bounded by "
			       "RLIMIT_FSIZE)" },
	{ SCMP_SYS(pwrite64), "Save: snap_write_fd writes header, sections and pages" },
	{ SCMP_SYS(munmap), "Restore: drop the snapshot's section view; free() of large "
			    "malloc chunks (the snapshot writer's extent list)" },
	{ SCMP_SYS(getrandom), "guest.c: fresh seed bytes for the guest at boot and on "
			       "every Restore, so clones of one snapshot differ (32 "
			       "bytes; no fd, no path)" },
};

#if defined(__SANITIZE_ADDRESS__)
/* Sanitizer builds only (compiled out of release builds): what the
 * ASan/UBSan runtime itself calls in a jailed child, found with strace
 * like the rest. The release filter never contains these. A sanitizer
 * *report* from a jailed child needs more (write, getpid, open of
 * /proc/self/maps...): it is cut short by SIGSYS, and the supervisor logs
 * which syscall; rerun with seccomp = log to read the whole report. */
static const struct {
	int nr;
	const char *why;
} sanitizer_extra[] = {
	{ SCMP_SYS(sigaltstack), "ASan's _exit interceptor tears down its alternate signal stack" },
};
#endif

static int add_rule(scmp_filter_ctx ctx, int nr, unsigned n,
		    const struct scmp_arg_cmp *cmp, struct hatch_err *err)
{
	int r = seccomp_rule_add_exact_array(ctx, SCMP_ACT_ALLOW, nr, n, cmp);
	if (r < 0) {
		char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
		hatch_err_set(err, E_INTERNAL, -r, "seccomp rule for %s",
			      name ? name : "?");
		free(name);
		return -1;
	}
	return 0;
}

static void seccomp_releasep(scmp_filter_ctx *c)
{
	if (*c)
		seccomp_release(*c);
}

int vmp_jail_filter_build(enum vmp_seccomp_mode mode,
			  struct vmp_jail_filter *out, struct hatch_err *err)
{
	memset(out, 0, sizeof(*out));
	/* kill: SECCOMP_RET_TRAP, so the child's SIGSYS handler can tell the
	 * supervisor which syscall it was before dying (the handler cannot
	 * return to the syscall: see on_sigsys). log: allow, and log it. */
	uint32_t def = mode == VMP_SECCOMP_LOG ? SCMP_ACT_LOG : SCMP_ACT_TRAP;
	__attribute__((cleanup(seccomp_releasep))) scmp_filter_ctx ctx =
		seccomp_init(def);
	if (!ctx)
		return hatch_err_set(err, E_INTERNAL, ENOMEM, "seccomp_init");
	/* Another ABI (int 0x80, x32) is another syscall table: die at once. */
	seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	/* We load it ourselves, after no_new_privs. */
	seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);

	for (size_t i = 0; i < HATCH_ARRAY_SIZE(allowed); i++)
		if (add_rule(ctx, allowed[i].nr, 0, NULL, err) < 0)
			return -1;
#if defined(__SANITIZE_ADDRESS__)
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(sanitizer_extra); i++)
		if (add_rule(ctx, sanitizer_extra[i].nr, 0, NULL, err) < 0)
			return -1;
#endif
	/* mmap: guest RAM (anonymous) and each vCPU's kvm_run (on the vCPU
	 * fd), malloc's large chunks. Never executable: a guest that escaped
	 * into vmproc gets no fresh code pages from us. */
	struct scmp_arg_cmp noexec = SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0);
	if (add_rule(ctx, SCMP_SYS(mmap), 1, &noexec, err) < 0)
		return -1;
	/* prlimit64 (what glibc's setrlimit and getrlimit issue) only on our
	 * own RLIMIT_NPROC: vmp_jail_lower_nproc lowers it after the VM's
	 * first run, under the filter, and reads it back. Raising it again
	 * is the kernel's to refuse (the hard limit is then 1, and there is
	 * no CAP_SYS_RESOURCE); every other resource, and any other pid (even
	 * our own, 1 in our pid namespace), is off the list. */
	struct scmp_arg_cmp nproc[] = {
		SCMP_A0(SCMP_CMP_EQ, 0),
		SCMP_A1(SCMP_CMP_EQ, RLIMIT_NPROC),
	};
	if (add_rule(ctx, SCMP_SYS(prlimit64), 2, nproc, err) < 0)
		return -1;
	/* ioctl only with the KVM commands above, on any fd: the only ioctl
	 * targets the child has are /dev/kvm, the VM and its vCPUs. */
	for (unsigned i = 0; i < vmp_jail_n_kvm_ioctls; i++) {
		struct scmp_arg_cmp c = SCMP_A1(SCMP_CMP_EQ, vmp_jail_kvm_ioctls[i]);
		if (add_rule(ctx, SCMP_SYS(ioctl), 1, &c, err) < 0)
			return -1;
	}

	/* libseccomp 2.5 exports to an fd, not to memory. */
	_cleanup_close_ int fd = (int)syscall(SYS_memfd_create, "seccomp-bpf", MFD_CLOEXEC);
	if (fd < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "memfd_create");
	int r = seccomp_export_bpf(ctx, fd);
	if (r < 0)
		return hatch_err_set(err, E_INTERNAL, -r, "seccomp_export_bpf");
	off_t size = lseek(fd, 0, SEEK_END);
	if (size <= 0 || size % (off_t)sizeof(struct sock_filter) ||
	    size / (off_t)sizeof(struct sock_filter) > BPF_MAXINSNS)
		return hatch_err_set(err, E_INTERNAL, 0,
				     "seccomp_export_bpf: odd size %lld",
				     (long long)size);
	_cleanup_free_ struct sock_filter *insns = malloc((size_t)size);
	if (!insns)
		return hatch_err_set(err, E_INTERNAL, ENOMEM, "seccomp filter");
	if (pread(fd, insns, (size_t)size, 0) != size)
		return hatch_err_set(err, E_INTERNAL, errno, "read seccomp filter");
	out->insns = steal_ptr(&insns);
	out->len = (unsigned short)(size / (off_t)sizeof(struct sock_filter));
	out->mode = mode;
	return 0;
}

void vmp_jail_filter_free(struct vmp_jail_filter *f)
{
	free(f->insns);
	memset(f, 0, sizeof(*f));
}

const char *vmp_jail_syscall_name(int nr, uint32_t arch, char *buf, size_t len)
{
	/* libseccomp's arch tokens are the AUDIT_ARCH_* values. */
	char *name = seccomp_syscall_resolve_num_arch(arch ? arch : SCMP_ARCH_NATIVE, nr);
	if (name)
		snprintf(buf, len, "%s", name);
	else
		snprintf(buf, len, "syscall %d", nr);
	free(name);
	return buf;
}

/* ---- clone ------------------------------------------------------------- */

pid_t vmp_jail_clone3(enum vmp_jail_kind kind, int cgroup_fd, int *pidfd)
{
	struct clone_args args;
	memset(&args, 0, sizeof(args));
	args.flags = CLONE_PIDFD;
	if (kind != VMP_JAIL_NONE)
		args.flags |= VMP_JAIL_NS_FLAGS;
	if (kind == VMP_JAIL_ROOTLESS)
		args.flags |= CLONE_NEWUSER;
	if (cgroup_fd >= 0) {
		/* Born in its cgroup: charged from its first page, and no
		 * window in which it runs unlimited (a migration afterwards
		 * would leave one). */
		args.flags |= CLONE_INTO_CGROUP;
		args.cgroup = (uint64_t)cgroup_fd;
	}
	args.pidfd = (uint64_t)(uintptr_t)pidfd;
	args.exit_signal = SIGCHLD;
	/* Raw clone3 skips glibc's fork handlers. That is safe here: the
	 * caller is single-threaded, so no lock can be held across the fork,
	 * and the child never returns into the caller's code. */
	return (pid_t)syscall(SYS_clone3, &args, sizeof(args));
}

static int write_proc(pid_t pid, const char *file, const char *val)
{
	char path[48];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t n = strlen(val);
	ssize_t w = write(fd, val, n);
	if (w < 0)
		return -errno;
	return (size_t)w == n ? 0 : -EIO;
}

int vmp_jail_map_ids(pid_t pid, uid_t uid, gid_t gid)
{
	char map[48];
	int r = write_proc(pid, "setgroups", "deny");
	if (r < 0)
		return r;
	snprintf(map, sizeof(map), "%u %u 1\n", uid, uid);
	if ((r = write_proc(pid, "uid_map", map)) < 0)
		return r;
	snprintf(map, sizeof(map), "%u %u 1\n", gid, gid);
	return write_proc(pid, "gid_map", map);
}

int vmp_jail_probe_rootless(struct hatch_err *err)
{
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "pipe");
	int pidfd = -1;
	uid_t uid = geteuid();
	gid_t gid = getegid();
	pid_t pid = vmp_jail_clone3(VMP_JAIL_ROOTLESS, -1, &pidfd);
	if (pid < 0) {
		int e = errno;
		close(pipefd[0]);
		close(pipefd[1]);
		return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__FAILED_PRECONDITION, e,
				     "running without root needs a user namespace per "
				     "child, and this kernel refuses to create one for "
				     "uid %u (clone3 with CLONE_NEWUSER and the jail's "
				     "namespaces); check user.max_user_namespaces, "
				     "kernel.unprivileged_userns_clone or "
				     "kernel.apparmor_restrict_unprivileged_userns", uid);
	}
	if (pid == 0) {
		/* Wait for the maps (EOF), then check they took. */
		char c;
		close(pipefd[1]);
		while (read(pipefd[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(getuid() == uid && getgid() == gid ? 0 : 1);
	}
	close(pipefd[0]);
	int r = vmp_jail_map_ids(pid, uid, gid);
	close(pipefd[1]);
	siginfo_t si = { 0 };
	waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED);
	close(pidfd);
	if (r < 0)
		return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__FAILED_PRECONDITION, -r,
				     "running without root: cannot map uid %u/gid %u "
				     "into a child's user namespace", uid, gid);
	if (si.si_code != CLD_EXITED || si.si_status != 0)
		return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__FAILED_PRECONDITION, 0,
				     "running without root: a child's user namespace "
				     "did not get uid %u/gid %u mapped", uid, gid);
	return 0;
}

/* ---- the SIGSYS handler -------------------------------------------------- */

static int report_fd = -1;

static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	do {
		p[n] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v)
			p[n] |= 0x80;
		n++;
	} while (v);
	return n;
}

/* A syscall outside the allowlist, with seccomp = kill. Tell the
 * supervisor which one (ChildMsg{seccomp_violation{syscall, arch}},
 * encoded by hand: no malloc in a signal handler), then die by SIGSYS.
 *
 * Dying: SIGSYS is blocked while this handler runs, and the kernel forces a
 * seccomp SIGSYS that arrives blocked to its default action (core, i.e.
 * death; RLIMIT_CORE is 0). So we re-issue the refused syscall with the
 * same six arguments: the filter looks only at those registers, so it
 * traps again and the process dies with si_status == SIGSYS. rt_sigaction
 * and sigprocmask are not allowed, so nothing can undo this. */
static void on_sigsys(int sig, siginfo_t *si, void *uc_)
{
	(void)sig;
	ucontext_t *uc = uc_;
	if (report_fd >= 0) {
		uint8_t inner[32], msg[40];
		size_t n = 0, m = 0;
		inner[n++] = 0x08; /* syscall = 1, varint (int32: sign-extended) */
		n += put_varint(inner + n, (uint64_t)(int64_t)si->si_syscall);
		inner[n++] = 0x10; /* arch = 2, varint */
		n += put_varint(inner + n, si->si_arch);
		msg[m++] = (13 << 3) | 2; /* ChildMsg.seccomp_violation */
		msg[m++] = (uint8_t)n;
		memcpy(msg + m, inner, n);
		m += n;
		/* sendmsg, not send (that is sendto): only sendmsg is allowed. */
		struct iovec iov = { .iov_base = msg, .iov_len = m };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		sendmsg(report_fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	}
	greg_t *g = uc->uc_mcontext.gregs;
	syscall(si->si_syscall, g[REG_RDI], g[REG_RSI], g[REG_RDX], g[REG_R10],
		g[REG_R8], g[REG_R9]);
	__builtin_trap(); /* not reached */
}

/* ---- vmp_jail_enter ------------------------------------------------------ */

/* Read a small /proc file into buf (NUL-terminated). Only before pivot_root. */
static ssize_t read_small(const char *path, char *buf, size_t len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, len - 1);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return n;
}

/* What only /proc can tell from inside: the cgroup line and our current
 * address-space size (for RLIMIT_AS). The namespace inodes are read by the
 * supervisor from outside (vmp_jail_ns_inodes), in parallel with this. */
static int capture_proc(struct vmp_jail_info *info, uint64_t *vm_bytes,
			struct hatch_err *err)
{
	char buf[4096];
	if (read_small("/proc/self/cgroup", buf, sizeof(buf)) < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "read /proc/self/cgroup");
	const char *l = strncmp(buf, "0::", 3) == 0 ? buf : strstr(buf, "\n0::");
	if (l) {
		l += l[0] == '\n' ? 4 : 3;
		snprintf(info->cgroup, sizeof(info->cgroup), "%.*s",
			 (int)strcspn(l, "\n"), l);
	}
	if (read_small("/proc/self/statm", buf, sizeof(buf)) < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "read /proc/self/statm");
	*vm_bytes = strtoull(buf, NULL, 10) * (uint64_t)sysconf(_SC_PAGESIZE);
	return 0;
}

int vmp_jail_ns_inodes(pid_t pid, uint64_t ino[VMP_NS__N])
{
	char path[48];
	snprintf(path, sizeof(path), "/proc/%d/ns", (int)pid);
	_cleanup_close_ int dir = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		return -errno;
	for (int i = 0; i < VMP_NS__N; i++) {
		struct stat st;
		/* stat follows the magic link to the nsfs inode: its number
		 * is the namespace's, the same from inside and outside. */
		if (fstatat(dir, vmp_jail_ns_names[i], &st, 0) < 0)
			return -errno;
		ino[i] = st.st_ino;
	}
	return 0;
}

/* An empty, read-only tmpfs becomes "/": the host filesystem is gone from
 * this mount namespace (the old root is detached, not just hidden). */
static int pivot_to_empty(struct hatch_err *err)
{
	/* Our copy of the host's mounts must not propagate back to the host
	 * (or from it: a later host mount would appear in here). */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "make / private");
	/* Mounted over /tmp of *our* copy of the tree; any directory would do. */
	if (mount("hatchery-jail", "/tmp", "tmpfs",
		  MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  "size=4k,nr_inodes=2,mode=0555") < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "mount tmpfs");
	if (chdir("/tmp") < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "chdir to new root");
	/* pivot_root(".", ".") stacks the old root on top of the new one;
	 * detaching "." then removes it. No put_old directory is needed, so
	 * the new root can be read-only from the start. */
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "pivot_root");
	if (umount2(".", MNT_DETACH) < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "detach old root");
	if (chdir("/") < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "chdir /");
	return 0;
}

/* The bounding set, by PR_CAPBSET_READ (no /proc needed): EINVAL past
 * the last capability the kernel knows. */
static uint64_t bounding_set(void)
{
	uint64_t bnd = 0;
	for (int c = 0; c < 64; c++) {
		int b = prctl(PR_CAPBSET_READ, c, 0, 0, 0);
		if (b < 0)
			break;
		if (b)
			bnd |= 1ull << c;
	}
	return bnd;
}

int vmp_jail_drop_bounding(struct hatch_err *err)
{
	if (capng_get_caps_process() < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "capng_get_caps_process");
	/* Only the bounding set: the supervisor keeps its own capabilities. */
	capng_clear(CAPNG_SELECT_BOUNDS);
	if (capng_apply(CAPNG_SELECT_BOUNDS) < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "clear the bounding set");
	uint64_t left = bounding_set();
	if (left)
		return hatch_err_set(err, E_INTERNAL, 0,
				     "bounding set not empty after the drop: %#llx",
				     (unsigned long long)left);
	return 0;
}

/* uid/gid, no supplementary groups, no capabilities in any set. libcap-ng
 * does it in the order that works: keep CAP_SETUID/SETGID/SETPCAP across
 * the id change, drop the bounding set and ambient set while CAP_SETPCAP is
 * still there, then clear everything. */
static int drop_privileges(const struct vmp_jail_config *cfg, struct hatch_err *err)
{
	/* libcap-ng's state is per process and names the pid its capget/
	 * capset calls act on; a fork inherits the supervisor's (from
	 * vmp_jail_drop_bounding), and capset on another pid is EPERM. */
	capng_setpid((int)syscall(SYS_gettid));
	capng_clear(CAPNG_SELECT_ALL);
	bool userns = cfg->flags & VMP_JAIL_USERNS;
	/* In a user namespace with an unprivileged map, setgroups is denied
	 * (the supervisor wrote "deny"): the groups cannot be dropped. */
	int flags = CAPNG_CLEAR_AMBIENT | (userns ? 0 : CAPNG_DROP_SUPP_GRP);
	/* Clearing the bounding set costs one prctl and one commit_creds per
	 * capability, after libcap-ng has read the whole state again (with
	 * /proc gone: ~120 more prctls): ~110 us of the child's ~135 us here.
	 * hatcheryd empties its own bounding set once at start-up
	 * (vmp_jail_drop_bounding) and every fork inherits it empty; whoever
	 * did not (the unit tests) takes the slow path. capture_self checks
	 * the outcome either way. */
	if (bounding_set())
		flags |= CAPNG_CLEAR_BOUNDING;
	int r = capng_change_id((int)cfg->uid, (int)cfg->gid, flags);
	if (r < 0)
		return hatch_err_set(err, E_INTERNAL, errno,
				     "capng_change_id(%u, %u) failed (%d)",
				     cfg->uid, cfg->gid, r);
	/* Belt and braces: whatever libcap-ng did, check the result with the
	 * kernel's own answers before going on. */
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0 ||
	    ru != cfg->uid || eu != cfg->uid || su != cfg->uid ||
	    rg != cfg->gid || eg != cfg->gid || sg != cfg->gid ||
	    (!userns && getgroups(0, NULL) != 0))
		return hatch_err_set(err, E_INTERNAL, 0, "credentials not as set");
	return 0;
}

static uint64_t rlim_of(int res)
{
	struct rlimit rl;
	if (getrlimit(res, &rl) < 0)
		return 0;
	return rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
}

/* The jail as seen from the inside, by syscalls only. */
static int capture_self(struct vmp_jail_info *info, struct hatch_err *err)
{
	getresuid(&info->ruid, &info->euid, &info->suid);
	getresgid(&info->rgid, &info->egid, &info->sgid);
	info->ngroups = getgroups(0, NULL);
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d) < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "capget");
	info->cap_eff = d[0].effective | (uint64_t)d[1].effective << 32;
	info->cap_prm = d[0].permitted | (uint64_t)d[1].permitted << 32;
	info->cap_inh = d[0].inheritable | (uint64_t)d[1].inheritable << 32;
	info->cap_bnd = bounding_set();
	info->cap_amb = 0;
	for (int c = 0; c < 64; c++) {
		int a = prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, c, 0, 0);
		if (a < 0)
			break; /* EINVAL past the last capability */
		if (a)
			info->cap_amb |= 1ull << c;
	}
	info->no_new_privs = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
	info->rlim_nofile = rlim_of(RLIMIT_NOFILE);
	info->rlim_nproc = rlim_of(RLIMIT_NPROC);
	info->rlim_fsize = rlim_of(RLIMIT_FSIZE);
	info->rlim_core = rlim_of(RLIMIT_CORE);
	info->rlim_as = rlim_of(RLIMIT_AS);
	if (info->cap_eff || info->cap_prm || info->cap_inh || info->cap_amb ||
	    info->cap_bnd)
		return hatch_err_set(err, E_INTERNAL, 0,
				     "capabilities left after the drop: eff %#llx "
				     "bnd %#llx",
				     (unsigned long long)info->cap_eff,
				     (unsigned long long)info->cap_bnd);
	return 0;
}

static int set_limit(int res, const char *name, uint64_t v, struct hatch_err *err)
{
	struct rlimit rl = { .rlim_cur = v, .rlim_max = v };
	if (setrlimit(res, &rl) < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "setrlimit %s %llu",
				     name, (unsigned long long)v);
	return 0;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int vmp_jail_enter(const struct vmp_jail_config *cfg, struct vmp_jail_info *info,
		   struct hatch_err *err)
{
	memset(info, 0, sizeof(*info));
	uint64_t t0 = now_ns();
	/* The supervisor's environment is none of the guest's business. */
	clearenv();

	uint64_t vm_bytes = 0;
	if (capture_proc(info, &vm_bytes, err) < 0)
		return -1;
	uint64_t t1 = now_ns();
	if (pivot_to_empty(err) < 0)
		return -1;
	uint64_t t2 = now_ns();
	if (drop_privileges(cfg, err) < 0)
		return -1;
	info->creds_ns = now_ns() - t2;
	/* A change of euid clears PR_SET_PDEATHSIG: arm it again, then make
	 * sure the supervisor did not die in between (it would never come). */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "PR_SET_PDEATHSIG");
	if (cfg->parent_pidfd >= 0) {
		struct pollfd p = { .fd = cfg->parent_pidfd, .events = POLLIN };
		if (poll(&p, 1, 0) != 0)
			return hatch_err_set(err, E_INTERNAL, 0, "supervisor is gone");
	}

	/* NPROC 2 for now: this process and the worker task KVM creates for
	 * the VM at its first KVM_RUN, which kernels >= 6.13 charge to the
	 * caller's RLIMIT_NPROC (at 0 or 1 that KVM_RUN fails with EAGAIN
	 * there). vmproc makes that first run at once, with immediate_exit
	 * (vmp_vm_first_run), before it serves anything, and then lowers the
	 * limit to 1 (vmp_jail_lower_nproc): on 6.1, whose worker is a
	 * kthread charged to nobody, 2 would leave this uid one fork.
	 * FSIZE: no file grows beyond a snapshot of this VM (a Save writes
	 * the client's file; 0 when the pool gives none). */
	if (set_limit(RLIMIT_NOFILE, "NOFILE", cfg->nofile, err) < 0 ||
	    set_limit(RLIMIT_NPROC, "NPROC", VMP_JAIL_NPROC, err) < 0 ||
	    set_limit(RLIMIT_FSIZE, "FSIZE", cfg->fsize, err) < 0 ||
	    set_limit(RLIMIT_CORE, "CORE", 0, err) < 0)
		return -1;
	if (!(cfg->flags & VMP_JAIL_NO_AS_LIMIT) &&
	    set_limit(RLIMIT_AS, "AS", vm_bytes + cfg->as_extra, err) < 0)
		return -1;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "PR_SET_NO_NEW_PRIVS");
	if (capture_self(info, err) < 0)
		return -1;
	uint64_t t3 = now_ns();
	info->proc_ns = t1 - t0;
	info->pivot_ns = t2 - t1;
	info->limits_ns = t3 - t2 - info->creds_ns;
	info->jailed = true;
	if (!cfg->filter)
		return 0;

	if (cfg->filter->mode == VMP_SECCOMP_KILL) {
		report_fd = cfg->report_fd;
		struct sigaction sa = { .sa_sigaction = on_sigsys,
					.sa_flags = SA_SIGINFO };
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGSYS, &sa, NULL) < 0)
			return hatch_err_set(err, E_INTERNAL, errno, "sigaction SIGSYS");
	}
	/* Last, and nothing but the allowlist from here on. */
	struct sock_fprog prog = { .len = cfg->filter->len,
				   .filter = cfg->filter->insns };
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "load seccomp filter");
	info->seccomp_mode = SECCOMP_MODE_FILTER;
	info->seccomp_ns = now_ns() - t3;
	return 0;
}

int vmp_jail_lower_nproc(struct vmp_jail_info *info, struct hatch_err *err)
{
	/* glibc's setrlimit is prlimit64(0, RLIMIT_NPROC, new, NULL): the one
	 * form of it the filter lets through. Lowering needs no privilege,
	 * and hard = 1 below the count (2 on new kernels) is allowed: the
	 * limit only stops new tasks. */
	if (set_limit(RLIMIT_NPROC, "NPROC", VMP_JAIL_NPROC_RUNNING, err) < 0)
		return -1;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NPROC, &rl) < 0)
		return hatch_err_set(err, E_INTERNAL, errno, "getrlimit NPROC");
	if (rl.rlim_cur != VMP_JAIL_NPROC_RUNNING || rl.rlim_max != VMP_JAIL_NPROC_RUNNING)
		return hatch_err_set(err, E_INTERNAL, 0,
				     "RLIMIT_NPROC is %llu/%llu after lowering it to %d",
				     (unsigned long long)rl.rlim_cur,
				     (unsigned long long)rl.rlim_max, VMP_JAIL_NPROC_RUNNING);
	if (info)
		info->rlim_nproc = rl.rlim_cur;
	return 0;
}
