/* vm.c - one VM in a child: build it, enter it once (immediate exit),
 * tear it down. The vCPU loop is kvm/vcpu.c; /dev/kvm was probed by the
 * supervisor (host/kvm.c). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hatchery/clock.h"
#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"
#include "kvm/kvm.h"
#include "snapshot.h"

#define E_VM HATCHERY__V1__ERROR_CODE__VM_ERROR

static int set_slot(struct vmp_vm *vm, uint32_t slot, uint64_t gpa,
		    uint64_t size, void *hva, struct hatch_err *err)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)hva,
	};
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
		return hatch_err_set(err, E_VM, errno,
				     "KVM_SET_USER_MEMORY_REGION slot %u", slot);
	return 0;
}

/* Guest RAM as a sealed memfd, mapped MAP_SHARED (VMP_VM_SHARED_MEM).
 * MAP_NORESERVE as for anonymous RAM: the file's pages exist once
 * touched, by the guest or the backend. */
static void *shared_ram(struct vmp_vm *vm, size_t mem_size, struct hatch_err *err)
{
	vm->mem_fd = memfd_create("hatchery-guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (vm->mem_fd < 0) {
		hatch_err_set(err, E_VM, errno, "memfd_create (guest memory)");
		return NULL;
	}
	if (ftruncate(vm->mem_fd, (off_t)mem_size) < 0) {
		hatch_err_set(err, E_VM, errno, "ftruncate guest memory memfd (%zu MiB)",
			      mem_size >> 20);
		return NULL;
	}
	if (fcntl(vm->mem_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		hatch_err_set(err, E_VM, errno, "F_ADD_SEALS on the guest memory memfd");
		return NULL;
	}
	void *m = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
		       vm->mem_fd, 0);
	if (m == MAP_FAILED) {
		hatch_err_set(err, E_VM, errno, "mmap guest memory memfd (%zu MiB)",
			      mem_size >> 20);
		return NULL;
	}
	return m;
}

int vmp_vm_create(const struct vmp_kvm_host *h, size_t mem_size,
		  unsigned nvcpus, struct vmp_vm *vm, struct hatch_err *err)
{
	return vmp_vm_create_flags(h, mem_size, nvcpus, 0, vm, err);
}

int vmp_vm_create_flags(const struct vmp_kvm_host *h, size_t mem_size,
			unsigned nvcpus, unsigned flags, struct vmp_vm *vm,
			struct hatch_err *err)
{
	memset(vm, 0, sizeof(*vm));
	vm->vm_fd = -1;
	vm->mem_fd = -1;
	for (unsigned i = 0; i < VMP_MAX_VCPUS; i++)
		vm->vcpu_fd[i] = -1;
	if (nvcpus == 0 || nvcpus > VMP_MAX_VCPUS)
		return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT,
				     0, "vcpus must be 1..%d", VMP_MAX_VCPUS);

	uint64_t t0 = hatch_now_ns();
	vm->vm_fd = ioctl(h->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return hatch_err_set(err, E_VM, errno, "KVM_CREATE_VM");
	uint64_t t1 = hatch_now_ns();

	/* Guest RAM. MAP_NORESERVE: a pool of idle VMs must not commit memory
	 * its guests have not touched. */
	if (flags & VMP_VM_SHARED_MEM) {
		vm->mem = shared_ram(vm, mem_size, err);
		if (!vm->mem)
			return -1;
	} else {
		vm->mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (vm->mem == MAP_FAILED) {
			vm->mem = NULL;
			return hatch_err_set(err, E_VM, errno, "mmap guest memory (%zu MiB)",
					     mem_size >> 20);
		}
	}
	vm->mem_size = mem_size;
	/* One memory slot per part of guest RAM: the layout is snapshot/'s,
	 * since a snapshot records GPAs. */
	struct snap_ram_slot slot[SNAP_RAM_SLOTS];
	unsigned nslots = snap_ram_slots(mem_size, slot);
	for (unsigned i = 0; i < nslots; i++)
		if (set_slot(vm, i, slot[i].gpa, slot[i].len, vm->mem + slot[i].offset, err) < 0)
			return -1;
	uint64_t t2 = hatch_now_ns();

	/* Only now the irqchip: see the header for why the order matters. */
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return hatch_err_set(err, E_VM, errno, "KVM_CREATE_IRQCHIP");
	vm->irqchip = true;
	struct kvm_pit_config pit = { .flags = 0 };
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return hatch_err_set(err, E_VM, errno, "KVM_CREATE_PIT2");
	vm->pit = true;
	uint64_t t3 = hatch_now_ns();

	vm->run_size = (size_t)h->vcpu_mmap_size;
	for (unsigned i = 0; i < nvcpus; i++) {
		int fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
		if (fd < 0)
			return hatch_err_set(err, E_VM, errno, "KVM_CREATE_VCPU %u", i);
		vm->vcpu_fd[i] = fd;
		vm->nvcpus = i + 1;
		void *run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE,
				 MAP_SHARED, fd, 0);
		if (run == MAP_FAILED)
			return hatch_err_set(err, E_VM, errno, "mmap kvm_run of vCPU %u", i);
		vm->run[i] = run;
		if (ioctl(fd, KVM_SET_CPUID2, h->cpuid) < 0)
			return hatch_err_set(err, E_VM, errno, "KVM_SET_CPUID2 vCPU %u", i);
	}
	vm->cpuid_entries = h->cpuid->nent;
	vm->tr_type = h->tr_type;
	uint64_t t4 = hatch_now_ns();
	vm->t = (struct vmp_vm_timings){ t1 - t0, t2 - t1, t3 - t2, t4 - t3 };
	return 0;
}

int vmp_vcpu_run_immediate_exit(struct vmp_vm *vm, unsigned i, const char *why,
				struct hatch_err *err)
{
	vm->run[i]->immediate_exit = 1;
	int r = ioctl(vm->vcpu_fd[i], KVM_RUN, 0);
	int e = errno;
	vm->run[i]->immediate_exit = 0;
	if (r == 0 || e != EINTR)
		return hatch_err_set(err, E_VM, r == 0 ? 0 : e,
				     "KVM_RUN (%s, immediate exit) on vCPU %u%s", why, i,
				     r == 0 ? ": returned 0 instead of EINTR" : "");
	return 0;
}

int vmp_vm_first_run(struct vmp_vm *vm, struct hatch_err *err)
{
	for (unsigned i = 0; i < vm->nvcpus; i++)
		if (vmp_vcpu_run_immediate_exit(vm, i, "first", err) < 0)
			return -1;
	return 0;
}

void vmp_vm_destroy(struct vmp_vm *vm)
{
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		if (vm->run[i])
			munmap(vm->run[i], vm->run_size);
		if (vm->vcpu_fd[i] >= 0)
			close(vm->vcpu_fd[i]);
	}
	if (vm->mem)
		munmap(vm->mem, vm->mem_size);
	if (vm->mem_fd >= 0)
		close(vm->mem_fd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	memset(vm, 0, sizeof(*vm));
	vm->vm_fd = -1;
	vm->mem_fd = -1;
}
