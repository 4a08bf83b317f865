/* guest_elf.h - validate a guest ELF for the kernel-less runtime.
 *
 * Pure: no KVM, no syscalls; unit-tested (tests/unit/test_guest_elf.c) and
 * linked alone as hatch_guest_elf. The supervisor runs it on a booted
 * pool's guest at start-up, a child on a client's Load; runtime.c loads
 * the validated image into guest RAM.
 *
 * Ownership: a struct vmp_guest_image borrows the ELF bytes it was parsed
 * from; they must outlive it.
 */
#ifndef HATCHERY_VMP_GUEST_ELF_H
#define HATCHERY_VMP_GUEST_ELF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hatchery/error.h"
#include "hatchery_guest_abi.h" /* HATCH_IMAGE_BASE, HATCH_IMAGE_END */

#define VMP_GUEST_MAX_SEGS 16
#define VMP_GUEST_MAX_ELF (16u << 20) /* the image window's size */

struct vmp_guest_seg {
	uint64_t vaddr, memsz;       /* page-aligned start is vaddr & ~4095 */
	uint64_t offset, filesz;     /* bytes from the file */
	bool write, exec;
};

/* A validated image. Borrows the ELF bytes it was parsed from. */
struct vmp_guest_image {
	const uint8_t *elf;
	size_t elf_len;
	uint64_t entry;
	unsigned nsegs;
	struct vmp_guest_seg seg[VMP_GUEST_MAX_SEGS];
};

/* Validate `elf` (untrusted): ELF64, little-endian, x86-64, ET_EXEC; every
 * offset and size in bounds without overflow; 1..16 PT_LOAD segments inside
 * [HATCH_IMAGE_BASE, HATCH_IMAGE_END), not sharing a page with each other;
 * the entry point inside an executable segment; no segment both writable
 * and executable. On failure err says what is wrong (INVALID_ARGUMENT). */
int vmp_guest_elf_parse(const uint8_t *elf, size_t len,
			struct vmp_guest_image *img, struct hatch_err *err);

#endif
