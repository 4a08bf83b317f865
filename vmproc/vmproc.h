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
 * stderr, the control socket, /dev/kvm and the supervisor's pidfd before it
 * does anything else (the supervisor's other sockets must not leak into a
 * VM); stdin and stdout become /dev/null. Then it enters the jail
 * (jail.h) and only then builds its VM.
 */
#ifndef HATCHERY_VMPROC_H
#define HATCHERY_VMPROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "jail.h"
#include "kvm.h"

struct vmp_spawn {
	int ctrl_fd;                     /* child end of the control socketpair */
	int vm_fd;                       /* child end of the VM socket; its peer
	                                  * goes to the client on lease */
	const struct vmp_kvm_host *kvm;  /* probed by the supervisor; kvm_fd inherited */
	const char *pool;
	const char *kind;
	/* kind "booted": the guest ELF, read and validated by the supervisor
	 * at start-up; the child has it through the fork. NULL otherwise. */
	const uint8_t *guest_elf;
	size_t guest_elf_len;
	/* kind "restore": the snapshot, opened and checked by the supervisor
	 * at start-up (inherited, at SNAP_FD in the child), its path for
	 * messages, its header CRC32C and size then (a file changed since is
	 * refused), and whether to restore before ready or on lease. -1 and
	 * NULL otherwise. */
	int snap_fd;
	const char *snap_path;
	uint32_t snap_header_crc;
	uint64_t snap_size;
	bool prerestore;
	/* reuse = snapshot: after a clean lease, restore the snapshot over
	 * this VM and serve again (ChildReset / SupVmSocket) instead of
	 * exiting. */
	bool reuse;
	uint64_t child_id;
	unsigned memory_mib;
	unsigned vcpus;
	/* The supervisor's own pidfd (inherited): readable once it has
	 * exited. For the PR_SET_PDEATHSIG race check, which getppid() cannot
	 * do in a new pid namespace (it returns 0 there). */
	int supervisor_pidfd;
	int devnull_fd;                  /* becomes the child's stdin and stdout */
	/* NULL: no jail (hatcheryd --no-jail). Not owned; the child copies
	 * what it needs before the jail. */
	const struct vmp_jail_config *jail;
	const char *seccomp_action;      /* "kill"/"log", for VmInfoReply */
	uint64_t t_fork;                 /* CLOCK_MONOTONIC ns, taken before fork */
};

/* In the child, right after fork. Never returns. */
__attribute__((noreturn)) void vmp_child_main(const struct vmp_spawn *s);

#endif
