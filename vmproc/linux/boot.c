/* boot.c - the Linux 64-bit boot protocol: images, zero page, GDT, page
 * tables and vCPU 0. See boot.h. */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include "hatchery/v1/common.pb-c.h"
#include "linux/acpi.h"
#include "linux/boot.h"
#include "snapshot.h"

#define E(x) HATCHERY__V1__ERROR_CODE__##x

/* boot_params (arch/x86/include/uapi/asm/bootparam.h) offsets we fill. */
#define BP_ACPI_RSDP_ADDR   0x070
#define BP_EXT_RAMDISK_IMG  0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES     0x1e8
#define BP_E820_TABLE       0x2d0
#define BP_E820_MAX         128
#define E820_RAM            1
#define E820_RESERVED       2

#define TYPE_OF_LOADER_UNDEFINED 0xff   /* boot.rst: "0xFF  Undefined" */

#define PAGE 4096ull
#define PTE_P  (1ull << 0)
#define PTE_W  (1ull << 1)
#define PTE_PS (1ull << 7)

#define CR0_PE (1ull << 0)
#define CR0_MP (1ull << 1)
#define CR0_ET (1ull << 4)
#define CR0_NE (1ull << 5)
#define CR0_PG (1ull << 31)
#define CR4_PAE (1ull << 5)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)

static void wr16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2); /* x86 guest, x86 host: little-endian both */
}

static void wr32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void wr64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static void e820_add(uint8_t *zp, uint64_t addr, uint64_t size, uint32_t type)
{
	uint8_t n = zp[BP_E820_ENTRIES];
	uint8_t *e = zp + BP_E820_TABLE + 20 * n;
	wr64(e, addr);
	wr64(e + 8, size);
	wr32(e + 16, type);
	zp[BP_E820_ENTRIES] = (uint8_t)(n + 1);
}

/* GDT at VMP_LINUX_GDT: null, null, __BOOT_CS (64-bit code), __BOOT_DS,
 * as boot.rst's 64-bit protocol asks ("__BOOT_CS(0x10) ... __BOOT_DS(0x18)
 * ... 4G flat"). */
static void write_gdt(uint8_t *mem)
{
	uint64_t gdt[4] = {
		0, 0,
		0x00af9b000000ffffull,  /* P, DPL 0, code read/accessed, L, G */
		0x00cf93000000ffffull,  /* P, DPL 0, data write/accessed, D/B, G */
	};
	memcpy(mem + VMP_LINUX_GDT, gdt, sizeof(gdt));
}

/* PML4 -> PDPT -> 4 PDs of 2 MiB pages: [0, 4 GiB) identity-mapped, which
 * covers the kernel, zero page, command line and initrd the protocol wants
 * mapped. The kernel replaces these tables early. */
static void write_page_tables(uint8_t *mem)
{
	uint64_t pml4 = VMP_LINUX_PML4, pdpt = pml4 + PAGE, pd = pdpt + PAGE;
	memset(mem + pml4, 0, 6 * PAGE);
	wr64(mem + pml4, pdpt | PTE_P | PTE_W);
	for (uint64_t i = 0; i < 4; i++) {
		wr64(mem + pdpt + 8 * i, (pd + i * PAGE) | PTE_P | PTE_W);
		for (uint64_t j = 0; j < 512; j++)
			wr64(mem + pd + i * PAGE + 8 * j,
			     ((i << 30) | (j << 21)) | PTE_P | PTE_W | PTE_PS);
	}
}

