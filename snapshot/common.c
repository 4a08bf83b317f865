/* common.c - what the writer, the parser and vmproc share: CRC32C, the
 * CPUID hash, and the guest RAM layout (snapshot.h). Pure: no KVM. */
#include <stdio.h>
#include <string.h>

#include "layout.h"

const char snap_magic[HDR_MAGIC_LEN] = { 'H', 'A', 'T', 'C', 'H', 'S', 'N', 'P' };

/* ---- CRC32C ---------------------------------------------------------- */

static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1)));
		crc_table[i] = c;
	}
}

__attribute__((target("sse4.2"))) static uint32_t
crc_hw(uint32_t c, const uint8_t *p, size_t n)
{
	while (n >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c = (uint32_t)__builtin_ia32_crc32di(c, v);
		p += 8;
		n -= 8;
	}
	while (n--)
		c = __builtin_ia32_crc32qi(c, *p++);
	return c;
}

uint32_t snap_crc32c(uint32_t crc, const void *buf, size_t len)
{
	/* Lazily initialised without a lock: two threads racing here write
	 * the same table values, and the release/acquire pair makes a thread
	 * that sees have_hw set also see the table. */
	static int have_hw_ = -1;
	int have_hw = __atomic_load_n(&have_hw_, __ATOMIC_ACQUIRE);
	if (have_hw < 0) {
		crc_init();
		__builtin_cpu_init();
		have_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
		__atomic_store_n(&have_hw_, have_hw, __ATOMIC_RELEASE);
	}
	const uint8_t *p = buf;
	uint32_t c = ~crc;
	if (have_hw)
		c = crc_hw(c, p, len);
	else
		while (len--)
			c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return ~c;
}

/* ---- CPUID hash ------------------------------------------------------ */

uint64_t snap_cpuid_hash(const struct kvm_cpuid_entry2 *e, uint32_t n)
{
	/* FNV-1a over each entry's defined fields (not the padding), without
	 * the APIC ID of the CPU that ran the ioctl: KVM_GET_SUPPORTED_CPUID
	 * reports it (measured on kvm-pvm: leaf 1 EBX[31:24] and leaf 0xB
	 * EDX differ between core 0 and core 1), so a hash over it depends on
	 * where the supervisor happened to run, and a snapshot saved by one
	 * hatcheryd would be refused by the next. Leaf 0x1F (EDX) and AMD's
	 * 0x8000001E (EAX) carry it too. */
	uint64_t h = 0xcbf29ce484222325ull;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t fn = e[i].function, ebx = e[i].ebx, eax = e[i].eax, edx = e[i].edx;
		if (fn == 1)
			ebx &= 0x00ffffffu;
		if (fn == 0xb || fn == 0x1f)
			edx = 0;
		if (fn == 0x8000001eu)
			eax = 0;
		uint32_t f[7] = { fn, e[i].index, e[i].flags, eax, ebx, e[i].ecx, edx };
		for (int k = 0; k < 7; k++)
			for (int b = 0; b < 4; b++) {
				h ^= (f[k] >> (8 * b)) & 0xff;
				h *= 0x100000001b3ull;
			}
	}
	return h;
}

/* ---- section types --------------------------------------------------- */

/* A fixed-size kernel struct: its name, and its size as both the size and
 * the longest payload. */
#define FIXED(s) #s, sizeof(s), sizeof(s)

