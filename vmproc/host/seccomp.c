/* seccomp.c - the seccomp allowlist, compiled once by the supervisor.
 *
 * This file is the allowlist: one line per syscall with its reason, and
 * the KVM ioctls by argument. vmp_jail_filter_build() compiles it with
 * libseccomp into classic BPF at start-up (once per mode); each child only
 * loads the result (child/jail.c, vmp_jail_enter). See docs/security.md
 * for what it stops and how the list was derived. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <seccomp.h>

#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"
#include "host/seccomp.h"

#define E_INTERNAL HATCHERY__V1__ERROR_CODE__INTERNAL

/* ---- the seccomp allowlist ---------------------------------------------
 *
 * Exactly the syscalls vmproc makes after vmp_jail_enter() returns, found
 * by reading child/, kvm/, runtime/, vmsnap.c and ipc/frame.c and confirmed with strace -f on a
 * jailed child through build, ready, health pings, lease, Info, release
 * (docs/security.md, "How the list was derived"). Growing it is a
 * deliberate act: one syscall per line, with the reason. */

/* KVM ioctls, by argument. The VM is built under the jail (see
 * docs/security.md for why), so the creation ioctls are here, and since
 * the guest runtime (runtime/) runs the vCPU, so are the four it needs. */
const unsigned long vmp_jail_kvm_ioctls[] = {
	KVM_CREATE_VM,              /* on /dev/kvm, once; /dev/kvm is closed after */
	KVM_SET_USER_MEMORY_REGION, /* guest RAM slots                             */
	KVM_CREATE_IRQCHIP,         /* in-kernel LAPIC/IOAPIC/PIC                  */
	KVM_CREATE_PIT2,            /* in-kernel PIT                               */
	KVM_CREATE_VCPU,            /* one per vCPU                                */
	KVM_SET_CPUID2,             /* the host's supported CPUID on each vCPU     */
	KVM_RUN,                    /* kvm/vcpu.c: boot, calls, heartbeats         */
	/* runtime/tables.c: start from KVM's own sregs (APIC base, hidden
	 * fields), then CPL 3 segments, GDT/IDT/TR, CR0/3/4 and EFER (enter the
	 * guest with no firmware), RIP = ELF entry and RSP = stack top */
	KVM_GET_SREGS, KVM_SET_SREGS, KVM_SET_REGS,
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
	{ SCMP_SYS(timer_settime), "kvm/vcpu.c: arm and disarm a call's deadline (the timer "
				   "was created before the jail)" },
	{ SCMP_SYS(rt_sigreturn), "kvm/vcpu.c: return from the deadline's SIGALRM handler, "
				  "which makes KVM_RUN return EINTR" },
	{ SCMP_SYS(lseek), "Load: the size of the guest ELF fd before mmap'ing it; "
			   "Save/Restore: the snapshot file's size" },
	{ SCMP_SYS(ftruncate), "Save: snap_write_fd sizes the client's file (bounded by "
			       "RLIMIT_FSIZE)" },
	{ SCMP_SYS(pwrite64), "Save: snap_write_fd writes header, sections and pages" },
	{ SCMP_SYS(munmap), "Restore: drop the snapshot's section view; free() of large "
			    "malloc chunks (the snapshot writer's extent list)" },
	{ SCMP_SYS(getrandom), "runtime/runtime.c: fresh seed bytes for the guest at boot and on "
			       "every Restore, so clones of one snapshot differ (32 "
			       "bytes; no fd, no path)" },
};

/* Linux guests (profile VMP_FILTER_LINUX) also need these: a thread per
 * vCPU (see the clone rule in vmp_jail_filter_build) and a device model
 * driven by eventfds. */
static const struct {
	int nr;
	const char *why;
} linux_extra[] = {
	{ SCMP_SYS(futex), "pthread mutexes: the device-model lock shared by the vCPU "
			   "threads and the main thread; pthread_join" },
	{ SCMP_SYS(set_robust_list), "a new thread's first call (glibc's start_thread)" },
	{ SCMP_SYS(rseq), "a new thread registers its restartable-sequence area (glibc 2.35+)" },
	{ SCMP_SYS(rt_sigprocmask), "pthread_create blocks signals around clone and the "
				    "new thread restores its mask" },
	{ SCMP_SYS(madvise), "glibc frees a thread's stack and malloc arenas' pages with "
			     "MADV_DONTNEED" },
	{ SCMP_SYS(exit), "a vCPU thread ends (the process ends with exit_group)" },
	{ SCMP_SYS(eventfd2), "the ioeventfds and irqfds of virtio queues, the vCPU threads' "
			      "\"VM ended\" signal (no path, no socket)" },
	{ SCMP_SYS(read), "read an eventfd's counter (queue notify, VM ended)" },
	{ SCMP_SYS(write), "signal an eventfd (a virtio interrupt through its irqfd, VM ended)" },
	{ SCMP_SYS(ppoll), "glibc's poll() on some builds" },
	{ SCMP_SYS(sched_yield), "glibc's spin paths in mutexes under contention" },
	{ SCMP_SYS(gettid), "glibc's pthread bookkeeping" },
	{ SCMP_SYS(getpid), "pthread_kill (the vCPU kick) asks for the tgid" },
};