static int set_vcpu0(struct vmp_vm *vm, uint64_t entry, struct hatch_err *err)
{
	int fd = vm->vcpu_fd[0];
	struct kvm_sregs s;
	if (ioctl(fd, KVM_GET_SREGS, &s) < 0)
		return hatch_err_set(err, E(VM_ERROR), errno, "KVM_GET_SREGS vCPU 0");
	struct kvm_segment cs = {
		.base = 0, .limit = 0xffffffff, .selector = VMP_LINUX_BOOT_CS, .type = 11,
		.present = 1, .dpl = 0, .db = 0, .s = 1, .l = 1, .g = 1,
	};
	struct kvm_segment ds = {
		.base = 0, .limit = 0xffffffff, .selector = VMP_LINUX_BOOT_DS, .type = 3,
		.present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1,
	};
	s.cs = cs;
	s.ds = s.es = s.ss = s.fs = s.gs = ds;
	s.gdt.base = VMP_LINUX_GDT;
	s.gdt.limit = 4 * 8 - 1;
	/* No IDT: interrupts stay off until the kernel loads its own. TR and
	 * LDT keep KVM's reset values, which VM entry accepts in long mode. */
	s.idt.base = 0;
	s.idt.limit = 0;
	s.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_PG;
	s.cr3 = VMP_LINUX_PML4;
	s.cr4 = CR4_PAE;
	s.efer = EFER_LME | EFER_LMA;
	memset(s.interrupt_bitmap, 0, sizeof(s.interrupt_bitmap));
	if (ioctl(fd, KVM_SET_SREGS, &s) < 0)
		return hatch_err_set(err, E(VM_ERROR), errno, "KVM_SET_SREGS vCPU 0");
	struct kvm_regs r = {
		.rip = entry,
		.rsi = VMP_LINUX_ZERO_PAGE,     /* boot.rst: "%rsi must hold the base address of the struct boot_params" */
		.rsp = VMP_LINUX_BOOT_STACK,
		.rflags = 0x2,                  /* IF clear */
	};
	if (ioctl(fd, KVM_SET_REGS, &r) < 0)
		return hatch_err_set(err, E(VM_ERROR), errno, "KVM_SET_REGS vCPU 0");
	return 0;
}

int vmp_linux_load(struct vmp_vm *vm, const struct vmp_linux_boot *b,
		   struct vmp_linux_layout *out, struct hatch_err *err)
{
	struct vmp_linux_layout l;
	memset(&l, 0, sizeof(l));
	if (vmp_bzimage_parse(b->kernel, b->kernel_len, &l.bz, err) < 0)
		return -1;
	const struct vmp_bzimage *bz = &l.bz;

