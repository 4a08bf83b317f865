/* jail.h - the jail every vmproc child lives in.
 *
 * Life cycle, split between the two processes:
 *
 *   supervisor, once at start-up:   vmp_jail_filter_build() per seccomp mode
 *   supervisor, per child:          fill a struct vmp_jail_config (pure data)
 *                                   vmp_jail_clone3() -> namespaces at fork
 *   child, right after fd hygiene:  vmp_jail_enter() -> never un-jailed again
 *   child, after the VM's first run: vmp_jail_lower_nproc()
 *
 * The namespaces (mount, pid, net, ipc, uts, cgroup) come from the clone3
 * flags, VMP_JAIL_NS_FLAGS; everything else is vmp_jail_enter(), in this
 * order: capture the facts only /proc can tell from inside (cgroup,
 * address-space size), pivot_root into an empty read-only tmpfs, drop to the
 * slot's uid/gid with no supplementary groups and no capabilities in any set
 * (libcap-ng), resource limits, no_new_privs, and the seccomp filter last.
 *
 * The filter is compiled once by the supervisor with libseccomp
 * (vmp_jail_filter_build, ~ms) and only *loaded* in each child (one prctl,
 * ~0.2 ms for our size): building it per child would cost more than the
 * whole rest of the jail.
 *
 * Ownership: a vmp_jail_config borrows its filter (not owned); the filter
 * is owned by whoever built it and freed with vmp_jail_filter_free().
 * Nothing here exits: vmp_jail_enter returns -1 with a message, and the
 * caller (a freshly forked child) reports it and exits.
 */
#ifndef HATCHERY_VMP_JAIL_H
#define HATCHERY_VMP_JAIL_H

/* RLIMIT_NPROC in the jail, in two steps. vmp_jail_enter sets 2: the child
 * and the worker task that KVM creates at the VM's first KVM_RUN (see
 * vmp_vm_first_run in kvm.h), which kernels >= 6.13 (a vhost_task) charge to
 * the caller's uid and check against this limit. Older kernels (6.1 LTS)
 * make a kthread instead, charged to nobody, so there the uid holds one
 * process and 2 would let it fork once. Hence vmp_jail_lower_nproc right
 * after the first run: 1, soft and hard, and a fork fails with EAGAIN on
 * both (the check is count >= limit: 2 >= 1, 1 >= 1). */
#define VMP_JAIL_NPROC 2
#define VMP_JAIL_NPROC_RUNNING 1

#include <linux/filter.h>
#include <linux/sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "hatchery/error.h"

/* Namespaces every jailed child gets at clone time. With root, no user
 * namespace: children get real, unprivileged host uids (one per slot).
 * Rootless (hatcheryd without root), a user namespace too, in which the
 * supervisor maps exactly one id, its own (vmp_jail_map_ids). */
#define VMP_JAIL_NS_FLAGS                                                      \
	(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC |            \
	 CLONE_NEWUTS | CLONE_NEWCGROUP)

enum vmp_jail_kind {
	VMP_JAIL_NONE = 0,    /* --no-jail: no namespaces */
	VMP_JAIL_ROOT,        /* VMP_JAIL_NS_FLAGS */
	VMP_JAIL_ROOTLESS,    /* VMP_JAIL_NS_FLAGS | CLONE_NEWUSER */
};

enum vmp_seccomp_mode {
	VMP_SECCOMP_KILL = 0, /* default action: trap, report, die by SIGSYS */
	VMP_SECCOMP_LOG,      /* default action: log to the audit log, allow */
	VMP_SECCOMP__N
};

/* A compiled classic-BPF program, ready for SECCOMP_SET_MODE_FILTER. */
struct vmp_jail_filter {
	struct sock_filter *insns; /* owned */
	unsigned short len;
	enum vmp_seccomp_mode mode;
};

/* Compile the allowlist (jail.c, one line per syscall with its reason).
 * Returns 0, or -1 with err. */
int vmp_jail_filter_build(enum vmp_seccomp_mode mode,
			  struct vmp_jail_filter *out, struct hatch_err *err);
void vmp_jail_filter_free(struct vmp_jail_filter *f);

/* "socket" for (41, AUDIT_ARCH_X86_64); "syscall 999" if unknown. Writes
 * into buf and returns it. */
const char *vmp_jail_syscall_name(int nr, uint32_t arch, char *buf, size_t len);

/* KVM ioctls the filter lets through, for tests and docs. */
extern const unsigned long vmp_jail_kvm_ioctls[];
extern const unsigned vmp_jail_n_kvm_ioctls;

/* Flags for vmp_jail_config.flags. */
#define VMP_JAIL_NO_AS_LIMIT 0x1u /* sanitizer builds: ASan reserves TiBs */
/* Rootless: the child is in its own user namespace (VMP_JAIL_ROOTLESS),
 * where uid/gid are the one id the supervisor mapped, its own. setgroups
 * is denied there (an unprivileged map requires it), so the supplementary
 * groups the supervisor had cannot be dropped; they are reported. The
 * maps must be written before vmp_jail_enter (the child waits for them). */
#define VMP_JAIL_USERNS 0x2u

