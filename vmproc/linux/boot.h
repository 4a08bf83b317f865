/* boot.h - load a stock Linux bzImage into a VM and point vCPU 0 at its
 * 64-bit entry (Documentation/x86/boot.rst, "64-bit Boot Protocol").
 *
 * vmp_linux_load writes, into the guest RAM of a freshly built VM (struct
 * vmp_vm, RAM laid out by snapshot/'s snap_ram_slots): the protected-mode
 * kernel at VMP_LINUX_KERNEL, the initrd at the top of low RAM, the command
 * line, the ACPI tables (acpi.h), the zero page (boot_params: the image's
 * setup header, e820, initrd, command line, acpi_rsdp_addr), a boot GDT and
 * page tables identity-mapping the first 4 GiB; then sets vCPU 0's
 * registers: long mode, CS 0x10, DS/ES/SS 0x18, rsi = zero page, rip =
 * load address + 0x200, interrupts off. The machine map is
 * docs/guest-linux.md's.
 *
 * Why 0x100000 and not the header's pref_address (16 MiB on Debian's
 * kernel): the docs' map puts it there, and a relocatable kernel's
 * decompressor moves itself to max(pref_address, its aligned load
 * address) anyway, so loading at pref_address would only skip an 8 MiB
 * memmove inside the guest. The space that move needs, [pref_address,
 * pref_address + init_size), is checked against RAM and the initrd.
 *
 * vmp_linux_cpu_init gives each vCPU its identity: CPUID with its own APIC
 * ID in leaves 1, 0xB, 0x1F and 0x8000001E, one package of nvcpus cores,
 * the hypervisor bit (without which the kernel never looks at the KVM
 * leaves, hence no kvm-clock); LAPIC LINT0 ExtINT and LINT1 NMI. APs need
 * nothing more: they wait in KVM's in-kernel LAPIC for the kernel's
 * INIT/SIPI.
 *
 * Both run before the vCPU threads start; nothing is kept. The images are
 * borrowed for the call.
 */
#ifndef HATCHERY_VMP_LINUX_BOOT_H
#define HATCHERY_VMP_LINUX_BOOT_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

#include "hatchery/error.h"
#include "kvm/kvm.h"
#include "linux/bzimage.h"

#define VMP_LINUX_GDT         0x500ull
#define VMP_LINUX_ZERO_PAGE   0x7000ull
#define VMP_LINUX_BOOT_STACK  0x8ff0ull   /* below the page tables; the kernel sets its own */
#define VMP_LINUX_PML4        0x9000ull   /* then the PDPT, then 4 PDs */
#define VMP_LINUX_CMDLINE     0x20000ull
#define VMP_LINUX_CMDLINE_MAX 4096u       /* with its NUL */
#define VMP_LINUX_KERNEL      0x100000ull
#define VMP_LINUX_EBDA        0x9fc00ull  /* reserved from here to 1 MiB */

#define VMP_LINUX_BOOT_CS     0x10
#define VMP_LINUX_BOOT_DS     0x18

/* The command line to use when the caller has no reason for another:
 *   console=ttyS0      the kernel's messages and /dev/console on COM1
 *   quiet              only warnings and worse: every console byte is a
 *                      VM exit (~55 us under nested KVM)
 *   reboot=k           reboot through the i8042's reset line (ours ends
 *                      the VM); panic=1 reboots 1 s after a panic
 *   nokaslr            a fixed layout: nothing to hide from the host, and
 *                      no time spent on choosing
 *   pci=off            there is no PCI host bridge: skip the 0xCF8 probes
 *   8250.nr_uarts=1    probe only COM1, not COM2..4 (nothing behind them)
 *   random.trust_cpu=on  seed from RDRAND at once instead of waiting
 *                      for entropy on an idle VM */
#define VMP_LINUX_CMDLINE_DEFAULT                                          \
	"console=ttyS0 quiet reboot=k panic=1 nokaslr pci=off 8250.nr_uarts=1 " \
	"random.trust_cpu=on"

struct vmp_linux_boot {
	const uint8_t *kernel;      /* the bzImage file */
	size_t kernel_len;
	const uint8_t *initrd;      /* a cpio (.gz) or NULL */
	size_t initrd_len;
	const char *cmdline;        /* NULL: VMP_LINUX_CMDLINE_DEFAULT */
	unsigned nvirtio;           /* virtio-mmio devices in the DSDT: 1..4 */
};

/* Where things went, for logs and tests (GPAs). */
struct vmp_linux_layout {
	struct vmp_bzimage bz;
	uint64_t kernel, kernel_end;    /* incl. the decompressor's init_size */
	uint64_t initrd, initrd_size;
	uint64_t entry;
	uint64_t low_ram_end;
};

/* Load into vm (RAM, vCPU 0's registers). -1 with err: a bad image
 * (INVALID_ARGUMENT, from bzimage.c), a RAM too small for kernel plus
 * initrd, a command line too long, an ioctl failing (VM_ERROR). out may
 * be NULL. */
int vmp_linux_load(struct vmp_vm *vm, const struct vmp_linux_boot *b,
		   struct vmp_linux_layout *out, struct hatch_err *err);

/* CPUID and LAPIC LINT pins for every vCPU of vm, from the host's
 * supported CPUID (struct vmp_kvm_host's; borrowed). Before any KVM_RUN
 * that enters the guest (call it before vmp_vm_first_run to be safe):
 * KVM refuses to change a vCPU's CPUID once it has run. */
int vmp_linux_cpu_init(struct vmp_vm *vm, const struct kvm_cpuid2 *host_cpuid,
		       struct hatch_err *err);

#endif