	struct snap_ram_slot slot[SNAP_RAM_SLOTS];
	unsigned nslots = snap_ram_slots(vm->mem_size, slot);
	if (nslots == 0 || slot[0].gpa != 0)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0, "Linux guest: no RAM at GPA 0");
	l.low_ram_end = slot[0].len;

	const char *cmdline = b->cmdline ? b->cmdline : VMP_LINUX_CMDLINE_DEFAULT;
	size_t cmdlen = strlen(cmdline);
	size_t cmdmax = bz->cmdline_size < VMP_LINUX_CMDLINE_MAX - 1 ? bz->cmdline_size
								   : VMP_LINUX_CMDLINE_MAX - 1;
	if (cmdlen > cmdmax)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "Linux guest: command line of %zu bytes, this kernel takes %zu",
				     cmdlen, cmdmax);

	/* The kernel's footprint: the image where we put it, then the
	 * decompressor's buffer where a relocatable kernel moves itself
	 * (at least pref_address, its LOAD_PHYSICAL_ADDR). */
	l.kernel = VMP_LINUX_KERNEL;
	l.kernel_end = l.kernel + bz->kernel_size;
	uint64_t buf_start = (l.kernel + bz->kernel_alignment - 1) & ~(uint64_t)(bz->kernel_alignment - 1);
	if (buf_start < bz->pref_address)
		buf_start = bz->pref_address;
	if (buf_start + bz->init_size > l.kernel_end)
		l.kernel_end = buf_start + bz->init_size;
	if (l.kernel_end > l.low_ram_end)
		return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
				     "Linux guest: the kernel needs RAM up to %#llx, the VM has %#llx below 4 GiB",
				     (unsigned long long)l.kernel_end,
				     (unsigned long long)l.low_ram_end);

	/* The initrd at the top of low RAM, below initrd_addr_max, page-aligned,
	 * clear of the kernel's footprint. */
	if (b->initrd_len) {
		uint64_t top = l.low_ram_end;
		if (top > (uint64_t)bz->initrd_addr_max + 1)
			top = (uint64_t)bz->initrd_addr_max + 1;
		if (b->initrd_len > top)
			return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
					     "Linux guest: initrd of %zu bytes larger than RAM",
					     b->initrd_len);
		l.initrd = (top - b->initrd_len) & ~(PAGE - 1);
		l.initrd_size = b->initrd_len;
		if (l.initrd < l.kernel_end)
			return hatch_err_set(err, E(INVALID_ARGUMENT), 0,
					     "Linux guest: kernel (to %#llx) and initrd (%zu bytes) do not fit in %#llx of RAM",
					     (unsigned long long)l.kernel_end, b->initrd_len,
					     (unsigned long long)l.low_ram_end);
	}

	uint8_t *mem = vm->mem;
	struct vmp_acpi_layout acpi;
	if (vmp_acpi_build(mem + VMP_ACPI_BASE, VMP_ACPI_MAX_SIZE, VMP_ACPI_BASE, vm->nvcpus,
			   b->nvirtio, &acpi, err) < 0)
		return -1;

	memcpy(mem + l.kernel, b->kernel + bz->kernel_offset, bz->kernel_size);
	if (b->initrd_len)
		memcpy(mem + l.initrd, b->initrd, b->initrd_len);
	memset(mem + VMP_LINUX_CMDLINE, 0, VMP_LINUX_CMDLINE_MAX);
	memcpy(mem + VMP_LINUX_CMDLINE, cmdline, cmdlen);
	write_gdt(mem);
	write_page_tables(mem);

	/* The zero page: the image's own setup header (the kernel reads its
	 * fields back from here), then what the loader owns. */
	uint8_t *zp = mem + VMP_LINUX_ZERO_PAGE;
	memset(zp, 0, PAGE);
	memcpy(zp + VMP_BZ_SETUP_SECTS, b->kernel + VMP_BZ_SETUP_SECTS,
	       bz->hdr_end - VMP_BZ_SETUP_SECTS);
	zp[VMP_BZ_TYPE_OF_LOADER] = TYPE_OF_LOADER_UNDEFINED;
	wr32(zp + VMP_BZ_CMD_LINE_PTR, (uint32_t)VMP_LINUX_CMDLINE);
	wr32(zp + BP_EXT_CMD_LINE_PTR, 0);
	wr32(zp + VMP_BZ_RAMDISK_IMAGE, (uint32_t)l.initrd);
	wr32(zp + VMP_BZ_RAMDISK_SIZE, (uint32_t)l.initrd_size);
	wr32(zp + BP_EXT_RAMDISK_IMG, 0);
	wr32(zp + BP_EXT_RAMDISK_SIZE, 0);
	wr16(zp + VMP_BZ_HEAP_END_PTR, 0);
	wr64(zp + BP_ACPI_RSDP_ADDR, VMP_ACPI_BASE + acpi.rsdp);
	/* e820 (docs/guest-linux.md): low RAM below the EBDA, the EBDA and
	 * BIOS area reserved (the ACPI tables live there), RAM from 1 MiB,
	 * and above 4 GiB the rest. */
	e820_add(zp, 0, VMP_LINUX_EBDA, E820_RAM);
	e820_add(zp, VMP_LINUX_EBDA, VMP_LINUX_KERNEL - VMP_LINUX_EBDA, E820_RESERVED);
	e820_add(zp, VMP_LINUX_KERNEL, l.low_ram_end - VMP_LINUX_KERNEL, E820_RAM);
	for (unsigned i = 1; i < nslots; i++)
		e820_add(zp, slot[i].gpa, slot[i].len, E820_RAM);

	/* boot.rst: "the 64-bit entry point is startup_64 ... at the kernel's
	 * load address + 0x200". */
	l.entry = l.kernel + 0x200;
	if (set_vcpu0(vm, l.entry, err) < 0)
		return -1;
	if (out)
		*out = l;
	return 0;
}
