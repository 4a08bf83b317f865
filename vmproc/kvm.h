/* kvm.h - a thin wrapper over the KVM API for one VM per process.
 *
 * Two halves. The host half (vmp_kvm_host_*) runs once in the supervisor at
 * start-up: it opens /dev/kvm, checks the API version and the capabilities
 * every child needs, and reads the host's supported CPUID, so that a
 * configuration the machine cannot satisfy fails before anything forks, and
 * children inherit the answers instead of asking again. The VM half
 * (vmp_vm_*) runs in a child.
 *
 * Ioctls are tiered as in the kernel's KVM selftests: functions here return
 * 0 or -1 with a message naming the ioctl and errno; nothing exits.
 */
#ifndef HATCHERY_VMP_KVM_H
#define HATCHERY_VMP_KVM_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hatchery/error.h"

#define VMP_MAX_VCPUS 64

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
	 * from the CPU vendor KVM reports (see vmp_kvm_tr_type in kvm.c). */
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

struct vmp_vm_timings {
	uint64_t create_vm_ns, memory_ns, irqchip_ns, vcpus_ns;
};

struct vmp_vm {
	int vm_fd;
	uint8_t *mem;               /* guest RAM, host mapping (MAP_NORESERVE) */
	size_t mem_size;
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
void vmp_vm_destroy(struct vmp_vm *vm);

/* Enter KVM_RUN once on every vCPU with kvm_run->immediate_exit set: the
 * guest executes nothing (-EINTR at once), but KVM does its first-run work
 * now. On kernels >= 6.13 that includes creating a per-VM worker task (the
 * NX huge page recovery vhost_task) charged to the caller's RLIMIT_NPROC;
 * 6.1 makes a kthread, charged to nobody. Either way no task is created
 * after this call, so the jail lowers NPROC to 1 right after it
 * (vmp_jail_lower_nproc), which stops a fork on both. */
int vmp_vm_first_run(struct vmp_vm *vm, struct hatch_err *err);

#endif