struct vmp_jail_config {
	uid_t uid;                /* jail_uid_base + slot; rootless: our euid */
	gid_t gid;                /* same number as uid; rootless: our egid */
	unsigned nofile;          /* RLIMIT_NOFILE, soft = hard */
	uint64_t as_extra;        /* RLIMIT_AS = current size + this */
	uint64_t fsize;           /* RLIMIT_FSIZE: a Save's file at most */
	const struct vmp_jail_filter *filter; /* NULL: no seccomp (tests of the
						 layers below it) */
	unsigned flags;
	/* Where the SIGSYS handler reports a forbidden syscall (a
	 * ChildMsg{seccomp_violation}); -1: nowhere. */
	int report_fd;
	/* The supervisor's pidfd, or -1. setresuid clears PR_SET_PDEATHSIG,
	 * so it is armed again afterwards and this says whether the parent
	 * died before that. */
	int parent_pidfd;
};

enum vmp_jail_ns { VMP_NS_MNT, VMP_NS_PID, VMP_NS_NET, VMP_NS_IPC, VMP_NS_UTS,
		   VMP_NS_CGROUP, VMP_NS_USER, VMP_NS__N };
extern const char *const vmp_jail_ns_names[VMP_NS__N]; /* "mnt", "pid", ... */

/* The jail as the child itself sees it, for VmInfoReply. The cgroup is
 * captured just before pivot_root (no /proc after it); the rest by
 * syscalls after the limits are set, just before seccomp. ns_ino is not
 * filled by vmp_jail_enter: the supervisor reads it from outside
 * (vmp_jail_ns_inodes) and the caller copies it in. */
struct vmp_jail_info {
	bool jailed;
	uint64_t ns_ino[VMP_NS__N];
	char cgroup[256];         /* the "0::" line of /proc/self/cgroup */
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid;
	int ngroups;              /* supplementary groups */
	uint64_t cap_eff, cap_prm, cap_inh, cap_amb, cap_bnd;
	int no_new_privs;
	int seccomp_mode;         /* 0 none, 2 filter (as in /proc Seccomp:) */
	uint64_t rlim_nofile, rlim_nproc, rlim_fsize, rlim_core, rlim_as;
	/* Time spent in each step of vmp_jail_enter, ns. */
	uint64_t proc_ns, pivot_ns, creds_ns, limits_ns, seccomp_ns;
};

/* clone3 with CLONE_PIDFD, the namespaces of `kind` and CLONE_INTO_CGROUP
 * when cgroup_fd >= 0. Returns as fork() does; *pidfd is set in the
 * parent. */
pid_t vmp_jail_clone3(enum vmp_jail_kind kind, int cgroup_fd, int *pidfd);

/* Rootless, in the parent right after vmp_jail_clone3(VMP_JAIL_ROOTLESS):
 * map exactly one uid and one gid in the child's user namespace, our own
 * euid/egid to the same numbers inside ("deny" to setgroups first, as the
 * kernel requires of an unprivileged writer). Returns 0 or -errno. */
int vmp_jail_map_ids(pid_t pid, uid_t uid, gid_t gid);

/* Rootless start-up check: can this process create a jailed child with a
 * user namespace and map its ids into it? Tries it once (a child that
 * exits at once). Returns 0, or -1 with err saying what the kernel
 * refused. */
int vmp_jail_probe_rootless(struct hatch_err *err);

/* The inode numbers of process `pid`'s namespaces (/proc/PID/ns/X, in
 * vmp_jail_ns_names order), read from outside: the supervisor does this
 * right after clone3, on its own CPU while the child goes on, and sends
 * them in SupHello (the child has no /proc after pivot_root). Returns 0
 * or -errno. */
int vmp_jail_ns_inodes(pid_t pid, uint64_t ino[VMP_NS__N]);

/* Empty the calling process's capability bounding set (libcap-ng), once,
 * in the supervisor at start-up. It never execs, so the set is of no use
 * to it, and every child it forks inherits it empty: clearing it in each
 * child costs ~0.1 ms (41 prctls, each a credential change, and libcap-ng
 * reading the whole state first). The supervisor's own capabilities are
 * untouched. Returns 0, or -1 with err. */
int vmp_jail_drop_bounding(struct hatch_err *err);

/* In the child, after fd hygiene, with /dev/kvm and the control socket
 * open. Fills *info. Returns 0, or -1 with err: the caller must then exit,
 * since the process is half-jailed. */
int vmp_jail_enter(const struct vmp_jail_config *cfg, struct vmp_jail_info *info,
		   struct hatch_err *err);

/* In the jailed child, once its VM's first KVM_RUN is done (nothing after
 * it creates a task): RLIMIT_NPROC to VMP_JAIL_NPROC_RUNNING, soft and
 * hard, so it can never be raised again. Works under the seccomp filter
 * (prlimit64 on our own RLIMIT_NPROC is on the allowlist, nothing else of
 * it). info, if not NULL, gets the limit the kernel now holds. Returns 0,
 * or -1 with err: the caller must then exit. */
int vmp_jail_lower_nproc(struct vmp_jail_info *info, struct hatch_err *err);

#endif
