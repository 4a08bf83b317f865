/* cpu.c - each vCPU's identity for a Linux guest: CPUID topology and APIC
 * ID, the hypervisor bit, LAPIC LINT pins. Declared in boot.h (it is part
 * of booting Linux, and only of that); see there for why. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "hatchery/cleanup.h"
#include "hatchery/v1/common.pb-c.h"
#include "linux/boot.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

#define CPUID1_ECX_HYPERVISOR (1u << 31)
#define CPUID1_EDX_HTT        (1u << 28)

#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_NMI    0x4
#define APIC_MODE_EXTINT 0x7

static unsigned order(unsigned n)
{
	unsigned s = 0;
	while ((1u << s) < n)
		s++;
	return s;
}

/* Leaves 0xB and 0x1F, "extended topology": level 0 SMT (one thread per
 * core), level 1 core (nvcpus cores in the package), then the invalid
 * level that ends the list; EDX is the x2APIC ID at every level. */
static void topo_leaf(struct kvm_cpuid_entry2 *e, unsigned id, unsigned n)
{
	switch (e->index) {
	case 0:
		e->eax = 0;
		e->ebx = 1;
		e->ecx = (1u << 8) | 0;
		break;
	case 1:
		e->eax = order(n);
		e->ebx = n;
		e->ecx = (2u << 8) | 1;
		break;
	default:
		e->eax = 0;
		e->ebx = 0;
		e->ecx = e->index; /* type 0: invalid */
		break;
	}
	e->edx = id;
}

static void fix_entry(struct kvm_cpuid_entry2 *e, unsigned id, unsigned n)
{
	switch (e->function) {
	case 1:
		/* EBX[31:24] initial APIC ID, [23:16] logical processors. */
		e->ebx = (e->ebx & 0xffff) | (id << 24) | ((n & 0xff) << 16);
		/* The host's supported CPUID leaves it out; the kernel looks
		 * for the KVM leaves (kvm-clock, PV EOI, ...) only with it. */
		e->ecx |= CPUID1_ECX_HYPERVISOR;
		/* HTT: "EBX[23:16] is valid", i.e. more than one logical
		 * processor per package; without it the kernel counts each
		 * vCPU as a package of its own. */
		if (n > 1)
			e->edx |= CPUID1_EDX_HTT;
		else
			e->edx &= ~CPUID1_EDX_HTT;
		break;
	case 4:
		/* EAX[31:26]: cores per package - 1 (Intel's fallback when
		 * leaf 0xB says nothing). Only on valid cache levels. */
		if (e->eax & 0x1f)
			e->eax = (e->eax & 0x03ffffff) | ((n - 1) << 26);
		break;
	case 0xb:
	case 0x1f:
		topo_leaf(e, id, n);
		break;
	case 0x80000008:
		/* AMD: ECX[7:0] cores per package - 1, [15:12] APIC ID bits
		 * for the core (amd_detect_cmp reads the package from the
		 * bits above). KVM reports 0: one core per package. */
		e->ecx = (e->ecx & ~0xf0ffu) | (order(n) << 12) | ((n - 1) & 0xff);
		break;
	case 0x8000001e:
		/* AMD topology extension: extended APIC ID, core ID with one
		 * thread per core, node 0. */
		e->eax = id;
		e->ebx = (e->ebx & ~0xffffu) | (id & 0xff);
		e->ecx = 0;
		break;
	default:
		break;
	}
}

static int set_lint(struct vmp_vm *vm, unsigned i, struct hatch_err *err)
{
	struct kvm_lapic_state la;
	if (ioctl(vm->vcpu_fd[i], KVM_GET_LAPIC, &la) < 0)
		return hatch_err_set(err, E(VM_ERROR), errno, "KVM_GET_LAPIC vCPU %u", i);
	uint32_t v;
	/* LINT0 ExtINT (the 8259s, until the kernel switches to the IOAPIC),
	 * LINT1 NMI: what firmware leaves on a PC and the MADT's NMI entry
	 * says. Delivery mode is bits 10:8; the mask bit (16) cleared. */
	memcpy(&v, la.regs + APIC_LVT0, 4);
	v = (v & ~0x10700u) | (APIC_MODE_EXTINT << 8);
	memcpy(la.regs + APIC_LVT0, &v, 4);
	memcpy(&v, la.regs + APIC_LVT1, 4);
	v = (v & ~0x10700u) | (APIC_MODE_NMI << 8);
	memcpy(la.regs + APIC_LVT1, &v, 4);
	if (ioctl(vm->vcpu_fd[i], KVM_SET_LAPIC, &la) < 0)
		return hatch_err_set(err, E(VM_ERROR), errno, "KVM_SET_LAPIC vCPU %u", i);
	return 0;
}

int vmp_linux_cpu_init(struct vmp_vm *vm, const struct kvm_cpuid2 *host_cpuid,
		       struct hatch_err *err)
{
	size_t sz = sizeof(*host_cpuid) + host_cpuid->nent * sizeof(host_cpuid->entries[0]);
	_cleanup_free_ struct kvm_cpuid2 *c = malloc(sz);
	if (!c)
		return hatch_err_set(err, E(INTERNAL), ENOMEM, "CPUID table");
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		memcpy(c, host_cpuid, sz);
		for (unsigned k = 0; k < c->nent; k++)
			fix_entry(&c->entries[k], i, vm->nvcpus);
		/* Before the vCPU first runs: KVM refuses a CPUID change after
		 * KVM_RUN on recent kernels unless it is identical. */
		if (ioctl(vm->vcpu_fd[i], KVM_SET_CPUID2, c) < 0)
			return hatch_err_set(err, E(VM_ERROR), errno, "KVM_SET_CPUID2 vCPU %u", i);
		if (set_lint(vm, i, err) < 0)
			return -1;
	}
	return 0;
}
