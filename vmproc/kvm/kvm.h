/* kvm.h - a thin wrapper over the KVM API for one VM in one child process.
 *
 * It knows no guest kind: building the VM (vm.c) and running a vCPU with a
 * deadline, exits dispatched by reason (vcpu.h) are here; what the guest
 * sees (tables, ABI, hypercalls) is the guest kind's (runtime/). /dev/kvm
 * was opened and probed once by the supervisor (struct vmp_kvm_host in
 * vmproc.h); a child builds its VM from those answers.
 *
 * One tier of calls, not the kernel KVM selftests' two (there __vcpu_ioctl
 * returns the raw result and vcpu_ioctl asserts): every function here
 * returns 0 or -1 with a message naming the ioctl and errno, and nothing
 * asserts or exits, since the caller is a child that reports its failure
 * to the supervisor (or a test that checks it).
 */
#ifndef HATCHERY_VMP_KVM_H
#define HATCHERY_VMP_KVM_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hatchery/error.h"
#include "vmproc.h"

#define VMP_MAX_VCPUS 64

struct vmp_vm_timings {
	uint64_t create_vm_ns, memory_ns, irqchip_ns, vcpus_ns;
};

struct vmp_vm {
	int vm_fd;
	uint8_t *mem;               /* guest RAM, host mapping (MAP_NORESERVE) */
	size_t mem_size;
	/* VMP_VM_SHARED_MEM: the memfd guest RAM is mapped from (MAP_SHARED,
	 * sealed against shrinking and growing), for a vhost-user backend's
	 * SET_MEM_TABLE; mem's offset o is the file's offset o. -1 otherwise
	 * (anonymous MAP_PRIVATE, what snapshots restore over). Owned. */
	int mem_fd;
	unsigned nvcpus;
	int vcpu_fd[VMP_MAX_VCPUS];
	struct kvm_run *run[VMP_MAX_VCPUS];
	size_t run_size;
	bool irqchip, pit;
	unsigned cpuid_entries;
	uint8_t tr_type;            /* the host's, copied: the guest runtime's TR */
	struct vmp_vm_timings t;
};

/* Guest RAM starts at GPA 0; above 3 GiB it continues at 4 GiB, leaving the
 * 32-bit MMIO hole (LAPIC, IOAPIC) free, as on a PC. That layout is written
 * once, in snapshot/ (snap_ram_slots, snap_gpa_to_ram_offset): a snapshot
 * records GPAs, and vmp_vm_create registers its memory slots from it. */

/* Build a VM in the order that is cheap on this host: memory slots are
 * registered before KVM_CREATE_IRQCHIP (after it, each costs ~7.5 ms under
 * kvm-pvm), then the in-kernel irqchip and PIT, then vCPUs with the host's
 * supported CPUID. */
int vmp_vm_create(const struct vmp_kvm_host *h, size_t mem_size,
		  unsigned nvcpus, struct vmp_vm *vm, struct hatch_err *err);

/* vmp_vm_create's options. */
enum vmp_vm_flags {
	/* Guest RAM in a memfd, mapped MAP_SHARED, so another process (a
	 * vhost-user backend) can map the same pages: vm->mem_fd. Sealed with
	 * F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL, so a backend that checked
	 * the size once can trust it (no SIGBUS from a shrunk file). Such a
	 * VM takes no snapshot restore (vmsnap.c maps the snapshot's pages
	 * MAP_PRIVATE over guest RAM, which a backend would not see): refused
	 * (docs/architecture.md, "Memory model for vhost-user: decided"). */
	VMP_VM_SHARED_MEM = 1u << 0,
};

int vmp_vm_create_flags(const struct vmp_kvm_host *h, size_t mem_size,
			unsigned nvcpus, unsigned flags, struct vmp_vm *vm,
			struct hatch_err *err);
void vmp_vm_destroy(struct vmp_vm *vm);

/* Enter KVM_RUN once on every vCPU with kvm_run->immediate_exit set: the
 * guest executes nothing (-EINTR at once), but KVM does its first-run work
 * now. On kernels >= 6.13 that includes creating a per-VM worker task (the
 * NX huge page recovery vhost_task) charged to the caller's RLIMIT_NPROC;
 * 6.1 makes a kthread, charged to nobody. Either way no task is created
 * after this call, so the jail lowers NPROC to 1 right after it
 * (vmp_jail_lower_nproc), which stops a fork on both. */
int vmp_vm_first_run(struct vmp_vm *vm, struct hatch_err *err);

/* KVM_RUN once on vCPU i with immediate_exit set: nothing of the guest
 * runs, but KVM finishes what it had pending (the first-run work above; an
 * I/O exit's instruction, before a Save reads the vCPU's state). Anything
 * but -EINTR is an error; `why` names the occasion in its message. */
int vmp_vcpu_run_immediate_exit(struct vmp_vm *vm, unsigned i, const char *why,
				struct hatch_err *err);

#endif