/* The Linux profile's KVM ioctls beyond the kernel-less list. */
static const unsigned long linux_kvm_ioctls[] = {
	KVM_IOEVENTFD,   /* a virtio queue's notify register as an eventfd      */
	KVM_IRQFD,       /* a virtio device's interrupt line as an eventfd      */
	KVM_IRQ_LINE,    /* the UART's IRQ 4                                     */
	KVM_GET_REGS,    /* already above for Save; boot sets registers too      */
};

/* The vhost-user block backend (profile VMP_FILTER_VHOST_BLK: vhost/,
 * vhu_backend_child_main): one thread serving one frontend connection on
 * fds the supervisor opened. Its own list, not the child's: it has no KVM
 * fd, no timer, no snapshot. Found like the child's (docs/security.md,
 * "The vhost-user backend"): from vhost/backend.c, backend_msg.c, mem.c,
 * vring.c, blk.c and user_msg_io.c, and strace -f of a jailed backend
 * through a handshake, a memory table, a ring, OUT, IN, FLUSH, DISCARD
 * and a hang-up, plain and in overlay mode. fcntl and newfstatat have
 * argument rules in add_vhost_blk_rules. */
static const struct {
	int nr;
	const char *why;
} vhost_blk_allowed[] = {
	{ SCMP_SYS(recvmsg), "vhu_msg_recv: the frontend's messages and their fds" },
	{ SCMP_SYS(sendto), "vhu_msg_send: replies (glibc's send() is sendto)" },
	{ SCMP_SYS(sendmsg), "the SIGSYS handler's report (child/jail.c, on_sigsys), when "
			     "the supervisor gave a report fd" },
	{ SCMP_SYS(poll), "the loop waits on the socket and the kick eventfd" },
	{ SCMP_SYS(ppoll), "glibc's poll() on some builds" },
	{ SCMP_SYS(read), "drain a kick eventfd; a message's payload after its header "
			  "(user_msg_io.c)" },
	{ SCMP_SYS(write), "signal the call and err eventfds; a message on stderr "
			   "(the daemon's log) when a ring stops" },
	{ SCMP_SYS(close), "a ring's old eventfds, received fds the handler did not "
			   "keep, memory region fds once mapped" },
	{ SCMP_SYS(munmap), "REM_MEM_REG, a new SET_MEM_TABLE, the end of the "
			    "connection; free() of the backend's state" },
	{ SCMP_SYS(fstat), "mem.c: a region's fd must be a regular file at least as "
			   "long as the region (glibc < 2.33's fstat)" },
	{ SCMP_SYS(pread64), "blk.c: IN from the image (or the overlay's base or layer), "
			     "the overlay's copy-up" },
	{ SCMP_SYS(pwrite64), "blk.c: OUT to the image or the overlay's layer, zeros "
			      "where fallocate cannot" },
	{ SCMP_SYS(fdatasync), "blk.c: FLUSH (not in overlay mode: nothing to keep)" },
	{ SCMP_SYS(fallocate), "blk.c: DISCARD and WRITE_ZEROES (punch a hole, zero a "
			       "range) in the image or the layer" },
	{ SCMP_SYS(brk), "malloc: the backend's state and bounce buffer at the start "
			 "of the connection" },
	{ SCMP_SYS(exit_group), "_exit when the frontend hangs up or breaks the protocol" },
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
	{ SCMP_SYS(sched_getaffinity), "ASan's start of a new thread (a Linux child's vCPU "
				       "threads)" },
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

static int add_linux_rules(scmp_filter_ctx ctx, struct hatch_err *err)
{
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(linux_extra); i++)
		if (add_rule(ctx, linux_extra[i].nr, 0, NULL, err) < 0)
			return -1;
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(linux_kvm_ioctls); i++) {
		/* KVM_GET_REGS is on the kernel-less list already. */
		bool dup = false;
		for (unsigned j = 0; j < vmp_jail_n_kvm_ioctls; j++)
			dup |= vmp_jail_kvm_ioctls[j] == linux_kvm_ioctls[i];
		struct scmp_arg_cmp c = SCMP_A1(SCMP_CMP_EQ, linux_kvm_ioctls[i]);
		if (!dup && add_rule(ctx, SCMP_SYS(ioctl), 1, &c, err) < 0)
			return -1;
	}
	/* Threads, and nothing else: clone only with exactly the flags
	 * pthread_create passes (a new thread in this process: same memory,
	 * fds, signal handlers, this filter). A fork, a vfork, a clone into
	 * new namespaces all carry other flags and hit the default action.
	 * clone3 passes its flags in memory, where seccomp cannot look: it
	 * fails with ENOSYS, and glibc then falls back to clone. */
	/* A VM with a vhost-user disk: guest RAM is a memfd the backend maps
	 * (kvm/vm.c, VMP_VM_SHARED_MEM), made after the jail like the rest of
	 * the VM. memfd_create only with exactly the flags vm.c passes (no
	 * MFD_HUGETLB, no MFD_EXEC); fcntl only F_ADD_SEALS, to seal the
	 * file's size (so the backend can trust it) -- no F_SETFL, F_DUPFD,
	 * F_SETOWN or lock commands. ftruncate (the memfd's size) is on the
	 * kernel-less list already, for Save. */
	struct scmp_arg_cmp memfd = SCMP_A1(SCMP_CMP_EQ, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (add_rule(ctx, SCMP_SYS(memfd_create), 1, &memfd, err) < 0)
		return -1;
	struct scmp_arg_cmp seals = SCMP_A1(SCMP_CMP_EQ, F_ADD_SEALS);
	if (add_rule(ctx, SCMP_SYS(fcntl), 1, &seals, err) < 0)
		return -1;
	struct scmp_arg_cmp thread = SCMP_A0(SCMP_CMP_EQ, VMP_JAIL_THREAD_CLONE_FLAGS);
	if (add_rule(ctx, SCMP_SYS(clone), 1, &thread, err) < 0)
		return -1;
	int r = seccomp_rule_add_exact(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	if (r < 0)
		return hatch_err_set(err, E_INTERNAL, -r, "seccomp rule for clone3");
	/* tgkill: a vCPU thread kicks the others out of KVM_RUN when the VM
	 * ends (linux/vcpus.c), with that one signal only; the thread ids
	 * are ours (pid namespace of our own). */
	struct scmp_arg_cmp kick = SCMP_A2(SCMP_CMP_EQ, SIGUSR1);
	if (add_rule(ctx, SCMP_SYS(tgkill), 1, &kick, err) < 0)
		return -1;
	/* mprotect: pthread_create's stack guard page (PROT_NONE) and malloc
	 * arenas growing; never to make a page executable. */
	struct scmp_arg_cmp noexec = SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0);
	return add_rule(ctx, SCMP_SYS(mprotect), 1, &noexec, err);
}

