/* jail.h (child side) - entering the jail every vmproc child lives in.
 *
 * Life cycle, split between the two processes:
 *
 *   supervisor, once at start-up:   vmp_jail_filter_build() per seccomp mode
 *                                   (host/seccomp.c)
 *   supervisor, per child:          fill a struct vmp_jail_config (pure data)
 *                                   vmp_jail_clone3() -> namespaces at fork
 *                                   (host/jail.c; all in vmproc.h)
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
 * Nothing here exits: vmp_jail_enter returns -1 with a message, and the
 * caller (a freshly forked child) reports it and exits.
 */
#ifndef HATCHERY_VMP_JAIL_H
#define HATCHERY_VMP_JAIL_H

/* VMP_JAIL_NPROC and VMP_JAIL_NPROC_RUNNING: vmproc.h (the supervisor
 * sizes a Linux child's limit from them). */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "hatchery/error.h"
#include "vmproc.h"

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

/* The calling process's capability bounding set, by PR_CAPBSET_READ (no
 * /proc needed). Also host/jail.c's check after vmp_jail_drop_bounding. */
uint64_t vmp_jail_bounding_set(void);

#endif
