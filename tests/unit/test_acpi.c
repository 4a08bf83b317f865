/* The Linux guest's ACPI tables (vmp_acpi_build). Pure: built into a
 * buffer and parsed back here as the kernel would: RSDP checksums, XSDT
 * entries, every table's signature, length and checksum, the MADT's
 * LAPICs, the FADT's hardware-reduced flag, the DSDT's device count. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "linux/acpi.h"

#define BASE VMP_ACPI_BASE
#define CAP  0x10000

static uint32_t r32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t r64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	while (n--)
		s = (uint8_t)(s + *p++);
	return s;
}

/* The table at GPA gpa: signature and a zero checksum over its length. */
static const uint8_t *table(const uint8_t *buf, uint64_t gpa, const char *sig)
{
	cr_assert(gpa >= BASE && gpa < BASE + CAP, "%s at %#llx", sig, (unsigned long long)gpa);
	const uint8_t *t = buf + (gpa - BASE);
	cr_assert(memcmp(t, sig, 4) == 0, "expected %s, found %.4s", sig, (const char *)t);
	uint32_t len = r32(t + 4);
	cr_assert(len >= 36 && gpa - BASE + len <= CAP, "%s length %u", sig, len);
	cr_assert_eq(sum(t, len), 0, "%s checksum", sig);
	return t;
}

static void check(unsigned nvcpus, unsigned nvirtio)
{
	uint8_t *buf = calloc(1, CAP);
	struct vmp_acpi_layout l;
	struct hatch_err err = { 0 };
	cr_assert_eq(vmp_acpi_build(buf, CAP, BASE, nvcpus, nvirtio, &l, &err), 0, "%s", err.msg);
	cr_assert_eq(l.rsdp, 0, "RSDP first: the kernel's scan finds it at 0xE0000");

	const uint8_t *r = buf;
	cr_assert(memcmp(r, "RSD PTR ", 8) == 0);
	cr_assert_eq(sum(r, 20), 0, "RSDP 1.0 checksum");
	cr_assert_eq(r[15], 2, "RSDP revision");
	cr_assert_eq(r32(r + 20), 36);
	cr_assert_eq(sum(r, 36), 0, "RSDP extended checksum");

	const uint8_t *x = table(buf, r64(r + 24), "XSDT");
	uint32_t n = (r32(x + 4) - 36) / 8;
	cr_assert_eq(n, 2);
	const uint8_t *f = table(buf, r64(x + 36), "FACP");
	const uint8_t *m = table(buf, r64(x + 44), "APIC");

	cr_assert_eq(r32(f + 4), 276);
	cr_assert(r32(f + 112) & (1u << 20), "FADT HW_REDUCED_ACPI");
	cr_assert_eq(r32(f + 40), 0, "32-bit DSDT pointer unused");
	const uint8_t *d = table(buf, r64(f + 140), "DSDT");

	cr_assert_eq(r32(m + 36), VMP_LAPIC_ADDR);
	cr_assert_eq(r32(m + 40) & 1, 1, "PCAT_COMPAT");
	unsigned lapics = 0, ioapics = 0, isos = 0;
	for (uint32_t off = 44; off < r32(m + 4);) {
		const uint8_t *e = m + off;
		cr_assert(e[1] >= 2 && off + e[1] <= r32(m + 4), "MADT entry length");
		if (e[0] == 0) {
			cr_assert_eq(e[3], lapics, "APIC ID of LAPIC %u", lapics);
			cr_assert_eq(r32(e + 4) & 1, 1, "LAPIC enabled");
			lapics++;
		} else if (e[0] == 1) {
			cr_assert_eq(r32(e + 4), VMP_IOAPIC_ADDR);
			cr_assert_eq(r32(e + 8), 0);
			ioapics++;
		} else if (e[0] == 2) {
			cr_assert_eq(e[3], 0);
			cr_assert_eq(r32(e + 4), 2, "IRQ0 -> GSI2");
			isos++;
		}
		off += e[1];
	}
	cr_assert_eq(lapics, nvcpus);
	cr_assert_eq(ioapics, 1);
	cr_assert_eq(isos, 1);

	/* NDEV, as acpi.c patched it. */
	static const uint8_t pat[] = { 0x08, 'N', 'D', 'E', 'V', 0x0c };
	const uint8_t *p = memmem(d, r32(d + 4), pat, sizeof(pat));
	cr_assert(p, "DSDT has NDEV");
	cr_assert_eq(r32(p + sizeof(pat)), nvirtio);
	cr_assert(memmem(d, r32(d + 4), "LNRO0005", 8), "DSDT has virtio-mmio devices");
	cr_assert_leq(l.size, CAP);
	free(buf);
}

Test(acpi, one_vcpu_one_device) { check(1, 1); }
Test(acpi, two_vcpus_four_devices) { check(2, 4); }
Test(acpi, many_vcpus)
{
	for (unsigned v = 1; v <= 64; v += 7)
		for (unsigned d = 1; d <= VMP_ACPI_MAX_VIRTIO; d++)
			check(v, d);
}

Test(acpi, refusals)
{
	uint8_t *buf = calloc(1, CAP);
	struct hatch_err err = { 0 };
	cr_assert_eq(vmp_acpi_build(buf, CAP, BASE, 0, 1, NULL, &err), -1);
	cr_assert_eq(vmp_acpi_build(buf, CAP, BASE, 1, 0, NULL, &err), -1);
	cr_assert_eq(vmp_acpi_build(buf, CAP, BASE, 1, 5, NULL, &err), -1);
	cr_assert(strstr(err.msg, "virtio"), "%s", err.msg);
	cr_assert_eq(vmp_acpi_build(buf, 64, BASE, 1, 1, NULL, &err), -1);
	cr_assert(strstr(err.msg, "need"), "%s", err.msg);
	free(buf);
}
