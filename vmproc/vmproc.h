/* vmproc.h - vmproc's public face: everything hatcheryd calls.
 *
 * vmproc is one VM per process. The supervisor uses it in two places, and
 * this header is all it includes of it:
 *
 *   host side, in hatcheryd (host/):
 *     once at start-up    vmp_kvm_host_open()        probe /dev/kvm (host/kvm.c)
 *                         vmp_kvm_probe_kernel_mode() with a linux pool (host/probe.c)
 *                         vmp_jail_filter_build()    per seccomp mode (host/seccomp.c)
 *                         vmp_jail_drop_bounding()   with root, or
 *                         vmp_jail_probe_rootless()  without (host/jail.c)
 *                         vmp_guest_elf_parse()      a booted pool's guest (runtime/guest_elf.c)
 *                         vmp_snap_host_cpu()        what a restore pool's snapshot must match
 *     per child           fill a struct vmp_jail_config and a struct vmp_spawn (pure data)
 *                         vmp_jail_clone3()          the fork, born in the namespaces
 *                         vmp_jail_map_ids()         rootless: the child's id maps
 *                         vmp_jail_ns_inodes()       for SupHello
 *     when one died       vmp_jail_syscall_name()    name a seccomp kill in the log
 *
 *   child side, in the freshly forked child: vmp_child_main(), which never
 *   returns (child/). The child closes every fd but stderr, the control
 *   socket, /dev/kvm and the supervisor's pidfd before it does anything else
 *   (the supervisor's other sockets must not leak into a VM), enters the
 *   jail (child/jail.c), builds its VM (kvm/), boots or restores a guest
 *   (runtime/, vmsnap.c), reports Ready (or ChildFailed with a message) on
 *   its control channel, serves health pings until it is leased, then the
 *   client's VM socket until the client releases it or hangs up. Then it
 *   exits, or with reuse = snapshot resets to the pool's snapshot and
 *   serves the next lease. Being a freshly forked child, it is the one
 *   place allowed to exit on error.
 *
 * Nothing on the host side exits: functions return -1 with err (or
 * -errno where it says so).
 *
 * Ownership: struct vmp_kvm_host owns its fd and tables (vmp_kvm_host_close);
 * a filter is its builder's (host/seccomp.h); vmp_jail_config and vmp_spawn
 * borrow everything they point to, and the child copies what it needs
 * before the jail.
 */
#ifndef HATCHERY_VMPROC_H
#define HATCHERY_VMPROC_H

#include <linux/kvm.h>
#include <linux/sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hatchery/error.h"
#include "host/seccomp.h"
#include "runtime/guest_elf.h"
#include "snapshot.h"

/* ---- /dev/kvm, probed once (host/kvm.c) ---------------------------------- */

/* Opened and probed once in the supervisor at start-up: the API version,
 * the capabilities every child needs and the host's supported CPUID, so
 * that a configuration the machine cannot satisfy fails before anything
 * forks, and children inherit the answers instead of asking again. */
struct vmp_kvm_host {
	int kvm_fd;                 /* /dev/kvm, O_CLOEXEC; inherited by children */
	int api_version;
	int vcpu_mmap_size;         /* size of each vCPU's kvm_run mapping */
	int max_vcpus;              /* KVM_CAP_MAX_VCPUS (or NR_VCPUS) */
	struct kvm_cpuid2 *cpuid;   /* owned; KVM_GET_SUPPORTED_CPUID */
	/* owned; KVM_GET_MSR_INDEX_LIST, a system ioctl: read here because
	 * a child closes /dev/kvm once its VM is built, and a Save needs the
	 * list of MSRs to read from each vCPU. */
	struct kvm_msr_list *msr_list;
	/* The type the guest runtime loads TR with, 9 or 11: decided once,
	 * from the CPU vendor KVM reports (see vmp_kvm_tr_type in host/kvm.c). */
	uint8_t tr_type;
};

/* TR's type for a 64-bit TSS on a host whose CPUID vendor string (leaf 0,
 * EBX EDX ECX) is `vendor`: 9 (available) on AMD and Hygon, whose VMRUN
 * accepts it, 11 (busy) everywhere else, as Intel's VM entry requires.
 * Pure; the reasons are at its definition. */
uint8_t vmp_kvm_tr_type(const char vendor[12]);

/* Open and probe `path` (normally "/dev/kvm"). On failure err says what is
 * missing, e.g. "/dev/kvm: Permission denied". */
int vmp_kvm_host_open(struct vmp_kvm_host *h, const char *path,
		      struct hatch_err *err);

/* The same on an fd already open on the KVM device (hatcheryd --kvm-fd:
 * handed down by a launcher that may open it when our uid may not). Takes
 * ownership of fd, also on failure; `path` names it in messages. */
