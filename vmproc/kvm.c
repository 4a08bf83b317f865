/* kvm.c - /dev/kvm probing and VM construction. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"
#include "kvm.h"
#include "snapshot.h"

#define E_VM HATCHERY__V1__ERROR_CODE__VM_ERROR

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Why TR's type depends on the vendor. The guest runtime (guest.c) enters
 * the guest with TR already loaded by KVM_SET_SREGS (no LTR ever runs), and
 * the TSS's I/O bitmap is what lets CPL 3 reach the hypercall port and
 * nothing else.
 *  - Intel: VM entry checks TR, and in IA-32e mode its type must be 11, a
 *    busy TSS (SDM vol. 3, "Checks on Guest Segment Registers"); 9 fails
 *    the entry.
 *  - AMD: VMRUN does not check TR's type, and the CPU's I/O permission
 *    check reads the bitmap whatever the busy bit says; so do KVM's own
 *    instruction emulator and kvm-pvm.
 *  - QEMU's emulator (TCG), which runs nested SVM under scripts/vm, is the
 *    quirk: check_io in target/i386/tcg/seg_helper.c uses the bitmap only
 *    when TR's cached type is 9 and raises #GP for any other type, so with
 *    11 every guest's `out %al, $0xe0` faulted as a forbidden port.
 * QEMU/TCG offers no VMX to nest under, so type 9 on AMD-like hosts and 11
 * on the rest satisfies real Intel, real AMD and the emulator at once. */
uint8_t vmp_kvm_tr_type(const char vendor[12])
{
	return memcmp(vendor, "AuthenticAMD", 12) == 0 ||
			       memcmp(vendor, "HygonGenuine", 12) == 0
		       ? 9
		       : 11;
}

/* The vendor string KVM reports in leaf 0 (the host's own), or "" if the
 * supported CPUID has no leaf 0. */
static void cpuid_vendor(const struct kvm_cpuid2 *c, char vendor[12])
{
	memset(vendor, 0, 12);
	for (unsigned i = 0; i < c->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &c->entries[i];
		if (e->function != 0)
			continue;
		memcpy(vendor, &e->ebx, 4);
		memcpy(vendor + 4, &e->edx, 4);
		memcpy(vendor + 8, &e->ecx, 4);
		return;
	}
}

int vmp_kvm_host_open(struct vmp_kvm_host *h, const char *path,
		      struct hatch_err *err)
{
	memset(h, 0, sizeof(*h));
	h->kvm_fd = -1;
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return hatch_err_set(err, E_VM, errno, "%s", path);
	return vmp_kvm_host_open_fd(h, fd, path, err);
}

