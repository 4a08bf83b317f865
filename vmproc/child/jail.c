/* jail.c (child side) - the jail's child half: pivot_root, credentials,
 * capabilities, rlimits, no_new_privs and loading the seccomp filter, in
 * the freshly forked child; and the SIGSYS handler that reports a refused
 * syscall. The namespaces came with clone3 (host/jail.c); the allowlist is
 * host/seccomp.c. See jail.h for the order and docs/security.md for what
 * each layer stops. */
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/capability.h>
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
#include <ucontext.h>
#include <unistd.h>

#include <cap-ng.h>

#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"
#include "child/jail.h"
#include "hatchery/clock.h"

#define E_INTERNAL HATCHERY__V1__ERROR_CODE__INTERNAL

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
uint64_t vmp_jail_bounding_set(void)
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
	if (vmp_jail_bounding_set())
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
	info->cap_bnd = vmp_jail_bounding_set();
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

int vmp_jail_enter(const struct vmp_jail_config *cfg, struct vmp_jail_info *info,
		   struct hatch_err *err)
{
	memset(info, 0, sizeof(*info));
	uint64_t t0 = hatch_now_ns();
	/* The supervisor's environment is none of the guest's business. */
	clearenv();

	uint64_t vm_bytes = 0;
	if (capture_proc(info, &vm_bytes, err) < 0)
		return -1;
	uint64_t t1 = hatch_now_ns();
	if (pivot_to_empty(err) < 0)
		return -1;
	uint64_t t2 = hatch_now_ns();
	if (drop_privileges(cfg, err) < 0)
		return -1;
	info->creds_ns = hatch_now_ns() - t2;
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
	    set_limit(RLIMIT_NPROC, "NPROC", cfg->nproc ? cfg->nproc : VMP_JAIL_NPROC, err) < 0 ||
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
	uint64_t t3 = hatch_now_ns();
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
	info->seccomp_ns = hatch_now_ns() - t3;
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