int vmp_kvm_host_open_fd(struct vmp_kvm_host *h, int fd, const char *path,
			 struct hatch_err *err);
void vmp_kvm_host_close(struct vmp_kvm_host *h);

/* Can guest kernel code (CPL 0) run here at hardware speed, as a Linux
 * guest needs? Runs 400k real-mode instructions in a throwaway VM in a
 * forked process (host/probe.c says why not a name check). Returns 0 (and
 * the run's time in *run_ns if not NULL), or -1 with err saying what this
 * host's KVM did instead (refused, emulation failure, far too slow).
 * FAILED_PRECONDITION. */
int vmp_kvm_probe_kernel_mode(const struct vmp_kvm_host *h, uint64_t *run_ns,
			      struct hatch_err *err);

/* The host CPU as a snapshot records it: CPUID vendor and signature, and
 * the hash of the supervisor-probed supported CPUID (h->cpuid). */
void vmp_snap_host_cpu(const struct vmp_kvm_host *h, struct snap_cpu *c);

/* ---- the jail's supervisor half (host/jail.c) ----------------------------- */

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

/* Flags for vmp_jail_config.flags. */
#define VMP_JAIL_NO_AS_LIMIT 0x1u /* sanitizer builds: ASan reserves TiBs */
/* Rootless: the child is in its own user namespace (VMP_JAIL_ROOTLESS),
 * where uid/gid are the one id the supervisor mapped, its own. setgroups
 * is denied there (an unprivileged map requires it), so the supplementary
 * groups the supervisor had cannot be dropped; they are reported. The
 * maps must be written before vmp_jail_enter (the child waits for them). */
#define VMP_JAIL_USERNS 0x2u

/* RLIMIT_NPROC in the jail, in two steps. vmp_jail_enter sets 2: the child
 * and the worker task that KVM creates at the VM's first KVM_RUN (see
 * vmp_vm_first_run in kvm/kvm.h), which kernels >= 6.13 (a vhost_task)
 * charge to the caller's uid and check against this limit. Older kernels
 * (6.1 LTS) make a kthread instead, charged to nobody, so there the uid
 * holds one process and 2 would let it fork once. Hence
 * vmp_jail_lower_nproc right after the first run: 1, soft and hard, and a
 * fork fails with EAGAIN on both (the check is count >= limit: 2 >= 1,
 * 1 >= 1). */
#define VMP_JAIL_NPROC 2
#define VMP_JAIL_NPROC_RUNNING 1
/* A Linux child also runs a thread per vCPU, each a task of its uid. */
#define VMP_JAIL_NPROC_LINUX(vcpus) (VMP_JAIL_NPROC + (vcpus))

/* What the child's jail is to be, filled by the supervisor per child. */
struct vmp_jail_config {
	uid_t uid;                /* jail_uid_base + slot; rootless: our euid */
	gid_t gid;                /* same number as uid; rootless: our egid */
	unsigned nofile;          /* RLIMIT_NOFILE, soft = hard */
	/* RLIMIT_NPROC until the child's tasks exist (its threads and, on new
	 * kernels, KVM's worker), then vmp_jail_lower_nproc makes it 1.
	 * 0: VMP_JAIL_NPROC (a one-thread child). A Linux child has a thread
	 * per vCPU: VMP_JAIL_NPROC_LINUX(vcpus). */
	unsigned nproc;
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

/* ---- the child ------------------------------------------------------------ */

/* What one child is to be: filled by the supervisor before the fork, read
 * by the child after it. */
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
	/* A Linux machine (vCPU threads, devices, the agent): kind "linux",
	 * or kind "restore" with a snapshot of a Linux guest. */
	bool linux_machine;
	/* kind "linux": the kernel (bzImage) and initramfs, read by the
	 * supervisor at start-up (the child has them through the fork and
	 * copies them into guest RAM), words to append to the kernel's
	 * command line, and the boot's deadline. NULL/0 otherwise. */
	const uint8_t *kernel, *initrd;
	size_t kernel_len, initrd_len;
	const char *cmdline_extra;
	unsigned boot_timeout_ms;
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
	/* -1: no disk; else the VM's vhost-user connection to its disk
	 * backend (a connected SOCK_STREAM socket; DISK_FD in the child).
	 * Only for a Linux machine that is not restored from a snapshot: the
	 * disk is virtio-mmio device 1 and guest RAM becomes a memfd shared
	 * with the backend (docs/vhost.md, "The frontend"). */
	int disk_fd;
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

/* In the child, right after fork (child/main.c). Never returns. */
__attribute__((noreturn)) void vmp_child_main(const struct vmp_spawn *s);

#endif