static int add_vhost_blk_rules(scmp_filter_ctx ctx, struct hatch_err *err)
{
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(vhost_blk_allowed); i++)
		if (add_rule(ctx, vhost_blk_allowed[i].nr, 0, NULL, err) < 0)
			return -1;
	/* mmap: the frontend's memory regions (MAP_SHARED of its memfds) and
	 * malloc's large chunks. Never executable: the guest's memory is
	 * the frontend's to fill, so an executable mapping of it would run
	 * code a guest wrote. */
	struct scmp_arg_cmp noexec = SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0);
	if (add_rule(ctx, SCMP_SYS(mmap), 1, &noexec, err) < 0)
		return -1;
	/* fcntl: vring.c makes the kick, call and err fds O_NONBLOCK, with
	 * F_GETFL and F_SETFL; no F_DUPFD, no locks, no F_SETOWN. */
	struct scmp_arg_cmp getfl = SCMP_A1(SCMP_CMP_EQ, F_GETFL);
	struct scmp_arg_cmp setfl = SCMP_A1(SCMP_CMP_EQ, F_SETFL);
	if (add_rule(ctx, SCMP_SYS(fcntl), 1, &getfl, err) < 0 ||
	    add_rule(ctx, SCMP_SYS(fcntl), 1, &setfl, err) < 0)
		return -1;
	/* newfstatat: glibc >= 2.33's fstat(fd) is fstatat(fd, "", st,
	 * AT_EMPTY_PATH). Only with that flag; in the empty root a path
	 * would find nothing anyway. */
	struct scmp_arg_cmp empty = SCMP_A3(SCMP_CMP_EQ, AT_EMPTY_PATH);
	return add_rule(ctx, SCMP_SYS(newfstatat), 1, &empty, err);
}

/* A pool child's list: kernel-less, plus linux_extra for a Linux child. */
static int add_child_rules(scmp_filter_ctx ctx, enum vmp_filter_profile profile,
			   struct hatch_err *err)
{
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(allowed); i++)
		if (add_rule(ctx, allowed[i].nr, 0, NULL, err) < 0)
			return -1;
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
	if (profile == VMP_FILTER_LINUX && add_linux_rules(ctx, err) < 0)
		return -1;
	return 0;
}

static void seccomp_releasep(scmp_filter_ctx *c)
{
	if (*c)
		seccomp_release(*c);
}

int vmp_jail_filter_build(enum vmp_seccomp_mode mode, enum vmp_filter_profile profile,
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

#if defined(__SANITIZE_ADDRESS__)
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(sanitizer_extra); i++)
		if (add_rule(ctx, sanitizer_extra[i].nr, 0, NULL, err) < 0)
			return -1;
#endif
	int rr = profile == VMP_FILTER_VHOST_BLK ? add_vhost_blk_rules(ctx, err)
						 : add_child_rules(ctx, profile, err);
	if (rr < 0)
		return -1;

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
	out->profile = profile;
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
