/* vmproc.h - what a child of hatcheryd does after fork.
 *
 * The supervisor enters vmproc through exactly one function, in the freshly
 * forked child: vmp_child_main(). It never returns. The child builds its VM,
 * reports Ready (or ChildFailed with a message) on its control channel, then
 * serves health pings until it is leased, and after that the client's VM
 * socket until the client releases it or hangs up; then it exits. Being a
 * freshly forked child, it is the one place allowed to exit on error.
 *
 * Ownership: the child owns everything it inherited; it closes every fd but
 * stdin/stdout/stderr, the control socket and /dev/kvm before it does
 * anything else (the supervisor's other sockets must not leak into a VM).
 */
#ifndef HATCHERY_VMPROC_H
#define HATCHERY_VMPROC_H

#include <stdint.h>
#include <sys/types.h>

#include "kvm.h"

struct vmp_spawn {
	int ctrl_fd;                     /* child end of the control socketpair */
	const struct vmp_kvm_host *kvm;  /* probed by the supervisor; kvm_fd inherited */
	const char *pool;
	const char *kind;
	uint64_t child_id;
	unsigned memory_mib;
	unsigned vcpus;
	pid_t supervisor_pid;            /* for the PR_SET_PDEATHSIG race check */
	uint64_t t_fork;                 /* CLOCK_MONOTONIC ns, taken before fork */
};

/* In the child, right after fork. Never returns. */
__attribute__((noreturn)) void vmp_child_main(const struct vmp_spawn *s);

#endif
