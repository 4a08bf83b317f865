/* acpi.c - build the guest's ACPI tables. See acpi.h.
 *
 * The layout of every table is the ACPI 6.x specification's (RSDP 5.2.5,
 * XSDT 5.2.8, FADT 5.2.9, MADT 5.2.12); fields are written byte by byte at
 * their offsets, so host struct padding plays no part. */
#include <string.h>

#include "hatchery/v1/common.pb-c.h"
#include "linux/acpi.h"

/* dsdt.asl compiled by iasl -tc: `unsigned char dsdt_aml_code[]`. */
#include "dsdt.hex"

#define E_ARG HATCHERY__V1__ERROR_CODE__INVALID_ARGUMENT

#define OEM_ID     "HATCH "     /* 6 bytes */
#define OEM_REV    1
#define CREATOR_ID "HTCH"
#define CREATOR_REV 1

#define HDR_LEN    36
#define FADT_LEN   276          /* revision 6 */
#define RSDP_LEN   36

/* FADT flags (5.2.9, table "Fixed ACPI Description Table Fixed Feature
 * Flags") and IA-PC boot architecture flags. Hardware-reduced, as
 * Firecracker and Cloud Hypervisor do: there is no PM timer, no GPE
 * block, no SCI, no fixed-hardware sleep registers, and Linux then leaves
 * the legacy PIC and the PIT clockevent alone (it runs on the LAPIC timer
 * and kvm-clock). The power and sleep buttons are "not fixed-feature
 * buttons": there are none. No 8042 flag: the kernel then skips probing
 * for a PS/2 controller (our i8042 is only reboot=k's reset line, which
 * the kernel writes without probing). No CMOS RTC flag: there is no RTC at
 * ports 0x70/0x71 (the wall clock comes from kvm-clock). */
#define FADT_F_PWR_BUTTON       (1u << 4)
#define FADT_F_SLP_BUTTON       (1u << 5)
#define FADT_F_HW_REDUCED_ACPI  (1u << 20)
#define IAPC_VGA_NOT_PRESENT    (1u << 2)
#define IAPC_MSI_NOT_PRESENT    (1u << 3)
#define IAPC_PCIE_ASPM_CONTROLS (1u << 4)
#define IAPC_CMOS_RTC_NOT_PRESENT (1u << 5)

/* MADT: PCAT_COMPAT because KVM's in-kernel irqchip does have the two
 * 8259s (the kernel then masks them before it uses the IOAPIC). */
#define MADT_PCAT_COMPAT 1u
#define MADT_LAPIC       0
#define MADT_IOAPIC      1
#define MADT_ISO         2
#define MADT_LAPIC_NMI   4

/* The DSDT's NDEV: NameOp, "NDEV", DWordPrefix, then the placeholder. */
#define NDEV_PLACEHOLDER 0x4E444556u

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void wr32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void wr64(uint8_t *p, uint64_t v)
{
	wr32(p, (uint32_t)v);
	wr32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

uint8_t vmp_acpi_checksum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;
	for (size_t i = 0; i < len; i++)
		s = (uint8_t)(s + p[i]);
	return (uint8_t)(0 - s);
}

/* The common 36-byte header; the checksum is filled last, by seal(). */
static void header(uint8_t *t, const char sig[4], uint32_t len, uint8_t rev,
		   const char table_id[8])
{
	memcpy(t, sig, 4);
	wr32(t + 4, len);
	t[8] = rev;
	t[9] = 0;
	memcpy(t + 10, OEM_ID, 6);
	memcpy(t + 16, table_id, 8);
	wr32(t + 24, OEM_REV);
	memcpy(t + 28, CREATOR_ID, 4);
	wr32(t + 32, CREATOR_REV);
}

static void seal(uint8_t *t)
{
	t[9] = 0;
	t[9] = vmp_acpi_checksum(t, rd32(t + 4));
}

static size_t align16(size_t x)
{
	return (x + 15) & ~(size_t)15;
}

/* The compiled DSDT with NDEV set to nvirtio. Fails if the AML does not
 * hold the placeholder exactly once, which would mean dsdt.asl changed
 * shape without acpi.c. */
static int write_dsdt(uint8_t *t, unsigned nvirtio, struct hatch_err *err)
{
	static const uint8_t pat[] = { 0x08, 'N', 'D', 'E', 'V', 0x0c };
	size_t len = sizeof(dsdt_aml_code);
	memcpy(t, dsdt_aml_code, len);
	size_t at = 0;
	unsigned found = 0;
	for (size_t i = HDR_LEN; i + sizeof(pat) + 4 <= len; i++)
		if (memcmp(t + i, pat, sizeof(pat)) == 0 &&
		    rd32(t + i + sizeof(pat)) == NDEV_PLACEHOLDER) {
			at = i + sizeof(pat);
			found++;
		}
	if (found != 1)
		return hatch_err_set(err, HATCHERY__V1__ERROR_CODE__INTERNAL, 0,
				     "ACPI: the compiled DSDT has %u NDEV placeholders, not 1", found);
	wr32(t + at, nvirtio);
	seal(t);
	return 0;
}