static const struct sec_info sec_infos[] = {
	[SEC_VCPU_REGS] = { "regs", FIXED(struct kvm_regs), false },
	[SEC_VCPU_SREGS] = { "sregs", FIXED(struct kvm_sregs), false },
	[SEC_VCPU_FPU] = { "fpu", FIXED(struct kvm_fpu), false },
	[SEC_VCPU_XSAVE] = { "xsave", NULL, 1, SNAP_MAX_XSAVE, true },
	[SEC_VCPU_XCRS] = { "xcrs", FIXED(struct kvm_xcrs), true },
	[SEC_VCPU_MSRS] = { "msrs", NULL, sizeof(struct kvm_msr_entry),
			    SNAP_MAX_MSRS * sizeof(struct kvm_msr_entry), false },
	[SEC_VCPU_LAPIC] = { "lapic", FIXED(struct kvm_lapic_state), false },
	[SEC_VCPU_MP_STATE] = { "mp_state", FIXED(struct kvm_mp_state), false },
	[SEC_VCPU_EVENTS] = { "events", FIXED(struct kvm_vcpu_events), false },
	[SEC_VCPU_DEBUGREGS] = { "debugregs", FIXED(struct kvm_debugregs), false },
	[SEC_VCPU_TSC] = { "tsc", FIXED(struct snap_tsc), false },
	[SEC_VM_PIC_MASTER] = { "pic master", FIXED(struct kvm_irqchip), false },
	[SEC_VM_PIC_SLAVE] = { "pic slave", FIXED(struct kvm_irqchip), false },
	[SEC_VM_IOAPIC] = { "ioapic", FIXED(struct kvm_irqchip), false },
	[SEC_VM_PIT2] = { "pit2", FIXED(struct kvm_pit_state2), false },
	[SEC_VM_CLOCK] = { "clock", FIXED(struct kvm_clock_data), false },
	/* Exactly one of these two (check_complete in parse.c). */
	[SEC_RUNTIME] = { "runtime", NULL, 1, SNAP_MAX_OPAQUE, true },
	[SEC_DEVICES] = { "devices", NULL, 1, DEV_LEN(SNAP_MAX_VIRTIO), true },
	[SEC_MEMMAP] = { "memory map", NULL, EXT_SIZE, 0, false },
};
#undef FIXED

bool snap_sec_is_vcpu(uint32_t t)
{
	return t >= SEC_VCPU_REGS && t <= SEC_VCPU_LAST;
}

const struct sec_info *snap_sec_info(uint32_t t)
{
	if (t >= sizeof(sec_infos) / sizeof(sec_infos[0]) || !sec_infos[t].name)
		return NULL;
	return &sec_infos[t];
}

const char *snap_sec_name(char *b, size_t n, uint32_t type, uint32_t idx)
{
	const struct sec_info *si = snap_sec_info(type);
	if (!si)
		snprintf(b, n, "type %u", type);
	else if (snap_sec_is_vcpu(type))
		snprintf(b, n, "vcpu%u %s", idx, si->name);
	else
		snprintf(b, n, "%s", si->name);
	return b;
}


/* ---- guest RAM layout ------------------------------------------------ */

unsigned snap_ram_slots(uint64_t mem_size, struct snap_ram_slot slot[SNAP_RAM_SLOTS])
{
	uint64_t low = mem_size < SNAP_LOW_MEM_MAX ? mem_size : SNAP_LOW_MEM_MAX;
	unsigned n = 0;
	if (low)
		slot[n++] = (struct snap_ram_slot){ .gpa = 0, .offset = 0, .len = low };
	if (mem_size > low)
		slot[n++] = (struct snap_ram_slot){ .gpa = SNAP_HIGH_MEM_BASE, .offset = low,
						    .len = mem_size - low };
	return n;
}

uint64_t snap_gpa_to_ram_offset(uint64_t gpa)
{
	return gpa < SNAP_HIGH_MEM_BASE ? gpa : gpa - SNAP_HIGH_MEM_BASE + SNAP_LOW_MEM_MAX;
}

bool snap_gpa_in_ram(uint64_t mem_size, uint64_t gpa, uint64_t len)
{
	struct snap_ram_slot slot[SNAP_RAM_SLOTS];
	unsigned n = snap_ram_slots(mem_size, slot);
	uint64_t end;
	if (!add_ok(gpa, len, &end))
		return false;
	/* end - gpa, not gpa + len: a header's mem_size may be near 2^64. */
	for (unsigned i = 0; i < n; i++)
		if (gpa >= slot[i].gpa && end - slot[i].gpa <= slot[i].len)
			return true;
	return false;
}
