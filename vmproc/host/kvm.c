/* kvm.c (host side) - /dev/kvm, opened and probed once by the supervisor:
 * API version, capabilities, supported CPUID, MSR list, TR type; and the
 * host CPU as a snapshot records it. Children inherit the answers
 * (vmproc.h); the VM itself is built in the child (kvm/vm.c). */
#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"
#include "vmproc.h"

#define E_VM HATCHERY__V1__ERROR_CODE__VM_ERROR

/* Why TR's type depends on the vendor. The guest runtime (runtime/) enters
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

void vmp_snap_host_cpu(const struct vmp_kvm_host *h, struct snap_cpu *c)
{
	unsigned a, b, cx, d;
	memset(c, 0, sizeof(*c));
	__cpuid(0, a, b, cx, d);
	memcpy(c->vendor, &b, 4);
	memcpy(c->vendor + 4, &d, 4);
	memcpy(c->vendor + 8, &cx, 4);
	__cpuid(1, a, b, cx, d);
	c->signature = a;
	c->cpuid_hash = snap_cpuid_hash(h->cpuid->entries, h->cpuid->nent);
}