static size_t write_fadt(uint8_t *t, uint64_t dsdt_gpa)
{
	memset(t, 0, FADT_LEN);
	header(t, "FACP", FADT_LEN, 6, "HATCHFAC");
	/* FIRMWARE_CTRL, DSDT (32-bit) stay 0: X_DSDT is the one pointer. */
	wr16(t + 109, IAPC_VGA_NOT_PRESENT | IAPC_MSI_NOT_PRESENT |
		      IAPC_PCIE_ASPM_CONTROLS | IAPC_CMOS_RTC_NOT_PRESENT);
	wr32(t + 112, FADT_F_HW_REDUCED_ACPI | FADT_F_PWR_BUTTON | FADT_F_SLP_BUTTON);
	t[131] = 5;                      /* FADT minor version: 6.5 */
	wr64(t + 140, dsdt_gpa);         /* X_DSDT */
	memcpy(t + 268, "HATCHERY", 8);  /* hypervisor vendor identity */
	seal(t);
	return FADT_LEN;
}

static size_t write_madt(uint8_t *t, unsigned nvcpus)
{
	size_t n = HDR_LEN + 8;
	uint8_t *p;
	for (unsigned i = 0; i < nvcpus; i++) {
		p = t + n;
		p[0] = MADT_LAPIC;
		p[1] = 8;
		p[2] = (uint8_t)i;           /* ACPI processor UID */
		p[3] = (uint8_t)i;           /* APIC ID: KVM's is the vCPU id */
		wr32(p + 4, 1);              /* enabled */
		n += 8;
	}
	p = t + n;
	p[0] = MADT_IOAPIC;
	p[1] = 12;
	p[2] = 0;                            /* the in-kernel IOAPIC's reset ID */
	p[3] = 0;
	wr32(p + 4, VMP_IOAPIC_ADDR);
	wr32(p + 8, 0);                      /* GSI base */
	n += 12;
	/* The PIT's IRQ 0 is on IOAPIC pin 2, as on every PC (KVM's PIT
	 * raises both). Flags 0: bus-conforming, edge, high. */
	p = t + n;
	p[0] = MADT_ISO;
	p[1] = 10;
	p[2] = 0;                            /* bus: ISA */
	p[3] = 0;                            /* source: IRQ 0 */
	wr32(p + 4, 2);                      /* GSI 2 */
	wr16(p + 8, 0);
	n += 10;
	/* NMI on every LAPIC's LINT1, as KVM wires it. */
	p = t + n;
	p[0] = MADT_LAPIC_NMI;
	p[1] = 6;
	p[2] = 0xff;                         /* all processors */
	wr16(p + 3, 0);
	p[5] = 1;                            /* LINT1 */
	n += 6;

	header(t, "APIC", (uint32_t)n, 5, "HATCHMAD");
	wr32(t + 36, VMP_LAPIC_ADDR);
	wr32(t + 40, MADT_PCAT_COMPAT);
	seal(t);
	return n;
}

int vmp_acpi_build(uint8_t *buf, size_t cap, uint64_t base, unsigned nvcpus,
		   unsigned nvirtio, struct vmp_acpi_layout *out, struct hatch_err *err)
{
	if (nvcpus == 0 || nvcpus > VMP_ACPI_MAX_VCPUS)
		return hatch_err_set(err, E_ARG, 0, "ACPI: %u vCPUs, need 1..%d", nvcpus,
				     VMP_ACPI_MAX_VCPUS);
	if (nvirtio == 0 || nvirtio > VMP_ACPI_MAX_VIRTIO)
		return hatch_err_set(err, E_ARG, 0, "ACPI: %u virtio devices, need 1..%d",
				     nvirtio, VMP_ACPI_MAX_VIRTIO);
	struct vmp_acpi_layout l = { .rsdp = 0 };
	l.xsdt = align16(RSDP_LEN);
	l.fadt = align16(l.xsdt + HDR_LEN + 2 * 8);
	l.madt = align16(l.fadt + FADT_LEN);
	size_t madt_len = HDR_LEN + 8 + 8 * (size_t)nvcpus + 12 + 10 + 6;
	l.dsdt = align16(l.madt + madt_len);
	l.size = l.dsdt + sizeof(dsdt_aml_code);
	if (l.size > cap)
		return hatch_err_set(err, E_ARG, 0, "ACPI: tables need %zu bytes, have %zu",
				     l.size, cap);
	memset(buf, 0, l.size);

	if (write_dsdt(buf + l.dsdt, nvirtio, err) < 0)
		return -1;
	write_fadt(buf + l.fadt, base + l.dsdt);
	write_madt(buf + l.madt, nvcpus);

	uint8_t *x = buf + l.xsdt;
	header(x, "XSDT", HDR_LEN + 2 * 8, 1, "HATCHXSD");
	wr64(x + HDR_LEN, base + l.fadt);
	wr64(x + HDR_LEN + 8, base + l.madt);
	seal(x);

	/* RSDP 2.0: the first checksum covers the 20 bytes of ACPI 1.0, the
	 * extended one all 36; no RSDT (0), the XSDT is the root. */
	uint8_t *r = buf + l.rsdp;
	memcpy(r, "RSD PTR ", 8);
	memcpy(r + 9, OEM_ID, 6);
	r[15] = 2;
	wr32(r + 16, 0);
	wr32(r + 20, RSDP_LEN);
	wr64(r + 24, base + l.xsdt);
	r[8] = vmp_acpi_checksum(r, 20);
	r[32] = vmp_acpi_checksum(r, RSDP_LEN);
	if (out)
		*out = l;
	return 0;
}
