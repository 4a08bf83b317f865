/* acpi.h - the ACPI tables of a Linux guest: RSDP, XSDT, FADT (hardware-
 * reduced), MADT, DSDT (docs/guest-linux.md).
 *
 * Pure: the tables are written into a caller's buffer that the guest will
 * see at GPA `base` (the pointers between tables are GPAs), so they are
 * unit-tested without KVM. boot.c passes guest RAM at VMP_ACPI_BASE, where
 * the kernel finds the RSDP both through boot_params.acpi_rsdp_addr and by
 * its scan of the BIOS area (0xE0000..0xFFFFF, 16-byte steps).
 *
 * The DSDT is AML compiled from dsdt.asl by iasl at build time; the number
 * of virtio-mmio devices it shows (1..VMP_ACPI_MAX_VIRTIO) is chosen per
 * call by patching one integer in that AML (see dsdt.asl).
 *
 * Ownership: the buffer is the caller's; nothing is kept.
 */
#ifndef HATCHERY_VMP_LINUX_ACPI_H
#define HATCHERY_VMP_LINUX_ACPI_H

#include <stddef.h>
#include <stdint.h>

#include "hatchery/error.h"

#define VMP_ACPI_BASE        0xE0000ull   /* RSDP here; the rest follows */
#define VMP_ACPI_MAX_SIZE    0x10000ull   /* what boot.c reserves for them */
#define VMP_ACPI_MAX_VIRTIO  4
#define VMP_ACPI_MAX_VCPUS   254          /* 8-bit xAPIC IDs, 0xFF is broadcast */

#define VMP_IOAPIC_ADDR      0xFEC00000u
#define VMP_LAPIC_ADDR       0xFEE00000u
#define VMP_VIRTIO_MMIO_BASE 0xD0000000u
#define VMP_VIRTIO_MMIO_SIZE 0x1000u
#define VMP_VIRTIO_GSI_BASE  5u

/* Where each table went: offsets into the buffer (add base for the GPA). */
struct vmp_acpi_layout {
	size_t rsdp, xsdt, fadt, madt, dsdt;
	size_t size;                /* bytes used from the buffer's start */
};

/* Write the tables for nvcpus vCPUs (LAPIC IDs 0..nvcpus-1) and nvirtio
 * virtio-mmio devices into buf[0, cap), which the guest sees at `base`.
 * Returns 0 and fills *out (may be NULL), or -1 with err
 * (INVALID_ARGUMENT: counts out of range, or cap too small). */
int vmp_acpi_build(uint8_t *buf, size_t cap, uint64_t base, unsigned nvcpus,
		   unsigned nvirtio, struct vmp_acpi_layout *out, struct hatch_err *err);

/* The 8-bit sum that makes a table's bytes add up to 0 (the caller stores
 * it in the checksum field, which must be 0 while summing). */
uint8_t vmp_acpi_checksum(const uint8_t *p, size_t len);

#endif