int vmp_kvm_host_open_fd(struct vmp_kvm_host *h, int fd_, const char *path,
			 struct hatch_err *err)
{
	memset(h, 0, sizeof(*h));
	h->kvm_fd = -1;
	_cleanup_close_ int fd = fd_;
	/* An inherited fd may lack it; children must not inherit it by exec
	 * (they never exec, but keep the rule). */
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	int v = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (v != KVM_API_VERSION)
		return hatch_err_set(err, E_VM, v < 0 ? errno : 0,
				     "%s: KVM API version %d, need %d", path, v,
				     KVM_API_VERSION);
	static const struct {
		int cap;
		const char *name;
	} caps[] = {
		{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
		{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
		{ KVM_CAP_PIT2, "KVM_CAP_PIT2" },
		{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
	};
	for (size_t i = 0; i < HATCH_ARRAY_SIZE(caps); i++)
		if (ioctl(fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0)
			return hatch_err_set(err, E_VM, 0, "%s: %s not supported",
					     path, caps[i].name);
	int msz = ioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (msz <= 0)
		return hatch_err_set(err, E_VM, errno, "KVM_GET_VCPU_MMAP_SIZE");

	/* The entry count is not known up front: grow until it fits. */
	for (unsigned n = 64; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c =
			calloc(1, sizeof(*c) + n * sizeof(struct kvm_cpuid_entry2));
		if (!c)
			return hatch_err_set(err, E_VM, ENOMEM, "cpuid");
		c->nent = n;
		if (ioctl(fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			h->cpuid = c;
			break;
		}
		int e = errno;
		free(c);
		if (e != E2BIG)
			return hatch_err_set(err, E_VM, e, "KVM_GET_SUPPORTED_CPUID");
	}
	if (!h->cpuid)
		return hatch_err_set(err, E_VM, E2BIG, "KVM_GET_SUPPORTED_CPUID");
	/* Same dance for the MSR index list: E2BIG tells the count. */
	struct kvm_msr_list probe = { .nmsrs = 0 };
	if (ioctl(fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return hatch_err_set(err, E_VM, errno, "KVM_GET_MSR_INDEX_LIST");
	h->msr_list = calloc(1, sizeof(*h->msr_list) + probe.nmsrs * sizeof(uint32_t));
	if (!h->msr_list)
		return hatch_err_set(err, E_VM, ENOMEM, "msr list");
	h->msr_list->nmsrs = probe.nmsrs;
	if (probe.nmsrs && ioctl(fd, KVM_GET_MSR_INDEX_LIST, h->msr_list) < 0)
		return hatch_err_set(err, E_VM, errno, "KVM_GET_MSR_INDEX_LIST (%u)",
				     probe.nmsrs);
	int maxv = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (maxv <= 0)
		maxv = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	h->max_vcpus = maxv > 0 ? maxv : 4; /* the API's documented floor */
	char vendor[12];
	cpuid_vendor(h->cpuid, vendor);
	h->tr_type = vmp_kvm_tr_type(vendor);
	h->api_version = v;
	h->vcpu_mmap_size = msz;
	h->kvm_fd = steal_fd(&fd);
	return 0;
}

void vmp_kvm_host_close(struct vmp_kvm_host *h)
{
	if (h->kvm_fd >= 0)
		close(h->kvm_fd);
	free(h->cpuid);
	free(h->msr_list);
	memset(h, 0, sizeof(*h));
	h->kvm_fd = -1;
}

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

int vmp_vm_create(const struct vmp_kvm_host *h, size_t mem_size,
		  unsigned nvcpus, struct vmp_vm *vm, struct hatch_err *err)
{
	memset(vm, 0, sizeof(*vm));
	vm->vm_fd = -1;
	for (unsigned i = 0; i < VMP_MAX_VCPUS; i++)
		vm->vcpu_fd[i] = -1;
	if (nvcpus == 0 || nvcpus > VMP_MAX_VCPUS)
		return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT,
				     0, "vcpus must be 1..%d", VMP_MAX_VCPUS);

	uint64_t t0 = now_ns();
	vm->vm_fd = ioctl(h->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return hatch_err_set(err, E_VM, errno, "KVM_CREATE_VM");
	uint64_t t1 = now_ns();

	/* Guest RAM. MAP_NORESERVE: a pool of idle VMs must not commit memory
	 * its guests have not touched. */
	vm->mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vm->mem == MAP_FAILED) {
		vm->mem = NULL;
		return hatch_err_set(err, E_VM, errno, "mmap guest memory (%zu MiB)",
				     mem_size >> 20);
	}
	vm->mem_size = mem_size;
	/* One memory slot per part of guest RAM: the layout is snapshot/'s,
	 * since a snapshot records GPAs. */
	struct snap_ram_slot slot[SNAP_RAM_SLOTS];
	unsigned nslots = snap_ram_slots(mem_size, slot);
	for (unsigned i = 0; i < nslots; i++)
		if (set_slot(vm, i, slot[i].gpa, slot[i].len, vm->mem + slot[i].offset, err) < 0)
			return -1;
	uint64_t t2 = now_ns();

	/* Only now the irqchip: see the header for why the order matters. */
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return hatch_err_set(err, E_VM, errno, "KVM_CREATE_IRQCHIP");
	vm->irqchip = true;
	struct kvm_pit_config pit = { .flags = 0 };
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return hatch_err_set(err, E_VM, errno, "KVM_CREATE_PIT2");
	vm->pit = true;
	uint64_t t3 = now_ns();

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
	uint64_t t4 = now_ns();
	vm->t = (struct vmp_vm_timings){ t1 - t0, t2 - t1, t3 - t2, t4 - t3 };
	return 0;
}

int vmp_vm_first_run(struct vmp_vm *vm, struct hatch_err *err)
{
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		vm->run[i]->immediate_exit = 1;
		int r = ioctl(vm->vcpu_fd[i], KVM_RUN, 0);
		int e = errno;
		vm->run[i]->immediate_exit = 0;
		if (r == 0 || e != EINTR)
			return hatch_err_set(err, E_VM, r == 0 ? 0 : e,
					     "KVM_RUN (first, immediate exit) on vCPU %u%s", i,
					     r == 0 ? ": returned 0 instead of EINTR" : "");
	}
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
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	memset(vm, 0, sizeof(*vm));
	vm->vm_fd = -1;
}
