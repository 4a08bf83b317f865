/* seccomp.h - the seccomp mode and the compiled filter.
 *
 * The allowlist itself is host/seccomp.c, one line per syscall with its
 * reason. The supervisor compiles it once per mode at start-up
 * (vmp_jail_filter_build, ~ms, libseccomp) and each child only loads the
 * result in vmp_jail_enter (one prctl, ~0.2 ms for our size): building it
 * per child would cost more than the whole rest of the jail.
 *
 * Small and self-contained on purpose: supervisor/config.h includes it for
 * enum vmp_seccomp_mode, the one type for `seccomp = kill|log`.
 *
 * Ownership: a filter is owned by whoever built it and freed with
 * vmp_jail_filter_free(); a struct vmp_jail_config borrows it.
 */
#ifndef HATCHERY_VMP_SECCOMP_H
#define HATCHERY_VMP_SECCOMP_H

#include <linux/filter.h>
#include <linux/sched.h>
#include <stddef.h>
#include <stdint.h>

#include "hatchery/error.h"

enum vmp_seccomp_mode {
	VMP_SECCOMP_KILL = 0, /* default action: trap, report, die by SIGSYS */
	VMP_SECCOMP_LOG,      /* default action: log to the audit log, allow */
	VMP_SECCOMP__N
};

/* Which allowlist: a kernel-less child is one thread that runs its guest
 * in calls; a Linux child runs a vCPU thread per vCPU and a device model
 * (eventfds, irqfd/ioeventfd, the i8042 and UART lines), so its list is
 * the kernel-less one plus the lines of `linux_extra` in seccomp.c. Each
 * child loads the filter of its guest kind only.
 *
 * The vhost-user block backend (vhost/backend_child.h) is not a child of
 * either kind and shares neither list: `vhost_blk_allowed` in seccomp.c,
 * its own short one (no ioctl at all, no prlimit64, no clock). */
enum vmp_filter_profile {
	VMP_FILTER_KERNELLESS = 0,
	VMP_FILTER_LINUX,
	VMP_FILTER_VHOST_BLK,
	VMP_FILTER__N
};

/* A compiled classic-BPF program, ready for SECCOMP_SET_MODE_FILTER. */
struct vmp_jail_filter {
	struct sock_filter *insns; /* owned */
	unsigned short len;
	enum vmp_seccomp_mode mode;
	enum vmp_filter_profile profile;
};

/* The clone(2) flags glibc's pthread_create passes: the only clone the
 * Linux profile allows (a thread in our own process, nothing else). */
#define VMP_JAIL_THREAD_CLONE_FLAGS                                            \
	(CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |    \
	 CLONE_SYSVSEM | CLONE_SETTLS | CLONE_PARENT_SETTID |                  \
	 CLONE_CHILD_CLEARTID)

/* Compile the allowlist of `profile`. Returns 0, or -1 with err. */
int vmp_jail_filter_build(enum vmp_seccomp_mode mode, enum vmp_filter_profile profile,
			  struct vmp_jail_filter *out, struct hatch_err *err);
void vmp_jail_filter_free(struct vmp_jail_filter *f);

/* "socket" for (41, AUDIT_ARCH_X86_64); "syscall 999" if unknown. Writes
 * into buf and returns it. For the supervisor's log of a SIGSYS death. */
const char *vmp_jail_syscall_name(int nr, uint32_t arch, char *buf, size_t len);

/* KVM ioctls the filter lets through, for tests and docs. */
extern const unsigned long vmp_jail_kvm_ioctls[];
extern const unsigned vmp_jail_n_kvm_ioctls;

#endif
